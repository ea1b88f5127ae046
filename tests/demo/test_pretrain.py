"""The demo's pretraining stage and its pieces: captions derived from what a frame shows, the cache,
and the report's noise rule. Tiny settings: a few seconds."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from text4vis import synthetic
from text4vis.demo import report as demo_report
from text4vis.demo.pretrain import PretrainSettings, cache_key, pretrain

CLIP_CFG = dict(embed_dim=32, vision_cfg=dict(layers=1, width=64, patch_size=8, image_size=32),
                text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=1, layers=1), quick_gelu=True)


def test_captions_say_what_the_frame_shows():
    frames, captions, named = synthetic.render_captioned_frames(40, np.random.default_rng(3), 32, object_scale=1.5)
    assert frames.shape == (40, 32, 32, 3) and frames.dtype == np.uint8 and len(captions) == len(named) == 40
    for cap, attrs in zip(captions, named):
        assert attrs["shape"] in cap.split()                      # the shape is always named
        for word in attrs.values():
            assert word in cap
        assert cap.startswith("an " if cap.split()[1][0] in "aeiou" else "a ")
    # the words follow the ground truth: an object drawn in the top-left third, big, pure red
    _, gt = synthetic.render_clip("star", "growing", np.random.default_rng(0), 1, 32)
    gt = dict(gt, x=np.array([3.0]), y=np.array([4.0]), radius=np.array([0.2 * 32]), fg_color=(250.0, 10.0, 5.0))
    attrs = synthetic.frame_attributes(gt, 0, 32)
    assert attrs == {"shape": "star", "colour": "red", "size": "large", "position": "in the top left"}
    assert synthetic.caption(attrs, ("size", "position")) == "a large star in the top left"
    assert synthetic.caption(dict(attrs, colour="orange"), ("colour",)) == "an orange star"


def test_object_scale_makes_objects_bigger_and_is_checked():
    _, small = synthetic.render_clip("circle", "moving left", np.random.default_rng(5), 4, 32)
    _, big = synthetic.render_clip("circle", "moving left", np.random.default_rng(5), 4, 32, object_scale=1.5)
    assert big["radius"][0] == pytest.approx(1.5 * small["radius"][0])
    with pytest.raises(ValueError, match="object_scale"):
        synthetic.render_clip("circle", "growing", np.random.default_rng(0), 4, 32, object_scale=3.0)


def test_vision_only_pretraining_is_cached_by_its_settings(tmp_path):
    p = PretrainSettings(frames=256, steps=3, batch=32, heldout_frames=64)
    first = pretrain(tmp_path, CLIP_CFG, p, mode="labels", seed=0, progress=False)
    assert not first["cached"] and first["heldout_shape_chance"] == pytest.approx(1 / 6)
    assert 0.0 <= first["heldout_shape_top1"] <= 1.0 and len(first["loss_curve"]) >= 1
    sd = torch.load(f"{first['dir']}/clip.pt", weights_only=True)
    assert "visual.proj" in sd and "text_projection" in sd       # OpenAI layout: loads with model.clip=
    again = pretrain(tmp_path, CLIP_CFG, p, mode="labels", seed=0, progress=False)
    assert again["cached"] and again["dir"] == first["dir"]
    assert cache_key(p, CLIP_CFG, "labels", 0) != cache_key(PretrainSettings(frames=256, steps=4, batch=32,
                                                                            heldout_frames=64), CLIP_CFG, "labels", 0)
    assert cache_key(p, CLIP_CFG, "labels", 0) != cache_key(p, CLIP_CFG, "text", 0)
    from text4vis.towers import load_towers
    towers = load_towers(f"{first['dir']}/clip.pt")
    assert towers.embed_dim == 32
    for k, v in towers.clip.visual.state_dict().items():     # the pretrained tower is what loads
        assert torch.equal(v, sd[f"visual.{k}"]), k


def test_pretrain_rejects_an_unknown_mode(tmp_path):
    from text4vis.errors import UsageError
    with pytest.raises(UsageError, match="mode="):
        pretrain(tmp_path, CLIP_CFG, PretrainSettings(frames=8, steps=1), mode="audio")


def test_report_counts_a_difference_only_beyond_the_noise():
    st = lambda m, s, n: {"mean": m, "std": s, "n": n}  # noqa: E731
    assert demo_report.compare(st(0.80, 0.01, 3), st(0.50, 0.01, 3), 100) == "higher"
    assert demo_report.compare(st(0.52, 0.01, 3), st(0.50, 0.01, 3), 100) == "same"
    assert demo_report.compare(st(0.60, 0.20, 3), st(0.50, 0.20, 3), 10000) == "same"   # seeds disagree
    assert demo_report.compare(st(0.30, 0.0, 1), st(0.60, 0.0, 1), 400) == "lower"
    assert demo_report.versus_chance(st(0.9, 0.0, 1), 0.5, 40) == "higher"
    assert demo_report._pm(st(0.8123, 0.034, 3)) == "81.2 ± 3.4" and demo_report._pm(st(0.5, 0.0, 1)) == "50.0"
