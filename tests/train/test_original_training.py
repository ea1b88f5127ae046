"""Training exactly as the original Text4Vis code does (issue 24, items 1-2): its learning-rate schedule
(stepped at the first and every 10th batch of an epoch, warmup from 0) and its gradient accumulation
(an epoch's leftover batches carry their gradients into the next epoch's first step), for original
configs; text4vis's own configs keep per-step updates unless they ask (`optim.schedule`,
`optim.carry_gradients`).

Tiny random-weight CLIP of conftest, 4 frames, 12 training videos of 8 frames, batch 1: 12 batches
per epoch, so the every-10th-batch rule shows.
"""
from __future__ import annotations

import json
import math

import pytest
from conftest import small_benchmark

from text4vis.classifiers import text_classifier
from text4vis.labels import load_labels
from text4vis.towers import load_towers
from text4vis.train import loop, train
from text4vis.train.config import load_config


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """4 classes x 3 training videos (real H.264, 8 frames of 32x32) and a list file."""
    return small_benchmark(tmp_path_factory.mktemp("bench") / "bench", train_per_class=3)


@pytest.fixture(scope="module")
def clip(tiny_dir, bench):
    path = str(tiny_dir / "openai_sd.pt")
    text_classifier(load_towers(path), load_labels(str(bench["labels_csv"])))   # cached once
    return path


ORIGINAL = """\
resume:
pretrain:
seed: 1024
data:
    dataset: k400
    modality: RGB
    num_segments: 4
    seg_length: 1
    batch_size: 1
    workers: 0
    num_classes: 4
    image_tmpl: 'img_{{:05d}}.jpg'
    train_root: '{root}'
    train_list: '{train_list}'
    label_list: '{labels}'
    input_size: 32
    random_shift: True
network:
    arch: {arch}
    init: True
    tm: False
    drop_out: 0.0
    emb_dropout: 0.0
    type: clip_k400
    sim_header: Transf
    fix_text: True
    fix_video: False
solver:
    type: cosine
    epochs: 2
    start_epoch: 0
    optim: adamw
    lr: {lr}
    lr_warmup_step: 1
    weight_decay: 0.2
    loss_type: CE
    evaluate: False
    clip_ratio: 0.1
    grad_accumulation_steps: {accum}
logging:
    print_freq: 1
    eval_freq: 0
"""
LR, RATIO = 1e-3, 0.1


def original_yaml(tmp_path, bench, clip, accum: int) -> str:
    path = tmp_path / f"k400_tiny_accum{accum}.yaml"
    path.write_text(ORIGINAL.format(root=bench["root"], train_list=bench["train_list"], labels=bench["labels_csv"],
                                    arch=clip, lr=LR, accum=accum))
    return str(path)


class OriginalWarmupCosine:
    """The original's `_lr_scheduler` for `solver.type: cosine`: utils/lr_scheduler.py's
    WarmupCosineAnnealingLR(optimizer, solver.epochs, warmup_epochs=solver.lr_warmup_step), warmup power 1
    from lr 0, final factor 0. Like any torch _LRScheduler it steps once when built (last_epoch -1 -> 0);
    `step(t)` sets last_epoch = t."""

    def __init__(self, base_lrs: list[float], total_epoch: float, warmup_epochs: float):
        self.base_lrs, self.total, self.warmup = base_lrs, total_epoch, warmup_epochs
        self.last_epoch = -1
        self.step()

    def step(self, epoch: float | None = None) -> None:
        self.last_epoch = self.last_epoch + 1 if epoch is None else epoch
        self.lrs = [self._lr(b) for b in self.base_lrs]

    def _lr(self, base: float) -> float:
        if self.last_epoch < self.warmup:
            return (self.last_epoch / self.warmup) * (base - 0) + 0
        progress = min(1.0, (self.last_epoch - self.warmup) / (self.total - self.warmup))
        return base * (math.cos(math.pi * progress) + 1) / 2


def original_step_lrs(epochs: int, batches: int, accum: int, warmup: float) -> list[list[float]]:
    """The lrs of each optimiser step, stepping the scheduler as the original train.py does:
    `if (i + 1) == 1 or (i + 1) % 10 == 0: lr_scheduler.step(epoch + i / len(train_loader))` before each
    batch, `optimizer.step()` when `(i + 1) % grad_accumulation_steps == 0`."""
    sched = OriginalWarmupCosine([LR * RATIO, LR], epochs, warmup)
    out = []
    for epoch in range(epochs):
        for i in range(batches):
            if (i + 1) == 1 or (i + 1) % 10 == 0:
                sched.step(epoch + i / batches)
            if (i + 1) % accum == 0:
                out.append(list(sched.lrs))
    return out


