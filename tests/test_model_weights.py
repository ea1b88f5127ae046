"""CLIP towers from every checkpoint format, the Transf head against a hand computation, original
Text4Vis and text4vis checkpoints, safe loading, and the frozen text classifier."""
from __future__ import annotations

import json
import math
import os
import pathlib
import pickle
import time
import zipfile

import pytest
import torch
import torch.nn.functional as F

import text4vis
from conftest import SHARED_VIDEOS, TINY, tiny_config, tiny_state_dict_of
from text4vis import checkpoints, classifiers, sampling, temporal, towers, transforms
from text4vis.classifiers import ClassifierError
from text4vis.towers import WeightsError
from text4vis.video import read_frames

FORMATS = ["openai_sd.pt", "openai_sd_fp16.pt", "openai_jit.pt", "open_clip_ckpt.pt"]
TEXTS = ["a video of a person arm wrestling.", "a photo of a dog", "x"]
ARM = os.path.join(SHARED_VIDEOS, "arm_wrestling_h264.mp4")
POOL = os.path.join(SHARED_VIDEOS, "cleaning_pool_xvid_mp3.avi")


@pytest.fixture(scope="module")
def loaded(tiny_dir):
    return {name: towers.load_towers(str(tiny_dir / name)) for name in FORMATS}


@pytest.fixture(scope="module")
def images():
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def wide_clip_file(tmp_path_factory):
    """A tiny OpenAI-format CLIP whose widths are all 128 (embed_dim 128)."""
    path = tmp_path_factory.mktemp("wide") / "openai_sd_w128.pt"
    torch.save(tiny_state_dict_of(tiny_config(128), seed=5), path)
    return path


def _need(path: str) -> str:
    if not os.path.isfile(path):
        pytest.skip(f"{path} is not available")
    return path


# ----------------------------------------------------------------------------- towers from every format

@pytest.mark.parametrize("name", FORMATS)
def test_inferred_config(loaded, name):
    t = loaded[name]
    assert t.config == TINY  # embed 64; ViT width 64, 2 layers, patch 8, 32 px; text 77 x 49408, width 64
    v = t.clip.visual
    assert len(v.transformer.resblocks) == 2
    assert v.transformer.resblocks[0].attn.num_heads == 64 // 64
    assert t.clip.transformer.resblocks[0].attn.num_heads == 1
    assert t.embed_dim == 64 and t.input_size == 32 and t.context_length == 77
    assert t.clip.token_embedding.weight.shape == (49408, 64)
    # QuickGELU in both towers
    from open_clip.transformer import QuickGELU
    assert isinstance(v.transformer.resblocks[0].mlp.gelu, QuickGELU)
    assert isinstance(t.clip.transformer.resblocks[0].mlp.gelu, QuickGELU)
    assert all(p.dtype == torch.float32 for p in t.clip.parameters())
    assert not t.clip.training


def test_fp32_formats_give_identical_outputs(loaded, tiny_dir, images):
    ref = loaded["openai_sd.pt"]
    sd = torch.load(tiny_dir / "openai_sd.pt", weights_only=True)
    for k, v in ref.clip.state_dict().items():
        if k in sd:
            assert torch.equal(v, sd[k]), k
    with torch.no_grad():
        img0, txt0 = ref.clip.encode_image(images), ref.encode_text(TEXTS)
        for name in ("openai_jit.pt", "open_clip_ckpt.pt"):
            t = loaded[name]
            assert torch.equal(t.clip.encode_image(images), img0), name
            assert torch.equal(t.encode_text(TEXTS), txt0), name
    assert img0.shape == (3, 64) and txt0.shape == (3, 64)
    torch.testing.assert_close(txt0.norm(dim=-1), torch.ones(3))
    assert not torch.allclose(txt0[0], txt0[1], atol=1e-3)


def test_fp16_format_close_to_fp32(loaded, tiny_dir, images):
    ref, half = loaded["openai_sd.pt"], loaded["openai_sd_fp16.pt"]
    sd16 = torch.load(tiny_dir / "openai_sd_fp16.pt", weights_only=True)
    # the fp16 file is read exactly (then computed in fp32)
    for k, v in half.clip.state_dict().items():
        if k in sd16:
            assert torch.equal(v, sd16[k].float()), k
    with torch.no_grad():
        a, b = ref.clip.encode_image(images), half.clip.encode_image(images)
        ta, tb = ref.encode_text(TEXTS), half.encode_text(TEXTS)
    assert not torch.equal(a, b)  # the rounding is real ...
    rel = (a - b).norm() / a.norm()
    assert rel < 5e-3, rel          # ... and small
    assert F.cosine_similarity(ta, tb).min() > 0.999


