"""Run GStreamer pipelines in a child process and bring back what they produced.

GStreamer's libav plugin and PyAV's bundled FFmpeg abort when loaded into one process, and a
child gives every run a clean process (registry, memory, CPU time, fds), so tests and
``hcml bench`` run their pipelines here; the child never imports PyAV.

Protocol: ``run_jobs(jobs)`` starts ``python -m hcml.gst.runner``, writes the jobs (a JSON list)
to its stdin and reads one JSON line a job back, in order, each with ``gstreamer`` (the
version). A job is a dict; its ``kind`` picks the function that runs it:

* ``"run"`` (the default): play ``description`` to EOS and collect what ``hcmlaction`` emits:
  ``hcml-action`` / ``hcml-stream`` bus messages, the ``HcmlActionMeta`` of every buffer that
  reaches the element named ``sink``, the buffers counted there, errors and warnings
  ``[element, message]``, the JSON lines of ``events`` (a path), the child's peak RSS; optional
  ``seek_ns`` (a flushing seek in PAUSED first) and ``timeout`` (s, default 60: on expiry an
  error naming every element's current/pending state). See :class:`Run`.
* ``"parse"``: ``Gst.parse_launch`` ``description`` with fatal errors, and with missing elements
  again with ``identity`` standing in (see :func:`parse_pipelines`).
* ``"MODULE:FUNCTION"``: ``FUNCTION(Gst, job) -> dict`` of that module, imported in the child
  (``hcml bench``'s timing jobs live in ``hcml.bench.gst_jobs``).

A pipeline that does not parse gives a result with that error; a child that dies (or, with a job
that uses ``hcmlaction``, cannot find it: exit 3) raises RuntimeError with the end of its stderr.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Run",
    "element_states",
    "error_text",
    "parse_pipelines",
    "run_jobs",
    "run_pipeline",
    "run_pipelines",
    "structure_dict",
]


@dataclass
class Run:
    """What one ``"run"`` job produced."""

    messages: list[dict] = field(default_factory=list)  # hcml-action bus messages
    stream_messages: list[dict] = field(default_factory=list)  # hcml-stream bus messages
    metas: list[dict] = field(default_factory=list)  # HcmlActionMeta read on the sink pad
    events: list[dict] = field(default_factory=list)  # JSON lines
    errors: list[list[str]] = field(default_factory=list)  # [source element, message]
    warnings: list[list[str]] = field(default_factory=list)
    eos: bool = False
    buffers: int = 0
    rss_kib: int = 0  # the child's peak RSS after this run
    gstreamer: str = ""  # GStreamer's version string


# ------------------------------------------------------------------------------ parent side
def run_jobs(
    jobs: list[dict[str, Any]], timeout: float, cwd: str | Path | None = None
) -> list[dict[str, Any]]:
    """Run ``jobs`` in one child process; one result dict a job, in order."""
    proc = subprocess.run(
        [sys.executable, "-m", "hcml.gst.runner"],
        input=json.dumps(jobs),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or len(lines) != len(jobs):
        raise RuntimeError(f"pipeline runner failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    return [json.loads(line) for line in lines]


def run_pipelines(jobs: list[dict], timeout: float = 300.0) -> list[Run]:
    """``"run"`` jobs: {"description", "events" (path or None), "timeout", "seek_ns" (or None)}."""
    return [Run(**r) for r in run_jobs([{**j, "kind": "run"} for j in jobs], timeout)]


def run_pipeline(description: str, events: Path | None = None, timeout: float = 60.0,
                 seek_ns: int | None = None) -> Run:  # fmt: skip
    job = {"description": description, "events": str(events) if events else None,
           "timeout": timeout, "seek_ns": seek_ns}  # fmt: skip
    return run_pipelines([job], timeout=timeout + 60)[0]


def parse_pipelines(descriptions: list[str], timeout: float = 120.0) -> list[dict]:
    """Parse each description (``Gst.parse_launch``, fatal errors) in a child; per description
    ``{"ok", "code", "error", "missing", "standin_error"}``. With elements missing, the text is
    parsed again with ``identity`` standing in for them (their properties dropped), so the rest
    is still checked: ``standin_error`` is that parse's error, or None when only the stand-ins'
    links failed."""
    results = run_jobs([{"kind": "parse", "description": d} for d in descriptions], timeout)
    return [{k: v for k, v in r.items() if k != "gstreamer"} for r in results]


# ------------------------------------------------------------------------------ shared helpers
def error_text(msg) -> str:
    """An ERROR message as ``element: message (last debug line)``."""
    err, debug = msg.parse_error()
    detail = f" ({debug.strip().splitlines()[-1]})" if debug and debug.strip() else ""
    return f"{msg.src.get_name()}: {err.message}{detail}"


def structure_dict(s) -> dict:
    """A GstStructure's fields; values that JSON cannot hold as they are become strings."""
    out = {}
    for i in range(s.n_fields()):
        name = s.nth_field_name(i)
        value = s.get_value(name)
        out[name] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return out


