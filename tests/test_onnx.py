"""ONNX export and the ONNX Runtime backend: parity with PyTorch on real clips, dynamic T, a missing
onnxruntime, the bench mode's agreement figures (no timing asserted: speed is `text4vis bench`'s job)."""
from __future__ import annotations

import json
import os
import sys

import pytest
import torch
import torch.nn.functional as F

from conftest import SHARED_VIDEOS, original_text4vis_checkpoint, tiny_config, tiny_openai_state_dict
from test_zoo import build_converted

import text4vis
from text4vis import deploy
from text4vis.cli import main
from text4vis.errors import UsageError, WeightsError

REAL = {name: os.path.join(SHARED_VIDEOS, name) for name in (
    "iphone4s_rotate90_h264_aac.mov", "cricket_shot_ucf101.gif", "dog_android_vfr_rotate180_h264_aac.mp4")}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    _, _, folder = build_converted(tmp_path_factory.mktemp("onnx"))
    result = deploy.export_onnx(folder, video=REAL["iphone4s_rotate90_h264_aac.mov"])
    return folder, result


def test_export_checks_parity_on_a_real_clip(exported):
    folder, r = exported
    assert r["path"] == os.path.join(folder, "model.onnx") and os.path.isfile(r["path"])
    assert r["video"].endswith("iphone4s_rotate90_h264_aac.mov")
    assert r["cosine_min"] >= deploy.PARITY_MIN_COS
    backend = deploy.OnnxVideoModel(r["path"])
    assert backend.meta["num_frames"] == 8 and backend.meta["input_size"] == 32 and backend.embed_dim == 64


@pytest.mark.parametrize("name", sorted(REAL))
def test_runtime_onnx_predicts_as_torch(exported, name):
    folder, _ = exported
    torch_rec = text4vis.load(checkpoint=folder, device="cpu")
    onnx_rec = text4vis.load(checkpoint=folder, device="cpu", runtime="onnx")
    assert isinstance(onnx_rec.video_backend, deploy.OnnxVideoModel)
    a = torch_rec.predict([REAL[name]], topk=3, views="2x3", workers=0, with_embedding=True)[0]
    b = onnx_rec.predict([REAL[name]], topk=3, views="2x3", workers=0, with_embedding=True)[0]
    assert "error" not in a and "error" not in b
    assert [t["label"] for t in a["top"]] == [t["label"] for t in b["top"]]
    assert [t["score"] for t in a["top"]] == pytest.approx([t["score"] for t in b["top"]], abs=1e-4)
    assert F.cosine_similarity(torch.tensor(a["embedding"]), torch.tensor(b["embedding"]), dim=0) >= 0.9999


@pytest.mark.parametrize("frames", [4, 16])
def test_onnx_with_other_frame_counts(exported, frames):
    """The graph was exported at T=8; batch and T are dynamic."""
    folder, r = exported
    torch_rec = text4vis.load(checkpoint=folder, device="cpu", frames=frames)
    onnx_rec = text4vis.load(checkpoint=folder, device="cpu", frames=frames, runtime="onnx")
    x = torch.randint(0, 256, (3, frames, 3, 32, 32), dtype=torch.uint8)
    assert F.cosine_similarity(torch_rec.encode_video(x), onnx_rec.encode_video(x)).min() >= 0.9999
    # the backend itself also takes already-normalised float frames (what the exported graph's input is);
    # the Recognizer API takes uint8 or 0..1 frames and refuses other floats rather than guess
    normalised = torch_rec.model.normalize(x)
    assert F.cosine_similarity(torch_rec.model.encode_video(normalised),
                               onnx_rec.video_backend.encode_video(normalised)).min() >= 0.9999
    clip = onnx_rec.predict([REAL["cricket_shot_ucf101.gif"]], topk=1, workers=0)[0]
    assert clip["top"][0]["label"] == torch_rec.predict([REAL["cricket_shot_ucf101.gif"]], topk=1, workers=0)[0]["top"][0]["label"]


