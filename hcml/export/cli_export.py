"""Export a checkpoint to the clip graph (NAME.onnx), the streaming step graph (NAME.step.onnx),
the model card (NAME.json) and DeepStream labels (NAME.labels.txt).

The DeepStream configs for the new card go into OUT/NAME.deepstream/, next to the card
(--deepstream-dir elsewhere, --no-deepstream to skip; the same as `hcml deepstream-configs
CARD --out DIR`). Export never rewrites the configs in pipelines/deepstream: regenerate those
with `hcml deepstream-configs engines/NAME.json --out pipelines/deepstream` when you mean to.

The clip graph takes `frames` [B,3,T,H,W] float32 normalized (NCDHW, as DeepStream's nvinfer
receives it with input-tensor-from-meta) and returns `logits` [B,K]; the step graph takes one
`frame` [B,3,H,W] plus the state tensors and returns the window's logits and the new state.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", type=Path, help="torch checkpoint (.pt) from hcml train")
    p.add_argument("--name", required=True, help="file stem of everything written")
    p.add_argument("--out", type=Path, default=Path("engines"), help="output folder")
    p.add_argument("--frames", type=int, default=None, help="window T (default: the model's)")
    p.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), default=None, help="input size")
    p.add_argument(
        "--frame-step",
        type=int,
        default=None,
        help="feed every k-th decoded frame (default: the step it was trained with, else 1)",
    )
    p.add_argument("--labels", type=Path, default=None, help="labels file, one name a line")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (>= 17)")
    p.add_argument("--dynamo", action="store_true", help="use the torch.export-based exporter")
    p.add_argument(
        "--no-check", action="store_true", help="skip the onnxruntime-vs-torch comparison"
    )
    p.add_argument(
        "--no-checkpoint", action="store_true", help="do not copy the checkpoint beside the graphs"
    )
    p.add_argument(
        "--deepstream-dir",
        type=Path,
        default=None,
        help="write the DeepStream configs here (default: OUT/NAME.deepstream, next to the card)",
    )
    p.add_argument(
        "--no-deepstream", action="store_true", help="do not write the DeepStream configs"
    )
    p.add_argument(
        "--triton-repo",
        type=Path,
        default=None,
        help="also write the Triton model repository (NAME + NAME_step) that `hcml serve` "
        "loads and nvinferserver's gRPC mode points at, into this folder",
    )
    p.add_argument(
        "--sequence-idle-s",
        type=float,
        default=30.0,
        help="with --triton-repo: a server-held sequence (NAME_step_seq) unused this long is "
        "dropped and its state freed (seconds, default %(default)s)",
    )
    from hcml.export.cli_deepstream import add_settings_arguments

    add_settings_arguments(p)


def _checkpoint_extras(path: Path) -> dict:
    """recipe / metrics / labels stored in a checkpoint, when it has them."""
    import torch

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return {}
    if not isinstance(data, dict):
        return {}
    out = {}
    for key in ("recipe", "metrics", "labels", "data"):
        if isinstance(data.get(key), dict | list):
            out[key] = data[key]
    return out


def run(args: argparse.Namespace) -> int:
    import sys

    from hcml.export.triton_repo import sequence_idle_problem

    problem = sequence_idle_problem(args.sequence_idle_s)
    if problem:
        print(f"hcml export: {problem}", file=sys.stderr)
        return 2
    if not args.checkpoint.is_file():
        print(f"hcml export: checkpoint not found: {args.checkpoint}", file=sys.stderr)
        return 2
    from hcml.export.onnx_export import export_model
    from hcml.model.checkpoint import CheckpointError, load_model

    try:
        model = load_model(args.checkpoint)
    except CheckpointError as e:
        print(f"hcml export: {e}", file=sys.stderr)
        return 2
    extras = _checkpoint_extras(args.checkpoint)
    labels = extras.get("labels")
    if args.labels is not None:
        if not args.labels.is_file():
            print(f"hcml export: labels file not found: {args.labels}", file=sys.stderr)
            return 2
        text = args.labels.read_text()
        labels = [s.strip() for s in text.replace(";", "\n").splitlines() if s.strip()]
    card = export_model(
        model,
        args.out,
        args.name,
        window=args.frames,
        input_size=tuple(args.size) if args.size else None,
        frame_step=args.frame_step or int(extras.get("data", {}).get("frame_step", 1)),
        labels=list(labels) if isinstance(labels, list) else None,
        checkpoint=None if args.no_checkpoint else args.checkpoint,
        recipe=extras.get("recipe") if isinstance(extras.get("recipe"), dict) else None,
        metrics=extras.get("metrics") if isinstance(extras.get("metrics"), dict) else None,
        opset=args.opset,
        check=not args.no_check,
        dynamo=args.dynamo,
    )
    print(
        f"wrote {card.path} (window {card.window}, {card.input_size[0]}x{card.input_size[1]}, "
        f"{len(card.labels)} labels)"
    )
    for role in ("clip", "step", "labels", "checkpoint"):
        if role in card.files:
            print(f"  {role:10s} {card.root / card.files[role]}")
    check = card.metrics.get("export_check")
    if check:
        print(
            f"  onnxruntime vs torch: clip {check['clip_max_abs_diff']:.2e}, "
            f"step {check['step_max_abs_diff']:.2e}"
        )
    if args.triton_repo is not None:
        from hcml.export.triton_repo import write_triton_repo

        write_triton_repo(card, args.triton_repo, sequence_idle_s=args.sequence_idle_s)
        models = f"{card.name}, {card.name}_step, {card.name}_step_seq"
        print(f"  triton     {args.triton_repo} (models {models})")
    if args.no_deepstream:
        return 0
    from hcml.export.cli_deepstream import settings_from_args, write_and_check

    ds_dir = args.deepstream_dir or deepstream_dir_for(card)
    return write_and_check(card, ds_dir, settings_from_args(args), "hcml export")


def deepstream_dir_for(card) -> Path:
    """Where ``hcml export`` writes a card's DeepStream configs by default: ``NAME.deepstream``
    next to the card (never the tracked ``pipelines/deepstream``)."""
    stem = Path(card.path).stem if card.path is not None else card.name
    return Path(card.root) / f"{stem}.deepstream"
