"""Killed-and-resumed training matches uninterrupted training on the next steps."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from test_training_stages import TINY

JOINT_STEPS = 12


def _recipe(folder: Path) -> Path:
    raw = json.loads(json.dumps(TINY))
    raw["data"]["train"]["synth"].pop("length")  # the infinite stream: position matters
    raw["data"]["augment"] = {"hflip": 0.5, "brightness": 0.1}
    raw["model"]["options"]["dropout"] = 0.3  # the torch RNG state matters too
    raw["ckpt_every"] = 3
    raw["stages"] = [{"type": "flow", "steps": 4}, {"type": "joint", "steps": JOINT_STEPS}]
    path = folder / "r.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _losses_by_step(phase_dir: Path) -> dict[int, float]:
    """{step: loss} from metrics.jsonl; a step logged twice (before a kill, then again after the
    resume) keeps its later value: the resumed run's."""
    rows = [json.loads(ln) for ln in (phase_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict[int, float]:
    """The joint phase's per-step losses of the recipe trained without a break."""
    from hcml.cli import main

    folder = tmp_path_factory.mktemp("full")
    r = _recipe(folder)
    assert main(["train", str(r), "--out", str(folder / "a"), "--no-progress"]) == 0
    full = _losses_by_step(folder / "a" / "02-joint")
    assert sorted(full) == list(range(1, JOINT_STEPS + 1))
    return full


def test_stop_and_resume_matches_uninterrupted(tmp_path, uninterrupted):
    from hcml.cli import main

    r = _recipe(tmp_path)
    b = tmp_path / "b"
    # Interrupted in the middle of the joint phase: flow (4 steps) finishes, joint stops at 5.
    argv = ["train", str(r), "--out", str(b), "--no-progress"]
    assert main([*argv, "--stop-after", "5"]) == 0
    assert (b / "01-flow" / "final.pt").is_file()
    assert not (b / "02-joint" / "final.pt").exists() and not (b / "model.pt").exists()
    state = torch.load(b / "02-joint" / "last.pt", map_location="cpu", weights_only=True)
    assert state["step"] == 5
    assert main([*argv, "--resume"]) == 0
    resumed = _losses_by_step(b / "02-joint")
    assert sorted(resumed) == list(range(1, JOINT_STEPS + 1))
    assert resumed == uninterrupted  # bit-identical, including the steps after the resume


def test_sigkill_then_resume(tmp_path, uninterrupted):
    from hcml.model.checkpoint import load_model

    r = _recipe(tmp_path)
    out = tmp_path / "k"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "hcml.cli", "train", str(r), "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while time.time() < deadline and not (out / "02-joint" / "last.pt").exists():
        assert proc.poll() is None, "training ended before its first joint checkpoint"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # the kill happened mid-phase: the process died of it, the joint phase never finished
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "02-joint" / "final.pt").exists() and not (out / "model.pt").exists()
    killed_at = torch.load(out / "02-joint" / "last.pt", map_location="cpu", weights_only=True)
    assert 3 <= killed_at["step"] < JOINT_STEPS

    p = subprocess.run([*cmd, "--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert (out / "model.pt").is_file()
    load_model(out / "model.pt")
    # the steps after the kill are those of the uninterrupted run, bit for bit
    assert _losses_by_step(out / "02-joint") == uninterrupted
