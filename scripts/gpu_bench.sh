#!/usr/bin/env bash
# The GPU speed check of the `bench` issue, as one short prepared script for a GPU machine.
#   bash scripts/gpu_bench.sh [OUT_DIR]
# Step "model": `text4vis bench` for ViT-B/32, ViT-B/16 and ViT-L/14 (8 frames, batch 32, infer and train,
# eager and torch.compile), one JSON per run.
# Step "e2e" (issue 27): does decoding keep the GPU fed? `text4vis bench --decode-e2e`: videos/s of the model
# alone, of decode + model with CPU decoding on every core, and with NVDEC (torchcodec on the GPU), on the
# real clips of tests/data/videos, ViT-B/16, 8 frames, batch 32 -> e2e_ViT-B-16.json.
# nvidia-smi output and a summary line per JSON go to OUT_DIR. GPU_BENCH_STEPS="e2e model" (default) picks
# steps, e2e first; the whole script stops within GPU_BENCH_SECONDS (default 450): each run gets what is
# left of it (at most 240 s), and a run that would start with under 20 s left is skipped with one line.
#
# The GPU machine has no network and may lack PyAV, open_clip, torchcodec: this script downloads nothing.
# It installs the wheels in wheels/ when that folder exists; prepare it on a machine with PyPI, for the GPU
# machine's Python (here 3.11, x86_64):
#   pip download --only-binary=:all: --no-deps --python-version 3.11 --platform manylinux_2_28_x86_64 \
#       --platform manylinux2014_x86_64 -d wheels av torchcodec open_clip_torch ftfy regex safetensors wcwidth
# torchcodec needs FFmpeg's shared libraries: where the system has none, the ones inside PyAV's wheel
# (av.libs/) are linked under their plain names into $OUT_DIR/ffmpeg-libs and put on LD_LIBRARY_PATH.
# Without a GPU, NVDEC or torchcodec the e2e step still runs, and says in one line why NVDEC was not measured.
set -uo pipefail
out=${1:-${OUT:-bench-out}}
steps=${GPU_BENCH_STEPS:-e2e model}
budget=${GPU_BENCH_SECONDS:-450}
start=$SECONDS
# run_capped NAME CMD...: CMD with a timeout of what is left of the budget (at most 240 s), stdout to NAME.json
run_capped() {
  local name=$1; shift
  local left=$(( budget - (SECONDS - start) ))
  if (( left < 20 )); then echo "gpu_bench: skipped $name (the ${budget} s budget is spent)"; return; fi
  timeout $(( left < 240 ? left : 240 )) "$@" > "$out/$name.json" 2> "$out/$name.err"
}
e2e_args=${GPU_BENCH_E2E_ARGS:---model ViT-B/16 --frames 8 --batch 32 --iters 8}
py=${PYTHON:-python}
mkdir -p "$out"
if [ -d wheels ] && ls wheels/*.whl >/dev/null 2>&1; then
  "$py" -m pip install --quiet --no-index --find-links wheels wheels/*.whl > "$out/pip.txt" 2>&1 \
    || echo "gpu_bench: some wheels in wheels/ did not install (see $out/pip.txt)"
else
  echo "gpu_bench: no wheels/ folder: using the packages already installed (see this script's header to prepare one)"
fi
# FFmpeg for torchcodec from PyAV's wheel, when the system has no libavcodec
if ! ldconfig -p 2>/dev/null | grep -q "libavcodec.so"; then
  avlibs=$("$py" -c "import av, os; print(os.path.join(os.path.dirname(os.path.dirname(av.__file__)), 'av.libs'))" 2>/dev/null)
  if [ -n "$avlibs" ] && [ -d "$avlibs" ]; then
    mkdir -p "$out/ffmpeg-libs"
    for f in "$avlibs"/lib{avutil,avcodec,avformat,avdevice,avfilter,swscale,swresample}-*.so.*; do
      [ -e "$f" ] || continue
      b=$(basename "$f"); stem=${b%%-*}; major=$(echo "$b" | sed -E 's/.*\.so\.([0-9]+).*/\1/')
      ln -sf "$f" "$out/ffmpeg-libs/$stem.so.$major"
    done
    export LD_LIBRARY_PATH="$(cd "$out/ffmpeg-libs" && pwd):$avlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
fi
export PYTHONPATH=src HF_HUB_OFFLINE=1
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || true
"$py" -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name())" > "$out/torch.txt" 2>&1
if [[ " $steps " == *" e2e "* ]]; then
  tag=$(echo "$e2e_args" | sed -E 's/.*--model ([^ ]+).*/\1/; s#/#-#g')
  # shellcheck disable=SC2086
  run_capped "e2e_${tag}" "$py" -m text4vis bench --decode-e2e $e2e_args --json
fi
if [[ " $steps " == *" model "* ]]; then
  for model in ViT-B/32 ViT-B/16 ViT-L/14; do
    tag=${model//\//-}
    for mode in infer train; do
      run_capped "${tag}_${mode}" "$py" -m text4vis bench --model "$model" --frames 8 --batch 32 --mode "$mode" --json
    done
    run_capped "${tag}_infer_compile" "$py" -m text4vis bench --model "$model" --frames 8 --batch 32 --mode infer \
      --compile --json
  done
fi
"$py" - "$out" <<'PY'
import glob, json, os, sys
for f in sorted(glob.glob(os.path.join(sys.argv[1], "*.json"))):
    try:
        r = json.load(open(f))
    except Exception:
        print(os.path.basename(f), "no result"); continue
    if "not_measured" in r and "model_alone" in r.get("cases", {}):  # the e2e step
        cases = "  ".join(f"{k}={v['videos_per_s']:.0f} vid/s" + (f" (fed {v['fed']:.2f})" if "fed" in v else "")
                          for k, v in r["cases"].items())
        why = "".join(f"  {k}: n/a ({v})" for k, v in r["not_measured"].items())
        print(os.path.basename(f), r["device"], cases + why)
        continue
    cases = "  ".join(f"{k}={v['videos_per_s']:.0f} vid/s (x{v['ratio_vs_reference']:.2f})" for k, v in r["cases"].items())
    print(os.path.basename(f), r["device"], cases)
PY
