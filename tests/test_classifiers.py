"""Frozen classifiers: each type's shape, norm and determinism, stored files, bad input, and the
`text4vis classifier build | plot | inspect` commands (tiny random-weight CLIP; the packaged MiniLM)."""
from __future__ import annotations

import contextlib
import io
import json
import time

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
import yaml

from conftest import original_text4vis_checkpoint, run_cli, tiny_openai_state_dict
from text4vis import classifiers as C
from text4vis import plots
from text4vis.cli import main as cli_main
from text4vis.labels import LabelsError, load_labels

PROMPT = "a video of a person {}."
FRAMES = 4


def unit_rows(w) -> bool:
    w = torch.as_tensor(w).double()
    return bool(torch.allclose(w.norm(dim=1), torch.ones(w.shape[0], dtype=torch.float64), atol=1e-5))


@pytest.fixture(scope="session")
def cx(tmp_path_factory):
    """A tiny CLIP file, an original Text4Vis checkpoint, a 9-class synthetic dataset and its config."""
    from text4vis.synthetic import make_benchmark
    d = tmp_path_factory.mktemp("classifiers")
    info = make_benchmark(d / "bench", shapes=["circle", "square", "star"],
                          motions=["moving left", "moving right", "growing"], heldout=[],
                          train_per_class=2, val_per_class=1, num_frames=8, size=32, progress=False)
    sd = tiny_openai_state_dict(0)
    clip = str(d / "tiny_clip.pt")
    torch.save(sd, clip)
    ckpt = str(d / "orig_mean.pt")
    torch.save(original_text4vis_checkpoint(sd, "mean"), ckpt)
    cfg = {"data": {"train_list": str(info["train_list"]), "train_root": str(info["root"]),
                    "val_list": str(info["val_list"]), "val_root": str(info["root"]),
                    "labels": str(info["labels_csv"]), "num_frames": FRAMES, "workers": 0},
           "model": {"clip": clip, "head": "mean"},
           "classifier": {"prompts": [PROMPT]},
           "evaluation": {"batch_size": 6}}
    config = str(d / "cfg.yaml")
    with open(config, "w") as f:
        yaml.safe_dump(cfg, f)
    return {"dir": d, "info": info, "clip": clip, "checkpoint": ckpt, "config": config,
            "names": info["classes"], "labels_csv": str(info["labels_csv"])}


@pytest.fixture(scope="session")
def towers(cx):
    from text4vis.towers import load_towers
    return load_towers(cx["clip"])


NAMES = [f"class {i}" for i in range(10)]


# ----------------------------------------------------------------------------- random / orthogonal

def test_random_classifier_shape_norm_seed():
    a = C.random_classifier(NAMES, 32, seed=3)
    assert a.weight.shape == (10, 32) and a.weight.dtype == torch.float32
    assert unit_rows(a.weight) and a.labels == NAMES and a.meta == {"type": "random", "seed": 3}
    assert torch.equal(a.weight, C.random_classifier(NAMES, 32, seed=3).weight)
    assert not torch.allclose(a.weight, C.random_classifier(NAMES, 32, seed=4).weight)
    # seeded with its own generator: the global RNG neither matters nor moves
    torch.manual_seed(123)
    state = torch.get_rng_state()
    assert torch.equal(a.weight, C.random_classifier(NAMES, 32, seed=3).weight)
    assert torch.equal(state, torch.get_rng_state())


def test_orthogonal_rows_orthonormal_when_c_le_d():
    for c, d in ((10, 32), (16, 16), (1, 5)):
        w = C.orthogonal_classifier(NAMES[:c] if c <= 10 else [f"c{i}" for i in range(c)], d, seed=0).weight.double()
        assert w.shape == (c, d)
        assert torch.allclose(w @ w.t(), torch.eye(c, dtype=torch.float64), atol=1e-5)


def test_orthogonal_more_classes_than_dims():
    names = [f"c{i}" for i in range(20)]
    w = C.orthogonal_classifier(names, 8, seed=1).weight.double()
    assert w.shape == (20, 8) and unit_rows(w)
    # D-row blocks are orthonormal bases
    for lo in (0, 8):
        block = w[lo:lo + 8]
        assert torch.allclose(block @ block.t(), torch.eye(8, dtype=torch.float64), atol=1e-5)
    assert torch.equal(C.orthogonal_classifier(names, 8, seed=1).weight, C.orthogonal_classifier(names, 8, seed=1).weight)
    assert not torch.allclose(C.orthogonal_classifier(names, 8, seed=1).weight,
                              C.orthogonal_classifier(names, 8, seed=2).weight)


