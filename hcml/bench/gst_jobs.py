"""The timing jobs of ``hcml bench element``, ``latency`` and ``streams``, run by
``hcml.gst.runner`` in its child process (kind ``hcml.bench.gst_jobs:NAME``; see
``hcml.bench.common.run_gst_jobs``). Each is ``NAME(Gst, job) -> dict``:

* ``file`` (``{"description", "preroll": true, "timeout"}``): preroll (model loading, first
  frame; skipped with ``"preroll": false``), then time PLAYING -> EOS: ``frames`` (fakesink
  ``sink``'s rendered count), ``wall_s``, ``cpu_s`` (this process, every thread:
  ``time.process_time``), ``predictions`` (hcml-action bus messages); no EOS within ``timeout``
  (s, default 600) is an error naming every element's state;
* ``live`` (``{"description", "seconds", "interval"}``): a live pipeline whose ``hcmlaction`` is
  named ``act``; per interval the event latency percentiles (see ``hcml.bench.latency``),
  frames, predictions, windows dropped, RSS and open fds;
* ``streams`` (``{"description", "seconds"}``): several live sources into one ``hcmlaction``
  named ``act`` (``hcml bench streams``): buffers into and out of it, event latency per stream,
  predictions and windows dropped per stream, CPU time.

The child never imports PyAV (see ``hcml.gst.runner``).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from hcml.gst.runner import element_states, error_text


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def file(Gst, job: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"errors": [], "eos": False, "predictions": 0}
    pipeline = Gst.parse_launch(job["description"])
    bus = pipeline.get_bus()
    try:
        if job.get("preroll", True):
            pipeline.set_state(Gst.State.PAUSED)
            ok, _, _ = pipeline.get_state(job.get("timeout", 120) * Gst.SECOND)
            if ok == Gst.StateChangeReturn.FAILURE:
                msg = bus.pop_filtered(Gst.MessageType.ERROR)
                out["errors"].append(error_text(msg) if msg else "preroll failed")
                return out
        t0, c0 = time.perf_counter(), time.process_time()
        pipeline.set_state(Gst.State.PLAYING)
        timeout = job.get("timeout", 600)
        deadline = time.monotonic() + timeout
        while True:
            if time.monotonic() >= deadline:
                out["errors"].append(f"timeout: no EOS in {timeout} s; {element_states(pipeline)}")
                break
            msg = bus.timed_pop(50 * Gst.MSECOND)
            if msg is None:
                continue
            if msg.type == Gst.MessageType.ELEMENT and msg.has_name("hcml-action"):
                out["predictions"] += 1
            elif msg.type == Gst.MessageType.ERROR:
                out["errors"].append(error_text(msg))
                break
            elif msg.type == Gst.MessageType.EOS:
                out["eos"] = True
                break
        out["wall_s"] = time.perf_counter() - t0
        out["cpu_s"] = time.process_time() - c0
        sink = pipeline.get_by_name("sink")
        if sink is not None:
            out["frames"] = int(sink.get_property("stats").get_value("rendered"))
    finally:
        pipeline.set_state(Gst.State.NULL)
    return out


def live(Gst, job: dict[str, Any]) -> dict[str, Any]:
    from hcml.bench.common import percentiles

    pipeline = Gst.parse_launch(job["description"])
    act = pipeline.get_by_name("act")
    lock = threading.Lock()
    box: dict[str, Any] = {"segment": None, "frames": 0, "lat": [], "errors": []}

    def probe(_pad, info):
        if info.type & Gst.PadProbeType.BUFFER:
            box["frames"] += 1
        else:
            event = info.get_event()
            if event is not None and event.type == Gst.EventType.SEGMENT:
                box["segment"] = event.parse_segment()
        return Gst.PadProbeReturn.OK

    act.get_static_pad("sink").add_probe(
        Gst.PadProbeType.BUFFER | Gst.PadProbeType.EVENT_DOWNSTREAM, probe
    )

    def on_post(_bus, msg):
        # Runs synchronously in the thread that posts, i.e. when the element emits the event.
        if msg.type == Gst.MessageType.ELEMENT and msg.has_name("hcml-action"):
            clock = pipeline.get_clock()
            if clock is not None:
                now = clock.get_time() - pipeline.get_base_time()
                pts = msg.get_structure().get_value("pts")
                seg = box["segment"]
                rt = seg.to_running_time(Gst.Format.TIME, pts) if seg is not None else pts
                with lock:
                    box["lat"].append((now - rt) / 1e6)
        return Gst.BusSyncReply.PASS

    bus = pipeline.get_bus()
    bus.set_sync_handler(on_post)
    intervals: list[dict[str, Any]] = []
    every: list[float] = []
    seconds, interval = float(job["seconds"]), float(job["interval"])

    def engine_counts() -> tuple[int | None, int | None]:
        engine = getattr(act, "engine", None)  # the Python element, when this process runs it
        if engine is None:
            return None, None
        return int(engine.dropped), int(engine.predictions)

    try:
        pipeline.set_state(Gst.State.PLAYING)
        ok, _, _ = pipeline.get_state(120 * Gst.SECOND)
        if ok == Gst.StateChangeReturn.FAILURE:
            msg = bus.pop_filtered(Gst.MessageType.ERROR)
            return {"errors": [error_text(msg) if msg else "could not start"], "intervals": []}
        start = time.monotonic()
        rss0, fds0 = _rss_mib(), _fds()
        last_frames, last_dropped, last_preds = box["frames"], 0, 0
        next_mark = interval
        while True:
            now = time.monotonic() - start
            if now >= next_mark or now >= seconds:
                with lock:
                    lat, box["lat"] = box["lat"], []
                every += lat
                dropped, preds = engine_counts()
                intervals.append(
                    {
                        "t_s": round(now, 3),
                        "frames": box["frames"] - last_frames,
                        "events": len(lat),
                        "predictions": None if preds is None else preds - last_preds,
                        "dropped": None if dropped is None else dropped - last_dropped,
                        "latency_ms": {**percentiles(lat), "max": max(lat, default=float("nan"))},
                        "rss_mib": round(_rss_mib(), 2),
                        "fds": _fds(),
                    }
                )
                last_frames = box["frames"]
                last_dropped, last_preds = dropped or 0, preds or 0
                next_mark += interval
                if now >= seconds:
                    break
            msg = bus.timed_pop(min(100, max(1, int(1000 * (next_mark - now)))) * Gst.MSECOND)
            if msg is not None and msg.type == Gst.MessageType.ERROR:
                box["errors"].append(error_text(msg))
                break
        pipeline.send_event(Gst.Event.new_eos())
        bus.timed_pop_filtered(10 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    finally:
        pipeline.set_state(Gst.State.NULL)
    return {
        "errors": box["errors"],
        "intervals": intervals,
        "latency_ms": {**percentiles(every), "max": max(every, default=float("nan"))},
        "events": len(every),
        "start": {"rss_mib": round(rss0, 2), "fds": fds0},
    }


def streams(Gst, job: dict[str, Any]) -> dict[str, Any]:
    """Live sources (their own timelines from 0, as ``is-live`` sources have) through ``act``."""
    pipeline = Gst.parse_launch(job["description"])
    act = pipeline.get_by_name("act")
    lock = threading.Lock()
    box: dict[str, Any] = {"in": 0, "out": 0, "lat": {}, "errors": []}

    def count(key):
        def probe(_pad, _info):
            box[key] += 1
            return Gst.PadProbeReturn.OK

        return probe

    act.get_static_pad("sink").add_probe(Gst.PadProbeType.BUFFER, count("in"))
    act.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, count("out"))

    def on_post(_bus, msg):  # in the posting thread: when the element emits the event
        if msg.type == Gst.MessageType.ELEMENT and msg.has_name("hcml-action"):
            clock = pipeline.get_clock()
            if clock is not None:
                now = clock.get_time() - pipeline.get_base_time()
                s = msg.get_structure()
                with lock:
                    box["lat"].setdefault(s.get_value("stream"), []).append(
                        (now - s.get_value("pts")) / 1e6
                    )
        return Gst.BusSyncReply.PASS

    bus = pipeline.get_bus()
    bus.set_sync_handler(on_post)
    seconds = float(job["seconds"])
    try:
        pipeline.set_state(Gst.State.PLAYING)
        ok, _, _ = pipeline.get_state(120 * Gst.SECOND)
        if ok == Gst.StateChangeReturn.FAILURE:
            msg = bus.pop_filtered(Gst.MessageType.ERROR)
            return {"errors": [error_text(msg) if msg else "could not start"]}
        warm = float(job.get("warmup", 3.0))  # model loaded, first windows filled
        time.sleep(warm)
        with lock:
            box["lat"] = {}
        in0, out0 = box["in"], box["out"]
        engine = act.engine
        infer = _time_backend(engine.backend)  # from here on: seconds and rows per graph
        drop0 = dict(engine.dropped_by_stream)
        c0, t0 = time.process_time(), time.monotonic()
        deadline = t0 + seconds
        while time.monotonic() < deadline:
            msg = bus.timed_pop(100 * Gst.MSECOND)
            if msg is not None and msg.type == Gst.MessageType.ERROR:
                box["errors"].append(error_text(msg))
                break
        wall, cpu = time.monotonic() - t0, time.process_time() - c0
        with lock:
            lat = {k: list(v) for k, v in box["lat"].items()}
        frames_in, frames_out = box["in"] - in0, box["out"] - out0
        dropped = {k: v - drop0.get(k, 0) for k, v in engine.dropped_by_stream.items()}
        batches = list(engine.batches)
        infer = {k: dict(v) for k, v in infer.items()}
        pipeline.send_event(Gst.Event.new_eos())
        bus.timed_pop_filtered(10 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
        # every buffer that went in during the whole run came out (checked after EOS; a count
        # taken mid-run can see one buffer inside the element)
        total_in, total_out = box["in"], box["out"]
        lost = total_in - total_out
    finally:
        pipeline.set_state(Gst.State.NULL)
    return {
        "errors": box["errors"],
        "wall_s": wall,
        "cpu_s": cpu,
        "frames_in": frames_in,
        "frames_out": frames_out,
        "total_in": total_in,
        "total_out": total_out,
        "lost": lost,
        "latency_ms": lat,
        "dropped": dropped,
        "batches": batches[-500:],
        "infer": infer,
    }


def _time_backend(backend) -> dict[str, dict[str, float]]:
    """Wrap ``backend.run_step``/``run_clip`` (this bench process only) to add up the seconds
    and the batch rows of every call: the element's inference cost per frame, live."""
    totals = {g: {"s": 0.0, "rows": 0, "calls": 0} for g in ("step", "clip")}
    for graph in totals:
        inner = getattr(backend, f"run_{graph}")

        def timed(x, *rest, _inner=inner, _t=totals[graph], **kw):
            t = time.perf_counter()
            out = _inner(x, *rest, **kw)
            _t["s"] += time.perf_counter() - t
            _t["rows"] += len(x)
            _t["calls"] += 1
            return out

        setattr(backend, f"run_{graph}", timed)
    return totals
