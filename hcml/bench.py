"""Benchmarks. `hcml bench streaming`: time per prediction, incremental step graph vs full window.

For each window T the model is exported (clip + step graphs) and run by a backend (ONNX Runtime
on the CPU by default) at batch 1: "full" re-runs the clip graph on T frames for every prediction
(what DeepStream's 3D action sample does), "step" feeds one frame to the step graph. Weights do not
change the timing, so a freshly initialized model of the registry is used unless --card is given.
Results print as a table; --json writes them (with the machine) and --markdown rewrites the
streaming section of a markdown file (BENCHMARKS.md) from those same numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SUITES = ("streaming", "model", "element", "latency", "backends", "train", "all")
BEGIN, END = "<!-- bench:streaming:begin -->", "<!-- bench:streaming:end -->"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("suite", choices=SUITES, help="which benchmark")
    p.add_argument("--json", type=Path, default=None, help="write the results here")
    p.add_argument("--markdown", type=Path, default=None, help="update this file's section")
    p.add_argument("--model", default="hcml_tiny", help="registry name (or 'toy')")
    p.add_argument("--card", type=Path, default=None, help="time this exported model instead")
    p.add_argument("--windows", type=int, nargs="+", default=[8, 16, 32], help="window sizes T")
    p.add_argument("--size", type=int, default=None, help="input H = W (default: the model's)")
    p.add_argument("--backend", default="onnxruntime", help="onnxruntime | torch | tensorrt")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    p.add_argument("--seconds", type=float, default=3.0, help="time budget per measurement")


def machine() -> dict[str, Any]:
    """Where the numbers were measured."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numpy
    import onnxruntime
    import torch

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
    }


def _time_pair(fa, fb, seconds: float, rounds: int = 6) -> tuple[dict, dict]:
    """Median / p90 ms per call of fa() and fb(), measured in alternating rounds.

    The machine may be shared: alternating short rounds exposes both functions to the same
    background load, so the ratio stays honest even when absolute times drift.
    """
    for f in (fa, fb, fa, fb):  # warm-up
        f()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(rounds):
        for f, acc in ((fa, times[0]), (fb, times[1])):
            start = time.perf_counter()
            n = 0
            while n < 3 or time.perf_counter() - start < seconds / (2 * rounds):
                t0 = time.perf_counter()
                f()
                acc.append(time.perf_counter() - t0)
                n += 1
    out = []
    for acc in times:
        acc.sort()
        out.append(
            {
                "median_ms": 1e3 * statistics.median(acc),
                "p90_ms": 1e3 * acc[int(0.9 * (len(acc) - 1))],
                "runs": len(acc),
            }
        )
    return out[0], out[1]