def test_openai_cache_is_used_for_names(tiny_dir, tmp_path, monkeypatch):
    cache = tmp_path / "clip"
    cache.mkdir()
    (cache / "ViT-B-16.pt").write_bytes((tiny_dir / "openai_sd.pt").read_bytes())
    monkeypatch.setattr(towers, "OPENAI_CACHE", str(cache))
    t = towers.load_towers("ViT-B/16")
    assert t.source == "ViT-B/16" and t.config == TINY


def test_missing_weights_offline_fail_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(towers, "OPENAI_CACHE", str(tmp_path / ".cache" / "clip"))
    for spec in ("ViT-B/16", "ViT-L/14-336px", "ViT-B-32:laion2b_s34b_b79k"):
        start = time.monotonic()
        with pytest.raises(WeightsError) as e:
            towers.load_towers(spec)
        assert time.monotonic() - start < 5
        msg = str(e.value)
        assert spec in msg and "\n" not in msg
        assert "clip='/path/to/checkpoint.pt'" in msg  # says how to pass a local file (the CLI says --clip)


@pytest.mark.parametrize("spec,words", [
    ("ViT-B-16", "name the weights too"), ("no-such-model", "not a file"),
    ("NoSuchArch:openai", "unknown open_clip model"), ("ViT-B-16:no_such_tag", "no pretrained tag"),
])
def test_bad_clip_specs(spec, words):
    with pytest.raises(WeightsError) as e:
        towers.load_towers(spec)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_not_an_openai_layout(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"encoder.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(WeightsError) as e:
        towers.load_towers(str(path))
    assert str(path) in str(e.value) and "OpenAI-layout" in str(e.value)


# ----------------------------------------------------------------------------- the Transf head

def hand_layer_norm(x, w, b):
    u = x.mean(-1, keepdim=True)
    s = ((x - u) ** 2).mean(-1, keepdim=True)
    return (x - u) / torch.sqrt(s + 1e-12) * w + b


def hand_transf(sd: dict, x: torch.Tensor, heads: int, layers: int = 6) -> torch.Tensor:
    """The original Text4Vis 'Transf' head written out with plain matmuls, in float64."""
    sd = {k: v.double() for k, v in sd.items()}
    x = x.double()
    b, t, d = x.shape
    hd = d // heads
    h = x + sd["frame_position_embeddings.weight"][:t]
    for i in range(layers):
        p = f"transformer.resblocks.{i}."
        y = hand_layer_norm(h, sd[p + "ln_1.weight"], sd[p + "ln_1.bias"])
        w, bias = sd[p + "attn.in_proj_weight"], sd[p + "attn.in_proj_bias"]
        q = y @ w[:d].T + bias[:d]
        k = y @ w[d:2 * d].T + bias[d:2 * d]
        v = y @ w[2 * d:].T + bias[2 * d:]
        out = torch.zeros_like(y)
        for hh in range(heads):
            sl = slice(hh * hd, (hh + 1) * hd)
            att = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(hd), dim=-1)
            out[..., sl] = att @ v[..., sl]
        h = h + out @ sd[p + "attn.out_proj.weight"].T + sd[p + "attn.out_proj.bias"]
        y = hand_layer_norm(h, sd[p + "ln_2.weight"], sd[p + "ln_2.bias"])
        m = y @ sd[p + "mlp.c_fc.weight"].T + sd[p + "mlp.c_fc.bias"]
        m = m * torch.sigmoid(1.702 * m)
        h = h + m @ sd[p + "mlp.c_proj.weight"].T + sd[p + "mlp.c_proj.bias"]
    return (h + x).mean(dim=1)


def expected_head_names(layers: int = 6) -> set[str]:
    names = {"frame_position_embeddings.weight"}
    for i in range(layers):
        p = f"transformer.resblocks.{i}."
        names |= {p + n for n in ("attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight",
                                  "attn.out_proj.bias", "ln_1.weight", "ln_1.bias", "mlp.c_fc.weight",
                                  "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias", "ln_2.weight", "ln_2.bias")}
    return names


