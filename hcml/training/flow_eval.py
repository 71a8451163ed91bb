"""The P^0 flow net's end-point error against exact ground-truth flow.

``hcml eval-flow CKPT [--set synth|dense] [--clips-per-class N] [--seed S]`` renders clips in
memory with their exact flow, runs the checkpoint's flow net on consecutive frame pairs at the
model's input size, and compares on the flow net's grid. Sets: ``synth`` (default), the motion
benchmark (``hcml.data.synth.render_clip(..., with_flow=True)``; 12 classes, objects moving over a
mostly static background); ``dense``, a camera panning / zooming / rotating over scikit-learn's
sample photos, every pixel moving (``hcml.data.dense_motion``; 12 clips a "class" = 3 of each
motion kind).

    EPE = mean_x || u_pred(x) - u_gt(x) ||_2     (pixels of the flow net's grid)

u_gt is the generator's flow [T-1, S, S, 2] area-averaged to the flow net's grid and scaled by
grid / S. Reported over all pixels, over moving pixels (|u_gt| > 0.05), and for the zero-flow
predictor on the same pixels (the floor a useless net would get).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

MOVING = 0.05  # |u_gt| above this (grid pixels) counts as a moving pixel


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a training checkpoint (.pt) whose run had a flow net")
    parser.add_argument(
        "--set", dest="flow_set", choices=("synth", "dense"), default="synth", help="clip set"
    )
    parser.add_argument("--clips-per-class", type=int, default=10)
    parser.add_argument("--seed", type=int, default=777, help="generator seed (unseen in training)")
    parser.add_argument("--frames", type=int, default=8, help="consecutive frames a clip")
    parser.add_argument("--size", type=int, default=112, help="render size before the resize")
    parser.add_argument("--json", help="write the result here")
    parser.add_argument("--no-progress", action="store_true")


def load_flow_net(path: str | Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """(flow net in eval mode, model cfg) from a checkpoint's ``wrapper_state``."""
    from hcml.model.checkpoint import load_checkpoint
    from hcml.training.run import build_module

    data = load_checkpoint(path)
    if "wrapper_state" not in data or "recipe" not in data:
        raise ValueError(f"{path}: no training wrapper state (use a run's model.pt or final.pt)")
    wrapper = build_module(data["recipe"])  # the validated recipe the run saved
    if wrapper.flow_net is None:
        raise ValueError(f"{path}: this model was trained without a flow net")
    wrapper.load_state_dict(data["wrapper_state"])
    return wrapper.flow_net.eval(), wrapper.model.default_cfg


def endpoint_errors(pred: torch.Tensor, gt: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, ...]:
    """pred [N, 2, h, w] (grid pixels), gt [N, S, S', 2] (render pixels) -> (|pred - gt'|, |gt'|)
    each [N, h, w], where gt' is gt area-averaged to h x w and scaled to grid pixels."""
    gt = torch.as_tensor(gt, dtype=pred.dtype).permute(0, 3, 1, 2)
    h, w = pred.shape[-2:]
    scale = torch.tensor([w / gt.shape[-1], h / gt.shape[-2]], dtype=pred.dtype).view(1, 2, 1, 1)
    gt = F.interpolate(gt, size=(h, w), mode="area") * scale
    return (pred - gt).norm(dim=1), gt.norm(dim=1)


def flow_clip(
    flow_set: str, seed: int, c: int, i: int, frames: int = 8, size: int = 112
) -> tuple[np.ndarray, np.ndarray]:
    """Clip i of "class" c of a set: (frames uint8 [T, S, S, 3], flow float32 [T-1, S, S, 2])."""
    from hcml.data.dense_motion import KINDS as DENSE_KINDS
    from hcml.data.dense_motion import render_dense_clip
    from hcml.data.synth import clip_seed, render_clip

    if flow_set == "dense":
        kind = DENSE_KINDS[c % len(DENSE_KINDS)]
        clip = render_dense_clip(seed * 1_000_003 + c * 1009 + i, frames, size, kind)
    else:
        clip = render_clip(c, clip_seed(seed, c, i), frames, size, with_flow=True)
    return clip.frames, clip.flow


