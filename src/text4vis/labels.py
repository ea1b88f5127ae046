"""Class-name lists: the built-in label sets (package data) and user files.

Built in: k400, k600, ucf101, hmdb51, anet, ssv2, and the Kinetics-600 zero-shot splits
k600_zs_split1..3 (160 classes each). A file may be a CSV `id,name` with a header (the original
Text4Vis format), a CSV with the header `name`, or one name per line (the line index is the id);
other layouts are refused with the file and line (see parse_labels).
"""
from __future__ import annotations

from .errors import LabelsError

import csv
import io
import os
from importlib import resources

BUILTIN = {
    "k400": "k400.csv", "k600": "k600.txt", "ucf101": "ucf101.csv", "hmdb51": "hmdb51.csv",
    "anet": "anet.csv", "ssv2": "ssv2.txt",
    "k600_zs_split1": "k600_zs_split1.csv", "k600_zs_split2": "k600_zs_split2.csv",
    "k600_zs_split3": "k600_zs_split3.csv",
}




def load_labels(spec: str, option: str = "labels") -> list[str]:
    """Class names, index = class id, from a built-in name or a file (`option`: the parameter errors name)."""
    if spec in BUILTIN:
        text = resources.files("text4vis").joinpath("labels", BUILTIN[spec]).read_text(encoding="utf-8")
        return parse_labels(text, spec)
    if not os.path.isfile(spec):
        what = f"{option} {spec}" if option.startswith("-") else f"{option}={spec!r}"  # a CLI may pass its flag
        raise LabelsError(f"{what}: not a built-in label set ({', '.join(BUILTIN)}) nor a file")
    try:
        with open(spec, encoding="utf-8-sig") as f:
            text = f.read()
    except UnicodeDecodeError as exc:
        raise LabelsError(f"{spec}: not a text file (not UTF-8 at byte {exc.start})") from None
    return parse_labels(text, spec)


def parse_labels(text: str, source: str) -> list[str]:
    """Class names from a label file's text. Layouts: a CSV with the header `id,name` (then `id,name`
    rows, quoted names may hold commas), a CSV with the header `name` (one name per row, the row
    index is the id), or one name per line (the line index is the id; a `.csv` then holds one
    column). Any other layout is a LabelsError naming `source` and the line."""
    lines = text.splitlines()
    header = lines[0].strip().replace(" ", "").lower() if lines else ""
    if header == "id,name" or source.lower().endswith(".csv"):
        result = _parse_label_csv(text, source)
    else:  # plain text: names verbatim (SSv2's hold commas)
        result = [line.strip() for line in lines if line.strip()]
    check_labels(result, source)
    return result


def _parse_label_csv(text: str, source: str) -> list[str]:
    reader = csv.reader(io.StringIO(text))
    rows = [(reader.line_num, row) for row in reader if row and "".join(row).strip()]
    if not rows:
        return []
    head = [c.strip().lower() for c in rows[0][1]]
    columns = {("id", "name"): 2, ("name",): 1}.get(tuple(head))
    if columns is None:                # no header: one name per row
        if len(rows[0][1]) > 1:
            raise LabelsError(f"{source}:{rows[0][0]}: a label CSV starts with the header 'id,name' (or 'name'), "
                              f"or holds one name per line; got {','.join(rows[0][1])!r}")
        columns, body = 1, rows
    else:
        body = rows[1:]
    names: dict[int, str] = {}
    for lineno, row in body:
        if len(row) != columns:
            layout = "id,name" if columns == 2 else "one name"
            raise LabelsError(f"{source}:{lineno}: expected {columns} column(s) ({layout}), got {len(row)} columns: "
                              f"{','.join(row)!r} (quote a name that holds a comma)")
        if columns == 1:
            names[len(names)] = row[0].strip()
            continue
        try:
            idx = int(row[0])
        except ValueError:
            raise LabelsError(f"{source}:{lineno}: class id {row[0]!r} is not an integer") from None
        if idx in names:
            raise LabelsError(f"{source}:{lineno}: class id {idx} appears twice")
        names[idx] = row[1].strip()
    if sorted(names) != list(range(len(names))):
        raise LabelsError(f"{source}: class ids must be 0..{len(names) - 1} without gaps")
    return [names[i] for i in range(len(names))]


def check_labels(names: list[str], source: str) -> None:
    if not names:
        raise LabelsError(f"{source}: no class names")
    seen: dict[str, int] = {}
    for i, n in enumerate(names):
        if not n.strip():
            raise LabelsError(f"{source}: class {i} has an empty name")
        if n in seen:
            raise LabelsError(f"{source}: class name {n!r} appears twice (ids {seen[n]} and {i})")
        seen[n] = i


def resolve_labels(*specs: tuple[str, str | None]) -> list[str] | None:
    """The first label set given among (parameter name, spec) pairs, in order of precedence (an explicit
    argument, then a config's data.labels); None when none is given. Errors name that parameter."""
    for name, spec in specs:
        if spec:
            return load_labels(spec, name)
    return None
