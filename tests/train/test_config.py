"""Training configs: our YAML sections, `--set` overrides, and original Text4Vis configs."""
from __future__ import annotations

import pytest
import yaml

from text4vis import cli
from text4vis.errors import ConfigError
from text4vis.train.config import ORIGINAL_KEYS, Config, describe, load_config


def write(tmp_path, obj, name="cfg.yaml") -> str:
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else yaml.safe_dump(obj))
    return str(path)


# ----------------------------------------------------------------------------- values and types

def test_overrides_take_the_field_types():
    cfg, notes = load_config(None, ["optim.lr=1e-3", "optim.eps=1e-6", "optim.warmup_epochs=2", "data.batch_size=16",
                                    "data.input_size=40.0", "data.flip=false", "optim.betas=[0.8, 0.9]",
                                    "data.randaug=[2, 9]", "training.max_steps=null", "data.val_list=",
                                    "data.train_root=2024", "classifier.prompts=['a {}.', 'the {}.']",
                                    "optim.grad_clip=1", "model.pretrain=None"])
    assert notes == []
    assert cfg.optim.lr == 1e-3 and isinstance(cfg.optim.lr, float)          # YAML 1.1 would read "1e-3" as text
    assert cfg.optim.eps == 1e-6 and cfg.optim.warmup_epochs == 2.0 and isinstance(cfg.optim.warmup_epochs, float)
    assert cfg.data.batch_size == 16 and cfg.data.input_size == 40 and isinstance(cfg.data.input_size, int)
    assert cfg.data.flip is False and cfg.optim.betas == [0.8, 0.9] and cfg.data.randaug == [2, 9]
    assert cfg.training.max_steps is None and cfg.data.val_list is None and cfg.model.pretrain is None
    assert cfg.data.train_root == "2024" and cfg.classifier.prompts == ["a {}.", "the {}."]
    assert cfg.optim.grad_clip == 1.0 and isinstance(cfg.optim.grad_clip, float)


def test_yaml_values_take_the_field_types(tmp_path):
    path = write(tmp_path, "optim:\n  lr: 1e-4\n  epochs: 3\ndata:\n  batch_size: 2\n  labels: k400\n")
    cfg, _ = load_config(path)
    assert cfg.optim.lr == 1e-4 and isinstance(cfg.optim.lr, float) and cfg.optim.epochs == 3
    assert cfg.data.labels == "k400" and cfg.data.batch_size == 2


@pytest.mark.parametrize("item,message", [
    ("optim.lr=fast", "optim.lr: expected a number, got 'fast'"),
    ("data.flip=3", "data.flip: expected true or false, got 3"),
    ("data.batch_size=2.5", "data.batch_size: expected an integer, got 2.5"),
    ("data.batch_size=true", "data.batch_size: expected an integer, got True"),
    ("optim.betas=0.9", "optim.betas: expected a list"),
    ("data.num_frames=", "data.num_frames: needs a value"),
    ("data.batchsize=4", "unknown config key 'data.batchsize' (the data section has: train_list"),
    ("solvers.lr=1", "unknown config key 'solvers.lr': keys are SECTION.FIELD"),
    ("data.batch_size", "'data.batch_size': expected KEY=VALUE"),
    ("model.head=lstm", "model.head 'lstm': choose transf or mean"),
    ("data.batch_size=0", "must be at least 1"),
    ("training.print_freq=0", "training.print_freq is 0: it must be at least 1"),
    ("optim.epochs=0", "optim.epochs is 0: it must be at least 1"),
    ("data.shot=0", "data.shot is 0: it must be at least 1"),
    ("data.max_bad_fraction=2", "a fraction between 0 and 1"),
    ("optim.betas=[0.9]", "optim.betas [0.9]: two numbers in [0, 1)"),
    ("data.randaug=[2]", "data.randaug [2]: [N, M]"),
])
def test_bad_overrides_are_config_errors(item, message):
    with pytest.raises(ConfigError) as e:
        load_config(None, [item])
    assert message in str(e.value)


def test_our_yaml_errors_name_the_file(tmp_path):
    for text, message in [("data:\n  batch_sise: 3\n", "unknown config key 'data.batch_sise'"),
                          ("datas:\n  batch_size: 3\n", "unknown section 'datas'"),
                          ("data: 3\n", "section 'data' must be a mapping"),
                          ("optim:\n  lr: [1\n", "not valid YAML"),
                          ("- 1\n- 2\n", "a config is a mapping of sections"),
                          ("optim:\n  lr: quick\n", "optim.lr: expected a number")]:
        path = write(tmp_path, text)
        with pytest.raises(ConfigError) as e:
            load_config(path)
        assert str(e.value).startswith(path) and message in str(e.value), text
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(str(tmp_path / "nope.yaml"))