def element_states(bin_) -> str:
    """Every element's current/pending state, so that a timeout says where the pipeline stood."""
    out = []
    it = bin_.iterate_recurse()
    while True:
        ok, element = it.next()
        if ok != 1:  # Gst.IteratorResult.OK
            break
        _, cur, pending = element.get_state(0)
        out.append(f"{element.get_name()}={cur.value_nick}/{pending.value_nick}")
    return " ".join(out)


# ------------------------------------------------------------------------------ job kinds
def _run_job(Gst, job: dict) -> dict:
    result = Run()
    pipeline = Gst.parse_launch(job["description"])
    sink = pipeline.get_by_name("sink")

    def probe(_pad, info):
        buf = info.get_buffer()
        result.buffers += 1
        meta = buf.get_custom_meta("HcmlActionMeta")
        if meta is not None:
            result.metas.append(structure_dict(meta.get_structure()))
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
    timeout = job.get("timeout", 60.0)
    deadline = time.monotonic() + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                states = element_states(pipeline)
                result.errors.append(["timeout", f"no EOS in {timeout} s; {states}"])
                break
            msg = bus.timed_pop(100 * Gst.MSECOND)
            if msg is None:
                continue
            name = msg.get_structure().get_name() if msg.type == Gst.MessageType.ELEMENT else ""
            if name == "hcml-action":
                result.messages.append(structure_dict(msg.get_structure()))
            elif name == "hcml-stream":
                result.stream_messages.append(structure_dict(msg.get_structure()))
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
    return asdict(result)


def _standin(description: str, missing: list[str]) -> str:
    """``description`` with every missing element replaced by ``identity`` (only ``name=`` kept)."""
    out, dropping = [], False
    for tok in re.findall(r'(?:[^\s"]+|"(?:\\.|[^"\\])*")+', description):
        if tok in missing:
            out.append("identity")
            dropping = True
            continue
        dropping = dropping and "=" in tok and tok != "!"
        if dropping and not tok.startswith("name="):
            continue
        out.append(tok)
    return " ".join(out)


def _parse_job(Gst, job: dict) -> dict:
    from gi.repository import GLib

    def attempt(text: str):
        ctx = Gst.ParseContext.new()
        try:
            Gst.parse_launch_full(text, ctx, Gst.ParseFlags.FATAL_ERRORS).set_state(Gst.State.NULL)
            return None, []
        except GLib.Error as e:
            # the context also lists elements whose properties failed: keep the absent ones
            names = ctx.get_missing_elements() or []
            return e, [n for n in dict.fromkeys(names) if Gst.ElementFactory.find(n) is None]

    description = job["description"]
    err, missing = attempt(description)
    out = {"ok": err is None, "code": None, "error": None, "missing": [], "standin_error": None}
    if err is None:
        return out
    out.update(code=Gst.ParseError(err.code).value_nick, error=err.message)
    if err.code == Gst.ParseError.NO_SUCH_ELEMENT:
        out["missing"] = missing
        err2, _ = attempt(_standin(description, missing))
        if err2 is not None and err2.code != Gst.ParseError.LINK:
            out["standin_error"] = f"{Gst.ParseError(err2.code).value_nick}: {err2.message}"
    return out


KINDS = {"run": _run_job, "parse": _parse_job}


def _kind(name: str):
    if name in KINDS:
        return KINDS[name]
    module, sep, function = name.partition(":")
    if not sep:
        raise ValueError(f"unknown job kind {name!r} (run, parse or MODULE:FUNCTION)")
    return getattr(importlib.import_module(module), function)


# ------------------------------------------------------------------------------ child side
def main() -> int:
    from hcml.gst.environment import gst_environment

    gst_environment()
    import gi

    gi.require_version("Gst", "1.0")
    from gi.repository import GLib, Gst

    Gst.init(None)
    jobs = json.loads(sys.stdin.read())
    uses_action = any(
        j.get("kind", "run") != "parse" and "hcmlaction" in j["description"] for j in jobs
    )
    if uses_action and Gst.ElementFactory.find("hcmlaction") is None:
        where = os.environ.get("GST_PLUGIN_PATH", "")
        print(f"hcmlaction not found (GST_PLUGIN_PATH={where})", file=sys.stderr)
        return 3
    for job in jobs:
        kind = job.get("kind", "run")
        run = _kind(kind)
        try:
            result = run(Gst, job)
        except GLib.Error as e:
            why = f"cannot build the pipeline: {e.message}"
            if kind == "run":
                result = {**asdict(Run()), "errors": [["parse_launch", why]]}
            else:
                result = {"errors": [why]}
        result["gstreamer"] = Gst.version_string()
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
