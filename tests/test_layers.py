"""The library below, the CLI above (issue 11): parameter names in library messages and flags on the command
line, the one atomic writer (and the file mode it gives), the run folder's metrics, the one classifier builder
and reader, the one checkpoint loader, and the batched text classifier. Tiny random-weight towers; a few seconds."""
from __future__ import annotations

import os
import stat

import pytest
import torch

import text4vis
from text4vis import checkpoints, classifiers, files
from text4vis.train import runs
from text4vis.cli import build_parser
from text4vis.cli.common import flag_names, with_flags
from text4vis.errors import DeviceError, Text4VisError, UsageError, check_numbers
from text4vis.towers import load_towers


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


# ----------------------------------------------------------------------------- messages: parameters below, flags above

def test_library_messages_name_parameters_and_the_cli_maps_them_to_flags():
    with pytest.raises(DeviceError) as e:
        text4vis.load(device="gpu")
    msg = str(e.value)
    assert msg.startswith("device='gpu': not a device name") and "--" not in msg
    parser = build_parser()
    args = parser.parse_args(["predict", "x.mp4"])
    names = flag_names(parser, args)
    assert names["device"] == "--device" and names["batch_size"] == "--batch-size"
    assert with_flags(msg, names).startswith("--device gpu: not a device name")
    # quoted values lose their quotes, store_true values vanish, dotted config keys and unknown names stay
    assert with_flags("pass clip='/p/a b.pt' or views=4x3", names) == "pass --clip /p/a b.pt or --views 4x3"
    assert with_flags("data.batch_size=16 and foo=3", names) == "data.batch_size=16 and foo=3"
    train = parser.parse_args(["train"])
    tnames = flag_names(parser, train)
    assert with_flags("continue it with training.resume='auto'", tnames) == "continue it with --resume auto"
    assert with_flags("overrides='x': expected KEY=VALUE", tnames) == "--set x: expected KEY=VALUE"
    ev = parser.parse_args(["eval"])
    assert with_flags("zero_shot=True: needs 2 classes", flag_names(parser, ev)) == "--zero-shot: needs 2 classes"
    build = parser.parse_args(["classifier", "build", "--type", "text", "--out", "x"])
    assert flag_names(parser, build)["lm"] == "--lm"                      # a sub-sub-command's own options


def test_check_numbers_names_parameters_or_flags():
    check_numbers(("batch_size", None, 1), ("workers", 0, 0), ("frames", 77, 1, 77))
    with pytest.raises(UsageError, match=r"^batch_size= must be at least 1 \(got 0\)$"):
        check_numbers(("batch_size", 0, 1))
    with pytest.raises(UsageError, match=r"^--frames must be at most 77 \(got 78\)$"):
        check_numbers(("--frames", 78, 1, 77))
    with pytest.raises(UsageError, match="at least"):
        check_numbers(("x", float("nan"), 0))


