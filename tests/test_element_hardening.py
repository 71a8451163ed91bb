"""hcmlaction against the silent wrong answers and surprises of issue 18 (items 4-9, 14, 15).

Element scenarios run in a spawned child through ``test_reliability``'s ``Harness`` (our own pad
feeds the element; GStreamer stays out of the test process); whole pipelines run through
``gst_helpers`` or ``gst-launch-1.0`` itself.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
from pathlib import Path

import pytest
from gst_helpers import run_pipeline
from test_reliability import FRAME_NS, FakeBackend, Harness, _element_class

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "tests/data/vtest_pedestrians_768x576.mp4"
CARD = ROOT / "engines/hcml_tiny_motion.json"


# ------------------------------------------------------------------ the child's side
def _same_id_twice() -> dict:
    """Two sources with one stream id, interleaved as a funnel does (each re-sends its own
    stream-start event object when it becomes active)."""
    FakeBackend(window=4)
    h = Harness()
    h.start()
    Gst = __import__("gi.repository.Gst", fromlist=["Gst"])
    starts = [Gst.Event.new_stream_start("same"), Gst.Event.new_stream_start("same")]
    seg = Gst.Segment()
    seg.init(Gst.Format.TIME)
    segments = [Gst.Event.new_segment(seg), Gst.Event.new_segment(seg)]  # each source's own
    pts = {0: 0, 1: 0}
    for turn in range(12):
        src = turn % 2
        assert h.src.push_event(starts[src])
        assert h.caps(32, 32)
        assert h.src.push_event(segments[src])
        for _ in range(2):  # each source's own timeline
            h.pts = pts[src]
            h.push(1)
            pts[src] = h.pts
    h.stop()
    r = h.report()
    r["windows"] = [(p["stream"], p["window-start-pts"], p["window-end-pts"])
                    for p in h.predictions]  # fmt: skip
    return r


def _pts_jumps() -> dict:
    FakeBackend(window=4)
    h = Harness(max_gap=1.0)
    h.start()
    h.stream("cam")
    h.push(6)  # frames 0-5: windows end at 3, 4, 5
    h.pts += 10 * 1_000_000_000  # 10 s gap without DISCONT
    h.push(5)  # a new window: first at the 4th frame after the gap
    h.pts = 2 * FRAME_NS  # backwards (a non-flushing seek back)
    h.push(5)
    h.stop()
    r = h.report()
    r["spans"] = [(p["window-start-pts"], p["window-end-pts"]) for p in h.predictions]
    return r


def _no_pts() -> dict:
    FakeBackend(window=4)
    h = Harness()
    h.start()
    h.stream("cam")
    Gst = __import__("gi.repository.Gst", fromlist=["Gst"])
    for i in range(6):
        buf = Gst.Buffer.new_wrapped(bytes([i]) * (32 * 32 * 3))  # no PTS, no duration
        h.flows.append(h.src.push(buf).value_nick)
    h.stop()
    r = h.report()
    r["spans"] = [(p["window-start-pts"], p["window-end-pts"]) for p in h.predictions]
    return r


def _window_not_the_cards() -> dict:
    import hcml.backends
    from hcml.backends.loading import load_backend

    hcml.backends.load_backend = load_backend  # the real one (FakeBackend patched it before)
    h = Harness(model=str(CARD), window=16)
    start = h.start()
    h.stop()
    return h.report(start=start)


def _model_set_while_playing() -> dict:
    FakeBackend(window=4)
    h = Harness()
    h.start()
    h.stream("cam")
    h.push(4)
    h.el.set_property("model", "other.json")
    h.el.set_property("stride", 2)  # read per window: may change
    model, stride = h.el.get_property("model"), h.el.get_property("stride")
    h.push(4)
    h.stop()
    return h.report(model=model, stride=stride)


def _bad_enum(name: str) -> dict:
    FakeBackend(window=4)
    h = Harness(**{name: "bogus"})
    start = h.start()
    h.stop()
    return h.report(start=start)


def _failing_backend(max_errors: int, frame_step: int = 1) -> dict:
    FakeBackend(window=4, bad="raise", frame_step=frame_step)
    h = Harness(max_errors=max_errors)  # on-error=warn
    h.start()
    h.stream("cam")
    h.push(12 * frame_step)  # windows at sampled frames 3..11: 9 failures
    h.stop()
    return h.report()


def _floating() -> dict:
    cls = _element_class()
    Gst = __import__("gi.repository.Gst", fromlist=["Gst"])
    pipeline = Gst.parse_launch("fakesrc ! hcmlaction name=a ! fakesink")
    el = pipeline.get_by_name("a")
    in_bin = el.ref_count
    del pipeline
    import gc

    gc.collect()
    return {"in_bin": in_bin, "alone": el.ref_count, "type": cls.__name__}


# ------------------------------------------------------------------ the tests' side
@pytest.fixture(scope="module")
def child():
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        yield lambda fn, *args: pool.apply_async(fn, args).get(timeout=300)


def test_two_sources_with_one_stream_id_stay_two_streams(child):
    r = child(_same_id_twice)
    assert set(r["streams"]) == {"same", "same#2"}
    for stream in ("same", "same#2"):
        spans = [(s, e) for st, s, e in r["windows"] if st == stream]
        assert spans == [(i * FRAME_NS, (i + 3) * FRAME_NS) for i in range(len(spans))]
        assert len(spans) == 9  # 12 frames each, window 4


def test_same_file_twice_through_a_funnel_is_two_streams(tmp_path):
    events = tmp_path / "ev.jsonl"
    src = f"filesrc location={CLIP} ! decodebin ! videoconvert ! f. "
    r = run_pipeline(
        f"funnel name=f ! hcmlaction model={CARD} stride=4 ! fakesink name=sink sync=false "
        + src
        + src,
        events=events,
        timeout=120,
    )
    assert r.eos and not r.errors, r.errors
    by: dict[str, list] = {}
    for m in r.messages:
        by.setdefault(m["stream"], []).append((m["window-start-pts"], m["window-end-pts"]))
    assert len(by) == 2, list(by)  # the second source got its own stream
    a, b = by.values()
    assert a == b  # the same file: the same windows, each on its own timeline
    assert all(s < e for s, e in a) and [e for _, e in a] == sorted(e for _, e in a)


def test_pts_gap_and_backwards_pts_restart_the_window(child):
    r = child(_pts_jumps)
    gap = 10 * 1_000_000_000
    assert r["spans"][:3] == [
        (0, 3 * FRAME_NS),
        (FRAME_NS, 4 * FRAME_NS),
        (2 * FRAME_NS, 5 * FRAME_NS),
    ]
    after_gap = [(s, e) for s, e in r["spans"] if s >= gap]
    assert after_gap and after_gap[0][0] == 6 * FRAME_NS + gap  # starts after the gap
    back = r["spans"][-2:]
    assert back == [(2 * FRAME_NS, 5 * FRAME_NS), (3 * FRAME_NS, 6 * FRAME_NS)]
    assert all(s <= e for s, e in r["spans"]) and r["out"] == 16


def test_buffers_without_pts_get_frame_rate_timestamps(child):
    r = child(_no_pts)
    assert r["spans"] == [(0, 3 * FRAME_NS), (FRAME_NS, 4 * FRAME_NS), (2 * FRAME_NS, 5 * FRAME_NS)]


def test_a_window_other_than_the_cards_fixed_t_is_refused_at_start(child):
    r = child(_window_not_the_cards)
    assert r["start"] == "failure"
    assert any("window=16" in e and "T=8" in e for e in r["errors"]), r["errors"]


def test_model_cannot_change_while_playing_and_the_property_stays_true(child):
    r = child(_model_set_while_playing)
    assert r["model"] == "fake.json" and r["stride"] == 2
    assert any("model cannot change while running" in w for w in r["warnings"])
    assert r["out"] == 8


@pytest.mark.parametrize("name", ["mode", "on_error"])
def test_a_bad_enum_value_fails_start_with_one_line(child, name):
    r = child(_bad_enum, name)
    assert r["start"] == "failure"
    assert len(r["errors"]) == 1 and "bogus" in r["errors"][0] and "\n" not in r["errors"][0]


def test_bad_mode_in_gst_launch_is_an_error_not_a_traceback():
    env = dict(os.environ)
    proc = subprocess.run(
        ["gst-launch-1.0", "videotestsrc", "num-buffers=5", "!", "hcmlaction", f"model={CARD}",
         "mode=bogus", "!", "fakesink"],  # fmt: skip
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "mode must be sync or async, got 'bogus'" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("max_errors,errors", [(3, 1), (0, 0)])
def test_consecutive_failures_post_an_error(child, max_errors, errors):
    r = child(_failing_backend, max_errors)
    assert len(r["errors"]) == errors
    if errors:
        assert "3 failures in a row" in r["errors"][0]
        assert len(r["warnings"]) == 2  # the first two were warnings
        assert r["flows"][:5] == ["ok"] * 5 and set(r["flows"][5:]) == {"error"}  # 3rd: frame 5
    else:
        assert len(r["warnings"]) == 9


def test_frames_the_model_skips_do_not_reset_the_failure_count(child):
    """frame_step 2 (the shipped card's): the unsampled frame between two failing windows runs
    no inference, so it is no success: the 3rd failure in a row still posts the error."""
    r = child(_failing_backend, 3, 2)
    assert len(r["errors"]) == 1 and "3 failures in a row" in r["errors"][0]
    assert len(r["warnings"]) == 2


def test_events_to_dev_stdout_keep_every_line_when_stdout_is_a_file(tmp_path):
    """The same run with events to a plain file is the reference: every line must be there."""
    outputs = {}
    for target in ("/dev/stdout", str(tmp_path / "events.jsonl")):
        out = tmp_path / "stdout.txt"
        with open(out, "w") as f:
            proc = subprocess.run(
                ["gst-launch-1.0", "filesrc", f"location={CLIP}", "!", "decodebin", "!",
                 "videoconvert", "!", "hcmlaction", f"model={CARD}", "stride=4",
                 f"events={target}", "!", "fakesink"],  # fmt: skip
                stdout=f, stderr=subprocess.PIPE, text=True, timeout=180,
            )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        text = out.read_text() if target == "/dev/stdout" else Path(target).read_text()
        outputs[target] = [json.loads(x) for x in text.splitlines() if x.startswith("{")]
    got, ref = outputs.values()
    assert len(ref) > 10 and got == ref


def test_no_floating_reference_critical_and_refcounts_as_for_a_c_element(child):
    r = child(_floating)
    assert r == {"in_bin": 2, "alone": 1, "type": "HcmlAction"}  # the bin's + the wrapper's
    proc = subprocess.run(
        ["gst-launch-1.0", "videotestsrc", "num-buffers=2", "!", "hcmloverlay", "!",
         "hcmlaction", f"model={CARD}", "!", "fakesink"],  # fmt: skip
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0
    assert "should be floating" not in proc.stderr + proc.stdout