def test_transf_head_names_shapes_heads():
    d = 128
    head = temporal.build_head("transf", d)
    sd = head.state_dict()
    assert set(sd) == expected_head_names(6)
    assert sd["frame_position_embeddings.weight"].shape == (77, d)
    assert sd["transformer.resblocks.0.attn.in_proj_weight"].shape == (3 * d, d)
    assert sd["transformer.resblocks.5.mlp.c_fc.weight"].shape == (4 * d, d)
    assert sd["transformer.resblocks.5.mlp.c_proj.weight"].shape == (d, 4 * d)
    assert len(head.transformer.resblocks) == 6
    assert all(blk.attn.heads == 2 for blk in head.transformer.resblocks)
    assert temporal.build_head("transf", 512).transformer.resblocks[0].attn.heads == 8
    assert temporal.head_from_state_dict(["fusion_model." + k for k in sd]) == "transf"
    assert temporal.head_from_state_dict(["visual.proj", "logit_scale"]) == "mean"
    with pytest.raises(ValueError):
        temporal.build_head("lstm", d)


def test_transf_head_init_stats():
    torch.manual_seed(0)
    d = 128
    sd = temporal.build_head("transf", d).state_dict()
    for name, v in sd.items():
        if name.endswith("in_proj_weight"):  # nn.MultiheadAttention's xavier_uniform on (3D, D)
            bound = math.sqrt(6 / (d + 3 * d))
            assert v.abs().max() <= bound and abs(v.std().item() - bound / math.sqrt(3)) < 0.1 * bound
        elif name.endswith("in_proj_bias") or (name.endswith(".bias") and ".ln_" not in name):
            assert torch.count_nonzero(v) == 0, name
        elif ".ln_" in name:
            assert torch.equal(v, torch.ones_like(v) if name.endswith("weight") else torch.zeros_like(v)), name
        else:  # Linear / Embedding weights: normal(0, 0.02)
            assert abs(v.std().item() - 0.02) < 0.002 and abs(v.mean().item()) < 0.002, (name, v.std())


def test_transf_head_equals_hand_computation():
    torch.manual_seed(0)
    d = 128
    head = temporal.build_head("transf", d).eval()
    with torch.no_grad():  # weights far from the initialisation, so that every part matters
        for name, p in head.named_parameters():
            if ".ln_" in name and name.endswith("weight"):
                p.copy_(1 + 0.3 * torch.randn_like(p))
            elif p.dim() == 1:
                p.copy_(0.3 * torch.randn_like(p))
            elif name.startswith("frame_position"):
                p.copy_(torch.randn_like(p))
            else:
                p.copy_(0.06 * torch.randn_like(p))
    x = torch.randn(3, 8, d)
    with torch.no_grad():
        got = head(x)
    sd = head.state_dict()
    expected = hand_transf(sd, x, heads=2)
    assert got.shape == (3, d) and got.dtype == torch.float32
    torch.testing.assert_close(got.double(), expected, rtol=1e-4, atol=1e-4)
    # the check is sensitive: one head instead of two, or no final residual, gives other numbers
    assert not torch.allclose(got.double(), hand_transf(sd, x, heads=1), rtol=1e-3, atol=1e-3)
    assert not torch.allclose(got, x.mean(1), atol=1e-2)
    # fewer frames than the position table, and the frame order matters
    with torch.no_grad():
        torch.testing.assert_close(head(x[:, :3]).double(), hand_transf(sd, x[:, :3], heads=2), rtol=1e-4, atol=1e-4)
        assert not torch.allclose(head(x.flip(1)), got, atol=1e-3)
        with pytest.raises(ValueError):
            head(torch.randn(1, 78, d))


def test_layer_norm_eps_1e12_in_float32():
    ln = temporal.LayerNorm(128)
    with torch.no_grad():
        ln.weight.copy_(torch.linspace(0.5, 1.5, 128))
        ln.bias.copy_(torch.linspace(-1, 1, 128))
    x = torch.randn(4, 128, generator=torch.Generator().manual_seed(0)) * 1e-3  # variance 1e-6: eps matters
    expected = hand_layer_norm(x.double(), ln.weight.double(), ln.bias.double())
    torch.testing.assert_close(ln(x).double(), expected, rtol=1e-4, atol=1e-4)
    assert ln.eps == 1e-12
    half = ln(x.half())
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.double(), hand_layer_norm(x.half().double(), ln.weight.double(), ln.bias.double()),
                               rtol=0, atol=2e-2)


def test_mean_head():
    x = torch.randn(2, 5, 64)
    torch.testing.assert_close(temporal.build_head("mean", 64)(x), x.mean(1))
    assert len(temporal.build_head("mean", 64).state_dict()) == 0


# ----------------------------------------------------------------------------- original Text4Vis checkpoints