@pytest.mark.slow
def test_export_other_frames_and_int8(tmp_path, exported, capsys):
    folder, _ = exported
    out = str(tmp_path / "f4.onnx")
    assert main(["export", folder, "--format", "onnx", "--out", out, "--frames", "4", "--quantize", "int8",
                 "--video", REAL["dog_android_vfr_rotate180_h264_aac.mp4"]]) == 0
    text = capsys.readouterr().out
    assert "parity with PyTorch on" in text and "dog_android_vfr" in text and "(>= 0.9999: ok)" in text
    assert "int8 dynamic quantisation" in text
    assert deploy.OnnxVideoModel(out).meta["num_frames"] == 4
    q = deploy.OnnxVideoModel(str(tmp_path / "f4.int8.onnx"))
    rec = text4vis.load(checkpoint=folder, device="cpu", frames=4)
    x = torch.randint(0, 256, (2, 4, 3, 32, 32), dtype=torch.uint8)
    assert F.cosine_similarity(rec.encode_video(x), q.encode_video(x)).min() >= 0.99


def test_runtime_onnx_without_an_export_is_one_line(tmp_path, capsys):
    _, _, folder = build_converted(tmp_path)
    with pytest.raises(WeightsError, match="no ONNX model there; export one first"):
        text4vis.load(checkpoint=folder, device="cpu", runtime="onnx")
    assert main(["predict", REAL["cricket_shot_ucf101.gif"], "--checkpoint", folder, "--runtime", "onnx"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model.onnx" in err


def test_missing_onnxruntime_names_the_extra(exported, monkeypatch, capsys):
    folder, _ = exported
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` raises ImportError
    with pytest.raises(UsageError, match=r"pip install 'text4vis\[onnx\]'"):
        text4vis.load(checkpoint=folder, device="cpu", runtime="onnx")
    assert main(["predict", REAL["cricket_shot_ucf101.gif"], "--checkpoint", folder, "--runtime", "onnx"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "text4vis[onnx]" in err and "Traceback" not in err
    assert main(["export", folder, "--format", "onnx"]) == 2
    assert "text4vis[onnx]" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_onnx_reports_both_runtimes_and_agreement():
    # width 128: 2 attention heads, so nn.MultiheadAttention would take its (not exportable) fused fast path
    # under no_grad, as it does for every real CLIP
    r = deploy.bench_onnx("tiny", frames=4, batch=2, iters=1, warmup=0, quantize="int8", cfg=tiny_config(128),
                          rounds=1, clips=4)
    json.dumps(r)  # --json prints it as is
    assert set(r["cases"]) == {"pytorch_eager", "onnxruntime_fp32", "onnxruntime_int8"}
    assert r["ratio"] == pytest.approx(r["onnx_videos_per_s"] / r["pytorch_videos_per_s"])
    assert r["fp32_cosine_min"] >= 0.9999 and r["fp32_top1_agreement"] == 1.0
    assert 0.9 <= r["int8_cosine_min"] <= 1.0 and 0.0 <= r["int8_top1_agreement"] <= 1.0
    assert r["threads"] == torch.get_num_threads()


@pytest.mark.slow
def test_timeline_on_onnx_runtime_equals_torch(exported, capsys):
    folder, _ = exported
    video = REAL["dog_android_vfr_rotate180_h264_aac.mp4"]
    torch_rec = text4vis.load(checkpoint=folder, device="cpu")
    onnx_rec = text4vis.load(checkpoint=folder, device="cpu", runtime="onnx")
    a = torch_rec.embed_windows(video, window=1.0, stride=0.5)
    b = onnx_rec.embed_windows(video, window=1.0, stride=0.5)
    assert [(w["start"], w["end"]) for w in a["windows"]] == [(w["start"], w["end"]) for w in b["windows"]]
    cos = [float(torch.tensor(x["embedding"]) @ torch.tensor(y["embedding"])) for x, y in zip(a["windows"], b["windows"])]
    assert len(cos) >= 2 and min(cos) >= 0.9999
    assert main(["timeline", video, "--checkpoint", folder, "--runtime", "onnx", "--window", "1", "--stride", "0.5",
                 "--json", "--quiet"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert [w["top"][0]["label"] for w in record["windows"]] == \
        [w["top"][0]["label"] for w in torch_rec.timeline(video, window=1.0, stride=0.5)["windows"]]


def test_index_build_on_onnx_runtime_equals_torch(exported, tmp_path):
    from text4vis.index import VideoIndex
    folder, _ = exported
    videos = [REAL["cricket_shot_ucf101.gif"], REAL["iphone4s_rotate90_h264_aac.mov"]]
    built = {rt: VideoIndex.build(videos, str(tmp_path / rt), checkpoint=folder, device="cpu", workers=0, runtime=rt)
             for rt in ("torch", "onnx")}
    tags = {rt: list(ix.tag("ucf101", topk=3)) for rt, ix in built.items()}
    assert [t["video"] for t in tags["torch"]] == [t["video"] for t in tags["onnx"]] == sorted(videos)
    for a, b in zip(tags["torch"], tags["onnx"]):
        assert [x["label"] for x in a["top"]] == [x["label"] for x in b["top"]]
        assert max(abs(x["score"] - y["score"]) for x, y in zip(a["top"], b["top"])) < 1e-4


@pytest.mark.slow
def test_serve_on_onnx_runtime_answers_as_torch(exported, tmp_path):
    import httpx
    from serving import Server
    folder, _ = exported
    clip = os.path.join(os.path.dirname(folder), "tiny_clip.pt")
    video = REAL["iphone4s_rotate90_h264_aac.mov"]
    for rt in ("torch", "onnx"):
        (tmp_path / rt).mkdir()
    servers = {rt: Server(tmp_path / rt, clip, "--checkpoint", folder, "--runtime", rt, "--decode-workers", "1")
               for rt in ("torch", "onnx")}
    try:
        answers = {}
        for rt, server in servers.items():
            server.wait_ready()
            with open(video, "rb") as f:
                r = httpx.post(server.url + "/v1/predict", files={"video": ("clip.mov", f)}, timeout=120)
            assert r.status_code == 200, r.text
            answers[rt] = r.json()["top"]
    finally:
        for server in servers.values():
            server.stop()
    assert [t["label"] for t in answers["torch"]] == [t["label"] for t in answers["onnx"]]
    assert max(abs(a["score"] - b["score"]) for a, b in zip(answers["torch"], answers["onnx"])) < 1e-4


def test_a_stale_export_is_refused_and_a_failed_export_writes_nothing(tmp_path, capsys):
    """model.onnx records the SHA-256 of the weights it came from: after the checkpoint changes (re-converted
    from other weights) it is refused in one line; an export whose parity clip does not decode leaves the
    existing file as it was; the int8 model runs with runtime='onnx-int8' and `convert` keeps to its own files."""
    from text4vis import zoo
    from text4vis.onnx_runtime import onnx_path
    pt, clip, folder = build_converted(tmp_path)
    r = deploy.export_onnx(folder, quantize="int8")
    assert deploy.OnnxVideoModel(r["path"]).meta["weights_sha256"] == zoo.sha256_file(os.path.join(folder, "model.safetensors"))
    int8 = text4vis.load(checkpoint=folder, device="cpu", runtime="onnx-int8")
    assert int8.video_backend.path == onnx_path(folder, int8=True) == os.path.join(folder, "model.int8.onnx")
    ref = text4vis.load(checkpoint=folder, device="cpu")
    x = torch.randint(0, 256, (2, 8, 3, 32, 32), dtype=torch.uint8)
    assert F.cosine_similarity(ref.encode_video(x), int8.encode_video(x)).min() >= 0.99
    assert main(["predict", REAL["cricket_shot_ucf101.gif"], "--checkpoint", folder, "--runtime", "onnx-int8",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["top"]

    before = open(r["path"], "rb").read()
    junk = tmp_path / "junk.mp4"
    junk.write_text("not a video\n")
    assert main(["export", folder, "--format", "onnx", "--video", str(junk)]) == 2
    assert "junk.mp4" in capsys.readouterr().err
    assert open(r["path"], "rb").read() == before and not [n for n in os.listdir(folder) if ".tmp" in n]

    # other weights into the same folder (convert recognises its own ONNX files and replaces the card files)
    torch.save(original_text4vis_checkpoint(tiny_openai_state_dict(0), "transf", seed=9), pt)
    zoo.convert(pt, folder, clip=clip, labels="k400")
    for runtime in ("onnx", "onnx-int8"):
        with pytest.raises(WeightsError, match="stale: it was exported from other weights.*re-export"):
            text4vis.load(checkpoint=folder, device="cpu", runtime=runtime)
    assert main(["predict", REAL["cricket_shot_ucf101.gif"], "--checkpoint", folder, "--runtime", "onnx"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model.onnx: stale" in err and "the `export` command" in err
    deploy.export_onnx(folder)
    assert text4vis.load(checkpoint=folder, device="cpu", runtime="onnx").video_backend is not None
