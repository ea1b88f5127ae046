"""`text4vis check-data`: every entry of a config's lists is read; problems reported, counted, cleaned."""
from __future__ import annotations

import os

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import write_video
from text4vis import cli
from text4vis.train.check_data import check_config
from text4vis.train.config import load_config


def frames(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (n, 32, 32, 3), dtype=np.uint8)


def frame_folder(path, n: int, seed: int = 0) -> None:
    os.makedirs(path)
    for i, f in enumerate(frames(n, seed)):
        Image.fromarray(f).save(os.path.join(path, f"img_{i + 1:05d}.jpg"))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A list with two good videos, a good frame folder, and one of each problem."""
    root = tmp_path_factory.mktemp("checkdata")
    for i in range(3):
        write_video(str(root / f"good{i}.mp4"), frames(8, i))
    (root / "text.mp4").write_text("not a video at all\n")
    (root / "zero.mp4").write_bytes(b"")
    frame_folder(root / "frames_ok", 8, 1)
    frame_folder(root / "frames_short", 5, 2)
    os.makedirs(root / "frames_empty")
    (root / "labels.csv").write_text("id,name\n0,a\n1,b\n2,c\n3,d\n")
    train = ["good0.mp4 0",             # 1 ok
             "missing.mp4 1",           # 2 missing
             "text.mp4 2",              # 3 does not decode
             "frames_ok 8 3",           # 4 ok
             "frames_short 8 1",        # 5 folder has 5 frames, not 8
             "good1.mp4 9",             # 6 label outside 0..3
             "zero.mp4 0",              # 7 does not decode (0 bytes)
             "frames_empty 4 2"]        # 8 no frames at all
    (root / "train.txt").write_text("\n".join(train) + "\n")
    (root / "val.txt").write_text("good2.mp4 1\nfrm/gone 8 0\n")
    config = {"data": {"train_list": str(root / "train.txt"), "train_root": str(root),
                       "val_list": str(root / "val.txt"), "val_root": str(root), "labels": str(root / "labels.csv")}}
    (root / "cfg.yaml").write_text(yaml.safe_dump(config))
    return root


@pytest.mark.parametrize("workers", [1, 2])
def test_each_problem_reported_counted_and_cleaned(data, workers, tmp_path, capsys):
    clean = tmp_path / "clean"
    rc = cli.main(["check-data", "--config", str(data / "cfg.yaml"), "--workers", str(workers),
                   "--write-clean", str(clean)])
    out, err = capsys.readouterr()
    assert rc == 1
    train = str(data / "train.txt")
    problems = [line for line in err.splitlines() if line.split(":")[0] in ("missing", "broken", "frames", "label")]
    assert len(problems) == 7
    assert f"missing: {train}:2: {data / 'missing.mp4'} not found" in err
    assert f"broken: {train}:3: {data / 'text.mp4'}: not a readable video" in err
    assert f"frames: {train}:5: list says 8 frames, folder has 5" in err
    assert f"label: {train}:6: label id 9 outside 0..3" in err
    assert f"broken: {train}:7: {data / 'zero.mp4'}: empty file" in err
    assert f"broken: {train}:8: {data / 'frames_empty'} has no img_{{:05d}}.jpg frames" in err
    assert f"missing: {data / 'val.txt'}:2: {data / 'frm' / 'gone'} not found" in err
    assert ("train: 8 entries, 2 ok, 1 missing, 3 do not decode, 1 frame counts differ, "
            "1 labels out of range") in out
    assert "val: 2 entries, 1 ok, 1 missing, 0 do not decode, 0 frame counts differ, 0 labels out of range" in out
    # the cleaned lists: broken entries gone, the frame count corrected
    assert (clean / "train.txt").read_text().splitlines() == ["good0.mp4 0", "frames_ok 8 3", "frames_short 5 1"]
    assert (clean / "val.txt").read_text().splitlines() == ["good2.mp4 1"]
    # ... and they check clean
    cfg = yaml.safe_load((data / "cfg.yaml").read_text())
    cfg["data"].update(train_list=str(clean / "train.txt"), val_list=str(clean / "val.txt"))
    (tmp_path / "clean.yaml").write_text(yaml.safe_dump(cfg))
    assert cli.main(["check-data", "--config", str(tmp_path / "clean.yaml"), "--workers", "1"]) == 0
    out, err = capsys.readouterr()
    assert "train: 3 entries, 3 ok" in out and "val: 1 entries, 1 ok" in out
    assert not err.strip()


def test_report_counts(data):
    cfg, _ = load_config(str(data / "cfg.yaml"), ["data.val_list="])
    report = check_config(cfg, workers=1)
    assert report["problems"] == 6
    assert report["splits"] == {"train": {"ok": 2, "missing": 1, "broken": 3, "frames": 1, "label": 1, "total": 8}}


def test_same_list_name_for_both_splits_is_not_overwritten(data, tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "list.txt").write_text("good0.mp4 0\nmissing.mp4 1\n")
    (tmp_path / "b" / "list.txt").write_text("good1.mp4 2\n")
    cfg, _ = load_config(None, [f"data.train_list={tmp_path / 'a' / 'list.txt'}", f"data.train_root={data}",
                                f"data.val_list={tmp_path / 'b' / 'list.txt'}", f"data.val_root={data}"])
    report = check_config(cfg, workers=1, clean_dir=str(tmp_path / "clean"))
    assert report["problems"] == 1
    assert (tmp_path / "clean" / "train_list.txt").read_text() == "good0.mp4 0\n"
    assert (tmp_path / "clean" / "val_list.txt").read_text() == "good1.mp4 2\n"


def test_csv_and_class_folders(data, tmp_path, capsys):
    (tmp_path / "train.csv").write_text("path,label\ngood0.mp4,a\ntext.mp4,c\ngood1.mp4,3\n")
    tree = tmp_path / "tree"
    (tree / "walk").mkdir(parents=True)
    (tree / "run").mkdir()
    os.link(data / "good2.mp4", tree / "walk" / "v1.mp4")
    (tree / "run" / "v2.mp4").write_text("no")
    cfg, _ = load_config(None, [f"data.train_list={tmp_path / 'train.csv'}", f"data.train_root={data}",
                                f"data.labels={data / 'labels.csv'}", f"data.val_list={tree}"])
    report = check_config(cfg, workers=1, clean_dir=str(tmp_path / "clean"))
    assert report["splits"]["train"].pop("clean_list") == str(tmp_path / "clean" / "train.csv")
    assert report["splits"]["train"] == {"ok": 2, "missing": 0, "broken": 1, "frames": 0, "label": 0, "total": 3}
    assert report["splits"]["val"]["broken"] == 1 and report["splits"]["val"]["ok"] == 1
    assert f"broken: {tree / 'run' / 'v2.mp4'}: not a readable video" in capsys.readouterr().err
    assert (tmp_path / "clean" / "train.csv").read_text().splitlines() == ["path,label", "good0.mp4,a", "good1.mp4,3"]


def test_unusable_config_is_a_usage_error(data, tmp_path, capsys):
    (tmp_path / "bad.csv").write_text("path,label\ngood0.mp4,nosuchclass\n")
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump({"data": {"train_list": str(tmp_path / "bad.csv"),
                                                                "labels": str(data / "labels.csv")}}))
    assert cli.main(["check-data", "--config", str(tmp_path / "cfg.yaml"), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'bad.csv'}:2: label 'nosuchclass' is neither a class id nor a class name" in err
    (tmp_path / "empty.yaml").write_text("data:\n  workers: 1\n")
    assert cli.main(["check-data", "--config", str(tmp_path / "empty.yaml")]) == 2
    assert "names no data.train_list or data.val_list" in capsys.readouterr().err