@pytest.mark.parametrize("kind", ["transf", "mean"])
def test_original_checkpoint_loads_exactly(tiny_dir, kind):
    path = tiny_dir / f"text4vis_orig_{kind}.pt"
    raw = torch.load(path, weights_only=True)["model_state_dict"]
    assert all(k.startswith("module.") for k in raw)
    rec = text4vis.load(checkpoint=str(path), clip=str(tiny_dir / "openai_sd.pt"), labels=["a", "b", "c"], frames=4)
    assert rec.model.head_type == kind
    assert isinstance(rec.model.fusion_model, temporal.TransfHead if kind == "transf" else temporal.MeanHead)
    state = rec.model.state_dict()
    for k, v in raw.items():
        name = k[len("module."):]
        assert torch.equal(state[name], v.float()), name
    assert abs(rec.model.logit_scale.item() - 4.6052) < 1e-6
    clip_sd = torch.load(tiny_dir / "openai_sd.pt", weights_only=True)
    tsd = rec.towers.clip.state_dict()
    for k in ("token_embedding.weight", "text_projection", "transformer.resblocks.0.attn.in_proj_weight"):
        assert torch.equal(tsd[k], clip_sd[k])
    assert rec.labels == ["a", "b", "c"] and rec.num_frames == 4 and rec.input_size == 32


def manual_embedding(rec, path: str, views: str = "1x1") -> torch.Tensor:
    """The prediction path written out: decode by the test rule, views, model, mean over views."""
    clips, crops = sampling.parse_views(views)
    t = rec.num_frames
    frames, _ = read_frames(path, lambda n: [i for v in sampling.view_indices(n, t, clips) for i in v])
    clip = transforms.to_tensor(frames)
    vs = []
    for k in range(clips):
        vs.extend(transforms.test_views(clip[k * t:(k + 1) * t], rec.input_size, crops))
    x = torch.stack(vs)  # (views, t, 3, s, s)
    mean = torch.tensor(transforms.OPENAI_MEAN).view(3, 1, 1)
    std = torch.tensor(transforms.OPENAI_STD).view(3, 1, 1)
    with torch.no_grad():
        f = rec.model.visual(((x.float() / 255 - mean) / std).flatten(0, 1)).view(len(vs), t, -1)
        e = rec.model.fusion_model(f)
    return F.normalize(e.mean(0), dim=-1)


@pytest.mark.parametrize("kind", ["transf", "mean"])
def test_original_checkpoint_predictions(tiny_dir, kind):
    _need(ARM)
    rec = text4vis.load(checkpoint=str(tiny_dir / f"text4vis_orig_{kind}.pt"), clip=str(tiny_dir / "openai_sd.pt"),
                        labels=["arm wrestling", "cleaning pool", "dog"], frames=4)
    a = rec.predict([ARM], topk=3, views="2x1", workers=0, with_embedding=True)
    b = rec.predict([ARM], topk=3, views="2x1", workers=0, with_embedding=True)
    assert a == b
    emb = torch.tensor(a[0]["embedding"])
    expected = manual_embedding(rec, ARM, "2x1")
    torch.testing.assert_close(emb, expected, atol=2e-6, rtol=0)
    scores = (100 * expected @ rec.model.classifier.t()).softmax(-1)
    top = a[0]["top"]
    assert [t["label"] for t in top] == [rec.labels[i] for i in scores.argsort(descending=True).tolist()]
    assert [t["score"] for t in top] == pytest.approx(scores.sort(descending=True).values.tolist(), abs=1e-4)
    assert sum(t["score"] for t in top) == pytest.approx(1.0, abs=1e-5)  # all 3 classes shown


def test_original_checkpoint_width_mismatch(tiny_dir, wide_clip_file):
    ckpt = tiny_dir / "text4vis_orig_transf.pt"
    with pytest.raises(WeightsError) as e:
        text4vis.load(checkpoint=str(ckpt), clip=str(wide_clip_file), labels=["a", "b"])
    msg = str(e.value)
    assert str(ckpt) in msg and str(wide_clip_file) in msg and "\n" not in msg


def test_wide_tiny_clip_loads(wide_clip_file):
    t = towers.load_towers(str(wide_clip_file))
    assert t.config == tiny_config(128) and t.embed_dim == 128


def test_checkpoint_without_visual_weights(tiny_dir, tmp_path):
    path = tmp_path / "nothing.pt"
    torch.save({"epoch": 1, "model_state_dict": {"module.fc.weight": torch.zeros(2, 2)}}, path)
    with pytest.raises(WeightsError) as e:
        text4vis.load(checkpoint=str(path), clip=str(tiny_dir / "openai_sd.pt"), labels=["a", "b"])
    assert str(path) in str(e.value)


# ----------------------------------------------------------------------------- text4vis's own format

