"""Evaluate a checkpoint or model card on a dataset: top-1/5, per-class, reversal pairs.

MODEL: an ``hcml-checkpoint`` ``.pt`` or a model card ``.json`` (run through
``hcml.backends.load_backend``). DATASET: a folder ``<root>/<class>/<clip>.mp4``, a CSV
``path,label``, a Something-Something JSON, a Kinetics CSV, or ``synth:seed=S,clips=N``.

Scores are softmax(logits / T) with T the card's ``temperature`` (1.0 for a checkpoint;
--temperature overrides): the expected calibration error of the top-1 confidence (``ece``, 15
bins) and the NLL are reported next to top-1. ``hcml calibrate`` fits T.

A clip that cannot be decoded (corrupt, empty, not a video) is skipped: the count and each
file are reported on stderr and under ``skipped`` in --json, and the metrics cover the clips
that were read. --strict stops at the first such clip instead (exit status 2, one line naming
the file).
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
    parser.add_argument(
        "--strict",
        action="store_true",
        help="fail on the first unreadable clip instead of skipping it",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=None,
        help="score with softmax(logits / T) for ECE/NLL (default: the card's, 1.0 for a "
        "checkpoint; top-1 does not depend on it)",
    )
    parser.add_argument(
        "--logits",
        metavar="NPZ",
        help="also save the raw logits [N, K] and labels [N] here (ECE at another T without "
        "a rerun: hcml.training.calibration)",
    )
    parser.add_argument("--no-progress", action="store_true")


class _SkipUnreadable:
    """``dataset[i]``, or None (recorded in ``skipped``) when the clip cannot be decoded (a
    map-style dataset for ``DataLoader``; no worker processes, so ``skipped`` sees every item)."""

    def __init__(self, dataset, strict: bool):
        self.dataset, self.strict, self.skipped = dataset, strict, []

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        from hcml.data.video import VideoReadError

        try:
            return self.dataset[i]
        except VideoReadError as e:
            if self.strict:
                raise
            self.skipped.append(str(e))
            return None


def _collate(batch: list):
    from torch.utils.data import default_collate

    batch = [b for b in batch if b is not None]
    return default_collate(batch) if batch else None


def evaluate_skipping(
    fn, ds, names, batch_size: int, strict: bool, progress: bool, temperature: float = 1.0
):
    """``evaluate.metrics`` over the readable clips of ``ds``, plus ``skipped``: the message of
    every clip that could not be decoded (each names its file).

    fn: float [B, 3, T, H, W] -> logits [B, K]. Raises VideoReadError with ``strict``, and
    DatasetError when no clip at all could be read.
    """
    from hcml.training.evaluate import metrics

    logits, labels, skipped = collect_logits(fn, ds, batch_size, strict, progress)
    result = metrics(logits, labels, names, temperature)
    result["skipped"] = skipped
    return result


def collect_logits(fn, ds, batch_size: int, strict: bool, progress: bool):
    """(logits float [N, K], labels int [N], skipped messages) of ``fn`` over the readable
    clips of ``ds`` (see ``evaluate_skipping``)."""
    import numpy as np
    import torch

    from hcml.data.datasets import DatasetError

    wrapped = _SkipUnreadable(ds, strict)
    loader = torch.utils.data.DataLoader(
        wrapped, batch_size=batch_size, shuffle=False, collate_fn=_collate
    )
    if progress:
        from tqdm import tqdm

        loader = tqdm(loader, desc="eval", unit="batch")
    outs, ys = [], []
    for batch in loader:
        if batch is None:
            continue
        x, y = batch
        outs.append(np.asarray(fn(x)))
        ys.append(np.asarray(y))
    if not outs:
        first = f" ({wrapped.skipped[0]})" if wrapped.skipped else ""
        raise DatasetError(f"none of the {len(ds)} clips could be read{first}")
    return np.concatenate(outs), np.concatenate(ys), list(wrapped.skipped)


def load_model_fn(path: Path, backend_name: str = "auto"):
    """(fn: float [B, 3, T, H, W] -> logits [B, K], cfg, label names, frame step, temperature)
    of a model card (.json, through ``load_backend``) or an ``hcml-checkpoint`` (.pt)."""
    import numpy as np
    import torch

    if path.suffix == ".json":
        from hcml.backends import load_backend

        backend = load_backend(path, backend=backend_name)
        card = backend.card
        cfg = {
            "frames": card.window,
            "input_size": list(card.input_size),
            "mean": list(card.mean),
            "std": list(card.std),
        }

        def fn(x):
            return np.asarray(backend.run_clip(x.numpy().astype(np.float32)))

        return fn, cfg, list(card.labels), int(card.frame_step), float(card.temperature)
    from hcml.model.checkpoint import load_checkpoint, load_model

    model = load_model(path)
    data = load_checkpoint(path)

    @torch.no_grad()
    def run_model(x):
        return model(x).numpy()

    step = int(data.get("data", {}).get("frame_step", 1))
    return run_model, model.default_cfg, data.get("labels"), step, 1.0


def run(args: argparse.Namespace) -> int:
    from hcml.data.datasets import ClipDataset, DatasetError, open_dataset
    from hcml.data.video import VideoReadError
    from hcml.model.checkpoint import CheckpointError
    from hcml.training.evaluate import metrics, plot_confusion, plot_curves

    path = Path(args.model)
    if args.temperature is not None and not 0 < args.temperature < float("inf"):
        print(f"hcml eval: --temperature must be > 0, got {args.temperature}", file=sys.stderr)
        return 2
    try:
        fn, cfg, names, step, temperature = load_model_fn(path, args.backend)
        if args.temperature is not None:
            temperature = args.temperature
        if args.frame_step:
            step = args.frame_step
        source = open_dataset(args.dataset, labels=names)
    except (FileNotFoundError, DatasetError, CheckpointError, ValueError) as e:
        print(f"hcml eval: {e}", file=sys.stderr)
        return 2
    names = list(source.labels)
    size = tuple(cfg["input_size"][-2:])
    ds = ClipDataset(source, int(cfg["frames"]), size, cfg["mean"], cfg["std"], step, "uniform")
    try:
        logits, labels, skipped = collect_logits(
            fn, ds, args.batch_size, args.strict, not args.no_progress
        )
    except (VideoReadError, DatasetError) as e:
        more = " (--strict)" if isinstance(e, VideoReadError) else ""
        print(f"hcml eval: {e}{more}", file=sys.stderr)
        return 2
    result = metrics(logits, labels, names, temperature)
    result["skipped"] = skipped
    if args.logits:
        import numpy as np

        Path(args.logits).parent.mkdir(parents=True, exist_ok=True)
        np.savez(args.logits, logits=logits, labels=labels)
    if result["skipped"]:
        print(
            f"hcml eval: skipped {len(result['skipped'])} of {len(ds)} clips that could not "
            "be read (--strict to fail instead):",
            file=sys.stderr,
        )
        for msg in result["skipped"]:
            print(f"  {msg}", file=sys.stderr)
    result["model"] = str(path)
    result["dataset"] = str(args.dataset)
    rev = result["reversal"]
    print(
        f"top1 {result['top1']:.4f}  ece {result['ece']:.4f} (T {temperature:.3f})  "
        f"top5 {result['top5']:.4f}  n {result['n']}  "
        f"skipped {len(result['skipped'])}  "
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
            "ece": result["ece"],
            "temperature": temperature,
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
