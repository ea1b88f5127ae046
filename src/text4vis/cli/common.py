"""What the command handlers share: the model options and the numeric-option check."""
from __future__ import annotations

import argparse
import sys

from ..errors import UsageError


def show_progress(args) -> bool:
    """Progress bars and status lines ("loading the model ...") go to stderr when it is a terminal, unless
    --quiet (in pipes and log files they would be noise)."""
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


def check_numbers(*checks) -> None:
    """Numeric options, each (option, value, least) or (option, value, least, most); None values are skipped.
    UsageError (one line, exit 2) on the first value out of range."""
    for name, value, least, *most in checks:
        if value is None:
            continue
        if not value >= least:  # also NaN
            raise UsageError(f"{name} must be at least {least} (got {value})")
        if most and value > most[0]:
            raise UsageError(f"{name} must be at most {most[0]} (got {value})")


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--checkpoint", help="text4vis checkpoint (.safetensors, self-contained) or original Text4Vis .pt")
    g.add_argument("--clip", help="CLIP towers: ViT-B/32, ViT-B/16, ViT-L/14, ViT-L/14-336px, RN50, "
                                   "open_clip MODEL:PRETRAINED, hf-hub:ID, or a local OpenAI/open_clip file "
                                   "(default: the checkpoint's own, else ViT-B/16)")
    g.add_argument("--labels", help="label set: k400, k600, ucf101, hmdb51, anet, ssv2, or a file "
                                     "(CSV id,name or one name per line); default: the checkpoint's, else k400")
    g.add_argument("--prompts", nargs="+", metavar="TEMPLATE",
                   help='prompt templates with {} for the class name (default: "a video of a person {}.")')
    g.add_argument("--classifier", help="a stored classifier file (from `text4vis classifier build`)")
    g.add_argument("--frames", type=int, help="frames per clip T (default: the checkpoint's, else 8)")
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: auto)")
    from ..config import PRECISIONS
    g.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="GPU compute precision: auto = bf16 autocast where supported (fastest); fp32 = the "
                        "reference test scripts' precision, to reproduce published numbers most closely "
                        "(default: auto; eval: evaluation.precision). The CPU always computes in fp32")
