"""`text4vis export`: the video model as ONNX for ONNX Runtime on the CPU."""
from __future__ import annotations

import argparse
import json

EXAMPLES = """examples:
  text4vis export k400-vitb16-f8/ --format onnx                      # -> k400-vitb16-f8/model.onnx
  text4vis export k400-vitb16-f8/ --format onnx --video clip.mp4 --quantize int8
  text4vis export runs/x/best.safetensors --format onnx              # -> runs/x/best.onnx
then:
  text4vis predict clip.mp4 --checkpoint k400-vitb16-f8/ --runtime onnx
"""


def cmd_export(args) -> int:
    from ..deploy import PARITY_MIN_COS, export_onnx
    r = export_onnx(args.checkpoint, out=args.out, clip=args.clip, frames=args.frames, video=args.video,
                    quantize=args.quantize)
    if args.json:
        print(json.dumps(r))
        return 0
    print(f"{r['path']}: {r['bytes'] / 1e6:.1f} MB, frames [B, T, 3, {r['input_size']}, {r['input_size']}] "
          f"(dynamic batch and T, exported with T={r['frames']}) in {r['seconds']}s")
    print(f"parity with PyTorch on {r['video']}: cosine {r['cosine_min']:.7f} (>= {PARITY_MIN_COS}: ok)")
    if "int8_path" in r:
        print(f"{r['int8_path']}: {r['int8_bytes'] / 1e6:.1f} MB, int8 dynamic quantisation, cosine to PyTorch "
              f"{r['int8_cosine_min']:.5f}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("export", help="export the video model to ONNX (checked against PyTorch)",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES,
                       description="Write the video model (normalised frames [B, T, 3, S, S] -> L2-normalised "
                                   "video embedding, plus the raw embedding; batch and T dynamic) next to the "
                                   "checkpoint, then check it against PyTorch on a real clip (cosine >= 0.9999; "
                                   "below that the file is set aside and the command fails). `predict --runtime "
                                   "onnx` uses it.")
    p.add_argument("checkpoint", help="converted folder, text4vis .safetensors, original .pt (with --clip) or hf-hub:ID")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="export format (default onnx)")
    p.add_argument("--out", help="output file (default: FOLDER/model.onnx, or beside the checkpoint file)")
    p.add_argument("--clip", help="CLIP towers, for an original Text4Vis checkpoint")
    p.add_argument("--frames", type=int, help="T used for the parity check (default: the checkpoint's)")
    p.add_argument("--video", help="real clip for the parity check (default: a rendered synthetic clip)")
    p.add_argument("--quantize", choices=["int8"], help="also write an int8 dynamically quantised model (.int8.onnx)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_export)
