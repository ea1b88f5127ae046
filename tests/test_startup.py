"""Start-up (issue 29): what a process imports for the model library and the predict path, open_clip's
model code run without open_clip's package imports (identical outputs), the test-time resize without
torchvision (identical values), and `text4vis bench --startup` on the tiny model."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import SHARED_VIDEOS
from text4vis import transforms

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
CLIP_01S = os.path.join(SHARED_VIDEOS, "rotate90_keyboard_3frames_0.1s.mov")
# imported only by what needs them: Hugging Face models, training augmentations / lock(), plots, ...
HEAVY = ("transformers", "torchvision", "torch._dynamo", "open_clip.model", "open_clip.coca_model", "timm",
         "matplotlib", "sklearn", "scipy", "sentence_transformers", "tensorboard", "onnxruntime", "faiss")


def _run(code: str, *args: str) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_api_loads_no_heavy_module():
    """`import text4vis.api` imports PyTorch, but neither transformers, torchvision nor open_clip."""
    got = _run("import json, sys\nimport text4vis.api\n"
               f"print(json.dumps([m for m in {HEAVY + ('open_clip',)!r} if m in sys.modules]))")
    assert got == []


PREDICT = r"""
import json, sys
import torch
import text4vis
from text4vis import checkpoints
clip, video, ckpt, heavy_names = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
rec = text4vis.load(clip=clip, labels=["dog", "cat", "arm wrestling", "typing"], device="cpu")
first = rec.predict([video])[0]["top"]
windows = rec.timeline(video, window=0.1, stride=0.1)["windows"]
checkpoints.save_checkpoint(ckpt, rec.model, rec.towers, labels=rec.labels, classifier_meta=rec.classifier_meta,
                            settings={})
again = text4vis.load(checkpoint=ckpt, device="cpu").predict([video])[0]["top"]
heavy = [m for m in heavy_names if m in sys.modules]
ours = rec.towers.clip
private = type(ours).__module__

# now all of open_clip, in the same process: the package registered without its __init__ completes itself
import open_clip
from open_clip.transformer import QuickGELU
torch.manual_seed(0)
ref = open_clip.model.CLIP(**rec.towers.config).eval()
ref.load_state_dict(ours.state_dict())
images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
tokens = rec.towers.tokenize(["a video of a person typing.", "x"])
with torch.no_grad():
    same = [torch.equal(ours.encode_image(images), ref.encode_image(images)),
            torch.equal(ours.encode_text(tokens), ref.encode_text(tokens)),
            torch.equal(ours(images, tokens)[0], ref(images, tokens)[0])]
print(json.dumps({"first": first, "again": again, "windows": len(windows), "heavy": heavy, "private": private,
                  "same": same, "quick_gelu": isinstance(ours.visual.transformer.resblocks[0].mlp.gelu, QuickGELU),
                  "version": open_clip.__version__, "create_model": callable(open_clip.create_model),
                  "models": len(open_clip.list_models()), "real_model_loaded": "open_clip.model" in sys.modules}))
"""


def test_predict_timeline_and_checkpoints_load_no_heavy_module_and_match_open_clip(tiny_dir, tmp_path):
    """predict and timeline with an OpenAI-format CLIP file, then with a text4vis checkpoint, import none of
    HEAVY; the towers are open_clip's CLIP code (its QuickGELU class) and give open_clip's outputs exactly;
    `import open_clip` afterwards is all of open_clip."""
    got = _run(PREDICT, str(tiny_dir / "openai_sd.pt"), CLIP_01S, str(tmp_path / "t4v.safetensors"), json.dumps(HEAVY))
    assert got["heavy"] == []
    assert got["first"] == got["again"] and len(got["first"]) == 4 and got["windows"] >= 1
    assert got["private"] != "open_clip.model"  # the installed model.py, run without hf_model/timm_model
    assert got["same"] == [True, True, True] and got["quick_gelu"]
    assert got["version"] and got["create_model"] and got["models"] > 50 and got["real_model_loaded"]


def test_towers_match_in_a_process_that_imported_open_clip(tiny_dir):
    """Where open_clip.model is already imported (as here, by conftest), text4vis builds with its classes."""
    import open_clip

    from text4vis import towers
    t = towers.load_towers(str(tiny_dir / "openai_sd.pt"))
    assert type(t.clip) is open_clip.model.CLIP
    from text4vis.backbones import open_clip_lite
    hf = {"embed_dim": 64, "vision_cfg": {}, "text_cfg": {"hf_model_name": "bert-base-uncased"}}
    assert open_clip_lite.clip_class(hf) is open_clip.model.CustomTextCLIP  # Hugging Face text towers: open_clip's
    assert open_clip_lite.package() is open_clip and towers.open_clip.list_models() == open_clip.list_models()


@pytest.mark.parametrize("shape,short", [((3, 3, 240, 320), 256), ((1, 3, 37, 91), 32), ((2, 3, 480, 200), 224),
                                         ((4, 3, 300, 300), 256), ((2, 3, 64, 48), 96)])
def test_resize_matches_torchvision(shape, short):
    """The test-time resize is torchvision's v2 resize (bicubic, antialias) value for value, uint8 and float,
    contiguous or not, down and up."""
    from torchvision.transforms import v2
    from torchvision.transforms.v2 import functional as F
    g = torch.Generator().manual_seed(sum(shape))
    clip = torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)
    h, w = shape[-2:]
    size = [short, max(1, int(w * short / h))] if h <= w else [max(1, int(h * short / w)), short]
    for x in (clip, clip.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2), clip.float(), clip.half()):
        ref = F.resize(x, size, interpolation=v2.InterpolationMode.BICUBIC, antialias=True)
        ours = transforms.resize_short(x, short)
        assert ours.dtype == ref.dtype and ours.shape == ref.shape
        assert torch.equal(ours, ref), x.dtype
    pad = transforms._pad_to(clip[..., :20, :50], 32)
    assert torch.equal(pad, F.pad(clip[..., :20, :50], [0, 6, 0, 6]))  # left, top, right, bottom (centred)


def test_bench_startup_on_the_tiny_model():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-m", "text4vis", "bench", "--startup", "tiny", "--iters", "1", "--json",
                          "--video", CLIP_01S], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout)
    case = r["cases"]["tiny"]
    assert r["runs"] == 1 and r["video"] == CLIP_01S and list(r["cases"]) == ["tiny"]
    for stage in ("python", "import", "load", "first_result", "process", "cli"):
        assert case[f"{stage}_s"] > 0 and case[f"{stage}_cpu_s"] >= 0, stage
    assert case["process_s"] >= case["import_s"] + case["load_s"] + case["first_result_s"]
    assert case["heavy_modules"] == []
    table = subprocess.run([sys.executable, "-m", "text4vis", "bench", "--startup", "nope"], capture_output=True,
                           text=True, env=env, timeout=120)
    assert table.returncode == 2 and "--startup nope: choose from tiny, ViT-B/16" in table.stderr
