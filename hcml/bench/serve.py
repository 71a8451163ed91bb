"""``hcml bench serve``: K client processes x M streams against one Triton server on loopback,
compared in the same run with local ONNX Runtime at the same total stream count.

Each client process opens the card with ``backend=triton`` (once per step-state mode:
``server``, the sequence batcher holds each stream's state and a call is M frame-only requests;
``client``, a call is one request carrying M frames and states) or ``onnxruntime`` for the
local rows (one ORT thread per process) and, in a closed loop for ``--seconds``, feeds one
sampled frame of each of its M streams per call (the step graph). Per row: frames / s over all
clients, p50 / p99 call latency, and for served rows the server's CPU use (utime + stime of
tritonserver and its python-backend stubs, in cores). The knee (per mode) is the smallest total
stream count whose served throughput reaches 90 % of that mode's best row. Wire bytes per frame
are the gRPC message sizes of one step request and response of each mode (``wire_bytes``).

Run ``hcml bench serve --clients 1 2 4 --streams 1 4`` (or ``python -m hcml.bench.serve``);
not part of ``all``; do not take numbers while other work shares the CPU. Server knobs for
finding where the time goes: ``--queue-delay-us``, ``--max-batch``, ``--instances``,
``--threads`` (ORT threads per model instance), ``--states``.
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

TITLE = "Serving: Triton on loopback vs local ONNX Runtime"
DEFAULT_CARD = Path(__file__).resolve().parents[2] / "engines" / "hcml_tiny_motion.json"


# ------------------------------------------------------------------------------ wire size
def wire_bytes(card_path: str | os.PathLike) -> dict[str, int]:
    """gRPC message bytes of one step-graph call for one stream (and of one clip call).

    Exact protobuf sizes (``ByteSize``) of the ``ModelInferRequest``/``ModelInferResponse``
    that tritonclient sends and Triton returns, raw tensor contents included.
    """
    import tritonclient.grpc as g
    from tritonclient.grpc import _utils, service_pb2

    from hcml.card import ModelCard, clip_model_name, step_model_name
    from hcml.export.triton_repo import sequence_model_name

    card = ModelCard.load(card_path)
    h, w = card.input_size
    st = card.tensors["step"]
    state = st.get("state", [])

    def request(model: str, tensors: dict[str, tuple], seq: bool = False) -> int:
        inputs = []
        for name, shape in tensors.items():
            i = g.InferInput(name, list(shape), "FP32")
            i.set_data_from_numpy(np.zeros(shape, np.float32))
            inputs.append(i)
        req = _utils._get_inference_request(
            model_name=model,
            inputs=inputs,
            model_version="",
            request_id="",
            outputs=None,
            sequence_id=123456 if seq else 0,
            sequence_start=False,
            sequence_end=False,
            priority=0,
            timeout=None,
            parameters=None,
        )
        return req.ByteSize()

    def response(model: str, tensors: dict[str, tuple]) -> int:
        r = service_pb2.ModelInferResponse(model_name=model, model_version="1")
        for name, shape in tensors.items():
            o = r.outputs.add(name=name, datatype="FP32")
            o.shape.extend(shape)
            r.raw_output_contents.append(np.zeros(shape, np.float32).tobytes())
        return r.ByteSize()

    frame = {st.get("input", "frame"): (1, 3, h, w)}
    logits = {st.get("output", "logits"): (1, len(card.labels))}
    s_in = {s["name"]: (1, *s["shape"][1:]) for s in state}
    s_out = {s["out"]: (1, *s["shape"][1:]) for s in state}
    clip_in = {card.tensors["clip"].get("input", "frames"): (1, 3, card.window, h, w)}
    return {
        "state_bytes": int(sum(4 * np.prod(s["shape"][1:]) for s in state)),
        "frame_bytes": 4 * 3 * h * w,
        "client_state_request": request(step_model_name(card), {**frame, **s_in}),
        "client_state_response": response(step_model_name(card), {**logits, **s_out}),
        "server_state_request": request(sequence_model_name(card), frame, seq=True),
        "server_state_response": response(sequence_model_name(card), logits),
        "clip_request": request(clip_model_name(card), clip_in),
        "clip_response": response(clip_model_name(card), logits),
    }


# ------------------------------------------------------------------------------ clients
def _client(job: dict[str, Any], ready: Any, go: Any, until: Any, out: Any) -> None:
    """One client process: M streams in a closed loop from ``go`` until ``until`` (monotonic)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from hcml.backends import load_backend

    opts = {"threads": 1}
    if job["backend"] == "triton":
        opts = {"server": job["server"], "state": job["state"]}
    b = load_backend(job["card"], backend=job["backend"], **opts)
    m = job["streams"]
    h, w = b.card.input_size
    frame = np.random.default_rng(0).standard_normal((m, 3, h, w), dtype=np.float32)
    state = b.init_state(m)
    for _ in range(3):  # warm-up, connection made
        _, state = b.run_step(frame, state)
    ready.put(os.getpid())
    go.wait()
    lat = []
    while time.monotonic() < until.value:
        t = time.perf_counter()
        _, state = b.run_step(frame, state)
        lat.append(time.perf_counter() - t)
    out.put({"calls": len(lat), "frames": len(lat) * m, "lat": lat})
    b.close() if hasattr(b, "close") else None  # ends the server's sequences