@pytest.fixture(scope="module")
def saved(tiny_dir, tmp_path_factory):
    """A Recognizer from the original Transf checkpoint, saved with and without the text tower."""
    rec = text4vis.load(checkpoint=str(tiny_dir / "text4vis_orig_transf.pt"), clip=str(tiny_dir / "openai_sd.pt"),
                        labels=["arm wrestling", "cleaning pool", "dog", "cat"])
    d = tmp_path_factory.mktemp("own")
    paths = {}
    for include_text in (True, False):
        p = str(d / f"own_text{int(include_text)}.safetensors")
        checkpoints.save_checkpoint(p, rec.model, rec.towers, labels=rec.labels, classifier_meta=rec.classifier_meta,
                                    settings={"num_frames": 8, "input_size": 32}, include_text=include_text)
        paths[include_text] = p
    return rec, paths


def test_own_format_is_safetensors_with_metadata(saved):
    rec, paths = saved
    from safetensors import safe_open
    with safe_open(paths[True], "pt") as f:
        keys = set(f.keys())
        import json
        meta = json.loads(f.metadata()["text4vis"])
    assert checkpoints.is_text4vis_checkpoint(paths[True])
    assert not checkpoints.is_text4vis_checkpoint(paths[True].replace(".safetensors", ".missing"))
    assert "model.fusion_model.frame_position_embeddings.weight" in keys and "model.classifier" in keys
    assert "text.token_embedding.weight" in keys and not any(k.startswith("text.visual.") for k in keys)
    assert meta["head"] == "transf" and meta["labels"] == rec.labels and meta["embed_dim"] == 64
    assert meta["settings"] == {"num_frames": 8, "input_size": 32}
    with safe_open(paths[False], "pt") as f:
        assert not any(k.startswith("text.") for k in f.keys())


def test_own_format_roundtrip_without_clip(saved, monkeypatch):
    _need(ARM)
    _need(POOL)
    rec, paths = saved
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import text4vis.api
    monkeypatch.setattr(towers, "load_towers", lambda *a, **k: pytest.fail("no --clip must be needed"))
    back = text4vis.load(checkpoint=paths[True])
    assert back.labels == rec.labels and back.num_frames == 8 and back.input_size == 32
    assert back.model.head_type == "transf"
    a_state, b_state = rec.model.state_dict(), back.model.state_dict()
    assert set(a_state) == set(b_state)
    for k in a_state:
        assert torch.equal(a_state[k], b_state[k]), k
    want = rec.predict([ARM, POOL], topk=4, workers=0, with_embedding=True)
    got = back.predict([ARM, POOL], topk=4, workers=0, with_embedding=True)
    assert got == want
    # the stored text tower builds the same classifier for a new label set
    back.use_labels(["juggling", "surfing"])
    assert back.labels == ["juggling", "surfing"]
    expected = classifiers.text_classifier(rec.towers, ["juggling", "surfing"], cache=False).weight
    assert torch.equal(back.model.classifier, expected)


def test_own_format_without_text_tower(saved):
    _need(ARM)
    rec, paths = saved
    back = text4vis.load(checkpoint=paths[False])
    assert back.towers is None and back.input_size == 32 and back.labels == rec.labels
    assert back.predict([ARM], workers=0, with_embedding=True) == rec.predict([ARM], workers=0, with_embedding=True)
    with pytest.raises(WeightsError) as e:
        back.use_labels(["x", "y"])
    assert "clip=" in str(e.value)


def test_own_format_with_other_width_clip(saved, wide_clip_file):
    _, paths = saved
    with pytest.raises(WeightsError) as e:
        text4vis.load(checkpoint=paths[True], clip=str(wide_clip_file))
    msg = str(e.value)
    assert paths[True] in msg and str(wide_clip_file) in msg and "64" in msg and "128" in msg


def test_damaged_own_checkpoint(saved, tmp_path):
    _, paths = saved
    data = open(paths[True], "rb").read()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    for clip in (None, str(saved[0].towers.source)):
        with pytest.raises(WeightsError) as e:
            text4vis.load(checkpoint=str(cut), clip=clip)
        assert str(cut) in str(e.value) and "\n" not in str(e.value)


def _rewrite(src: str, dst, edit) -> str:
    """A copy of a text4vis checkpoint with its (metadata, tensors) changed by `edit`."""
    meta, tensors = checkpoints.read_text4vis(src)
    meta, tensors = edit(meta, dict(tensors))
    from safetensors.torch import save_file
    save_file(tensors, str(dst), metadata={checkpoints.META_KEY: json.dumps(meta)})
    return str(dst)