# ----------------------------------------------------------------------------- text (CLIP)

def test_text_classifier(cx, towers):
    names = cx["names"]
    a = C.text_classifier(towers, names, [PROMPT], cache=False)
    assert a.weight.shape == (9, 64) and unit_rows(a.weight)
    assert a.meta == {"type": "text", "source": cx["clip"], "prompts": [PROMPT]}
    assert torch.equal(a.weight, C.text_classifier(towers, names, [PROMPT], cache=False).weight)
    # the rows are the text tower's embeddings of the prompts
    want = towers.encode_text([PROMPT.format(n) for n in names])
    assert torch.allclose(a.weight, want / want.norm(dim=-1, keepdim=True), atol=1e-6)
    # several prompts: normalised embeddings averaged per class, renormalised
    prompts = [PROMPT, "{}", "a photo of {}, a kind of action."]
    b = C.text_classifier(towers, names, prompts, cache=False)
    per = torch.stack([towers.encode_text([p.format(n) for p in prompts]).mean(0) for n in names])
    assert torch.allclose(b.weight, per / per.norm(dim=-1, keepdim=True), atol=1e-6)
    assert not torch.allclose(a.weight, b.weight)
    # cached on disk: a second build reads the file and gives the same rows
    c1 = C.text_classifier(towers, names, prompts)
    c2 = C.text_classifier(towers, names, prompts)
    assert torch.allclose(c1.weight, b.weight, atol=1e-6) and torch.equal(c1.weight, c2.weight)


# ----------------------------------------------------------------------------- lm (packaged MiniLM)

@pytest.fixture(scope="session")
def ucf_lm():
    names = load_labels("ucf101")
    t0 = time.time()
    cls = C.lm_classifier(names)
    return names, cls, time.time() - t0


def test_lm_classifier_shape_and_determinism(ucf_lm):
    names, cls, _ = ucf_lm
    assert cls.weight.shape == (101, 384) and unit_rows(cls.weight) and cls.labels == names
    assert cls.meta == {"type": "lm", "source": C.DEFAULT_LM, "prompts": ["{}"]}
    again = C.lm_classifier(names[:5])
    assert torch.allclose(again.weight, cls.weight[:5], atol=1e-5)


@pytest.mark.parametrize("name,near,far", [
    ("ApplyEyeMakeup", "ApplyLipstick", "Rowing"),
    ("PlayingGuitar", "PlayingViolin", "Skiing"),
    ("Basketball", "BasketballDunk", "Knitting"),
    ("HorseRiding", "HorseRace", "Surfing"),
])
def test_lm_classifier_semantics(ucf_lm, name, near, far):
    names, cls, _ = ucf_lm
    w, i = cls.weight, {n: k for k, n in enumerate(names)}
    assert float(w[i[name]] @ w[i[near]]) > float(w[i[name]] @ w[i[far]]) + 0.2


def test_readable_names():
    assert C.readable("ApplyEyeMakeup") == "Apply Eye Makeup"
    assert C.readable("brush_hair") == "brush hair"
    assert C.readable("YoYo") == "Yo Yo"
    assert C.readable("playing guitar") == "playing guitar"


# ----------------------------------------------------------------------------- lda

