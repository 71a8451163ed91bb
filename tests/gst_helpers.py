"""Test conveniences around real GStreamer pipelines.

Pipelines run in a child process, ``hcml.gst.runner`` (shared with ``hcml bench``): GStreamer's
libav plugin and PyAV's bundled FFmpeg cannot share one process (it aborts), and a child also
gives every run a clean registry and memory. Here: its entry points re-exported for the tests,
and ``hcml run`` started and stopped as a client process.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from hcml.gst.runner import Run, parse_pipelines, run_pipeline, run_pipelines

__all__ = [
    "Run",
    "free_udp_port",
    "parse_pipelines",
    "run_pipeline",
    "run_pipelines",
    "start_client",
    "stop_client",
]


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
