"""`text4vis demo --quick`: pretraining, transfer in the paper's arms, and a complete report, through the CLI.

One quick demo run (about a minute on 2 idle CPU cores) is shared by every test here.
"""
from __future__ import annotations

import json
import re
import struct
import zlib
from pathlib import Path

import pytest

from text4vis.cli import main as cli_main
from text4vis.demo.run import QUICK, active_arms

pytestmark = [pytest.mark.slow]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
VERDICTS = {"reproduced", "not reproduced", "opposite", "not shown (within noise)"}


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


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def test_report_folder_is_complete(quick_demo):
    for name in ("report.md", "results.json", "new_clip.mp4", "data/train.txt", "data/val.txt",
                 "data/zeroshot_val.txt", "work/classifiers/text_seen.safetensors",
                 "work/runs/seed0/a_full/last.safetensors", "work/runs/seed0/a_2shot/metrics.jsonl"):
        assert (quick_demo / name).is_file(), name
    (pre,) = [p for p in (quick_demo / "pretrain").iterdir() if p.name.startswith("text-")]
    for name in ("clip.pt", "text_head.pt", "pretrain.json"):
        assert (pre / name).is_file(), name
    report = (quick_demo / "report.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert len(images) >= 7
    for rel in images:
        path = quick_demo / rel
        assert path.is_file(), f"report.md references {rel}, which is missing"
        width, height = _png_size(path)
        assert width > 100 and height > 100, (rel, width, height)


def test_report_lays_out_the_papers_two_tables(quick_demo):
    report = (quick_demo / "report.md").read_text()
    lines = report.splitlines()
    vision = {ln.split("|")[1].strip(): ln for ln in lines if re.match(r"\| (zero-shot|2-shot|full) ", ln)}
    assert set(vision) == {"zero-shot", "2-shot", "full"}
    for setting, paper in (("zero-shot", ("0.2", "54.2")), ("2-shot", ("43.6", "66.4")), ("full", ("75.27", "80.13"))):
        cells = [c.strip() for c in vision[setting].split("|")[1:-1]]
        assert cells[1:3] == list(paper), cells
    assert "by construction" in vision["zero-shot"] and "(chance 50.0%)" in vision["zero-shot"]   # 2 held out
    for source, paper in (("random", "59.3"), ("orthogonal", "59.4"), ("LDA", "80.8"), ("CLIP text", "81.5")):
        row = next(ln for ln in lines if ln.startswith(f"| {source}"))
        assert f"| {paper} " in row, row
    # the claims, each with a verdict, and the per-arm table
    claims = [ln for ln in lines if ln.startswith("| ") and ln.rstrip().endswith("** |")]
    assert len(claims) >= 6
    for ln in claims:
        assert re.search(r"\*\*(.+)\*\* \|$", ln.rstrip()).group(1) in VERDICTS, ln
    for arm in active_arms(QUICK):
        assert any(ln.startswith(f"| ({arm.key}) {arm.title}") for ln in lines), arm


def test_results_json_numbers(quick_demo):
    r = _results(quick_demo)
    keys = {a.key for a in active_arms(QUICK)}
    assert set(r["arms"]) == keys == {"a", "b", "c", "d", "e"}
    seeds, epochs = r["settings"]["seeds"], r["settings"]["epochs"]
    n_held = len(r["heldout_classes"])
    assert n_held == 2 and r["chance_zeroshot"] == pytest.approx(1 / n_held)
    for key, arm in r["arms"].items():
        for field in ("final_top1", "fewshot_top1", "first_epoch_top1", "mean_curve_top1"):
            assert arm[field]["n"] == seeds and 0.0 <= arm[field]["mean"] <= 1.0, (key, field)
        assert [len(c) for c in arm["val_curves"]] == [epochs] * seeds     # evaluated every epoch
        assert arm["val_curves"][0][-1][1] == pytest.approx(arm["final_top1"]["values"][0])
        zs = arm["zeroshot_top1"]
        if arm["classifier"] == "text":
            assert not arm["zeroshot_by_construction"] and zs["n"] == seeds
        else:   # no rows for unseen classes: chance, and said so
            assert arm["zeroshot_by_construction"] and zs["mean"] == pytest.approx(1 / n_held)
    pre = r["pretraining"]["text"]
    assert pre["settings"]["steps"] == r["settings"]["pretrain_steps"] and not pre["cached"]
    curve = [loss for _, loss in pre["loss_curve"]]
    assert curve[-1] < curve[0]                                          # the pretraining learned something
    assert r["prediction"]["true"] in r["seen_classes"] and len(r["prediction"]["top3"]) == 3
    # what report.md says is what results.json holds
    report = (quick_demo / "report.md").read_text()
    assert f"{100 * r['arms']['a']['final_top1']['mean']:.1f}" in report
    assert {c["verdict"] for c in r["claims"]} <= VERDICTS


def test_the_text_classifier_arm_is_above_chance(quick_demo):
    r = _results(quick_demo)
    a = r["arms"]["a"]
    assert a["final_top1"]["mean"] > r["chance_seen"], a["val_curves"]           # seen classes, full data
    assert a["zeroshot_top1"]["mean"] > r["chance_zeroshot"], a["zeroshot_top1"]  # classes never trained on


def test_demo_refuses_to_replace_folders_it_did_not_write(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mine.txt").write_text("not the demo's\n")
    assert cli_main(["demo", "--quick", "--out", str(tmp_path)]) == 2
    assert "not written by `text4vis demo`" in capsys.readouterr().err
    assert (tmp_path / "data" / "mine.txt").is_file()


def test_demo_rejects_bad_seed_counts(tmp_path, capsys):
    assert cli_main(["demo", "--quick", "--seeds", "0", "--out", str(tmp_path / "x")]) == 2
    assert "seeds" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
