"""User mistakes at the `hcml` command line end in one line naming the problem, never a traceback.

Each test runs the real command (``hcml.cli.main``, or the installed module in a child process
where the exit path matters) on a real bad input and asserts: a non-zero exit status, exactly
one line on stderr, the file or value at fault named in it, and no "Traceback".
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hcml.cli import main

ROOT = Path(__file__).resolve().parents[1]
CARD = ROOT / "engines" / "hcml_tiny_motion.json"


def _one_line_error(capsys, rc: int, *named: str) -> str:
    """Assert the failed command's stderr is one line naming each of ``named``; returns it."""
    err = capsys.readouterr().err
    assert rc != 0, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for what in named:
        assert what in lines[0], (what, lines[0])
    return lines[0]


def _recipe(tmp_path: Path, **changes) -> Path:
    """training/tiny.yaml with top-level sections updated by ``changes``, written to tmp_path."""
    recipe = yaml.safe_load((ROOT / "training" / "tiny.yaml").read_text())
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(recipe.get(key), dict):
            recipe[key].update(value)
        else:
            recipe[key] = value
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _write_clips(folder: Path, classes=(0, 1), frames: int = 16, size: int = 64) -> None:
    from hcml.data.synth import clip_seed, render_clip
    from hcml.data.video import write_video
    from hcml.labels import LABELS

    for c in classes:
        (folder / LABELS[c]).mkdir(parents=True, exist_ok=True)
        clip = render_clip(c, clip_seed(0, c, 0), frames, size)
        write_video(folder / LABELS[c] / "clip.mp4", clip.frames, fps=25)


