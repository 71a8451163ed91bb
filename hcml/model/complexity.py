"""FLOPs and parameters per model and per branch, measured with ``torch.utils.flop_counter``.

``complexity_report(model, frames, size)`` runs one clip [1, 3, T, H, W] through the network
under ``FlopCounterMode`` and splits the count by module: backbone (stem + stages), motion
branch (prime motion blocks + fusion convs g^l), head; then the training wrapper's side
branches (flow net, contrastive heads + InfoNCE matmuls) on the same clip.

Convention (as fvcore's and most papers'): FLOPs = 2 x multiply-adds of convolutions, linear
layers and matrix products; elementwise ops (BN, ReLU, the cosine normalisation) are not
counted. The cost volume is counted by switching it to its matmul implementation for the
measurement (its N*H*W*C*(2K+1)^2 multiply-adds; same values as the deployed slices).

    python -m hcml.model.complexity hcml_tiny hcml_resnet18 --frames 16     # a markdown table
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from hcml.model.cost_volume import CostVolume
from hcml.model.net import HCMLNet

__all__ = ["complexity_report", "report", "format_table", "main"]


def _sum_prefix(counts: dict[str, dict[Any, int]], prefix: str) -> int:
    """Total FLOPs recorded inside the module ``prefix`` (its FQN, root class name first).

    A container that is never called itself (a ``ModuleDict``, or a backbone whose stages are
    called one by one) has no entry of its own, so this sums the outermost recorded entries
    under ``prefix`` (each module counted once, not again through its ancestors).
    """
    keys = [k for k in counts if k == prefix or k.startswith(prefix + ".")]
    top = [k for k in keys if not any(k.startswith(o + ".") for o in keys if o != k)]
    return int(sum(sum(counts[k].values()) for k in top))


def _params(module: nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def _count(fn, *args, **kw) -> dict[str, dict[Any, int]]:
    mode = FlopCounterMode(display=False)
    with mode:
        fn(*args, **kw)
    return mode.get_flop_counts()


@torch.no_grad()
def complexity_report(
    model: nn.Module,
    frames: int | None = None,
    size: int | tuple[int, int] | None = None,
    side_branches: bool = True,
) -> dict[str, Any]:
    """FLOPs / params of ``model`` (an ``HCMLNet`` or an ``HCMLTrainingWrapper``) for one clip.

    frames, size: T and H (= W) or (H, W); default from ``default_cfg``. Returns::

        {"model", "frames", "input_size": [H, W],
         "flops": {"total", "backbone", "motion", "head", "per_frame", "motion_per_level": {l: ..},
                   "side": {"flow_net", "contrastive", "total"}},
         "params": {"total", "backbone", "motion", "head",
                    "side": {"flow_net", "contrastive", "total"}},
         "motion_overhead_pct": 100 * motion / (backbone + head),
         "convention": "..."}

    ``flops.total`` is the deployable network's forward on [1, 3, T, H, W]; the side branches
    (training only) are counted separately, with the wrapper's configured sample count N.
    """
    from hcml.model.training import HCMLTrainingWrapper

    wrapper = model if isinstance(model, HCMLTrainingWrapper) else None
    net = wrapper.model if wrapper is not None else model
    if not isinstance(net, HCMLNet):
        raise TypeError(f"expected an HCMLNet or HCMLTrainingWrapper, got {type(model).__name__}")
    cfg = net.default_cfg
    t = int(frames or cfg["frames"])
    if size is None:
        h, w = cfg["input_size"][-2:]
    elif isinstance(size, int):
        h = w = size
    else:
        h, w = size
    x = torch.zeros(1, 3, t, int(h), int(w))
    root = type(net).__name__

    cvs = [m for m in net.modules() if isinstance(m, CostVolume)]
    impls = [m.impl for m in cvs]
    was_training = net.training
    try:
        for m in cvs:
            m.impl = "unfold"
        net.eval()
        counts = _count(net, x)
        side = {"flow_net": 0, "contrastive": 0, "total": 0}
        side_params = {"flow_net": 0, "contrastive": 0, "total": 0}
        if side_branches:
            wr = wrapper if wrapper is not None else HCMLTrainingWrapper(net)
            wr_counts = _count(wr, x, generator=torch.Generator().manual_seed(0))
            wroot = type(wr).__name__
            side_total = int(sum(wr_counts["Global"].values())) - int(
                sum(counts["Global"].values())
            )
            side["flow_net"] = _sum_prefix(wr_counts, f"{wroot}.flow_net")
            side["contrastive"] = side_total - side["flow_net"]
            side["total"] = side_total
            side_params["flow_net"] = _params(wr.flow_net)
            side_params["contrastive"] = _params(wr.heads)
            side_params["total"] = side_params["flow_net"] + side_params["contrastive"]
    finally:
        for m, impl in zip(cvs, impls, strict=True):
            m.impl = impl
        net.train(was_training)

    total = int(sum(counts["Global"].values()))
    backbone = _sum_prefix(counts, f"{root}.backbone")
    motion = _sum_prefix(counts, f"{root}.motion")
    head = _sum_prefix(counts, f"{root}.head")
    per_level = {lv: _sum_prefix(counts, f"{root}.motion.{lv}") for lv in net.levels}
    base = backbone + head
    return {
        "model": cfg.get("name", root),
        "frames": t,
        "input_size": [int(h), int(w)],
        "flops": {
            "total": total,
            "backbone": backbone,
            "motion": motion,
            "head": head,
            "other": total - backbone - motion - head,
            "per_frame": total / t,
            "motion_per_level": per_level,
            "side": side,
        },
        "params": {
            "total": _params(net),
            "backbone": _params(net.backbone),
            "motion": _params(net.motion),
            "head": _params(net.head),
            "side": side_params,
        },
        "motion_overhead_pct": 100.0 * motion / base if base else 0.0,
        "convention": "FLOPs = 2 x multiply-adds of conv/linear/matmul "
        "(torch.utils.flop_counter); elementwise ops not counted",
    }


def report(
    name: str,
    frames: int | None = None,
    size: int | tuple[int, int] | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """``complexity_report`` of a registry model by name (random init)."""
    from hcml.model.registry import create_model

    kw: dict[str, Any] = dict(overrides)
    if frames:
        kw["frames"] = frames
    model = create_model(name, **kw)
    return complexity_report(model, frames, size)


def format_table(reports: list[dict[str, Any]]) -> str:
    """A markdown table of reports (GFLOP per clip, M params)."""
    rows = [
        "| model | T | HxW | total GFLOP | per frame | backbone | motion (PMB+fusion) | head "
        "| motion overhead | side (train only) | params M (net / side) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        f, p = r["flops"], r["params"]
        rows.append(
            f"| {r['model']} | {r['frames']} | {r['input_size'][0]}x{r['input_size'][1]} "
            f"| {f['total'] / 1e9:.3f} | {f['per_frame'] / 1e9:.4f} | {f['backbone'] / 1e9:.3f} "
            f"| {f['motion'] / 1e9:.3f} | {f['head'] / 1e9:.6f} | {r['motion_overhead_pct']:.1f}% "
            f"| {f['side']['total'] / 1e9:.3f} | {p['total'] / 1e6:.3f} / "
            f"{p['side']['total'] / 1e6:.3f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="FLOPs/params per model and branch")
    ap.add_argument("models", nargs="+")
    ap.add_argument("--frames", type=int, default=None)
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)
    torch.set_grad_enabled(False)
    reports = [report(m, args.frames, args.size) for m in args.models]
    print(json.dumps(reports, indent=2) if args.json else format_table(reports))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
