"""Short names that tell several inputs apart (plot panels, table rows)."""
from __future__ import annotations

import os
from pathlib import Path


def short_names(paths: list[str]) -> list[str]:
    """The shortest path suffix that tells each input apart from the others, after dropping the trailing
    parts they all share: [runs/a/best.safetensors, runs/b/best.safetensors] -> [a, b];
    [cls/k400.safetensors, runs/x/best.safetensors] -> [k400.safetensors, best.safetensors]. One input:
    its base name. The same path twice: the paths as given."""
    given = [os.fspath(p) for p in paths]
    full = [os.path.abspath(p) for p in given]
    if len(given) < 2:
        return [os.path.basename(p.rstrip("/\\")) or p for p in given]
    if len(set(full)) < len(full):
        return given
    parts = [Path(p).parts for p in full]
    while all(len(x) > 2 for x in parts) and len({x[-1] for x in parts}) == 1:  # shared file or folder name
        parts = [x[:-1] for x in parts]
    names = []
    for x in parts:
        for k in range(1, len(x) + 1):
            if sum(1 for other in parts if other[-k:] == x[-k:]) == 1:
                break
        names.append("/".join(x[-k:]))
    return names
