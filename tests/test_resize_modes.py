"""Test-time resize modes (issue 26): each backbone's own rule, from its preprocessing config.

SigLIP's `squash` (resize both sides, no crop) is applied at test time: text4vis's frame embedding of a real
frame equals open_clip's own `preprocess_val` + `encode_image` on a tiny SigLIP folder; `longest` and
`shortest` views equal open_clip's transforms; the mode survives checkpoints, pickling and the watch windower.
The OpenAI-CLIP path (`shortest`, the paper's 256/224 rule) keeps plain int sizes and its existing tests.
"""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import backbone_fixtures as bf
import text4vis
from conftest import SHARED_VIDEOS
from text4vis import checkpoints, sampling, transforms
from text4vis.datasets import FrameReader, Sample, TestDataset

VIDEO = os.path.join(SHARED_VIDEOS, "arm_wrestling_h264.mp4")   # 340x256: not square, so the modes differ


@pytest.fixture(scope="module")
def siglip(tmp_path_factory):
    d = tmp_path_factory.mktemp("siglip")
    cfg, pre = bf.open_clip_configs(bf.spm_tokenizer_dir(str(d / "spm")))["tiny-SigLIP"]
    assert pre["resize_mode"] == "squash"      # open_clip's own config for SigLIP (webli)
    return bf.open_clip_family("tiny-SigLIP", cfg, pre, str(d))


@pytest.fixture(scope="module")
def frame():
    """The real frame `predict --views 1x1 --frames 1` decodes (text4vis's reader), uint8 [1, H, W, 3]."""
    rgb = FrameReader()(Sample(VIDEO, -1, None, VIDEO), lambda n: [i for c in sampling.view_indices(n, 1, 1) for i in c])
    assert rgb.shape[1:3] == (256, 340)
    return rgb


def open_clip_view(rgb: np.ndarray, size: int, mode: str) -> torch.Tensor:
    """open_clip's test transform (PIL) of one frame as uint8 [3, S, S] (no normalisation)."""
    from open_clip.transform import image_transform
    from PIL import Image
    tf = image_transform(size, is_train=False, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), resize_mode=mode)
    return (tf(Image.fromarray(rgb)) * 255.0).round().to(torch.uint8)


def test_siglip_squash_frame_embedding_matches_open_clip_preprocess_val(siglip, frame):
    import open_clip
    from PIL import Image
    model, _, preprocess_val = open_clip.create_model_and_transforms("local-dir:" + siglip["dir"])
    rec = text4vis.load(clip=siglip["dir"], labels=["a", "b"], device="cpu")
    assert rec.resize_mode == "squash" and rec.input_size == 160 and rec.input_size.resize_mode == "squash"
    _, views, error = TestDataset([Sample(VIDEO, -1, None, VIDEO)], 1, rec.input_size, 1, 1)[0]   # predict's path
    assert error is None and views.shape == (1, 1, 3, 160, 160)
    want_pixels = preprocess_val(Image.fromarray(frame[0]))
    assert (rec.model.normalize(views[0, 0]) - want_pixels).abs().max() <= 2.5 / 255 / 0.5   # at most 2 levels
    with torch.no_grad():
        want = model.encode_image(want_pixels[None])
        got = rec.model.frame_embeddings(views).flatten(0, 1)
        assert F.cosine_similarity(got, want).item() >= 0.9999
        # the paper's rule (resize the short side, centre crop) is not what this model was trained with
        cropped = transforms.test_views(transforms.to_tensor(frame), 160, 1)[0][None]
        assert F.cosine_similarity(rec.model.frame_embeddings(cropped).flatten(0, 1), want).item() < 0.9999


@pytest.mark.parametrize("mode", ["squash", "longest", "shortest"])
@pytest.mark.parametrize("tall", [False, True])
def test_views_follow_open_clip_resize_modes(mode, tall, frame):
    rgb = np.ascontiguousarray(frame[0].transpose(1, 0, 2)) if tall else frame[0]
    size = transforms.view_size(96, mode)      # not 224: the paper's 256/224 shortest rule applies at 224 only
    clip = transforms.to_tensor(rgb[None])
    (view,) = transforms.test_views(clip, size, 1)
    assert view.shape == (1, 3, 96, 96)
    want = open_clip_view(rgb, 96, mode)
    diff = (view[0].int() - want.int()).abs()
    assert diff.float().mean() < 0.5 and diff.max() <= 3, (mode, float(diff.float().mean()), int(diff.max()))
    three = transforms.test_views(clip, size, 3)
    assert len(three) == 3 and all(v.shape == (1, 3, 96, 96) for v in three)
    if mode != "shortest":                     # the whole frame: the 3 crops are that one view
        assert all(torch.equal(v, view) for v in three)
    if mode == "longest":                      # the short side is zero-padded, centred
        pad = (96 - round(min(rgb.shape[:2]) * 96 / max(rgb.shape[:2]))) // 2
        edge = view[0, :, :, :pad] if tall else view[0, :, :pad]
        assert pad > 0 and int(edge.max()) == 0


def test_shortest_is_a_plain_int_and_the_mode_survives_pickling_and_windows():
    from text4vis.watch.windows import Windower
    assert type(transforms.view_size(224, "shortest")) is int and type(transforms.view_size(224, None)) is int
    size = transforms.view_size(224, "squash")
    back = pickle.loads(pickle.dumps(size))    # DataLoader workers, serve's decode pool, Ray
    assert back == 224 and back.resize_mode == "squash" and size + 32 == 256
    assert Windower(2.0, 1.0, 8, size).size.resize_mode == "squash"
    with pytest.raises(ValueError, match="resize_mode='crop'"):
        transforms.ViewSize(224, "crop")


def test_checkpoints_keep_the_mode(siglip, tmp_path):
    rec = text4vis.load(clip=siglip["dir"], labels=["a", "b"], device="cpu")
    for include_text in (True, False):         # no text tower: the mode still comes from the stored towers' config
        path = str(tmp_path / f"m{int(include_text)}.safetensors")
        checkpoints.save_checkpoint(path, rec.model, rec.towers, labels=rec.labels,
                                    classifier_meta=rec.classifier_meta, settings={"num_frames": 1, "input_size": 160},
                                    include_text=include_text)
        again = text4vis.load(checkpoint=path, device="cpu")
        assert again.resize_mode == "squash" and again.input_size.resize_mode == "squash"


def test_openai_clip_keeps_the_papers_rule_as_a_plain_int(clip_file):
    rec = text4vis.load(clip=clip_file, labels=["a", "b"], device="cpu")
    assert rec.resize_mode == "shortest" and type(rec.input_size) is int
