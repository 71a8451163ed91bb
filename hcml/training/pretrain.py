"""Self-supervised pretraining on unlabelled video, and fine-tuning from it.

``hcml pretrain DIR_OR_LIST --out RUN`` scans the videos (a folder, searched recursively, or a
list file; ``hcml.data.unlabelled``), writes ``RUN/videos.json`` (usable files with their frame
counts, skipped files with the reason) and runs the flow and progressive stages of a recipe
(default ``training/pretrain.yaml``) on random clips of them, with the recipe runner: exact
resume (``--resume``), tqdm bars (``--no-progress``), TensorBoard in each phase's ``tb/``, and
DDP under ``torchrun``. ``RUN/model.pt`` holds the whole training wrapper's weights.

Fine-tuning: a recipe with ``init_from: RUN`` (or a ``.pt``) starts its first phase from those
weights (``hcml.training.init_from.load_pretrained``): every tensor of the training wrapper
(backbone, motion blocks, fusion, flow net, contrastive heads) except the classifier, which
pretraining never trains.

Examples::

    hcml pretrain ~/footage --out runs/pretrain
    hcml pretrain ~/footage --out runs/pretrain --resume
    torchrun --nproc_per_node 2 -m hcml.cli pretrain ~/footage --out runs/pretrain
    hcml train training/finetune.yaml --out runs/finetune   # init_from: runs/pretrain
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

__all__ = ["add_arguments", "run"]

DEFAULT_RECIPE = Path(__file__).resolve().parents[2] / "training" / "pretrain.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("videos", help="a folder of video files (searched recursively) or a list")
    parser.add_argument("--out", required=True, help="run folder")
    parser.add_argument(
        "--recipe",
        default=str(DEFAULT_RECIPE),
        help="recipe whose model, flow and progressive stages to run (default: %(default)s)",
    )
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--fps", type=float, help="sample clips at this frame rate")
    parser.add_argument(
        "--camera", type=float, help="share of clips made a virtual camera move (dense motion)"
    )
    parser.add_argument("--stop-after", type=int, metavar="STEPS", help=argparse.SUPPRESS)
    parser.add_argument("--no-progress", action="store_true", help="no tqdm bars")


def run(args: argparse.Namespace) -> int:
    from hcml.data.datasets import DatasetError
    from hcml.data.unlabelled import VideoIndex, find_videos, scan_videos
    from hcml.training.recipe import RecipeError, load_recipe
    from hcml.training.run import run_recipe

    def fail(msg: str) -> int:
        print(f"hcml pretrain: {msg}", file=sys.stderr)
        return 2

    try:
        recipe = load_recipe(args.recipe)
    except RecipeError as e:
        return fail(str(e))
    out = Path(args.out)
    index_path = out / "videos.json"
    main = int(os.environ.get("RANK", "0")) == 0
    frames = int(recipe["model"]["frames"])
    span = (frames - 1) * int(recipe["data"]["frame_step"]) + 1
    if out.exists() and any(out.iterdir()) and not args.resume:
        return fail(f"{out} already holds a run: pass --resume, or another --out")
    ddp = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if ddp:
        import torch.distributed as dist

        from hcml.training.trainer import init_distributed

        init_distributed("cuda" if args.device.startswith("cuda") else "cpu")
        dist.barrier()  # every rank has checked the folder before rank 0 writes into it
    try:
        if args.resume and index_path.is_file():
            index = VideoIndex.load(index_path)  # the same list as the interrupted run
        else:
            quiet = None if main else (lambda _msg: None)  # one rank warns, not every rank
            index = scan_videos(
                find_videos(args.videos), span, progress=main and not args.no_progress, warn=quiet
            )
            if main:
                index.save(index_path)
    except DatasetError as e:
        return fail(str(e))
    if main:
        print(f"hcml pretrain: {index.summary()}", file=sys.stderr)
    if not index.videos:
        return fail("no usable video: every file was skipped (see the warnings above)")
    if ddp:
        dist.barrier()  # rank 0 has written videos.json
    un: dict[str, Any] = {"path": str(index_path if index_path.is_file() else args.videos)}
    old = recipe["data"]["train"]
    if isinstance(old, dict) and "unlabelled" in old:
        un.update({k: v for k, v in old["unlabelled"].items() if k != "path"})
    if args.fps is not None:
        un["fps"] = args.fps
    if args.camera is not None:
        un["camera"] = args.camera
    recipe["data"]["train"] = {"unlabelled": un}
    recipe["data"]["val"] = None
    recipe["stages"] = [s for s in recipe["stages"] if s["type"] in ("flow", "progressive")]
    if not recipe["stages"]:
        return fail(f"{args.recipe}: the recipe has no flow or progressive stage")
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        results = run_recipe(
            recipe,
            out,
            resume=True,  # the folder check is done above (videos.json is already there)
            device=device,
            stop_after=args.stop_after,
            progress=not args.no_progress,
        )
    except (RecipeError, DatasetError, FileNotFoundError) as e:
        return fail(str(e))
    brief = {k: {kk: vv for kk, vv in v.items() if kk != "losses"} for k, v in results.items()}
    if main:
        print(json.dumps(brief, indent=1, default=str))
    skipped = len(index.skipped)
    if not main:
        return 0
    print(
        f"hcml pretrain: {len(index.videos)} videos used, {skipped} skipped"
        + (": " + "; ".join(s["why"] for s in index.skipped) if skipped else ""),
        file=sys.stderr,
    )
    return 0
