"""Evaluate a checkpoint or model card on a dataset: top-1/5, per-class, reversal pairs.

MODEL: an ``hcml-checkpoint`` ``.pt`` or a model card ``.json`` (run through
``hcml.backends.load_backend``). DATASET: a folder ``<root>/<class>/<clip>.mp4``, a CSV
``path,label``, a Something-Something JSON, a Kinetics CSV, or ``synth:seed=S,clips=N``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="checkpoint (.pt) or model card (.json)")
    parser.add_argument("dataset", help="folder, CSV, JSON, or synth:seed=S,clips=N,...")
    parser.add_argument("--json", help="write the metrics here")
    parser.add_argument("--plots", help="write confusion.png (+ curves.png for a run) here")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument(
        "--frame-step",
        type=int,
        default=None,
        help="temporal step (default: the checkpoint's, else 1)",
    )
    parser.add_argument("--backend", default="auto", help="for a model card: backend to use")
    parser.add_argument(
        "--record",
        metavar="KEY",
        help="for a model card: store top1/top5/reversal/n/dataset under metrics.KEY in the card",
    )
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from hcml.data.datasets import ClipDataset, DatasetError, open_dataset
    from hcml.training.evaluate import evaluate_fn, plot_confusion, plot_curves

    path = Path(args.model)
    step = 1
    names = None
    try:
        if path.suffix == ".json":
            from hcml.backends import load_backend

            backend = load_backend(path, backend=args.backend)
            card = json.loads(path.read_text())
            cfg = {
                "frames": card["window"],
                "input_size": card["input_size"],
                "mean": card["mean"],
                "std": card["std"],
            }
            names = card.get("labels")
            step = int(card.get("frame_step", 1))
            fn = lambda x: np.asarray(backend.run_clip(x.numpy().astype(np.float32)))
        else:
            from hcml.model.checkpoint import load_checkpoint, load_model

            model = load_model(path)
            data = load_checkpoint(path)
            cfg = model.default_cfg
            names = data.get("labels")
            step = int(data.get("data", {}).get("frame_step", 1))

            @torch.no_grad()
            def fn(x):
                return model(x).numpy()

        if args.frame_step:
            step = args.frame_step
        source = open_dataset(args.dataset, labels=names)
    except (FileNotFoundError, DatasetError, ValueError) as e:
        print(f"hcml eval: {e}", file=sys.stderr)
        return 2
    names = list(source.labels)
    size = tuple(cfg["input_size"][-2:])
    ds = ClipDataset(source, int(cfg["frames"]), size, cfg["mean"], cfg["std"], step, "uniform")
    result = evaluate_fn(fn, ds, names, args.batch_size, progress=not args.no_progress)
    result["model"] = str(path)
    result["dataset"] = str(args.dataset)
    rev = result["reversal"]
    print(
        f"top1 {result['top1']:.4f}  top5 {result['top5']:.4f}  n {result['n']}  "
        f"reversal-pair acc {rev['accuracy']}  twin confusion {rev['twin_confusion']}"
    )
    for name, acc in result["per_class"].items():
        print(f"  {name:18s} {'-' if acc is None else f'{acc:.3f}'}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))
    if args.record:
        if path.suffix != ".json":
            print("hcml eval: --record needs a model card (.json)", file=sys.stderr)
            return 2
        card = json.loads(path.read_text())
        card.setdefault("metrics", {})[args.record] = {
            "top1": result["top1"],
            "top5": result["top5"],
            "reversal_pair_accuracy": rev["accuracy"],
            "per_class": result["per_class"],
            "n": result["n"],
            "dataset": str(args.dataset),
        }
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(card, indent=2) + "\n")
        tmp.replace(path)
        print(f"recorded under metrics.{args.record} in {path}")
    if args.plots:
        plot_confusion(result, Path(args.plots) / "confusion.png")
        plot_curves(path.parent, Path(args.plots) / "curves.png")
    return 0
