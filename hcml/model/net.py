"""The deployable HCML network: per-frame backbone + prime motion blocks + temporal-average head.

``HCMLNet`` is built from a plain config dict (``hcml.model.registry`` holds the defaults) and
also expresses the ablation baselines through that config:

* ``levels``: backbone levels with a motion block (HCML: several; MotionSqueeze-like: one;
  TSN / TSM / frame difference: none);
* ``temporal_shift``: TSM's shift before the first conv of every block (baseline);
* ``input_mode``: ``"rgb"`` or ``"diff"`` (x_{t+1} - x_t, the frame-difference baseline).

Equations (level l = 0..L-1, frame t = 0..T-1, S_l the l-th backbone stage)::

    F^l_t = S_l(Z^{l-1}_t)          (Z^{-1}_t = stem(x_t))
    P^l   = PMB^l(F^l)              (only for l in levels; pairs (t, t+1), last with itself)
    Z^l_t = F^l_t + g^l(P^l_t)      (Z^l = F^l when l has no motion block)
    logits = W_fc (1/T sum_t GAP(Z^{L-1}_t)) + b_fc

Only forward pairing looks across frames, so Z^l_t depends on frames t .. t + p_l, where p_l is
the number of motion blocks at levels <= l: exact incremental streaming (``stream_plan``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from hcml.model.backbones import create_backbone
from hcml.model.motion import FrameDifference, MotionFusion, TemporalShift

__all__ = ["HCMLNet", "ClassifierHead"]


class ClassifierHead(nn.Module):
    """Dropout + linear classifier on the temporally averaged features: [B, C] -> [B, K]."""

    def __init__(self, channels: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.dropout(x))


class _PairAdapter(nn.Module):
    """A (x [B*T, ...], frames) module as a streaming PairOp fn: [B, n, ...] -> [B, n, ...]."""

    def __init__(self, module: nn.Module, first_output: bool):
        super().__init__()
        self.module = module
        self.first_output = first_output

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[1]
        y = self.module(x.flatten(0, 1), n)
        if self.first_output:
            y = y[0]
        return y.unflatten(0, (-1, n))


def _global_pool(x: Tensor) -> Tensor:
    """Spatial average, [N, C, H, W] -> [N, C]."""
    return x.mean((2, 3))


class HCMLNet(nn.Module):
    """HCML (and its baselines): x [B, 3, T, H, W] (normalized RGB) -> logits [B, num_classes].

    ``cfg`` keys used: backbone, num_classes, levels, beta, max_displacement, stride, dropout,
    temporal_shift, input_mode, zero_init_fusion, cost_volume_impl. The whole dict is kept as
    ``default_cfg`` (also ``pretrained_cfg``) for the model card.
    """

    def __init__(self, cfg: dict[str, Any]):
        super().__init__()
        self.default_cfg: dict[str, Any] = cfg
        self.pretrained_cfg = cfg
        self.num_classes = int(cfg["num_classes"])
        self.backbone = create_backbone(cfg["backbone"])
        channels: list[int] = list(self.backbone.channels)
        self.num_levels = len(channels)
        self.levels: list[int] = sorted(int(v) for v in cfg.get("levels", []))
        for lv in self.levels:
            if not 0 <= lv < self.num_levels:
                raise ValueError(f"level {lv} out of range: backbone has {self.num_levels} levels")
        self.motion = nn.ModuleDict(
            {
                str(lv): MotionFusion(
                    channels[lv],
                    beta=int(cfg["beta"]),
                    max_displacement=int(cfg["max_displacement"]),
                    stride=int(cfg["stride"]),
                    zero_init=bool(cfg.get("zero_init_fusion", False)),
                    impl=cfg.get("cost_volume_impl", "auto"),
                    moments_radius=_cells(cfg.get("moments_window", 0), self.backbone.strides[lv]),
                )
                for lv in self.levels
            }
        )
        self.input_mode = cfg.get("input_mode", "rgb")
        if self.input_mode not in ("rgb", "diff"):
            raise ValueError(f"input_mode must be 'rgb' or 'diff', got {self.input_mode!r}")
        self.frame_diff = FrameDifference() if self.input_mode == "diff" else None
        self._shifts: list[TemporalShift] = []
        if cfg.get("temporal_shift", False):
            self._shifts = _insert_temporal_shift(self.backbone, int(cfg.get("shift_div", 8)))
        self.channels = channels
        self.num_features = channels[-1]
        self.head = ClassifierHead(channels[-1], self.num_classes, float(cfg.get("dropout", 0.0)))

    # ------------------------------------------------------------------ forward paths
    def motion_channels(self) -> dict[int, int]:
        """Channels of P^l for each level with a motion block."""
        return {lv: self.motion[str(lv)].motion_channels for lv in self.levels}

    def forward_levels(self, x: Tensor) -> tuple[list[Tensor], dict[int, Tensor], int]:
        """x [B, 3, T, H, W] -> (Z^l [B*T, C_l, h_l, w_l] for l = 0..L-1, {l: P^l [B*T, r_l,
        h_l, w_l]}, T). Per-frame layout, frame index b * T + t."""
        if not torch.jit.is_tracing() and (x.dim() != 5 or x.shape[1] != 3):
            raise ValueError(f"expected x [B, 3, T, H, W], got {tuple(x.shape)}")
        t = x.shape[2]
        for m in self._shifts:
            m.n_segment = t
        h = x.transpose(1, 2).flatten(0, 1)  # [B*T, 3, H, W]
        if self.frame_diff is not None:
            h = self.frame_diff(h, t)
        h = self.backbone.forward_stem(h)
        zs: list[Tensor] = []
        ps: dict[int, Tensor] = {}
        for lv, stage in enumerate(self.backbone.stages()):
            h = stage(h)
            if lv in self.levels:
                h, ps[lv] = self.motion[str(lv)](h, t)
            zs.append(h)
        return zs, ps, t

    def forward_features(self, x: Tensor) -> list[Tensor]:
        """x [B, 3, T, H, W] -> [Z^0, ..., Z^{L-1}], each [B, C_l, T, h_l, w_l]."""
        zs, _, t = self.forward_levels(x)
        return [_to_5d(z, t) for z in zs]

    def forward_head(self, z: Tensor) -> Tensor:
        """Z^{L-1} [B, C, T, h, w] -> logits [B, K]: spatial then temporal average, classifier."""
        return self.head(z.mean((3, 4)).mean(2))

    def forward(self, x: Tensor) -> Tensor:
        """x [B, 3, T, H, W] -> logits [B, num_classes]."""
        zs, _, t = self.forward_levels(x)
        return self.forward_head(_to_5d(zs[-1], t))

    # ------------------------------------------------------------------ streaming
    def streamable(self) -> bool:
        """True when only forward pairing looks across frames (not TSM: it also looks back)."""
        return not self._shifts

    def stream_plan(self):
        """The network as per-frame and pairing ops for ``hcml.model.step.StepModel``.

        [FrameOp(stem) (after PairOp(frame difference) for ``input_mode="diff"``), then per level
        FrameOp(stage l) and, for l in levels, PairOp(Z^l = F^l + g(PMB(F^l)))]; pool = spatial
        mean; classifier = the head. Raises TypeError for TSM (its shift looks at frame t-1).
        """
        from hcml.model.step import FrameOp, PairOp, StreamPlan

        if not self.streamable():
            raise TypeError("a temporal-shift (TSM) network looks back in time: not streamable")
        ops: list[nn.Module] = []
        if self.frame_diff is not None:
            ops.append(PairOp(_PairAdapter(self.frame_diff, first_output=False)))
        ops.append(FrameOp(self.backbone.forward_stem))
        for lv, stage in enumerate(self.backbone.stages()):
            ops.append(FrameOp(stage))
            if lv in self.levels:
                ops.append(PairOp(_PairAdapter(self.motion[str(lv)], first_output=True)))
        return StreamPlan(ops=ops, pool=_global_pool, classifier=self.head, modules=[self])

    def streaming_depth(self) -> int:
        """Number of pairing ops = frames after t that the last level's Z_t depends on."""
        return len(self.levels) + (1 if self.frame_diff is not None else 0)


