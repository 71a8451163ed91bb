"""The game-stream loop on loopback: hcml game-server -> RTP/H.264 -> hcml run rtp:// -> scored
against the server's schedule (accuracy over windows inside one segment, latency)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from gst_helpers import free_udp_port, start_client, stop_client

from hcml.labels import LABELS
from hcml.stream.game_scene import GameScene, class_schedule
from hcml.stream.game_score import format_report, load_events, score

# The shipped card (held-out top-1 98.2 %) scored 0.894 (84/94 windows) on this loop (the 20 s
# stream below, seed 3) in each of 3 runs on the 2-core machine (docs/PIPELINES.md; the card
# before it, 89.3 % held-out, scored 0.755); the floor leaves room for timing (which frames a
# window holds depends on arrival) and no more.
FLOOR = 0.80
SHIPPED = Path(__file__).resolve().parents[1] / "engines" / "hcml_tiny_motion.json"
STREAM = ["--fps", "15", "--size", "112", "--duration", "20", "--segment-seconds", "2.5"]


def test_schedule_is_seeded_and_covers_every_class():
    first = list(itertools.islice(class_schedule(3), 36))
    assert first == list(itertools.islice(class_schedule(3), 36))
    assert first != list(itertools.islice(class_schedule(4), 36))
    assert all(a != b for a, b in itertools.pairwise(first))  # the action always changes
    for r in range(3):
        assert sorted(first[12 * r : 12 * r + 12]) == list(range(len(LABELS)))


@pytest.mark.parametrize("class_id", range(len(LABELS)), ids=LABELS)
def test_scene_plays_every_class_reproducibly(class_id):
    def frames(seed):
        scene = GameScene(64, seed)
        scene.start(class_id, np.random.default_rng([seed, 2, class_id]))
        return np.stack([scene.frame() for _ in range(20)])

    a = frames(1)
    assert a.shape == (20, 64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, frames(1))
    motion = np.abs(np.diff(a.astype(np.int16), axis=0)).mean()
    if LABELS[class_id] == "static":
        assert motion < 3.0  # sensor noise and sub-pixel jitter only
    else:
        assert motion > 0.3


def test_score_aligns_windows_to_segments():
    fps = 10
    schedule = {
        "fps": fps,
        "frame_wall": [100.0 + i / fps for i in range(40)],
        "segments": [
            {"label": "move_left", "start_frame": 0, "end_frame": 20, "start_pts": 0},
            {"label": "zoom_in", "start_frame": 20, "end_frame": 40, "start_pts": int(2e9)},
        ],
    }
    base = 7_000_000_000  # the receiver's PTS: its own running time
    ev = lambda a, b, label: {"window_start_pts": base + a * 100_000_000,
                              "window_end_pts": base + b * 100_000_000, "label": label,
                              "wall_time": 100.0 + b / fps + 0.02}  # fmt: skip
    events = [ev(0, 7, "move_left"), ev(5, 12, "static"), ev(15, 22, "zoom_in"),
              ev(20, 27, "zoom_in"), ev(30, 37, "zoom_in")]  # fmt: skip
    result = score(events, schedule)
    assert (result["scored"], result["correct"]) == (4, 3)  # frames 15-22 straddle the change
    assert result["accuracy"] == 0.75
    assert [s["scored"] for s in result["segments"]] == [2, 2]
    assert abs(result["latency_ms"]["p50"] - 20.0) < 1e-6 and result["latency_ms"]["negative"] == 0
    assert "accuracy 0.750 (3/4" in format_report(result, schedule)


@pytest.mark.slow
@pytest.mark.gst
@pytest.mark.parametrize("which", ["random", "shipped"])
def test_game_stream_loop(which, tiny_card, tmp_path):
    assert which == "random" or SHIPPED.is_file(), f"the shipped card {SHIPPED} is missing"
    card = tiny_card if which == "random" else SHIPPED
    port = free_udp_port()
    client = start_client([f"rtp://127.0.0.1:{port}", "--model", str(card)], tmp_path)
    try:
        server = subprocess.run(
            [sys.executable, "-m", "hcml.cli", "game-server", "--port", str(port), "--seed", "3",
             *STREAM, "--schedule", str(tmp_path / "schedule.json"), "--quiet"],
            capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert server.returncode == 0, server.stderr
    finally:
        stop_client(client, tmp_path)
    schedule = json.loads((tmp_path / "schedule.json").read_text())
    assert len(schedule["frame_wall"]) == 300 and len(schedule["segments"]) == 8
    # a segment starts at the first frame at or after k * 2.5 s
    starts = [s["start_frame"] for s in schedule["segments"]]
    assert starts == [0, 38, 75, 113, 150, 188, 225, 263]
    assert schedule["segments"][1]["start_pts"] == round(38 * 1e9 / 15)
    events = load_events(tmp_path / "events.jsonl")
    # the receiver's PTS keep the sender's spacing exactly (rtpjitterbuffer mode=none), which
    # is what maps them to the sender's frames
    pts0 = min(e["window_start_pts"] for e in events)
    offsets = np.array([(e["window_end_pts"] - pts0) * 15 / 1e9 for e in events])
    assert np.abs(offsets - np.round(offsets)).max() < 0.01
    result = score(events, schedule)
    print(f"\n[{which} card, {card.name}] {server.stderr.strip().splitlines()[-2]}")
    print(format_report(result, schedule))
    assert result["events"] > 100 and result["scored"] > 50
    lat = result["latency_ms"]
    assert lat is not None and np.isfinite(lat["p95"]) and lat["negative"] == 0
    if which == "shipped":
        assert result["accuracy"] >= FLOOR
    cli = subprocess.run(
        [sys.executable, "-m", "hcml.cli", "game-score", str(tmp_path / "events.jsonl"),
         str(tmp_path / "schedule.json")], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert cli.returncode == 0 and "accuracy" in cli.stdout and "p95" in cli.stdout, cli.stderr
