"""Start, watch and stop a real Triton Inference Server (the ``tritonserver`` binary shipped
inside the nvidia-pytriton wheel) on a model repository.

``TritonServer(repo, grpc_port=..., http_port=..., metrics_port=...)`` binds every endpoint to
``host`` (127.0.0.1 by default); ``start()`` returns once ``/v2/health/ready`` answers 200
(or raises ``ServeError`` with the tail of the server's log); ``stop()`` sends SIGTERM (Triton
finishes in-flight requests), drops the sequences clients left open and SIGKILLs after
``timeout``. The python backend directory is assembled in a temporary folder from the wheel's
pieces (backend library, utils, and the stub built for this Python version).

Why ``stop()`` drops open sequences: on SIGTERM Triton stops taking new requests and new
sequences, then waits up to ``--exit-timeout-secs`` for its in-flight work, and the sequence
batcher counts every live sequence (a slot held between START and END or the idle timeout) as
in-flight. A client that keeps a stream open, or vanished without END, would hold the stop for
the whole exit timeout and then Triton exits 1 ("Exit timeout expired"). The served models
(``triton_model.py``) publish their live correlation ids in a folder of ours
(``HCML_SERVE_SEQUENCES``); after the SIGTERM ``stop()`` ends each of them with a *drop*
request (END + request parameter ``hcml_drop``: zero logits, no graph run). Clients see their
next request refused and restart the stream with START on a server that answers again.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

__all__ = [
    "ServeError",
    "TritonServer",
    "exit_timeout_for",
    "free_port",
    "tritonserver_root",
]


SEQUENCES_ENV = "HCML_SERVE_SEQUENCES"  # as in triton_model.py (which cannot import hcml)
DROP_PARAMETER = "hcml_drop"


class ServeError(RuntimeError):
    """The server cannot be started or did not become ready; the message says why."""


def tritonserver_root() -> Path:
    """The ``tritonserver`` folder inside the installed nvidia-pytriton wheel."""
    spec = importlib.util.find_spec("pytriton")  # never imported: only its files are used
    if spec is None or not spec.submodule_search_locations:
        raise ServeError(
            "tritonserver not installed: run `make setup` (or "
            "`pip install --no-deps nvidia-pytriton==0.7.0`)"
        )
    root = Path(list(spec.submodule_search_locations)[0]) / "tritonserver"
    if not (root / "bin" / "tritonserver").is_file():
        raise ServeError(f"no tritonserver binary in {root} (nvidia-pytriton wheel incomplete)")
    return root


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _python_paths() -> str:
    """site-packages folders of this interpreter (the venv's first), for the python backend."""
    dirs = [
        p for p in sys.path if p.endswith(("site-packages", "dist-packages")) and Path(p).is_dir()
    ]
    return os.pathsep.join(dirs)


def exit_timeout_for(repository: str | os.PathLike) -> int:
    """Triton's ``--exit-timeout-secs`` for a repository: 10 s plus 3 s per stub of its
    largest model (its instances and the model's own stub). Unloading a python-backend model
    takes ~1.5 s per stub, one after the other (the backend's health check sleeps 1 s per
    stub, then the stub exits; docs/SERVING.md), the models in parallel."""
    counts = [1]
    for cfg in Path(repository).glob("*/config.pbtxt"):
        with contextlib.suppress(OSError):
            counts += [int(n) for n in re.findall(r"\bcount:\s*(\d+)", cfg.read_text())]
    return 10 + 3 * (max(counts) + 1)


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the process that started it dies (Linux), so a
    crashed test or client never leaves a server holding its ports."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class TritonServer:
    """One ``tritonserver`` process serving ``repository`` (see the module docstring)."""

    def __init__(
        self,
        repository: str | os.PathLike,
        grpc_port: int = 8001,
        http_port: int = 8000,
        metrics_port: int = 8002,
        host: str = "127.0.0.1",
        log_file: str | os.PathLike | None = None,
        verbose: int = 0,
        exit_timeout: int | None = None,
    ):
        self.repository = Path(repository).resolve()
        self.host = host
        self.grpc_port, self.http_port, self.metrics_port = grpc_port, http_port, metrics_port
        self.log_file = Path(log_file) if log_file else None
        self.verbose = verbose
        # Triton's own limit for a stop (in-flight work, then unloading every model); default
        # from the repository's instance counts (see exit_timeout_for)
        self.exit_timeout = exit_timeout
        self.dropped = 0  # sequences the last stop() ended for clients that left them open
        self.stop_error = ""  # the log's last errors when the last stop() was not clean
        self.proc: subprocess.Popen | None = None
        self._work: Path | None = None
        self._log = None

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    def _backend_dir(self, root: Path) -> Path:
        ver = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = root / "python_backend_stubs" / ver / "triton_python_backend_stub"
        if not stub.is_file():
            raise ServeError(f"the Triton python backend has no stub for Python {ver} ({stub})")
        self._work = Path(tempfile.mkdtemp(prefix="hcml-triton-"))
        py = self._work / "backends" / "python"
        py.mkdir(parents=True)
        (self._work / "sequences").mkdir()
        for src in (
            root / "backends" / "python" / "libtriton_python.so",
            root / "backends" / "python" / "triton_python_backend_utils.py",
            stub,
        ):
            (py / src.name).symlink_to(src)
        return self._work / "backends"

    def command(self) -> list[str]:
        root = tritonserver_root()
        return [
            str(root / "bin" / "tritonserver"),
            f"--model-repository={self.repository}",
            f"--backend-directory={self._backend_dir(root)}",
            f"--cache-directory={root / 'caches'}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.metrics_port}",
            "--allow-metrics=true",
            "--allow-gpu-metrics=false",
            f"--exit-timeout-secs={self.exit_timeout_s}",
            f"--log-verbose={self.verbose}",
        ]

    @property
    def exit_timeout_s(self) -> int:
        if self.exit_timeout is not None:
            return int(self.exit_timeout)
        return exit_timeout_for(self.repository)

    def start(self, timeout: float = 60.0) -> TritonServer:
        """Launch and wait until every model is ready; ``ServeError`` if it exits or times out."""
        if not self.repository.is_dir():
            raise ServeError(f"model repository not found: {self.repository}")
        cmd = self.command()
        env = dict(os.environ, HCML_SERVE_PATH=_python_paths())
        env[SEQUENCES_ENV] = str(self._work / "sequences")
        if self.log_file is not None:
            self._log = open(self.log_file, "ab")  # noqa: SIM115 - closed in stop()
        else:
            self._log = tempfile.TemporaryFile()  # noqa: SIM115 - kept for error messages
        self.proc = subprocess.Popen(
            cmd,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = self.log_tail(2)
                self._cleanup()
                raise ServeError(f"tritonserver exited with {self.proc.returncode}: {tail}")
            if self.ready():
                return self
            time.sleep(0.2)
        tail = self.log_tail(2)
        self.stop()
        raise ServeError(f"tritonserver not ready within {timeout:.0f} s: {tail}")

    def ready(self) -> bool:
        """True when ``/v2/health/ready`` answers 200 (server up, every model loaded)."""
        try:
            with urllib.request.urlopen(self.http_url + "/v2/health/ready", timeout=1) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 8) -> str:
        """The last error lines of the server's log (or its last lines), one string."""
        if self._log is None:
            return ""
        try:
            self._log.flush()
            self._log.seek(0)
            text = self._log.read().decode(errors="replace")
        except (OSError, ValueError):
            if self.log_file is None:
                return ""
            text = self.log_file.read_text(errors="replace")
        rows = [r for r in text.splitlines() if r.strip() and not r.startswith(("|", "+"))]
        errors = [r for r in rows if r.startswith("E") or "error" in r.lower()]
        return " / ".join((errors or rows)[-lines:])

    def kill(self) -> None:
        """SIGKILL the server and its stubs (tests: a crashed server); ``start()`` may follow."""
        if self.running():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._cleanup()

    def open_sequences(self) -> dict[str, dict]:
        """The sequences the served models hold now: {model: {"input": frame input name,
        "shape": its [1, ...] shape, "ids": set of correlation ids}}, all instances merged."""
        out: dict[str, dict] = {}
        if self._work is None:
            return out
        for f in sorted((self._work / "sequences").glob("*.json")):
            try:
                info = json.loads(f.read_text())
            except (OSError, ValueError):  # replaced atomically: only a vanished file
                continue
            entry = out.setdefault(
                info["model"], {"input": info["input"], "shape": info["shape"], "ids": set()}
            )
            entry["ids"].update(int(i) for i in info["ids"])
        return out

    def _client_url(self) -> str:
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "[::1]"}.get(self.host, self.host)
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{host}:{self.grpc_port}"

    def _drop_open_sequences(self, deadline: float) -> int:
        """While the stopping server waits for its in-flight work: end every sequence the models
        publish (again as new ones appear: a START queued before the SIGTERM), until the server
        exits or ``deadline``. Returns how many the server ended."""
        try:
            import tritonclient.grpc as grpcclient
        except ImportError:  # no client: Triton waits its exit timeout for them
            return 0
        client = None
        sent: set[tuple[str, int]] = set()
        done = threading.Semaphore(0)
        ended: list[bool] = []

        def callback(result, error) -> None:
            ended.append(error is None)  # a sequence that ended meanwhile answers an error
            done.release()

        try:
            while self.proc is not None and self.proc.poll() is None:
                if time.monotonic() >= deadline:
                    break
                for model, info in self.open_sequences().items():
                    todo = [c for c in sorted(info["ids"]) if (model, c) not in sent]
                    if not todo:
                        continue
                    if client is None:
                        client = grpcclient.InferenceServerClient(self._client_url())
                    frame = grpcclient.InferInput(info["input"], info["shape"], "FP32")
                    frame.set_data_from_numpy(np.zeros(info["shape"], np.float32))
                    for cid in todo:
                        sent.add((model, cid))
                        client.async_infer(
                            model,
                            [frame],
                            callback,
                            sequence_id=cid,
                            sequence_end=True,
                            parameters={DROP_PARAMETER: True},
                            client_timeout=5,
                        )
                time.sleep(0.05)
            for _ in sent:  # every answer (or its failure) arrives within client_timeout
                if not done.acquire(timeout=max(0.0, deadline - time.monotonic())):
                    break
        except Exception:  # noqa: BLE001 - server gone meanwhile: nothing left to drop
            pass
        finally:
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
        return sum(ended)

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM, drop the sequences left open (``self.dropped``: how many), wait up to
        ``timeout`` s (default: Triton's exit timeout + 15 s), then SIGKILL the process group;
        returns its rc (0: a clean stop)."""
        rc = None
        self.dropped, self.stop_error = 0, ""
        if self.proc is not None:
            if self.proc.poll() is None:
                if timeout is None:
                    timeout = self.exit_timeout_s + 15.0
                deadline = time.monotonic() + timeout
                self.proc.send_signal(signal.SIGTERM)
                self.dropped = self._drop_open_sequences(deadline)
                try:
                    self.proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(10)
            rc = self.proc.returncode
            if rc != 0:
                self.stop_error = self.log_tail(2)
            # python backend stubs left behind by a killed server
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        self._cleanup()
        return rc

    def _cleanup(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._work is not None:
            shutil.rmtree(self._work, ignore_errors=True)
            self._work = None

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
