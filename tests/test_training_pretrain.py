"""hcml pretrain on a folder of real and broken videos: skips and counts the broken ones, resumes
exactly; fine-tuning with init_from loads every weight but the classifier (names and values)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from hcml.cli import main

DATA = Path(__file__).resolve().parent / "data"
MODEL = {
    "name": "hcml_tiny",
    "frames": 4,
    "input_size": 32,
    "options": {"max_displacement": 1, "stride": 1},
    "train": {"samples": 4, "deltas": 1, "flow_census": 1.0, "flow_corr": 1},
}
PRETRAIN = {
    "seed": 0,
    "model": MODEL,
    "data": {"train": {"unlabelled": {"path": "", "camera": 0.5}}, "batch_size": 2},
    "optim": {"lr": 0.003, "warmup": 1, "grad_clip": 5.0},
    "log_every": 1,
    "ckpt_every": 2,
    "stages": [
        {"type": "flow", "steps": 4},
        {"type": "progressive", "steps": 2, "levels": [2]},
    ],
}
BROKEN = ("corrupt", "truncated", "empty", "not_video")


@pytest.fixture(scope="module")
def footage(tmp_path_factory, broken_files) -> Path:
    """Real clips (a recording, a PyAV clip of another size and rate) + every broken kind."""
    from hcml.data.video import write_video

    root = tmp_path_factory.mktemp("footage")
    shutil.copy(DATA / "tree_320x240.mp4", root / "tree.mp4")
    sub = root / "cam2"
    sub.mkdir()
    t, h, w = 24, 48, 80
    ys, xs = np.mgrid[0:h, 0:w]
    frames = np.stack(
        [
            np.stack([(128 + 100 * np.sin((xs + 2 * i) / 5.0) * np.cos(ys / 7.0))] * 3, -1)
            for i in range(t)
        ]
    ).astype(np.uint8)
    write_video(sub / "pan.mp4", frames, fps=7)
    write_video(sub / "short.mp4", frames[:2], fps=7)  # shorter than a clip: skipped too
    for kind in BROKEN:
        shutil.copy(broken_files[kind], root / f"{kind}.mp4")
    return root


@pytest.fixture(scope="module")
def recipe_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("recipe") / "pretrain.yaml"
    path.write_text(yaml.safe_dump(PRETRAIN))
    return path


def _pretrain(footage, recipe_file, out, *extra) -> int:
    argv = ["pretrain", str(footage), "--out", str(out), "--recipe", str(recipe_file)]
    return main([*argv, "--no-progress", *extra])


@pytest.fixture(scope="module")
def pretrained(footage, recipe_file, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pre") / "run"
    assert _pretrain(footage, recipe_file, out) == 0
    return out


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "model.pt", map_location="cpu", weights_only=True)["wrapper_state"]


def test_pretrain_skips_and_counts_broken_files(pretrained, footage):
    index = json.loads((pretrained / "videos.json").read_text())
    used = sorted(Path(v["path"]).name for v in index["videos"])
    skipped = sorted(Path(s["path"]).name for s in index["skipped"])
    assert used == ["pan.mp4", "tree.mp4"]
    assert skipped == sorted([f"{k}.mp4" for k in BROKEN] + ["short.mp4"])
    pan = next(v for v in index["videos"] if v["path"].endswith("pan.mp4"))
    assert (pan["frames"], pan["width"], pan["height"], pan["fps"]) == (24, 80, 48, 7.0)
    phases = sorted(p.name for p in pretrained.iterdir() if p.is_dir())
    assert phases == ["01-flow", "02-progressive-l2"]
    for ph in phases:
        assert any((pretrained / ph / "tb").iterdir())  # TensorBoard events
        losses = [
            json.loads(line)["loss"]
            for line in (pretrained / ph / "metrics.jsonl").read_text().splitlines()
            if "loss" in json.loads(line)
        ]
        assert len(losses) == PRETRAIN["stages"][phases.index(ph)]["steps"]
        assert all(np.isfinite(losses))
    # the flow net and the level-2 block moved; the level-3 block (not pretrained) did not
    from hcml.training.recipe import validate_recipe
    from hcml.training.run import build_module

    torch.manual_seed(0)
    fresh = build_module(validate_recipe(json.loads(json.dumps(PRETRAIN)))).state_dict()
    got = _weights(pretrained)
    assert not torch.equal(got["flow_net.to_flow.weight"], fresh["flow_net.to_flow.weight"])
    moved = [k for k in got if k.startswith("model.motion.2.pmb") and k.endswith("weight")]
    assert moved and any(not torch.equal(got[k], fresh[k]) for k in moved)
    assert all(torch.equal(got[k], fresh[k]) for k in got if k.startswith("model.motion.3."))


def test_pretrain_reports_the_skipped_count(footage, recipe_file, tmp_path, capsys):
    # --stop-after 2 stops the flow phase at step 2 (a preemption); the report still comes
    assert _pretrain(footage, recipe_file, tmp_path / "run", "--stop-after", "2") == 0
    err = capsys.readouterr().err
    assert "2 videos used, 5 skipped" in err
    for kind in BROKEN:
        assert f"skipping cannot read video {footage / kind}.mp4" in err


def test_pretrain_resumes_exactly(pretrained, footage, recipe_file, tmp_path):
    out = tmp_path / "run"
    assert _pretrain(footage, recipe_file, out, "--stop-after", "3") == 0
    assert not (out / "model.pt").exists()
    assert torch.load(out / "01-flow" / "last.pt", weights_only=True)["step"] == 3
    # a second start without --resume is refused, with one line
    assert _pretrain(footage, recipe_file, out) == 2
    assert _pretrain(footage, recipe_file, out, "--resume") == 0
    logged = [json.loads(x) for x in (out / "01-flow" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "loss" in r] == [1, 2, 3, 4]  # continued, not redone
    a, b = _weights(pretrained), _weights(out)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_pretrain_with_no_usable_video_fails_with_one_line(tmp_path, broken_files, capsys):
    root = tmp_path / "bad"
    root.mkdir()
    shutil.copy(broken_files["empty"], root / "a.mp4")
    assert main(["pretrain", str(root), "--out", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        err[-1] == "hcml pretrain: no usable video: every file was skipped (see the warnings above)"
    )
    assert main(["pretrain", str(tmp_path / "nowhere"), "--out", str(tmp_path / "r2")]) == 2
    assert "no such folder or file" in capsys.readouterr().err


def test_finetune_init_from_loads_every_weight_but_the_classifier(pretrained, tmp_path):
    from hcml.training.init_from import load_pretrained
    from hcml.training.recipe import validate_recipe
    from hcml.training.run import build_module

    finetune = {
        "seed": 1,
        "init_from": str(pretrained),
        "model": MODEL,
        "data": {"train": {"synth": {"seed": 0, "frames": 4, "size": 32}}, "batch_size": 2},
        "stages": [{"type": "joint", "steps": 2, "gamma": 0.0}],
    }
    src = _weights(pretrained)
    module = build_module(validate_recipe(json.loads(json.dumps(finetune))))
    report = load_pretrained(module, pretrained)
    head = ["model.head.fc.weight", "model.head.fc.bias"]
    assert report["kept"] == head
    assert sorted(report["loaded"]) == sorted(k for k in module.state_dict() if k not in head)
    assert report["unused"] == []
    for k in report["loaded"]:
        assert torch.equal(module.state_dict()[k], src[k]), k
    for prefix in ("model.backbone.", "model.motion.", "flow_net.", "heads."):
        assert any(k.startswith(prefix) for k in report["loaded"]), prefix

    # through hcml train: the first phase starts from those weights (stopped before a step)
    path = tmp_path / "finetune.yaml"
    path.write_text(yaml.safe_dump(finetune))
    out = tmp_path / "ft"
    assert main(["train", str(path), "--out", str(out), "--stop-after", "0", "--no-progress"]) == 0
    state = torch.load(out / "01-joint" / "last.pt", weights_only=True)["module"]
    for k in report["loaded"]:
        assert torch.equal(state[k], src[k]), k

    # another architecture is refused, naming the mismatch, in one line
    other = json.loads(json.dumps(finetune))
    other["model"]["train"]["flow_corr"] = 2
    path.write_text(yaml.safe_dump(other))
    rc = main(["train", str(path), "--out", str(tmp_path / "ft2"), "--no-progress"])
    assert rc == 2


@pytest.mark.parametrize(("fps", "step"), [(None, 1), (None, 2), (7.5, 1)])
def test_random_clips_are_the_files_frames_after_a_seek(fps, step):
    """A clip decoded by seeking equals frames start, start + k, ... of the whole decoded file
    (tree: 15 fps, so --fps 7.5 takes every 2nd frame)."""
    from hcml.data.unlabelled import UnlabelledClips, scan_videos
    from hcml.data.video import read_video

    path = DATA / "tree_320x240.mp4"
    full = read_video(path)
    index = scan_videos([path], 8, progress=False)
    assert index.videos[0]["frames"] == len(full)
    ds = UnlabelledClips(index, 4, 32, (0, 0, 0), (1, 1, 1), frame_step=step, fps=fps)
    stride = step * (2 if fps else 1)
    starts = set()
    for seed in range(4):
        clip = ds._clip(index.videos[0], np.random.default_rng(seed))
        match = [
            s
            for s in range(len(full) - 3 * stride)
            if np.array_equal(clip, full[s : s + 3 * stride + 1 : stride])
        ]
        assert match, seed
        starts.add(match[0])
    assert len(starts) > 1  # random starts, decoded after a real seek


def test_init_from_match_shapes_warm_starts_another_architecture(pretrained, tmp_path):
    """``init_from_match: shapes``: motion blocks of another width start fresh, everything that
    fits (backbone, flow net, classifier) comes from the checkpoint, through ``hcml train``."""
    from hcml.training.recipe import validate_recipe
    from hcml.training.run import build_module

    model = json.loads(json.dumps(MODEL))
    model["options"]["beta"] = 2  # the pretrained run's motion blocks: beta 4 (the default)
    finetune = {
        "seed": 3,
        "init_from": str(pretrained),
        "init_from_match": "shapes",
        "model": model,
        "data": {"train": {"synth": {"seed": 0, "frames": 4, "size": 32}}, "batch_size": 2},
        "stages": [{"type": "joint", "steps": 2, "gamma": 0.0}],
    }
    src = _weights(pretrained)
    fresh = build_module(validate_recipe(json.loads(json.dumps(finetune)))).state_dict()
    differs = [k for k in fresh if k in src and src[k].shape != fresh[k].shape]
    assert any(".pmb." in k for k in differs), "the test needs motion blocks of another width"
    path = tmp_path / "warm.yaml"
    path.write_text(yaml.safe_dump(finetune))
    out = tmp_path / "warm"
    assert main(["train", str(path), "--out", str(out), "--stop-after", "0", "--no-progress"]) == 0
    state = torch.load(out / "01-joint" / "last.pt", weights_only=True)["module"]
    for k in ("model.backbone.stem.0.weight", "model.head.fc.weight"):
        assert k in src and torch.equal(state[k], src[k]), k
    assert any(k.startswith("flow_net.") and torch.equal(state[k], src[k]) for k in state)
    for k, v in fresh.items():  # every fitting tensor came from the checkpoint, the rest fresh
        if k in src and src[k].shape == v.shape:
            assert torch.equal(state[k], src[k]), k
        else:
            assert state[k].shape == v.shape, k
    assert sum(k in differs for k in state) == len(differs) > 0

    bad = dict(finetune, init_from_match="names")
    path.write_text(yaml.safe_dump(bad))
    assert main(["train", str(path), "--out", str(tmp_path / "w2"), "--no-progress"]) == 2
