"""Model zoo: convert (original Text4Vis .pt -> folder), folders and hf-hub: checkpoints, push-to-hub.

Everything is offline: tiny random-weight CLIP / Text4Vis checkpoints in their real formats, a local
Hugging Face cache in a temporary folder, HF_HUB_OFFLINE=1 (conftest).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from conftest import SHARED_VIDEOS, original_text4vis_checkpoint, tiny_openai_state_dict

import text4vis
from text4vis import zoo
from text4vis.cli import main
from text4vis.errors import OutputError, UsageError, WeightsError
from text4vis.labels import load_labels

CLIPS = [os.path.join(SHARED_VIDEOS, n) for n in ("iphone4s_rotate90_h264_aac.mov", "cricket_shot_ucf101.gif")]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_converted(root, frames: int | None = None, name: str = "k400-vitb-16-f8.pt"):
    """An original Text4Vis checkpoint (named as the published ViT-B/16 8-frame file), a tiny OpenAI-layout
    CLIP file for --clip, and the folder `convert` makes of them: (pt, clip, folder)."""
    root = str(root)
    os.makedirs(root, exist_ok=True)
    sd = tiny_openai_state_dict(0)
    clip, pt = os.path.join(root, "tiny_clip.pt"), os.path.join(root, name)
    torch.save(sd, clip)
    torch.save(original_text4vis_checkpoint(sd, "transf", seed=3), pt)
    folder = os.path.join(root, "converted" if frames is None else f"converted-f{frames}")
    zoo.convert(pt, folder, clip=clip, labels="k400", frames=frames)
    return pt, clip, folder


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    return build_converted(tmp_path_factory.mktemp("zoo"))


def test_convert_round_trip_predicts_as_the_original(converted):
    pt, clip, folder = converted
    assert sorted(os.listdir(folder)) == ["README.md", "config.json", "model.safetensors"]
    orig = text4vis.load(checkpoint=pt, clip=clip, labels="k400", device="cpu")
    conv = text4vis.load(checkpoint=folder, device="cpu")            # no clip=: the folder is self-contained
    assert conv.labels == orig.labels == load_labels("k400")
    assert conv.num_frames == orig.num_frames == 8 and conv.input_size == orig.input_size == 32
    a = orig.predict(CLIPS, topk=5, views="4x1", workers=0, with_embedding=True)
    b = conv.predict(CLIPS, topk=5, views="4x1", workers=0, with_embedding=True)
    for ra, rb in zip(a, b):
        assert [t["label"] for t in ra["top"]] == [t["label"] for t in rb["top"]]
        assert [t["score"] for t in ra["top"]] == pytest.approx([t["score"] for t in rb["top"]], abs=1e-5)
        cos = F.cosine_similarity(torch.tensor(ra["embedding"]), torch.tensor(rb["embedding"]), dim=0)
        assert cos >= 0.99999
    # the same clip through the frame-level API
    frames = torch.randint(0, 256, (2, 8, 3, 32, 32), dtype=torch.uint8)
    assert F.cosine_similarity(orig.encode_video(frames), conv.encode_video(frames)).min() >= 0.99999


def test_config_json_fields(converted):
    pt, _, folder = converted
    cfg = json.load(open(os.path.join(folder, "config.json")))
    assert cfg["library_name"] == "text4vis" and cfg["license"] == "unknown"  # not the published file's hash
    arch = cfg["architecture"]
    assert arch["head"] == "transf" and arch["head_layers"] == 6 and arch["embed_dim"] == 64
    assert arch["clip_config"]["vision_cfg"] == {"layers": 2, "width": 64, "patch_size": 8, "image_size": 32}
    assert cfg["num_frames"] == 8 and cfg["input_size"] == 32
    assert cfg["preprocessing"]["crop"] == 32 and len(cfg["preprocessing"]["mean"]) == 3
    assert cfg["labels"]["set"] == "k400" and cfg["labels"]["num_classes"] == 400
    assert cfg["labels"]["names"] == load_labels("k400")
    assert cfg["prompts"] == ["a video of a person {}."]
    assert cfg["source"]["file"] == "k400-vitb-16-f8.pt"
    assert cfg["source"]["sha256"] == hashlib.sha256(open(pt, "rb").read()).hexdigest()
    assert cfg["source"]["format"].startswith("original Text4Vis")
    model_hash = hashlib.sha256(open(os.path.join(folder, "model.safetensors"), "rb").read()).hexdigest()
    assert cfg["files"]["model.safetensors"]["sha256"] == model_hash
    pub = cfg["published"]
    assert (pub["dataset"], pub["metric"], pub["value"], pub["text4vis_views"]) == ("Kinetics-400", "top-1", 82.9, "4x3")
    assert pub["original_file"] == "k400-vitb-16-f8.pt" and pub["download"].endswith("/v1/k400-vitb-16-f8.pt")
    assert pub["verified"] is False


def card_header(card: str) -> dict:
    import yaml
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("\n---\n", 1)[0][4:])


def test_model_card_of_a_file_recognised_by_name(converted):
    """Named as the published ViT-B/16 file but not its bytes: the card says so and claims no number or licence."""
    _, _, folder = converted
    card = open(os.path.join(folder, "README.md")).read()
    meta = card_header(card)
    assert meta["license"] == "unknown" and meta["library_name"] == "text4vis"
    assert meta["pipeline_tag"] == "video-classification" and meta["datasets"] == ["kinetics-400"]
    assert "model-index" not in meta and "base_model" not in meta  # its CLIP is a file, not openai/clip-vit-...
    for section in ("## What it is", "## Published accuracy", "## Recipe", "## Licence", "## Load it with text4vis",
                    "## Reproduce the number", "## Citation"):
        assert section in card
    assert "recognised by its name as the published `k400-vitb-16-f8.pt`" in card and "unverified" in card
    assert "| Kinetics-400 (validation) |" not in card and "MIT" not in card
    assert "CLIP from the file `tiny_clip.pt`" in card and "CLIP ViT-B/16" not in card
    assert "AdamW lr 5e-5" in card and "k400_train_rgb_vitb-16-f8.yaml" in card and zoo.ARXIV in card
    assert f'text4vis.load(checkpoint="{folder}/")' in card and "@inproceedings{wu2023revisiting" in card
    assert (f"text4vis eval --config k400_vitb16_f8.yaml --checkpoint {folder}/ --views 4x3 "
            f"--precision fp32 --out eval/text4vis-k400-vitb16-f8") in card
    # the command works outside a checkout: the config ships in the package and is printed in the card
    config_text = open(os.path.join(REPO, "configs", "k400_vitb16_f8.yaml")).read()
    assert zoo.packaged_config(zoo.find_entry(name="text4vis-k400-vitb16-f8")) == config_text
    assert config_text.strip() in card


def test_model_card_of_the_published_file_claims_its_number(converted, tmp_path, monkeypatch):
    """A file whose SHA-256 is the one recorded for the release: the published number, licence and Hub metadata."""
    import dataclasses
    pt, clip, _ = converted
    digest = zoo.sha256_file(pt)
    monkeypatch.setattr(zoo, "ZOO", tuple(dataclasses.replace(e, sha256=digest) if e.file == os.path.basename(pt)
                                          else e for e in zoo.ZOO))
    cfg = zoo.convert(pt, str(tmp_path / "published"), clip=clip, labels="k400", hub_id="me/k400")
    assert cfg["published"]["verified"] is True and cfg["license"] == "mit"
    card = open(tmp_path / "published" / "README.md").read()
    meta = card_header(card)
    assert meta["license"] == "mit" and "base_model" not in meta  # the CLIP came from a file
    result = meta["model-index"][0]["results"][0]
    assert result["metrics"][0]["value"] == 82.9 and result["dataset"]["name"] == "Kinetics-400"
    assert "| Kinetics-400 (validation) | top-1 | 82.9% | 8x3x4 (frames x spatial crops x temporal clips) |" in card
    assert "for this very file" in card and "MIT, as the published Text4Vis weights" in card
    assert 'text4vis.load(checkpoint="hf-hub:me/k400")' in card
    named = dict(cfg, architecture=dict(cfg["architecture"], clip="ViT-B/16"))  # as converted with --clip ViT-B/16
    assert zoo.card_metadata(named, zoo.find_entry(pt))["base_model"] == "openai/clip-vit-base-patch16"
    assert zoo.describe_clip(named) == "CLIP ViT-B/16"


def test_zoo_entries_point_at_existing_configs():
    names = {e.name for e in zoo.ZOO}
    assert len(names) == len(zoo.ZOO) == 11
    for e in zoo.ZOO:
        assert os.path.isfile(os.path.join(REPO, e.text4vis_config)), e.text4vis_config
        assert e.labels in ("k400", "anet", "ucf101", "hmdb51")
    assert zoo.find_entry("/x/K400-ViTB-16-F8.pt").value == 82.9
    assert zoo.find_entry("mine.pt") is None
    with pytest.raises(UsageError, match="not a published Text4Vis checkpoint"):
        zoo.find_entry(name="k400-vitb-99")


def test_unknown_checkpoint_card_claims_no_number(tmp_path, converted):
    _, clip, _ = converted
    pt = tmp_path / "my_run.pt"
    shutil.copy(converted[0], pt)
    zoo.convert(str(pt), str(tmp_path / "mine"), clip=clip, labels="ucf101", frames=4, hub_id="me/mine")
    cfg = json.load(open(tmp_path / "mine" / "config.json"))
    assert cfg["published"] is None and cfg["num_frames"] == 4 and cfg["labels"]["num_classes"] == 101
    card = open(tmp_path / "mine" / "README.md").read()
    assert "no published number" in card and "82.9" not in card
    assert 'text4vis.load(checkpoint="hf-hub:me/mine")' in card
    assert "## Reproduce the number" not in card and "## Recipe" not in card and "MIT" not in card
    assert "Unknown to text4vis (see" not in card and card_header(card)["license"] == "unknown"
    assert "text4vis eval --config YOUR_CONFIG.yaml --checkpoint hf-hub:me/mine --views 1x1" in card
    assert text4vis.load(checkpoint=str(tmp_path / "mine"), device="cpu").num_frames == 4


def test_convert_refuses_a_foreign_folder(tmp_path, converted):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="holding other files"):
        zoo.convert(converted[0], str(tmp_path), clip=converted[1])
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "README.md").write_text("# My model\n\nnotes I wrote\n")
    with pytest.raises(OutputError, match="README.md is not a text4vis model card"):
        zoo.convert(converted[0], str(mine), clip=converted[1])
    assert (mine / "README.md").read_text() == "# My model\n\nnotes I wrote\n"


def test_converting_a_folder_into_itself_keeps_its_source(tmp_path, converted):
    import shutil
    folder = tmp_path / "again"
    shutil.copytree(converted[2], folder)
    before = json.load(open(folder / "config.json"))
    after = zoo.convert(str(folder), str(folder), labels="ucf101")
    assert after["source"] == before["source"] and after["source"]["file"] == "k400-vitb-16-f8.pt"
    assert after["labels"]["num_classes"] == 101 and after["published"]["original_file"] == "k400-vitb-16-f8.pt"


def test_cli_predict_with_folder_needs_no_clip(converted, capsys):
    pt, clip, folder = converted
    assert main(["predict", CLIPS[0], "--checkpoint", pt, "--clip", clip, "--labels", "k400", "--json",
                 "--views", "4x1", "--workers", "0"]) == 0
    want = json.loads(capsys.readouterr().out)
    assert main(["predict", CLIPS[0], "--checkpoint", folder, "--json", "--views", "4x1", "--workers", "0"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert [t["label"] for t in got["top"]] == [t["label"] for t in want["top"]]
    assert [t["score"] for t in got["top"]] == pytest.approx([t["score"] for t in want["top"]], abs=1e-5)


def test_cli_convert_list_and_errors(tmp_path, capsys):
    assert main(["convert", "--list"]) == 0
    out = capsys.readouterr().out
    assert "k400-vitl-14-336-f32.pt" in out and "hmdb-vitl-14-f16.pt" in out and "mAP 96.9" in out
    assert main(["convert", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing.pt" in err
    os.makedirs(tmp_path / "empty")
    assert main(["predict", CLIPS[0], "--checkpoint", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "a folder without model.safetensors" in err and "a folder, not a weights file" in err


# ----------------------------------------------------------------------------- the hub (a local cache)

def make_hub_cache(cache, repo: str, revisions: dict[str, str], refs: dict[str, str]) -> None:
    """huggingface_hub's cache layout: models--ORG--NAME/snapshots/<commit>/<files>, refs/<branch>."""
    base = os.path.join(str(cache), "models--" + repo.replace("/", "--"))
    for commit, folder in revisions.items():
        snap = os.path.join(base, "snapshots", commit)
        os.makedirs(snap)
        for f in os.listdir(folder):
            shutil.copy(os.path.join(folder, f), snap)
    os.makedirs(os.path.join(base, "refs"))
    for ref, commit in refs.items():
        with open(os.path.join(base, "refs", ref), "w") as f:
            f.write(commit)


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory, converted):
    root = tmp_path_factory.mktemp("hub")
    _, _, folder4 = build_converted(root / "v1", frames=4)
    main_commit, v1_commit = "a" * 40, "b" * 40
    make_hub_cache(root / "cache", "text4vis/k400-tiny", {main_commit: converted[2], v1_commit: folder4},
                   {"main": main_commit, "v1": v1_commit})
    return str(root / "cache"), main_commit, v1_commit


