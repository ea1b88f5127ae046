"""Training options of the image tower and the loss (issue 24, item 10): activation checkpointing
(`model.grad_checkpointing`) and `training.compile` give the same loss and gradients as without (on the
CPU); stochastic depth (`model.drop_path`) and label smoothing (`training.label_smoothing`), off by default."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from text4vis.classifiers import random_classifier
from text4vis.model import VideoModel
from text4vis.towers import load_towers
from text4vis.train import tower
from text4vis.train.config import load_config
from text4vis.train.setup import Trainee


def video_model(tiny_dir) -> VideoModel:
    towers = load_towers(str(tiny_dir / "openai_sd.pt"))
    torch.manual_seed(0)
    model = VideoModel(towers.clip.visual, towers.embed_dim, "transf", mean=towers.mean, std=towers.std)
    model.set_classifier(random_classifier([str(i) for i in range(4)], towers.embed_dim).weight)
    return model.train()


def batch():
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (2, 4, 3, 32, 32), generator=g, dtype=torch.uint8), torch.tensor([1, 3])


def loss_and_grads(trainee: Trainee) -> tuple[float, dict[str, torch.Tensor]]:
    frames, labels = batch()
    trainee.zero_grad(set_to_none=True)
    loss, _ = trainee(frames, labels)
    loss.backward()
    return float(loss), {n: p.grad.clone() for n, p in trainee.named_parameters() if p.grad is not None}


def test_activation_checkpointing_gives_the_same_loss_and_gradients(tiny_dir):
    plain = Trainee(video_model(tiny_dir))
    checkpointed = copy.deepcopy(plain)
    tower.set_grad_checkpointing(checkpointed.video.visual)
    assert checkpointed.video.visual.transformer.grad_checkpointing
    loss_a, grads_a = loss_and_grads(plain)
    loss_b, grads_b = loss_and_grads(checkpointed)
    assert loss_a == loss_b and grads_a.keys() == grads_b.keys() and len(grads_a) > 20
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=0, atol=0, msg=name)


def test_compile_gives_the_same_loss_and_gradients(tiny_dir):
    plain = Trainee(video_model(tiny_dir))
    compiled_model = copy.deepcopy(plain)
    compiled = torch.compile(compiled_model, backend="aot_eager")   # the graph capture and autograd of compile
    loss_a, grads_a = loss_and_grads(plain)
    frames, labels = batch()
    loss_b, _ = compiled(frames, labels)
    loss_b.backward()
    grads_b = {n: p.grad for n, p in compiled_model.named_parameters() if p.grad is not None}
    assert float(loss_b) == pytest.approx(loss_a, rel=1e-6) and grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=1e-5, atol=1e-7, msg=name)


def test_drop_path_rates_training_only_and_no_renamed_weights(tiny_dir):
    model = video_model(tiny_dir)
    keys = list(model.state_dict())
    rates = tower.add_drop_path(model.visual, 0.5)
    assert rates == pytest.approx([0.0, 0.5])                       # 2 blocks: 0 at the first, 0.5 at the last
    assert list(model.state_dict()) == keys
    frames, _ = batch()
    torch.manual_seed(3)
    a = model.embed(frames)
    b = model.embed(frames)
    assert not torch.equal(a, b)                                     # training: branches dropped at random
    model.eval()
    reference = video_model(tiny_dir).eval()
    with torch.no_grad():
        torch.testing.assert_close(model.embed(frames), reference.embed(frames), rtol=0, atol=0)
    x = torch.ones(20000, 3)
    kept = tower.drop_path(x, 0.25)
    assert kept.unique().tolist() == pytest.approx([0.0, 4 / 3]) and kept.mean().item() == pytest.approx(1.0, abs=0.03)


def test_label_smoothing_is_the_smoothed_cross_entropy(tiny_dir):
    model = video_model(tiny_dir)
    frames, labels = batch()
    loss, logits = Trainee(model, label_smoothing=0.1)(frames, labels)
    assert float(loss) == pytest.approx(float(F.cross_entropy(logits.float(), labels, label_smoothing=0.1)))
    assert not math.isclose(float(loss), float(F.cross_entropy(logits.float(), labels)))


def test_options_are_off_by_default_and_checked():
    cfg, _ = load_config(None)
    assert (cfg.model.grad_checkpointing, cfg.model.drop_path, cfg.training.label_smoothing, cfg.training.compile) \
        == (False, 0.0, 0.0, False)
    with pytest.raises(Exception, match="training.label_smoothing applies to training.mode=classifier"):
        load_config(None, ["training.label_smoothing=0.1", "training.mode=contrastive"])
    with pytest.raises(Exception, match=r"model.drop_path is 1.0: a rate in \[0, 1\)"):
        load_config(None, ["model.drop_path=1"])


def test_a_run_with_checkpointing_and_compile_trains_the_same_weights(tiny_dir, tmp_path, monkeypatch):
    """End to end: a few optimiser steps with model.grad_checkpointing and training.compile (compile's graph
    capture and AOT autograd; inductor's code generation is left to GPUs) reach the weights of a plain run."""
    import functools

    from safetensors.torch import load_file

    from text4vis.synthetic import make_benchmark
    from text4vis.train import train
    bench = make_benchmark(tmp_path / "bench", shapes=["circle", "square"], motions=["moving left", "moving right"],
                           heldout=[], train_per_class=1, val_per_class=1, num_frames=8, size=32, progress=False)
    base = [f"model.clip={tiny_dir / 'openai_sd.pt'}", f"data.train_list={bench['train_list']}",
            f"data.train_root={bench['root']}", f"data.labels={bench['labels_csv']}", "data.num_frames=4",
            "data.batch_size=2", "data.workers=0", "optim.epochs=1", "optim.warmup_epochs=0", "optim.lr=1e-3"]
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    weights = {}
    for name, extra in (("plain", []), ("both", ["model.grad_checkpointing=true", "training.compile=true"])):
        cfg, _ = load_config(None, base + extra)
        train(cfg, str(tmp_path / name), progress=False)
        weights[name] = {k: v for k, v in load_file(str(tmp_path / name / "last.safetensors")).items()
                         if k.startswith("model.")}
    assert weights["plain"].keys() == weights["both"].keys()
    for k in weights["plain"]:
        torch.testing.assert_close(weights["both"][k], weights["plain"][k], rtol=1e-4, atol=1e-6, msg=k)
