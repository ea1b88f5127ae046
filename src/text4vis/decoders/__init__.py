"""Decoding backends beside text4vis's own PyAV reader (`video.py`), and their benchmark.

    readers.py  the readers behind one call (frames for frame indices): text4vis's PyAV reader, its
                seeking variant, PyAV decoding every frame, torchcodec, decord, OpenCV
    choose.py   `decoder=` (auto|pyav|...): which reader a read uses
    gpu.py      NVDEC through torchcodec's CUDA device, with a one-line CPU fallback
    bench.py    `text4vis bench --decode`: clips/s per core, frames decoded and agreement per pattern
    e2e.py      `text4vis bench --decode-e2e`: decode + model against the model alone (CPU workers, NVDEC)
"""
