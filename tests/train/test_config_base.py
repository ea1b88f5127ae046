"""Config inheritance (issue 24, item 12): `base: other.yaml`, values overridden by the file, then by --set."""
from __future__ import annotations

import pytest

from text4vis.errors import ConfigError
from text4vis.train.config import load_config


def test_base_values_are_overridden_by_the_file_then_by_set(tmp_path):
    (tmp_path / "common").mkdir()
    (tmp_path / "common" / "root.yaml").write_text("data:\n  batch_size: 8\n  num_frames: 16\noptim:\n  lr: 1.0e-4\n")
    (tmp_path / "common" / "k400.yaml").write_text("base: root.yaml\ndata:\n  num_frames: 8\n  labels: k400\n")
    child = tmp_path / "exp.yaml"
    child.write_text("base: common/k400.yaml\noptim:\n  lr: 2.0e-4\n")
    cfg, _ = load_config(str(child))
    assert (cfg.data.batch_size, cfg.data.num_frames, cfg.data.labels, cfg.optim.lr) == (8, 8, "k400", 2e-4)
    cfg, _ = load_config(str(child), ["optim.lr=3e-4", "data.batch_size=4"])
    assert (cfg.optim.lr, cfg.data.batch_size, cfg.data.num_frames) == (3e-4, 4, 8)


def test_base_problems_are_named(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("base: b.yaml\n")
    b.write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="base: a.yaml makes a loop"):
        load_config(str(a))
    a.write_text("base: missing.yaml\n")
    with pytest.raises(ConfigError, match="missing.yaml: config file not found"):
        load_config(str(a))
    b.write_text("solver:\n  lr: 1.0e-5\n")
    a.write_text("base: b.yaml\n")
    with pytest.raises(ConfigError, match="an original Text4Vis config cannot have or be a base"):
        load_config(str(a))
    a.write_text("base: b.yaml\ndata:\n  batch_sise: 3\n")
    b.write_text("data:\n  batch_size: 2\n")
    with pytest.raises(ConfigError, match="did you mean 'data.batch_size'"):
        load_config(str(a))