def step_lrs(out) -> list[list[float]]:
    recs = [json.loads(line) for line in open(out / "metrics.jsonl")]
    return [[r["lr_tower"], r["lr"]] for r in recs if "loss" in r]


class Counter:
    """Wraps the loop's forward_backward and optimizer_step: micro-batches per optimiser step, and whether
    gradients were present when each micro-batch started."""

    def __init__(self, monkeypatch):
        self.sizes, self.since, self.had_grads = [], 0, []
        fb, step = loop.forward_backward, loop.optimizer_step

        def forward_backward(run, *args):
            self.had_grads.append(any(p.grad is not None for p in run.trainee.parameters()))
            self.since += 1
            return fb(run, *args)

        def optimizer_step(*args):
            self.sizes.append(self.since)
            self.since = 0
            return step(*args)
        monkeypatch.setattr(loop, "forward_backward", forward_backward)
        monkeypatch.setattr(loop, "optimizer_step", optimizer_step)


def test_original_config_trains_with_the_original_lr_schedule(bench, clip, tmp_path):
    cfg, _ = load_config(original_yaml(tmp_path, bench, clip, accum=1))
    assert (cfg.optim.schedule, cfg.optim.carry_gradients) == ("original", True)
    train(cfg, str(tmp_path / "run"), progress=False)
    got, want = step_lrs(tmp_path / "run"), original_step_lrs(epochs=2, batches=12, accum=1, warmup=1)
    assert len(got) == len(want) == 24
    for g, w in zip(got, want):
        assert g == pytest.approx(w, rel=1e-12, abs=1e-18)
    assert got[0] == [0.0, 0.0]                                   # warmup starts at lr 0, as the published log
    assert got[9][1] == pytest.approx(LR * 9 / 12) and got[10][1] == got[9][1]   # set at batch 9, kept at 10, 11


def test_original_config_carries_leftover_gradients_into_the_next_epoch(bench, clip, tmp_path, monkeypatch):
    counter = Counter(monkeypatch)
    cfg, _ = load_config(original_yaml(tmp_path, bench, clip, accum=5))
    train(cfg, str(tmp_path / "run"), progress=False)
    # 12 batches, accumulation 5: steps after batches 5 and 10; batches 11-12 join the next epoch's first step
    assert counter.sizes == [5, 5, 7, 5]
    assert counter.had_grads[12] and not counter.had_grads[10]    # carried, not zeroed, at the epoch's turn
    got, want = step_lrs(tmp_path / "run"), original_step_lrs(epochs=2, batches=12, accum=5, warmup=1)
    assert len(got) == len(want) == 4
    for g, w in zip(got, want):
        assert g == pytest.approx(w, rel=1e-12, abs=1e-18)


def test_own_configs_keep_per_step_updates_unless_asked(bench, clip, tmp_path, monkeypatch):
    counter = Counter(monkeypatch)
    base = [f"model.clip={clip}", f"data.train_list={bench['train_list']}", f"data.train_root={bench['root']}",
            f"data.labels={bench['labels_csv']}", "data.num_frames=4", "data.batch_size=1", "data.workers=0",
            "optim.epochs=2", f"optim.lr={LR}", "optim.warmup_epochs=1", "training.print_freq=1",
            "optim.grad_accumulation=5"]
    cfg, _ = load_config(None, base)
    assert (cfg.optim.schedule, cfg.optim.carry_gradients) == ("per_step", False)
    train(cfg, str(tmp_path / "own"), progress=False)
    assert counter.sizes == [5, 5, 2] * 2                          # a shorter last step in each epoch
    lrs = [lr for _, lr in step_lrs(tmp_path / "own")]
    assert lrs[0] == pytest.approx(LR / 3)                         # (step + 1) / warmup_steps, every step
    # asked for: the original's rules on a text4vis config
    counter.sizes.clear()
    cfg, _ = load_config(None, base + ["optim.schedule=original", "optim.carry_gradients=true"])
    train(cfg, str(tmp_path / "asked"), progress=False)
    assert counter.sizes == [5, 5, 7, 5]
    for g, w in zip(step_lrs(tmp_path / "asked"), original_step_lrs(epochs=2, batches=12, accum=5, warmup=1)):
        assert g == pytest.approx(w, rel=1e-12, abs=1e-18)


def test_carrying_needs_a_step_per_epoch(bench, clip, tmp_path):
    cfg, _ = load_config(None, [f"model.clip={clip}", f"data.train_list={bench['train_list']}",
                                f"data.train_root={bench['root']}", f"data.labels={bench['labels_csv']}",
                                "data.num_frames=4", "data.batch_size=4", "data.workers=0",
                                "optim.grad_accumulation=4", "optim.carry_gradients=true"])
    with pytest.raises(Exception, match="an epoch has 3 batches, fewer than optim.grad_accumulation=4"):
        train(cfg, str(tmp_path / "run"), progress=False)