def test_hub_checkpoint_from_the_local_cache(hub_cache, converted, monkeypatch):
    import huggingface_hub.constants as hub
    cache, main_commit, v1_commit = hub_cache
    monkeypatch.setattr(hub, "HF_HUB_CACHE", cache)
    assert hub.HF_HUB_OFFLINE  # conftest: never the network
    rec = text4vis.load(checkpoint="hf-hub:text4vis/k400-tiny", device="cpu")
    local = text4vis.load(checkpoint=converted[2], device="cpu")
    frames = torch.randint(0, 256, (1, 8, 3, 32, 32), dtype=torch.uint8)
    assert torch.allclose(rec.encode_video(frames), local.encode_video(frames), atol=1e-6)
    assert rec.num_frames == 8 and rec.labels == local.labels
    assert text4vis.load(checkpoint="hf-hub:text4vis/k400-tiny@v1", device="cpu").num_frames == 4
    assert text4vis.load(checkpoint=f"hf-hub:text4vis/k400-tiny@{v1_commit}", device="cpu").num_frames == 4
    path = text4vis.hub.hub_download("hf-hub:text4vis/k400-tiny", "config.json")
    assert path.startswith(cache) and main_commit in path


def test_hub_offline_miss_is_one_line(hub_cache, monkeypatch):
    import huggingface_hub.constants as hub
    monkeypatch.setattr(hub, "HF_HUB_CACHE", hub_cache[0])
    with pytest.raises(WeightsError) as exc:
        text4vis.load(checkpoint="hf-hub:text4vis/not-cached", device="cpu")
    msg = str(exc.value)
    assert "\n" not in msg and "text4vis/not-cached" in msg and "HF_HUB_OFFLINE" in msg
    assert "hf download text4vis/not-cached" in msg
    with pytest.raises(WeightsError, match="v9"):
        text4vis.load(checkpoint="hf-hub:text4vis/k400-tiny@v9", device="cpu")
    with pytest.raises(WeightsError, match="hf-hub:ORG/NAME"):
        text4vis.load(checkpoint="hf-hub:just-a-name", device="cpu")


