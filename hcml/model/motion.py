"""The prime motion block (PMB), the fusion into the backbone, and the temporal pairing helper.

All modules here work on per-frame tensors ``[B*T, C, H, W]`` (frame index ``b * T + t``) with
the clip length ``frames = T`` passed explicitly, so a level can run on any subset of
consecutive frames (the streaming step runs them on the few provisional frames at a window's end).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from hcml.model.backbones import conv_bn_relu
from hcml.model.cost_volume import CostVolume, Impl

__all__ = ["pair_next", "PrimeMotionBlock", "MotionFusion", "FrameDifference", "TemporalShift"]


def pair_next(x: Tensor, frames: int) -> Tensor:
    """Each frame's successor, the last frame paired with itself.

    x [B*T, ...] -> [B*T, ...] with out[b*T + t] = x[b*T + min(t + 1, T - 1)].
    """
    v = x.unflatten(0, (-1, frames))
    return torch.cat([v[:, 1:], v[:, -1:]], 1).flatten(0, 1)


class PrimeMotionBlock(nn.Module):
    """PMB at one level: F^l [B*T, C, H, W] -> P^l [B*T, C/beta, H, W].

    1. F~_t = ReLU(BN(W_r * F_t)), a 1x1 conv reducing C to r = C / beta;
    2. pairs (F~_t, F~_{t+1}), the last frame paired with itself;
    3. M_t = ReLU(BN(CV(F~_t, F~_{t+1}))), the cosine cost volume, (2K+1)^2 channels;
    4. P_t = F~_t + ReLU(BN(W_c * [M_t, F~_t])), a 3x3 conv (residual on the reduced features).
    """

    def __init__(
        self,
        channels: int,
        beta: int = 4,
        max_displacement: int = 6,
        stride: int = 2,
        impl: Impl = "auto",
    ):
        super().__init__()
        self.reduced = max(channels // beta, 1)
        self.reduce = conv_bn_relu(channels, self.reduced, k=1)
        self.cost_volume = CostVolume(max_displacement, stride, impl)
        k2 = self.cost_volume.out_channels
        self.cv_norm = nn.Sequential(nn.BatchNorm2d(k2), nn.ReLU(inplace=True))
        self.conv = conv_bn_relu(k2 + self.reduced, self.reduced, k=3)

    def forward_reduced(self, r_t: Tensor, r_next: Tensor) -> Tensor:
        """Steps 3-4 on already reduced pairs: F~_t, F~_{t+1} [N, r, H, W] -> P_t [N, r, H, W]."""
        m = self.cv_norm(self.cost_volume(r_t, r_next))
        return r_t + self.conv(torch.cat([m, r_t], 1))

    def forward(self, f: Tensor, frames: int) -> Tensor:
        """f = F^l [B*T, C, H, W] -> P^l [B*T, r, H, W] (T = ``frames``)."""
        r = self.reduce(f)
        return self.forward_reduced(r, pair_next(r, frames))


class MotionFusion(nn.Module):
    """A level's motion path: Z^l = F^l + g^l(P^l), P^l = PMB(F^l).

    f [B*T, C, H, W] -> (Z^l [B*T, C, H, W], P^l [B*T, C/beta, H, W]).
    g^l is a 1x1 conv (r -> C) + BN; the BN's weight starts at 0 when ``zero_init`` so that the
    untrained motion path leaves the backbone's features unchanged (Z^l = F^l).
    """

    def __init__(
        self,
        channels: int,
        beta: int = 4,
        max_displacement: int = 6,
        stride: int = 2,
        zero_init: bool = False,
        impl: Impl = "auto",
    ):
        super().__init__()
        self.pmb = PrimeMotionBlock(channels, beta, max_displacement, stride, impl)
        r = self.pmb.reduced
        self.g = nn.Sequential(nn.Conv2d(r, channels, 1, bias=False), nn.BatchNorm2d(channels))
        if zero_init:
            nn.init.zeros_(self.g[1].weight)

    @property
    def motion_channels(self) -> int:
        """Channels of P^l (C / beta)."""
        return self.pmb.reduced

    def forward(self, f: Tensor, frames: int) -> tuple[Tensor, Tensor]:
        p = self.pmb(f, frames)
        return f + self.g(p), p


class FrameDifference(nn.Module):
    """Frame-difference input (baseline): x [B*T, 3, H, W] -> x_{t+1} - x_t (last frame: 0)."""

    def forward(self, x: Tensor, frames: int) -> Tensor:
        return pair_next(x, frames) - x


class TemporalShift(nn.Module):
    """TSM's shift before a conv (baseline): x [B*T, C, H, W] -> net(shift(x)), same shape.

    Of the channels, the first C/fold_div take frame t+1's values, the next C/fold_div take
    frame t-1's (zeros past the clip ends), the rest stay (Lin et al., "TSM", bi-directional).
    ``n_segment`` (= T) is set by the owning network before each forward.
    """

    def __init__(self, net: nn.Module, fold_div: int = 8):
        super().__init__()
        self.net = net
        self.fold_div = fold_div
        self.n_segment = 1

    def forward(self, x: Tensor) -> Tensor:
        return self.net(self.shift(x, self.n_segment, self.fold_div))

    @staticmethod
    def shift(x: Tensor, frames: int, fold_div: int = 8) -> Tensor:
        """The shift alone, written with cat (no in-place writes) so it exports to ONNX."""
        v = x.unflatten(0, (-1, frames))  # [B, T, C, H, W]
        fold = v.shape[2] // fold_div
        if fold == 0 or frames == 1:
            return x
        z = torch.zeros_like(v[:, :1, :fold])
        left = torch.cat([v[:, 1:, :fold], z], 1)  # frame t <- t+1
        right = torch.cat([z, v[:, :-1, fold : 2 * fold]], 1)  # frame t <- t-1
        return torch.cat([left, right, v[:, :, 2 * fold :]], 2).flatten(0, 1)
