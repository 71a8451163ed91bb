"""``hcml bench streams``: N live 1280x720 30 fps sources into one ``hcmlaction``, async, stride 1.

Pipeline (in a child process), per N::

    funnel name=f ! hcmlaction name=act model=CARD mode=async stride=1 max-batch=B !
        fakesink name=sink sync=false
    videotestsrc is-live=true pattern=smpte horizontal-speed=4 !
        video/x-raw,format=I420,width=1280,height=720,framerate=30/1 ! f.      (N times)

The sources scroll SMPTE bars (moving content at 1.8 ms a 720p frame on the 2-core EPYC);
``pattern=ball``, used until 2026-12-01, costs 7.3 ms a frame to draw there, so N ball sources
took the cores the element was being measured on.

Per N, over ``--seconds`` after a warm-up: predictions per stream (min/max), event latency
p50/p99 (running time when the element posts the event minus the window's last frame's PTS,
both on the pipeline clock; every source's timeline starts at 0 like the pipeline's),
frames in and out of the element (lost = in - out over the whole run, counted after EOS),
real-time ratio (frames in / N x 30 x seconds: below 1 the sources fell behind, i.e. frames
were late), windows dropped per
stream, CPU (process time / wall). The largest N with p99 <= 100 ms, no frame lost and the
sources in real time (>= 0.97) is reported next to the capacity that ``hcml bench backends``
predicts from the step graph alone (``benchmarks/backends.json``, if there).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from hcml.bench.common import (
    bench_card,
    footer,
    machine_line,
    md_table,
    paragraphs,
    percentiles,
    plot_link,
    run_gst_jobs,
    temp_dir,
    text_table,
)

TITLE = "Streams: N live 720p30 sources into one hcmlaction (async, stride 1)"
DEFAULT_STREAMS = (1, 2, 4, 6, 8)
DEFAULT_SECONDS = 12.0
P99_LIMIT_MS = 100.0


def _description(card: Path, n: int, w: int, h: int, fps: int, max_batch: int) -> str:
    sources = " ".join(
        f"videotestsrc is-live=true pattern=smpte horizontal-speed=4 ! "
        f"video/x-raw,format=I420,width={w},height={h},framerate={fps}/1 ! f."
        for _ in range(n)
    )
    return (
        f"funnel name=f ! hcmlaction name=act model={card} mode=async stride=1 "
        f"max-batch={max_batch} ! fakesink name=sink sync=false " + sources
    )


def backends_bound(path: Path = Path("benchmarks/backends.json")) -> dict[str, Any] | None:
    """Streams at 30 fps that ``hcml bench backends`` measured for the ORT step graph."""
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    cap = data.get("capacity", {}).get("onnxruntime cpu")
    return None if cap is None else {**cap, "date": data.get("date", "")}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    counts = tuple(args.streams or DEFAULT_STREAMS)
    seconds = args.seconds or DEFAULT_SECONDS
    w, h = (int(v) for v in (args.resolution or "1280x720").lower().split("x"))
    fps = args.fps or 30
    rows = []
    with temp_dir() as tmp:
        card, card_text = bench_card(args, tmp)
        alone = step_alone(card)
        for n in counts:
            print(f"streams: {n} live {w}x{h} @ {fps} fps sources, {seconds:.0f} s", flush=True)
            job = {"kind": "streams", "seconds": seconds,
                   "description": _description(card, n, w, h, fps, 8)}  # fmt: skip
            (r,) = run_gst_jobs([job], timeout=seconds + 300)
            rows.append(_row(n, fps, r, alone))
            print(text_table(*_table({"rows": rows[-1:]})), flush=True)
    result = {
        "suite": "streams",
        "model": card_text,
        "resolution": f"{w}x{h}",
        "fps": fps,
        "seconds": seconds,
        "pipeline": _description(Path("CARD"), 2, w, h, fps, 8),
        "rows": rows,
        "bound": backends_bound(),
        "step_alone_ms": alone,
    }
    result["capacity"] = capacity(rows)
    return result


def step_alone(card: Path, batches=(1, 2, 4, 8), seconds: float = 1.5) -> dict[int, float]:
    """ms per frame of the card's step graph called alone (same backend as the element's
    default), per batch size: the reference for the live cost per frame, in the same run."""
    import numpy as np

    from hcml.backends import load_backend

    backend = load_backend(card, backend="onnxruntime")
    h, w = backend.card.input_size
    out = {}
    for b in batches:
        frames = np.zeros((b, 3, h, w), np.float32)
        state = backend.init_state(b)
        for _ in range(3):
            _, state = backend.run_step(frames, state)
        calls, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            _, state = backend.run_step(frames, state)
            calls += 1
        out[b] = 1e3 * (time.perf_counter() - t0) / (calls * b)
    return out


def _row(n: int, fps: int, r: dict[str, Any], alone: dict[int, float]) -> dict[str, Any]:
    if r.get("errors"):
        return {"streams": n, "errors": r["errors"]}
    step = r.get("infer", {}).get("step", {"s": 0.0, "rows": 0})
    live = 1e3 * step["s"] / step["rows"] if step["rows"] else float("nan")
    mean_batch = sum(r["batches"]) / max(len(r["batches"]), 1)
    ref_batch = min(alone, key=lambda b: abs(b - mean_batch)) if alone else None
    lat = [x for v in r["latency_ms"].values() for x in v]
    per_stream = [len(v) for v in r["latency_ms"].values()]
    per_stream += [0] * (n - len(per_stream))
    return {
        "streams": n,
        "predictions_min": min(per_stream),
        "predictions_max": max(per_stream),
        "latency_ms": {**percentiles(lat), "max": max(lat, default=float("nan"))},
        "frames_in": r["frames_in"],
        "frames_out": r["frames_out"],
        "total_in": r.get("total_in"),
        "total_out": r.get("total_out"),
        "lost": r["lost"],
        "realtime": r["frames_in"] / (n * fps * r["wall_s"]),
        "dropped": sum(r["dropped"].values()),
        "cpu_pct": 100.0 * r["cpu_s"] / r["wall_s"],
        "mean_batch": mean_batch,
        "live_step_ms": live,
        "clip_calls": r.get("infer", {}).get("clip", {}).get("calls", 0),
        "step_alone_batch": ref_batch,
        "live_vs_alone": live / alone[ref_batch] if ref_batch else float("nan"),
    }


def capacity(rows: list[dict[str, Any]]) -> int:
    """Largest N with p99 <= 100 ms, no frame lost, sources in real time (0 if none)."""
    ok = [
        r["streams"]
        for r in rows
        if "errors" not in r
        and r["latency_ms"]["p99"] <= P99_LIMIT_MS
        and r["lost"] == 0
        and r["realtime"] >= 0.97
    ]
    return max(ok, default=0)


def _table(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    headers = ["N", "preds/stream min-max", "p50 ms", "p99 ms", "frames in", "lost",
               "real time", "dropped", "CPU %", "mean batch", "live step ms/frame",
               "live / alone"]  # fmt: skip
    rows = []
    for r in result["rows"]:
        if "errors" in r:
            rows.append([r["streams"], "error: " + "; ".join(r["errors"])[:60]] + [""] * 10)
            continue
        lat = r["latency_ms"]
        rows.append(
            [r["streams"], f"{r['predictions_min']}-{r['predictions_max']}", lat["p50"],
             lat["p99"], r["frames_in"], r["lost"], f"{r['realtime']:.2f}", r["dropped"],
             f"{r['cpu_pct']:.0f}", f"{r['mean_batch']:.2f}", _f(r.get("live_step_ms")),
             _f(r.get("live_vs_alone"))]
        )  # fmt: skip
    return headers, rows


def _alone_text(result: dict[str, Any]) -> str:
    alone = result.get("step_alone_ms") or {}
    return ", ".join(f"batch {b}: {float(v):.2f} ms/frame" for b, v in alone.items()) or "n/a"


def _f(v: float | None) -> str:
    return "-" if v is None or v != v else f"{v:.2f}"


def markdown(result: dict[str, Any], md: Path | None = None) -> str:
    bound = result.get("bound")
    bound_text = (
        f"`hcml bench backends` ({bound['date'][:10]}) predicts {bound['streams']:.1f} streams at "
        f"30 fps for the ORT step graph alone (batch {bound['batch']})"
        if bound
        else "no `hcml bench backends` result to compare with"
    )
    return paragraphs(
        f"{len(result['rows'])} runs of {result['seconds']:.0f} s each: N `videotestsrc "
        f"is-live=true` sources at {result['resolution']}, {result['fps']} fps through a funnel "
        f"into one `hcmlaction mode=async stride=1`; model: {result['model']}. "
        + machine_line(result),
        md_table(*_table(result)),
        f"Largest N with p99 <= {P99_LIMIT_MS:.0f} ms, no frame lost and the sources in real "
        f"time: **{result['capacity']}**; {bound_text}.",
        plot_link(result, md, "event latency and predictions per stream against N"),
        footer(
            result,
            "Latency: pipeline running time when the element posts hcml-action minus the "
            "window's last frame's PTS. Real time: frames into the element / (N x fps x "
            "seconds). Mean batch: streams served per backend call. Live step ms/frame: "
            "the element's backend step calls during the run (seconds / frames in them); live / "
            "alone: that over the step graph called alone in the same run at the nearest batch "
            f"size ({_alone_text(result)}): 1.0 means a live frame costs what the step graph "
            "costs.",
        ),
    )


def plot(result: dict[str, Any], out_dir: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if "errors" not in r]
    n = [r["streams"] for r in rows]
    fig, (a, b) = plt.subplots(2, 1, figsize=(6.4, 4.6), sharex=True)
    for key in ("p50", "p99"):
        a.plot(n, [r["latency_ms"][key] for r in rows], marker="o", label=key)
    a.axhline(P99_LIMIT_MS, color="gray", ls="--", lw=0.8)
    a.set_ylabel("event latency (ms)")
    a.legend(fontsize=8)
    a.grid(alpha=0.3)
    a.set_title(f"{result['resolution']} @ {result['fps']} fps sources, async", fontsize=10)
    b.plot(n, [r["realtime"] for r in rows], marker="o", label="real-time ratio")
    b.plot(n, [r["cpu_pct"] / 100 for r in rows], marker=".", label="CPU (cores)")
    b.set_xlabel("streams N")
    b.grid(alpha=0.3)
    b.legend(fontsize=8)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "streams.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
