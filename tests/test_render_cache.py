"""The rendered synthetic cache (``RenderedClips``): no partial file outlives a killed writer,
and ``hcml train --no-progress`` draws no render bar."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

from hcml.cli import main
from hcml.data.datasets import RenderedClips, SyntheticClips

ROOT = Path(__file__).resolve().parents[1]

_WRITER = """
import sys
from hcml.data.datasets import RenderedClips
RenderedClips(0, 4, 32, 200_000, cache_dir=sys.argv[1], workers=1, progress=False)
"""


def test_a_killed_writers_partial_render_is_removed_and_a_live_ones_kept(tmp_path):
    cache = tmp_path / "cache"
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(cache)], start_new_session=True, cwd=ROOT
    )
    try:
        deadline = time.monotonic() + 120
        while not list(cache.glob("*.tmp")) and time.monotonic() < deadline:
            assert writer.poll() is None, "the writer ended before it started its render"
            time.sleep(0.1)
        partial = list(cache.glob("*.tmp"))
        assert [p.name.split(".")[-2] for p in partial] == [str(writer.pid)]
    finally:
        os.killpg(writer.pid, signal.SIGKILL)  # the writer and its pool worker, mid-render
        writer.wait(timeout=30)
    assert writer.returncode == -signal.SIGKILL
    assert partial[0].is_file()  # what a killed `hcml train` used to leave for good

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        live = cache / f"synth-s9-t4-r32-x32-n4.{sleeper.pid}.tmp"
        live.write_bytes(b"another writer's render in progress")
        clips = RenderedClips(0, 4, 32, 4, cache_dir=cache, workers=1, progress=False)
        assert not partial[0].exists()
        assert live.is_file()
    finally:
        sleeper.kill()
        sleeper.wait()
    # the new cache holds the synthetic clips, item for item
    assert np.array_equal(np.asarray(clips.clips[3]), SyntheticClips(0, 4, 32).load(3)[0].numpy())
    assert sorted(p.name for p in cache.iterdir()) == sorted([clips.path.name, live.name])


def test_train_no_progress_draws_no_render_bar(tmp_path, capsys, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("HCML_CACHE", str(cache))
    recipe = yaml.safe_load((ROOT / "training" / "tiny.yaml").read_text())
    recipe["data"]["train"] = {"synth": {"seed": 0, "frames": 4, "size": 32, "length": 12}}
    recipe["data"]["train"]["synth"]["cache"] = 32
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    argv = ["train", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "run"), "--stop-after", "1"]

    assert main([*argv, "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert len(list(cache.glob("synth-*.npy"))) == 1  # it did render the cache
    assert "rendering" not in err and "it/s" not in err and "clip/s" not in err, err

    # the same render with its bar on does draw it (the assertion above can fail)
    RenderedClips(0, 4, 32, 12, cache_dir=tmp_path / "other", workers=1, progress=True)
    assert "rendering" in capsys.readouterr().err
