#!/usr/bin/env bash
# The GPU speed check of the `bench` issue, as one short prepared script for a GPU machine.
#   bash scripts/gpu_bench.sh [OUT_DIR]
# Runs `text4vis bench` for ViT-B/32, ViT-B/16 and ViT-L/14 (8 frames, batch 32, infer and train,
# eager and torch.compile) and writes one JSON per run plus nvidia-smi output to OUT_DIR.
# The GPU machine may lack some Python packages: put their wheels in wheels/ (e.g. on a machine with
# PyPI: `pip download --no-deps -d wheels open_clip_torch ftfy regex av safetensors`).
set -uo pipefail
out=${1:-${OUT:-bench-out}}
mkdir -p "$out"
if [ -d wheels ]; then python -m pip install --quiet --no-index --find-links wheels wheels/*.whl || true; fi
export PYTHONPATH=src HF_HUB_OFFLINE=1
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || true
python -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name())" > "$out/torch.txt" 2>&1
for model in ViT-B/32 ViT-B/16 ViT-L/14; do
  tag=${model//\//-}
  for mode in infer train; do
    timeout 240 python -m text4vis bench --model "$model" --frames 8 --batch 32 --mode "$mode" --json \
      > "$out/${tag}_${mode}.json" 2> "$out/${tag}_${mode}.err"
  done
  timeout 240 python -m text4vis bench --model "$model" --frames 8 --batch 32 --mode infer --compile --json \
    > "$out/${tag}_infer_compile.json" 2> "$out/${tag}_infer_compile.err"
done
python - "$out" <<'PY'
import glob, json, os, sys
for f in sorted(glob.glob(os.path.join(sys.argv[1], "*.json"))):
    try:
        r = json.load(open(f))
    except Exception:
        print(f, "no result"); continue
    cases = "  ".join(f"{k}={v['videos_per_s']:.0f} vid/s (x{v['ratio_vs_reference']:.2f})" for k, v in r["cases"].items())
    print(os.path.basename(f), r["device"], cases)
PY
