"""``hcml calibrate CARD DATASET``: fit the card's temperature on held-out clips and write it.

Runs the card's clip graph (``--backend``, default auto) over DATASET (a folder, CSV, JSON or
``synth:seed=S,clips=N,style=...``; use clips the model was not trained or evaluated on), fits
T by minimising the NLL of softmax(logits / T) (``hcml.training.calibration``), prints NLL and
expected calibration error (15 bins) before (the card's current T) and after, and stores T as
the card's ``temperature`` with the fit's numbers under ``metrics.calibration``. Every runtime
path then scores with softmax(logits / T); top-1 does not change. ``--dry-run`` writes nothing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("card", help="model card (.json) to calibrate (rewritten in place)")
    parser.add_argument(
        "dataset", help="held-out clips: folder, CSV, JSON, or synth:seed=S,clips=N,style=..."
    )
    parser.add_argument("--backend", default="auto", help="backend running the clip graph")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--json", help="also write the fit's numbers here")
    parser.add_argument("--dry-run", action="store_true", help="fit and report, write nothing")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="fail on the first unreadable clip instead of skipping it",
    )
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from hcml.data.datasets import ClipDataset, DatasetError, open_dataset
    from hcml.data.video import VideoReadError
    from hcml.training.calibration import ece, fit_temperature, nll
    from hcml.training.eval_cli import collect_logits, load_model_fn

    path = Path(args.card)
    if path.suffix != ".json":
        print(f"hcml calibrate: {path}: needs a model card (.json)", file=sys.stderr)
        return 2
    try:
        fn, cfg, names, step, before = load_model_fn(path, args.backend)
        source = open_dataset(args.dataset, labels=names)
        ds = ClipDataset(
            source,
            int(cfg["frames"]),
            tuple(cfg["input_size"][-2:]),
            cfg["mean"],
            cfg["std"],
            step,
            "uniform",
        )
        logits, labels, skipped = collect_logits(
            fn, ds, args.batch_size, args.strict, not args.no_progress
        )
        t = fit_temperature(logits, labels)
    except (FileNotFoundError, DatasetError, ValueError) as e:
        print(f"hcml calibrate: {e}", file=sys.stderr)
        return 2
    except VideoReadError as e:
        print(f"hcml calibrate: {e} (--strict)", file=sys.stderr)
        return 2
    if skipped:
        print(f"hcml calibrate: skipped {len(skipped)} unreadable clips", file=sys.stderr)
    fit = {
        "temperature": t,
        "dataset": str(args.dataset),
        "n": int(len(labels)),
        "top1": float((logits.argmax(1) == labels).mean()),
        "before": {"temperature": before, "nll": nll(logits, labels, before)},
        "after": {"nll": nll(logits, labels, t), "ece": ece(logits, labels, t)},
    }
    fit["before"]["ece"] = ece(logits, labels, before)
    b, a = fit["before"], fit["after"]
    print(
        f"temperature {t:.4f} (was {before:.4f})  n {fit['n']}  top1 {fit['top1']:.4f}  "
        f"nll {b['nll']:.4f} -> {a['nll']:.4f}  ece {b['ece']:.4f} -> {a['ece']:.4f}"
    )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(fit, indent=1) + "\n")
    if args.dry_run:
        return 0
    card = json.loads(path.read_text())
    card["temperature"] = t
    card.setdefault("metrics", {})["calibration"] = fit
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(card, indent=2) + "\n")
    tmp.replace(path)
    print(f"wrote temperature {t:.4f} to {path}")
    return 0