def test_cli_reports_config_errors_in_one_line(tmp_path, capsys):
    assert cli.main(["train", "--output", str(tmp_path / "r"), "--set", "data.bogus=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("text4vis train: error: unknown config key 'data.bogus'") and "Traceback" not in err
    assert cli.main(["train", "--output", str(tmp_path / "r"), "--set", "optim.lr=1e-3"]) == 2
    assert "data.train_list is not set" in capsys.readouterr().err


def test_describe_lists_every_field():
    text = describe()
    for section, obj in Config().to_dict().items():
        assert f"{section}:" in text
        for key in obj:
            assert f"  {key} " in text, f"{section}.{key}"
    assert "[0.9, 0.999]" in text and "0.98" in text  # our default, and what original configs get


# ----------------------------------------------------------------------------- original Text4Vis configs

ORIGINAL = {
    "resume": None, "pretrain": None, "seed": 7,
    "data": {"dataset": "ucf101", "modality": "RGB", "num_segments": 16, "seg_length": 1, "batch_size": 8,
             "workers": 2, "num_classes": 101, "image_tmpl": "image_{:04d}.jpg", "train_root": "/d/train",
             "train_list": "lists/train.txt", "val_root": "/d/val", "val_list": "lists/val.txt",
             "label_list": "lists/ucf_labels.csv", "input_size": 224, "random_shift": False, "shot": 2,
             "randaug": {"N": 0, "M": 9}},
    "network": {"arch": "ViT-L/14", "init": True, "drop_out": 0.0, "emb_dropout": 0.0, "type": "clip_ucf",
                "sim_header": "None", "drop": 0, "fix_video": True},
    "solver": {"type": "cosine", "epochs": 30, "start_epoch": 0, "optim": "adamw", "lr": "5.e-5",
               "lr_warmup_step": 5, "weight_decay": 0.2, "loss_type": "CE", "evaluate": False, "clip_ratio": 0.1,
               "grad_accumulation_steps": 2},
    "logging": {"print_freq": 10, "eval_freq": 5},
}


def test_original_keys_map(tmp_path):
    cfg, notes = load_config(write(tmp_path, ORIGINAL))
    d, m, o, t = cfg.data, cfg.model, cfg.optim, cfg.training
    assert (d.num_frames, d.batch_size, d.workers, d.image_tmpl) == (16, 8, 2, "image_{:04d}.jpg")
    assert (d.train_root, d.train_list, d.val_root, d.val_list) == ("/d/train", "lists/train.txt", "/d/val",
                                                                   "lists/val.txt")
    assert (d.labels, d.input_size, d.random_shift, d.shot, d.randaug) == ("lists/ucf_labels.csv", 224, False, 2, None)
    assert (m.clip, m.head, m.freeze_visual, m.pretrain) == ("ViT-L/14", "mean", True, None)  # sim_header None: mean
    assert (o.epochs, o.lr, o.warmup_epochs, o.weight_decay, o.clip_ratio, o.grad_accumulation) == \
        (30, 5e-5, 5.0, 0.2, 0.1, 2)
    assert o.betas == [0.9, 0.98]          # the reference code's AdamW betas, for its own configs
    assert load_config(None)[0].optim.betas == [0.9, 0.999]                     # ours otherwise
    assert (t.seed, t.print_freq, t.eval_freq, t.resume) == (7, 10, 5, None)
    assert cfg._num_classes == 101
    # every ignored option present is in exactly one note; here all follow text4vis anyway: one note
    assert len(notes) == 1 and "ignored, as text4vis does the same anyway" in notes[0]
    present = [k for k, v in ORIGINAL_KEYS.items() if v is None and k != "data.num_classes"
               and k.split(".")[1] in ORIGINAL.get(k.split(".")[0], {})]
    assert len(present) == 13
    for key in present:
        assert f"{key}:" in notes[0]


def test_original_something_something_config_does_not_flip(tmp_path):
    """The reference flips SSv2 clips while swapping left/right labels; without the swap, no flip."""
    assert load_config(write(tmp_path, ORIGINAL))[0].data.flip is True
    raw = yaml.safe_load(yaml.safe_dump(ORIGINAL))
    raw["data"]["dataset"] = "somethingv2"
    cfg, notes = load_config(write(tmp_path, raw))
    assert cfg.data.flip is False
    assert any("data.dataset somethingv2: horizontal flip turned off" in n for n in notes)


def test_original_options_asking_for_what_text4vis_does_not_do_are_refused(tmp_path):
    """Issue 24, item 3: an original option with no effect here is accepted only at its neutral value; any
    other value is refused (all of them in one error), never dropped."""
    raw = yaml.safe_load(yaml.safe_dump(ORIGINAL))
    raw["network"].update(tm="tsm", fix_text=False, joint_st=True, init=False, drop_out=0.1, emb_dropout=0.2)
    raw["solver"].update(optim="sgd", loss_type="NCE", type="multistep", evaluate=True)
    raw["data"]["modality"] = "flow"
    path = write(tmp_path, raw)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    lines = str(e.value).splitlines()
    assert lines[0] == "11 problems in the config:"
    assert f"  {path}: network.tm: tsm is not supported here (no temporal shift modules); remove it or set it to False" \
        in lines
    assert f"  {path}: network.drop_out: 0.1 is not supported here (no dropout in text4vis towers); remove it or set " \
           f"it to 0" in lines
    assert f"  {path}: solver.optim: sgd is not supported here (always AdamW); remove it or set it to 'adamw'" in lines
    for key in ("network.joint_st", "network.init", "network.fix_text", "network.emb_dropout", "solver.loss_type",
                "solver.evaluate", "solver.type", "data.modality"):
        assert sum(f"{key}:" in line for line in lines) == 1, key
    # a key text4vis does not know is a note; the neutral values text4vis follows anyway appear once, together
    raw = yaml.safe_load(yaml.safe_dump(ORIGINAL))
    raw["solver"]["momentum"] = 0.9
    _, notes = load_config(write(tmp_path, raw))
    assert f"{path}: solver.momentum is not a Text4Vis option text4vis knows; ignored" in notes
    same = [n for n in notes if "does the same anyway" in n]
    assert len(same) == 1 and "network.drop: 0" in same[0] and "network.drop_out: 0.0" in same[0]


def test_set_num_classes_fixes_an_original_config(tmp_path):
    """Issue 24, item 4: an original config's data.num_classes can be set from the command line."""
    path = write(tmp_path, ORIGINAL)
    assert load_config(path)[0]._num_classes == 101
    cfg, _ = load_config(path, ["data.num_classes=32"])
    assert cfg._num_classes == 32
    with pytest.raises(ConfigError, match="data.num_classes 'many' is not an integer"):
        load_config(path, ["data.num_classes=many"])


def test_original_config_errors_and_overrides(tmp_path):
    raw = yaml.safe_load(yaml.safe_dump(ORIGINAL))
    raw["data"]["seg_length"] = 3
    with pytest.raises(ConfigError, match="data.seg_length 3 is not supported"):
        load_config(write(tmp_path, raw))
    raw["data"]["seg_length"] = 1
    raw["data"]["num_classes"] = "many"
    with pytest.raises(ConfigError, match="data.num_classes 'many' is not an integer"):
        load_config(write(tmp_path, raw))
    path = write(tmp_path, ORIGINAL)
    # our keys and the original ones both work in --set
    cfg, _ = load_config(path, ["data.train_root=/mnt/ucf", "solver.lr=1e-4", "data.num_segments=8",
                                "network.sim_header=Transf", "data.randaug={N: 2, M: 5}"])
    assert (cfg.data.train_root, cfg.optim.lr, cfg.data.num_frames, cfg.model.head, cfg.data.randaug) == \
        ("/mnt/ucf", 1e-4, 8, "transf", [2, 5])
    with pytest.raises(ConfigError, match="network.tm is an original Text4Vis option with no effect here"):
        load_config(path, ["network.tm=tsm"])
    with pytest.raises(ConfigError, match="unknown config key 'data.train_rot'"):
        load_config(path, ["data.train_rot=/x"])
    raw = yaml.safe_load(yaml.safe_dump(ORIGINAL))
    raw["solver"]["lr"] = "fast"
    with pytest.raises(ConfigError, match=r"cfg.yaml: optim.lr: expected a number, got 'fast'"):
        load_config(write(tmp_path, raw))


@pytest.mark.parametrize("override, key", [
    ("optim.lr=nan", "optim.lr"), ("optim.lr=inf", "optim.lr"), ("optim.clip_ratio=-1", "optim.clip_ratio"),
    ("optim.weight_decay=-1", "optim.weight_decay"), ("optim.eps=0", "optim.eps"),
    ("optim.grad_clip=-1", "optim.grad_clip"), ("data.grayscale=5", "data.grayscale"),
    ("training.seed=-1", "training.seed"), ("data.input_size=-8", "data.input_size"),
    ("data.num_frames=100", "data.num_frames"), ("classifier.prompts=[1, 2]", "classifier.prompts"),
    ("classifier.prompts=['no placeholder']", "classifier.prompts"), ("data.randaug=[2, 100]", "data.randaug"),
])
def test_values_that_would_fail_or_mislead_later_are_refused(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, [override])
    assert load_config(None, [override, "model.head=mean"] if key == "data.num_frames" else [])  # mean: any T


def test_mixed_formats_and_undecodable_configs_are_refused(tmp_path):
    mixed = tmp_path / "mixed.yaml"
    mixed.write_text("model:\n  clip: ViT-B/32\noptim:\n  epochs: 2\nsolver:\n  lr: 0.001\n")
    with pytest.raises(ConfigError, match=r"mixed\.yaml: mixes original Text4Vis sections \(solver\) with text4vis "
                                          r"sections \(model, optim\)"):
        load_config(str(mixed))
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    with pytest.raises(ConfigError, match="binary.yaml: not a text file"):
        load_config(str(binary))
    broken = tmp_path / "broken.yaml"
    broken.write_text("data:\n  num_frames: 8\n  randaug: [2, 9\n")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML at line"):
        load_config(str(broken))
