"""``hcml bench backends``: clip and step graphs on every engine this machine has, batch 1/8/32.

Engines: ONNX Runtime and torch on the CPU; ONNX Runtime's CUDA provider, torch on CUDA and
TensorRT when present (a missing one is a row saying why). Each graph is called for about
``--seconds`` per (engine, graph, batch) after a warm-up call; the median call time gives
frames per second = batch / time: every call consumes one (sampled) frame of each of the batch's
streams and, at stride 1, gives each a prediction. A stream at 30 fps needs 30 / frame-step
calls a second, so "streams at 30 fps" = fps / (30 / frame-step); the machine's capacity is
that of the step graph (what ``mode=sync`` runs) at its best batch.
The model: --card, else the shipped card, else a random stand-in of the same shape.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hcml.bench.common import (
    bar_plot,
    bench_card,
    footer,
    machine_line,
    md_table,
    paragraphs,
    plot_link,
    temp_dir,
    text_table,
    time_calls,
)

TITLE = "Backends: clip and step graphs per engine and batch"
DEFAULT_BATCHES = [1, 8, 32]
DEFAULT_SECONDS = 1.0
SOURCE_FPS = 30


def engines(device: str) -> list[tuple[str, str]]:
    """(backend, device) pairs to try: CPU ones, then CUDA ones on ``device`` (or cuda)."""
    cuda = device if device.startswith("cuda") else "cuda"
    return [
        ("onnxruntime", "cpu"),
        ("torch", "cpu"),
        ("onnxruntime", cuda),
        ("torch", cuda),
        ("tensorrt", cuda),
    ]


def _open(card: Path, name: str, device: str, threads: int | None, build_plans: bool):
    """The backend, or the reason it cannot run here (a string)."""
    from hcml.backends import load_backend

    opts = {"threads": threads} if threads and name in ("onnxruntime", "torch") else {}
    try:
        if name == "tensorrt":
            from hcml.backends import tensorrt_backend as trt_b
            from hcml.card import ModelCard

            why = trt_b.missing()
            if why is not None:
                return why
            if trt_b.plan_key() not in ModelCard.load(card).plans():
                if not build_plans:
                    return f"no TensorRT plan for {trt_b.plan_key()} (run hcml build-engine)"
                from hcml.export.tensorrt import build_engines

                build_engines(card)
        return load_backend(card, backend=name, device=device, **opts)
    except Exception as e:  # noqa: BLE001 - any failure to open is a skipped row with its cause
        text = str(e).strip().splitlines()
        return f"{type(e).__name__}: {text[0] if text else ''}"


def _calls(backend: Any, graph: str, batch: int):
    """A zero-argument function making one ``graph`` call at ``batch`` streams."""
    import numpy as np

    card = backend.card
    t, (h, w) = card.window, card.input_size
    rng = np.random.default_rng(0)
    if graph == "clip":
        clip = rng.standard_normal((batch, 3, t, h, w), dtype=np.float32)
        return lambda: backend.run_clip(clip)
    frames = rng.standard_normal((4, batch, 3, h, w), dtype=np.float32)
    box = {"state": backend.init_state(batch), "i": 0}

    def step() -> None:
        _, box["state"] = backend.run_step(frames[box["i"] % 4], box["state"])
        box["i"] += 1

    return step


def measure(args: argparse.Namespace) -> dict[str, Any]:
    seconds = args.seconds or DEFAULT_SECONDS
    batches = args.batches or DEFAULT_BATCHES
    rows: list[dict[str, Any]] = []
    with temp_dir() as tmp:
        card, card_text = bench_card(args, tmp)
        stand_in = str(card).startswith(str(tmp))
        from hcml.card import ModelCard

        c = ModelCard.load(card)
        frame_step = c.frame_step or 1
        need = SOURCE_FPS / frame_step  # graph calls a second per 30 fps stream
        for name, device in engines(args.device):
            b = _open(card, name, device, args.threads, build_plans=stand_in)
            if isinstance(b, str):
                rows.append({"backend": name, "device": device, "skipped": b})
                print(f"{name:12s} {device:7s} skipped: {b}", flush=True)
                continue
            graphs = ["clip", "step"] if b.supports_step else ["clip"]
            for graph in graphs:
                for batch in batches:
                    t = time_calls(_calls(b, graph, batch), seconds)
                    fps = batch * 1e3 / t["median_ms"]
                    rows.append(
                        {
                            "backend": name,
                            "device": device,
                            "describe": b.describe(),
                            "graph": graph,
                            "batch": batch,
                            "ms_per_call": t["median_ms"],
                            "p90_ms": t["p90_ms"],
                            "runs": t["runs"],
                            "fps": fps,
                            "streams_at_30fps": fps / need,
                        }
                    )
                    print(
                        f"{name:12s} {device:7s} {graph:4s} batch {batch:3d}: "
                        f"{t['median_ms']:8.2f} ms/call {fps:8.1f} fps "
                        f"{fps / need:7.1f} streams",
                        flush=True,
                    )
            del b
    capacity = {}
    for r in rows:
        if r.get("graph") == "step":
            key = f"{r['backend']} {r['device']}"
            if key not in capacity or r["streams_at_30fps"] > capacity[key]["streams"]:
                capacity[key] = {"streams": r["streams_at_30fps"], "batch": r["batch"]}
    result = {
        "suite": "backends",
        "model": card_text,
        "window": c.window,
        "input_size": list(c.input_size),
        "frame_step": frame_step,
        "source_fps": SOURCE_FPS,
        "seconds": seconds,
        "rows": rows,
        "capacity": capacity,
    }
    print(text_table(*_table(result)), flush=True)
    return result


def _table(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    headers = ["engine", "graph", "batch", "ms / call", "frames / s", "streams at 30 fps"]
    rows = []
    for r in result["rows"]:
        engine = f"{r['backend']} ({r['device']})"
        if "skipped" in r:
            rows.append([engine, "-", "-", "-", "-", f"skipped: {r['skipped']}"])
            continue
        rows.append([engine, r["graph"], r["batch"], f"{r['ms_per_call']:.2f}",
                     f"{r['fps']:.1f}", f"{r['streams_at_30fps']:.1f}"])  # fmt: skip
    return headers, rows


def markdown(result: dict[str, Any], md: Path | None = None) -> str:
    engines_seen = {
        f"{r['backend']} ({r['device']})": r["describe"] for r in result["rows"] if "describe" in r
    }
    cap = "; ".join(
        f"**{key}: {v['streams']:.0f} streams** (batch {v['batch']})"
        for key, v in result["capacity"].items()
    )
    return paragraphs(
        f"Model: {result['model']}; window T={result['window']}, "
        f"{result['input_size'][0]}x{result['input_size'][1]}, frame-step "
        f"{result['frame_step']}. Engines: "
        + "; ".join(f"{k} = {v}" for k, v in engines_seen.items())
        + ". "
        + machine_line(result),
        md_table(*_table(result), align="llrrrr"),
        f"Streams at {result['source_fps']} fps this machine can hold (step graph, best "
        f"batch): {cap or 'none measured'}.",
        plot_link(result, md, "frames per second per engine and batch"),
        footer(
            result,
            f"Median call time over about {result['seconds']:g} s per row; frames / s = batch / "
            f"call time; streams = frames / s / ({result['source_fps']} / frame-step).",
        ),
    )


def plot(result: dict[str, Any], out_dir: Path) -> Path:
    groups: dict[str, dict[str, float | None]] = {}
    for r in result["rows"]:
        if "skipped" in r:
            continue
        groups.setdefault(f"{r['backend']}\n{r['device']} {r['graph']}", {})[
            f"batch {r['batch']}"
        ] = r["fps"]
    return bar_plot(out_dir / "backends.png", groups, "frames / s", "Backends: throughput")
