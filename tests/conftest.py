"""Fixtures: tiny random-weight CLIP checkpoints in the true formats, and small real videos.

Nothing here touches the network or the Hugging Face cache: HF_HUB_OFFLINE is set and the caches
point into a temporary folder for the whole session.
"""
from __future__ import annotations

import os
import sys
import tempfile

_CACHE = tempfile.mkdtemp(prefix="text4vis-test-cache-")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_HOME"] = os.path.join(_CACHE, "hf")
os.environ["TEXT4VIS_CACHE"] = os.path.join(_CACHE, "text4vis")

import av  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

# Tiny models on a 2-core machine: one thread avoids oversubscription (ops get 10x+ slower otherwise)
torch.set_num_threads(1)

sys.path.insert(0, os.path.dirname(__file__))

# Real camera clips (Apache-2.0 / MIT / BSD, see tests/data/videos/SOURCES.md), kept in the repository so a
# fresh clone tests everything with nothing skipped.
SHARED_VIDEOS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "videos")

# A small OpenAI-layout CLIP: ViT with 2 layers of width 64, patch 8 on 32x32 images,
# a 1-layer text tower of width 64 with the real CLIP vocabulary (so the real tokenizer works).
TINY = dict(embed_dim=64,
            vision_cfg=dict(layers=2, width=64, patch_size=8, image_size=32),
            text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=1, layers=1),
            quick_gelu=True)


def tiny_openai_state_dict(seed: int = 0, dtype=torch.float32) -> dict[str, torch.Tensor]:
    """Random weights with OpenAI CLIP's key names and layout (what OpenAI's ViT-B/16.pt holds)."""
    from open_clip.model import CLIP
    torch.manual_seed(seed)
    model = CLIP(**TINY)
    sd = {k: v.clone().to(dtype) if v.is_floating_point() else v.clone() for k, v in model.state_dict().items()}
    sd.pop("attn_mask", None)
    return sd


def save_torchscript_archive(sd: dict[str, torch.Tensor], path: str) -> None:
    """A TorchScript archive holding exactly these parameters (as OpenAI's JIT .pt files do)."""
    from torch import nn

    class Node(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    root = Node()
    for key, value in sd.items():
        *parents, leaf = key.split(".")
        mod = root
        for p in parents:
            if not hasattr(mod, p):
                mod.add_module(p, Node())
            mod = getattr(mod, p)
        mod.register_parameter(leaf, nn.Parameter(value.clone(), requires_grad=False))
    torch.jit.save(torch.jit.script(root), path)


def original_text4vis_checkpoint(sd_clip: dict[str, torch.Tensor], head: str, seed: int = 1) -> dict:
    """An original Text4Vis checkpoint dict: {epoch, model_state_dict (module.-prefixed), optimizer_state_dict}."""
    from text4vis.temporal import build_head
    torch.manual_seed(seed)
    fusion = build_head(head, TINY["embed_dim"])
    state = {f"module.{k}": v for k, v in sd_clip.items() if k.startswith("visual.")}
    state.update({f"module.fusion_model.{k}": v for k, v in fusion.state_dict().items()})
    state["module.logit_scale"] = torch.tensor(4.6052)
    return {"epoch": 3, "model_state_dict": state,
            "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 5e-6, "params": [0, 1]}]}}


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """tiny CLIP checkpoints in every real format, the same weights in each."""
    d = tmp_path_factory.mktemp("tiny")
    sd = tiny_openai_state_dict(0)
    torch.save(sd, d / "openai_sd.pt")
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in sd.items()}, d / "openai_sd_fp16.pt")
    save_torchscript_archive(sd, str(d / "openai_jit.pt"))
    torch.save({"epoch": 2, "name": "tiny", "state_dict": {f"module.{k}": v for k, v in sd.items()}},
               d / "open_clip_ckpt.pt")
    torch.save(original_text4vis_checkpoint(sd, "transf"), d / "text4vis_orig_transf.pt")
    torch.save(original_text4vis_checkpoint(sd, "mean"), d / "text4vis_orig_mean.pt")
    return d


@pytest.fixture(scope="session")
def clip_file(tiny_dir) -> str:
    """The tiny CLIP as an OpenAI state-dict file: what `--clip FILE` takes."""
    return str(tiny_dir / "openai_sd.pt")


