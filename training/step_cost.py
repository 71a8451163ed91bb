"""What the motion blocks cost in the streaming step graph: one row per architecture variant.

Each row builds ``hcml_tiny`` (8 frames, 64x64, random weights: weights do not change the cost)
with the given options, exports its exact step graph (``NAME.step.onnx``, as ``hcml export``
does) and times one call at batch 1 on ONNX Runtime's CPU provider (2 intra-op threads, as the
element runs it), all rows interleaved in rounds within one process so that they share the
machine's state (``hcml.bench.common.time_interleaved``); the median call is reported, with its
ratio to the first row (the shipped architecture). ``--card`` rows time a card's own step graph
the same way.

Why levels 2-3 cost more than level 0: the step graph recomputes, after the p-th pairing op, p
provisional frames in every later op (hcml/model/step.py), so a deep level adds work to all that
follows it; and at beta 1 its reduced features are as wide as the backbone's.

    python training/step_cost.py --markdown            # the variants below
    python training/step_cost.py --card engines/hcml_tiny_motion.json --seconds 30

Accuracy of a variant needs a trained model: docs/RESULTS.md ("Cost") puts the measured top-1 of
the trained ones beside these timings.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

SHIPPED = {"levels": [0, 1, 2, 3], "beta": 1, "max_displacement": 2, "stride": 1,
           "moments_window": 8}  # fmt: skip

# name -> overrides of the shipped options
VARIANTS: dict[str, dict] = {
    "levels 0-3, beta 1 (shipped)": {},
    "levels 0-3, beta 2": {"beta": 2},
    "levels 0-3, beta 4": {"beta": 4},
    "levels 0-3, beta 1, d 1": {"max_displacement": 1},
    "levels 0-3, beta 1, no moments": {"moments_window": 0},
    "levels 1-3, beta 1": {"levels": [1, 2, 3]},
    "levels 0-1, beta 1": {"levels": [0, 1]},
    "levels 0-1, beta 2": {"levels": [0, 1], "beta": 2},
    "level 0, beta 1": {"levels": [0]},
    "level 0, beta 2": {"levels": [0], "beta": 2},
    "no motion block": {"levels": []},
}


def export_variant(options: dict, path: Path) -> Path:
    """Build hcml_tiny with the shipped options overridden by ``options``; write its step graph."""
    from hcml.export.onnx_export import export_step
    from hcml.model.registry import create_model
    from hcml.model.step import StepModel

    model = create_model(
        "hcml_tiny", num_classes=12, frames=8, input_size=(64, 64), **{**SHIPPED, **options}
    ).eval()
    export_step(StepModel(model, 8, (64, 64)).eval(), path)
    return path


def card_step(card_path: str) -> Path:
    """A card's step graph file."""
    from hcml.card import ModelCard, ModelCardError

    try:
        card = ModelCard.load(card_path)
    except ModelCardError as e:
        raise SystemExit(f"step_cost: {e}") from None
    if "step" not in card.files:
        raise SystemExit(f"step_cost: {card_path} has no step graph")
    return Path(card_path).resolve().parent / card.files["step"]


def time_graphs(paths: dict[str, Path], seconds: float, rounds: int, threads: int) -> dict:
    """Median ms per call of each graph at batch 1 (``hcml.bench.common.time_interleaved``)."""
    import onnxruntime as ort

    from hcml.bench.common import time_interleaved

    rng = np.random.default_rng(0)
    calls = {}
    for name, p in paths.items():
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        s = ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
        feeds = {
            i.name: rng.random([d if isinstance(d, int) else 1 for d in i.shape]).astype(np.float32)
            for i in s.get_inputs()
        }
        calls[name] = lambda s=s, feeds=feeds: s.run(None, feeds)
    times = time_interleaved(calls, seconds, rounds)
    return {n: t["median_ms"] for n, t in times.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--card", action="append", default=[], help="also time this card's step graph")
    p.add_argument("--only", nargs="*", help="variant names to run (default: all)")
    p.add_argument("--seconds", type=float, default=60.0, help="timing, all graphs together")
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    p.add_argument("--threads", type=int, default=2, help="ORT intra-op threads (element: 2)")
    p.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = p.parse_args(argv)
    names = args.only or list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {unknown}; known: {list(VARIANTS)}")
    with tempfile.TemporaryDirectory() as tmp:
        paths = {n: export_variant(VARIANTS[n], Path(tmp) / f"v{i}.onnx") for i, n in
                 enumerate(names)}  # fmt: skip
        for c in args.card:
            paths[f"card {c}"] = card_step(c)
        ms = time_graphs(paths, args.seconds, args.rounds, args.threads)
    base = ms[names[0]] if names else next(iter(ms.values()))
    if args.markdown:
        print(f"| variant | step ms (batch 1, {args.threads} threads) | ratio to first row |")
        print("|---|---:|---:|")
        for n, v in ms.items():
            print(f"| {n} | {v:.2f} | {v / base:.2f} |")
    else:
        for n, v in ms.items():
            print(f"{n:40s} {v:8.3f} ms  {v / base:5.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