def _cpu_seconds(pid: int) -> float:
    """utime + stime (s) of ``pid`` and its direct children (the python-backend stubs)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(p.name) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _model_of(card: str, state: str) -> str:
    from hcml.card import ModelCard, step_model_name
    from hcml.export.triton_repo import sequence_model_name

    c = ModelCard.load(card)
    return sequence_model_name(c) if state == "server" else step_model_name(c)


def _server_metrics(server) -> dict[str, float]:
    """Triton's cumulative per-model counters: {(model, metric): value} (Prometheus text)."""
    import urllib.request

    with urllib.request.urlopen(server.metrics_url, timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("nv_inference_") and 'model="' in line:
            metric = line.split("{", 1)[0]
            model = line.split('model="', 1)[1].split('"', 1)[0]
            out[(model, metric)] = float(line.rsplit(" ", 1)[1])
    return out


def _breakdown(before: dict, after: dict, model: str) -> dict[str, float]:
    """Per request on the server (ms): queue, input, infer, output; rows (streams) and
    requests per model execute."""

    def d(metric: str) -> float:
        return after.get((model, metric), 0.0) - before.get((model, metric), 0.0)

    n, execs = d("nv_inference_request_success"), d("nv_inference_exec_count")
    if not n or not execs:
        return {}
    out = {"batch": d("nv_inference_count") / execs, "requests_per_execute": n / execs}
    for key in ("request", "queue", "compute_input", "compute_infer", "compute_output"):
        out[f"{key}_ms"] = d(f"nv_inference_{key}_duration_us") / n / 1e3
    return out


def _run_row(
    card: str, backend: str, server, k: int, m: int, seconds: float, state: str = ""
) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    ready, out, go, until = ctx.Queue(), ctx.Queue(), ctx.Event(), ctx.Value("d", 0.0)
    job = {
        "card": card,
        "backend": backend,
        "server": server.grpc_url if server else "",
        "streams": m,
        "state": state,
    }
    procs = [ctx.Process(target=_client, args=(job, ready, go, until, out)) for _ in range(k)]
    for p in procs:
        p.start()
    for _ in procs:  # every client loaded and warm before the clock starts
        ready.get(timeout=300)
    cpu0 = _cpu_seconds(server.proc.pid) if server is not None else 0.0
    m0 = _server_metrics(server) if server is not None else {}
    until.value = time.monotonic() + seconds
    go.set()
    results = [out.get(timeout=seconds + 120) for _ in procs]
    cpu = _cpu_seconds(server.proc.pid) - cpu0 if server is not None else None
    m1 = _server_metrics(server) if server is not None else {}
    for p in procs:
        p.join(30)
    lat = sorted(x for r in results for x in r["lat"])
    frames = sum(r["frames"] for r in results)
    return {
        "backend": backend,
        "state": state or None,
        "clients": k,
        "streams_per_client": m,
        "streams": k * m,
        "fps": frames / seconds,
        "p50_ms": 1e3 * statistics.median(lat),
        "p99_ms": 1e3 * lat[min(len(lat) - 1, int(0.99 * len(lat)))],
        "calls": len(lat),
        "server_cpu_cores": None if cpu is None else cpu / seconds,
        "server_ms": _breakdown(m0, m1, _model_of(card, state)) if server is not None else {},
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from hcml.export.triton_repo import write_triton_repo
    from hcml.serve.server import TritonServer, free_port

    card = str(getattr(args, "card", None) or DEFAULT_CARD)
    clients = getattr(args, "clients", None) or [1, 2, 4]
    streams = getattr(args, "streams", None) or [1, 4]
    seconds = getattr(args, "seconds", None) or 5.0
    states = getattr(args, "states", None) or ["server", "client"]
    # hcml serve's defaults: one single-threaded instance per core (2 x 1 beat 1 x 2 threads at
    # every K x M with server-held state on the 2-core machine, 2026-12-01, BENCHMARKS.md)
    server_opts = {"queue_delay_us": 500, "max_batch": 64, "instances": os.cpu_count() or 1,
                   "threads": 1}  # fmt: skip
    for key in server_opts:  # `hcml bench` shares one namespace: other suites' None = unset
        if getattr(args, key, None) is not None:
            server_opts[key] = int(getattr(args, key))
    rows = []
    with tempfile.TemporaryDirectory(prefix="hcml-bench-serve-") as tmp:
        write_triton_repo(card, tmp, **server_opts)
        server = TritonServer(tmp, free_port(), free_port(), free_port()).start(timeout=300)
        try:
            for k, m in itertools.product(clients, streams):
                runs = [("triton", s) for s in states] + [("onnxruntime", "")]
                for backend, state in runs:
                    srv = server if backend == "triton" else None
                    row = _run_row(card, backend, srv, k, m, seconds, state)
                    rows.append(row)
                    print(
                        f"{backend:12s} {state:6s} K={k} M={m}: {row['fps']:.1f} frames/s, p50 "
                        f"{row['p50_ms']:.1f} ms, p99 {row['p99_ms']:.1f} ms",
                        flush=True,
                    )
        finally:
            server.stop()
    knees = {}
    for state in states:
        served = [r for r in rows if r["backend"] == "triton" and r["state"] == state]
        best = max(r["fps"] for r in served)
        knees[state] = min(
            (r for r in served if r["fps"] >= 0.9 * best), key=lambda r: r["streams"]
        )["streams"]
    return {
        "card": card,
        "seconds": seconds,
        "server_options": server_opts,
        "rows": rows,
        "wire": wire_bytes(card),
        "knee_streams": knees,
        "title": TITLE,
    }


def markdown(result: dict[str, Any], md: Path | None = None) -> str:
    from hcml.bench.common import footer, machine_line, md_table, paragraphs, plot_link

    rows = []
    for r in result["rows"]:
        if r["backend"] != "triton":
            continue
        lo = [
            x
            for x in result["rows"]
            if x["backend"] == "onnxruntime"
            and (x["clients"], x["streams_per_client"]) == (r["clients"], r["streams_per_client"])
        ]
        lo_fps = lo[0]["fps"] if lo else float("nan")
        rows.append(
            [
                r["clients"],
                r["streams_per_client"],
                r["streams"],
                r.get("state") or "client",
                f"{r['fps']:.1f}",
                f"{lo_fps:.1f}",
                f"{r['fps'] / lo_fps:.2f}",
                f"{r['p50_ms']:.1f}",
                f"{r['p99_ms']:.1f}",
                f"{lo[0]['p50_ms']:.1f}" if lo else "",
                f"{r['server_cpu_cores']:.2f}",
            ]
        )
    split = []
    for r in result["rows"]:
        b = r.get("server_ms") or {}
        if r["backend"] == "triton" and b:
            split.append(
                [
                    r["clients"],
                    r["streams_per_client"],
                    r.get("state") or "client",
                    f"{b['batch']:.1f}",
                    f"{b.get('requests_per_execute', 0):.1f}",
                    f"{b['request_ms']:.1f}",
                    f"{b['queue_ms']:.1f}",
                    f"{b['compute_input_ms']:.1f}",
                    f"{b['compute_infer_ms']:.1f}",
                    f"{b['compute_output_ms']:.1f}",
                ]
            )
    w = result["wire"]
    knees = result["knee_streams"]
    if not isinstance(knees, dict):  # a result from before the two modes
        knees = {"client": knees}
    opts = result.get("server_options")
    return paragraphs(
        machine_line(result) if "machine" in result else "",
        md_table(
            [
                "clients K",
                "streams M",
                "K x M",
                "step state",
                "served frames/s",
                "local frames/s",
                "served / local",
                "p50 ms",
                "p99 ms",
                "local p50 ms",
                "server CPU (cores)",
            ],
            rows,
            align="rrrlrrrrrrr",
        ),
        "Knee (smallest K x M within 90 % of the mode's best served frames/s): "
        + ", ".join(f"state={s} {n} streams" for s, n in knees.items())
        + ". "
        + " ".join(_targets(result, knees))
        + " Wire bytes per sampled frame and stream: "
        f"client-held state {w['client_state_request']} up + {w['client_state_response']} down; "
        f"server-held state {w['server_state_request']} up + {w['server_state_response']} down."
        + (
            " Server: "
            + ", ".join(f"{k}={v}" for k, v in opts.items())
            + " (threads 0 = ORT's default)."
            if opts
            else ""
        ),
        "Where a served request's time goes (Triton's per-model counters over the timed "
        "seconds, per request; with the python backend 'infer' is the model.py execute: IPC to "
        "the stub, ORT, the state store; the rest of a call's latency is the client and gRPC):"
        if split
        else "",
        md_table(
            [
                "K",
                "M",
                "step state",
                "streams / execute",
                "requests / execute",
                "server ms / request",
                "queue",
                "input",
                "infer",
                "output",
            ],
            split,
            align="rrlrrrrrrr",
        )
        if split
        else "",
        plot_link(result, md, "served (per step-state mode) and local frames/s, served p99"),
        footer(result, "Closed loop per client; one step call = one sampled frame of M streams.")
        if "command" in result
        else "",
    )


def _targets(result: dict[str, Any], knees: dict[str, int]) -> list[str]:
    """One sentence per mode: served / local range and p99 at half the knee (the targets)."""
    out = []
    for state, knee in knees.items():
        served = [
            r
            for r in result["rows"]
            if r["backend"] == "triton" and (r.get("state") or "client") == state
        ]
        ratios = []
        for r in served:
            lo = [
                x["fps"]
                for x in result["rows"]
                if x["backend"] == "onnxruntime" and x["streams"] == r["streams"]
                and x["clients"] == r["clients"]
            ]  # fmt: skip
            ratios += [r["fps"] / lo[0]] if lo else []
        half = [r for r in served if r["streams"] <= max(1, knee // 2)]
        at = max(half, key=lambda r: (r["streams"], -r["p99_ms"])) if half else None
        text = (
            f"state={state}: served / local {min(ratios):.2f}-{max(ratios):.2f}" if ratios else ""
        )
        if at is not None:
            text += (
                f", p99 at half the knee ({at['streams']} streams, K={at['clients']}): "
                f"{at['p99_ms']:.1f} ms"
            )
        out.append(text + " (targets: >= 0.7, <= 50 ms).")
    return out


def plot(result: dict[str, Any], out_dir: Path) -> Path:
    """serve.png: frames/s (served vs local) and served p99 latency against total streams."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def best(backend: str, state: str | None) -> list[dict]:
        """Per total stream count, the row (K, M split) with the most frames/s."""
        out: dict[int, dict] = {}
        for r in result["rows"]:
            mine = r["backend"] == backend and (state is None or r.get("state") == state)
            if mine and (r["streams"] not in out or r["fps"] > out[r["streams"]]["fps"]):
                out[r["streams"]] = r
        return [out[n] for n in sorted(out)]

    states = sorted({r.get("state") for r in result["rows"] if r["backend"] == "triton"} - {None})
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax2 = ax.twinx()
    for state, color in zip(states or [None], ("C0", "C2"), strict=False):
        rows = best("triton", state)
        label = f"triton state={state}" if state else "triton"
        xs = [r["streams"] for r in rows]
        ax.plot(xs, [r["fps"] for r in rows], "o-", color=color, label=label)
        ax2.plot(xs, [r["p99_ms"] for r in rows], ":", color=color, label=f"{label} p99")
    rows = best("onnxruntime", None)
    ax.plot([r["streams"] for r in rows], [r["fps"] for r in rows], "s--", color="C1",
            label="local onnxruntime")  # fmt: skip
    ax.set_xlabel("total streams (K clients x M streams; best split)")
    ax.set_ylabel("frames / s")
    ax2.set_ylabel("served p99 ms (dotted)")
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title(TITLE, fontsize=10)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "serve.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    import json

    p = argparse.ArgumentParser(prog="python -m hcml.bench.serve", description=__doc__)
    p.add_argument("--card", type=Path, default=None)
    p.add_argument("--clients", type=int, nargs="+", default=None, help="K values (1 2 4)")
    p.add_argument("--streams", type=int, nargs="+", default=None, help="M values (1 4)")
    p.add_argument("--seconds", type=float, default=None, help="timed seconds per row (5)")
    p.add_argument("--queue-delay-us", type=int, default=500, help="batcher wait (500)")
    p.add_argument("--max-batch", type=int, default=64, help="Triton max_batch_size (64)")
    p.add_argument("--instances", type=int, default=None,
                   help="model instances per graph (default: one per CPU core)")  # fmt: skip
    p.add_argument("--threads", type=int, default=None,
                   help="ORT threads per instance (default 1; 0: ORT's default)")  # fmt: skip
    p.add_argument(
        "--states", nargs="+", choices=["server", "client"], default=None,
        help="step-state modes to serve (server client)",
    )  # fmt: skip
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--plots", type=Path, default=None, help="write serve.png into this folder")
    p.add_argument("--wire-only", action="store_true", help="print the wire bytes and exit")
    args = p.parse_args(argv)
    if args.wire_only:
        print(json.dumps(wire_bytes(args.card or DEFAULT_CARD), indent=1))
        return 0
    result = measure(args)
    print(markdown(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    if args.plots:
        print(f"plot: {plot(result, args.plots)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
