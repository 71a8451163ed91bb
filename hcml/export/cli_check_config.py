"""Check DeepStream configs against the model card, key by key.

FILE is an nvdspreprocess or nvinfer config, the 3D action app's config (checked together with
the configs it names), an nvinferserver config or a Triton config.pbtxt (pbtxt files are read
with a small protobuf-text parser), or a folder (every such config in it). Every key the model
depends on is compared with the card: tensor names and shapes (B;3;T;H;W), window and frame
step (subsample), input size, colour order, normalization (channel-scale-factors = 1/(255 std),
channel-mean-offsets = 255 mean, within a tolerance), the label file (one ';'-separated line
with the card's labels), that referenced files exist (relative to the config's folder) and that
the ONNX is the card's. The card is --card, else the one beside the config's ONNX (for a
preprocess config: the ONNX its app's or a neighbouring nvinfer config runs), else the
'# hcml-card:' line hcml writes into generated configs.

Lines starting "info:" are not errors: what the app or plugin will do with a valid config (the
app runs triton-infer-config when infer-config is set too; nvinfer rebuilds a plan whose
model-engine-file does not exist), or what cannot be checked from here (a TensorRT plan's
tensors, a model served over gRPC).

Exit status: 0 all keys agree ("ok: N keys checked"), 1 a disagreement (each error names the
file, the group and the key, what was expected and what was found), 2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", type=Path, metavar="FILE", help="config file or folder")
    p.add_argument("--card", type=Path, default=None, help="model card to check against")
    p.add_argument("-q", "--quiet", action="store_true", help="print errors only")


def run(args: argparse.Namespace) -> int:
    from hcml.card import ModelCard, ModelCardError
    from hcml.export.deepstream_check import (
        ConfigSyntaxError,
        check_configs,
        config_kind,
        expand_paths,
    )

    prog = "hcml check-config"
    for f in args.files:
        if not f.exists():
            print(f"{prog}: no such file: {f}", file=sys.stderr)
            return 2
    card = None
    if args.card is not None:
        if not args.card.is_file():
            print(f"{prog}: card not found: {args.card}", file=sys.stderr)
            return 2
        try:
            card = ModelCard.load(args.card)
        except ModelCardError as e:
            print(f"{prog}: {e}", file=sys.stderr)
            return 1
    files = expand_paths(args.files)
    if not files:
        print(f"{prog}: no DeepStream configs in {' '.join(map(str, args.files))}", file=sys.stderr)
        return 2
    for f in files:
        try:
            kind, _ = config_kind(f)
        except ConfigSyntaxError:
            continue  # reported as an error by the check
        if kind is None:
            print(
                f"{prog}: {f}: not a DeepStream config hcml knows (nvdspreprocess, nvinfer, "
                "nvinferserver, Triton config.pbtxt, 3D action app)",
                file=sys.stderr,
            )
            return 2
    report = check_configs(files, card)
    if not args.quiet:
        for note in report.notes:
            print(f"info: {note}")
    for issue in report.issues:
        print(f"error: {issue}", file=sys.stderr)
    cards = ", ".join(os.path.relpath(c) for c in report.cards) or "no card"
    nfiles = len(report.files)
    if report.issues:
        print(
            f"{prog}: {len(report.issues)} error(s) in {nfiles} file(s) "
            f"({report.keys} keys checked against {cards})",
            file=sys.stderr,
        )
        return 1
    if not args.quiet:
        print(f"ok: {report.keys} keys checked in {nfiles} file(s) against {cards}")
    return 0
