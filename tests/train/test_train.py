"""`text4vis train`: data formats, original configs, DDP, resume, bad input, optimisation.

Everything runs on the CPU with the tiny random-weight CLIP of conftest (32x32 inputs), 4 frames
per clip and a 4-class synthetic benchmark (3 training videos per class, 8 frames each).
Torch runs single-threaded here: on a small shared machine, two threads per tiny op cost ~10x.
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.distributed as dist
from PIL import Image
from safetensors.torch import load_file

import text4vis
from text4vis import checkpoints, cli, engine, losses
from text4vis.classifiers import random_classifier, text_classifier
from text4vis.train.config import load_config
from text4vis import datasets
from text4vis.datasets import Sample, TrainBatchSampler, few_shot, read_list
from text4vis.labels import load_labels
from text4vis.model import VideoModel
from text4vis.synthetic import make_benchmark
from text4vis.towers import load_towers
from text4vis.train import train
from text4vis.train.setup import Trainee, build_optimizer, lr_lambda
from text4vis.video import read_all_frames

SHAPES, MOTIONS = ["circle", "square"], ["moving left", "moving right"]


# ----------------------------------------------------------------------------- data fixtures

@pytest.fixture(scope="session")
def bench(tmp_path_factory):
    """4 classes x (3 train + 1 val) real H.264 videos, 8 frames of 32x32, Text4Vis list files."""
    root = tmp_path_factory.mktemp("bench")
    info = make_benchmark(root, shapes=SHAPES, motions=MOTIONS, heldout=[], train_per_class=3, val_per_class=1,
                          num_frames=8, size=32, progress=False)
    return info


@pytest.fixture(scope="session")
def warm(clip_file, bench):
    """Build the text classifier of the benchmark's labels once, so every run reads it from the cache
    (a cached classifier can differ from a fresh one in the last bits; see the report)."""
    text_classifier(load_towers(clip_file), load_labels(str(bench["labels_csv"])))
    return True


def _list_entries(path) -> list[tuple[str, int]]:
    out = []
    for line in open(path):
        rel, label = line.split()
        out.append((rel, int(label)))
    return out


@pytest.fixture(scope="session")
def formats(bench, tmp_path_factory):
    """The same benchmark in the four input formats: {name: {data.* overrides}, plus val videos}."""
    root = bench["root"]
    d = tmp_path_factory.mktemp("formats")
    labels = load_labels(str(bench["labels_csv"]))
    out = {"video_list": {"data.train_list": bench["train_list"], "data.train_root": root,
                          "data.val_list": bench["val_list"], "data.val_root": root,
                          "data.labels": bench["labels_csv"]}}
    # (b) frame folders: "dir num_frames label", img_00001.jpg ... (index_bias 1)
    frames_root = d / "frames"
    for split in ("train", "val"):
        with open(d / f"{split}_frames.txt", "w") as f:
            for rel, label in _list_entries(bench[f"{split}_list"]):
                frames = read_all_frames(str(root / rel))
                folder = frames_root / os.path.splitext(rel)[0]
                folder.mkdir(parents=True)
                for i, fr in enumerate(frames):
                    Image.fromarray(fr).save(folder / f"img_{i + 1:05d}.jpg", quality=95)
                f.write(f"{os.path.splitext(rel)[0]} {len(frames)} {label}\n")
    out["frame_list"] = {"data.train_list": d / "train_frames.txt", "data.train_root": frames_root,
                         "data.val_list": d / "val_frames.txt", "data.val_root": frames_root,
                         "data.labels": bench["labels_csv"], "data.image_tmpl": "img_{:05d}.jpg",
                         "data.index_bias": 1}
    # (c) a folder per class (the benchmark's own layout: videos/<split>/<class slug>/*.mp4)
    out["class_folders"] = {"data.train_list": root / "videos" / "train", "data.val_list": root / "videos" / "val"}
    # (d) CSV path,label with class names
    for split in ("train", "val"):
        with open(d / f"{split}.csv", "w") as f:
            f.write("path,label\n")
            for rel, label in _list_entries(bench[f"{split}_list"]):
                f.write(f"{rel},{labels[label]}\n")
    out["csv"] = {"data.train_list": d / "train.csv", "data.train_root": root, "data.val_list": d / "val.csv",
                  "data.val_root": root, "data.labels": bench["labels_csv"]}
    return out


def sets(clip_file, data: dict, **over) -> list[str]:
    """--set KEY=VALUE items: tiny model, 4 frames, no workers, lr 1e-3, no warmup, log every step."""
    values = {"model.clip": clip_file, "data.num_frames": 4, "data.batch_size": 4, "data.workers": 0,
              "optim.epochs": 2, "optim.lr": 1e-3, "optim.warmup_epochs": 0, "training.print_freq": 1,
              "evaluation.batch_size": 4}
    values.update(data)
    values.update({k.replace("__", "."): v for k, v in over.items()})
    return [f"{k}={v}" for k, v in values.items()]


def video_data(bench, val: bool = False) -> dict:
    d = {"data.train_list": bench["train_list"], "data.train_root": bench["root"], "data.labels": bench["labels_csv"]}
    if val:
        d.update({"data.val_list": bench["val_list"], "data.val_root": bench["root"]})
    return d


def run_train(items: list[str], out) -> dict:
    cfg, notes = load_config(None, items)
    return train(cfg, str(out), notes, progress=False)


def cli_train(items: list[str], out, *extra) -> int:
    args = ["train", "--output", str(out), "--quiet"] + list(extra)
    for item in items:
        args += ["--set", item]
    return cli.main(args)


def metrics(out) -> list[dict]:
    return [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]


def train_records(out) -> list[dict]:
    return [r for r in metrics(out) if "loss" in r]


def model_tensors(path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_file(str(path)).items() if k.startswith("model.")}


def train_state(path) -> dict:
    meta, tensors = checkpoints.read_text4vis(str(path))
    return checkpoints.unpack(meta["train"], tensors)


def assert_same_weights(a, b) -> None:
    ta, tb = model_tensors(a), model_tensors(b)
    assert ta.keys() == tb.keys()
    different = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


# ----------------------------------------------------------------------------- 1. every data format

@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["video_list", "frame_list", "class_folders", "csv"])
def test_trains_in_each_format_and_checkpoints_predict(fmt, formats, bench, clip_file, warm, tmp_path):
    out = tmp_path / "run"
    # the whole training set in one batch per step: a smooth loss curve; evaluate after the last epoch
    items = sets(clip_file, formats[fmt], optim__epochs=12, data__batch_size=12, training__eval_freq=12,
                 data__flip="false", data__grayscale=0)
    summary = run_train(items, out)
    assert summary["steps"] == 12 and summary["epochs_done"] == 12
    recs = train_records(out)
    assert [r["step"] for r in recs] == list(range(1, 13))
    loss = [r["loss"] for r in recs]
    assert all(math.isfinite(x) for x in loss)
    assert np.mean(loss[-3:]) < np.mean(loss[:3]) - 0.05, loss
    evals = [r for r in metrics(out) if "val_top1" in r]
    assert len(evals) == 1 and evals[0]["val_videos"] == 4 and evals[0]["val_failed"] == 0

    best, last = out / "best.safetensors", out / "last.safetensors"
    assert_same_weights(best, last)            # evaluated once, at the end: best is the last model
    val_videos = [str(bench["root"] / rel) for rel, _ in _list_entries(bench["val_list"])]
    names = load_labels(str(bench["labels_csv"]))
    truth = [names[label] for _, label in _list_entries(bench["val_list"])]
    if fmt == "class_folders":  # labels are the folder names
        truth = [os.path.basename(os.path.dirname(p)) for p in val_videos]
    for path in (best, last):
        rec = text4vis.load(checkpoint=str(path), device="cpu")
        assert rec.num_frames == 4 and rec.input_size == 32
        assert sorted(rec.labels) == sorted(set(truth))
        records = rec.predict(val_videos, topk=4, batch_size=2, workers=0)
        assert [r["video"] for r in records] == val_videos
        for r in records:
            assert len(r["top"]) == 4 and {t["label"] for t in r["top"]} == set(rec.labels)
            assert sum(t["score"] for t in r["top"]) == pytest.approx(1.0, abs=1e-4)
        if fmt != "frame_list":  # same videos, same 1x1 view as the evaluation during training
            top1 = np.mean([r["top"][0]["label"] == t for r, t in zip(records, truth)])
            assert top1 == pytest.approx(evals[0]["val_top1"])


# ----------------------------------------------------------------------------- 2. original Text4Vis configs

ORIGINAL_YAML = """\
resume:
pretrain:
seed: 1024
data:
    dataset: k400
    modality: RGB
    num_segments: 4
    seg_length: 1
    batch_size: 4
    workers: 0
    num_classes: {num_classes}
    image_tmpl: 'img_{{:05d}}.jpg'
    train_root: '/bpfs/v2_mnt/VIS/test/k400/train_320_frames'
    train_list: '{train_list}'
    val_root: /bpfs/v2_mnt/VIS/test/k400/kinetics_400_val_320_opencv
    val_list: {val_list}
    label_list: '{labels}'
    input_size: 32
    randaug:
        N: 2 #2
        M: 9  #9
    random_shift: True