# ---------------------------------------------------------------------- hcml eval
def test_eval_skips_and_reports_an_unreadable_clip_or_fails_with_strict(tmp_path, capsys):
    from hcml.labels import LABELS

    ds = tmp_path / "ds"
    _write_clips(ds)
    broken = ds / LABELS[1] / "broken.mp4"
    broken.write_text("this is not a video\n" * 20)
    out = tmp_path / "metrics.json"
    argv = ["eval", str(CARD), str(ds), "--no-progress"]

    rc = main([*argv, "--json", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "Traceback" not in captured.err
    assert "skipped 1 of 3 clips" in captured.err and str(broken) in captured.err
    result = json.loads(out.read_text())
    assert result["n"] == 2  # the two readable clips, scored
    assert len(result["skipped"]) == 1 and str(broken) in result["skipped"][0]

    rc = main([*argv, "--strict"])
    _one_line_error(capsys, rc, str(broken), "--strict")

    broken_only = tmp_path / "only_broken" / LABELS[0]
    broken_only.mkdir(parents=True)
    (broken_only / "x.mp4").write_bytes(b"")
    rc = main(["eval", str(CARD), str(broken_only.parent), "--no-progress"])
    _one_line_error(capsys, rc, "none of the 1 clips", str(broken_only / "x.mp4"))


# ---------------------------------------------------------------------- hcml train
def test_train_refuses_a_negative_learning_rate_before_writing_anything(tmp_path, capsys):
    recipe = _recipe(tmp_path, optim={"lr": -0.003})
    out = tmp_path / "run"
    rc = main(["train", str(recipe), "--out", str(out), "--no-progress"])
    _one_line_error(capsys, rc, "lr", "-0.003")
    assert not out.exists()


def test_train_names_a_missing_dataset_path(tmp_path, capsys):
    missing = tmp_path / "no" / "such" / "index.csv"
    recipe = _recipe(tmp_path, data={"train": str(missing)})
    out = tmp_path / "run"
    rc = main(["train", str(recipe), "--out", str(out), "--no-progress"])
    _one_line_error(capsys, rc, str(missing))
    assert not out.exists()


def test_a_failed_train_does_not_block_its_own_rerun(tmp_path):
    """The run folder a failure leaves (recipe.json, logs, no checkpoint) is no "run" to keep.

    The failure is real: the training CSV lists a file that is not a video, found only when the
    first batch is read, after the run folder was made. Runs the installed command twice.
    """
    from hcml.labels import LABELS

    data = tmp_path / "data"
    data.mkdir()
    (data / "bad.mp4").write_text("not a video\n" * 20)
    (data / "index.csv").write_text(
        "path,label\n" + "".join(f"bad.mp4,{name}\n" for name in LABELS[:4])
    )
    recipe = _recipe(tmp_path, data={"train": str(data / "index.csv")})
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "hcml.cli", "train", str(recipe), "--out", str(out)]
    argv.append("--no-progress")
    for attempt in (1, 2):
        p = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        assert p.returncode == 2, (attempt, p.stderr[-2000:])
        assert "Traceback" not in p.stderr and "already holds a run" not in p.stderr
        assert p.stderr.strip().splitlines() == [p.stderr.strip()], p.stderr
        assert str(data / "bad.mp4") in p.stderr, p.stderr
        assert (out / "recipe.json").is_file()  # the failure did get past the run folder
    # a folder that holds a checkpoint is still a run that a fresh start must not overwrite
    (out / "model.pt").write_bytes(b"")
    p = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "already holds a run" in p.stderr, p.stderr


def test_resume_from_a_truncated_last_pt_names_the_file(tmp_path, capsys):
    recipe = _recipe(tmp_path)
    out = tmp_path / "run"
    argv = ["train", str(recipe), "--out", str(out), "--no-progress"]
    assert main([*argv, "--stop-after", "2"]) == 0
    capsys.readouterr()
    last = out / "01-flow" / "last.pt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])
    rc = main([*argv, "--resume"])
    _one_line_error(capsys, rc, str(last), "truncated")


# ---------------------------------------------------------------------- export, synth, game-score
def test_export_of_a_file_that_is_not_a_checkpoint(tmp_path, capsys):
    fake = tmp_path / "notes.pt"
    fake.write_text("these are notes, not weights\n")
    rc = main(["export", str(fake), "--name", "x", "--out", str(tmp_path / "engines")])
    _one_line_error(capsys, rc, str(fake), "not a readable hcml checkpoint")
    assert not (tmp_path / "engines").exists()


def test_synth_refuses_a_size_that_cannot_fit_in_memory(tmp_path, capsys):
    out = tmp_path / "synth"
    rc = main(["synth", str(out), "--size", "100000"])
    _one_line_error(capsys, rc, "--size 100000", "GiB")
    assert not out.exists()


def test_game_score_names_the_broken_json_file(tmp_path, capsys):
    good_event = {"label": "static", "window_start_pts": 0, "window_end_pts": 10**9}
    schedule = {
        "fps": 25,
        "frame_wall": [0.04 * i for i in range(50)],
        "segments": [{"start_frame": 0, "start_pts": 0, "label": "static"}],
    }
    events, sched = tmp_path / "events.jsonl", tmp_path / "schedule.json"
    events.write_text(json.dumps(good_event) + "\n" + '{"label": "static", "window_st\n')
    sched.write_text(json.dumps(schedule))
    rc = main(["game-score", str(events), str(sched)])
    _one_line_error(capsys, rc, f"{events}:2")

    events.write_text(json.dumps(good_event) + "\n")
    sched.write_text(json.dumps(schedule)[:-5])
    rc = main(["game-score", str(events), str(sched)])
    _one_line_error(capsys, rc, str(sched), "not JSON")

    sched.write_text(json.dumps({"fps": 25}))
    rc = main(["game-score", str(events), str(sched)])
    _one_line_error(capsys, rc, str(sched), "segments")

    sched.write_text(json.dumps(schedule))  # and the good pair still scores
    assert main(["game-score", str(events), str(sched)]) == 0
    assert "accuracy 1.000 (1/1" in capsys.readouterr().out


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Renders (if any) go to this test's folder, not the user's ~/.cache/hcml."""
    monkeypatch.setenv("HCML_CACHE", str(tmp_path / "cache"))
