"""Serve model cards from a real Triton Inference Server (the tritonserver binary in the
nvidia-pytriton wheel), for `hcmlaction backend=triton server=HOST:PORT` and DeepStream's
nvinferserver in gRPC mode.

Writes each card's Triton models (NAME: clip graph; NAME_step: step graph, state sent by the
client; NAME_step_seq: step graph, state held by the server under the sequence batcher; python
backend running ONNX Runtime) into --repository (default: a temporary folder), starts
Triton on it and prints the endpoints: gRPC (inference), HTTP (/v2/health/ready, model
metadata) and metrics (Prometheus text, /metrics). SIGTERM or Ctrl-C shuts it down cleanly:
in-flight requests finish, sequences clients left open are dropped (one line says how many;
clients restart them with START on a server that answers again), exit status 0; a second
SIGTERM/Ctrl-C kills it at once. Endpoints bind --host (127.0.0.1 unless told otherwise).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("cards", nargs="+", type=Path, metavar="CARD", help="model card(s) (.json)")
    p.add_argument("--grpc-port", type=int, default=8001, help="gRPC inference port")
    p.add_argument("--http-port", type=int, default=8000, help="HTTP port (health, metadata)")
    p.add_argument("--metrics-port", type=int, default=8002, help="Prometheus metrics port")
    p.add_argument("--host", default="127.0.0.1", help="address every endpoint binds")
    p.add_argument(
        "--repository",
        type=Path,
        default=None,
        help="write the Triton model repository here and keep it (default: a temporary folder)",
    )
    p.add_argument("--max-batch", type=int, default=64, help="Triton max_batch_size")
    p.add_argument(
        "--queue-delay-us",
        type=int,
        default=500,
        help="dynamic batcher: how long a request may wait for others (microseconds)",
    )
    p.add_argument(
        "--instances",
        type=int,
        default=os.cpu_count() or 1,
        help="model instances (CPU) per graph (default: one per core, %(default)s here; "
        "measured best with --threads 1, BENCHMARKS.md 'Serving')",
    )
    p.add_argument(
        "--threads", type=int, default=1, help="ORT threads per instance (1; 0 = ORT's default)"
    )
    p.add_argument(
        "--sequence-idle-s",
        type=float,
        default=30.0,
        help="server-held step state (NAME_step_seq): a sequence unused this long (a client "
        "gone without END) is dropped and its state freed (seconds, default %(default)s)",
    )
    p.add_argument("--log-file", type=Path, default=None, help="Triton's log (default: hidden)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for ready")


def run(args: argparse.Namespace) -> int:
    from hcml.card import ModelCard, ModelCardError
    from hcml.export.triton_repo import sequence_idle_problem, write_triton_repo
    from hcml.serve.server import ServeError, TritonServer

    def fail(msg: str) -> int:
        print(f"hcml serve: {msg}", file=sys.stderr)
        return 2

    for port in (args.grpc_port, args.http_port, args.metrics_port):
        if not 0 < port < 65536:
            return fail(f"port {port} out of range 1-65535")
    problem = sequence_idle_problem(args.sequence_idle_s)
    if problem:
        return fail(problem)
    if len({args.grpc_port, args.http_port, args.metrics_port}) < 3:
        return fail("--grpc-port, --http-port and --metrics-port must differ")
    cards = []
    for path in args.cards:
        if not path.is_file():
            return fail(f"model card not found: {path}")
        try:
            cards.append(ModelCard.load(path))
        except (ModelCardError, ValueError, OSError) as e:
            return fail(f"bad model card {path}: {e}")
    names = [c.name for c in cards]
    if len(set(names)) < len(names):
        return fail(f"two cards share a name: {names}")

    tmp = None
    repo = args.repository
    if repo is None:
        tmp = tempfile.TemporaryDirectory(prefix="hcml-repo-")
        repo = Path(tmp.name)
    opts = dict(
        max_batch=args.max_batch,
        queue_delay_us=args.queue_delay_us,
        instances=args.instances,
        threads=args.threads,
        sequence_idle_s=args.sequence_idle_s,
    )
    try:
        for card in cards:
            write_triton_repo(card, repo, **opts)
    except OSError as e:
        return fail(f"cannot write the model repository {repo}: {e}")

    server = TritonServer(
        repo, args.grpc_port, args.http_port, args.metrics_port, args.host, args.log_file
    )
    stop = threading.Event()

    def on_signal(*_) -> None:
        if stop.is_set() and server.running():  # a second request: do not wait any more
            print("hcml serve: killing tritonserver", file=sys.stderr, flush=True)
            os.killpg(server.proc.pid, signal.SIGKILL)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    try:
        server.start(timeout=args.timeout)
    except ServeError as e:
        return fail(str(e))
    models = ", ".join(f"{n} + {n}_step + {n}_step_seq" for n in names)
    print(f"hcml serve: Triton ready, models {models} from {repo}", flush=True)
    print(f"  gRPC     {server.grpc_url}   (hcmlaction backend=triton server={server.grpc_url})")
    print(f"  health   {server.http_url}/v2/health/ready")
    print(f"  metrics  {server.metrics_url}", flush=True)
    rc = 0
    while not stop.wait(0.5):
        if not server.running():
            print(
                f"hcml serve: tritonserver exited ({server.proc.returncode}): {server.log_tail(2)}",
                file=sys.stderr,
            )
            rc = 1
            break
    if rc == 0:
        print("hcml serve: stopping (in-flight requests finish)", flush=True)
    code = server.stop()
    if rc == 0:
        n = server.dropped
        print(
            f"hcml serve: stopped (tritonserver exit {code}), dropped {n} open "
            f"sequence{'' if n == 1 else 's'}",
            flush=True,
        )
        if code != 0:
            print(
                f"hcml serve: tritonserver did not stop cleanly (exit {code}): {server.stop_error}",
                file=sys.stderr,
            )
            rc = 1
    if tmp is not None:
        tmp.cleanup()
    return rc
