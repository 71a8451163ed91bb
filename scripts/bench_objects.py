"""Cost of per-object classification against one whole-frame step call (issue 20).

    python scripts/bench_objects.py [--objects 1 4 16] [--frames 48] [--size 640x480]

Same run, same backend (the shipped model, ONNX Runtime CPU, incremental step graph): per
frame, (a) one whole frame: ``Preprocessor.frame`` + ``StreamEngine.push``; (b) N objects:
N ``Preprocessor.crop`` + one ``StreamEngine.push_many`` (one batched step call). Prints the
median ms per frame, ms per object and the ratio per-object / whole-frame call; JSON with
``--json``. No GStreamer: this is the element's per-buffer work without buffer mapping.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from hcml import DEFAULT_CARD
from hcml.backends import load_backend
from hcml.stream.engine import StreamEngine
from hcml.stream.preprocess import Preprocessor


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--objects", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--size", default="640x480")
    p.add_argument("--threads", type=int, default=1, help="torch threads (ORT uses its own)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    w, h = (int(v) for v in args.size.split("x"))
    backend = load_backend(str(DEFAULT_CARD))
    card = backend.card
    pre = Preprocessor(card.input_size, card.mean, card.std)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, h * w * 3, dtype=np.uint8) for _ in range(8)]
    ns = 40_000_000

    def whole() -> list[float]:
        engine = StreamEngine(backend, stride=1)
        times = []
        for t in range(args.frames):
            data = frames[t % len(frames)]
            t0 = time.perf_counter()
            engine.push("s", lambda d=data: pre.frame(d, "RGB", w, h), t * ns)
            times.append(time.perf_counter() - t0)
        return times

    def objects(n: int) -> list[float]:
        engine = StreamEngine(backend, stride=1)
        boxes = [((37 * k) % (w - 80), (53 * k) % (h - 160), 80, 160) for k in range(n)]
        times = []
        for t in range(args.frames):
            data = frames[t % len(frames)]
            t0 = time.perf_counter()
            items = [
                (f"s/{k}", lambda b=b, d=data: pre.crop(d, "RGB", w, h, b), t * ns)
                for k, b in enumerate(boxes)
            ]
            engine.push_many(items)
            times.append(time.perf_counter() - t0)
        return times

    whole()  # warm-up
    # frame_step 2: half the frames are sampled; the median over all frames mixes both, so
    # report the mean (every sampled frame's work, spread over the frames)
    base = statistics.fmean(whole()) * 1e3
    rows = [{"objects": 0, "ms_per_frame": base, "ms_per_object": base, "ratio": 1.0}]
    for n in args.objects:
        ms = statistics.fmean(objects(n)) * 1e3
        rows.append({"objects": n, "ms_per_frame": ms, "ms_per_object": ms / n,
                     "ratio": ms / n / base})  # fmt: skip
    if args.json:
        print(json.dumps(rows))
        return
    print(f"{'objects':>8s} {'ms/frame':>9s} {'ms/object':>10s} {'per-object / whole-frame':>25s}")
    for r in rows:
        name = "whole" if r["objects"] == 0 else str(r["objects"])
        print(f"{name:>8s} {r['ms_per_frame']:9.2f} {r['ms_per_object']:10.2f} {r['ratio']:25.2f}")


if __name__ == "__main__":
    main()
