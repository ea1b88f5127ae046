"""The `text4vis` command line: a thin layer over the library.

Exit codes: 0 success; 1 some inputs failed (each has its own one-line error); 2 usage or setup
error (bad arguments, missing weights, unusable label list, ...). Input problems never print a
traceback.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings

from ..errors import Text4VisError
from .common import flag_names, show_progress, with_flags

# Each module in this package registers its sub-commands with `register(sub)`; handlers import the
# library lazily, so `text4vis --help` stays light.
COMMAND_MODULES = ["predict", "timeline", "index", "serve", "train", "data", "evaluate", "classifier", "compare",
                   "bench", "demo", "zoo", "export", "watch"]


class _StatusLines(logging.Handler):
    """The library's INFO lines (logger "text4vis") as "text4vis: ..." on stderr, while a command runs."""

    def __init__(self):
        super().__init__(logging.INFO)

    def emit(self, record: logging.LogRecord) -> None:
        print(f"text4vis: {record.getMessage()}", file=sys.stderr, flush=True)


def _warning_printer(command: str, fallback, names: dict[str, str]):
    """The library's own warnings (Text4VisWarning) as one line "text4vis COMMAND: warning: ...", its
    parameters named as this command's flags; other libraries' warnings as Python shows them."""
    from ..errors import Text4VisWarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, Text4VisWarning):
            print(f"text4vis {command}: warning: {with_flags(str(message), names)}", file=sys.stderr)
        else:
            fallback(message, category, filename, lineno, file, line)
    return show


def _known_errors():
    return (Text4VisError,)


# ----------------------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="text4vis",
        description="Video recognition with CLIP towers and a frozen text classifier (Text4Vis).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `text4vis COMMAND --help` for each command's options and examples.")
    from .. import __version__
    parser.add_argument("--version", action="version", version=f"text4vis {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # a command that reads them itself says so (`index search DIR --like V "query"`: one clear line)
        if not getattr(args, "takes_extra", False):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.extra = extra
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    errors = _known_errors()
    args.flag_names = flag_names(parser, args)  # library messages name parameters; users read flags
    status = _StatusLines() if show_progress(args) else None  # "loading the model ...": the library's log lines
    log, level = logging.getLogger("text4vis"), logging.getLogger("text4vis").level
    if status:
        log.addHandler(status)
        log.setLevel(logging.INFO)
    command = getattr(args, "command_name", None) or args.command  # "index search": a sub-command says which
    try:
        with warnings.catch_warnings():  # the library's own warnings: one line each, as errors are
            warnings.showwarning = _warning_printer(command, warnings.showwarning, args.flag_names)
            return int(args.func(args) or 0)
    except errors as exc:
        print(f"text4vis {command}: error: {with_flags(str(exc), args.flag_names)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and closed: not an error
        sys.stdout = open(os.devnull, "w")
        return 0
    except OSError as exc:  # a path that cannot be read or written (permissions, a folder, a full disk, ...)
        if exc.filename is None:
            raise
        where = f"{exc.filename} -> {exc.filename2}" if exc.filename2 else exc.filename
        print(f"text4vis {command}: error: {where}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("text4vis: interrupted", file=sys.stderr)
        return 130
    finally:
        if status:
            log.removeHandler(status)
            log.setLevel(level)


if __name__ == "__main__":
    sys.exit(main())
