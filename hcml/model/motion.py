"""The prime motion block (PMB), the fusion into the backbone, and the temporal pairing helper.

All modules here work on per-frame tensors ``[B*T, C, H, W]`` (frame index ``b * T + t``) with
the clip length ``frames = T`` passed explicitly, so a level can run on any subset of
consecutive frames (the streaming step runs them on the few provisional frames at a window's end).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hcml.model.backbones import conv_bn_relu
from hcml.model.cost_volume import CostVolume, Impl, displacements

__all__ = [
    "pair_next",
    "MotionMoments",
    "PrimeMotionBlock",
    "MotionFusion",
    "FrameDifference",
    "TemporalShift",
]

FLOW_TAU = 0.05  # soft-argmax temperature over cosine similarities in [-1, 1]


def pair_next(x: Tensor, frames: int) -> Tensor:
    """Each frame's successor, the last frame paired with itself.

    x [B*T, ...] -> [B*T, ...] with out[b*T + t] = x[b*T + min(t + 1, T - 1)].
    """
    v = x.unflatten(0, (-1, frames))
    return torch.cat([v[:, 1:], v[:, -1:]], 1).flatten(0, 1)


def _softmax_channels(x: Tensor) -> Tensor:
    """Softmax over dim 1 of [N, C, H, W], written out (max, exp, sum, divide).

    Same values as ``torch.softmax(x, 1)``; in ONNX it is five elementwise/reduce nodes instead
    of a Softmax on a non-last axis, which ONNX Runtime's CPU provider runs through a transpose
    (0.45 ms of the 2.9 ms of a profiled one-level step graph at 25 x 32 x 32).
    """
    e = torch.exp(x - x.amax(1, keepdim=True))
    return e / e.sum(1, keepdim=True)


class MotionMoments(nn.Module):
    """Local rotation and divergence of the motion around a local centroid, from a cost volume.

    cv [N, D, H, W] (cosine similarities of the D displacements) -> [N, 2, H, W] (L, E):

    1. flow = soft-argmax of cv over the displacements (u, v, in cells of this level);
       weight w = (max_d cv - mean_d cv)_+ * |flow| (a confident match that moved);
    2. with window sums S[f] = sum of w f over the (2 radius + 1)^2 cells around a cell, the
       window's motion centroid c = S[p] / S[1] and, about it,
       L = S[(x - c_x) v - (y - c_y) u] / S[1] (angular momentum: > 0 turning clockwise on
       screen) and E = S[(x - c_x) u + (y - c_y) v] / S[1] (expansion: > 0 zooming in).

    Why: the turning sense of an object is a conjunction of where its moving parts are and which
    way they move; every first-order motion or appearance feature is symmetric between clockwise
    and counter-clockwise under mirror and time reversal, so a network left to find the
    conjunction sits at chance (measured, docs/RESULTS.md). L is first-order in the sense. All
    fixed ops (softmax, products, average pooling): no parameters, exports to ONNX as is.
    """

    def __init__(self, max_displacement: int, stride: int, radius: int):
        super().__init__()
        if radius < 1:
            raise ValueError(f"MotionMoments needs a window radius >= 1 cell, got {radius}")
        disp = torch.tensor(displacements(max_displacement, stride), dtype=torch.float32)
        # soft-argmax as a fixed 1x1 conv: [N, D, H, W] probabilities -> [N, (x, y), H, W]
        weight = disp.flip(1).t().contiguous().view(2, -1, 1, 1)
        self.register_buffer("disp", weight, persistent=False)
        self.radius = int(radius)

    def _window_sum(self, x: Tensor) -> Tensor:
        """Window mean (a sum up to a constant, which cancels): [N, C, H, W] -> same shape."""
        k = 2 * self.radius + 1
        return F.avg_pool2d(x, k, stride=1, padding=self.radius, count_include_pad=True)

    def forward(self, cv: Tensor) -> Tensor:
        h, w = cv.shape[-2:]
        flow = F.conv2d(_softmax_channels(cv / FLOW_TAU), self.disp)
        u, v = flow[:, 0:1], flow[:, 1:2]
        weight = (cv.amax(1, keepdim=True) - cv.mean(1, keepdim=True)).clamp_min(0)
        weight = weight * torch.sqrt(u * u + v * v + 1e-12)
        ys = torch.arange(h, dtype=cv.dtype, device=cv.device).view(1, 1, h, 1).expand(1, 1, h, w)
        xs = torch.arange(w, dtype=cv.dtype, device=cv.device).view(1, 1, 1, w).expand(1, 1, h, w)
        terms = [1, xs, ys, u, v, xs * v - ys * u, xs * u + ys * v]
        s = self._window_sum(torch.cat([weight * t for t in terms], 1))
        s1 = s[:, 0:1] + 1e-6
        cx, cy = s[:, 1:2] / s1, s[:, 2:3] / s1
        su, sv = s[:, 3:4], s[:, 4:5]
        turn = (s[:, 5:6] - cx * sv + cy * su) / s1
        expand = (s[:, 6:7] - cx * su - cy * sv) / s1
        return torch.cat([turn, expand], 1)


class PrimeMotionBlock(nn.Module):
    """PMB at one level: F^l [B*T, C, H, W] -> P^l [B*T, C/beta, H, W].

    1. F~_t = ReLU(BN(W_r * F_t)), a 1x1 conv reducing C to r = C / beta;
    2. pairs (F~_t, F~_{t+1}), the last frame paired with itself;
    3. M_t = ReLU(BN(CV(F~_t, F~_{t+1}))), the cosine cost volume, (2K+1)^2 channels;
    4. P_t = F~_t + ReLU(BN(W_c * [M_t, F~_t])), a 3x3 conv (residual on the reduced features).

    ``moments_radius`` > 0 (cells of this level) adds ``MotionMoments`` of the raw cost volume
    (local turning and expansion, 2 channels, batch-normalised) to the conv's input.
    """

    def __init__(
        self,
        channels: int,
        beta: int = 4,
        max_displacement: int = 6,
        stride: int = 2,
        impl: Impl = "auto",
        moments_radius: int = 0,
    ):
        super().__init__()
        self.reduced = max(channels // beta, 1)
        self.reduce = conv_bn_relu(channels, self.reduced, k=1)
        self.cost_volume = CostVolume(max_displacement, stride, impl)
        k2 = self.cost_volume.out_channels
        self.cv_norm = nn.Sequential(nn.BatchNorm2d(k2), nn.ReLU(inplace=True))
        self.moments: nn.Module | None = None
        if moments_radius > 0:
            self.moments = nn.Sequential(
                MotionMoments(max_displacement, stride, moments_radius), nn.BatchNorm2d(2)
            )
        self.conv = conv_bn_relu(k2 + self.reduced + (2 if self.moments else 0), self.reduced, 3)

    def forward_reduced(self, r_t: Tensor, r_next: Tensor) -> Tensor:
        """Steps 3-4 on already reduced pairs: F~_t, F~_{t+1} [N, r, H, W] -> P_t [N, r, H, W]."""
        cv = self.cost_volume(r_t, r_next)
        parts = [self.cv_norm(cv), r_t]
        if self.moments is not None:
            parts.append(self.moments(cv))
        return r_t + self.conv(torch.cat(parts, 1))

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
        moments_radius: int = 0,
    ):
        super().__init__()
        self.pmb = PrimeMotionBlock(channels, beta, max_displacement, stride, impl, moments_radius)
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