def test_output_checks_are_output_errors(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(text4vis.errors.OutputError, match=r"^out='.*afile': exists and is not a folder$"):
        files.check_output(str(afile), "out", folder=True)
    with pytest.raises(Text4VisError, match="is a folder; give a file name"):
        files.check_output(str(tmp_path), "out")


# ----------------------------------------------------------------------------- the atomic writer

def test_written_files_get_the_umask_mode(tmp_path, tiny_dir, umask_022):
    """Checkpoints, classifier files, config.yaml and list files are 0644 under umask 022 (safetensors alone
    writes 0600: a team could not read them)."""
    cls = classifiers.random_classifier(["a", "b"], 64, seed=0)
    classifiers.save_classifier(cls, str(tmp_path / "cls.safetensors"))
    rec = text4vis.load(clip=str(tiny_dir / "openai_sd.pt"), labels=["a", "b"], device="cpu")
    checkpoints.save_checkpoint(str(tmp_path / "ckpt.safetensors"), rec.model, rec.towers, labels=rec.labels,
                                classifier_meta=rec.classifier_meta, settings={"num_frames": 8})
    runs.start_folder(str(tmp_path / "run"), {"data": {"batch_size": 2}}, ["a note"], None)
    from text4vis.datasets import write_list_atomic
    write_list_atomic(str(tmp_path / "list.txt"), ["a.mp4 0\n"])
    for name in ("cls.safetensors", "ckpt.safetensors", "run/config.yaml", "run/config_notes.txt", "list.txt"):
        assert mode(tmp_path / name) == 0o644, name
    assert text4vis.load(checkpoint=str(tmp_path / "ckpt.safetensors"), device="cpu").labels == ["a", "b"]
    os.umask(0o077)
    classifiers.save_classifier(cls, str(tmp_path / "private.safetensors"))
    assert mode(tmp_path / "private.safetensors") == 0o600          # the umask decides, not the writer


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "f.txt"
    files.atomic_write_text(str(path), "old\n")

    def broken(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise RuntimeError("killed")
    with pytest.raises(RuntimeError):
        files.atomic_write(str(path), broken)
    assert path.read_text() == "old\n" and os.listdir(tmp_path) == ["f.txt"]


# ----------------------------------------------------------------------------- the run folder's metrics

def test_metrics_read_strictly_or_leniently_and_trim(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.0}\n[1]\n{"step": 2, "loss": 1.5}\n{"step": 3, "lo')
    with pytest.raises(runs.FolderError, match="line 2 is not a JSON object"):
        runs.read_metrics(str(path))
    assert [r["step"] for r in runs.read_metrics(str(path), strict=False)] == [1, 2]   # torn last line dropped
    runs.trim_metrics(str(path), 1)
    assert path.read_text() == '{"step": 1, "loss": 2.0}\n'
    assert issubclass(runs.FolderError, Text4VisError)


def test_run_folder_refuses_a_second_run(tmp_path):
    (tmp_path / runs.CHECKPOINT_LAST).write_bytes(b"x")
    with pytest.raises(text4vis.errors.OutputError, match="training.resume='auto'"):
        runs.check_run_folder(str(tmp_path), None)
    runs.check_run_folder(str(tmp_path), "auto")
    assert runs.resume_path(str(tmp_path), "auto") == str(tmp_path / runs.CHECKPOINT_LAST)
    assert runs.resume_path(str(tmp_path / "new"), "auto") is None


# ----------------------------------------------------------------------------- classifiers and checkpoints

def test_text_classifier_batches_classes_like_the_per_class_loop(tiny_dir):
    towers = load_towers(str(tiny_dir / "openai_sd.pt"))
    names = [f"class {i}" for i in range(7)]
    prompts = ["a video of a person {}.", "a video of {}.", "{}"]
    got = classifiers.text_classifier(towers, names, prompts, cache=False).weight
    rows = [towers.encode_text([p.format(n) for p in prompts]).mean(0) for n in names]   # one class at a time
    want = classifiers.normalize_rows(torch.stack(rows))
    assert got.shape == (7, 64)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


def test_one_builder_for_every_kind(tiny_dir):
    towers = load_towers(str(tiny_dir / "openai_sd.pt"))
    names = ["a", "b", "c"]
    text = classifiers.build_classifier("text", names, towers=towers)
    assert text.meta["type"] == "text" and text.weight.shape == (3, 64)
    orth = classifiers.build_classifier("orthogonal", names, towers=towers, seed=1)
    assert torch.equal(orth.weight, classifiers.orthogonal_classifier(names, 64, 1).weight)
    lin = classifiers.build_classifier("linear", names, dim=8, seed=2)
    assert lin.meta["type"] == "linear" and torch.equal(lin.weight, classifiers.random_classifier(names, 8, 2).weight)
    assert classifiers.build_classifier("random", names).dim == 512
    with pytest.raises(classifiers.ClassifierError, match="towers="):
        classifiers.build_classifier("text", names)
    with pytest.raises(classifiers.ClassifierError, match="unknown"):
        classifiers.build_classifier("lstm", names)


def test_one_loader_for_every_checkpoint_and_its_classifier(tiny_dir, tmp_path):
    zero = checkpoints.load_video_model(None, str(tiny_dir / "openai_sd.pt"))
    assert zero.labels is None and zero.model.head_type == "mean" and zero.towers is not None
    orig = checkpoints.load_video_model(str(tiny_dir / "text4vis_orig_transf.pt"), str(tiny_dir / "openai_sd.pt"))
    assert orig.model.head_type == "transf" and orig.labels is None
    rec = text4vis.load(checkpoint=str(tiny_dir / "text4vis_orig_transf.pt"), clip=str(tiny_dir / "openai_sd.pt"),
                        labels=["x", "y"], device="cpu")
    path = str(tmp_path / "own.safetensors")
    checkpoints.save_checkpoint(path, rec.model, rec.towers, labels=rec.labels, classifier_meta=rec.classifier_meta,
                                settings={"num_frames": 4, "input_size": 32})
    own = checkpoints.load_video_model(path)
    assert own.labels == ["x", "y"] and own.num_frames == 4 and own.image_size == 32
    torch.testing.assert_close(own.model.classifier, rec.model.classifier.cpu())
    read = classifiers.classifier_from(path)
    assert read.labels == ["x", "y"]
    torch.testing.assert_close(read.weight, classifiers.normalize_rows(rec.model.classifier.cpu()))
    with pytest.raises(text4vis.towers.WeightsError, match="no such checkpoint file"):
        checkpoints.load_video_model(str(tmp_path / "missing.pt"))


def test_old_style_flag_names_still_read_well(tmp_path):
    """A CLI handler may still pass its flag (`files.check_output(args.out, "--out")`): the message is then
    written as before, `--out PATH: ...`."""
    from text4vis.labels import LabelsError, load_labels
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(Text4VisError, match=rf"^--out {afile}: exists and is not a folder$"):
        files.check_output(str(afile), "--out", folder=True)
    with pytest.raises(LabelsError, match=r"^--splits nope: not a built-in label set"):
        load_labels("nope", "--splits")
    with pytest.raises(LabelsError, match=r"^labels='nope': not a built-in label set"):
        load_labels("nope")


def test_the_command_line_parser_loads_no_torch():
    """`text4vis --help` stays fast: the parser and the error family import neither torch nor open_clip."""
    import subprocess
    import sys
    code = ("import sys, text4vis.cli, text4vis.errors; text4vis.cli.build_parser(); "
            "print(sorted(m for m in ('torch', 'open_clip', 'av', 'numpy') if m in sys.modules))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
