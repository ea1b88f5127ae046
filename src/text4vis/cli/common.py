"""What the command handlers share: the model options, the numeric-option check, and the mapping of
the library's parameter names (`device='gpu'`) to this command's flags (`--device gpu`) in messages."""
from __future__ import annotations

import argparse
import ast
import re
import sys


# `name=VALUE` as library messages write a parameter: VALUE quoted (repr), bare, or absent
_PARAM = re.compile(r"(?<![\w.\-])([a-z_][\w.]*)=('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s,;:()'\"]*)")


def flag_names(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, str]:
    """Parameter name -> flag for the (sub-)command that was run: every long option of its parser (and of
    the sub-command run), by destination, plus the names its parser maps with set_defaults(param_flags=...)."""
    names: dict[str, str] = {}
    stack = [parser]
    while stack:
        p = stack.pop()
        names.update(p.get_default("param_flags") or {})
        if any(a.dest == "set" for a in p._actions):
            names.setdefault("overrides", "--set")  # load_config(path, overrides)
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                chosen = getattr(args, action.dest, None)
                if chosen in action.choices:
                    stack.append(action.choices[chosen])
            else:
                long = [o for o in action.option_strings if o.startswith("--")]
                if long and action.dest not in names:
                    names[action.dest] = long[0]
    return names


def with_flags(message: str, names: dict[str, str]) -> str:
    """A library message for the command line: `device='gpu'` -> `--device gpu` for the parameters this
    command has as flags (others stay as they are); a store_true value (`zero_shot=True`) is dropped."""
    def replace(m: re.Match) -> str:
        flag = names.get(m.group(1))
        if flag is None:
            return m.group(0)
        value = m.group(2)
        if value[:1] in "'\"":
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                pass
        return flag if value in ("", "True") else f"{flag} {value}"
    return _PARAM.sub(replace, message)


def show_progress(args) -> bool:
    """Progress bars and status lines ("loading the model ...") go to stderr when it is a terminal, unless
    --quiet (in pipes and log files they would be noise)."""
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--checkpoint", help="text4vis checkpoint (.safetensors, self-contained), a converted folder, "
                                         "hf-hub:ORG/NAME[@REVISION], or original Text4Vis .pt")
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
    from ..devices import PRECISIONS
    g.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="GPU compute precision: auto = bf16 autocast where supported (fastest); fp32 = the "
                        "reference test scripts' precision, to reproduce published numbers most closely "
                        "(default: auto; eval: evaluation.precision). The CPU always computes in fp32")


def add_ray_args(p: argparse.ArgumentParser, local: str, same: str) -> None:
    """--engine and the --ray-* options (Ray's own terms), for a command that runs on Ray Data (ray_data.py)."""
    r = p.add_argument_group("engine", "--engine ray: decode tasks and embedding actors on a Ray cluster (Ray Data)")
    r.add_argument("--engine", choices=["local", "ray"], default="local",
                   help=f"local: {local}; ray: a Ray Data pipeline, {same} (default local)")
    r.add_argument("--ray-address", help="Ray cluster to run on (default: RAY_ADDRESS, else a local Ray started "
                                         "for the run)")
    r.add_argument("--ray-num-cpus", type=float, default=1.0, help="CPUs per decode task (default 1)")
    r.add_argument("--ray-decode-concurrency", type=int,
                   help="decode tasks at a time (default: as many as the cluster's CPUs allow)")
    r.add_argument("--ray-concurrency", type=int, default=1, help="embedding actors, each holding the model (default 1)")
    r.add_argument("--ray-num-gpus", type=float, help="GPUs per embedding actor (default: 1 when the cluster has "
                                                      "GPUs, else 0)")
    r.add_argument("--ray-max-retries", type=int, default=3,
                   help="retries of a task whose worker died (a video that fails to decode is not retried) (default 3)")
    r.add_argument("--ray-max-restarts", type=int, default=3, help="restarts of an embedding actor that died (default 3)")


def ray_settings(args):
    """The --ray-* options as ray_data.RaySettings (None with --engine local)."""
    if args.engine != "ray":
        return None
    from ..ray_data import RaySettings
    return RaySettings(address=args.ray_address, num_cpus=args.ray_num_cpus, concurrency=args.ray_concurrency,
                       decode_concurrency=args.ray_decode_concurrency, num_gpus=args.ray_num_gpus,
                       max_retries=args.ray_max_retries, max_restarts=args.ray_max_restarts)
