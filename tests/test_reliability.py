"""The fault matrix (docs/RELIABILITY.md): rows no other test covers, and stricter versions of some.

Element faults are injected through ``Harness``: our own source pad pushes stream-start / caps /
segment / buffers / flush / EOS straight into an ``hcmlaction`` instance (so a caps change keeps
its stream id), and a fake backend (slow, failing, NaN) stands in for the model. Those scenarios
run in one spawned child process: libgstreamer loaded into the test process makes later ONNX
exports abort (a C++ exception through pybind11), so GStreamer never enters it. Faults that need
a real decoder run through ``gst_helpers``' child, as elsewhere.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from gst_helpers import run_pipelines

from hcml.stream.engine import StreamEngine

ROOT = Path(__file__).resolve().parents[1]
K, FRAME_NS = 4, 40_000_000
Gst = None  # gi.repository.Gst, imported in the child only (see the module doc)


# ------------------------------------------------------------------ the child's side
def _element_class():
    """Import GStreamer and the element's module (as the plugin loader would), once."""
    global Gst
    if Gst is None:
        import gi

        gi.require_version("Gst", "1.0")
        from gi.repository import Gst as gst

        gst.init(None)
        Gst = gst
    if "hcmlaction" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "hcmlaction", ROOT / "plugin/python/hcmlaction.py"
        )
        sys.modules["hcmlaction"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules["hcmlaction"])
    return sys.modules["hcmlaction"].HcmlAction


class FakeBackend:
    """A clip backend: 16x16 input, window 4; optionally slow, failing or returning NaN.

    ``bad``: {call: "raise" | "nan"} for the call-th ``run_clip`` (1-based), or "raise" always."""

    name, device, supports_step = "fake", "cpu", False

    def __init__(self, window: int = 4, delay: float = 0.0, bad: dict | str | None = None,
                 frame_step: int = 1):  # fmt: skip
        self.card = SimpleNamespace(
            window=window, frame_step=frame_step, labels=[f"c{i}" for i in range(K)], num_classes=K,
            name="fake", input_size=(16, 16), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
        )  # fmt: skip
        self.delay, self.bad, self.calls = delay, bad or {}, 0
        import hcml.backends

        hcml.backends.load_backend = lambda model, **kw: self  # what do_start will load

    def describe(self) -> str:
        return "fake backend"

    def run_clip(self, frames: np.ndarray) -> np.ndarray:
        time.sleep(self.delay)
        self.calls += 1
        what = self.bad if isinstance(self.bad, str) else self.bad.get(self.calls)
        if what == "raise":
            raise RuntimeError("boom: the backend fell over")
        logits = np.tile(np.arange(K, dtype=np.float32), (len(frames), 1))  # rows: streams
        return np.full_like(logits, np.nan) if what == "nan" else logits