def _flops(model: Any, window: int, size: tuple[int, int]) -> tuple[float, float] | None:
    """(GFLOP per clip forward, GFLOP per step) counted by torch's FlopCounterMode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from hcml.export.step import StepModel

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


def _make_model(name: str, window: int, size: int | None):
    if name == "toy":
        from hcml.export.reference import ToyMotionNet

        return ToyMotionNet(frames=window, size=size or 32).eval()
    try:
        from hcml.model import create_model
    except ImportError:  # the package may not re-export it
        from hcml.model.registry import create_model

    kw: dict[str, Any] = {"frames": window}
    if size:
        kw["input_size"] = (3, size, size)
    return create_model(name, **kw).eval()


def streaming(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from hcml.backends import load_backend
    from hcml.export.onnx_export import export_model

    if args.threads:
        os.environ["HCML_THREADS"] = str(args.threads)
    rows = []
    with tempfile.TemporaryDirectory(prefix="hcml-bench-") as tmp:
        for window in args.windows:
            model = None
            if args.card is not None:
                card_path = args.card
            else:
                model = _make_model(args.model, window, args.size)
                card = export_model(model, tmp, f"bench_t{window}", window=window, check=False)
                card_path = card.path
            b = load_backend(card_path, backend=args.backend, device=args.device)
            t = b.card.window
            h, w = b.card.input_size
            rng = np.random.default_rng(0)
            clip = rng.standard_normal((1, 3, t, h, w), dtype=np.float32)
            frames = rng.standard_normal((64, 1, 3, h, w), dtype=np.float32)
            full, inc = _time_pair(
                lambda clip=clip, b=b: b.run_clip(clip), _stepper(b, frames), args.seconds
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
                    "clip_gflop": flops[0] if flops else None,
                    "step_gflop": flops[1] if flops else None,
                    "flop_ratio": flops[0] / flops[1] if flops else None,
                }
            )
            print(
                f"T={t:3d}  full window {full['median_ms']:8.2f} ms  "
                f"incremental {inc['median_ms']:7.2f} ms  ratio {rows[-1]['ratio']:5.2f}x"
                + (f"  (FLOP ratio {rows[-1]['flop_ratio']:.2f}x)" if flops else ""),
                flush=True,
            )
            if args.card is not None:
                break
    return {
        "suite": "streaming",
        "model": str(args.card) if args.card else args.model,
        "backend": b.describe(),
        "batch": 1,
        "command": "hcml " + " ".join(sys.argv[1:]),
        "machine": machine(),
        "rows": rows,
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
    }


def markdown_table(result: dict[str, Any]) -> str:
    """The streaming section of BENCHMARKS.md, generated from a result dict (never by hand)."""
    m = result["machine"]
    lines = [
        BEGIN,
        f"Model `{result['model']}`, backend {result['backend']}, batch 1 (one stream), "
        f"measured {result['date']} on {m['cpu']} ({m['cores']} cores visible), "
        f"torch {m['torch']}, onnxruntime {m['onnxruntime']}.",
        "",
        "| window T | input | full window (ms / prediction) | incremental step (ms / prediction) "
        "| speed-up | GFLOP clip / step | FLOP ratio |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        fl = (
            (f"{r['clip_gflop']:.3g} / {r['step_gflop']:.3g}", f"{r['flop_ratio']:.1f}x")
            if r.get("flop_ratio")
            else ("-", "-")
        )
        lines.append(
            f"| {r['window']} | {r['input_size'][0]}x{r['input_size'][1]} | {r['full_ms']:.2f} | "
            f"{r['step_ms']:.2f} | **{r['ratio']:.1f}x** | {fl[0]} | {fl[1]} |"
        )
    lines += [
        "",
        f"Command: `{result['command']}`. Medians of interleaved rounds (the machine is shared); "
        "the speed-up is full / incremental time per prediction; FLOPs from torch's "
        "FlopCounterMode. Generated from the JSON by the bench, not typed.",
        END,
    ]
    return "\n".join(lines)


def write_markdown(path: Path, result: dict[str, Any]) -> None:
    section = markdown_table(result)
    text = path.read_text() if path.is_file() else "# Benchmarks\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + section + tail
    else:
        text = (
            text.rstrip("\n") + "\n\n## Streaming: incremental vs full window\n\n" + section + "\n"
        )
    path.write_text(text)


def _model_suite(args: argparse.Namespace) -> dict[str, Any] | None:
    """FLOPs / params per branch from ``hcml.model.complexity`` (None when it is not there)."""
    try:
        from hcml.model import complexity
    except ImportError:
        return None
    reports = [complexity.report(args.model, window, args.size) for window in args.windows]
    print(complexity.format_table(reports))
    return {"suite": "model", "reports": reports}


def run(args: argparse.Namespace) -> int:
    results: dict[str, Any] = {}
    if args.suite in ("streaming", "all"):
        results["streaming"] = streaming(args)
        if args.markdown:
            write_markdown(args.markdown, results["streaming"])
    if args.suite in ("model", "all"):
        model = _model_suite(args)
        if model is None and args.suite == "model":
            print(
                "hcml bench model: not implemented yet (needs hcml.model.complexity)",
                file=sys.stderr,
            )
            return 2
        if model is not None:
            results["model"] = model
    if not results:
        print(
            f"hcml bench {args.suite}: not implemented yet (tracked in issue #9)", file=sys.stderr
        )
        return 2
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = results if args.suite == "all" else results[args.suite]
        args.json.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return 0
