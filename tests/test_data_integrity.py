"""Data-side integrity (issue 12): no silent wrong numbers from degenerate classifiers, over-long
prompts, misread label files, not-videos decoded as videos, wrong frame counts in lists, and the
reference recipes' versions (augmentations, short-entry filtering)."""
from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from conftest import run_cli, tiny_openai_state_dict
from text4vis import classifiers as C
from text4vis.errors import ClassifierError


@pytest.fixture(scope="module")
def towers(tmp_path_factory):
    from text4vis.towers import load_towers
    path = tmp_path_factory.mktemp("towers") / "tiny_clip.pt"
    torch.save(tiny_openai_state_dict(0), path)
    return load_towers(str(path))


# ----------------------------------------------------------------------------- 7: degenerate classifiers

NAMES4 = ["circle left", "circle right", "square left", "square right"]


def test_lda_of_identical_videos_is_refused_with_the_reason():
    """Two copies of one video per class: no within-class spread, LDA's rows come out all zeros."""
    x = np.random.default_rng(0).normal(size=(4, 64)).repeat(2, axis=0)
    y = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    with pytest.raises(ClassifierError) as e:
        C.lda_classifier(x, y, NAMES4)
    msg = str(e.value)
    assert "4 class(es)" in msg and "all zeros" in msg and "'circle left'" in msg
    assert "distinct videos" in msg and "at least 2" in msg


def test_lda_with_one_video_per_class_says_how_many_are_needed():
    x = np.random.default_rng(0).normal(size=(5, 16))
    y = np.array([0, 0, 1, 2, 3])
    with pytest.raises(ClassifierError) as e:
        C.lda_classifier(x, y, NAMES4)
    msg = str(e.value)
    assert "at least 2 videos of every class" in msg and "3 class(es) have 1" in msg and "'circle right'" in msg


def test_duplicate_rows_are_refused(towers):
    """CLIP's tokenizer lowercases: 'Run' and 'run' give one row twice, two classes never told apart."""
    with pytest.raises(ClassifierError) as e:
        C.text_classifier(towers, ["Run", "jump", "run"], cache=False)
    msg = str(e.value)
    assert "'Run'" in msg and "'run'" in msg and "identical rows" in msg


def test_zero_row_in_a_stored_file_is_refused(tmp_path):
    path = str(tmp_path / "zeros.safetensors")
    w = C.random_classifier(NAMES4, 8).weight.clone()
    w[2] = 0
    save_file({"weight": w}, path, metadata={"text4vis_classifier": '{"type": "lda", "labels": '
                                             + str(NAMES4).replace("'", '"') + "}"})
    with pytest.raises(ClassifierError) as e:
        C.load_classifier(path)
    assert path in str(e.value) and "'square left'" in str(e.value) and "all zeros" in str(e.value)


def test_predict_ties_go_to_the_lower_class_id(monkeypatch, tmp_path):
    """README: ties in top-k are broken in favour of the lower class id (predict as metrics do)."""
    import text4vis
    from conftest import write_video
    clip_path = str(tmp_path / "tiny.pt")
    torch.save(tiny_openai_state_dict(0), clip_path)
    video = str(tmp_path / "v.mp4")
    write_video(video, np.random.default_rng(0).integers(0, 255, (6, 32, 32, 3), dtype=np.uint8))
    rec = text4vis.load(clip=clip_path, labels=NAMES4, frames=2, device="cpu")
    monkeypatch.setattr(text4vis.api.engine, "scores_from_embeddings",
                        lambda emb, cls: torch.full((emb.shape[0], 4), 0.25))
    record = rec.predict([video], topk=4, workers=0)[0]
    assert [t["label"] for t in record["top"]] == NAMES4


# ----------------------------------------------------------------------------- 10: prompts over the context

LONG = "very " * 80


def test_prompt_longer_than_the_context_is_an_error(towers):
    with pytest.raises(ClassifierError) as e:
        C.text_classifier(towers, [LONG + "slow running", "jumping"], cache=False)
    msg = str(e.value)
    assert "'a video of a person very very" in msg and "slow running.'" in msg
    assert "a prompt of 90 tokens" in msg and "context of 77" in msg
    assert towers.tokenize(["a video of a person jumping."]).shape == (1, 77)   # short ones as before
    exactly = "a " * 75   # 75 words + start + end = 77 tokens: fits exactly
    assert towers.tokenize([exactly]).shape == (1, 77)
    with pytest.raises(ClassifierError, match="78 tokens"):
        towers.tokenize([exactly + "a"])


