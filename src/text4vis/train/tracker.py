"""An optional experiment tracker beside TensorBoard (`training.tracker`: wandb or mlflow; off by default).

Rank 0 sends it what goes into metrics.jsonl (every number, at its optimiser step) and the resolved config
once. The packages are not dependencies of text4vis: a tracker asked for but not installed is a
ConfigError before training starts.
"""
from __future__ import annotations

import os
from typing import Any

from ..errors import ConfigError

TRACKERS = ("none", "wandb", "mlflow")


def _flat(config: dict) -> dict[str, Any]:
    return {f"{s}.{k}": v for s, values in config.items() if isinstance(values, dict) for k, v in values.items()}


class Tracker:
    """One run of the chosen tracker, named after the run folder."""

    def __init__(self, kind: str, project: str | None, output: str, config: dict):
        self.kind = kind
        name = os.path.basename(os.path.abspath(output))
        try:
            self.lib = __import__(kind)
        except ImportError:
            raise ConfigError(f"training.tracker={kind!r}: the {kind} package is not installed (pip install {kind}), "
                              f"or set training.tracker=none") from None
        if kind == "wandb":
            self.run = self.lib.init(project=project or "text4vis", name=name, config=config, dir=output)
        else:
            self.lib.set_experiment(project or "text4vis")
            self.run = self.lib.start_run(run_name=name)
            self.lib.log_params({k: str(v) for k, v in _flat(config).items()})

    def log(self, record: dict) -> None:
        numbers = {k: float(v) for k, v in record.items()
                   if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}
        if self.kind == "wandb":
            self.run.log(numbers, step=int(record["step"]))
        else:
            self.lib.log_metrics(numbers, step=int(record["step"]))

    def close(self) -> None:
        if self.kind == "wandb":
            self.run.finish()
        else:
            self.lib.end_run()
