"""`text4vis index build / search / tag / info`: a searchable video collection."""
from __future__ import annotations

import argparse
import json
import sys

from ..errors import UsageError, check_numbers
from ..onnx_runtime import RUNTIMES
from .common import add_model_args, add_ray_args, ray_settings, show_progress

RAW = argparse.RawDescriptionHelpFormatter

EXAMPLES_BUILD = """examples:
  text4vis index build videos/ --out my-index --clip ViT-B/16
  text4vis index build list.txt more/ clip.mp4 --out my-index --checkpoint runs/x/best.safetensors
  text4vis index build long-videos/ --out my-windows --window 4 --stride 2      # one entry per window
  torchrun --nproc_per_node 8 -m text4vis index build list.csv --out /shared/my-index --checkpoint best.safetensors
  text4vis index build s3://bucket/videos/ --out my-index --engine ray --ray-concurrency 4   # Ray Data
Inputs: video files, folders (searched recursively), frame folders (images, read at 25 fps), list files
(.txt/.lst/.list: one path per line; .csv: a `path` column, any case; relative paths are relative to the
list; URLs: s3://, gs://, az://, http(s)://). Rerun the same command after an interruption to resume,
or after adding/changing videos to embed only those (path + size + mtime). --stride defaults to the index's own, else 2 (as timeline); the
prompts recorded by the first build are kept (a different --prompts is refused).
"""

EXAMPLES_SEARCH = """examples:
  text4vis index search my-index "someone flipping a pancake"
  text4vis index search my-index "a dog catching a frisbee" -k 5 --json
  text4vis index search my-index --like clip.mp4 -k 10
"""

EXAMPLES_TAG = """examples:
  text4vis index tag my-index --labels k400 --topk 5
  text4vis index tag my-index --labels my_classes.txt --topk 1 --json > tags.jsonl
  text4vis index tag my-index --labels ucf101 --out tags.parquet
"""


def _index_options(args) -> dict:
    return {"checkpoint": args.checkpoint, "clip": args.clip, "device": args.device,
            "precision": args.precision or "auto"}


def cmd_build(args) -> int:
    from ..index import build_index
    if args.labels or args.classifier:
        raise UsageError("--labels/--classifier belong to `index tag`: an index stores embeddings, "
                         "and any label set can tag it later")
    if args.untrusted:
        from ..video import media_files_only
        media_files_only()
    report = build_index(args.inputs, args.out, engine=args.engine, ray=ray_settings(args), checkpoint=args.checkpoint,
                         clip=args.clip, frames=args.frames,
                         prompts=args.prompts, device=args.device, precision=args.precision or "auto",
                         window=args.window, stride=args.stride, shard_size=args.shard_size,
                         batch_size=args.batch_size, workers=args.workers, dtype=args.dtype,
                         vector_index=args.vector_index, exact_below=args.exact_below, nlist=args.nlist,
                         nprobe=args.nprobe, progress=show_progress(args), runtime=args.runtime)
    failed = len(report["failed"]) + len(report["empty_folders"])
    if _is_rank0():
        for folder in report["empty_folders"]:
            print(f"{folder}: a folder without video files", file=sys.stderr)
        for f in report["failed"]:
            print(f"error: {f['error']}", file=sys.stderr)
        idx = report["index"]
        print(f"{report['out']}: {count(report['videos'], 'input video')} ({report['embedded_now']} embedded now, "
              f"{report['already_indexed']} already indexed, {len(report['failed'])} failed); the index holds "
              f"{count(idx['videos'], 'video')}, {count(idx['embedded'], 'searchable entry', 'searchable entries')}, "
              f"vector index {idx['vector_index']['type']}")
        if failed:
            print(f"text4vis: {failed} of {count(report['videos'] + len(report['empty_folders']), 'input')} failed",
                  file=sys.stderr)
    return 1 if failed else 0


def count(n: int, one: str, many: str | None = None) -> str:
    """"1 video", "2 videos" (`many` for irregular plurals)."""
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _is_rank0() -> bool:
    import os
    return int(os.environ.get("RANK", "0")) == 0


def cmd_search(args) -> int:
    from ..index import VideoIndex
    check_numbers(("-k", args.k, 1), ("--nprobe", args.nprobe, 1))
    extra = getattr(args, "extra", None) or []
    if extra and args.query is None and len(extra) == 1 and not extra[0].startswith("-"):
        args.query = extra[0]            # a query after --like VIDEO: argparse leaves it over
    elif extra:
        raise UsageError(f"unrecognized arguments: {' '.join(extra)}")
    if args.query is not None and args.like is not None:
        raise UsageError(f"give a text query or --like VIDEO, not both (got the query {args.query!r} and "
                         f"--like {args.like})")
    if args.query is None and args.like is None:
        raise UsageError("give a text query or --like VIDEO (one of them)")
    idx = VideoIndex.open(args.dir, nprobe=args.nprobe, **_index_options(args))
    if args.like is not None:
        result = idx.like(args.like, args.k)
    else:
        result = idx.search(args.query, args.k, prompts=[args.prompt] if args.prompt else None)
    if args.json:
        print(json.dumps(result, allow_nan=False))   # standard JSON only
        return 0
    for n, r in enumerate(result["results"], start=1):
        where = "" if r["start"] is None else f"  {r['start']:.2f}-{r['end']:.2f}s"
        print(f"{n:>3}. {r['score']:.4f}  {r['video']}{where}")
    if not result["results"]:
        print("(the index holds no searchable entries)")
    return 0


