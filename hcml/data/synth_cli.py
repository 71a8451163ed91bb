"""Render the synthetic motion benchmark (shared/MOTION_BENCH.md) to a dataset folder.

Writes OUT/<class>/<class>_NNNN.mp4 (H.264), OUT/labels.txt, OUT/index.csv (path,label),
OUT/params.jsonl (every clip's sampled parameters) and, with --flow, OUT/<class>/*.flow.npz
(ground-truth optical flow, key `flow`, float32 [T-1, H, W, 2]). The same --seed always gives
the same clips; clip i of a class does not depend on --clips-per-class. --style picks the look:
classic (flat shapes, fixed camera; the shipped card's sets), train (photo textures, moving
camera, blur, noise, lighting drift, H.264 at CRF 12-32) or style-shift (disjoint shapes,
textures, backgrounds and photos: the generalisation check); docs/TRAINING.md, "Generator styles".
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", type=Path, help="output folder (created if missing)")
    parser.add_argument(
        "--clips-per-class",
        type=int,
        default=10,
        metavar="N",
        help="clips of each of the 12 classes",
    )
    parser.add_argument(
        "--frames", type=int, default=16, metavar="T", help="frames per clip (>= 2)"
    )
    parser.add_argument(
        "--size",
        type=int,
        default=112,
        metavar="S",
        help="frame width and height in px (even, >= 32)",
    )
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="dataset seed")
    parser.add_argument("--fps", type=int, default=25, help="frame rate written into the files")
    parser.add_argument(
        "--style",
        choices=["classic", "train", "style-shift"],
        default="classic",
        help="generator look (default classic)",
    )
    parser.add_argument(
        "--flow", action="store_true", help="also write ground-truth optical flow (.flow.npz)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar or summary")


# Peak bytes that render_clip allocates, measured with tracemalloc (a 2x2-supersampled float
# canvas a frame plus the clip): below PER_PIXEL_FRAME * T * S^2 + PER_PIXEL * S^2 for
# S = 64..256, T = 8..32, with and without flow.
PER_PIXEL_FRAME, PER_PIXEL = 24, 400


def render_memory(frames: int, size: int) -> int:
    """Bytes one clip of ``frames`` x ``size`` x ``size`` needs while it renders (an estimate
    from above; see PER_PIXEL_FRAME)."""
    return size * size * (PER_PIXEL_FRAME * frames + PER_PIXEL)


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo in bytes (None where there is none)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _check(args: argparse.Namespace) -> str | None:
    if args.clips_per_class < 1:
        return f"--clips-per-class must be >= 1, got {args.clips_per_class}"
    if args.frames < 2:
        return f"--frames must be >= 2, got {args.frames}"
    if args.size < 32 or args.size % 2:
        return f"--size must be even and >= 32 (H.264 yuv420p), got {args.size}"
    need, have = render_memory(args.frames, args.size), available_memory()
    if have is not None and need > have // 2:
        return (
            f"--size {args.size} with --frames {args.frames} needs about {need / 2**30:.1f} GiB "
            f"a clip to render, more than half of the {have / 2**30:.1f} GiB available: "
            "use a smaller --size or fewer --frames"
        )
    if args.fps < 1:
        return f"--fps must be >= 1, got {args.fps}"
    if args.out.exists() and not args.out.is_dir():
        return f"OUT {args.out} exists and is not a folder"
    return None


def run(args: argparse.Namespace) -> int:
    problem = _check(args)
    if problem:
        print(f"hcml synth: {problem}", file=sys.stderr)
        return 2
    from hcml.data.synth import write_dataset
    from hcml.data.synth_stats import dataset_stats, format_stats

    start = time.perf_counter()
    out = write_dataset(
        args.out,
        args.clips_per_class,
        args.frames,
        args.size,
        args.seed,
        args.flow,
        args.fps,
        progress=not args.quiet,
        style=args.style,
    )
    if not args.quiet:
        n = 12 * args.clips_per_class
        size = sum(p.stat().st_size for p in out.rglob("*.mp4"))
        took = time.perf_counter() - start
        print(f"wrote {n} clips ({size / 1e6:.2f} MB of H.264) to {out} in {took:.1f} s")
        print(format_stats(dataset_stats(out)))
    return 0
