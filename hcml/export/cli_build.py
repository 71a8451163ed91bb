"""Build TensorRT plans for a model card's clip and step graphs on this GPU.

Writes NAME.<gpu>.<trt>.plan and NAME.step.<gpu>.<trt>.plan beside the card and records them (with
sha256, precision and the build settings) in the card. One strongly typed build for TensorRT 10
and 11: FP16 and INT8 are in the graph (an FP16 copy of the ONNX; INT8 as Q/DQ nodes calibrated
on CPU), never builder flags. Plans only run on the GPU model and TensorRT version that built
them; the backends refuse others with a message naming both.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("card", type=Path, help="model card NAME.json from hcml export")
    p.add_argument("--fp16", action="store_true", help="FP16 graph (inputs/outputs stay FP32)")
    p.add_argument(
        "--int8-calib",
        metavar="DATASET",
        default=None,
        help="INT8 through Q/DQ nodes calibrated on DATASET (.npy of normalized clips "
        "[N,3,T,H,W], or 'synth')",
    )
    p.add_argument("--workspace", type=int, default=1024, metavar="MB", help="workspace limit")
    p.add_argument(
        "--opt-batch", type=int, default=8, help="batch the profile optimizes for (1..32)"
    )
    p.add_argument("--device", default="cuda", help="cuda or cuda:N (default cuda = cuda:0)")


def run(args: argparse.Namespace) -> int:
    from hcml.backends.tensorrt_backend import MAX_BATCH, device_index, missing
    from hcml.card import ModelCard, ModelCardError

    prog = "hcml build-engine"
    try:
        ModelCard.load(args.card)
    except (ModelCardError, FileNotFoundError) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 2
    problem = None
    if args.fp16 and args.int8_calib:
        problem = "--fp16 and --int8-calib: choose one precision a build"
    elif not 1 <= args.opt_batch <= MAX_BATCH:
        problem = f"--opt-batch must be 1..{MAX_BATCH}, got {args.opt_batch}"
    elif args.workspace < 1:
        problem = f"--workspace must be >= 1 MB, got {args.workspace}"
    else:
        try:
            device_index(args.device)
        except ValueError as e:
            problem = f"--device: {e}"
    if problem is not None:
        print(f"{prog}: {problem}", file=sys.stderr)
        return 2
    why = missing()
    if why is not None:
        print(f"{prog}: cannot build TensorRT plans: {why}", file=sys.stderr)
        return 3
    from hcml.export.tensorrt import build_engines

    try:
        card = build_engines(
            args.card, args.fp16, args.int8_calib, args.workspace, args.opt_batch, args.device
        )
    except (RuntimeError, ValueError) as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    for key, entry in card.plans().items():
        print(f"{key}: {entry.get('clip')} {entry.get('step', '')} ({entry.get('precision')})")
    return 0
