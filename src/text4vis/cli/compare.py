"""`text4vis compare`: one Markdown table from run and eval folders (library: train/runs.py)."""
from __future__ import annotations

import argparse
import os
import sys

RAW = argparse.RawDescriptionHelpFormatter


def add_compare(sub) -> None:
    p = sub.add_parser("compare", help="one Markdown table from several training runs or eval folders",
                       formatter_class=RAW,
                       description="Collect the results of run folders (config.yaml + metrics.jsonl) and/or eval "
                                   "folders (results.json) into one Markdown table: the paper's ablation tables.",
                       epilog="example:\n  text4vis compare runs/abl-* eval/zero-shot --out ablation.md")
    p.add_argument("folders", nargs="+")
    p.add_argument("--out", help="write the table to this Markdown file too (.md; an earlier table is replaced)")
    p.add_argument("--overwrite", action="store_true", help="replace --out even if it is not a compare table")
    p.set_defaults(func=cmd_compare)


HEADER = "| run | classifier | mode | head | shots | measured | top-1 | top-5 | zero-shot (half classes) |"
OLD_HEADER = "| run | classifier | mode | head | shots | top-1 | top-5 | zero-shot (half classes) |"


def _is_compare_table(path: str) -> bool:
    with open(path, encoding="utf-8") as f:
        return f.readline().rstrip("\n") in (HEADER, OLD_HEADER)


def cmd_compare(args) -> int:
    from ..files import atomic_write_text, check_output_file
    from ..train.runs import FolderError, run_summary
    from ..errors import UsageError
    if args.out:
        check_output_file(args.out, "out", (".md",), "a Markdown table", _is_compare_table, args.overwrite)
    rows, skipped = [], 0
    for folder in args.folders:
        try:
            r = run_summary(folder)
            if r is None:
                raise FolderError(f"{folder}: not a run folder (config.yaml + metrics.jsonl) nor an eval folder "
                                  f"(results.json)")
        except (FolderError, OSError) as exc:
            skipped += 1
            print(f"text4vis compare: warning: {exc}; skipped", file=sys.stderr)
            continue
        rows.append(dict(r, folder=folder))
    from ..names import short_names  # runs/*/full: each row named by what tells its folder apart
    for r, name in zip(rows, short_names([r["folder"] for r in rows])):
        r["name"] = name
    if not rows:
        raise UsageError("none of the folders holds a run (config.yaml + metrics.jsonl) or an eval (results.json)")
    fmt = lambda x: f"{100 * x:.2f}" if isinstance(x, (int, float)) else ""  # noqa: E731
    lines = [HEADER,
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:   # `measured`: training's 1x1 val and a multi-view eval are not the same protocol
        lines.append(f"| {r['name']} | {r['classifier']} | {r['mode']} | {r['head']} | {r['shot']} | {r['measured']} | "
                     f"{fmt(r['top1'])} | {fmt(r['top5'])} | {fmt(r['zero_shot_half'])} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        atomic_write_text(args.out, table + "\n")
    return 1 if skipped else 0


def register(sub) -> None:
    add_compare(sub)
