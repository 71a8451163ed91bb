"""``hcml bench streaming``: time per prediction, incremental step graph vs full window.

For each window T the model is exported (clip + step graphs) and run by a backend (ONNX Runtime
on the CPU by default) at batch 1: "full" re-runs the clip graph on T frames for every prediction
(what DeepStream's 3D action sample does), "step" feeds one frame to the step graph. Weights do not
change the timing, so a freshly initialized model of the registry is used unless --card is given.
The two are timed in alternating rounds (medians, ms per prediction); max |difference| is the
largest logit difference between the step graph after T frames and the clip graph on them.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from hcml.bench.common import bar_plot, footer, machine_line, plot_link, temp_dir, time_pair

TITLE = "Streaming: incremental vs full window"
DEFAULT_WINDOWS = [8, 16, 32]
DEFAULT_SECONDS = 3.0  # per measurement


def _flops(model: Any, window: int, size: tuple[int, int]) -> tuple[float, float] | None:
    """(GFLOP per clip forward, GFLOP per step) counted by torch's FlopCounterMode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from hcml.model.step import StepModel

    h, w = size
    step = StepModel(model, window, size).eval()
    out = []
    with torch.no_grad():
        for fn, args in (
            (model, (torch.zeros(1, 3, window, h, w),)),
            (step, (torch.zeros(1, 3, h, w), *step.init_state(1))),
        ):
            counter = FlopCounterMode(display=False)
            with counter:
                fn(*args)
            out.append(counter.get_total_flops() / 1e9)
    return out[0], out[1]


def _stepper(backend: Any, frames: Any):
    """A closure feeding the next of ``frames`` [N, 1, 3, H, W] to ``backend.run_step``."""
    box = {"state": backend.init_state(1), "i": 0}

    def step() -> None:
        _, box["state"] = backend.run_step(frames[box["i"] % len(frames)], box["state"])
        box["i"] += 1

    return step


def _max_diff(backend: Any, frames: Any, window: int) -> float:
    """max |step logits after T frames - clip logits on those T frames|."""
    import numpy as np

    state = backend.init_state(1)
    for t in range(window):
        logits, state = backend.run_step(frames[t], state)
    clip = np.stack([frames[t, 0] for t in range(window)], axis=1)[None]  # [1, 3, T, H, W]
    return float(np.abs(np.asarray(logits) - backend.run_clip(clip)).max())


def make_model(name: str, window: int, size: int | None):
    """A registry model (or the exporter's ``toy`` net) at window T and input H = W (eval)."""
    if name == "toy":
        from hcml.export.reference import ToyMotionNet

        return ToyMotionNet(frames=window, size=size or 32).eval()
    from hcml.model import create_model

    kw: dict[str, Any] = {"frames": window}
    if size:
        kw["input_size"] = (3, size, size)
    return create_model(name, **kw).eval()


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from hcml.backends import load_backend
    from hcml.export.onnx_export import export_model

    if args.threads:
        os.environ["HCML_THREADS"] = str(args.threads)
    seconds = args.seconds or DEFAULT_SECONDS
    rows = []
    with temp_dir() as tmp:
        for window in args.windows or DEFAULT_WINDOWS:
            model = None
            if args.card is not None:
                card_path = args.card
            else:
                model = make_model(args.model, window, args.size)
                card = export_model(model, tmp, f"bench_t{window}", window=window, check=False)
                card_path = card.path
            b = load_backend(card_path, backend=args.backend, device=args.device)
            t = b.card.window
            h, w = b.card.input_size
            rng = np.random.default_rng(0)
            clip = rng.standard_normal((1, 3, t, h, w), dtype=np.float32)
            frames = rng.standard_normal((max(64, t), 1, 3, h, w), dtype=np.float32)
            full, inc = time_pair(
                lambda clip=clip, b=b: b.run_clip(clip), _stepper(b, frames), seconds
            )
            flops = _flops(model, t, (h, w)) if model is not None else None
            rows.append(
                {
                    "window": t,
                    "input_size": [h, w],
                    "full_ms": full["median_ms"],
                    "step_ms": inc["median_ms"],
                    "full_p90_ms": full["p90_ms"],
                    "step_p90_ms": inc["p90_ms"],
                    "runs": [full["runs"], inc["runs"]],
                    "ratio": full["median_ms"] / inc["median_ms"],
                    "max_abs_diff": _max_diff(b, frames, t),
                    "clip_gflop": flops[0] if flops else None,
                    "step_gflop": flops[1] if flops else None,
                    "flop_ratio": flops[0] / flops[1] if flops else None,
                }
            )
            print(
                f"T={t:3d}  full window {full['median_ms']:8.2f} ms  "
                f"incremental {inc['median_ms']:7.2f} ms  ratio {rows[-1]['ratio']:5.2f}x"
                f"  max|diff| {rows[-1]['max_abs_diff']:.1e}"
                + (f"  (FLOP ratio {rows[-1]['flop_ratio']:.2f}x)" if flops else ""),
                flush=True,
            )
            if args.card is not None:
                break
    goal = next((r for r in rows if r["window"] == 16), None)
    return {
        "suite": "streaming",
        "model": str(args.card) if args.card else args.model,
        "backend": b.describe(),
        "batch": 1,
        "rows": rows,
        "goal": {
            "text": "incremental >= 5x faster than full window at T=16",
            "met": None if goal is None else goal["ratio"] >= 5.0,
        },
    }


def markdown(result: dict[str, Any], md: Path | None = None) -> str:
    """The streaming section of BENCHMARKS.md, generated from a result dict (never by hand)."""
    lines = [
        f"Model `{result['model']}`, backend {result['backend']}, batch 1 (one stream). "
        + machine_line(result),
        "",
        "| window T | input | full window (ms / prediction) | incremental step (ms / prediction) "
        "| speed-up | max abs diff | GFLOP clip / step | FLOP ratio |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        fl = (
            (f"{r['clip_gflop']:.3g} / {r['step_gflop']:.3g}", f"{r['flop_ratio']:.1f}x")
            if r.get("flop_ratio")
            else ("-", "-")
        )
        diff = f"{r['max_abs_diff']:.1e}" if r.get("max_abs_diff") is not None else "-"
        lines.append(
            f"| {r['window']} | {r['input_size'][0]}x{r['input_size'][1]} | {r['full_ms']:.2f} | "
            f"{r['step_ms']:.2f} | **{r['ratio']:.1f}x** | {diff} | {fl[0]} | {fl[1]} |"
        )
    goal = result.get("goal") or {}
    if goal.get("met") is not None:
        lines += ["", f"Goal: {goal['text']}: **{'met' if goal['met'] else 'not met'}**."]
    lines += ["", plot_link(result, md, "time per prediction vs window"), ""]
    lines.append(
        footer(
            result,
            "Medians of interleaved rounds (the machine is shared); the speed-up is full / "
            "incremental time per prediction; max abs diff: step graph after T frames vs clip "
            "graph on them (logits); FLOPs from torch's FlopCounterMode.",
        )
    )
    return "\n".join(lines).replace("\n\n\n\n", "\n\n")


def plot(result: dict[str, Any], out_dir: Path) -> Path:
    groups = {
        f"T={r['window']}": {"full window": r["full_ms"], "incremental step": r["step_ms"]}
        for r in result["rows"]
    }
    return bar_plot(
        out_dir / "streaming.png", groups, "ms / prediction", "Streaming: time per prediction"
    )
