"""`text4vis eval`: outputs that recompute exactly, the zero-shot protocol, multi-view aggregation,
two gloo processes under torchrun, and bad inputs. Tiny random-weight CLIP, 4 frames, 32x32
synthetic videos, CPU."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from conftest import TINY, original_text4vis_checkpoint, run_cli, tiny_openai_state_dict, tiny_state_dict_of
from text4vis import plots
from text4vis.train import metrics

FRAMES = 4
PROMPT = "a video of a person {}."


@pytest.fixture(scope="session")
def ev(tmp_path_factory):
    """12 classes (4 shapes x 3 motions), one 8-frame 32x32 val video each; tiny CLIP files; a config."""
    from text4vis.synthetic import make_benchmark
    d = tmp_path_factory.mktemp("eval")
    info = make_benchmark(d / "bench", shapes=["circle", "square", "triangle", "star"],
                          motions=["moving left", "moving right", "growing"], heldout=[],
                          train_per_class=1, val_per_class=1, num_frames=8, size=32, progress=False)
    sd = tiny_openai_state_dict(0)
    clip = str(d / "tiny_clip.pt")
    torch.save(sd, clip)
    ckpt = str(d / "orig_transf.pt")
    torch.save(original_text4vis_checkpoint(sd, "transf"), ckpt)
    cfg = {"data": {"val_list": str(info["val_list"]), "val_root": str(info["root"]),
                    "labels": str(info["labels_csv"]), "num_frames": FRAMES, "workers": 0},
           "model": {"clip": clip, "head": "transf"},
           "classifier": {"prompts": [PROMPT]},
           "evaluation": {"batch_size": 4}}
    config = str(d / "eval.yaml")
    with open(config, "w") as f:
        yaml.safe_dump(cfg, f)
    lines = open(info["val_list"]).read().splitlines()
    return {"dir": d, "info": info, "clip": clip, "sd": sd, "checkpoint": ckpt, "config": config,
            "names": info["classes"], "lines": lines, "root": str(info["root"])}


def write_list(ev, name: str, lines: list[str]) -> str:
    path = str(ev["dir"] / name)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def eval_args(ev, out, *extra) -> list[str]:
    # --checkpoint: an original Text4Vis checkpoint; its architecture from --clip, frames from the config
    return ["eval", "--config", ev["config"], "--checkpoint", ev["checkpoint"], "--clip", ev["clip"],
            "--out", str(out), "--quiet", "--workers", "0", *extra]


@pytest.fixture(scope="session")
def main_run(ev):
    out = ev["dir"] / "main"
    rc, stdout, stderr = run_cli(eval_args(ev, out, "--views", "2x3"))
    assert rc == 0, stderr
    return {"out": out, "stdout": stdout, "results": json.load(open(out / "results.json")),
            "pred": dict(np.load(out / "predictions.npz"))}


# ----------------------------------------------------------------------------- outputs

def test_results_json_fields(ev, main_run):
    r = main_run["results"]
    for key in ("top1", "top5", "mean_class_accuracy", "mAP", "num_videos", "num_failed", "views", "frames"):
        assert key in r, key
    assert r["views"] == "2x3" and r["frames"] == FRAMES   # frames: the config's, for an original checkpoint
    assert r["num_videos"] == 12 and r["num_failed"] == 0 and r["failed"] == []
    assert r["num_classes"] == 12 and r["protocol"] == "standard"
    assert r["precision"] == "fp32"                        # the CPU computes in fp32 whatever is asked
    for key in ("top1", "top5", "mean_class_accuracy", "mAP"):
        assert 0.0 <= r[key] <= 1.0
    assert r["top5"] >= r["top1"]
    assert "12 videos, 12 classes, views 2x3, 4 frames" in main_run["stdout"]


def test_predictions_npz_contents(ev, main_run):
    p = main_run["pred"]
    n, c, d = 12, 12, TINY["embed_dim"]
    assert list(p["videos"]) == [os.path.join(ev["root"], line.split()[0]) for line in ev["lines"]]
    assert p["labels"].tolist() == [int(line.split()[1]) for line in ev["lines"]]
    assert p["scores"].shape == (n, c) and p["embeddings"].shape == (n, d) and p["classifier"].shape == (c, d)
    np.testing.assert_allclose(p["scores"].sum(1), 1.0, atol=1e-5)
    assert (p["scores"] >= 0).all()
    np.testing.assert_allclose(np.linalg.norm(p["embeddings"], axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(p["classifier"], axis=1), 1.0, atol=1e-5)


def test_metrics_recompute_exactly(main_run):
    p, r = main_run["pred"], main_run["results"]
    again = metrics.summarize(p["scores"], p["labels"])
    for key in ("top1", "top5", "mean_class_accuracy", "mAP", "num_videos"):
        assert again[key] == r[key], key
    from text4vis.train.evaluate import recompute
    assert recompute(str(main_run["out"] / "predictions.npz")) == again


def test_scores_are_softmax_of_100_cosine(main_run):
    p = main_run["pred"]
    want = metrics.softmax(100.0 * p["embeddings"].astype(np.float64) @ p["classifier"].astype(np.float64).T)
    np.testing.assert_allclose(p["scores"], want, atol=2e-5)


def test_classifier_is_the_clip_text_classifier(ev, main_run):
    from text4vis.classifiers import text_classifier
    from text4vis.towers import load_towers
    want = text_classifier(load_towers(ev["clip"]), ev["names"], [PROMPT], cache=False).weight.numpy()
    np.testing.assert_allclose(main_run["pred"]["classifier"], want, atol=1e-6)


def test_per_class_csv_worst_first(ev, main_run):
    p = main_run["pred"]
    with open(main_run["out"] / "per_class.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12
    acc = [float(r["accuracy"]) for r in rows]
    assert acc == sorted(acc)
    want = metrics.per_class_report(p["scores"], p["labels"], ev["names"])
    assert [int(r["id"]) for r in rows] == [w["id"] for w in want]
    assert [r["name"] for r in rows] == [ev["names"][w["id"]] for w in want]
    for r, w in zip(rows, want):
        assert int(r["support"]) == w["support"] == 1
        assert float(r["accuracy"]) == pytest.approx(w["accuracy"])
        assert float(r["ap"]) == pytest.approx(w["ap"])


def test_confusion_png_and_pairs(ev, main_run):
    p = main_run["pred"]
    img = mpimg.imread(str(main_run["out"] / "confusion.png"))
    side = round(plots._square_size(12) * plots.DPI)
    assert abs(img.shape[0] - side) <= 1 and abs(img.shape[1] - side) <= 1
    conf = metrics.confusion_matrix(p["labels"], metrics.predictions(p["scores"]), 12)
    want = metrics.most_confused_pairs(conf, ev["names"], top=100)
    with open(main_run["out"] / "confused_pairs.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["true"], r["predicted"], int(r["count"])) for r in rows] == \
        [(w["true"], w["predicted"], w["count"]) for w in want]
    # every wrongly classified video is in exactly one pair
    assert sum(int(r["count"]) for r in rows) == int((metrics.predictions(p["scores"]) != p["labels"]).sum())


# ----------------------------------------------------------------------------- multi-view aggregation

def test_views_mean_of_raw_embeddings(ev, main_run):
    """--views 2x3: the video embedding is the L2-normalised mean of the RAW model.embed outputs of
    its 2 clips x 3 crops, computed here from the decoder, the sampling rule and the crops."""
    import text4vis
    from text4vis.sampling import view_indices
    from text4vis.transforms import to_tensor, test_views
    from text4vis.video import read_frames
    rec = text4vis.load(checkpoint=ev["checkpoint"], clip=ev["clip"], labels=ev["names"], prompts=[PROMPT],
                        frames=FRAMES, device="cpu")
    p = main_run["pred"]
    for row in (0, 5, 11):
        path = str(p["videos"][row])
        frames, n = read_frames(path, lambda n: [i for clip in view_indices(n, FRAMES, 2) for i in clip])
        assert n == 8
        clip = to_tensor(frames)
        views = []
        for k in range(2):
            views.extend(test_views(clip[k * FRAMES:(k + 1) * FRAMES], rec.input_size, 3))
        views = torch.stack(views)                                     # (6, T, 3, S, S)
        assert views.shape == (6, FRAMES, 3, 32, 32)
        with torch.no_grad():
            raw = rec.model.embed(views)                               # (6, D), not normalised
        assert not torch.allclose(raw.norm(dim=-1), torch.ones(6), atol=1e-3)  # so the rule matters
        want = F.normalize(raw.mean(0), dim=-1).numpy()
        np.testing.assert_allclose(p["embeddings"][row], want, atol=1e-5)
        # ... and not the mean of normalised views (a different number for raw embeddings of unequal norm)
        other = F.normalize(F.normalize(raw, dim=-1).mean(0), dim=-1).numpy()
        if np.abs(other - want).max() > 1e-4:
            assert np.abs(p["embeddings"][row] - other).max() > 1e-5


# ----------------------------------------------------------------------------- zero-shot protocol

def independent_half_classes(emb, labels, cls, splits=10):
    c = cls.shape[0]
    top1, top5, per_split = [], [], []
    for s in range(splits):
        np.random.seed(s)
        kept = np.random.permutation(c)[:c // 2]
        sel = [i for i in range(len(labels)) if labels[i] in kept]
        position = {int(k): j for j, k in enumerate(kept)}
        logits = 100.0 * emb[sel].astype(np.float64) @ cls[kept].astype(np.float64).T
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        hits1 = hits5 = 0
        for row, i in enumerate(sel):
            order = np.argsort(-probs[row], kind="stable")
            hits1 += int(order[0] == position[int(labels[i])])
            hits5 += int(position[int(labels[i])] in order[:5])
        top1.append(hits1 / len(sel))
        top5.append(hits5 / len(sel))
        per_split.append(sorted(int(k) for k in kept))
    return {"top1_mean": np.mean(top1), "top1_std": np.std(top1), "top5_mean": np.mean(top5),
            "top5_std": np.std(top5), "top1": top1, "top5": top5, "kept": per_split}


def test_zero_shot_half_classes(ev):
    out = ev["dir"] / "zs"
    rc, stdout, stderr = run_cli(eval_args(ev, out, "--zero-shot", "--views", "1x1"))
    assert rc == 0, stderr
    r = json.load(open(out / "results.json"))
    p = np.load(out / "predictions.npz")
    assert r["protocol"] == "zero-shot"
    z = r["half_classes"]
    want = independent_half_classes(p["embeddings"], p["labels"], p["classifier"])
    assert len(z["splits"]) == 10
    for key in ("top1_mean", "top1_std", "top5_mean", "top5_std"):
        assert z[key] == pytest.approx(want[key], abs=1e-12), key
    for s, split in enumerate(z["splits"]):
        assert sorted(split["classes"]) == want["kept"][s] and len(split["classes"]) == 6
        assert split["num_videos"] == 6
        assert split["top1"] == pytest.approx(want["top1"][s], abs=1e-12)
        assert split["top5"] == pytest.approx(want["top5"][s], abs=1e-12)
    assert any(t < 1.0 for t in want["top5"])                  # top-5 of 6 classes is informative here
    assert "zero-shot, half classes" in stdout


# ----------------------------------------------------------------------------- two processes (gloo)

@pytest.mark.slow
@pytest.mark.distributed
def test_two_process_eval_equals_single_process(ev):
    """torchrun with 2 gloo processes on a list of 7 entries (not divisible by 2; one of them a
    broken video): same videos in the same order, each once, the same failure, and the same
    numbers as one process."""
    broken = ev["dir"] / "broken_dist.mp4"
    broken.write_bytes(b"")
    val7 = write_list(ev, "val7.txt", ev["lines"][:3] + [f"{broken} 3"] + ev["lines"][3:6])
    single, dist_out = ev["dir"] / "single7", ev["dir"] / "dist7"
    rc, _, stderr = run_cli(eval_args(ev, single, "--val-list", val7, "--val-root", ev["root"], "--views", "2x1",
                                      "--zero-shot"))
    assert rc == 1, stderr
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TEXT4VIS_CACHE=os.environ["TEXT4VIS_CACHE"])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "text4vis",
           *eval_args(ev, dist_out, "--val-list", val7, "--val-root", ev["root"], "--views", "2x1", "--zero-shot")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]                  # 1: a video failed (on some rank)
    assert proc.stdout.count("6 videos, 12 classes") == 1, proc.stderr[-3000:]   # rank 0 reports, once
    assert "1 failed to decode" in proc.stdout
    a, b = np.load(single / "predictions.npz"), np.load(dist_out / "predictions.npz")
    assert list(b["videos"]) == list(a["videos"]) and len(a["videos"]) == 6
    assert len(set(b["videos"].tolist())) == 6                      # no video counted twice
    assert b["labels"].tolist() == a["labels"].tolist()
    for key in ("scores", "embeddings", "classifier"):
        np.testing.assert_allclose(b[key], a[key], atol=1e-5)
    ra, rb = json.load(open(single / "results.json")), json.load(open(dist_out / "results.json"))
    assert rb["num_videos"] == ra["num_videos"] == 6 and rb["num_failed"] == ra["num_failed"] == 1
    assert [f["video"] for f in rb["failed"]] == [f["video"] for f in ra["failed"]] == [str(broken)]
    for key in ("top1", "top5", "mean_class_accuracy", "mAP"):
        assert rb[key] == pytest.approx(ra[key], abs=1e-5)
    # (6 of 12 classes have a video: a split may keep none of them, and its accuracy is NaN)
    for sa, sb in zip(ra["half_classes"]["splits"], rb["half_classes"]["splits"]):
        assert sb["classes"] == sa["classes"] and sb["num_videos"] == sa["num_videos"]
        assert sb["top1"] == pytest.approx(sa["top1"], abs=1e-5, nan_ok=True)
        assert sb["top5"] == pytest.approx(sa["top5"], abs=1e-5, nan_ok=True)


# ----------------------------------------------------------------------------- bad input

def test_broken_video_is_listed_and_excluded(ev):
    broken = ev["dir"] / "broken.mp4"
    broken.write_bytes(b"")
    lines = ev["lines"][:3] + [f"{broken} 3"] + ev["lines"][3:]
    val = write_list(ev, "val_broken.txt", lines)
    out = ev["dir"] / "broken_out"
    rc, stdout, stderr = run_cli(eval_args(ev, out, "--val-list", val, "--val-root", ev["root"]))
    assert rc == 1, stderr
    r = json.load(open(out / "results.json"))
    assert r["num_failed"] == 1 and r["num_videos"] == 12
    assert [f["video"] for f in r["failed"]] == [str(broken)]
    assert "empty" in r["failed"][0]["error"] or "0 bytes" in r["failed"][0]["error"]
    p = np.load(out / "predictions.npz")
    assert str(broken) not in p["videos"].tolist() and len(p["labels"]) == 12
    assert r["top1"] == metrics.summarize(p["scores"], p["labels"])["top1"]    # denominator: 12, not 13
    assert r["top1"] * 12 == pytest.approx(round(r["top1"] * 12))
    assert "1 failed to decode" in stdout


def test_label_out_of_range_exits_2_before_evaluation(ev):
    lines = list(ev["lines"])
    path = lines[2].split()[0]
    lines[2] = f"{path} 12"                                  # 12 classes: ids 0..11
    val = write_list(ev, "val_bad_label.txt", lines)
    out = ev["dir"] / "bad_label_out"
    # --clip that does not exist: the list is checked before any model is loaded
    rc, stdout, stderr = run_cli(["eval", "--config", ev["config"], "--val-list", val, "--val-root", ev["root"],
                                  "--clip", str(ev["dir"] / "no_such_clip.pt"), "--out", str(out), "--quiet"])
    assert rc == 2
    assert f"{val}:3" in stderr and "12" in stderr and "outside the label list" in stderr
    assert "Traceback" not in stderr
    assert not out.exists()


def test_checkpoint_width_mismatch_exits_2(ev, tmp_path):
    wide = tiny_state_dict_of(dict(TINY, embed_dim=128), seed=1)
    wide_ckpt = str(tmp_path / "orig_wide128.pt")
    torch.save(original_text4vis_checkpoint(wide, "transf"), wide_ckpt)
    # an original checkpoint with embedding width 128 against a 64-wide --clip
    rc, _, stderr = run_cli(["eval", "--config", ev["config"], "--checkpoint", wide_ckpt, "--clip", ev["clip"],
                             "--out", str(tmp_path / "o1"), "--quiet"])
    assert rc == 2
    assert wide_ckpt in stderr and "does not fit" in stderr and "Traceback" not in stderr
    assert "128" in stderr and "64" in stderr
    # a text4vis checkpoint (width 64) with a 128-wide --clip
    import text4vis
    from text4vis import checkpoints
    rec = text4vis.load(checkpoint=ev["checkpoint"], clip=ev["clip"], labels=ev["names"], frames=FRAMES)
    t4v = str(tmp_path / "t4v.safetensors")
    checkpoints.save_checkpoint(t4v, rec.model, rec.towers, labels=ev["names"], classifier_meta={"type": "text"},
                                settings={"num_frames": FRAMES, "input_size": 32})
    wide_clip = str(tmp_path / "wide_clip.pt")
    torch.save(wide, wide_clip)
    rc, _, stderr = run_cli(["eval", "--config", ev["config"], "--checkpoint", t4v, "--clip", wide_clip,
                             "--out", str(tmp_path / "o2"), "--quiet"])
    assert rc == 2
    assert "embedding width 64" in stderr and "128" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


def test_bad_views_is_a_usage_error(ev, tmp_path):
    rc, _, stderr = run_cli(eval_args(ev, tmp_path / "o", "--views", "2x2"))
    assert rc == 2 and "--views" in stderr and "Traceback" not in stderr


def test_bad_precision_is_a_usage_error(ev, tmp_path):
    rc, _, stderr = run_cli(eval_args(ev, tmp_path / "o", "--precision", "fp64"))
    assert rc == 2 and "--precision" in stderr and "Traceback" not in stderr
    rc, _, stderr = run_cli(eval_args(ev, tmp_path / "o", "--set", "evaluation.precision=half"))
    assert rc == 2 and "evaluation.precision" in stderr and "Traceback" not in stderr


def test_nothing_scored_is_null_in_strict_json(ev):
    broken = ev["dir"] / "broken_all.mp4"
    broken.write_bytes(b"")
    val = write_list(ev, "val_all_broken.txt", [f"{broken} 0", f"{broken} 1"])
    out = ev["dir"] / "all_broken_out"
    rc, stdout, _ = run_cli(eval_args(ev, out, "--val-list", val, "--val-root", ev["root"]))
    assert rc == 1
    text = (out / "results.json").read_text()
    r = json.loads(text, parse_constant=lambda c: pytest.fail(f"results.json holds {c}, not strict JSON"))
    assert r["num_videos"] == 0 and r["num_failed"] == 2
    assert r["top1"] is None and r["top5"] is None and r["mAP"] is None     # not measured, not 0%
    assert "0 videos" in stdout and "2 failed to decode" in stdout


def test_json_safe_turns_undefined_values_into_null():
    from text4vis.train.evaluate import json_safe
    got = json_safe({"a": float("nan"), "b": [np.float32(0.5), np.int64(3), float("inf")], "c": {"d": np.bool_(True)}})
    assert got == {"a": None, "b": [0.5, 3, None], "c": {"d": True}}
    json.dumps(got, allow_nan=False)


def test_output_and_option_problems_stop_before_evaluating(ev, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for extra, expected in (([], "exists and is not a folder"), (["--batch-size", "0"], "--batch-size must be at least 1"),
                            (["--workers", "-2"], "--workers must be at least 0"), (["--frames", "0"], "--frames must be at least 1")):
        out = afile if not extra else tmp_path / "o"
        rc, stdout, stderr = run_cli(eval_args(ev, out, *extra))
        assert rc == 2 and expected in stderr and "Traceback" not in stderr and stdout == "", (extra, stderr)
    labels = tmp_path / "one.txt"
    labels.write_text("only class\n")
    val = write_list(ev, "val_one.txt", ev["lines"][:1])
    line = ev["lines"][0].split()
    write_list(ev, "val_one.txt", [f"{line[0]} 0"])
    rc, _, stderr = run_cli(eval_args(ev, tmp_path / "o1", "--val-list", val, "--val-root", ev["root"],
                                      "--labels", str(labels), "--zero-shot"))
    assert rc == 2 and "needs at least 2 classes" in stderr