def cmd_tag(args) -> int:
    from ..index import VideoIndex
    check_numbers(("--topk", args.topk, 1))
    if args.out:  # the output rule, before the index is opened or any tag computed
        from ..index.storage import check_tags_output
        check_tags_output(args.out, args.overwrite)
    idx = VideoIndex.open(args.dir, **_index_options(args))
    records = idx.iter_tags(args.labels, args.topk, prompts=args.prompts, classifier=args.classifier)
    if args.out:
        from ..index import write_tags
        n = write_tags(records, args.out, overwrite=args.overwrite)
        print(f"{args.out}: top-{args.topk} labels of {count(n, 'entry', 'entries')}")
    else:
        for r in records:
            if args.json:
                print(json.dumps(r, allow_nan=False))
                continue
            where = "" if r.get("start") is None else f"  {r['start']:.2f}-{r['end']:.2f}s"
            print(f"{r['video']}{where}")
            width = max(len(t["label"]) for t in r["top"])
            for k, t in enumerate(r["top"], start=1):
                print(f"  {k:>2}. {t['label']:<{width}}  {100 * t['score']:6.2f}%")
    failed = idx.info["current"]["failed"]
    if failed:
        print(f"note: {count(failed, 'video')} failed to embed when the index was built (see `text4vis index info "
              f"{args.dir}`)", file=sys.stderr)
    return 0