def test_incomplete_or_inconsistent_own_checkpoints_are_refused(saved, tmp_path):
    """Every weight a model needs must be in the file, in its shape, with metadata that describes it:
    a damaged file never predicts with random weights."""
    _, paths = saved
    src = paths[True]
    no_visual = lambda m, t: (m, {k: v for k, v in t.items() if not k.startswith("model.visual.transformer.")})
    no_head = lambda m, t: (m, {k: v for k, v in t.items() if not k.startswith("model.fusion_model.")})
    no_text = lambda m, t: (m, {k: v for k, v in t.items() if not k.startswith("text.transformer.")})
    wrong_shape = lambda m, t: (m, {**t, "model.fusion_model.frame_position_embeddings.weight": torch.zeros(77, 3)})
    few_labels = lambda m, t: ({**m, "labels": m["labels"][:2]}, t)
    bad_head = lambda m, t: ({**m, "head": "lstm"}, t)
    no_meta = lambda m, t: ({}, t)
    cases = {"no_visual": (no_visual, "tower weights missing"), "no_head": (no_head, "missing"),
             "no_text": (no_text, "tower weights missing"), "wrong_shape": (wrong_shape, "of another shape"),
             "few_labels": (few_labels, "4 classifier rows but 2 label names"),
             "bad_head": (bad_head, "unknown temporal head 'lstm'"), "no_meta": (no_meta, "lacks 'clip'")}
    for name, (edit, expected) in cases.items():
        path = _rewrite(src, tmp_path / f"{name}.safetensors", edit)
        with pytest.raises(WeightsError) as e:
            text4vis.load(checkpoint=path)
        assert path in str(e.value) and expected in str(e.value) and "\n" not in str(e.value), (name, str(e.value))
    assert text4vis.load(checkpoint=src).labels == saved[0].labels             # the intact file still loads
    # without a text tower (saved so on purpose) the file is complete: it loads
    assert text4vis.load(checkpoint=paths[False]).towers is None


def test_files_that_are_not_checkpoints(tmp_path, tiny_dir):
    text = tmp_path / "notes.pt"
    text.write_text("these are not weights\n")
    listed = tmp_path / "list.pt"
    torch.save([1, 2, 3], listed)
    for path, expected in ((text, "not a PyTorch checkpoint"), (listed, "holds a list, not a dictionary of weights"),
                           (tmp_path, "a folder, not a weights file")):
        for kwargs in ({"checkpoint": str(path), "clip": str(tiny_dir / "openai_sd.pt")}, {"clip": str(path)}):
            if kwargs.get("clip") == str(tmp_path):
                continue  # a folder as --clip is neither a file nor a model name: said so by towers.py
            with pytest.raises(WeightsError, match=expected):
                text4vis.load(labels=["a", "b"], **kwargs)


# ----------------------------------------------------------------------------- malicious pickles

class _TouchOnLoad:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.path),))


class _SystemOnLoad:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def _malicious_files(d: pathlib.Path, marker: pathlib.Path) -> dict[str, pathlib.Path]:
    files = {}
    payload = {"epoch": 1, "model_state_dict": {"module.visual.proj": torch.zeros(2, 2)}, "x": _TouchOnLoad(marker)}
    files["torch_zip"] = d / "evil_zip.pt"
    torch.save(payload, files["torch_zip"])
    files["torch_legacy"] = d / "evil_legacy.pt"
    torch.save({"state_dict": {}, "x": _SystemOnLoad(marker)}, files["torch_legacy"], _use_new_zipfile_serialization=False)
    files["plain_pickle"] = d / "evil.pkl"
    with open(files["plain_pickle"], "wb") as f:
        pickle.dump({"x": _TouchOnLoad(marker)}, f)
    # a TorchScript-looking archive whose data.pkl is the malicious pickle
    from conftest import save_torchscript_archive
    ok = d / "ts_ok.pt"
    save_torchscript_archive({"w.weight": torch.zeros(2)}, str(ok))
    with zipfile.ZipFile(files["torch_zip"]) as z:
        evil = z.read(next(n for n in z.namelist() if n.endswith("/data.pkl")))
    files["torchscript"] = d / "evil_ts.pt"
    with zipfile.ZipFile(ok) as z, zipfile.ZipFile(files["torchscript"], "w") as out:
        for n in z.namelist():
            out.writestr(n, evil if n.endswith("/data.pkl") else z.read(n))
    return files


