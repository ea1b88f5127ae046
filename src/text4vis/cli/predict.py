"""`text4vis predict`: top-k classes for video files or folders."""
from __future__ import annotations

import argparse
import json
import logging
import sys

from ..errors import UsageError
from ..onnx_runtime import RUNTIMES
from .common import add_model_args, add_ray_args, ray_settings, show_progress

EXAMPLES_PREDICT = """examples:
  text4vis predict clip.mp4 other.webm --clip ViT-B/16 --labels k400 --topk 5
  text4vis predict videos/ --checkpoint k400-vitb-16-f8.pt --clip ViT-B/16 --labels k400 --views 4x3 --json
  text4vis predict clip.mp4 --checkpoint runs/x/best.safetensors
  text4vis predict clip.mp4 --checkpoint k400-vitb16-f8/ --runtime onnx      # a converted, exported folder
  text4vis predict clip.mp4 --checkpoint hf-hub:ORG/NAME@REVISION
  text4vis predict s3://bucket/videos.csv --labels k400 --engine ray --out tags.parquet   # Ray Data
"""


def flag_name(param: str) -> str:
    """An API parameter's command-line flag: batch_size -> --batch-size."""
    return "--" + param.replace("_", "-")


def cmd_predict(args) -> int:
    from ..api import check_arguments, load
    from ..video import list_inputs
    # the API's own rule, with flag names: API and CLI refuse the same values
    check_arguments(flag_name, views=args.views, topk=args.topk, frames=args.frames, batch_size=args.batch_size,
                    workers=args.workers)
    if args.embedding and not (args.json or args.out):
        raise UsageError("--embedding adds the embedding to --json or --out records: use both")
    settings = ray_settings(args)
    if settings is not None:
        from ..ray_data import require_ray
        require_ray()                   # before any work: one line saying how to install it
        settings.check()
        if args.workers is not None:
            raise UsageError("--workers sets the local engine's decoding processes; with --engine ray, "
                             "--ray-decode-concurrency")
    if args.out:
        from ..files import check_output_file
        from ..records import RECORD_FILES, is_records_file, require_pyarrow
        if args.out.lower().endswith(".parquet"):
            require_pyarrow(args.out)
        check_output_file(args.out, "out", RECORD_FILES, "a file of predict records", is_records_file,
                          args.overwrite)
    items = list_inputs(args.inputs)  # each folder walked once; the expanded paths go to predict_iter
    files = [p for p, empty in items if not empty]
    empty = [p for p, is_empty in items if is_empty]
    if not files:
        raise UsageError(f"no videos found in {' '.join(args.inputs)}")
    log = logging.getLogger("text4vis")
    log.info("%d video%s found; loading the model (%s)", len(files), "s" * (len(files) != 1),
             args.checkpoint or f"--clip {args.clip or 'ViT-B/16'}")
    load_args = dict(checkpoint=args.checkpoint, clip=args.clip, labels=args.labels, prompts=args.prompts,
                     classifier=args.classifier, frames=args.frames, device=args.device,
                     precision=args.precision or "auto", runtime=args.runtime)
    rec = load(**load_args)
    paths = [p for p, _ in items]
    if settings is None:
        records = rec.predict_iter(paths, topk=args.topk, views=args.views, batch_size=args.batch_size,
                                   workers=args.workers, progress=show_progress(args),
                                   with_embedding=args.embedding, decoder=args.decoder,
                                   decode_device=args.decode_device)
    else:
        from ..ray_data import predict_iter
        records = predict_iter(rec, load_args, paths, topk=args.topk, views=args.views, batch_size=args.batch_size,
                               settings=settings, with_embedding=args.embedding, progress=show_progress(args))
    return _report(args, records, len(files) + len(empty))


def _report(args, records, total: int) -> int:
    """Print each record (or write them all to --out), then one line for the failures."""
    done, failed = 0, 0

    def count(r: dict) -> None:
        nonlocal done, failed
        failed += "error" in r
        done += 1

    try:
        if args.out:
            from ..records import write_records
            write_records(args.out, records, on_record=count)
        else:
            for r in records:  # printed as soon as it and every record before it are done
                print_record(r, args.json)
                count(r)
    except KeyboardInterrupt:
        records.close()
        where = f"nothing written to {args.out}" if args.out else "their records are above"
        print(f"text4vis predict: interrupted: {done} of {total} inputs done; {where}", file=sys.stderr)
        return 130
    if failed:
        print(f"text4vis: {failed} of {total} inputs failed", file=sys.stderr)
    return 1 if failed else 0


def print_record(r: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(r), flush=True)
    elif "error" in r:
        print(f"{r['video']}\n   error: {r['error']}", flush=True)
    else:
        print(r["video"])
        width = max(len(t["label"]) for t in r["top"])
        for k, t in enumerate(r["top"], start=1):
            print(f"  {k:>2}. {t['label']:<{width}}  {100 * t['score']:6.2f}%")
        sys.stdout.flush()

def register(sub) -> None:
    p = sub.add_parser("predict", help="top-k actions for video files or folders",
                       description="Classify videos: top-k classes per video, zero-shot or with a checkpoint.",
                       epilog=EXAMPLES_PREDICT, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="+", help="video files, folders (searched recursively), list files (.txt/.lst/.list, "
                   ".csv with a path column) and URLs (s3://, gs://, az://, http(s)://)")
    add_model_args(p)
    p.add_argument("--views", default="1x1", help="CxK: C temporal clips x K spatial crops (1 or 3), e.g. 4x3 (default 1x1)")
    p.add_argument("--topk", type=int, default=5, help="classes to show per video (default 5)")
    p.add_argument("--batch-size", type=int, default=4, help="videos per forward pass (default 4)")
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: by CPU count)")
    p.add_argument("--json", action="store_true", help="JSON Lines: one object per input, in input order")
    p.add_argument("--embedding", action="store_true", help="with --json: include the normalised video embedding")
    p.add_argument("--quiet", action="store_true",
                   help="no status lines or progress bar (they go to stderr only when it is a terminal)")
    from .decode import add_decoder_args
    add_decoder_args(p)
    p.add_argument("--runtime", choices=RUNTIMES, default="torch",
                   help="onnx: run the video model on ONNX Runtime's CPU provider from the checkpoint's model.onnx "
                        "(onnx-int8: its int8 model.int8.onnx, from `export --quantize int8`) "
                        "(`text4vis export`); scores and outputs as with torch (default torch)")
    p.add_argument("--out", metavar="FILE", help="write the records to FILE instead of stdout: .jsonl (JSON Lines, as "
                   "--json prints them) or .parquet (video, top, error, embedding); written whole at the end")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out even when it is not a file of predict records")
    add_ray_args(p, "this process and its decoding workers", "the same records (labels identical, scores equal "
                 "to float rounding)")
    p.set_defaults(func=cmd_predict)