class Harness:
    """One ``hcmlaction`` fed from our own pad; records what leaves it and what it posts."""

    def __init__(self, **props):
        self.el = _element_class()()
        props.setdefault("model", "fake.json")
        for name, value in props.items():
            self.el.set_property(name.replace("_", "-"), value)
        self.bus = Gst.Bus.new()
        self.el.set_bus(self.bus)
        self.src = Gst.Pad.new("src", Gst.PadDirection.SRC)
        any_caps = Gst.PadTemplate.new(
            "sink", Gst.PadDirection.SINK, Gst.PadPresence.ALWAYS, Gst.Caps.new_any()
        )
        self.sink = Gst.Pad.new_from_template(any_caps, "sink")
        self.out: list[int] = []  # PTS of every buffer that left the element
        self.eos_out = False
        self.sink.set_chain_function_full(self._chain)
        self.sink.set_event_function_full(self._event)
        assert self.src.link(self.el.get_static_pad("sink")) == Gst.PadLinkReturn.OK
        assert self.el.get_static_pad("src").link(self.sink) == Gst.PadLinkReturn.OK
        self.src.set_active(True)
        self.sink.set_active(True)
        self.size, self.pts = (32, 32), 0
        self.flows: list[str] = []  # each push's FlowReturn nick ("ok", "error", ...)
        self.push_s: list[float] = []  # each push's duration
        self.predictions: list[dict] = []
        self.warnings: list[str] = []
        self.errors: list[str] = []
        self.stream_events: list[dict] = []  # hcml-stream messages (idle eviction)

    def _chain(self, _pad, _parent, buf):
        self.out.append(buf.pts)
        return Gst.FlowReturn.OK

    def _event(self, _pad, _parent, event):
        self.eos_out |= event.type == Gst.EventType.EOS
        return True

    def start(self) -> str:
        return self.el.set_state(Gst.State.PLAYING).value_nick

    def stop(self) -> str:
        return self.el.set_state(Gst.State.NULL).value_nick

    def stream(self, sid: str, width=32, height=32, fps=25) -> None:
        assert self.src.push_event(Gst.Event.new_stream_start(sid))
        assert self.caps(width, height, fps)
        segment = Gst.Segment()
        segment.init(Gst.Format.TIME)
        assert self.src.push_event(Gst.Event.new_segment(segment))

    def caps(self, width: int, height: int, fps: int = 25) -> bool:
        self.size = (width, height)
        text = f"video/x-raw,format=RGB,width={width},height={height},framerate={fps}/1"
        return self.src.push_event(Gst.Event.new_caps(Gst.Caps.from_string(text)))

    def push(self, n: int = 1, discont: bool = False, interval: float = 0.0) -> None:
        """n grey frames, PTS every 40 ms; ``interval``: seconds between pushes (live pace)."""
        for i in range(n):
            w, h = self.size
            buf = Gst.Buffer.new_wrapped(bytes([(self.pts // FRAME_NS) % 256]) * (w * h * 3))
            buf.pts, buf.duration = self.pts, FRAME_NS
            if discont and i == 0:
                buf.set_flags(Gst.BufferFlags.DISCONT)
            self.pts += FRAME_NS
            t = time.perf_counter()
            self.flows.append(self.src.push(buf).value_nick)
            self.push_s.append(time.perf_counter() - t)
            if interval:
                time.sleep(max(0.0, interval - self.push_s[-1]))

    def flush(self) -> None:
        assert self.src.push_event(Gst.Event.new_flush_start())
        assert self.src.push_event(Gst.Event.new_flush_stop(True))

    def eos(self) -> None:
        self.src.push_event(Gst.Event.new_eos())

    def read_bus(self) -> None:
        while (msg := self.bus.pop()) is not None:
            s = msg.get_structure()
            if msg.type == Gst.MessageType.ELEMENT and s.get_name() == "hcml-action":
                self.predictions.append({k: s.get_value(k) for k in (
                    "stream", "window-start-pts", "window-end-pts", "score")})  # fmt: skip
            elif msg.type == Gst.MessageType.ELEMENT and s.get_name() == "hcml-stream":
                self.stream_events.append({k: s.get_value(k) for k in ("stream", "event",
                                                                       "last-pts")})  # fmt: skip
            elif msg.type == Gst.MessageType.WARNING:
                self.warnings.append(msg.parse_warning()[0].message)
            elif msg.type == Gst.MessageType.ERROR:
                self.errors.append(msg.parse_error()[0].message)

    def report(self, **extra) -> dict:
        """What a test checks; ``frames``: each prediction's window-end frame index."""
        self.read_bus()
        return {
            "frames": [p["window-end-pts"] // FRAME_NS for p in self.predictions],
            "streams": [p["stream"] for p in self.predictions],
            "scores": [p["score"] for p in self.predictions],
            "out": len(self.out),
            "out_sorted": self.out == sorted(self.out),
            "eos_out": self.eos_out,
            "flows": self.flows,
            "push_s": self.push_s,
            "warnings": self.warnings,
            "errors": self.errors,
            "stream_events": self.stream_events,
            **extra,
        }


def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def _resolution_change() -> dict:
    FakeBackend(window=4)
    h = Harness()
    h.start()
    h.stream("cam")
    h.push(6)  # frames 0-5 at 32x32: windows end at 3, 4, 5
    accepted = h.caps(64, 48)  # the same stream id, a new resolution at frame 6
    h.push(6)  # frames 6-11: the first full window ends at 9
    h.stop()
    return h.report(accepted=accepted)


def _framerate_change() -> dict:
    FakeBackend(window=4)
    h = Harness()
    h.start()
    h.stream("cam", fps=25)
    h.push(6)
    h.caps(32, 32, fps=10)  # the same size, another rate
    h.push(6)
    h.caps(32, 32, fps=10)  # the same caps again: nothing to restart
    h.push(2)
    h.stop()
    return h.report()


def _discont() -> dict:
    FakeBackend(window=4)
    h = Harness()
    h.start()
    h.stream("cam")
    h.push(6)
    h.push(6, discont=True)  # a gap before frame 6
    h.stop()
    return h.report()


def _flush() -> dict:
    FakeBackend(window=4)
    h = Harness()
    h.start()
    h.stream("cam")
    h.push(5)
    h.flush()
    h.push(5)
    h.stop()
    return h.report()


def _eos_async_pending() -> dict:
    backend = FakeBackend(window=4, delay=0.2)
    h = Harness(mode="async")
    h.start()
    h.stream("cam")
    h.push(10)  # 7 windows, inference far slower than the pushes
    h.eos()  # drains: waits for the window in flight and the pending (newest) one
    dropped = h.el.engine.dropped
    h.stop()
    return h.report(dropped=dropped, calls=backend.calls)


def _eos_after_async_failure() -> dict:
    FakeBackend(window=4, delay=0.1, bad="raise")
    h = Harness(mode="async")
    h.start()
    h.stream("cam")
    h.push(5)
    h.eos()  # the failure surfaces in the drain at EOS
    h.stop()
    return h.report()


def _streams_added_and_removed(cycles: int) -> dict:
    """Each cycle: a new stream id, one full window, EOS (evicts), flush (the pad is reusable)."""
    FakeBackend(window=4)
    h = Harness()
    h.start()
    left, rss = [], 0
    for i in range(cycles):
        h.stream(f"source-{i}", width=16 + 16 * (i % 3))
        h.push(4)
        h.eos()
        left.append(len(h.el.engine.streams) + len(h.el.stream_caps))
        h.flush()
        if i == 99:
            h.read_bus()
            rss = _rss_kib()
    h.read_bus()
    growth = _rss_kib() - rss
    h.stop()
    return h.report(left=sum(left), rss_growth_kib=growth)


def _source_leaves_a_funnel(timeout: float) -> dict:
    """Stream a sends 6 frames and goes away without EOS (as behind a funnel); b goes on 40."""
    FakeBackend(window=4)
    h = Harness(stream_timeout=timeout)
    h.start()
    h.stream("a")
    h.push(6)  # PTS 0-200 ms
    h.stream("b")  # funnel switches: stream-start, caps, segment of the other source
    h.push(40)  # PTS 240 ms - 1.8 s
    held = sorted(h.el.engine.streams), sorted(h.el.stream_caps)
    h.stop()
    return h.report(held=held)


def _slow_backend_live() -> dict:
    FakeBackend(window=4, delay=0.15)
    h = Harness(mode="async", stride=1)
    h.start()
    h.stream("live")
    h.push(40, interval=0.04)  # 25 fps, inference 150 ms
    h.eos()
    dropped = h.el.engine.dropped
    h.stop()
    return h.report(dropped=dropped)


def _backend_exception(mode: str) -> dict:
    FakeBackend(window=4, bad={2: "raise", 3: "raise"})
    h = Harness(mode=mode)  # on-error=warn is the default
    h.start()
    h.stream("cam")
    for _ in range(12):
        h.push(1)
        time.sleep(0.01 if mode == "async" else 0)
    h.eos()
    h.stop()
    return h.report()


def _backend_exception_fail() -> dict:
    FakeBackend(window=4, bad="raise")
    h = Harness(on_error="fail")
    h.start()
    h.stream("cam")
    h.push(4)
    h.stop()
    return h.report()


def _nan_logits() -> dict:
    FakeBackend(window=4, bad={2: "nan"})
    h = Harness(smoothing=0.5)
    h.start()
    h.stream("cam")
    h.push(8)
    h.stop()
    return h.report()


def _tiny_frames() -> dict:
    FakeBackend()
    h = Harness()
    h.start()
    h.stream("tiny", 8, 8)  # below the caps' 16x16 minimum
    h.push(2)
    h.stop()
    return h.report()


def _events_cannot_open(target: str) -> dict:
    FakeBackend()
    h = Harness(events=target)
    start = h.start()
    h.stop()
    return h.report(start=start)


def _disk_full(on_error: str) -> dict:
    FakeBackend(window=4)
    h = Harness(events="/dev/full", on_error=on_error)  # every write fails with ENOSPC
    start = h.start()
    h.stream("cam")
    h.push(6)
    stop = h.stop()
    return h.report(start=start, stop=stop)


# ------------------------------------------------------------------ the tests' side
@pytest.fixture(scope="module")
def child():
    """Runs a scenario above in one spawned process (GStreamer stays out of this one)."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        yield lambda fn, *args: pool.apply_async(fn, args).get(timeout=300)


def test_resolution_change_on_one_stream_restarts_its_window(child):
    r = child(_resolution_change)
    assert r["accepted"] and r["frames"] == [3, 4, 5, 9, 10, 11] and r["out"] == 12
    assert set(r["streams"]) == {"cam"}  # one stream all along: the caps change did it


def test_framerate_change_restarts_the_window(child):
    r = child(_framerate_change)
    assert r["frames"] == [3, 4, 5, 9, 10, 11, 12, 13] and set(r["flows"]) == {"ok"}


def test_discont_buffer_restarts_the_window(child):
    r = child(_discont)
    assert r["frames"] == [3, 4, 5, 9, 10, 11] and r["out"] == 12


def test_flush_restarts_every_window(child):
    r = child(_flush)
    assert r["frames"] == [3, 4, 8, 9] and r["out"] == 10


def test_eos_with_async_work_pending_emits_the_newest_window_then_passes_eos(child):
    r = child(_eos_async_pending)
    assert r["eos_out"] and r["out"] == 10 and set(r["flows"]) == {"ok"}
    assert r["frames"][-1] == 9 and r["frames"] == sorted(r["frames"])
    assert r["dropped"] > 0 and len(r["frames"]) + r["dropped"] == 7 == r["calls"] + r["dropped"]


def test_eos_after_an_async_failure_still_goes_downstream(child):
    r = child(_eos_after_async_failure)
    assert r["eos_out"] and r["frames"] == [] and not r["errors"]
    assert r["warnings"] and all("inference failed" in w and "boom" in w for w in r["warnings"])


def test_streams_added_and_removed_1000_times_leave_nothing_behind(child):
    r = child(_streams_added_and_removed, 1000)
    assert r["left"] == 0  # no stream state and no caps entry survives its EOS
    assert len(r["frames"]) == 1000 == len(set(r["streams"])) and r["out"] == 4000
    assert set(r["flows"]) == {"ok"} and not r["warnings"] and not r["errors"]
    assert r["rss_growth_kib"] < 20 * 1024, f"RSS grew {r['rss_growth_kib']} KiB in 900 cycles"


def test_a_source_that_leaves_a_funnel_without_eos_is_evicted_after_stream_timeout(child):
    r = child(_source_leaves_a_funnel, 1.0)
    # a's newest frame is at 200 ms: evicted at b's first frame past 1.2 s (frame 31, 1.24 s)
    assert r["stream_events"] == [{"stream": "a", "event": "evicted", "last-pts": 5 * FRAME_NS}]
    # a's window state and caps entry are gone (b's caps equal a's: no set_caps, no entry)
    assert r["held"] == (["b"], [])
    assert r["frames"] == [3, 4, 5] + list(range(9, 46)) and r["out"] == 46  # b unaffected
    r = child(_source_leaves_a_funnel, 0.0)  # stream-timeout=0: kept until the pipeline's EOS
    assert r["stream_events"] == [] and r["held"] == (["a", "b"], ["a"])


def test_slow_backend_under_a_live_source_drops_windows_never_frames(child):
    r = child(_slow_backend_live)
    assert set(r["flows"]) == {"ok"} and r["out"] == 40 and r["out_sorted"] and r["eos_out"]
    assert max(r["push_s"]) < 0.15  # no push waited for an inference
    assert r["dropped"] >= 10 and len(r["frames"]) + r["dropped"] == 37
    assert r["frames"][-1] == 39  # the newest window at EOS


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_backend_exception_warns_and_frames_keep_flowing(child, mode):
    r = child(_backend_exception, mode)
    assert set(r["flows"]) == {"ok"} and r["out"] == 12 and not r["errors"]
    # async: two failures between two pushes surface as one warning
    assert len(r["warnings"]) == 2 or (mode == "async" and len(r["warnings"]) == 1)
    assert all(w.startswith("hcmlaction: inference failed: ") and "boom" in w
               for w in r["warnings"])  # fmt: skip
    assert len(r["frames"]) >= 5 and r["frames"][-1] == 11  # predictions resumed


def test_backend_exception_with_on_error_fail_posts_an_error(child):
    r = child(_backend_exception_fail)
    assert r["flows"] == ["ok", "ok", "ok", "error"]
    assert len(r["errors"]) == 1 and "hcmlaction: inference failed: boom" in r["errors"][0]


def test_nan_logits_are_reported_never_emitted_and_never_smoothed_in(child):
    r = child(_nan_logits)
    assert set(r["flows"]) == {"ok"} and r["out"] == 8
    assert len(r["warnings"]) == 1 and "non-finite logits" in r["warnings"][0]
    assert r["frames"] == [3, 5, 6, 7]  # the window ending at frame 4 was skipped
    assert all(np.isfinite(r["scores"]))  # smoothing=0.5: the EMA was not poisoned


def test_frames_smaller_than_16_px_are_refused_at_negotiation(child):
    r = child(_tiny_frames)
    assert r["flows"] == ["not-negotiated"] * 2 and r["out"] == 0  # refused, never mis-scaled


def test_events_file_that_cannot_be_opened_fails_start_naming_it(child, tmp_path):
    for target in (tmp_path, tmp_path / "no" / "such" / "dir.jsonl"):
        r = child(_events_cannot_open, str(target))
        assert r["start"] == "failure" and len(r["errors"]) == 1
        assert r["errors"][0].startswith(f"hcmlaction: cannot open events file {target}: [Errno")


@pytest.mark.parametrize("on_error", ["warn", "fail"])
def test_disk_full_while_writing_events(child, on_error):
    r = child(_disk_full, on_error)
    assert r["start"] == "success" and r["stop"] == "success"  # closing it is not fatal
    messages = r["warnings"] if on_error == "warn" else r["errors"]
    assert messages and all(
        m.startswith("hcmlaction: cannot write events to /dev/full: [Errno 28]") for m in messages
    )
    if on_error == "warn":
        assert set(r["flows"]) == {"ok"} and r["out"] == 6 and len(messages) == 3
        assert r["frames"] == [3, 4, 5]  # the bus still carries every prediction
    else:
        assert r["flows"][3] == "error" and not r["warnings"]


@pytest.mark.parametrize("incremental", [True, False])
def test_nan_and_all_zero_frames_through_the_real_model(tiny_card, incremental):
    """All-zero frames classify normally; a NaN frame makes the windows holding it fail with a
    named error (no NaN score is ever emitted) until it has left the window."""
    from hcml.backends import load_backend

    engine = StreamEngine(load_backend(tiny_card, backend="onnxruntime"), incremental=incremental)
    emitted, failed = [], []
    for i in range(20):
        frame = torch.zeros(3, 112, 112)
        if i == 9:
            frame[:] = float("nan")
        try:
            emitted += engine.push("s", frame, i)
        except FloatingPointError as err:
            assert "non-finite logits" in str(err) and "'s'" in str(err)
            failed.append(i)
    assert failed == list(range(9, 17))  # the 8 windows that hold frame 9
    assert [p.frame for p in emitted] == [7, 8, 17, 18, 19]
    assert all(np.isfinite(p.score) and 0 < p.score <= 1 for p in emitted)


# ------------------------------------------------------------------ files through decoders
@pytest.fixture(scope="module")
def decoded(tiny_card, broken_files, tmp_path_factory):
    """One child process runs every file/size pipeline; name -> gst_helpers.Run."""
    out = tmp_path_factory.mktemp("decoded")
    action = f"hcmlaction name=action model={tiny_card} stride=4"
    descriptions = {
        kind: f"filesrc location={broken_files[kind]} ! decodebin ! videoconvert ! {action}"
        for kind in ("truncated", "empty", "not_video")
    }
    src = "videotestsrc num-buffers={} {} ! video/x-raw,format=I420,width={},height={}"
    descriptions["error_mid_stream"] = (
        f"{src.format(30, '', 64, 64)} ! identity name=decoder error-after=20 ! {action}"
    )
    descriptions["4k"] = f"{src.format(12, '', 3840, 2160)} ! {action}"
    descriptions["16px"] = f"{src.format(12, '', 16, 16)} ! {action}"
    descriptions["black"] = f"{src.format(12, 'pattern=black', 64, 64)} ! {action}"
    jobs = [
        {"description": f"{d} events={out / name}.jsonl ! fakesink name=sink",
         "events": str(out / f"{name}.jsonl"), "timeout": 60, "seek_ns": None}
        for name, d in descriptions.items()
    ]  # fmt: skip
    return dict(zip(descriptions, run_pipelines(jobs), strict=True))


@pytest.mark.parametrize(
    ("kind", "source", "message"),
    [
        pytest.param("truncated", "qtdemux", "no playable streams", id="truncated"),
        pytest.param("empty", "typefind", "Stream contains no data", id="empty"),
        pytest.param("not_video", "decodebin", "text file", id="not_video"),
    ],
)
def test_broken_files_end_with_the_demuxers_error_not_a_hang(decoded, kind, source, message):
    run = decoded[kind]
    assert len(run.errors) == 1 and run.errors[0][0] != "timeout"
    assert run.errors[0][0].startswith(source) and message in run.errors[0][1]
    assert run.buffers == 0 and run.events == [] and not run.eos


def test_decoder_error_mid_stream_stops_with_its_error_after_the_predictions_so_far(decoded):
    run = decoded["error_mid_stream"]  # identity error-after=20 stands in for a failing decoder
    assert run.errors == [["decoder", "Failed after iterations as requested."]]
    assert run.buffers == 19 and [e["frame"] for e in run.events] == [7, 11, 15]


def test_4k_frames_pass_and_are_classified(decoded):
    run = decoded["4k"]
    assert run.eos and not run.errors and run.buffers == 12
    assert [e["frame"] for e in run.events] == [7, 11]


def test_frames_smaller_than_the_model_input_are_upscaled(decoded):
    run = decoded["16px"]  # 16x16, the smallest the caps accept, into a 112x112 model
    assert run.eos and not run.errors and run.buffers == 12
    assert [e["frame"] for e in run.events] == [7, 11]


def test_all_black_frames_give_finite_predictions(decoded):
    run = decoded["black"]
    assert run.eos and not run.errors and run.buffers == 12
    assert [e["frame"] for e in run.events] == [7, 11]
    assert all(0 < e["score"] <= 1 for e in run.events)


# ------------------------------------------------------------------ training and data
_KILL_MID_SAVE = """
import os, signal, sys, torch
from hcml.model import create_model
from hcml.model.checkpoint import save_checkpoint
from hcml.training.trainer import atomic_save
path, which = sys.argv[1], sys.argv[2]
model = create_model("tsn_tiny", num_classes=3)
save = (lambda: save_checkpoint(path, model, epoch=1)) if which == "model" else (
    lambda: atomic_save(path, {"step": 1}))
save()
os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)  # killed after the bytes, pre-rename
model.head.fc.weight.data.fill_(7.0)
save = (lambda: save_checkpoint(path, model, epoch=2)) if which == "model" else (
    lambda: atomic_save(path, {"step": 2}))
save()
"""


@pytest.mark.parametrize("which", ["model", "training-state"])
def test_training_killed_mid_checkpoint_keeps_the_previous_one(tmp_path, which):
    path = tmp_path / ("model.pt" if which == "model" else "last.pt")
    proc = subprocess.run([sys.executable, "-c", _KILL_MID_SAVE, str(path), which],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == -9, proc.stderr  # SIGKILL, inside the second save
    if which == "model":
        from hcml.model.checkpoint import load_checkpoint, load_model

        assert load_checkpoint(path)["epoch"] == 1
        assert not (load_model(path).head.fc.weight == 7.0).any()
    else:
        assert torch.load(path, weights_only=True)["step"] == 1
    leftovers = [p.name for p in tmp_path.iterdir() if p != path]
    assert len(leftovers) == 1 and leftovers[0].startswith(f".{path.name}.")  # only a .tmp


class _RunsCodeWhenUnpickled:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoint_from_an_untrusted_source_is_never_unpickled(tmp_path):
    from hcml.model.checkpoint import FORMAT, CheckpointError, load_model

    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "model": "tsn_tiny", "cfg": {}, "state_dict": {},
                "payload": _RunsCodeWhenUnpickled(marker)}, evil)  # fmt: skip
    torch.load(evil, weights_only=False)  # the payload is live: unpickling runs it
    assert marker.exists()
    marker.unlink()
    with pytest.raises(pickle.UnpicklingError):
        torch.load(evil, weights_only=True)
    with pytest.raises(CheckpointError, match="not a readable hcml checkpoint"):
        load_model(evil)
    assert not marker.exists()


def test_dataset_csv_with_absolute_or_linked_paths_outside_its_root(synth_clips, tmp_path):
    from hcml.data.datasets import DatasetError, open_dataset

    root = tmp_path / "ds"
    root.mkdir()
    (root / "link").symlink_to(synth_clips)  # a link out of the root
    for rel in ("/etc/passwd", "link/static/static_0000.mp4"):
        (root / "index.csv").write_text(f"path,label\n{rel},static\n")
        with pytest.raises(DatasetError, match="outside the dataset root"):
            open_dataset(root / "index.csv")