def test_malicious_pickles_are_refused(tiny_dir, tmp_path):
    marker = tmp_path / "PWNED"
    files = _malicious_files(tmp_path, marker)
    for kind, path in files.items():
        with pytest.raises(WeightsError) as e:
            towers.safe_load(str(path))
        msg = str(e.value)
        assert str(path) in msg and "\n" not in msg and "\x1b" not in msg, kind
        if kind != "torchscript":
            assert "refused" in msg and "never runs code" in msg, msg
        with pytest.raises(WeightsError):
            towers.load_towers(str(path))
        with pytest.raises(WeightsError):
            text4vis.load(checkpoint=str(path), clip=str(tiny_dir / "openai_sd.pt"), labels=["a", "b"])
        assert not marker.exists(), f"{kind}: unpickling ran code"
    # the payload really does create the file when unpickled without protection
    pickle.loads(pickle.dumps(_TouchOnLoad(marker)))
    assert marker.exists()


def test_safe_load_other_failures(tmp_path):
    with pytest.raises(WeightsError) as e:
        towers.safe_load(str(tmp_path / "missing.pt"))
    assert "no such file" in str(e.value)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(WeightsError) as e:
        towers.safe_load(str(junk))
    assert str(junk) in str(e.value) and "\n" not in str(e.value)


# ----------------------------------------------------------------------------- frozen text classifier

def test_text_classifier_rows_and_prompt_average(loaded, tmp_path, monkeypatch):
    monkeypatch.setattr(classifiers, "CACHE_DIR", str(tmp_path))
    t = loaded["openai_sd.pt"]
    labels = ["arm wrestling", "cleaning pool", "dog"]
    prompts = ["a video of a person {}.", "a photo of {}"]
    cls = classifiers.text_classifier(t, labels, prompts)
    assert cls.weight.shape == (3, 64) and cls.labels == labels and cls.meta["prompts"] == prompts
    torch.testing.assert_close(cls.weight.norm(dim=-1), torch.ones(3))
    for i, name in enumerate(labels):
        per_prompt = t.encode_text([p.format(name) for p in prompts])  # already normalised
        torch.testing.assert_close(per_prompt.norm(dim=-1), torch.ones(2))
        avg = per_prompt.mean(0)
        torch.testing.assert_close(cls.weight[i], avg / avg.norm(), rtol=0, atol=1e-6)
    # one prompt: the row is that prompt's embedding
    one = classifiers.text_classifier(t, labels, prompts[:1])
    torch.testing.assert_close(one.weight, t.encode_text([prompts[0].format(n) for n in labels]), rtol=0, atol=1e-6)
    assert not torch.allclose(one.weight, cls.weight, atol=1e-4)


def test_text_classifier_is_cached_on_disk(loaded, tmp_path, monkeypatch):
    monkeypatch.setattr(classifiers, "CACHE_DIR", str(tmp_path))
    t = loaded["openai_sd.pt"]
    first = classifiers.text_classifier(t, ["a", "b"], ["{} video"])
    files = list((tmp_path / "classifiers").glob("*.safetensors"))
    assert len(files) == 1

    def boom(*a, **k):
        raise AssertionError("encode_text called: the cache was not used")

    monkeypatch.setattr(t, "encode_text", boom)
    second = classifiers.text_classifier(t, ["a", "b"], ["{} video"])
    assert torch.equal(first.weight, second.weight) and second.labels == ["a", "b"]
    with pytest.raises(AssertionError):  # other labels are another cache entry
        classifiers.text_classifier(t, ["a", "c"], ["{} video"])
    with pytest.raises(AssertionError):
        classifiers.text_classifier(t, ["a", "b"], ["{} video"], cache=False)
    # a damaged cache entry is rebuilt, not trusted
    files[0].write_bytes(b"garbage")
    monkeypatch.undo()
    monkeypatch.setattr(classifiers, "CACHE_DIR", str(tmp_path))
    third = classifiers.text_classifier(t, ["a", "b"], ["{} video"])
    assert torch.equal(first.weight, third.weight)


@pytest.mark.parametrize("prompts", [["no placeholder"], ["{} and {}"], []])
def test_text_classifier_rejects_bad_prompts(loaded, prompts):
    with pytest.raises(ClassifierError):
        classifiers.text_classifier(loaded["openai_sd.pt"], ["a", "b"], prompts)