def test_cli_long_label_names_the_prompt(tmp_path):
    clip = str(tmp_path / "tiny.pt")
    torch.save(tiny_openai_state_dict(0), clip)
    labels = tmp_path / "long.csv"
    labels.write_text(f"id,name\n0,{LONG}slow running\n1,{LONG}fast jumping\n")
    rc, _, err = run_cli(["classifier", "build", "--type", "text", "--clip", clip, "--labels", str(labels),
                          "--out", str(tmp_path / "c.safetensors")])
    assert rc == 2 and "Traceback" not in err and "90 tokens" in err and "slow running.'" in err
    assert not (tmp_path / "c.safetensors").exists()


# ----------------------------------------------------------------------------- 11: label files

from text4vis.labels import LabelsError, load_labels  # noqa: E402


@pytest.mark.parametrize("name, text, want", [
    ("ids.csv", "id,name\n0,run\n1,jump\n", ["run", "jump"]),
    ("ids_spaces.csv", "ID, Name\r\n1,jump\r\n0,run\r\n", ["run", "jump"]),
    ("quoted.csv", 'id,name\n0,"run, fast"\n1,jump\n', ["run, fast", "jump"]),
    ("one_column.csv", "name\nrun\njump\n", ["run", "jump"]),
    ("one_column_quoted.csv", 'name\n"run, fast"\njump\n', ["run, fast", "jump"]),
    ("plain.txt", "run\n\njump, then land\n", ["run", "jump, then land"]),      # SSv2 names hold commas
    ("plain_header.txt", "id,name\n0,run\n1,jump\n", ["run", "jump"]),
    ("plain.csv", "run\njump\n", ["run", "jump"]),                                  # one name per line
])
def test_documented_label_layouts(tmp_path, name, text, want):
    path = tmp_path / name
    path.write_text(text)
    assert load_labels(str(path)) == want


@pytest.mark.parametrize("name, text, words", [
    ("three.csv", "id,name\n0,foo,bar\n1,baz\n", ["three.csv:2", "3 columns", "'0,foo,bar'"]),
    ("no_header.csv", "foo,bar,baz\nqux,quux,corge\n", ["no_header.csv:1", "header", "'foo,bar,baz'"]),
    ("two_in_one.csv", "name\nrun\njump,fast\n", ["two_in_one.csv:3", "2 columns", "'jump,fast'"]),
    ("wide_header.csv", "id,name,extra\n0,foo,bar\n", ["wide_header.csv:1", "header", "'id,name,extra'"]),
])
def test_other_label_layouts_are_refused_with_the_line(tmp_path, name, text, words):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(LabelsError) as e:
        load_labels(str(path))
    for w in words:
        assert w in str(e.value), str(e.value)


def test_builtin_label_sets_still_read():
    for spec, n in (("k400", 400), ("ucf101", 101), ("hmdb51", 51), ("anet", 200), ("ssv2", 174), ("k600", 600)):
        assert len(load_labels(spec)) == n
    assert "Laying something on the table on its side, not upright" in load_labels("ssv2")


# ----------------------------------------------------------------------------- 12: not videos

from text4vis.errors import VideoError  # noqa: E402
from text4vis.video import count_frames, read_frames  # noqa: E402

ANSI_ART = "\x1b[1;31m\x1b[40m hello \x1b[0m\n" * 20


@pytest.fixture()
def not_videos(tmp_path):
    from PIL import Image
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8))
    img.save(tmp_path / "still.png")
    img.save(tmp_path / "still.jpg")
    (tmp_path / "still_png.mp4").write_bytes((tmp_path / "still.png").read_bytes())
    (tmp_path / "art.ans").write_text(ANSI_ART)
    (tmp_path / "readme.nfo").write_text(ANSI_ART)
    return tmp_path


@pytest.mark.parametrize("name, words", [
    ("art.ans", ["text or data rendered as pictures", "'tty'"]),
    ("readme.nfo", ["text or data rendered as pictures", "'tty'"]),
    ("still.png", ["a still image", "'png_pipe'", "not a video"]),
    ("still_png.mp4", ["a still image", "'png_pipe'", "not a video"]),
    ("still.jpg", ["a still image", "'image2'", "not a video"]),
])
def test_not_videos_are_refused(not_videos, name, words):
    path = str(not_videos / name)
    for read in (lambda: read_frames(path, lambda n: [0] * 4), lambda: count_frames(path)):
        with pytest.raises(VideoError) as e:
            read()
        assert str(e.value).startswith(path + ": ") and "\n" not in str(e.value)
        for w in words:
            assert w in str(e.value)


