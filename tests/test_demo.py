"""`text4vis demo --quick`: the offline end-to-end demo runs through the CLI and leaves a complete report.

One quick demo run (about a minute on 2 CPU cores) is shared by every test here.
"""
from __future__ import annotations

import json
import re
import struct
import zlib
from pathlib import Path

import pytest

from text4vis.cli import main as cli_main
from text4vis.demo import ARMS

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "report"
    assert cli_main(["demo", "--quick", "--out", str(out)]) == 0
    return out


def _png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG, after checking its signature, IHDR and that every chunk's CRC holds."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert zlib.crc32(kind + body) & 0xFFFFFFFF == crc, f"{path.name}: bad CRC in {kind!r}"
        chunks.append(kind)
        pos += 12 + length
    assert chunks[0] == b"IHDR" and chunks[-1] == b"IEND" and b"IDAT" in chunks, f"{path.name}: incomplete PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_report_folder_is_complete(quick_demo):
    for name in ("report.md", "results.json", "new_clip.mp4", "work/init_clip.pt", "data/train.txt",
                 "data/val.txt", "data/zeroshot_val.txt"):
        assert (quick_demo / name).is_file(), name
    report = (quick_demo / "report.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert len(images) >= 6
    for rel in images:
        path = quick_demo / rel
        assert path.is_file(), f"report.md references {rel}, which is missing"
        assert path.stat().st_size > 0
        width, height = _png_size(path)
        assert width > 100 and height > 100, (rel, width, height)


def test_results_table_has_all_four_arms(quick_demo):
    report = (quick_demo / "report.md").read_text()
    table = [line for line in report.splitlines() if line.startswith("| (")]
    for arm in ARMS:
        assert any(line.startswith(f"| ({arm.key}) {arm.title}") for line in table), arm
    header = next(line for line in report.splitlines() if line.startswith("| arm ") and "zero-shot" in line)
    for column in ("final top-1", "2-shot top-1", "zero-shot top-1", "train time"):
        assert column in header


def test_results_json_numbers(quick_demo):
    r = json.loads((quick_demo / "results.json").read_text())
    assert set(r["arms"]) == {a.key for a in ARMS}
    n_seen, n_held = len(r["seen_classes"]), len(r["heldout_classes"])
    assert n_held >= 2 and r["chance_zeroshot"] == pytest.approx(1 / n_held)
    assert r["chance_seen"] == pytest.approx(1 / n_seen)
    for key, arm in r["arms"].items():
        for field in ("final_top1", "best_top1", "fewshot_top1", "zeroshot_top1"):
            assert 0.0 <= arm[field] <= 1.0, (key, field)
        assert len(arm["val_curve"]) == r["settings"]["epochs"]      # evaluated every epoch
        assert arm["loss_curve"] and arm["train_seconds"] > 0
    assert r["prediction"]["true"] in r["seen_classes"]
    assert len(r["prediction"]["top3"]) == min(3, n_seen)


def test_minilm_arm_beats_chance_on_seen_classes(quick_demo):
    r = json.loads((quick_demo / "results.json").read_text())
    lm = r["arms"]["a"]
    assert lm["final_top1"] > r["chance_seen"], lm["val_curve"]      # last epoch, on every seen class


def test_demo_refuses_to_replace_folders_it_did_not_write(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mine.txt").write_text("not the demo's\n")
    assert cli_main(["demo", "--quick", "--out", str(tmp_path)]) == 2
    assert "not written by `text4vis demo`" in capsys.readouterr().err
    assert (tmp_path / "data" / "mine.txt").is_file()