def cmd_info(args) -> int:
    from ..index import VideoIndex
    s = VideoIndex.open(args.dir).summary()
    if args.json:
        print(json.dumps(s, indent=1, allow_nan=False))
        return 0
    m, vi = s["model"], s["vector_index"]
    per = "video" if s["entries_per"] == "video" else f"window of {s['window']:g} s every {s['stride']:g} s"
    print(f"{s['index']}")
    print(f"  videos     {s['videos']} ({s['failed']} failed), {count(s['embedded'], 'searchable entry', 'searchable entries')} "
          f"(one per {per})")
    print(f"  model      {m.get('checkpoint') or m.get('clip') or m.get('source')}"
          f"{'  sha256 ' + m['checkpoint_sha256'][:16] if m.get('checkpoint_sha256') else ''}; head {m['head']}, "
          f"{m['frames']} frames, width {m['embedding_width']}, prompts {m['prompts']}")
    extra = "" if vi["type"] == "flat" else f" nlist {vi['nlist']}, nprobe {vi['nprobe']}, re-rank x{vi['rerank']}"
    print(f"  vectors    {s['dtype']}, {vi['type']}{extra}; {count(s['shards'], 'shard')}; {s['disk_bytes'] / 2**20:.1f} MiB on disk")
    if s["failures"]:
        print(f"  failures   {len(s['failures'])}:")
        for f in s["failures"]:
            print(f"    {f['error']}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("index", help="a searchable video collection: build, search, tag, info", formatter_class=RAW,
                       description="Embed a video collection once, then search it with any sentence or video and "
                                   "tag it with any label set, without decoding it again.",
                       epilog="examples:\n  text4vis index build videos/ --out my-index --clip ViT-B/16\n"
                              "  text4vis index search my-index \"someone flipping a pancake\"\n"
                              "  text4vis index tag my-index --labels k400 --json\n  text4vis index info my-index")
    isub = p.add_subparsers(dest="index_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    b = isub.add_parser("build", help="embed videos into an index folder (resumable, incremental, torchrun)",
                        description="Embed videos into the index folder --out: embedding shards, Parquet metadata, "
                                    "a FAISS vector index and index.json naming the model.",
                        epilog=EXAMPLES_BUILD, formatter_class=RAW)
    b.add_argument("inputs", nargs="+", help="video files, folders and list files")
    b.add_argument("--out", required=True, metavar="DIR", help="index folder (new, empty, or an index to add to)")
    add_model_args(b)
    b.add_argument("--runtime", choices=RUNTIMES, default="torch",
                   help="onnx: embed on ONNX Runtime's CPU provider from the checkpoint's model.onnx (onnx-int8: its "
                        "model.int8.onnx) (`text4vis "
                        "export`); the index is the same as with torch (default torch)")
    b.add_argument("--window", type=float, help="one entry per time window of this many seconds (default: one per video)")
    b.add_argument("--stride", type=float, help="seconds between window starts (default: the index's own when "
                                                "adding to one, else 2 as `timeline`)")
    b.add_argument("--shard-size", type=int, default=1000, help="videos per shard, the unit of resuming (default 1000)")
    b.add_argument("--batch-size", type=int, default=8, help="videos (windows) per forward pass (default 8)")
    b.add_argument("--workers", type=int, default=None, help="decoding processes (default: by CPU count)")
    b.add_argument("--dtype", choices=["float32", "float16"], default="float32",
                   help="stored embeddings: float32 (tag equals predict) or float16 (half the disk) (default float32)")
    b.add_argument("--vector-index", choices=["auto", "flat", "ivf-sq8", "ivf-pq"], default="auto",
                   help="auto: exact (flat) below --exact-below entries, else IVF with 8-bit scalar quantised "
                        "vectors; ivf-pq: product codes (smallest); compressed ones re-rank exactly (default auto)")
    b.add_argument("--exact-below", type=int, default=100_000, help="auto uses exact search below this many entries (default 100000)")
    b.add_argument("--nlist", type=int, help="IVF cells (default: about sqrt(entries))")
    b.add_argument("--nprobe", type=int, help="IVF cells searched per query (default: max(8, nlist/64))")
    b.add_argument("--untrusted", action="store_true",
                   help="the inputs come from someone else (a downloaded list, a shared folder): open only "
                        "self-contained video files, so that no playlist or reference file (HLS, concat, ...) "
                        "can make FFmpeg read other files; each such input is a failed input")
    b.add_argument("--quiet", action="store_true", help="no progress bar (there is none unless stderr is a terminal)")
    add_ray_args(b, "this process and its decoding workers (torchrun for several)", "the same index byte for byte")
    b.set_defaults(func=cmd_build, command_name="index build")

    s = isub.add_parser("search", help="the videos (windows) closest to a sentence or a video",
                        description="Rank an index by a text query (the model's text tower on the prompt template) or "
                                    "by a video (--like). Uses the model recorded in the index; pass model options "
                                    "only to point at a moved file.", epilog=EXAMPLES_SEARCH, formatter_class=RAW)
    s.add_argument("dir", metavar="DIR", help="index folder")
    s.add_argument("query", nargs="?", help="text query")
    s.add_argument("--like", metavar="VIDEO", help="search by a video instead of text")
    s.add_argument("-k", type=int, default=10, help="results (default 10)")
    s.add_argument("--prompt", help='prompt template with {} for the query (default: the index\'s recorded prompts, '
                                    'e.g. "a video of a person {}."; "{}" uses the query as it is)')
    s.add_argument("--nprobe", type=int, help="IVF cells to search (default: the index's)")
    s.add_argument("--json", action="store_true", help='one JSON object {"query", "results": [{"video", "start", "end", "score"}]}')
    _moved_model_args(s)
    s.set_defaults(func=cmd_search, command_name="index search", param_flags={"video": "--like"}, takes_extra=True)

    t = isub.add_parser("tag", help="top-k labels of every indexed video from the stored embeddings",
                        description="Classify every entry of an index with any label set, from the stored embeddings "
                                    "alone (no decoding). Per-video entries get exactly the numbers of "
                                    "`predict --views 1x1` with the same model, labels and prompts.",
                        epilog=EXAMPLES_TAG, formatter_class=RAW)
    t.add_argument("dir", metavar="DIR", help="index folder")
    t.add_argument("--labels", help="label set: k400, k600, ucf101, hmdb51, anet, ssv2, or a file (default: the model's)")
    t.add_argument("--prompts", nargs="+", metavar="TEMPLATE", help="prompt templates (default: the index's recorded "
                                                                     "prompts, as search)")
    t.add_argument("--classifier", help="a stored classifier file instead of --labels")
    t.add_argument("--topk", type=int, default=5, help="labels per entry (default 5)")
    t.add_argument("--json", action="store_true", help='JSON Lines {"video", "top": [{"label", "score"}]} per entry')
    t.add_argument("--out", metavar="FILE.parquet", help="write the tags to a Parquet file instead (never replaces "
                                                         "a file that is not a tag table text4vis wrote)")
    t.add_argument("--overwrite", action="store_true", help="replace --out even if it is not a text4vis tag table")
    _moved_model_args(t)
    t.set_defaults(func=cmd_tag, command_name="index tag")

    i = isub.add_parser("info", help="counts, model, vector index and failed videos of an index",
                        description="What an index holds: counts, the model, settings, disk size and every failure.",
                        epilog="example:\n  text4vis index info my-index --json", formatter_class=RAW)
    i.add_argument("dir", metavar="DIR", help="index folder")
    i.add_argument("--json", action="store_true", help="print JSON")
    i.set_defaults(func=cmd_info, command_name="index info")


def _moved_model_args(p) -> None:
    g = p.add_argument_group("model (default: the one recorded in the index)")
    g.add_argument("--checkpoint", help="where the index's checkpoint is now, if it moved")
    g.add_argument("--clip", help="where the index's CLIP file is now, if it moved")
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: auto)")
    from ..devices import PRECISIONS
    g.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="GPU compute precision (default auto); the CPU computes in fp32")