def _cells(pixels: float, stride: int) -> int:
    """A window half-width in input pixels -> cells of a level (>= 1; 0 when off)."""
    return max(1, round(pixels / stride)) if pixels > 0 else 0


def _to_5d(z: Tensor, frames: int) -> Tensor:
    """[B*T, C, h, w] -> [B, C, T, h, w]."""
    return z.unflatten(0, (-1, frames)).transpose(1, 2)


def _insert_temporal_shift(backbone: nn.Module, fold_div: int) -> list[TemporalShift]:
    """Wrap the first conv of every residual block (ResNet: ``conv1``, like TSM's "blockres")
    or of every conv-BN-ReLU unit in the stages (tiny) in a ``TemporalShift``."""
    shifts: list[TemporalShift] = []
    for stage in backbone.stages():
        for m in list(stage.modules()):
            if hasattr(m, "conv1") and isinstance(m.conv1, nn.Conv2d):
                m.conv1 = TemporalShift(m.conv1, fold_div)
                shifts.append(m.conv1)
            elif (
                isinstance(m, nn.Sequential)
                and len(m) == 3
                and isinstance(m[0], nn.Conv2d)
                and isinstance(m[1], nn.BatchNorm2d)
            ):
                m[0] = TemporalShift(m[0], fold_div)
                shifts.append(m[0])
    if not shifts:
        raise ValueError("found no conv to put a temporal shift in")
    return shifts
