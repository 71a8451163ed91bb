"""Run real GStreamer pipelines and collect what hcmlaction emits.

Pipelines run in a child process: GStreamer's libav plugin and PyAV's bundled FFmpeg cannot
share one process (it aborts), and a child also gives every run a clean registry and memory.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Run:
    messages: list[dict] = field(default_factory=list)  # hcml-action bus messages
    metas: list[dict] = field(default_factory=list)  # HcmlActionMeta read on the sink pad
    events: list[dict] = field(default_factory=list)  # JSON lines
    errors: list[list[str]] = field(default_factory=list)  # [source element, message]
    warnings: list[list[str]] = field(default_factory=list)
    eos: bool = False
    buffers: int = 0
    rss_kib: int = 0  # the child's peak RSS after this run


def run_pipelines(jobs: list[dict], timeout: float = 300.0) -> list[Run]:
    """Each job: {"description", "events" (path or None), "timeout", "seek_ns" (or None)}."""
    proc = subprocess.run(
        [sys.executable, __file__],
        input=json.dumps(jobs),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or len(lines) != len(jobs):
        raise RuntimeError(f"pipeline runner failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    return [Run(**json.loads(line)) for line in lines]


def run_pipeline(description: str, events: Path | None = None, timeout: float = 60.0,
                 seek_ns: int | None = None) -> Run:  # fmt: skip
    job = {"description": description, "events": str(events) if events else None,
           "timeout": timeout, "seek_ns": seek_ns}  # fmt: skip
    return run_pipelines([job], timeout=timeout + 60)[0]


def _structure_dict(s) -> dict:
    out = {}
    for i in range(s.n_fields()):
        name = s.nth_field_name(i)
        value = s.get_value(name)
        out[name] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return out


def _run_one(Gst, job: dict) -> Run:
    pipeline = Gst.parse_launch(job["description"])
    result = Run()
    sink = pipeline.get_by_name("sink")

    def probe(_pad, info):
        buf = info.get_buffer()
        result.buffers += 1
        meta = buf.get_custom_meta("HcmlActionMeta")
        if meta is not None:
            result.metas.append(_structure_dict(meta.get_structure()))
        return Gst.PadProbeReturn.OK

    if sink is not None:
        sink.get_static_pad("sink").add_probe(Gst.PadProbeType.BUFFER, probe)
    bus = pipeline.get_bus()
    if job.get("seek_ns") is not None:
        pipeline.set_state(Gst.State.PAUSED)
        pipeline.get_state(10 * Gst.SECOND)
        flags = Gst.SeekFlags.FLUSH | Gst.SeekFlags.ACCURATE
        pipeline.seek_simple(Gst.Format.TIME, flags, job["seek_ns"])
        pipeline.get_state(10 * Gst.SECOND)
    pipeline.set_state(Gst.State.PLAYING)
    deadline = time.monotonic() + job.get("timeout", 60.0)
    try:
        while True:
            if time.monotonic() > deadline:
                result.errors.append(["timeout", f"no EOS in {job.get('timeout')} s"])
                break
            msg = bus.timed_pop(100 * Gst.MSECOND)
            if msg is None:
                continue
            if (
                msg.type == Gst.MessageType.ELEMENT
                and msg.get_structure().get_name() == "hcml-action"
            ):
                result.messages.append(_structure_dict(msg.get_structure()))
            elif msg.type == Gst.MessageType.ERROR:
                err, _ = msg.parse_error()
                result.errors.append([msg.src.get_name(), err.message])
                break
            elif msg.type == Gst.MessageType.WARNING:
                err, _ = msg.parse_warning()
                result.warnings.append([msg.src.get_name(), err.message])
            elif msg.type == Gst.MessageType.EOS:
                result.eos = True
                break
    finally:
        pipeline.set_state(Gst.State.NULL)
    if job.get("events") and Path(job["events"]).exists():
        result.events = [json.loads(ln) for ln in Path(job["events"]).read_text().splitlines()]
    result.rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return result


if __name__ == "__main__":
    import gi

    gi.require_version("Gst", "1.0")
    from gi.repository import Gst

    Gst.init(None)
    for job in json.loads(sys.stdin.read()):
        print(json.dumps(asdict(_run_one(Gst, job))), flush=True)
