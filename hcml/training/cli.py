"""Train a model from a recipe: stages flow -> progressive -> joint (or supervised baselines).

Examples::

    hcml train training/tiny.yaml --out runs/tiny
    hcml train training/tiny.yaml --out runs/tiny --resume      # after an interruption
    torchrun --nproc_per_node 2 -m hcml.cli train training/tiny.yaml --out runs/ddp
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="recipe YAML (see training/ and docs/TRAINING.md)")
    parser.add_argument("--out", help="run folder (default: the recipe's out, else runs/<name>)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run in --out from its last checkpoints",
    )
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    parser.add_argument(
        "--stop-after",
        type=int,
        default=None,
        metavar="STEPS",
        help="stop each phase after this many steps, as a preemption would",
    )
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bars")


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text if len(text) < 400 else text[:397] + "..."


def run(args: argparse.Namespace) -> int:
    import torch

    from hcml.data.datasets import DatasetError
    from hcml.data.video import VideoReadError
    from hcml.model.checkpoint import CheckpointError
    from hcml.training.recipe import RecipeError, load_recipe
    from hcml.training.run import run_recipe

    try:
        recipe = load_recipe(args.recipe)
    except RecipeError as e:
        print(f"hcml train: {_one_line(e)}", file=sys.stderr)
        return 2
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    out = Path(args.out or recipe.get("out") or f"runs/{recipe['name']}")
    try:
        results = run_recipe(
            recipe,
            out,
            resume=args.resume,
            device=device,
            stop_after=args.stop_after,
            progress=not args.no_progress,
        )
    except (
        RecipeError,
        DatasetError,
        CheckpointError,
        VideoReadError,
        FileExistsError,
        FileNotFoundError,
    ) as e:
        print(f"hcml train: {_one_line(e)}", file=sys.stderr)
        return 2
    except FloatingPointError as e:  # a non-finite loss: the run diverged
        print(f"hcml train: {_one_line(e)} (lower the lr, or resume from --out)", file=sys.stderr)
        return 1
    brief = {k: {kk: vv for kk, vv in v.items() if kk != "losses"} for k, v in results.items()}
    print(json.dumps(brief, indent=1, default=str))
    return 0