def flow_clips(
    clips_per_class: int, seed: int, frames: int = 8, size: int = 112, flow_set: str = "synth"
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The evaluation clips, ``flow_clip`` for i < clips_per_class and the 12 classes."""
    from hcml.labels import LABELS

    return [
        flow_clip(flow_set, seed, c, i, frames, size)
        for i in range(clips_per_class)
        for c in range(len(LABELS))
    ]


@torch.no_grad()
def flow_epe_clips(
    flow_net: torch.nn.Module,
    cfg: dict[str, Any],
    clips: list[tuple[np.ndarray, np.ndarray]],
    progress: bool = False,
) -> dict[str, Any]:
    """EPE of ``flow_net`` on ``clips`` (``flow_clips``), see the module doc."""
    from tqdm import tqdm

    from hcml.data.transforms import resize_clip, to_model_input

    h, w = cfg["input_size"][-2:]
    dev = next(flow_net.parameters()).device
    sums = {"all": 0.0, "all_zero": 0.0, "moving": 0.0, "moving_zero": 0.0}
    counts = {"all": 0, "moving": 0}
    for frames, flow in tqdm(clips, desc="flow EPE", unit="clip", disable=not progress):
        x = to_model_input(resize_clip(torch.from_numpy(frames), (h, w)), cfg["mean"], cfg["std"])
        pred = flow_net(x[None].to(dev))["flow"][0, :, :-1].cpu()  # [2, T-1, gh, gw]
        err, mag = endpoint_errors(pred.transpose(0, 1), torch.from_numpy(flow))
        moving = mag > MOVING
        sums["all"] += float(err.sum())
        sums["all_zero"] += float(mag.sum())
        sums["moving"] += float(err[moving].sum())
        sums["moving_zero"] += float(mag[moving].sum())
        counts["all"] += err.numel()
        counts["moving"] += int(moving.sum())
    return {
        "epe": sums["all"] / counts["all"],
        "epe_zero_flow": sums["all_zero"] / counts["all"],
        "epe_moving": sums["moving"] / max(counts["moving"], 1),
        "epe_moving_zero_flow": sums["moving_zero"] / max(counts["moving"], 1),
        "moving_fraction": counts["moving"] / counts["all"],
        "grid": list(err.shape[-2:]),
        "n_clips": len(clips),
    }


def flow_epe(
    flow_net: torch.nn.Module,
    cfg: dict[str, Any],
    clips_per_class: int,
    seed: int,
    frames: int = 8,
    size: int = 112,
    progress: bool = True,
    flow_set: str = "synth",
) -> dict[str, Any]:
    """EPE of ``flow_net`` on ``12 * clips_per_class`` rendered clips (see the module doc)."""
    clips = flow_clips(clips_per_class, seed, frames, size, flow_set)
    result = flow_epe_clips(flow_net, cfg, clips, progress)
    result.update({"seed": seed, "frames": frames, "set": flow_set})
    return result


def run(args: argparse.Namespace) -> int:
    try:
        net, cfg = load_flow_net(args.checkpoint)
    except (FileNotFoundError, ValueError) as e:
        print(f"hcml eval-flow: {e}", file=sys.stderr)
        return 2
    result = flow_epe(
        net,
        cfg,
        args.clips_per_class,
        args.seed,
        args.frames,
        args.size,
        not args.no_progress,
        args.flow_set,
    )
    grid = "x".join(map(str, result["grid"]))
    print(
        f"P^0 flow EPE on {result['n_clips']} {args.flow_set} clips (grid {grid} px): "
        f"{result['epe']:.3f} (zero flow {result['epe_zero_flow']:.3f}); moving pixels "
        f"({100 * result['moving_fraction']:.1f}%): {result['epe_moving']:.3f} "
        f"(zero flow {result['epe_moving_zero_flow']:.3f})"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0
