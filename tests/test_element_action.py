"""hcmlaction in real pipelines: outputs on all three channels, real clips, faults."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from gst_helpers import run_pipeline, run_pipelines

from hcml.labels import LABELS

DECODE = "filesrc location={path} ! decodebin ! videoconvert"
ACTION = "hcmlaction name=action model={model} stride=4 {extra}"


def _job(path, model, events, extra="", timeout=60.0, seek_ns=None) -> dict:
    desc = (f"{DECODE.format(path=path)} ! {ACTION.format(model=model, extra=extra)} "
            f"events={events} ! fakesink name=sink")  # fmt: skip
    return {"description": desc, "events": str(events), "timeout": timeout, "seek_ns": seek_ns}


def _run(path, model, tmp_path, extra="", timeout=60.0, seek_ns=None):
    return run_pipelines([_job(path, model, tmp_path / "events.jsonl", extra, timeout, seek_ns)])[0]


@functools.cache
def _frame_count(path: Path) -> int:
    """Frames in ``path``, decoded one by one with PyAV in a child process (not GStreamer, and
    not in this process: PyAV and GStreamer's libav abort in one process)."""
    code = "import av, sys; c = av.open(sys.argv[1]); print(sum(1 for _ in c.decode(video=0)))"
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return int(out.stdout)


def _check_channels(run, expected: int):
    assert run.eos and not run.errors
    assert len(run.messages) == len(run.metas) == len(run.events) == expected
    for msg, meta, event in zip(run.messages, run.metas, run.events, strict=True):
        assert msg["label"] == meta["label"] == event["label"] in LABELS
        assert msg["pts"] == meta["pts"] == event["pts"]
        assert (
            msg["class-id"] == meta["class-id"] == event["class_id"] == LABELS.index(msg["label"])
        )
        assert event["window_start_pts"] < event["window_end_pts"] == event["pts"]
        assert 0.0 <= event["score"] <= 1.0 and len(event["topk"]) == 5
        assert event["topk"][0][0] == event["label"]
        assert set(event) >= {"stream", "pts", "window_start_pts", "window_end_pts", "label",
                              "class_id", "score", "topk", "model"}  # fmt: skip
    pts = [e["pts"] for e in run.events]
    assert pts == sorted(pts)


def test_every_class_clip_gives_three_predictions_on_every_channel(synth_clips, tiny_card,
                                                                     tmp_path):  # fmt: skip
    jobs = [_job(synth_clips / n / f"{n}_0000.mp4", tiny_card, tmp_path / f"{n}.jsonl")
            for n in LABELS]  # fmt: skip
    for run in run_pipelines(jobs):
        # 16 frames, window 8, stride 4: windows end at frames 7, 11 and 15.
        _check_channels(run, 3)
        assert [e["frame"] for e in run.events] == [7, 11, 15]


def test_real_recordings_run_to_eos_with_predictions(real_clip, tiny_card, tmp_path):
    run = _run(real_clip, tiny_card, tmp_path)
    frames = _frame_count(real_clip)
    assert run.buffers == frames >= 60
    _check_channels(run, (frames - 8) // 4 + 1)


def test_async_mode_never_loses_frames(real_clip, tiny_card, tmp_path):
    run = _run(real_clip, tiny_card, tmp_path, extra="mode=async stride=1")
    # every frame of the file reaches the sink: the element drops windows, never buffers
    assert run.eos and not run.errors and run.buffers == _frame_count(real_clip)
    assert 1 <= len(run.events) <= run.buffers - 7
    assert [e["pts"] for e in run.events] == sorted(e["pts"] for e in run.events)


def test_eos_before_a_full_window_emits_nothing(tiny_card, tmp_path):
    desc = (f"videotestsrc num-buffers=5 ! video/x-raw,width=64,height=64 ! "
            f"hcmlaction model={tiny_card} ! fakesink name=sink")  # fmt: skip
    run = run_pipeline(desc)
    assert run.eos and not run.errors and run.buffers == 5 and run.messages == []


def test_missing_model_fails_at_start_naming_the_file(tmp_path):
    missing = tmp_path / "nope.json"
    run = run_pipeline(f"videotestsrc num-buffers=5 ! hcmlaction model={missing} ! fakesink")
    assert run.errors and run.errors[0][0].startswith("hcmlaction")
    assert str(missing) in run.errors[0][1]


def test_wrong_model_card_fails_naming_the_field(tiny_card, tmp_path):
    bad_dir = tmp_path / "bad"
    shutil.copytree(tiny_card.parent, bad_dir)
    card = json.loads((bad_dir / tiny_card.name).read_text())
    card["labels"] = card["labels"][:5]
    (bad_dir / tiny_card.name).write_text(json.dumps(card))
    run = run_pipeline(f"videotestsrc num-buffers=5 ! hcmlaction model={bad_dir / tiny_card.name} "
                       "! fakesink")  # fmt: skip
    assert run.errors and "labels" in run.errors[0][1]


def test_corrupt_stream_ends_without_hang_and_no_error_from_hcmlaction(broken_files, tiny_card,
                                                                         tmp_path):  # fmt: skip
    run = _run(broken_files["corrupt"], tiny_card, tmp_path, timeout=60)
    assert run.eos or run.errors  # ended, one way or the other
    assert all(not src.startswith("action") for src, _ in run.errors)
    assert len(run.events) == len(run.messages)


def test_caps_change_mid_stream_resets_the_window(synth_clips, tmp_path, tiny_card):
    from hcml.data.synth import write_dataset

    small = write_dataset(tmp_path / "small", 1, frames=16, size=64, seed=5, progress=False)
    a = synth_clips / "move_left" / "move_left_0000.mp4"
    b = small / "move_right" / "move_right_0000.mp4"
    events = tmp_path / "ev.jsonl"
    desc = (f"concat name=c ! videoconvert ! hcmlaction model={tiny_card} stride=4 "
            f"events={events} ! fakesink name=sink "
            f"filesrc location={a} ! decodebin ! c.sink_0  "
            f"filesrc location={b} ! decodebin ! c.sink_1")  # fmt: skip
    run = run_pipeline(desc, events=events)
    assert run.eos and not run.errors and run.buffers == 32
    # 3 windows in each part; none spans the resolution change.
    assert len(run.events) == 6
    assert [e["frame"] for e in run.events] == [7, 11, 15, 7, 11, 15]


def test_flush_seek_restarts_windows_after_the_seek(real_clip, tiny_card, tmp_path):
    target = 3 * 10**9
    run = _run(real_clip, tiny_card, tmp_path, seek_ns=target)
    assert run.eos and not run.errors and run.events
    assert min(e["window_start_pts"] for e in run.events) >= target
    assert run.events[0]["frame"] == 7  # the window restarted at the seek


def test_two_streams_through_one_element_keep_separate_windows(synth_clips, tiny_card, tmp_path):
    a = synth_clips / "zoom_in" / "zoom_in_0000.mp4"
    b = synth_clips / "approach" / "approach_0000.mp4"
    events = tmp_path / "ev.jsonl"
    desc = (f"funnel name=f ! hcmlaction model={tiny_card} stride=4 events={events} ! "
            f"fakesink name=sink "
            f"filesrc location={a} ! decodebin ! videoconvert ! queue ! f.  "
            f"filesrc location={b} ! decodebin ! videoconvert ! queue ! f.")  # fmt: skip
    run = run_pipeline(desc, events=events)
    assert not run.errors and run.buffers == 32
    streams = {e["stream"] for e in run.events}
    assert len(streams) == 2
    for sid in streams:
        assert [e["frame"] for e in run.events if e["stream"] == sid] == [7, 11, 15]


def test_gst_inspect_documents_every_property(repo_root, tmp_path):
    env = dict(os.environ, GST_REGISTRY=str(tmp_path / "reg.bin"))
    out = subprocess.run(["gst-inspect-1.0", "hcmlaction"], capture_output=True, text=True,
                         env=env, timeout=120).stdout  # fmt: skip
    props = ["model", "backend", "device", "window", "stride", "frame-step", "top-k", "threshold",
             "smoothing", "hysteresis", "mode", "incremental", "events", "labels", "silent",
             "on-error", "stream-timeout", "server", "triton-state"]  # fmt: skip
    for prop in props:
        line = next((ln for ln in out.splitlines() if ln.strip().startswith(f"{prop} ")), None)
        assert line is not None, f"{prop} missing from gst-inspect"
        assert len(line.split(":", 1)[1].strip()) > 10, f"{prop} has no description"


@pytest.mark.slow
def test_start_stop_cycles_do_not_grow_memory(tiny_card):
    """45 cycles in one process (was 100: 35 s of the suite); the first 15 warm the allocator."""
    desc = (f"videotestsrc num-buffers=10 ! video/x-raw,width=64,height=64 ! "
            f"hcmlaction model={tiny_card} ! fakesink name=sink")  # fmt: skip
    job = {"description": desc, "events": None, "timeout": 30, "seek_ns": None}
    runs = run_pipelines([job] * 45, timeout=900)
    assert all(r.eos and len(r.messages) == 3 for r in runs)
    growth = runs[44].rss_kib - runs[14].rss_kib
    # 640 KiB a cycle is the old bound (50 MiB over 80 cycles): a leaked session or pipeline
    # (megabytes each) still trips it
    assert growth < 30 * 640, f"peak RSS grew {growth} KiB over 30 start/stop cycles"


def test_shipped_model_labels_match_the_clip_class(synth_clips, repo_root, tmp_path):
    cards = sorted((repo_root / "engines").glob("*.json"))
    if not cards:
        pytest.skip("no shipped model card in engines/ yet (training, issue #5)")
    jobs = [_job(synth_clips / n / f"{n}_0000.mp4", cards[0], tmp_path / f"{n}.jsonl", "stride=16")
            for n in LABELS]  # fmt: skip
    runs = run_pipelines(jobs)
    right = sum(
        run.events and run.events[-1]["label"] == n for run, n in zip(runs, LABELS, strict=True)
    )
    assert right >= 0.9 * len(LABELS)


def test_padded_planes_from_the_decoder_are_read_through_the_video_meta(tiny_card, tmp_path):
    """A converter after hcmlaction accepts GstVideoMeta, so the decoder hands out padded frames
    (112 px rows in 128-byte strides); the element must read them through the meta, as with
    plain frames: the same events either way."""
    clip = Path(__file__).parent / "data" / "motion_tour_112.mp4"
    plain = _job(clip, tiny_card, tmp_path / "plain.jsonl")
    padded = dict(plain, events=str(tmp_path / "padded.jsonl"))
    padded["description"] = (
        plain["description"]
        .replace(
            "events=" + str(tmp_path / "plain.jsonl"), "events=" + str(tmp_path / "padded.jsonl")
        )
        .replace("! fakesink name=sink", "! videoconvert ! video/x-raw,format=RGBA ! fakesink")
    )
    a, b = run_pipelines([plain, padded])
    assert a.eos and b.eos and len(a.events) == len(b.events) > 20
    for ea, eb in zip(a.events, b.events, strict=True):
        assert [k for k, _ in ea["topk"]] == [k for k, _ in eb["topk"]]
        assert max(abs(x - y) for (_, x), (_, y) in zip(ea["topk"], eb["topk"], strict=True)) < 1e-4