# ----------------------------------------------------------------------------- the command line

def run_cli(*argv) -> tuple[int, str, str]:
    """The command line in this process: (exit code, stdout, stderr). argv as arguments or one list; each
    is passed as str. argparse's own usage errors (SystemExit) give their code. Input problems never
    print a traceback, so one in the output fails the test."""
    import contextlib
    import io

    from text4vis.cli import main
    if len(argv) == 1 and isinstance(argv[0], (list, tuple)):
        argv = tuple(argv[0])
    class Capture(io.StringIO):       # a terminal where the stream it stands in for is one (isatty patched)
        def __init__(self, like):
            super().__init__()
            self.like = like

        def isatty(self) -> bool:
            return self.like.isatty()

    out, err = Capture(sys.stdout), Capture(sys.stderr)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in argv])
        except SystemExit as exc:
            rc = exc.code
    assert "Traceback" not in out.getvalue() + err.getvalue(), err.getvalue()
    return rc, out.getvalue(), err.getvalue()


# ----------------------------------------------------------------------------- videos

def write_video(path: str, frames: np.ndarray, fps: int = 25, codec: str = "libx264", pix_fmt: str = "yuv420p",
                options: dict | None = None, rotation: int | None = None) -> None:
    """Write uint8 [N, H, W, 3] frames with PyAV, flushing the encoder so every frame is stored."""
    with av.open(path, "w") as out:
        stream = out.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = pix_fmt
        if options:
            stream.options = options
        if rotation is not None:
            # `rotation` is the old "rotate" tag: clockwise degrees for display. Current FFmpeg ignores
            # that tag when muxing, so write the display matrix (counter-clockwise degrees) instead.
            if hasattr(stream, "set_display_rotation"):
                stream.set_display_rotation(-rotation)
            else:
                stream.metadata["rotate"] = str(rotation)
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


BITS = 8  # frame index encoded as 8 black/white blocks across the frame (survives compression)


def index_frames(n: int, h: int = 64, w: int = 128) -> np.ndarray:
    frames = np.zeros((n, h, w, 3), np.uint8)
    bw = w // BITS
    for i in range(n):
        for b in range(BITS):
            if (i >> b) & 1:
                frames[i, :, b * bw:(b + 1) * bw] = 255
    return frames


