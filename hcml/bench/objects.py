"""``hcml bench objects``: the cost of per-object classification against one whole-frame call.

Same run, same backend (``--card``, default the shipped model; ONNX Runtime on the CPU unless
``--backend``), the incremental step graph, one engine a variant. Per video frame
(``--resolution``, default 640x480, RGB):

* ``whole``: ``Preprocessor.frame`` + ``StreamEngine.push`` (one stream, one step call);
* ``N objects`` (``--objects``, default 1 4 16): N ``Preprocessor.crop`` of 80x160 boxes +
  one ``StreamEngine.push_many`` (the N objects' states stacked into ONE batched step call),
  which is what ``hcmlaction`` does per buffer in per-object mode, without the buffer mapping.

The variants run in alternating rounds (``--rounds``, ``--frames`` frames each, after one
window of warm-up frames), so background load hits them alike. With frame-step k only every
k-th frame is sampled, so the cost is the mean over all frames (sampled or not), in ms per
frame; ms per object = that / N; the ratio is ms per object / ms of the whole-frame variant
(same run). Absolute times are only comparable inside one run.
"""

from __future__ import annotations

import argparse
import time
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
)

TITLE = "Objects: per-object cost vs one whole-frame step call"
DEFAULT_OBJECTS = (1, 4, 16)
DEFAULT_FRAMES = 48  # frames per variant and round
DEFAULT_ROUNDS = 3
BOX = (80, 160)  # w, h of an object's box (a person-shaped ROI)
RATIO_GOAL = 1.25  # per-object cost / one whole-frame step call, at every N


def _size(text: str | None) -> tuple[int, int]:
    w, _, h = (text or "640x480").partition("x")
    if not (w.isdigit() and h.isdigit()) or int(w) < 2 * BOX[0] or int(h) < BOX[1] + 8:
        raise ValueError(f"--resolution: expected WxH of at least {2 * BOX[0]}x{BOX[1] + 8}")
    return int(w), int(h)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import torch

    from hcml.backends import load_backend
    from hcml.stream.engine import StreamEngine
    from hcml.stream.preprocess import Preprocessor

    if args.threads:
        torch.set_num_threads(args.threads)
    w, h = _size(args.resolution)
    counts = list(args.objects or DEFAULT_OBJECTS)
    n_frames, rounds = args.frames or DEFAULT_FRAMES, args.rounds or DEFAULT_ROUNDS
    with temp_dir() as tmp:
        card_path, what = bench_card(args, tmp)
        backend = load_backend(str(card_path), backend=args.backend, device=args.device)
        card = backend.card
        pre = Preprocessor(card.input_size, card.mean, card.std)
        rng = np.random.default_rng(0)
        images = [rng.integers(0, 256, h * w * 3, dtype=np.uint8) for _ in range(8)]
        ns = 40_000_000
        engines = {n: StreamEngine(backend, stride=1) for n in [0, *counts]}
        clock = {n: 0 for n in engines}  # frames fed so far (PTS)
        spent = {n: 0.0 for n in engines}
        timed = {n: 0 for n in engines}

        def boxes(n: int) -> list[tuple[int, int, int, int]]:
            return [((37 * k) % (w - BOX[0]), (53 * k) % (h - BOX[1]), *BOX) for k in range(n)]

        def feed(n: int, frames: int, timing: bool) -> None:
            engine, objs = engines[n], boxes(n)
            for _ in range(frames):
                t = clock[n]
                data = images[t % len(images)]
                t0 = time.perf_counter()
                if n == 0:
                    engine.push("s", lambda d=data: pre.frame(d, "RGB", w, h), t * ns)
                else:
                    engine.push_many([
                        (f"s/{k}", lambda b=b, d=data: pre.crop(d, "RGB", w, h, b), t * ns)
                        for k, b in enumerate(objs)
                    ])  # fmt: skip
                if timing:
                    spent[n] += time.perf_counter() - t0
                    timed[n] += 1
                clock[n] += 1

        warm = card.window * card.frame_step
        for n in engines:  # prime every state: each timed sampled frame is a real prediction
            feed(n, warm, timing=False)
        for _ in range(rounds):
            for n in engines:
                feed(n, n_frames, timing=True)
        whole = 1e3 * spent[0] / timed[0]
        rows = [{"objects": 0, "variant": "whole frame", "ms_per_frame": whole,
                 "ms_per_object": whole, "ratio": 1.0, "frames": timed[0]}]  # fmt: skip
        for n in counts:
            ms = 1e3 * spent[n] / timed[n]
            name = f"{n} object" + "s" * (n > 1)
            rows.append({"objects": n, "variant": name, "ms_per_frame": ms,
                         "ms_per_object": ms / n, "ratio": ms / n / whole,
                         "frames": timed[n]})  # fmt: skip
        print(text_table(["variant", "ms / frame", "ms / object", "x whole-frame call"],
                         [[r["variant"], r["ms_per_frame"], r["ms_per_object"], r["ratio"]]
                          for r in rows]), flush=True)  # fmt: skip
        return {
            "model": what,
            "backend": backend.describe(),
            "resolution": [w, h],
            "box": list(BOX),
            "frame_step": card.frame_step,
            "rows": rows,
            "goal": {
                "text": f"cost per object <= {RATIO_GOAL}x one whole-frame step call at every N",
                "met": all(r["ratio"] <= RATIO_GOAL for r in rows[1:]),
            },
        }


def markdown(result: dict[str, Any], md: Path | None = None) -> str:
    w, h = result["resolution"]
    rows = [[r["variant"], r["ms_per_frame"], r["ms_per_object"], f"{r['ratio']:.2f}x"]
            for r in result["rows"]]  # fmt: skip
    goal = result["goal"]
    return paragraphs(
        f"{result['model']}, backend {result['backend']}, {w}x{h} RGB frames, objects "
        f"{result['box'][0]}x{result['box'][1]} boxes, frame-step {result['frame_step']} "
        f"(ms are means over all frames, sampled or not). " + machine_line(result),
        md_table(["variant", "ms / frame", "ms / object", "per object / whole-frame call"], rows),
        f"Goal: {goal['text']}: **{'met' if goal['met'] else 'not met'}**.",
        plot_link(result, md, "ms per object vs objects per frame"),
        footer(
            result,
            "Per frame: N crops + one push_many (one batched step call) against one whole "
            "frame's preprocess + push, in alternating rounds of the same run; the ratio is "
            "the comparable number, absolute ms depend on the load.",
        ),
    )


def plot(result: dict[str, Any], out_dir: Path) -> Path:
    groups = {r["variant"]: {"ms / object": r["ms_per_object"]} for r in result["rows"]}
    return bar_plot(out_dir / "objects.png", groups, "ms", "Per-object cost (mean over frames)")