def test_model_classifier_and_logits(loaded):
    from text4vis.model import VideoModel
    t = loaded["openai_sd.pt"]
    rows = torch.randn(5, 64) * 3
    m = VideoModel(t.clip.visual, 64, "mean", classifier=rows)
    torch.testing.assert_close(m.classifier.norm(dim=-1), torch.ones(5))
    assert m.num_classes == 5 and "classifier" in dict(m.named_buffers())
    frames = torch.randint(0, 256, (2, 3, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        emb = m.encode_video(frames)
        logits = m.logits(emb, scale=100.0)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))
    torch.testing.assert_close(logits, 100 * emb @ F.normalize(rows, dim=-1).t())
    # another classifier width gets a learned projection
    m.set_classifier(torch.randn(4, 32))
    assert m.proj is not None and m.proj.out_features == 32 and m.encode_video(frames).shape == (2, 32)
    m.set_classifier(torch.randn(3, 64), learn=True)
    assert m.proj is None and isinstance(m.classifier, torch.nn.Parameter)


def test_recognizer_encode_video(tiny_dir):
    rec = text4vis.load(checkpoint=str(tiny_dir / "text4vis_orig_transf.pt"), clip=str(tiny_dir / "openai_sd.pt"),
                        labels=["a", "b"], frames=4)
    g = torch.Generator().manual_seed(0)
    clips = torch.randint(0, 256, (2, 4, 3, 32, 32), dtype=torch.uint8, generator=g)
    both = rec.encode_video(clips)
    assert both.shape == (2, 64) and both.dtype == torch.float32
    torch.testing.assert_close(both.norm(dim=-1), torch.ones(2))
    one = rec.encode_video(clips[1])  # [T, 3, S, S] is one video
    torch.testing.assert_close(one[0], both[1], rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        f = rec.model.visual(transforms.normalize(clips.flatten(0, 1))).view(2, 4, -1)
        expected = F.normalize(hand_transf(rec.model.fusion_model.state_dict(), f, heads=1), dim=-1)
    torch.testing.assert_close(both.double(), expected, rtol=1e-4, atol=1e-5)


def test_transf_heads_follow_the_text_tower_width(tmp_path):
    """The reference builds its head with text width // 64 heads (RN50: 8, not embed 1024 // 64 = 16).
    Here: embedding 128 (2 heads by D // 64), text width 64 -> 1 head, in every path that builds a head."""
    cfg = tiny_config(64)
    cfg["embed_dim"] = 128
    sd = tiny_state_dict_of(cfg)
    clip_file = tmp_path / "clip.pt"
    torch.save(sd, clip_file)
    torch.manual_seed(1)
    head = temporal.build_head("transf", 128, heads=1)
    with torch.no_grad():
        for p in head.parameters():
            p.add_(0.05 * torch.randn_like(p))
    state = {f"module.{k}": v for k, v in sd.items() if k.startswith("visual.")}
    state.update({f"module.fusion_model.{k}": v for k, v in head.state_dict().items()})
    ckpt = tmp_path / "orig.pt"
    torch.save({"epoch": 1, "model_state_dict": state}, ckpt)

    rec = text4vis.load(checkpoint=str(ckpt), clip=str(clip_file), labels=["a", "b"], device="cpu")
    assert rec.towers.head_heads == 1
    assert all(b.attn.heads == 1 for b in rec.model.fusion_model.transformer.resblocks)
    x = torch.randn(2, 4, 128)
    with torch.no_grad():
        got = rec.model.fusion_model(x)
    torch.testing.assert_close(got.double(), hand_transf(head.state_dict(), x, heads=1), rtol=1e-4, atol=1e-4)
    assert not torch.allclose(got.double(), hand_transf(head.state_dict(), x, heads=2), rtol=1e-3, atol=1e-3)

    # the text4vis format records the head count, and a file without it (older) keeps D // 64
    out = tmp_path / "ours.safetensors"
    checkpoints.save_checkpoint(str(out), rec.model, rec.towers, labels=rec.labels, classifier_meta={},
                                settings={"num_frames": 4})
    meta, tensors = checkpoints.read_text4vis(str(out))
    assert meta["head_heads"] == 1
    again = text4vis.load(checkpoint=str(out), device="cpu")
    assert again.model.fusion_model.heads == 1
    with torch.no_grad():
        torch.testing.assert_close(again.model.fusion_model(x), got)
    del meta["head_heads"]
    checkpoints.atomic_save(tensors, meta, str(out))
    assert text4vis.load(checkpoint=str(out), device="cpu").model.fusion_model.heads == 2


def test_video_checkpoints_given_as_clip_say_so(saved, tiny_dir):
    _, paths = saved
    for path in (paths[True], str(tiny_dir / "text4vis_orig_transf.pt")):
        with pytest.raises(WeightsError, match="a video model checkpoint, not CLIP towers: pass it as checkpoint="):
            text4vis.load(clip=path, labels=["a", "b"])
