"""`text4vis bench`: speed and memory, measured in one run as ratios (the products' own benchmarks live
with them: index/bench.py, serve/bench.py, watch/bench.py, decoders/bench.py).

    model.py    the model (text4vis against the reference computation) and the data loaders
    startup.py  `--startup`: import, model load and first result of fresh `predict` processes
    towers.py   `--towers`: image and text tower throughput of one backbone
"""