def gaussian_clusters(c: int, d: int, n: int, seed: int):
    """Classes on orthogonal directions of equal norm (like L2-normalised embeddings), isotropic noise."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    means = 3.0 * q[:c]
    x = np.concatenate([means[k] + 0.6 * rng.normal(size=(n, d)) for k in range(c)])
    y = np.repeat(np.arange(c), n)
    return x, y


@pytest.mark.parametrize("c", [2, 6])
def test_lda_separates_gaussian_clusters(c):
    d = 16
    x, y = gaussian_clusters(c, d, 40, seed=c)
    xt, yt = gaussian_clusters(c, d, 40, seed=c)          # same means (same seed) ...
    xt = xt + np.random.default_rng(100 + c).normal(scale=0.6, size=xt.shape)  # ... fresh noise: held out
    names = [f"k{i}" for i in range(c)]
    cls = C.lda_classifier(x, y, names)
    assert cls.weight.shape == (c, d) and unit_rows(cls.weight) and cls.meta["type"] == "lda"
    pred = (torch.from_numpy(xt).float() @ cls.weight.t()).argmax(1).numpy()
    assert (pred == yt).mean() > 0.95
    assert torch.equal(cls.weight, C.lda_classifier(x, y, names).weight)


def test_lda_needs_every_class():
    x, y = gaussian_clusters(3, 8, 10, seed=0)
    with pytest.raises(C.ClassifierError, match="every class"):
        C.lda_classifier(x, y, ["a", "b", "c", "d"])


# ----------------------------------------------------------------------------- stored files

def test_classifier_file_round_trip(tmp_path):
    w = torch.randn(5, 12)
    meta = {"type": "text", "source": "ViT-B/16", "prompts": ["a video of {}.", "{}"], "seed": 7}
    names = ["run", "jump", "swim fast", "ride, a bike", "été"]
    cls = C.Classifier(C.normalize_rows(w), names, dict(meta))
    path = str(tmp_path / "sub" / "c.safetensors")
    C.save_classifier(cls, path)
    back = C.load_classifier(path)
    assert torch.equal(back.weight, cls.weight) and back.labels == names and back.meta == meta
    assert not list(tmp_path.glob("sub/*.tmp*"))
    # a file written elsewhere with rows of any norm loads normalised
    from safetensors.torch import save_file
    raw = str(tmp_path / "raw.safetensors")
    save_file({"weight": w * 3.0}, raw, metadata={"text4vis_classifier": json.dumps({"type": "random", "labels": names})})
    loaded = C.load_classifier(raw)
    assert unit_rows(loaded.weight) and torch.allclose(loaded.weight, cls.weight, atol=1e-6)
    assert loaded.meta == {"type": "random"} and loaded.labels == names
    # not a classifier file
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(C.ClassifierError, match="not a classifier file"):
        C.load_classifier(str(bad))


def test_check_same_labels():
    cls = C.random_classifier(["a", "b", "c"], 4)
    C.check_same_labels(cls, ["a", "b", "c"], "x")
    with pytest.raises(LabelsError, match="label names differ"):
        C.check_same_labels(cls, ["a", "c", "b"], "x")
    with pytest.raises(LabelsError, match="3 vs 2 classes"):
        C.check_same_labels(cls, ["a", "b"], "x")


@pytest.mark.parametrize("names,match", [(["a", "b", "a"], "appears twice"), (["a", " ", "c"], "empty name"),
                                         ([], "no class names")])
def test_bad_label_lists(names, match):
    for build in (lambda: C.random_classifier(names, 4), lambda: C.orthogonal_classifier(names, 4),
                  lambda: C.lm_classifier(names)):
        with pytest.raises(LabelsError, match=match):
            build()


def test_prompts_need_one_placeholder(towers):
    for prompts in (["a video of a person"], ["{} and {}"], []):
        with pytest.raises(C.ClassifierError):
            C.text_classifier(towers, ["a", "b"], prompts, cache=False)
    with pytest.raises(C.ClassifierError, match=r"\{\}"):
        C.lm_classifier(["a"], prompt="no placeholder")


def test_lm_that_cannot_be_found_offline(tmp_path):
    for name in ("no-such-org/no-such-model-xyz", str(tmp_path / "no_such_folder")):
        t0 = time.time()
        with pytest.raises(C.ClassifierError, match="cannot be loaded"):
            C.lm_classifier(["a", "b"], model=name)
        assert time.time() - t0 < 20


# ----------------------------------------------------------------------------- CLI: build

def build(*argv) -> tuple[int, str, str]:
    return run_cli(["classifier", "build", *argv])


def test_cli_build_text(cx, towers, tmp_path):
    out = str(tmp_path / "text.safetensors")
    rc, stdout, stderr = build("--type", "text", "--clip", cx["clip"], "--labels", cx["labels_csv"],
                               "--prompts", PROMPT, "{}", "--out", out)
    assert rc == 0, stderr
    cls = C.load_classifier(out)
    assert cls.weight.shape == (9, 64) and unit_rows(cls.weight) and cls.labels == cx["names"]
    assert cls.meta["type"] == "text" and cls.meta["source"] == cx["clip"] and cls.meta["prompts"] == [PROMPT, "{}"]
    assert cls.meta["label_source"] == cx["labels_csv"]
    want = C.text_classifier(towers, cx["names"], [PROMPT, "{}"], cache=False).weight
    assert torch.allclose(cls.weight, want, atol=1e-6)
    assert "9 classes x 64 dims" in stdout


def test_cli_build_lm(ucf_lm, tmp_path):
    out = str(tmp_path / "lm.safetensors")
    rc, _, stderr = build("--type", "lm", "--labels", "ucf101", "--out", out)
    assert rc == 0, stderr
    cls = C.load_classifier(out)
    assert cls.weight.shape == (101, 384) and cls.meta["type"] == "lm" and cls.meta["source"] == C.DEFAULT_LM
    assert torch.allclose(cls.weight, ucf_lm[1].weight, atol=1e-5)


@pytest.mark.parametrize("kind", ["random", "orthogonal"])
def test_cli_build_random_orthogonal(kind, tmp_path):
    out = str(tmp_path / f"{kind}.safetensors")
    rc, _, stderr = build("--type", kind, "--labels", "hmdb51", "--dim", "64", "--seed", "5", "--out", out)
    assert rc == 0, stderr
    cls = C.load_classifier(out)
    assert cls.weight.shape == (51, 64) and unit_rows(cls.weight) and cls.labels == load_labels("hmdb51")
    assert cls.meta["type"] == kind and cls.meta["seed"] == 5
    build_fn = C.random_classifier if kind == "random" else C.orthogonal_classifier
    assert torch.allclose(cls.weight, build_fn(cls.labels, 64, 5).weight)
    if kind == "orthogonal":
        w = cls.weight.double()
        assert torch.allclose(w @ w.t(), torch.eye(51, dtype=torch.float64), atol=1e-5)


def test_cli_build_lda(cx, tmp_path):
    """LDA of the frozen video embeddings of the config's training list, with the config's frames."""
    import text4vis
    from text4vis.datasets import FrameReader, TestDataset, load_split
    from text4vis.engine import embed_dataset
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    out = str(tmp_path / "lda.safetensors")
    rc, stdout, stderr = build("--type", "lda", "--checkpoint", cx["checkpoint"], "--clip", cx["clip"],
                               "--config", cx["config"], "--fraction", "0.1", "--out", out)
    assert rc == 0, stderr
    cls = C.load_classifier(out)
    assert cls.weight.shape == (9, 64) and unit_rows(cls.weight) and cls.labels == cx["names"]
    assert cls.meta["type"] == "lda" and cls.meta["num_videos"] == 18 and cls.meta["source"] == cx["checkpoint"]
    # independently: 2 videos per class (at least 2 per class, whatever the fraction), 1 view of 4 frames
    samples, _ = load_split(str(cx["info"]["train_list"]), str(cx["info"]["root"]), cx["names"])
    rec = text4vis.load(checkpoint=cx["checkpoint"], clip=cx["clip"], labels=cx["names"], frames=FRAMES)
    emb = embed_dataset(rec.model, TestDataset(samples, FRAMES, 32, 1, 1, FrameReader()), rec.device, workers=0)
    from sklearn.covariance import OAS
    lda = LinearDiscriminantAnalysis(solver="lsqr", covariance_estimator=OAS())
    lda.fit(emb.embeddings.double().numpy(), np.array([s.label for s in samples]))
    want = C.normalize_rows(torch.from_numpy(lda.coef_))
    assert torch.allclose(cls.weight, want, atol=1e-4), float((cls.weight - want).abs().max())


def test_cli_build_bad_input(cx, tmp_path):
    out = str(tmp_path / "x.safetensors")
    with pytest.raises(SystemExit) as e, contextlib.redirect_stderr(io.StringIO()):
        cli_main(["classifier", "build", "--type", "bogus", "--labels", "k400", "--out", out])
    assert e.value.code == 2
    rc, _, err = build("--type", "text", "--clip", cx["clip"], "--labels", cx["labels_csv"],
                       "--prompts", "a video of a person", "--out", out)
    assert rc == 2 and "{}" in err and "Traceback" not in err
    dup = tmp_path / "dup.txt"
    dup.write_text("run\njump\nrun\n")
    rc, _, err = build("--type", "random", "--labels", str(dup), "--dim", "8", "--out", out)
    assert rc == 2 and "appears twice" in err and str(dup) in err
    empty = tmp_path / "empty.csv"
    empty.write_text("id,name\n0,run\n1,  \n2,jump\n")
    rc, _, err = build("--type", "orthogonal", "--labels", str(empty), "--dim", "8", "--out", out)
    assert rc == 2 and "empty name" in err
    t0 = time.time()
    rc, _, err = build("--type", "lm", "--lm", "no-such-org/no-such-model-xyz", "--labels", cx["labels_csv"], "--out", out)
    assert rc == 2 and "cannot be loaded" in err and "Traceback" not in err
    assert time.time() - t0 < 20
    rc, _, err = build("--type", "random", "--dim", "8", "--out", out)
    assert rc == 2 and "--labels" in err
    rc, _, err = build("--type", "lda", "--config", cx["config"], "--out", out)
    assert rc == 2 and "--checkpoint" in err
    assert not (tmp_path / "x.safetensors").exists()


# ----------------------------------------------------------------------------- --classifier FILE in predict / eval

def test_predict_with_classifier_file(cx, tmp_path):
    names = ["alpha", "beta", "gamma", "delta", "epsilon"]
    path = str(tmp_path / "rand.safetensors")
    C.save_classifier(C.random_classifier(names, 64, seed=2), path)
    video = str(cx["info"]["root"] / open(cx["info"]["val_list"]).readline().split()[0])
    rc, stdout, stderr = run_cli(["predict", video, "--clip", cx["clip"], "--classifier", path, "--frames", "4",
                                  "--topk", "5", "--json", "--embedding", "--quiet", "--workers", "0"])
    assert rc == 0, stderr
    rec = json.loads(stdout.strip().splitlines()[0])
    assert sorted(t["label"] for t in rec["top"]) == sorted(names)
    emb = torch.tensor(rec["embedding"])
    w = C.load_classifier(path).weight
    probs = (100.0 * emb @ w.t()).softmax(-1)
    for t in rec["top"]:
        assert t["score"] == pytest.approx(float(probs[names.index(t["label"])]), abs=2e-4)
    # a classifier of another width than the model's embedding (and no projection) is a clear error
    wide = str(tmp_path / "wide.safetensors")
    C.save_classifier(C.random_classifier(names, 32), wide)
    rc, _, err = run_cli(["predict", video, "--clip", cx["clip"], "--classifier", wide, "--frames", "4", "--quiet"])
    assert rc == 2 and "width" in err and "Traceback" not in err


def test_eval_with_classifier_file_of_other_labels(cx, tmp_path):
    good = str(tmp_path / "good.safetensors")
    C.save_classifier(C.orthogonal_classifier(cx["names"], 64), good)
    rc, stdout, stderr = run_cli(["eval", "--config", cx["config"], "--clip", cx["clip"], "--classifier", good,
                                  "--out", str(tmp_path / "ok"), "--quiet", "--workers", "0"])
    assert rc == 0, stderr
    p = np.load(tmp_path / "ok" / "predictions.npz")
    assert np.allclose(p["classifier"], C.load_classifier(good).weight.numpy(), atol=1e-6)
    other = str(tmp_path / "other.safetensors")
    C.save_classifier(C.orthogonal_classifier(list(reversed(cx["names"])), 64), other)
    rc, _, err = run_cli(["eval", "--config", cx["config"], "--clip", cx["clip"], "--classifier", other,
                          "--out", str(tmp_path / "bad"), "--quiet"])
    assert rc == 2 and "label names differ" in err and other in err and "Traceback" not in err
    assert not (tmp_path / "bad").exists()


# ----------------------------------------------------------------------------- CLI: plot, inspect

@pytest.fixture(scope="session")
def ucf_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("ucf_cls")
    names = load_labels("ucf101")
    a, b = str(d / "ucf_random.safetensors"), str(d / "ucf_orth.safetensors")
    C.save_classifier(C.random_classifier(names, 64, seed=0), a)
    C.save_classifier(C.orthogonal_classifier(names, 64, seed=0), b)
    return a, b


def test_cli_plot_two_classifiers_20_classes(ucf_files, tmp_path):
    out = tmp_path / "corr.png"
    rc, stdout, stderr = run_cli(["classifier", "plot", *ucf_files, "--classes", "20", "--out", str(out)])
    assert rc == 0, stderr
    assert "2 panel(s), 20 classes" in stdout
    img = mpimg.imread(str(out))
    panel = min(plots.MAX_INCHES, max(5.0, 3.0 + 0.15 * 20))            # 6 inches
    width, height = min(3 * plots.MAX_INCHES, 2 * panel + 1.0) * plots.DPI, panel * plots.DPI
    assert abs(img.shape[1] - round(width)) <= 1 and abs(img.shape[0] - round(height)) <= 1
    assert (img.shape[1], img.shape[0]) == (1560, 720)


def test_cli_plot_named_classes_and_mismatch(ucf_files, cx, tmp_path):
    out = tmp_path / "named.png"
    rc, stdout, _ = run_cli(["classifier", "plot", ucf_files[0], "--classes", "ApplyEyeMakeup,Rowing,Skiing",
                             "--out", str(out)])
    assert rc == 0 and "1 panel(s), 3 classes" in stdout
    img = mpimg.imread(str(out))
    assert (img.shape[1], img.shape[0]) == (round(6.0 * plots.DPI), round(5.0 * plots.DPI))
    rc, _, err = run_cli(["classifier", "plot", ucf_files[0], "--classes", "NoSuchClass", "--out", str(out)])
    assert rc == 2 and "NoSuchClass" in err
    other = str(tmp_path / "other.safetensors")
    C.save_classifier(C.random_classifier(cx["names"], 64), other)
    rc, _, err = run_cli(["classifier", "plot", ucf_files[0], other, "--out", str(tmp_path / "x.png")])
    assert rc == 2 and "differ" in err and not (tmp_path / "x.png").exists()


def test_cli_inspect_nearest_classes(tmp_path):
    rows = torch.tensor([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.0, 1.0, 0.0], [0.0, 0.8, 0.3], [0.0, 0.0, 1.0]])
    names = ["open door", "close door", "swim", "dive", "sleep"]
    path = str(tmp_path / "hand.safetensors")
    C.save_classifier(C.Classifier(C.normalize_rows(rows), names, {"type": "text"}), path)
    rc, stdout, stderr = run_cli(["classifier", "inspect", path, "--k", "2"])
    assert rc == 0, stderr
    lines = stdout.strip().splitlines()
    assert lines[0].startswith(f"{path}: text classifier, 5 classes x 3 dims")
    body = dict(line.split(": ", 1) for line in lines[1:])
    assert list(body) == names
    w = C.normalize_rows(rows)
    sim = (w @ w.t()).numpy()
    nearest = {"open door": "close door", "close door": "open door", "swim": "dive", "dive": "swim", "sleep": "dive"}
    for i, n in enumerate(names):
        first = body[n].split(", ")[0]
        j = names.index(nearest[n])
        assert first == f"{nearest[n]} ({sim[i, j]:.2f})"
        assert len(body[n].split("), ")) == 2                       # k = 2 neighbours
        assert n not in [part.rsplit(" (", 1)[0] for part in body[n].split(", ")]


def test_cli_inspect_and_plot_a_checkpoint(cx, tmp_path):
    """A text4vis checkpoint's own classifier is read by plot and inspect."""
    import text4vis
    from text4vis import checkpoints
    rec = text4vis.load(checkpoint=cx["checkpoint"], clip=cx["clip"], labels=cx["names"], frames=FRAMES)
    ckpt = str(tmp_path / "model.safetensors")
    checkpoints.save_checkpoint(ckpt, rec.model, rec.towers, labels=cx["names"],
                                classifier_meta={"type": "text", "prompts": [PROMPT]},
                                settings={"num_frames": FRAMES, "input_size": 32})
    rc, stdout, stderr = run_cli(["classifier", "inspect", ckpt, "--k", "3"])
    assert rc == 0, stderr
    lines = stdout.strip().splitlines()
    assert "text classifier, 9 classes x 64 dims" in lines[0] and len(lines) == 10
    rand = str(tmp_path / "rand.safetensors")
    C.save_classifier(C.random_classifier(cx["names"], 64), rand)
    rc, stdout, stderr = run_cli(["classifier", "plot", ckpt, rand, "--classes", "all", "--out", str(tmp_path / "p.png")])
    assert rc == 0 and "2 panel(s), 9 classes" in stdout, stderr