def test_real_gif_and_one_frame_video_still_decode(tmp_path):
    from conftest import SHARED_VIDEOS, write_video
    frames, n = read_frames(f"{SHARED_VIDEOS}/cricket_shot_ucf101.gif", lambda n: [0, n - 1])
    assert n == 79 and frames.shape[0] == 2
    one = str(tmp_path / "one.mp4")
    write_video(one, np.zeros((1, 32, 32, 3), np.uint8))
    assert read_frames(one, lambda n: [0, 0])[1] == 1


def test_cli_predict_reports_each_not_video(not_videos):
    clip = str(not_videos / "tiny.pt")
    torch.save(tiny_openai_state_dict(0), clip)
    inputs = [str(not_videos / n) for n in ("art.ans", "still.png", "still_png.mp4")]
    rc, out, err = run_cli(["predict", *inputs, "--clip", clip, "--labels", "k400", "--frames", "2", "--json",
                            "--workers", "0"])
    import json
    records = [json.loads(line) for line in out.splitlines()]
    assert rc == 1 and [r["video"] for r in records] == inputs and all("error" in r for r in records)


# ----------------------------------------------------------------------------- 13: frame counts of frame folders

import warnings  # noqa: E402

from text4vis.datasets import read_list  # noqa: E402
from text4vis.video import read_frame_folder  # noqa: E402

BRACKETS = "Brushing_Her_Hair__[_NEW_AUDIO_]_UPDATED!!!!_brush_hair_h_cm_np1_le_goo_1"  # from hmdb_full_for_zeroshot.txt


def frame_folder(path, n):
    from PIL import Image
    from conftest import index_frames
    path.mkdir(parents=True)
    for i, f in enumerate(index_frames(n, 32, 32)):
        Image.fromarray(f).save(path / f"img_{i + 1:05d}.jpg", quality=95)
    (path / "notes.txt").write_text("not a frame")  # other files in the folder do not count
    return str(path)


