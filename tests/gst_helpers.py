"""Run real GStreamer pipelines and collect what hcmlaction emits.

Pipelines run in a child process: GStreamer's libav plugin and PyAV's bundled FFmpeg cannot
share one process (it aborts), and a child also gives every run a clean registry and memory.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class Run:
    messages: list[dict] = field(default_factory=list)  # hcml-action bus messages
    stream_messages: list[dict] = field(default_factory=list)  # hcml-stream bus messages
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


def parse_pipelines(descriptions: list[str], timeout: float = 120.0) -> list[dict]:
    """Parse each description (``Gst.parse_launch``, fatal errors) in a child; per description
    ``{"ok", "code", "error", "missing", "standin_error"}``. With elements missing, the text is
    parsed again with ``identity`` standing in for them (their properties dropped), so the rest
    is still checked: ``standin_error`` is that parse's error, or None when only the stand-ins'
    links failed."""
    proc = subprocess.run(
        [sys.executable, __file__, "--parse"],
        input=json.dumps(descriptions),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"pipeline parser failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def free_udp_port() -> int:
    """A UDP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_client(args: list[str], out: Path, timeout: float = 120) -> subprocess.Popen:
    """Start ``hcml run ARGS --json`` (stdout to out/events.jsonl, stderr to out/client.err) and
    return once it has started (model loaded, sockets open)."""
    with open(out / "events.jsonl", "w") as stdout, open(out / "client.err", "w") as stderr:
        cmd = [sys.executable, "-m", "hcml.cli", "run", *args, "--json"]
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=stderr)
    deadline = time.monotonic() + timeout
    while "hcml run: started" not in (out / "client.err").read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"client never started:\n{(out / 'client.err').read_text()}")
        time.sleep(0.2)
    return proc


def stop_client(proc: subprocess.Popen, out: Path) -> str:
    """Ctrl-C (EOS through the pipeline); returns the client's stderr."""
    os.kill(proc.pid, signal.SIGINT)
    proc.wait(timeout=60)
    err = (out / "client.err").read_text()
    assert proc.returncode == 0, err
    return err


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


def _parse_one(Gst, GLib, description: str) -> dict:
    def attempt(text: str):
        ctx = Gst.ParseContext.new()
        try:
            Gst.parse_launch_full(text, ctx, Gst.ParseFlags.FATAL_ERRORS).set_state(Gst.State.NULL)
            return None, []
        except GLib.Error as e:
            # the context also lists elements whose properties failed: keep the absent ones
            names = ctx.get_missing_elements() or []
            return e, [n for n in dict.fromkeys(names) if Gst.ElementFactory.find(n) is None]

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


def _structure_dict(s) -> dict:
    out = {}
    for i in range(s.n_fields()):
        name = s.nth_field_name(i)
        value = s.get_value(name)
        out[name] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return out


def _states(bin_) -> str:
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
                result.errors.append(["timeout", f"no EOS in {job.get('timeout')} s; " + _states(pipeline)])
                break
            msg = bus.timed_pop(100 * Gst.MSECOND)
            if msg is None:
                continue
            if (
                msg.type == Gst.MessageType.ELEMENT
                and msg.get_structure().get_name() == "hcml-action"
            ):
                result.messages.append(_structure_dict(msg.get_structure()))
            elif (
                msg.type == Gst.MessageType.ELEMENT
                and msg.get_structure().get_name() == "hcml-stream"
            ):
                result.stream_messages.append(_structure_dict(msg.get_structure()))
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
    from gi.repository import GLib, Gst

    Gst.init(None)
    if sys.argv[1:] == ["--parse"]:
        descriptions = json.loads(sys.stdin.read())
        print(json.dumps([_parse_one(Gst, GLib, d) for d in descriptions]), flush=True)
        sys.exit(0)
    for job in json.loads(sys.stdin.read()):
        print(json.dumps(asdict(_run_one(Gst, job))), flush=True)
