"""Contrastive training (the paper's contrastive baseline): the loss, the batch gather across
processes, and `text4vis train` with training.mode=contrastive (online and frozen text tower,
one process and two gloo processes under torchrun)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from conftest import tiny_openai_state_dict
from text4vis import checkpoints, classifiers, losses
from text4vis.cli import main as cli_main
from text4vis.datasets import Sample
from text4vis.datasets import TestDataset as ViewsDataset

PROMPT = "a video of a person {}."


# ----------------------------------------------------------------------------- the loss

def reference_contrastive(video, labels, class_text, classes, scale) -> float:
    """The loss of losses.contrastive_loss, spelled out with loops in float64.

    video -> text: cross-entropy over the batch's distinct class texts towards the video's class.
    text -> video: -log of the softmax mass (over all videos) of the videos of that class.
    Both averaged (over videos, over texts), then the mean of the two directions."""
    v = [np.asarray(r, np.float64) / np.linalg.norm(r) for r in np.asarray(video, np.float64)]
    t = [np.asarray(r, np.float64) / np.linalg.norm(r) for r in np.asarray(class_text, np.float64)]
    labels, classes, scale = [int(x) for x in labels], [int(x) for x in classes], float(scale)

    def lse(xs):
        m = max(xs)
        return m + math.log(sum(math.exp(x - m) for x in xs))

    v2t = 0.0
    for i in range(len(v)):
        row = [scale * float(v[i] @ t[u]) for u in range(len(t))]
        v2t += lse(row) - row[classes.index(labels[i])]
    v2t /= len(v)
    t2v = 0.0
    for u in range(len(t)):
        col = [scale * float(t[u] @ v[i]) for i in range(len(v))]
        positives = [col[i] for i in range(len(v)) if labels[i] == classes[u]]
        assert positives, "every class text of the batch has at least one video"
        t2v += lse(col) - lse(positives)
    t2v /= len(t)
    return (v2t + t2v) / 2


@pytest.mark.parametrize("labels,classes", [
    ([0, 1, 2, 3], [0, 1, 2, 3]),                  # one video per class
    ([5, 2, 5, 5, 7, 2], [2, 5, 7]),               # duplicates: 3 videos of class 5, 2 of class 2
    ([9, 9, 9], [9]),                              # a single class: the text->video term is 0
    ([3, 1, 3, 1, 4], [1, 3, 4]),
])
def test_contrastive_loss_equals_loop_reference(labels, classes):
    g = torch.Generator().manual_seed(len(labels) * 10 + len(classes))
    b, u, d = len(labels), len(classes), 8
    video = torch.randn(b, d, generator=g) * 3.0          # any norm: the loss normalises
    text = torch.randn(u, d, generator=g) * 0.5
    for scale in (1.0, 7.5, 100.0):
        got = losses.contrastive_loss(video, torch.tensor(labels), text, torch.tensor(classes), torch.tensor(scale))
        want = reference_contrastive(video.numpy(), labels, text.numpy(), classes, scale)
        assert float(got) == pytest.approx(want, rel=2e-5, abs=2e-5), (labels, scale)


def test_contrastive_loss_duplicates_are_all_positives():
    """Two videos of one class: moving the second one towards its text lowers the loss
    (it is a positive, not a negative, for that text)."""
    text = torch.eye(3)
    labels, classes = torch.tensor([0, 0, 1, 2]), torch.tensor([0, 1, 2])
    base = torch.tensor([[1.0, 0.0, 0.0], [0.2, 1.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    closer = base.clone()
    closer[1] = torch.tensor([1.0, 0.3, 0.3])
    scale = torch.tensor(10.0)
    assert losses.contrastive_loss(closer, labels, text, classes, scale) < losses.contrastive_loss(base, labels, text, classes, scale)


def test_perfect_alignment_beats_random():
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=g))
    text = q[:5]                                                   # 5 orthonormal class texts
    labels = torch.tensor([0, 1, 1, 2, 3, 4, 4, 4])
    classes = torch.arange(5)
    scale = torch.tensor(100.0)
    aligned = losses.contrastive_loss(text[labels] * 2.0, labels, text, classes, scale)
    assert float(aligned) < 1e-3
    randoms = [float(losses.contrastive_loss(torch.randn(8, 16, generator=g), labels, text, classes, scale))
               for _ in range(5)]
    assert all(float(aligned) < r for r in randoms)
    assert min(randoms) > 0.5


def test_contrastive_loss_gradients_match_reference():
    """Autograd through the loss equals a finite-difference of the loop reference."""
    g = torch.Generator().manual_seed(3)
    labels, classes = [1, 0, 1, 2], [0, 1, 2]
    video = torch.randn(4, 6, generator=g, dtype=torch.float64)
    text = torch.randn(3, 6, generator=g, dtype=torch.float64)
    v = video.clone().requires_grad_(True)
    losses.contrastive_loss(v, torch.tensor(labels), text, torch.tensor(classes), torch.tensor(5.0)).backward()
    eps = 1e-4
    for i, j in [(0, 0), (1, 3), (2, 5), (3, 2)]:
        plus, minus = video.clone(), video.clone()
        plus[i, j] += eps
        minus[i, j] -= eps
        fd = (reference_contrastive(plus.numpy(), labels, text.numpy(), classes, 5.0)
              - reference_contrastive(minus.numpy(), labels, text.numpy(), classes, 5.0)) / (2 * eps)
        assert float(v.grad[i, j]) == pytest.approx(fd, abs=2e-3)


# ----------------------------------------------------------------------------- gather_with_grad (2 gloo processes)

# The spawned processes import only torch and text4vis/losses.py (loaded from its file), not the
# package (whose open_clip import would cost each process seconds).
GATHER_WORKER = """
import importlib.util, os, torch, torch.distributed as dist