def test_folder_count_wins_over_the_list(tmp_path):
    from conftest import decode_index
    d = frame_folder(tmp_path / "brush_hair" / BRACKETS, 12)
    for listed in (0, 5, 20):  # the list says 0, fewer, more: the folder's 12 frames are sampled
        frames, n = read_frame_folder(d, lambda n: [0, n // 2, n - 1], listed)
        assert n == 12 and [decode_index(f) for f in frames] == [0, 6, 11]
    star = frame_folder(tmp_path / "glob" / "a*b?[c]", 3)  # every glob character is just a letter
    assert read_frame_folder(star, lambda n: [n - 1], 0)[1] == 3
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoError, match="no frames named like 'img_00001.jpg'"):
        read_frame_folder(str(tmp_path / "empty"), lambda n: [0], 4)


def test_list_of_zero_counts_warns_once_with_the_number(tmp_path):
    lines = [f"brush_hair/{BRACKETS} 0 0", "brush_hair/plain 12 0",
             "fencing/Die_Another_Day_-_Fencing_Scene_Part_1_[HD]_0 0 1", "fencing/plain 10 1"]
    lst = tmp_path / "zs.txt"
    lst.write_text("\n".join(lines) + "\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        samples = read_list(str(lst), str(tmp_path))
    msgs = [str(w.message) for w in caught]
    assert len(msgs) == 1, msgs
    assert msgs[0].startswith(f"{lst}: 2 entries say 0 frames") and f"{lst}:1" in msgs[0] and "counted" in msgs[0]
    assert [s.num_frames for s in samples] == [0, 12, 0, 10]


def test_cli_eval_scores_the_zero_count_entries(tmp_path):
    """The HMDB51 zero-shot case end to end: every entry is scored, one warning line says how many were counted."""
    import yaml
    from conftest import original_text4vis_checkpoint
    root = tmp_path / "frames"
    entries = [(f"brush_hair/{BRACKETS}", 0, 0, 12), ("brush_hair/plain", 12, 0, 12),
               ("fencing/Die_Another_Day_-_Fencing_Scene_Part_1_[HD]_fencing_0", 0, 1, 10), ("fencing/plain", 10, 1, 10)]
    for path, _, _, real in entries:
        frame_folder(root / path, real)
    (tmp_path / "zs.txt").write_text("".join(f"{p} {n} {lab}\n" for p, n, lab, _ in entries))
    (tmp_path / "labels.csv").write_text("id,name\n0,brush hair\n1,fencing\n")
    sd = tiny_openai_state_dict(0)
    torch.save(sd, tmp_path / "clip.pt")
    torch.save(original_text4vis_checkpoint(sd, "mean"), tmp_path / "ckpt.pt")
    cfg = {"data": {"val_list": str(tmp_path / "zs.txt"), "val_root": str(root), "labels": str(tmp_path / "labels.csv"),
                    "num_frames": 4, "workers": 0}, "model": {"clip": str(tmp_path / "clip.pt"), "head": "mean"}}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    rc, out, err = run_cli(["eval", "--config", str(tmp_path / "cfg.yaml"), "--checkpoint", str(tmp_path / "ckpt.pt"),
                            "--clip", str(tmp_path / "clip.pt")])
    assert rc == 0, err
    assert "4 videos, 2 classes" in out + err and "failed" not in out
    warned = [line for line in err.splitlines() if "warning:" in line]
    assert len(warned) == 1 and "2 entries say 0 frames" in warned[0], err


# ----------------------------------------------------------------------------- 16: the reference drops short training entries

import glob  # noqa: E402
import os  # noqa: E402

from text4vis.train.config import load_config  # noqa: E402

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


@pytest.fixture(scope="module")
def short_and_long(tmp_path_factory):
    """2 classes x 6 frame folders: 3 of 10 frames and 3 of 4 frames each (the list says so too)."""
    d = tmp_path_factory.mktemp("short")
    lines = []
    for label in (0, 1):
        for i, n in enumerate((10, 4, 10, 4, 10, 4)):
            frame_folder(d / "frames" / f"c{label}_{i}", n)
            lines.append(f"c{label}_{i} {n} {label}\n")
    (d / "train.txt").write_text("".join(lines))
    (d / "labels.csv").write_text("id,name\n0,run\n1,jump\n")
    clip = d / "clip.pt"
    torch.save(tiny_openai_state_dict(0), clip)
    return d


def few_shot_run(d, out, *extra) -> tuple[str, list[str]]:
    from text4vis.train import train
    items = [f"model.clip={d / 'clip.pt'}", f"data.train_list={d / 'train.txt'}", f"data.train_root={d / 'frames'}",
             f"data.labels={d / 'labels.csv'}", "data.num_frames=2", "data.batch_size=2", "data.workers=0",
             "data.shot=1", "optim.epochs=1", "training.max_steps=1", "training.eval_freq=0", "model.head=mean",
             *extra]
    cfg, notes = load_config(None, items)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        train(cfg, str(out), notes, progress=False)
    return err.getvalue(), open(out / "fewshot_videos.txt").read().split("\n")[:-1]


def test_min_frames_drops_short_entries_and_few_shot_repeats_follow(short_and_long, tmp_path):
    log, chosen = few_shot_run(short_and_long, tmp_path / "all")
    assert "2 videos (1 per class), repeated 6x per epoch" in log, log       # 12 entries // 2
    log, chosen = few_shot_run(short_and_long, tmp_path / "min8", "data.min_frames=8")
    assert "2 videos (1 per class), repeated 3x per epoch" in log, log       # 6 entries of >= 8 frames // 2
    assert "data.min_frames 8: 6 of 12 training entries dropped" in log
    assert len(chosen) == 2 and all(line.split()[1] == "10" for line in chosen)


def test_min_frames_all_dropped_is_an_error(short_and_long, tmp_path):
    from text4vis.errors import DataError
    with pytest.raises(DataError, match="every entry .* has fewer than 11 frames"):
        few_shot_run(short_and_long, tmp_path / "none", "data.min_frames=11")


def test_original_configs_and_recipes_drop_short_entries(tmp_path):
    import yaml
    orig = tmp_path / "orig.yaml"
    orig.write_text(yaml.safe_dump({"data": {"num_segments": 8, "train_list": "x.txt"},
                                    "network": {"arch": "ViT-B/16"}, "solver": {"lr": 5e-5}}))
    cfg, _ = load_config(str(orig))
    assert cfg.data.min_frames == 8
    assert load_config(None)[0].data.min_frames == 0            # text4vis's default keeps every entry
    recipes = [p for p in sorted(glob.glob(os.path.join(CONFIGS, "*.yaml"))) if load_config(p)[0].data.train_list]
    assert len(recipes) == 19                                   # every training recipe (the 4 zero-shot ones only evaluate)
    for path in recipes:
        assert load_config(path)[0].data.min_frames == 8, path


# ----------------------------------------------------------------------------- 15: the published logs' blur and solarization

from text4vis.transforms import TrainTransform  # noqa: E402


def clip_of(seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (3, 3, 40, 48), dtype=np.uint8))


def test_solarization_inverts_pixels_at_or_above_128_in_every_frame():
    clip = clip_of()
    plain = TrainTransform(32, flip=False, grayscale=0)(clip, torch.Generator().manual_seed(3))
    out = TrainTransform(32, flip=False, grayscale=0, solarize=1.0)(clip, torch.Generator().manual_seed(3))
    want = torch.where(plain >= 128, 255 - plain, plain)       # PIL's ImageOps.solarize(threshold=128)
    assert torch.equal(out, want)


def test_blur_is_one_gaussian_for_the_whole_clip_with_sigma_in_0_1_to_2():
    from torchvision.transforms.v2 import functional as F
    clip = clip_of(1)
    sigmas = []
    for seed in range(6):
        plain = TrainTransform(32, flip=False, grayscale=0)(clip, torch.Generator().manual_seed(seed))
        out = TrainTransform(32, flip=False, grayscale=0, blur=1.0)(clip, torch.Generator().manual_seed(seed))
        gen = torch.Generator().manual_seed(seed)     # the same draws: the crop's, then p, then sigma
        TrainTransform(32, flip=False, grayscale=0)(clip, gen)
        assert float(torch.rand(1, generator=gen)) < 1.0
        sigma = 0.1 + 1.9 * float(torch.rand(1, generator=gen))
        k = 2 * int(np.ceil(3 * sigma)) + 1
        assert torch.equal(out, F.gaussian_blur(plain, [k, k], [sigma, sigma]))
        if sigma > 1:
            assert out.float().std() < 0.9 * plain.float().std()   # blurred: neighbours alike
        sigmas.append(sigma)
    assert all(0.1 <= x <= 2.0 for x in sigmas) and max(sigmas) > 1


def test_blur_and_solarize_off_change_no_clip_and_are_seeded():
    clip = clip_of(2)
    base = TrainTransform(32)(clip, torch.Generator().manual_seed(9))
    assert torch.equal(TrainTransform(32, blur=0.0, solarize=0.0)(clip, torch.Generator().manual_seed(9)), base)
    half = TrainTransform(32, blur=0.5, solarize=0.5)
    runs = [half(clip, torch.Generator().manual_seed(s)) for s in range(12)]
    again = [half(clip, torch.Generator().manual_seed(s)) for s in range(12)]
    assert all(torch.equal(a, b) for a, b in zip(runs, again))
    assert not all(torch.equal(r, TrainTransform(32)(clip, torch.Generator().manual_seed(s))) for s, r in enumerate(runs))


def test_config_keys_and_reference_versions():
    cfg, _ = load_config(None, ["data.blur=0.5", "data.solarize=0.2"])
    assert (cfg.data.blur, cfg.data.solarize) == (0.5, 0.2)
    from text4vis.errors import ConfigError
    for bad in ("data.blur=1.5", "data.solarize=-0.1"):
        with pytest.raises(ConfigError, match="a probability between 0 and 1"):
            load_config(None, [bad])
    recipe = os.path.join(CONFIGS, "k400_vitb16_f8.yaml")
    first, _ = load_config(recipe)                                       # the first public code (2022-11-28)
    assert (first.optim.betas, first.data.randaug, first.data.min_frames) == ([0.9, 0.98], [2, 9], 8)
    assert (first.data.blur, first.data.solarize) == (0.0, 0.0)
    current, _ = load_config(recipe, ["optim.betas=[0.9,0.999]", "data.randaug=null"])   # its code since 2023-01-07
    assert (current.optim.betas, current.data.randaug, current.data.min_frames) == ([0.9, 0.999], None, 8)
    header = open(recipe).read().split("data:")[0]
    assert "2022-11-28" in header and "--set optim.betas=[0.9,0.999] --set data.randaug=null" in header
