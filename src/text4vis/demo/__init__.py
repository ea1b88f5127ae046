"""`text4vis demo` (`make demo`): the offline end-to-end demo at toy scale.

By role: run.py (the demo itself: data, pretraining, the transfer arms, `run_demo`), pretrain.py (the
image-text pretraining the paper's CLIP stands for, cached), report.py (tables, figures, claims, report.md).
The synthetic data it runs on is the library's (`text4vis.synthetic`, also `text4vis synth`).
"""
