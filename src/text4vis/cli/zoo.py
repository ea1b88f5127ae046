"""`text4vis convert` and `text4vis push-to-hub`: the model zoo as Hugging Face-style folders."""
from __future__ import annotations

import argparse
import json

RAW = argparse.RawDescriptionHelpFormatter

EXAMPLES_CONVERT = """examples:
  text4vis convert k400-vitb-16-f8.pt --clip ViT-B/16 --labels k400 --out k400-vitb16-f8/
  text4vis convert k400-vitb-16-f8.pt --out k400-vitb16-f8/      # a published file: its CLIP, labels, frames
  text4vis convert runs/x/best.safetensors --out my-model/ --hub-id me/my-model
  text4vis convert --list                                        # the published checkpoints text4vis knows
then:
  text4vis predict clip.mp4 --checkpoint k400-vitb16-f8/          # no --clip: the folder is self-contained
  text4vis push-to-hub k400-vitb16-f8/ me/text4vis-k400-vitb16-f8
"""

EXAMPLES_PUSH = """examples:
  text4vis push-to-hub k400-vitb16-f8/ me/text4vis-k400-vitb16-f8 --dry-run      # list what would go up
  text4vis push-to-hub k400-vitb16-f8/ me/text4vis-k400-vitb16-f8 --private
  text4vis push-to-hub k400-vitb16-f8/ me/text4vis-k400-vitb16-f8 --revision v1
then: --checkpoint hf-hub:me/text4vis-k400-vitb16-f8[@v1]
Authentication: huggingface_hub's own (HF_TOKEN, or `hf auth login`).
"""


def cmd_convert(args) -> int:
    from ..errors import UsageError
    if args.list:
        from ..zoo import zoo_table
        for row in zoo_table():
            print(f"{row['name']:<30} {row['file'] or '(file name not published)':<24} {row['clip']:<15} "
                  f"{row['frames']}x{row['crops']}x{row['clips']}  {row['metric']} {row['value']}")
        return 0
    if not args.source or not args.out:
        raise UsageError("give a checkpoint and --out FOLDER (or --list)")
    from ..zoo import convert
    config = convert(args.source, args.out, clip=args.clip, labels=args.labels, frames=args.frames,
                     prompts=args.prompts, zoo=args.zoo, hub_id=args.hub_id)
    pub = config["published"]
    print(f"{args.out}: model.safetensors, config.json, README.md ({config['architecture']['clip']}, "
          f"{config['architecture']['head']} head, {config['num_frames']} frames, {config['input_size']}px, "
          f"{config['labels']['num_classes']} classes)")
    if pub:
        print(f"published: {pub['metric']} {pub['value']}% on {pub['dataset']}, {pub['views']} ({pub['source']})"
              + ("" if pub["verified"] else "; recognised by name only, so unverified for this file (the card says so)"))
    else:
        print("published: none known for this file (the card says so)")
    return 0


def cmd_push(args) -> int:
    from ..zoo import push_to_hub
    result = push_to_hub(args.folder, args.repo_id, private=args.private, revision=args.revision,
                         dry_run=args.dry_run, commit_message=args.message, include=args.include or ())
    if args.json:
        print(json.dumps(result))
        return 0
    verb = "would upload" if args.dry_run else "uploaded"
    print(f"{verb} {len(result['files'])} files ({result['bytes'] / 1e6:.1f} MB) to {result['repo_id']}"
          f"@{result['revision']}{' (private)' if args.private else ''}:")
    for f in result["files"]:
        print(f"  {f}")
    if result["left_out"]:
        print(f"left out (not written by text4vis; --include PATTERN to add): {', '.join(result['left_out'])}")
    if not args.dry_run:
        print(f"load it with --checkpoint hf-hub:{result['repo_id']}"
              + (f"@{args.revision}" if args.revision else ""))
    return 0


def register(sub) -> None:
    p = sub.add_parser("convert", help="turn a checkpoint into a self-describing folder (safetensors, config, card)",
                       formatter_class=RAW, epilog=EXAMPLES_CONVERT,
                       description="Write a Hugging Face-style folder: model.safetensors (self-contained: image "
                                   "tower, head, classifier, text tower), config.json (architecture, head, frames, "
                                   "input size, preprocessing, labels, prompts, source file hash) and README.md "
                                   "(model card: published accuracy, protocol, recipe, licence, how to load, the "
                                   "eval command). The folder works everywhere a checkpoint does. For the published "
                                   "Text4Vis files (by file name, or --zoo) --clip, --labels and --frames default "
                                   "to the published ones.")
    p.add_argument("source", nargs="?", help="original Text4Vis .pt, text4vis .safetensors, folder or hf-hub:ID")
    p.add_argument("--out", help="output folder (new, or an earlier converted folder to overwrite)")
    p.add_argument("--clip", help="CLIP towers the checkpoint was trained from (name or local file); "
                                  "default: the zoo entry's, or the checkpoint's own")
    p.add_argument("--labels", help="label set or file (default: the zoo entry's, or the checkpoint's own)")
    p.add_argument("--prompts", nargs="+", metavar="TEMPLATE", help='prompt templates (default "a video of a person {}.")')
    p.add_argument("--frames", type=int, help="frames per clip stored with the model (default: the zoo entry's, else 8)")
    p.add_argument("--zoo", metavar="NAME", help="the published checkpoint this file is (default: by file name)")
    p.add_argument("--hub-id", metavar="ORG/NAME", help="the hub repository it will live in (used in the card)")
    p.add_argument("--list", action="store_true", help="list the published checkpoints and exit")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("push-to-hub", help="upload a converted folder to the Hugging Face Hub",
                       formatter_class=RAW, epilog=EXAMPLES_PUSH,
                       description="Create the repository if needed and upload the files text4vis wrote into a "
                                   "converted folder (model.safetensors, config.json, README.md, model.onnx, "
                                   "model.int8.onnx) with huggingface_hub's HfApi.create_repo + upload_folder. Any "
                                   "other file (a token, a log, a rejected export) stays here unless --include "
                                   "names it; the list is printed either way.")
    p.add_argument("folder", help="a folder written by `text4vis convert`")
    p.add_argument("repo_id", metavar="ORG/NAME", help="hub repository id, checked as huggingface_hub checks it")
    p.add_argument("--private", action="store_true", help="create the repository private (default: public)")
    p.add_argument("--revision", help="branch to upload to (created if missing; default main)")
    p.add_argument("--message", help="commit message (default: 'text4vis push-to-hub')")
    p.add_argument("--dry-run", action="store_true", help="only list the files that would be uploaded")
    p.add_argument("--include", action="append", metavar="PATTERN",
                   help="also upload the files matching this glob, relative to the folder (repeatable)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_push)
