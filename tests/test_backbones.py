"""Newer backbones: open_clip SigLIP / SigLIP2 / EVA02 / MetaCLIP and transformers CLIP / SigLIP / SigLIP2.

Each tiny random-weight model is built by its own library (backbone_fixtures.py), loaded through text4vis,
and checked against that library: text embeddings against open_clip's `encode_text` / transformers'
`get_text_features`, frame embeddings (uint8 frames through text4vis's normalisation with the family's
mean/std) against `encode_image` / `get_image_features`. Then each runs predict -> train one step ->
predict from the saved checkpoint with its source folder gone (the tokenizer travels in the checkpoint),
timeline, index build/search and ONNX export, offline (conftest sets HF_HUB_OFFLINE).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import shutil

import pytest
import torch
import torch.nn.functional as F

import backbone_fixtures as bf
from conftest import SHARED_VIDEOS
from text4vis import checkpoints
from text4vis.backbones import families
from text4vis.cli import main as cli_main
from text4vis.model import VideoModel
from text4vis.synthetic import make_benchmark
from text4vis.towers import load_towers

TEXTS = ["a video of a person dancing.", "a photo of a dog.", "cleaning the pool"]
CLIP_VIDEO = os.path.join(SHARED_VIDEOS, "arm_wrestling_h264.mp4")
OPEN_CLIP = ["tiny-SigLIP", "tiny-SigLIP2", "tiny-EVA02", "tiny-MetaCLIP"]
HF = ["clip", "siglip", "siglip2", "xclip"]


def run_cli(argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli_main([str(a) for a in argv])
        except SystemExit as exc:
            rc = exc.code
    assert "Traceback" not in out.getvalue() + err.getvalue()
    return rc, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def toks(tmp_path_factory):
    d = tmp_path_factory.mktemp("toks")
    return {"spm": bf.spm_tokenizer_dir(str(d / "spm")), "bpe": bf.clip_bpe_dir(str(d / "bpe"))}


@pytest.fixture(scope="module")
def oc(toks, tmp_path_factory):
    d = tmp_path_factory.mktemp("open_clip")
    return {name: bf.open_clip_family(name, cfg, pre, str(d))
            for name, (cfg, pre) in bf.open_clip_configs(toks["spm"]).items()}


@pytest.fixture(scope="module")
def hf(toks, tmp_path_factory):
    return bf.hf_models(str(tmp_path_factory.mktemp("hf")), toks["spm"], toks["bpe"])


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """2 classes x (2 train + 1 val) real H.264 videos of 4 frames, 32x32."""
    return make_benchmark(tmp_path_factory.mktemp("bench"), shapes=["circle", "square"], motions=["moving left"],
                          heldout=[], train_per_class=2, val_per_class=1, num_frames=4, size=32, progress=False)


def frames_for(size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (2, 2, 3, size, size), dtype=torch.uint8, generator=g)   # (b, t, 3, s, s)


def reference_input(frames: torch.Tensor, mean, std) -> torch.Tensor:
    x = frames.flatten(0, 1).float() / 255.0
    return (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def text4vis_frames(towers, frames: torch.Tensor) -> torch.Tensor:
    model = VideoModel(towers.clip.visual, towers.embed_dim, "mean", mean=towers.mean, std=towers.std).eval()
    with torch.no_grad():
        return model.frame_embeddings(frames).flatten(0, 1)


# ----------------------------------------------------------------------------- parity

@pytest.mark.parametrize("name", OPEN_CLIP)
def test_open_clip_family_parity(name, oc):
    ref = oc[name]
    for spec in (f"{name}:{ref['file']}", f"local-dir:{ref['dir']}", ref["dir"]):
        towers = load_towers(spec)
        with torch.no_grad():
            want = F.normalize(ref["model"].encode_text(ref["tokenizer"](TEXTS)), dim=-1)
        assert F.cosine_similarity(towers.encode_text(TEXTS), want).min() >= 0.9999
        assert towers.context_length == ref["model"].context_length if hasattr(ref["model"], "context_length") else True
        if spec.startswith("local-dir:") or os.path.isdir(spec):    # the folder's own preprocessing
            assert towers.mean == tuple(ref["pre"]["mean"]) and towers.std == tuple(ref["pre"]["std"])
            assert towers.preprocess["resize_mode"] == ref["pre"]["resize_mode"]
        frames = frames_for(towers.input_size)
        with torch.no_grad():
            want = ref["model"].encode_image(reference_input(frames, towers.mean, towers.std))
        assert F.cosine_similarity(text4vis_frames(towers, frames), want).min() >= 0.9999
        bias = getattr(ref["model"], "logit_bias", None)
        assert towers.logit_bias == (None if bias is None else pytest.approx(-3.0))


def test_family_preprocessing_comes_from_the_architecture():
    """A MODEL:/path file has no tag: the preprocessing every tag of the architecture agrees on."""
    pre = families.preprocess_of("ViT-B-16-SigLIP", None)
    assert pre["mean"] == (0.5, 0.5, 0.5) and pre["std"] == (0.5, 0.5, 0.5) and pre["resize_mode"] == "squash"
    assert families.preprocess_of("ViT-B-16-SigLIP2", "webli")["mean"] == (0.5, 0.5, 0.5)
    assert families.preprocess_of("ViT-B-16", "openai")["mean"][0] == pytest.approx(0.48145466)


@pytest.mark.parametrize("kind", HF)
def test_transformers_parity(kind, hf):
    import transformers
    from transformers import AutoTokenizer
    folder = hf[kind]
    towers = load_towers(folder)
    assert towers.family == "hf"
    cls = {"clip": transformers.CLIPModel, "siglip": transformers.SiglipModel, "siglip2": transformers.Siglip2Model,
           "xclip": transformers.XCLIPModel}
    ref = cls[kind].from_pretrained(folder).eval()
    tok = AutoTokenizer.from_pretrained(folder)
    with torch.no_grad():
        want = ref.get_text_features(**tok(TEXTS, padding="max_length", max_length=towers.context_length,
                                           return_tensors="pt")).pooler_output
    assert F.cosine_similarity(towers.encode_text(TEXTS), F.normalize(want, dim=-1)).min() >= 0.9999
    frames = frames_for(towers.input_size)
    x = reference_input(frames, towers.mean, towers.std)
    with torch.no_grad():
        if kind == "siglip2":   # what Siglip2ImageProcessor gives a square image at the model's size
            p = ref.config.vision_config.patch_size
            n, s = x.shape[0], x.shape[-1] // p
            patches = x.reshape(n, 3, s, p, s, p).permute(0, 2, 4, 3, 5, 1).reshape(n, s * s, p * p * 3)
            want = ref.get_image_features(pixel_values=patches, pixel_attention_mask=torch.ones(n, s * s, dtype=torch.long),
                                          spatial_shapes=torch.tensor([[s, s]] * n)).pooler_output
        elif kind == "xclip":   # get_video_features: clips of the model's 2 frames through its `mit`
            want = ref.get_video_features(pixel_values=x.view(frames.shape)).pooler_output
            want = want.repeat_interleave(frames.shape[1], dim=0)
        else:
            want = ref.get_image_features(pixel_values=x).pooler_output
    assert F.cosine_similarity(text4vis_frames(towers, frames), want).min() >= 0.9999
    assert towers.mean == ((0.5,) * 3 if "clip" not in kind else (0.48145466, 0.4578275, 0.40821073))  # its processor's
    assert (towers.logit_bias is None) == ("clip" in kind)


def test_hf_id_offline_names_the_download_command():
    from text4vis.errors import WeightsError
    with pytest.raises(WeightsError) as err:
        load_towers("hf:google/siglip-base-patch16-224@main")
    assert "hf download google/siglip-base-patch16-224 --revision main" in str(err.value)
    assert "\n" not in str(err.value)


# ----------------------------------------------------------------------------- everywhere

def test_viclip_published_layout_matches_clip_towers_on_one_frame(tmp_path):
    """ViCLIP's towers are CLIP's where time does not enter: its text tower (context 32) and, for a clip of
    one frame (the temporal embedding's mean added, zero here), its video tower equal open_clip's CLIP
    holding the same weights. (The multi-frame path was compared with InternVid's reference code on real
    clips: see the README.)"""
    from open_clip.tokenizer import SimpleTokenizer
    f = bf.viclip_checkpoint(str(tmp_path / "ViClip-tiny.pth"), num_frames=2, temporal=False)
    towers = load_towers(f["path"])
    assert towers.family == "viclip" and towers.context_length == 32 and towers.embed_dim == 32
    assert towers.mean == (0.485, 0.456, 0.406)
    assert float(towers.clip.logit_scale.detach().exp()) == pytest.approx(100.0)  # 1 / temp
    with torch.no_grad():
        want = F.normalize(f["open_clip"].encode_text(SimpleTokenizer(context_length=32)(TEXTS)), dim=-1)
    assert F.cosine_similarity(towers.encode_text(TEXTS), want).min() >= 0.9999
    frames = frames_for(32)[:, :1]                                                  # clips of one frame
    with torch.no_grad():
        want = f["open_clip"].encode_image(reference_input(frames, towers.mean, towers.std))
    assert F.cosine_similarity(text4vis_frames(towers, frames), want).min() >= 0.9999


def test_viclip_frames_attend_jointly(tmp_path):
    """The video tower sees the clip whole: each clip's embedding depends on all its frames and their order
    (a temporal embedding), and is the same for each of its frames."""
    f = bf.viclip_checkpoint(str(tmp_path / "ViClip-tiny.pth"), num_frames=2)
    towers = load_towers(f["path"])
    frames = frames_for(32)                                                          # (2 clips, 2 frames)
    emb = text4vis_frames(towers, frames).view(2, 2, -1)
    assert torch.equal(emb[:, 0], emb[:, 1])
    swapped = text4vis_frames(towers, frames.flip(1)).view(2, 2, -1)
    assert F.cosine_similarity(emb[:, 0], swapped[:, 0]).max() < 0.9999
    other = frames.clone()
    other[:, 1] = 255 - other[:, 1]
    assert F.cosine_similarity(emb[:, 0], text4vis_frames(towers, other).view(2, 2, -1)[:, 0]).max() < 0.9999


def _spec(kind: str, oc, hf, tmp_path) -> str:
    """A private copy of the model's folder or file (it is deleted later in the test)."""
    if kind == "viclip":
        return bf.viclip_checkpoint(str(tmp_path / "ViClip-tiny.pth"), num_frames=2)["path"]
    src = oc[kind]["dir"] if kind in oc else hf[kind]
    dst = tmp_path / "model"
    shutil.copytree(src, dst)
    return str(dst)


@pytest.mark.parametrize("kind", ["tiny-SigLIP", "tiny-EVA02", "tiny-MetaCLIP", "clip", "siglip", "siglip2", "xclip",
                                  "viclip"])
def test_predict_train_predict_timeline_index_export(kind, oc, hf, bench, tmp_path):
    spec = _spec(kind, oc, hf, tmp_path)
    labels = str(bench["labels_csv"])
    val = sorted(str(p) for p in (bench["root"] / "videos" / "val").rglob("*.mp4"))
    model = ["--frames", "2", "--device", "cpu", "--workers", "0"]
    rc, out, err = run_cli(["predict", *val, "--clip", spec, "--labels", labels, "--json", "--topk", "2", "--quiet",
                            *model])
    assert rc == 0, err
    zero_shot = [json.loads(line) for line in out.splitlines()]
    assert len(zero_shot) == 2 and all(len(r["top"]) == 2 for r in zero_shot)
    # train one step (the paper's recipe: image tower at lr x clip_ratio, head at lr, text classifier frozen)
    run = tmp_path / "run"
    items = {"model.clip": spec, "data.num_frames": 2, "data.batch_size": 4, "data.workers": 0, "optim.epochs": 1,
             "optim.lr": 1e-3, "optim.warmup_epochs": 0, "training.print_freq": 1, "evaluation.batch_size": 2,
             "data.train_list": bench["train_list"], "data.train_root": bench["root"], "data.labels": labels}
    args = ["train", "--output", run, "--quiet"]
    for k, v in items.items():
        args += ["--set", f"{k}={v}"]
    rc, _, err = run_cli(args)
    assert rc == 0, err
    best = run / "best.safetensors"
    meta, tensors = checkpoints.read_text4vis(str(best))
    assert meta["clip"]["preprocess"]["resize_mode"] in ("shortest", "squash")
    if kind not in ("tiny-EVA02", "tiny-MetaCLIP", "viclip"):   # a sentencepiece / HF tokenizer travels with it
        assert any(k.startswith("tokenizer.") for k in tensors)
    (os.remove if os.path.isfile(spec) else shutil.rmtree)(spec)   # the source is gone: the checkpoint is self-contained
    rc, out, err = run_cli(["predict", *val, "--checkpoint", best, "--json", "--quiet", *model])
    assert rc == 0, err
    trained = [json.loads(line) for line in out.splitlines()]
    assert [r["video"] for r in trained] == val and all(len(r["top"]) == 2 for r in trained)
    # a new label set through the stored text tower and tokenizer (no network, no source folder)
    new_labels = tmp_path / "new_labels.txt"
    new_labels.write_text("dancing\ncooking\nswimming\n")
    rc, out, err = run_cli(["predict", val[0], "--checkpoint", best, "--labels", new_labels,
                            "--json", "--quiet", *model])
    assert rc == 0, err
    assert {t["label"] for t in json.loads(out)["top"]} <= {"dancing", "cooking", "swimming"}
    # eval on the val list (the paper's protocol: top-1 of the trained checkpoint)
    rc, out, err = run_cli(["eval", "--checkpoint", best, "--val-list", bench["val_list"], "--val-root", bench["root"],
                            "--frames", "2", "--device", "cpu", "--workers", "0", "--out", tmp_path / "eval", "--quiet"])
    assert rc == 0, err
    results = json.load(open(tmp_path / "eval" / "results.json"))
    assert results["num_videos"] == 2 and 0 <= results["top1"] <= 100
    # convert into a folder (model.safetensors, config.json, README.md) that predicts as the checkpoint does
    folder = tmp_path / "converted"
    rc, out, err = run_cli(["convert", best, "--out", folder])
    assert rc == 0, err
    rc, out, err = run_cli(["predict", *val, "--checkpoint", folder, "--json", "--quiet", *model])
    assert rc == 0, err
    assert [json.loads(line)["top"] for line in out.splitlines()] == [r["top"] for r in trained]
    # timeline on a real clip
    rc, out, err = run_cli(["timeline", CLIP_VIDEO, "--checkpoint", best, "--window", "1", "--stride", "1", "--json",
                            "--quiet", "--frames", "2", "--device", "cpu"])
    assert rc == 0, err
    tl = json.loads(out)
    assert tl["windows"] and tl["windows"][0]["top"]
    # index build and search; the model identity is recorded
    idx = tmp_path / "index"
    rc, _, err = run_cli(["index", "build", *val, "--out", idx, "--checkpoint", best, *model])
    assert rc == 0, err
    rc, out, err = run_cli(["index", "search", idx, "--like", val[0], "-k", "1", "--json"])
    assert rc == 0, err
    assert json.loads(out)["results"][0]["video"] == val[0]
    assert json.load(open(idx / "index.json"))["model"]["checkpoint"] == str(best)
    # ONNX export with its parity check on a real clip
    rc, out, err = run_cli(["export", best, "--format", "onnx", "--frames", "2", "--video", CLIP_VIDEO])
    assert rc == 0, err
    assert "(>= 0.9999: ok)" in out


def test_sigmoid_scores_use_the_towers_bias_and_softmax_ignores_it(oc, tmp_path):
    import text4vis
    from text4vis.errors import WeightsError
    rec = text4vis.load(clip=f"local-dir:{oc['tiny-SigLIP']['dir']}", labels=["dancing", "cooking", "swimming"],
                        device="cpu", frames=2)
    frames = frames_for(rec.input_size)
    emb = rec.encode_video(frames)
    cos = emb @ F.normalize(rec.model.classifier, dim=-1).t()
    scores = rec.sigmoid_scores(frames)
    want = torch.sigmoid(torch.exp(torch.tensor(2.5)) * cos - 3.0)      # scale e^2.5, bias -3 (fixture)
    assert [list(s) for s in scores] == [["dancing", "cooking", "swimming"]] * 2
    assert torch.tensor([list(s.values()) for s in scores]) == pytest.approx(want, abs=1e-5)
    # classification is a softmax over labels: adding the same bias to every logit changes nothing
    top = rec.classify(frames[0], topk=3)
    logits = 100 * cos[0]
    assert [t["score"] for t in top] == pytest.approx(sorted((logits - 3.0).softmax(-1).tolist(), reverse=True), abs=1e-5)
    clip = text4vis.load(clip=f"local-dir:{oc['tiny-MetaCLIP']['dir']}", labels=["a", "b"], device="cpu", frames=2)
    with pytest.raises(WeightsError, match="not a sigmoid model"):
        clip.sigmoid_scores(frames_for(clip.input_size))


def test_bench_towers_reports_both_towers(oc):
    rc, out, err = run_cli(["bench", "--towers", f"local-dir:{oc['tiny-SigLIP']['dir']}", "--batch", "2", "--iters", "1",
                            "--json"])
    assert rc == 0, err
    r = json.loads(out)
    assert (r["input_size"], r["embed_dim"], r["context_length"]) == (160, 96, 32)
    assert r["image_frames_per_s"] > 0 and r["text_prompts_per_s"] > 0 and r["device"] == "cpu"


@pytest.mark.parametrize("kind", ["viclip"])   # (SigLIP's served answer equalled predict's too: one server keeps it quick)
def test_serve_answers_as_predict(kind, oc, hf, tmp_path):
    """`text4vis serve` on a video-native backbone (a real server on 127.0.0.1) answers what `predict --json`
    prints."""
    import httpx
    from serving import Server
    spec = _spec(kind, oc, hf, tmp_path)
    labels = tmp_path / "labels.txt"
    labels.write_text("dancing\ncooking\nswimming\n")
    server = Server(tmp_path, spec, "--labels", labels, "--frames", "2", "--decode-workers", "1").wait_ready()
    try:
        with open(CLIP_VIDEO, "rb") as f:
            r = httpx.post(server.url + "/v1/predict", files={"video": ("clip.mp4", f.read())},
                           data={"topk": "3"}, timeout=120)
    finally:
        server.stop()
    assert r.status_code == 200, r.text
    rc, out, err = run_cli(["predict", CLIP_VIDEO, "--clip", spec, "--labels", labels, "--frames", "2", "--json",
                            "--topk", "3", "--quiet", "--device", "cpu"])
    assert rc == 0, err
    assert r.json()["top"] == json.loads(out)["top"]