@pytest.mark.slow
def test_hub_cli_in_a_fresh_process(hub_cache, tmp_path):
    """HF_HUB_CACHE / HF_HUB_OFFLINE from the environment, as a user sets them: a cached repository predicts."""
    env = dict(os.environ, HF_HUB_CACHE=hub_cache[0], HF_HUB_OFFLINE="1",
               PYTHONPATH=os.path.join(REPO, "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    code = ("import sys, text4vis.cli as c; sys.exit(c.main(sys.argv[1:]))")
    ok = subprocess.run([sys.executable, "-c", code, "predict", CLIPS[0], "--checkpoint", "hf-hub:text4vis/k400-tiny@v1",
                         "--json", "--workers", "0"], env=env, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert len(json.loads(ok.stdout)["top"]) == 5


def test_hub_miss_in_the_cli_is_one_line(hub_cache, monkeypatch, capsys):
    import huggingface_hub.constants as hub
    monkeypatch.setattr(hub, "HF_HUB_CACHE", hub_cache[0])
    assert main(["predict", CLIPS[0], "--checkpoint", "hf-hub:text4vis/absent"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "text4vis/absent" in err and "HF_HUB_OFFLINE" in err


# ----------------------------------------------------------------------------- push-to-hub (no network)

def test_push_to_hub_dry_run_lists_the_folder(converted, tmp_path, capsys):
    folder = converted[2]
    assert main(["push-to-hub", folder, "me/k400-tiny", "--private", "--revision", "v1", "--dry-run", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["files"] == ["README.md", "config.json", "model.safetensors"]
    assert (r["private"], r["revision"], r["dry_run"], r["repo_id"]) == (True, "v1", True, "me/k400-tiny")
    assert r["bytes"] == sum(os.path.getsize(os.path.join(folder, f)) for f in r["files"])
    for bad in ("not-a-repo-id", "hf-hub:me/x", "me/x@v1", "me/na me", "me/--x", "me/" + "x" * 100):
        assert main(["push-to-hub", folder, bad, "--dry-run"]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "ORG/NAME" in err and repr(bad) in err
    assert main(["push-to-hub", str(tmp_path), "me/x", "--dry-run"]) == 2
    assert "not a converted folder" in capsys.readouterr().err


def test_push_to_hub_uploads_only_text4vis_files(converted, tmp_path, capsys):
    """A token, a log and a rejected export in the folder stay on this machine unless --include names them."""
    import shutil
    folder = tmp_path / "folder"
    shutil.copytree(converted[2], folder)
    (folder / "my_token.txt").write_text("hf_secret\n")
    (folder / "model.onnx.rejected").write_bytes(b"onnx")
    (folder / "model.onnx").write_bytes(b"onnx")
    (folder / "logs").mkdir()
    (folder / "logs" / "run.log").write_text("log\n")
    assert main(["push-to-hub", str(folder), "me/k400-tiny", "--dry-run", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["files"] == ["README.md", "config.json", "model.onnx", "model.safetensors"]
    assert r["left_out"] == ["logs/run.log", "model.onnx.rejected", "my_token.txt"]
    assert main(["push-to-hub", str(folder), "me/k400-tiny", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "my_token.txt" in out.splitlines()[-1] and "--include" in out and "  my_token.txt" not in out
    assert main(["push-to-hub", str(folder), "me/k400-tiny", "--dry-run", "--json", "--include", "logs/*"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert "logs/run.log" in r["files"] and "my_token.txt" in r["left_out"]
    for pattern in ("../x", "/etc/passwd", "nothing*"):
        assert main(["push-to-hub", str(folder), "me/k400-tiny", "--dry-run", "--include", pattern]) == 2
        err = capsys.readouterr().err
        assert f"--include {pattern}" in err and len(err.strip().splitlines()) == 1, err


def test_push_to_hub_calls_huggingface_hub(converted, monkeypatch):
    """What push_to_hub asks of huggingface_hub (HfApi replaced by a recorder: no network)."""
    import huggingface_hub
    calls = []

    class Recorder:
        def __init__(self, token=None):
            calls.append(("init", token))

        def create_repo(self, repo_id, **kw):
            calls.append(("create_repo", repo_id, kw))

        def create_branch(self, repo_id, **kw):
            calls.append(("create_branch", repo_id, kw))

        def upload_folder(self, **kw):
            calls.append(("upload_folder", kw))
            return type("Commit", (), {"oid": "c0ffee"})()

    monkeypatch.setattr(huggingface_hub, "HfApi", Recorder)
    r = zoo.push_to_hub(converted[2], "me/k400-tiny", private=True, revision="v1")
    assert r["commit"] == "c0ffee"
    assert calls[1] == ("create_repo", "me/k400-tiny", {"private": True, "exist_ok": True})
    assert calls[2] == ("create_branch", "me/k400-tiny", {"branch": "v1", "exist_ok": True})
    up = calls[3][1]
    assert up["repo_id"] == "me/k400-tiny" and up["folder_path"] == converted[2] and up["revision"] == "v1"
    assert up["allow_patterns"] == ["README.md", "config.json", "model.safetensors"]


def test_eval_with_a_converted_folder_equals_the_original(tmp_path, converted):
    """`text4vis eval --checkpoint DIR` (no --clip) scores as the original file with the config's --clip."""
    import numpy as np
    import yaml
    from text4vis.synthetic import make_benchmark
    pt, clip, _ = converted
    info = make_benchmark(tmp_path / "bench", shapes=["circle", "square"], motions=["moving left", "growing"],
                          heldout=[], train_per_class=1, val_per_class=1, num_frames=8, size=32, progress=False)
    folder = str(tmp_path / "converted")
    zoo.convert(pt, folder, clip=clip, labels=str(info["labels_csv"]))
    config = tmp_path / "eval.yaml"
    config.write_text(yaml.safe_dump({"data": {"val_list": str(info["val_list"]), "val_root": str(info["root"]),
                                               "labels": str(info["labels_csv"]), "num_frames": 8, "workers": 0},
                                      "model": {"clip": clip, "head": "transf"}}))
    common = ["eval", "--config", str(config), "--views", "2x1", "--quiet", "--workers", "0"]
    assert main(common + ["--checkpoint", pt, "--out", str(tmp_path / "a")]) == 0
    assert main(common + ["--checkpoint", folder, "--out", str(tmp_path / "b")]) == 0
    a, b = (np.load(tmp_path / x / "predictions.npz") for x in "ab")
    assert np.allclose(a["scores"], b["scores"], atol=1e-5)
    ra, rb = (json.load(open(tmp_path / x / "results.json")) for x in "ab")
    assert ra["top1"] == rb["top1"]