def decode_index(frame: np.ndarray) -> int:
    """Read back the index from a decoded (possibly resized) frame: [H, W, 3] uint8 or [3, H, W]."""
    if frame.shape[0] == 3 and frame.shape[-1] != 3:
        frame = frame.transpose(1, 2, 0)
    h, w = frame.shape[:2]
    bw = w / BITS
    value = 0
    for b in range(BITS):
        block = frame[h // 4: 3 * h // 4, int(b * bw + bw / 4): int((b + 1) * bw - bw / 4)]
        if block.mean() > 127:
            value |= 1 << b
    return value


@pytest.fixture(scope="session")
def index_video(tmp_path_factory):
    """A 50-frame H.264 video whose frames show their own index."""
    path = str(tmp_path_factory.mktemp("vid") / "index50.mp4")
    write_video(path, index_frames(50), options={"crf": "10", "g": "12", "bf": "2"})
    return path


# ----------------------------------------------------------------------------- more helpers (model, weights, predict)

def tiny_config(width: int = 64) -> dict:
    """TINY with every width (embedding, image tower, text tower) set to `width` (heads = width // 64)."""
    return dict(embed_dim=width,
                vision_cfg=dict(layers=2, width=width, patch_size=8, image_size=32),
                text_cfg=dict(context_length=77, vocab_size=49408, width=width, heads=max(1, width // 64), layers=1),
                quick_gelu=True)


def tiny_state_dict_of(cfg: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights with OpenAI CLIP's key names for an arbitrary tiny config."""
    from open_clip.model import CLIP
    torch.manual_seed(seed)
    sd = {k: v.clone() for k, v in CLIP(**cfg).state_dict().items()}
    sd.pop("attn_mask", None)
    return sd


def write_audio_only(path: str, codec: str = "aac", seconds: float = 0.5) -> None:
    """A file with one audio stream and no video stream (silence with a little noise)."""
    rate = 44100 if codec != "libopus" else 48000
    with av.open(path, "w") as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "mono"
        ctx = stream.codec_context
        fmt = ctx.format.name if ctx.format is not None else "fltp"
        size = ctx.frame_size or 1024
        rng = np.random.default_rng(0)
        pts = 0
        for _ in range(int(seconds * rate / size) + 1):
            if fmt.startswith("s16"):
                data = rng.integers(-100, 100, (1, size)).astype(np.int16)
            else:
                data = (rng.standard_normal((1, size)) * 0.01).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(data, format=fmt, layout="mono")
            frame.sample_rate, frame.pts = rate, pts
            pts += size
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def stripes(n: int, h: int, w: int, period: int) -> np.ndarray:
    """Vertical black/white stripes `period` px wide, shifted by one stripe every frame."""
    x = np.arange(w)
    frames = np.zeros((n, h, w, 3), np.uint8)
    for i in range(n):
        frames[i, :, ((x // period) + i) % 2 == 1] = 255
    return frames


@pytest.fixture(scope="session")
def square_index_video(tmp_path_factory):
    """A 40-frame 64x64 H.264 video whose frames show their own index (the whole frame survives a 64 crop)."""
    path = str(tmp_path_factory.mktemp("vid") / "index40_square.mp4")
    write_video(path, index_frames(40, 64, 64), options={"crf": "10", "g": "10", "bf": "2"})
    return path


@pytest.fixture(scope="session")
def odd_inputs(tmp_path_factory):
    """Awkward inputs, written once per session: name -> path.

    zero (0 bytes), text (a text file named .mp4), truncated_mp4 (half an mp4: its index is gone),
    truncated_mkv (half an mkv: the first frames remain), audio_only (AAC in .m4a),
    single (one frame), wide (4000x16), gray (a true gray-format stream), missing (no such file).
    """
    d = tmp_path_factory.mktemp("odd")
    paths = {name: str(d / fname) for name, fname in {
        "zero": "zero.mp4", "text": "text.mp4", "truncated_mp4": "truncated.mp4", "truncated_mkv": "truncated.mkv",
        "audio_only": "audio_only.m4a", "single": "single.mp4", "wide": "wide_4000x16.mp4",
        "gray": "gray.mkv", "missing": "missing.mp4"}.items()}
    open(paths["zero"], "wb").close()
    with open(paths["text"], "w") as f:
        f.write("this is not a video\n" * 50)
    rng = np.random.default_rng(0)
    busy = np.concatenate([index_frames(40, 64, 128)[:, :32], rng.integers(0, 256, (40, 32, 128, 3), dtype=np.uint8)], 1)
    whole = str(d / "whole.mp4")
    write_video(whole, busy, options={"g": "10"})
    data = open(whole, "rb").read()
    with open(paths["truncated_mp4"], "wb") as f:
        f.write(data[: len(data) // 2])
    whole = str(d / "whole.mkv")
    write_video(whole, busy, codec="ffv1")
    data = open(whole, "rb").read()
    with open(paths["truncated_mkv"], "wb") as f:
        f.write(data[: len(data) // 2])
    write_audio_only(paths["audio_only"], "aac")
    write_video(paths["single"], index_frames(1))
    wide = stripes(6, 16, 4000, 500)
    try:
        write_video(paths["wide"], wide)
    except Exception:  # an H.264 encoder that refuses 4000x16: a lossless codec in Matroska
        paths["wide"] = str(d / "wide_4000x16.mkv")
        write_video(paths["wide"], wide, codec="ffv1")
    write_video(paths["gray"], index_frames(12), codec="ffv1", pix_fmt="gray")
    return paths


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread in every test module (tiny models on 2 cores: oversubscription makes ops 10x slower),
    restored after the module, so a test that changes it does not leak into the next module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def small_benchmark(folder, train_per_class: int = 2, val_per_class: int = 1) -> dict:
    """The training tests' data: 4 classes (circle/square x moving left/right) of real 8-frame 32x32 H.264
    videos with Text4Vis list files (text4vis.synthetic.make_benchmark)."""
    from text4vis.synthetic import make_benchmark
    return make_benchmark(folder, shapes=["circle", "square"], motions=["moving left", "moving right"], heldout=[],
                          train_per_class=train_per_class, val_per_class=val_per_class, num_frames=8, size=32,
                          progress=False)
