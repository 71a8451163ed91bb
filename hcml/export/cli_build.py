"""Build TensorRT plans for a model card's clip and step graphs on this GPU.

Writes NAME.<gpu>.<trt>.plan and NAME.step.<gpu>.<trt>.plan beside the card and records them (with
sha256, precision and the build settings) in the card. Plans only run on the GPU model and
TensorRT version that built them; the backends refuse others with a message naming both.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("card", type=Path, help="model card NAME.json from hcml export")
    p.add_argument("--fp16", action="store_true", help="allow FP16 kernels")
    p.add_argument(
        "--int8-calib",
        metavar="DATASET",
        default=None,
        help="INT8 with entropy calibration on DATASET (.npy of normalized clips, or 'synth')",
    )
    p.add_argument("--workspace", type=int, default=1024, metavar="MB", help="workspace limit")
    p.add_argument("--opt-batch", type=int, default=8, help="batch the profile optimizes for")


def run(args: argparse.Namespace) -> int:
    from hcml.backends.tensorrt_backend import missing
    from hcml.export.card import ModelCard, ModelCardError

    try:
        ModelCard.load(args.card)
    except (ModelCardError, FileNotFoundError) as e:
        print(f"hcml build-engine: {e}", file=sys.stderr)
        return 2
    why = missing()
    if why is not None:
        print(f"hcml build-engine: cannot build TensorRT plans: {why}", file=sys.stderr)
        return 3
    from hcml.export.tensorrt import build_engines

    try:
        card = build_engines(args.card, args.fp16, args.int8_calib, args.workspace, args.opt_batch)
    except (RuntimeError, ValueError) as e:
        print(f"hcml build-engine: {e}", file=sys.stderr)
        return 1
    for key, entry in card.plans().items():
        print(f"{key}: {entry.get('clip')} {entry.get('step', '')} ({entry.get('precision')})")
    return 0