network:
    arch: {arch}  #ViT-B/32 ViT-B/16
    init: True
    tm: False  # False tsm tokent1d tokenshift
    drop_out: 0.0
    emb_dropout: 0.0
    type: clip_k400
    sim_header: Transf  # Transf   None
    joint_st: False
    drop: 0
    fix_text: True
    fix_video: False
solver:
    type: cosine
    epochs: 2
    start_epoch: 0
    epoch_offset: 0
    optim: adamw
    lr: 5.e-5
    lr_warmup_step: 1
    weight_decay: 0.2
    loss_type: CE
    evaluate: False
    clip_ratio: 0.1
    grad_accumulation_steps: 1
logging:
    print_freq: 10
    eval_freq: 1
"""
IGNORED = ["data.dataset", "data.modality", "data.seg_length", "network.init", "network.tm", "network.drop_out",
           "network.emb_dropout", "network.type", "network.joint_st", "network.drop", "network.fix_text",
           "solver.type", "solver.start_epoch", "solver.epoch_offset", "solver.optim", "solver.loss_type",
           "solver.evaluate"]


def original_config(tmp_path, clip_file, data: dict, num_classes: int = 4) -> str:
    path = tmp_path / "k400_train_rgb_tiny-f4.yaml"
    path.write_text(ORIGINAL_YAML.format(num_classes=num_classes, train_list=data["data.train_list"],
                                         val_list=data["data.val_list"], labels=data["data.labels"], arch=clip_file))
    return str(path)


@pytest.mark.parametrize("fmt", ["frame_list", "video_list"])
def test_original_config_trains_with_root_overrides(fmt, formats, clip_file, warm, tmp_path, capsys):
    data = formats[fmt]
    config = original_config(tmp_path, clip_file, data)
    cfg, notes = load_config(config, [f"data.train_root={data['data.train_root']}",
                                      f"data.val_root={data['data.val_root']}"])
    # the original keys landed where they belong
    assert (cfg.data.num_frames, cfg.data.batch_size, cfg.data.input_size) == (4, 4, 32)
    assert cfg.data.randaug == [2, 9] and cfg.data.random_shift is True and cfg.data.labels == str(data["data.labels"])
    assert (cfg.model.clip, cfg.model.head, cfg.model.freeze_visual) == (clip_file, "transf", False)
    assert (cfg.optim.lr, cfg.optim.epochs, cfg.optim.warmup_epochs, cfg.optim.clip_ratio) == (5e-5, 2, 1.0, 0.1)
    assert (cfg.optim.weight_decay, cfg.optim.grad_accumulation) == (0.2, 1)
    assert (cfg.training.seed, cfg.training.print_freq, cfg.training.eval_freq) == (1024, 10, 1)
    assert cfg.data.train_root == str(data["data.train_root"])
    # every ignored option is reported, each exactly once
    assert notes
    for key in IGNORED:
        assert sum(f"{key}:" in n for n in notes) == 1, key

    out = tmp_path / "run"
    rc = cli_train([], out, "--config", config, "--set", f"data.train_root={data['data.train_root']}",
                   "--set", f"data.val_root={data['data.val_root']}")
    err = capsys.readouterr().err
    assert rc == 0, err
    assert err.count("note:") == len(notes)          # printed once each
    assert open(out / "config_notes.txt").read().splitlines() == notes
    evals = [r for r in metrics(out) if "val_top1" in r]
    assert [e["val_videos"] for e in evals] == [4, 4]
    assert train_state(out / "last.safetensors")["global_step"] == 6   # 12 videos / batch 4 x 2 epochs
    rec = text4vis.load(checkpoint=str(out / "best.safetensors"), device="cpu")
    assert rec.num_frames == 4 and len(rec.labels) == 4


def test_original_config_errors(formats, clip_file, tmp_path, capsys):
    data = formats["video_list"]
    config = original_config(tmp_path, clip_file, data)
    # unknown --set key: a clear ConfigError, exit code 2, no traceback
    rc = cli_train([], tmp_path / "a", "--config", config, "--set", "data.train_rot=/x")
    err = capsys.readouterr().err
    assert rc == 2 and "unknown config key 'data.train_rot'" in err and "Traceback" not in err
    # the list's relative paths need the root: without the override, training sees only missing files
    rc = cli_train([], tmp_path / "b", "--config", config, "--set", "training.eval_freq=0")
    err = capsys.readouterr().err
    assert rc == 1 and "failed to decode" in err and "/bpfs/v2_mnt" in err
    # data.num_classes is checked against the label list
    config5 = original_config(tmp_path, clip_file, data, num_classes=5)
    rc = cli_train([], tmp_path / "c", "--config", config5, "--set", f"data.train_root={data['data.train_root']}")
    err = capsys.readouterr().err
    assert rc == 2 and "data.num_classes is 5 but the label list has 4 classes" in err
    assert not (tmp_path / "c" / "metrics.jsonl").exists()


# ----------------------------------------------------------------------------- 3. distributed (gloo, 2 processes)

@pytest.mark.parametrize("n,batch", [(12, 4), (13, 2), (9, 4), (7, 3), (5, 1), (2, 4)])
def test_batch_sampler_ranks_are_disjoint_and_cover(n, batch):
    for epoch in (0, 3):
        per_rank = []
        for rank in range(2):
            s = TrainBatchSampler(n, batch, world=2, rank=rank, seed=7)
            s.set_epoch(epoch)
            batches = list(s)
            assert len(batches) == len(s) == s.batches_per_epoch
            assert all(1 <= len(b) <= batch and all(e == epoch for e, _ in b) for b in batches)
            per_rank.append([i for b in batches for _, i in b])
        assert len(per_rank[0]) == len(per_rank[1]) or abs(len(per_rank[0]) - len(per_rank[1])) == 1
        union = per_rank[0] + per_rank[1]
        if batch == 1 and n % 2:  # the one documented repeat: the shorter share needs one more batch
            assert sorted(set(union)) == list(range(n)) and len(union) == n + 1
        else:
            assert sorted(union) == list(range(n))  # disjoint and covering: every index exactly once
    # seeded: the same order on every call; another epoch, another order; start_batch skips batches
    a, b = TrainBatchSampler(12, 4, seed=7), TrainBatchSampler(12, 4, seed=7)
    assert list(a) == list(b)
    a.set_epoch(1)
    assert list(a) != list(b)
    a.set_epoch(1, start_batch=2)
    b.set_epoch(1)
    assert list(a) == list(b)[2:]


def test_training_clips_depend_only_on_seed_epoch_and_index(bench):
    """RandAugment included: the same clip whatever the global RNG state (workers, resume), which it keeps."""
    from text4vis.transforms import TrainTransform
    samples = read_list(str(bench["train_list"]), str(bench["root"]))
    ds = datasets.TrainDataset(samples, 4, TrainTransform(32, randaug=(2, 9)), seed=3)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    a = ds[(1, 5)]
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(99)
    b = ds[(1, 5)]
    assert torch.equal(a[0], b[0]) and a[1] == b[1] == samples[5].label and a[2] == b[2] == []
    assert a[0].shape == (4, 3, 32, 32) and a[0].dtype == torch.uint8
    assert not torch.equal(a[0], ds[(2, 5)][0])      # another epoch, another draw


def _torchrun() -> list[str]:
    exe = os.path.join(os.path.dirname(sys.executable), "torchrun")
    return [exe] if os.path.exists(exe) else [sys.executable, "-m", "torch.distributed.run"]


def _env() -> dict:
    return dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


@pytest.mark.slow
@pytest.mark.distributed
def test_torchrun_two_processes_gloo(bench, clip_file, warm, tmp_path):
    # 12 videos + one that does not decode = 13: shares of 7 and 6 videos, batch 2 -> 4 steps per epoch
    (tmp_path / "broken.mp4").write_text("not a video")
    train_list = tmp_path / "train.txt"
    train_list.write_text(open(bench["train_list"]).read() + f"{tmp_path / 'broken.mp4'} 1\n")
    val_list = tmp_path / "val.txt"  # 3 validation videos: not divisible by 2 processes
    val_list.write_text("".join(open(bench["val_list"]).readlines()[:3]))
    out = tmp_path / "run"
    items = sets(clip_file, {"data.train_list": train_list, "data.train_root": bench["root"], "data.val_list": val_list,
                        "data.val_root": bench["root"], "data.labels": bench["labels_csv"]},
                 data__batch_size=2, data__max_bad_fraction=0.5)
    cmd = _torchrun() + ["--standalone", "--nproc_per_node", "2", "-m", "text4vis", "train", "--output", str(out),
                         "--quiet"]
    for item in items:
        cmd += ["--set", item]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 process(es) x batch 2" in proc.stderr and "4 steps/epoch" in proc.stderr
    state = train_state(out / "last.safetensors")
    assert state["global_step"] == 8
    # samples counted over both ranks: 13 per epoch (7 + 6, every one once), the broken one included
    assert state["samples_seen"] == 26
    assert [r["step"] for r in train_records(out)] == list(range(1, 9))
    evals = [r for r in metrics(out) if "val_top1" in r]     # every validation video counted once
    assert [e["val_videos"] for e in evals] == [3, 3] and all(e["val_failed"] == 0 for e in evals)
    # the broken video is reported once, whichever rank met it, and listed once
    listed = open(out / "bad_videos.txt").read().splitlines()
    assert len(listed) == 1 and "broken.mp4" in listed[0]
    assert proc.stderr.count("warning: skipped a video that does not decode") == 1
    assert "Traceback" not in proc.stderr
    rec = text4vis.load(checkpoint=str(out / "best.safetensors"), device="cpu")
    first_val = str(bench["root"] / _list_entries(bench["val_list"])[0][0])
    assert len(rec.predict([first_val], workers=0)[0]["top"]) == 4


def _tiny_video_model(clip_file: str) -> VideoModel:
    towers = load_towers(clip_file)
    torch.manual_seed(0)
    model = VideoModel(towers.clip.visual, towers.embed_dim, "transf", mean=towers.mean, std=towers.std)
    model.set_classifier(random_classifier([str(i) for i in range(4)], towers.embed_dim).weight)
    return model.eval()


def _eval_samples(bench, tmp_path) -> list[Sample]:
    paths = [str(bench["root"] / rel) for rel, _ in _list_entries(bench["train_list"])[:6]]
    broken = tmp_path / "empty.mp4"
    broken.write_bytes(b"")
    paths.insert(3, str(broken))  # 7 samples, one of which fails
    return [Sample(p, i % 4, None, p) for i, p in enumerate(paths)]


def _embed_worker(rank: int, world: int, init_file: str, model: VideoModel, samples, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        emb = engine.embed_dataset(model, datasets.TestDataset(samples, 4, 32), torch.device("cpu"), batch_size=2,
                                   workers=0)
        torch.save({"indices": emb.indices, "embeddings": emb.embeddings, "errors": emb.errors},
                   os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_embed_dataset_two_processes_counts_each_video_once(bench, clip_file, tmp_path):
    samples = _eval_samples(bench, tmp_path)
    model = _tiny_video_model(clip_file)
    single = engine.embed_dataset(model, datasets.TestDataset(samples, 4, 32), torch.device("cpu"),
                                  batch_size=2, workers=0)
    assert single.indices == [0, 1, 2, 4, 5, 6] and [i for i, _ in single.errors] == [3]
    # two gloo processes, forked (single-threaded torch, see one_thread): the model is already built
    # and nothing is re-imported
    procs = torch.multiprocessing.start_processes(_embed_worker, nprocs=2, join=False, start_method="fork",
                                                  args=(2, str(tmp_path / "init"), model, samples, str(tmp_path)))
    deadline = time.time() + 120
    while not procs.join(timeout=1):
        if time.time() > deadline:
            for p in procs.processes:
                p.kill()
            pytest.fail("embed_dataset under 2 gloo processes did not finish in 120 s")
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert got["indices"] == single.indices          # every video exactly once, in dataset order
        assert [i for i, _ in got["errors"]] == [3]
        torch.testing.assert_close(got["embeddings"], single.embeddings, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- 4. resume

@pytest.fixture(scope="module")
def run_a(bench, clip_file, warm, tmp_path_factory):
    """The uninterrupted reference run: 3 epochs x 3 steps, with warmup (the schedule matters)."""
    out = tmp_path_factory.mktemp("run_a")
    items = sets(clip_file, video_data(bench), optim__epochs=3, optim__warmup_epochs=1)
    summary = run_train(items, out)
    assert summary["steps"] == 9
    return {"out": out, "items": items}


def same_run(a, b) -> None:
    assert_same_weights(a / "last.safetensors", b / "last.safetensors")
    sa, sb = train_state(a / "last.safetensors"), train_state(b / "last.safetensors")
    assert (sa["global_step"], sa["epoch"]) == (sb["global_step"], sb["epoch"]) == (9, 3)
    for x, y in zip(sa["optimizer"]["state"].values(), sb["optimizer"]["state"].values()):
        assert all(torch.equal(x[k], y[k]) for k in x)
    keep = ("step", "loss", "lr")
    assert [{k: r[k] for k in keep} for r in train_records(a)] == [{k: r[k] for k in keep} for r in train_records(b)]


@pytest.mark.parametrize("stop_at", [4, 3])  # mid-epoch 2, and exactly at the end of epoch 1
def test_stop_and_resume_equals_uninterrupted(stop_at, run_a, tmp_path):
    out = tmp_path / "run_b"
    summary = run_train(run_a["items"] + [f"training.max_steps={stop_at}"], out)
    assert summary["steps"] == stop_at
    state = train_state(out / "last.safetensors")
    assert state["global_step"] == stop_at and state["epoch"] * 3 + state["step_in_epoch"] == stop_at
    assert cli_train(run_a["items"], out, "--resume", "auto") == 0
    same_run(run_a["out"], out)


def test_resume_with_gradient_accumulation(bench, clip_file, warm, tmp_path):
    items = sets(clip_file, video_data(bench), data__batch_size=2, optim__grad_accumulation=2)
    run_train(items, tmp_path / "a")
    run_train(items + ["training.max_steps=2"], tmp_path / "b")
    assert train_state(tmp_path / "b" / "last.safetensors")["step_in_epoch"] == 2
    run_train(items + ["training.resume=auto"], tmp_path / "b")
    assert_same_weights(tmp_path / "a" / "last.safetensors", tmp_path / "b" / "last.safetensors")


@pytest.mark.slow
def test_sigkill_and_resume_equals_uninterrupted(run_a, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "text4vis", "train", "--output", str(out), "--quiet"]
    for item in run_a["items"] + ["training.save_every_steps=1"]:
        cmd += ["--set", item]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last = out / "last.safetensors"
    deadline = time.time() + 120
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    proc.stderr.close()
    killed_at = train_state(last)["global_step"]
    assert 1 <= killed_at < 9
    assert cli_train(run_a["items"], out, "--resume", "auto") == 0
    same_run(run_a["out"], out)


@pytest.mark.slow
def test_interrupted_checkpoint_write_keeps_previous(run_a, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    real_save = checkpoints.save_file
    calls = {"n": 0}

    def half_written(tensors, path, metadata=None):
        calls["n"] += 1
        if calls["n"] < 2:
            return real_save(tensors, path, metadata=metadata)
        real_save(tensors, path, metadata=metadata)
        with open(path, "r+b") as f:  # the disk fills up half-way through the write
            f.truncate(os.path.getsize(path) // 2)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoints, "save_file", half_written)
    rc = cli_train(run_a["items"] + ["training.save_every_steps=1"], out)
    err = capsys.readouterr().err
    assert rc == 1 and "cannot write checkpoint" in err and "No space left" in err and "Traceback" not in err
    assert train_state(out / "last.safetensors")["global_step"] == 1     # the previous one, intact
    assert text4vis.load(checkpoint=str(out / "last.safetensors"), device="cpu").labels
    monkeypatch.setattr(checkpoints, "save_file", real_save)
    assert cli_train(run_a["items"], out, "--resume", "auto") == 0
    assert not [n for n in os.listdir(out) if ".tmp" in n]               # the torn temporary file is gone
    same_run(run_a["out"], out)


# ----------------------------------------------------------------------------- 5. bad input

@pytest.fixture(scope="module")
def broken_list(bench, tmp_path_factory):
    d = tmp_path_factory.mktemp("broken")
    (d / "zero.mp4").write_bytes(b"")
    (d / "text.mp4").write_text("this is a text file, renamed\n" * 20)
    path = d / "train.txt"
    path.write_text(open(bench["train_list"]).read() + f"{d / 'zero.mp4'} 0\n{d / 'text.mp4'} 2\n")
    return path


def test_bad_videos_are_skipped_logged_once_and_listed(broken_list, bench, clip_file, warm, tmp_path, capsys):
    out = tmp_path / "run"
    items = sets(clip_file, {**video_data(bench), "data.train_list": broken_list}, data__max_bad_fraction=0.5)
    assert cli_train(items, out) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "does not decode" in line]
    assert len(warnings) == 2                                   # 2 epochs, each bad video met each epoch: logged once
    assert sum("zero.mp4" in w for w in warnings) == 1 and sum("text.mp4" in w for w in warnings) == 1
    listed = open(out / "bad_videos.txt").read().splitlines()
    assert len(listed) == 2 and any("zero.mp4" in x for x in listed) and any("text.mp4" in x for x in listed)
    assert train_state(out / "last.safetensors")["global_step"] == 8   # 14 entries / batch 4 x 2 epochs
    assert train_records(out)[-1]["bad_videos"] == 2


def test_val_videos_that_fail_are_named_once(broken_list, bench, clip_file, warm, tmp_path, capsys):
    out = tmp_path / "run"
    data = {**video_data(bench, val=True), "data.val_list": broken_list, "data.val_root": bench["root"]}
    items = sets(clip_file, data, data__max_bad_fraction=0.5, training__max_steps=4)
    assert cli_train(items, out) == 0
    err = capsys.readouterr().err
    named = [line for line in err.splitlines() if "a val video does not decode" in line]
    assert len(named) == 2, err                                  # evaluated twice, each failure named once
    assert sum("zero.mp4" in w for w in named) == 1 and sum("text.mp4" in w for w in named) == 1
    assert "12 videos, 2 failed" in err


def test_too_many_bad_videos_stop_the_run(broken_list, bench, clip_file, tmp_path, capsys):
    out = tmp_path / "run"
    items = sets(clip_file, {**video_data(bench), "data.train_list": broken_list}, data__max_bad_fraction=0.001)
    assert cli_train(items, out) == 1
    err = capsys.readouterr().err
    assert "text4vis train: error:" in err and "failed to decode" in err and "check-data" in err
    assert "Traceback" not in err
    assert (out / "bad_videos.txt").exists()


@pytest.mark.parametrize("problem", ["missing", "label", "unparsable", "missing_val"])
def test_bad_lists_stop_before_training(problem, bench, clip_file, tmp_path, capsys):
    lines = open(bench["train_list"]).read().splitlines()
    train_list = tmp_path / "train.txt"
    data = video_data(bench)
    if problem == "missing":
        data["data.train_list"] = tmp_path / "nope.txt"
        expected = f"{tmp_path / 'nope.txt'}: list file not found"
    elif problem == "label":
        lines[4] = lines[4].rsplit(" ", 1)[0] + " 7"
        expected = f"{train_list}:5: label id 7 is outside the label list (0..3)"
    elif problem == "unparsable":
        lines[2] = lines[2].rsplit(" ", 1)[0] + " three"
        expected = f"{train_list}:3: cannot parse"
    else:
        data.update({"data.val_list": tmp_path / "val_nope.txt", "data.val_root": bench["root"]})
        expected = "val_nope.txt: list file not found"
    if problem in ("label", "unparsable"):
        train_list.write_text("\n".join(lines) + "\n")
        data["data.train_list"] = train_list
    out = tmp_path / "run"
    assert cli_train(sets(clip_file, data), out) == 2
    err = capsys.readouterr().err
    assert err.startswith("text4vis train: error:") and expected in err and "Traceback" not in err
    assert not (out / "metrics.jsonl").exists() and not (out / "last.safetensors").exists()


def test_nonfinite_losses_are_skipped_then_stop(bench, clip_file, warm, tmp_path, monkeypatch, capsys):
    real = losses.classification_loss
    calls = {"n": 0}

    def sometimes_nan(logits, labels, *options):
        calls["n"] += 1
        loss = real(logits, labels, *options)
        return loss * float("nan") if calls["n"] in (2, 3) else loss

    monkeypatch.setattr(losses, "classification_loss", sometimes_nan)
    out = tmp_path / "run"
    assert cli_train(sets(clip_file, video_data(bench)), out) == 0
    err = capsys.readouterr().err
    assert "non-finite loss at step 2; step skipped" in err and "non-finite loss at step 3; step skipped" in err
    assert [r["step"] for r in train_records(out)] == [1, 4, 5, 6]     # skipped steps log nothing
    assert all(math.isfinite(r["loss"]) for r in train_records(out))
    assert all(torch.isfinite(v).all() for v in model_tensors(out / "last.safetensors").values())

    monkeypatch.setattr(losses, "classification_loss", lambda logits, labels, *o: real(logits, labels, *o) * float("inf"))
    out2 = tmp_path / "run2"
    assert cli_train(sets(clip_file, video_data(bench), training__max_nonfinite=3), out2) == 1
    err = capsys.readouterr().err
    assert err.count("step skipped") == 3
    assert "3 non-finite losses in a row (last at step 3)" in err and "Traceback" not in err


def test_few_shot_rule(bench, clip_file, warm, tmp_path, capsys):
    samples = read_list(str(bench["train_list"]), str(bench["root"]))
    chosen = few_shot(samples, 2, seed=5, num_classes=4)
    assert chosen == few_shot(samples, 2, seed=5, num_classes=4)       # seeded: identical across calls
    assert sorted(s.label for s in chosen) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert [samples.index(s) for s in chosen] == sorted(samples.index(s) for s in chosen)  # list order
    assert len(few_shot(samples, 10, seed=5, num_classes=4)) == 12     # K above a class's count: all of it

    written = []
    for run in ("a", "b"):
        out = tmp_path / run
        run_train(sets(clip_file, video_data(bench), data__shot=1, optim__epochs=1), out)
        lines = open(out / "fewshot_videos.txt").read().splitlines()
        assert sorted(int(line.split()[-1]) for line in lines) == [0, 1, 2, 3]   # 1 per class
        written.append(lines)
        # 4 chosen videos repeated 12 // 4 = 3 times: 12 clips per epoch, 3 steps at batch 4
        assert train_state(out / "last.safetensors")["global_step"] == 3
    assert written[0] == written[1]
    err = capsys.readouterr().err
    assert err.count("few-shot: 4 videos (1 per class), repeated 3x per epoch") == 2
    expected = few_shot(samples, 1, seed=1024, num_classes=4)      # training.seed's default
    assert [line.split()[0] for line in written[0]] == [s.path for s in expected]


# ----------------------------------------------------------------------------- 6. optimisation

def test_param_groups_and_adamw_settings(bench, clip_file, warm, tmp_path):
    out = tmp_path / "run"
    run_train(sets(clip_file, video_data(bench), optim__epochs=1, optim__lr=2e-3, optim__clip_ratio=0.25,
                   optim__betas="[0.8,0.95]", optim__eps=1e-6, optim__weight_decay=0.05), out)
    groups = train_state(out / "last.safetensors")["optimizer"]["param_groups"]
    assert len(groups) == 2
    assert groups[0]["initial_lr"] == pytest.approx(2e-3 * 0.25) and groups[1]["initial_lr"] == pytest.approx(2e-3)
    for g in groups:
        assert tuple(g["betas"]) == (0.8, 0.95) and g["eps"] == 1e-6 and g["weight_decay"] == 0.05

    towers = load_towers(clip_file)
    model = VideoModel(towers.clip.visual, towers.embed_dim, "transf")
    model.set_classifier(torch.randn(4, towers.embed_dim))
    cfg, _ = load_config(None, ["optim.lr=2e-3", "optim.clip_ratio=0.25"])
    opt = build_optimizer(Trainee(model), cfg.optim, torch.device("cpu"))
    slow = {id(p) for p in model.visual.parameters()} | {id(model.logit_scale)}
    fast = {id(p) for p in model.fusion_model.parameters()}
    assert {id(p) for p in opt.param_groups[0]["params"]} == slow
    assert {id(p) for p in opt.param_groups[1]["params"]} == fast
    assert tuple(opt.defaults["betas"]) == (0.9, 0.999)                # AdamW (0.9, 0.999), eps 1e-8, wd 0.2
    assert opt.defaults["eps"] == 1e-8 and opt.defaults["weight_decay"] == 0.2
    assert len(groups[0]["params"]) == len(slow) and len(groups[1]["params"]) == len(fast)


def test_lr_schedule_warmup_then_cosine_per_step(bench, clip_file, warm, tmp_path):
    out = tmp_path / "run"
    lr, ratio = 1e-3, 0.1
    run_train(sets(clip_file, video_data(bench), optim__epochs=4, optim__warmup_epochs=1), out)
    total, warmup = 12, 3  # 3 steps per epoch

    def expected(step: int) -> float:  # the lr of optimiser step `step` (1-based)
        i = step - 1
        if i < warmup:
            return lr * (i + 1) / warmup
        return lr * 0.5 * (1 + math.cos(math.pi * (i - warmup) / (total - warmup)))

    recs = train_records(out)
    assert [r["step"] for r in recs] == list(range(1, 13))
    for r in recs:
        assert r["lr"] == pytest.approx(expected(r["step"]), rel=1e-9, abs=1e-15)
        assert r["lr_tower"] == pytest.approx(ratio * expected(r["step"]), rel=1e-9, abs=1e-15)
    assert recs[2]["lr"] == pytest.approx(lr)                         # warmup reaches lr at its last step
    assert lr_lambda(total, warmup)(0) == pytest.approx(1 / 3)


@pytest.mark.parametrize("kind", ["text", "linear"])
def test_classifier_is_frozen_unless_linear(kind, bench, clip_file, warm, tmp_path):
    out = tmp_path / "run"
    run_train(sets(clip_file, video_data(bench), classifier__type=kind, optim__epochs=1), out)
    names = load_labels(str(bench["labels_csv"]))
    towers = load_towers(clip_file)
    start = (text_classifier(towers, names) if kind == "text" else random_classifier(names, towers.embed_dim, 0)).weight
    start = start / start.norm(dim=-1, keepdim=True)
    trained = model_tensors(out / "last.safetensors")["model.classifier"]
    groups = train_state(out / "last.safetensors")["optimizer"]["param_groups"]
    n_head = len(list(VideoModel(towers.clip.visual, towers.embed_dim, "transf").fusion_model.parameters()))
    if kind == "text":
        torch.testing.assert_close(trained, start)                     # a buffer: never updated
        assert len(groups[1]["params"]) == n_head
    else:
        assert (trained - start).abs().max() > 1e-4                   # a parameter: trained at lr
        assert len(groups[1]["params"]) == n_head + 1
    model = VideoModel(towers.clip.visual, towers.embed_dim, "transf")
    model.set_classifier(start, learn=kind == "linear")
    in_params = any(p is model.classifier for p in model.parameters())
    assert in_params == (kind == "linear")
    assert ("classifier" in dict(model.named_buffers())) == (kind == "text")


@pytest.mark.slow
def test_gradient_accumulation_matches_one_big_batch(bench, clip_file, warm, tmp_path):
    # eps >> |gradient| keeps AdamW in its linear regime (update ~ lr * gradient / eps), where the
    # float rounding of summing two half-batches cannot be amplified by the 1/sqrt(v) normalisation
    base = dict(optim__epochs=1, optim__lr=0.1, optim__eps=1.0, optim__weight_decay=0, optim__clip_ratio=1,
                data__flip="false", data__grayscale=0)
    big, accum, small = tmp_path / "big", tmp_path / "accum", tmp_path / "small"
    run_train(sets(clip_file, video_data(bench), data__batch_size=4, **base), big)
    run_train(sets(clip_file, video_data(bench), data__batch_size=2, optim__grad_accumulation=2, **base), accum)
    run_train(sets(clip_file, video_data(bench), data__batch_size=2, **base), small)
    assert train_state(big / "last.safetensors")["global_step"] == 3
    assert train_state(accum / "last.safetensors")["global_step"] == 3   # steps per epoch halved vs batch 2
    assert train_state(small / "last.safetensors")["global_step"] == 6
    a, b, c = (model_tensors(p / "last.safetensors") for p in (big, accum, small))
    start = _tiny_start(clip_file)

    def distance(x, y) -> float:  # over the image tower
        return math.sqrt(sum(float(((x[k] - y[k]) ** 2).sum()) for k in start))
    moved = distance(a, start)
    assert moved > 1e-2                                   # training changed the weights
    assert distance(a, b) < 1e-4 * moved                  # accumulation: the big batch's updates
    assert distance(a, c) > 0.1 * moved                   # unlike twice as many small steps
    for r1, r2 in zip(train_records(big), train_records(accum)):
        assert r1["loss"] == pytest.approx(r2["loss"], rel=1e-5)   # logged: the mean over the group


def _tiny_start(clip_file) -> dict[str, torch.Tensor]:
    towers = load_towers(clip_file)
    return {"model.visual." + k: v for k, v in towers.clip.visual.state_dict().items()}


def test_output_and_resume_problems_are_setup_errors(run_a, tiny_dir, tmp_path, capsys):
    """Exit 2, one line, nothing trained or overwritten: a run folder that already holds a run, an
    output path that is a file, and --resume files that cannot continue this run."""
    before = (run_a["out"] / "last.safetensors").read_bytes()
    capsys.readouterr()
    assert cli_train(run_a["items"], run_a["out"]) == 2
    err = capsys.readouterr().err
    assert "already holds a run (last.safetensors); continue it with --resume auto" in err and "Traceback" not in err
    assert (run_a["out"] / "last.safetensors").read_bytes() == before
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert cli_train(run_a["items"], afile) == 2
    assert "exists and is not a folder" in capsys.readouterr().err
    meta, tensors = checkpoints.read_text4vis(str(run_a["out"] / "last.safetensors"))
    del meta["train"]
    weights_only = tmp_path / "weights_only.safetensors"
    checkpoints.atomic_save({k: v for k, v in tensors.items() if not k.startswith("train.")}, meta, str(weights_only))
    cases = [(tmp_path / "nothing.safetensors", "no such checkpoint"),
             (tiny_dir / "text4vis_orig_transf.pt", "not a text4vis checkpoint (an original Text4Vis checkpoint can start"),
             (weights_only, "has no training state")]
    for path, expected in cases:
        assert cli_train(run_a["items"], tmp_path / "r", "--resume", str(path)) == 2
        err = capsys.readouterr().err
        assert expected in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
