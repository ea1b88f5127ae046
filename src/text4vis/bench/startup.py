"""`text4vis bench --startup`: how long a fresh process waits for its first result (issue 29).

For each model (the tests' tiny OpenAI-format CLIP and a ViT-B/16-sized one, random weights, written as
OpenAI-layout state dicts to a temporary folder), fresh Python processes run `predict` on a short clip
on the CPU, and each says where its time went, wall and CPU (user + system) seconds:

  python        interpreter start-up, until the measuring code runs (process total minus the stages)
  import        `import text4vis.api` (PyTorch, PyAV, text4vis)
  load          `text4vis.load(clip=FILE)`: the towers from the file, the k400 text classifier (cached
                under TEXT4VIS_CACHE by a first, untimed run, as after any first use)
  first_result  `Recognizer.predict([clip])`: decode, sample, transform, the image tower, scores
  process       the whole process, as its parent sees it (interpreter start to exit)
  cli           a separate process running `text4vis predict --clip FILE CLIP` (the command itself)

Each figure is the median over `runs` processes per model, after one untimed warm-up process. The
child processes also report which heavy modules they imported (`transformers`, `torchvision`, ...).
"""
from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from ..errors import Text4VisError, first_line

HEAVY = ("transformers", "torchvision", "torch._dynamo", "open_clip.model", "timm", "matplotlib", "sklearn",
         "scipy", "sentence_transformers", "onnxruntime", "faiss", "tensorboard")

# The child: stages timed from inside, printed as one JSON line.
_CHILD = r"""
import json, sys, time
w0, c0 = time.perf_counter(), time.process_time()
import text4vis.api as api
w1, c1 = time.perf_counter(), time.process_time()
rec = api.load(clip=sys.argv[1], device="cpu")
w2, c2 = time.perf_counter(), time.process_time()
record = rec.predict([sys.argv[2]])[0]
if "error" in record:
    sys.exit(record["error"])
top = record["top"][0]["label"]
w3, c3 = time.perf_counter(), time.process_time()
print(json.dumps({"import": [w1 - w0, c1 - c0], "load": [w2 - w1, c2 - c1], "first_result": [w3 - w2, c3 - c2],
                  "top": top, "heavy": [m for m in json.loads(sys.argv[3]) if m in sys.modules]}))
"""

# The tests' tiny CLIP (tests/conftest.py TINY) and ViT-B/16 (OpenAI's architecture), OpenAI layout.
MODELS = {
    "tiny": dict(embed_dim=64, vision_cfg=dict(layers=2, width=64, patch_size=8, image_size=32),
                 text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=1, layers=1), quick_gelu=True),
    "ViT-B/16": dict(embed_dim=512, vision_cfg=dict(layers=12, width=768, patch_size=16, image_size=224),
                     text_cfg=dict(context_length=77, vocab_size=49408, width=512, heads=8, layers=12),
                     quick_gelu=True),
}


def write_model(cfg: dict, path: str, half: bool) -> str:
    """A random-weight CLIP of `cfg` saved as an OpenAI-layout state dict (fp16 like OpenAI's files when `half`)."""
    import torch

    from ..towers import build_clip
    torch.manual_seed(0)
    sd = build_clip(cfg).state_dict()
    sd.pop("attn_mask", None)
    torch.save({k: v.half() if half and v.is_floating_point() else v for k, v in sd.items()}, path)
    return path


def _cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _timed(cmd: list[str], env: dict) -> tuple[float, float, str]:
    """(wall s, CPU s, stdout) of one process; an error says which process failed and its last stderr line."""
    w, c = time.perf_counter(), _cpu_children()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    wall, cpu = time.perf_counter() - w, _cpu_children() - c
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise Text4VisError(f"a measured process ({'text4vis predict' if '-m' in cmd else 'import, load, predict'}) "
                            f"failed: {first_line(last, 200)}")
    return wall, cpu, out.stdout


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def bench_startup(video: str | None = None, models=("tiny", "ViT-B/16"), runs: int = 3) -> dict:
    """Start-up figures of `predict` per model (see the module docstring), medians over `runs` processes."""
    from .model import make_test_clip
    result = {"runs": runs, "cpus": os.cpu_count(), "loadavg_before": [round(x, 2) for x in os.getloadavg()],
              "python": sys.version.split()[0], "cases": {}}
    with tempfile.TemporaryDirectory(prefix="text4vis-startup-") as tmp:
        if video is None:
            video = make_test_clip(tmp, seconds=0.2, width=320, height=240)["video"]  # 5 frames, 25 fps
            result["video"] = "generated 0.2 s 320x240 H.264 clip (5 frames)"
        else:
            result["video"] = video
        src = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, TEXT4VIS_CACHE=os.path.join(tmp, "cache"),
                   PYTHONPATH=os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p))
        for name in models:
            path = write_model(MODELS[name], os.path.join(tmp, name.replace("/", "-") + ".pt"), half=name != "tiny")
            child = [sys.executable, "-c", _CHILD, path, video, json.dumps(HEAVY)]
            cli = [sys.executable, "-m", "text4vis", "predict", "--clip", path, "--device", "cpu", "--quiet", video]
            _timed(child, env)  # warm-up: builds the cached text classifier, reads the files once
            stages: dict[str, list[list[float]]] = {}
            last = {}
            for _ in range(runs):
                wall, cpu, out = _timed(child, env)
                last = json.loads(out.strip().splitlines()[-1])
                inner = [last[k] for k in ("import", "load", "first_result")]
                stages.setdefault("python", []).append([wall - sum(s[0] for s in inner), cpu - sum(s[1] for s in inner)])
                for k in ("import", "load", "first_result"):
                    stages.setdefault(k, []).append(last[k])
                stages.setdefault("process", []).append([wall, cpu])
                cw, cc, _ = _timed(cli, env)
                stages.setdefault("cli", []).append([cw, cc])
            case = {}
            for k, values in stages.items():
                case[f"{k}_s"] = _median([v[0] for v in values])
                case[f"{k}_cpu_s"] = _median([v[1] for v in values])
            case["size_mb"] = round(os.path.getsize(path) / 1e6, 1)
            case["heavy_modules"] = last.get("heavy", [])
            result["cases"][name] = case
    result["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    return result


def format_table(result: dict) -> str:
    """The figures as a table: one row per stage, wall / CPU seconds per model."""
    names = list(result["cases"])
    lines = [f"start-up of predict on {result['video']}, CPU, median of {result['runs']} fresh processes; "
             f"{result['cpus']} CPUs, load average {result['loadavg_before'][0]} before, "
             f"{result['loadavg_after'][0]} after",
             f"{'stage':<14}" + "".join(f"{n + ' wall / CPU s':>26}" for n in names)]
    for stage in ("python", "import", "load", "first_result", "process", "cli"):
        cells = "".join(f"{result['cases'][n][f'{stage}_s']:>16.2f} / {result['cases'][n][f'{stage}_cpu_s']:<7.2f}"
                        for n in names)
        lines.append(f"{stage:<14}{cells}")
    for n in names:
        heavy = result["cases"][n]["heavy_modules"]
        lines.append(f"{n}: {result['cases'][n]['size_mb']} MB; heavy modules imported: {', '.join(heavy) or 'none'}")
    return "\n".join(lines)