def worker(rank, world, init, out, losses_path, cases):
    spec = importlib.util.spec_from_file_location("text4vis_losses_under_test", losses_path)
    losses = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(losses)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        for name, sizes in cases:
            xs = [torch.arange(n * 3, dtype=torch.float32).view(n, 3) + 100 * r for r, n in enumerate(sizes)]
            x = xs[rank].clone().requires_grad_(True)
            y = losses.gather_with_grad(x)
            weights = torch.arange(y.numel(), dtype=torch.float32).view_as(y) + 1.0
            (y * weights).sum().backward()
            labels = losses.gather_with_grad(torch.tensor([10 * rank + i for i in range(sizes[rank])]))
            torch.save({"y": y.detach(), "expected": torch.cat(xs), "grad": x.grad, "weights": weights,
                        "labels": labels, "requires_grad": y.requires_grad},
                       os.path.join(out, f"{name}_rank{rank}.pt"))
    finally:
        dist.destroy_process_group()
"""

GATHER_CASES = [("even", [3, 3]), ("uneven", [3, 2]), ("uneven_other_way", [1, 4])]


@pytest.fixture(scope="module")
def gathered(tmp_path_factory):
    """Run every case in one pair of spawned gloo processes (file:// rendezvous)."""
    import importlib
    import torch.multiprocessing as mp
    d = tmp_path_factory.mktemp("gather")
    (d / "gather_worker_mod.py").write_text(GATHER_WORKER)
    sys.path.insert(0, str(d))
    try:
        mod = importlib.import_module("gather_worker_mod")
        mp.spawn(mod.worker, args=(2, f"file://{d / 'rendezvous'}", str(d), losses.__file__, GATHER_CASES),
                 nprocs=2, join=True)
    finally:
        sys.path.remove(str(d))
    return d


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("name,sizes", GATHER_CASES, ids=[c[0] for c in GATHER_CASES])
def test_gather_with_grad_two_gloo_processes(gathered, name, sizes):
    """Every rank gets the concatenation in rank order; gradients reach the local part only.
    Uneven batches happen (TrainBatchSampler spreads a shorter share over the same number of
    batches), so the gather must also work when the ranks' batch sizes differ."""
    offsets = np.cumsum([0] + sizes)
    for rank in range(2):
        r = torch.load(gathered / f"{name}_rank{rank}.pt")
        assert r["requires_grad"]
        assert torch.equal(r["y"], r["expected"]), rank
        lo, hi = offsets[rank], offsets[rank + 1]
        assert torch.equal(r["grad"], r["weights"][lo:hi]), rank
        assert r["labels"].tolist() == [10 * q + i for q, n in enumerate(sizes) for i in range(n)]


def test_gather_with_grad_without_process_group_is_identity():
    x = torch.randn(4, 3, requires_grad=True)
    assert losses.gather_with_grad(x) is x


# ----------------------------------------------------------------------------- training (tiny CLIP, CPU)

@pytest.fixture(scope="session")
def contrastive_data(tmp_path_factory):
    from text4vis.synthetic import make_benchmark
    d = tmp_path_factory.mktemp("contrastive")
    info = make_benchmark(d / "bench", shapes=["circle", "square"], motions=["moving left", "moving right"],
                          heldout=[], train_per_class=3, val_per_class=1, num_frames=8, size=32, progress=False)
    sd = tiny_openai_state_dict(0)
    clip = str(d / "tiny_clip.pt")
    torch.save(sd, clip)
    cfg = {
        "data": {"train_list": str(info["train_list"]), "train_root": str(info["root"]),
                 "labels": str(info["labels_csv"]), "num_frames": 4, "batch_size": 12, "workers": 0,
                 "flip": False, "grayscale": 0.0},
        "model": {"clip": clip, "head": "mean"},
        "classifier": {"type": "text", "prompts": [PROMPT]},
        "optim": {"lr": 1e-3, "clip_ratio": 1.0, "epochs": 6, "warmup_epochs": 0, "weight_decay": 0.0},
        "training": {"mode": "contrastive", "print_freq": 1, "eval_freq": 0, "seed": 0},
    }
    path = str(d / "contrastive.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    return {"dir": d, "info": info, "config": path, "clip": clip, "sd": sd, "names": info["classes"]}


def _train(data, out, *extra) -> int:
    return cli_main(["train", "--config", data["config"], "--output", str(out), "--quiet", *extra])


def _losses(run) -> list[float]:
    with open(os.path.join(run, "metrics.jsonl")) as f:
        return [json.loads(line)["loss"] for line in f if "loss" in json.loads(line)]


def _text_weights(path) -> dict[str, torch.Tensor]:
    meta, tensors = checkpoints.read_text4vis(path)
    assert meta["has_text_tower"]
    return checkpoints.split_prefix(tensors, "text.")


def _text_diff(data, path) -> float:
    text = _text_weights(path)
    original = {k: v for k, v in data["sd"].items() if not k.startswith("visual.") and k != "logit_scale"}
    assert set(original) <= set(text)
    return max(float((text[k].float() - v.float()).abs().max()) for k, v in original.items())


@pytest.fixture(scope="session")
def online_run(contrastive_data):
    out = contrastive_data["dir"] / "online"
    assert _train(contrastive_data, out, "--set", "training.text_tower=online") == 0
    return out


@pytest.fixture(scope="session")
def frozen_run(contrastive_data):
    out = contrastive_data["dir"] / "frozen"
    assert _train(contrastive_data, out, "--set", "training.text_tower=frozen", "--set", "optim.epochs=3") == 0
    return out


def test_online_contrastive_training_loss_decreases(online_run):
    values = _losses(online_run)
    assert len(values) == 6                                   # one step per epoch, logged every step
    assert all(math.isfinite(v) for v in values)
    assert values[-1] < values[0] - 0.05, values
    assert np.mean(values[-2:]) < np.mean(values[:2]), values


def test_online_text_tower_changes(contrastive_data, online_run):
    assert _text_diff(contrastive_data, online_run / "last.safetensors") > 1e-4


def test_online_checkpoint_classifier_follows_trained_text_tower(contrastive_data, online_run):
    """With the text tower trained, the checkpoint's classifier rows are the trained tower's
    text embeddings of the classes (not the rows of the untrained one)."""
    import text4vis
    rec = text4vis.load(checkpoint=str(online_run / "best.safetensors"))
    fresh = classifiers.text_classifier(rec.towers, contrastive_data["names"], [PROMPT], cache=False).weight
    stored = rec.model.classifier.cpu()
    assert torch.allclose(stored, fresh, atol=1e-5), float((stored - fresh).abs().max())


def test_frozen_text_tower_does_not_change(contrastive_data, frozen_run):
    values = _losses(frozen_run)
    assert len(values) == 3 and all(math.isfinite(v) for v in values)
    assert _text_diff(contrastive_data, frozen_run / "last.safetensors") == 0.0
    # the classifier is exactly the untrained CLIP text classifier
    from text4vis.towers import load_towers
    want = classifiers.text_classifier(load_towers(contrastive_data["clip"]), contrastive_data["names"], [PROMPT],
                                       cache=False).weight
    _, tensors = checkpoints.read_text4vis(str(frozen_run / "last.safetensors"))
    assert torch.allclose(tensors["model.classifier"], want, atol=1e-6)


def test_frozen_text_tower_needs_a_text_classifier(contrastive_data, tmp_path, capsys):
    rc = _train(contrastive_data, tmp_path / "x", "--set", "training.text_tower=frozen",
                "--set", "classifier.type=random")
    assert rc == 2
    assert "classifier.type=text" in capsys.readouterr().err


@pytest.mark.parametrize("which", ["online", "frozen"])
def test_contrastive_checkpoints_load_and_predict(contrastive_data, online_run, frozen_run, which):
    import text4vis
    run = online_run if which == "online" else frozen_run
    rec = text4vis.load(checkpoint=str(run / "best.safetensors"))
    assert rec.labels == contrastive_data["names"] and rec.num_frames == 4
    root = contrastive_data["info"]["root"]
    videos = [str(root / line.split()[0]) for line in open(contrastive_data["info"]["val_list"])]
    records = rec.predict(videos, topk=2, views="1x1", workers=0)
    assert [r["video"] for r in records] == videos
    for r in records:
        assert "error" not in r
        assert len(r["top"]) == 2 and r["top"][0]["label"] in rec.labels
        assert r["top"][0]["score"] >= r["top"][1]["score"]
    # the embedding and classifier of the checkpoint give the reported scores
    _, views, error = ViewsDataset([Sample(videos[0], -1)], 4, rec.input_size)[0]   # 1 view: [1, T, 3, S, S]
    assert error is None
    frames = views
    emb = rec.encode_video(frames)
    probs = (100.0 * emb @ F.normalize(rec.model.classifier.float(), dim=-1).t()).softmax(-1)[0]
    assert max(float(probs.max()) - records[0]["top"][0]["score"], 0.0) < 1e-5
    assert rec.labels[int(probs.argmax())] == records[0]["top"][0]["label"]


# ----------------------------------------------------------------------------- two processes, batch gather

def _torchrun_env() -> dict:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TEXT4VIS_CACHE=os.environ["TEXT4VIS_CACHE"])
    return env


@pytest.mark.slow
@pytest.mark.distributed
def test_two_process_contrastive_with_batch_gather(contrastive_data, tmp_path):
    """torchrun, 2 gloo processes, 9 training videos in batches of 2 per process: the shares
    (5 and 4 videos) give batches of different sizes on the two ranks, which the gather must take."""
    info = contrastive_data["info"]
    lines = open(info["train_list"]).read().splitlines()[:9]
    train9 = tmp_path / "train9.txt"
    train9.write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "text4vis", "train", "--config", contrastive_data["config"], "--output", str(out), "--quiet",
           "--set", f"data.train_list={train9}", "--set", "data.batch_size=2", "--set", "optim.epochs=1",
           "--set", "training.mode=contrastive", "--set", "training.batch_gather=true",
           "--set", "training.text_tower=online"]
    proc = subprocess.run(cmd, env=_torchrun_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 process(es)" in proc.stderr
    values = _losses(out)
    assert values and all(math.isfinite(v) for v in values)
    assert (out / "last.safetensors").exists()
    assert _text_diff(contrastive_data, out / "last.safetensors") > 0
    meta, _ = checkpoints.read_text4vis(str(out / "last.safetensors"))
    assert meta["train"] is not None
    import text4vis
    rec = text4vis.load(checkpoint=str(out / "last.safetensors"))
    assert rec.labels == contrastive_data["names"]
