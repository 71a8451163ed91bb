"""P^0, the preliminary motion cues: a self-supervised flow net, warping and L_rec (training only).

``FlowNet``: 5 densely connected 3x3 convs on frame pairs (I_t, I_{t+1}) (the last frame paired
with itself), on frames average-pooled by ``scale``. Conv i in 1..4 sees the pair and all
earlier convs' outputs and adds ``growth`` channels (LeakyReLU 0.1); conv 5 maps all of them to
the 2-channel flow u = (u_x, u_y) in pixels of the pooled grid. Its motion features (the four
hidden outputs, 4 * growth channels) and the flow are both available as P^0.

Unsupervised reconstruction loss (pairs t = 0..T-2)::

    rho(z) = (z^2 + eps^2)^alpha                                  (alpha 0.45, eps 1e-3)
    I^w_t(x) = I_{t+1}(x + u_t(x))                                (bilinear; 0 outside)
    L_photo = sum_{x, c} m_t(x) rho(I_t - I^w_t) / (C sum_x m_t(x))   (m: lands inside the frame)
    L_smooth = mean rho(d_x u_t) + mean rho(d_y u_t)              (forward differences)
    L_rec = L_photo + zeta * L_smooth
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hcml.model.motion import pair_next

__all__ = [
    "FlowNet",
    "charbonnier",
    "warp",
    "photometric_loss",
    "smoothness_loss",
    "reconstruction_loss",
]


def charbonnier(z: Tensor, alpha: float = 0.45, eps: float = 1e-3) -> Tensor:
    """Generalized Charbonnier penalty, elementwise: rho(z) = (z^2 + eps^2)^alpha."""
    return (z * z + eps * eps).pow(alpha)


def warp(img: Tensor, flow: Tensor) -> tuple[Tensor, Tensor]:
    """Backward warp: img [N, C, H, W], flow [N, 2, H, W] (pixels, (x, y)) ->
    (img(x + flow(x)) [N, C, H, W], mask [N, 1, H, W]).

    Bilinear sampling (zeros outside). mask is 1.0 where x + flow(x) lies inside the frame
    ([0, W-1] x [0, H-1]), else 0.0; it carries no gradient.
    """
    n, _, h, w = img.shape
    ys = torch.arange(h, dtype=img.dtype, device=img.device).view(1, h, 1).expand(n, h, w)
    xs = torch.arange(w, dtype=img.dtype, device=img.device).view(1, 1, w).expand(n, h, w)
    px = xs + flow[:, 0]
    py = ys + flow[:, 1]
    gx = 2.0 * px / max(w - 1, 1) - 1.0
    gy = 2.0 * py / max(h - 1, 1) - 1.0
    grid = torch.stack([gx, gy], -1)
    out = F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    with torch.no_grad():
        inside = (px >= 0) & (px <= w - 1) & (py >= 0) & (py <= h - 1)
        mask = inside.unsqueeze(1).to(img.dtype)
    return out, mask


def photometric_loss(
    i_t: Tensor, i_next: Tensor, flow: Tensor, alpha: float = 0.45, eps: float = 1e-3
) -> tuple[Tensor, Tensor]:
    """Masked Charbonnier photometric loss of warping I_{t+1} to I_t.

    i_t, i_next [N, C, H, W], flow [N, 2, H, W] -> (scalar loss, mask [N, 1, H, W]).
    """
    warped, mask = warp(i_next, flow)
    rho = charbonnier(i_t - warped, alpha, eps)
    denom = (mask.sum() * i_t.shape[1]).clamp_min(1.0)
    return (rho * mask).sum() / denom, mask


def smoothness_loss(flow: Tensor, alpha: float = 0.45, eps: float = 1e-3) -> Tensor:
    """Charbonnier of the flow's forward differences: flow [N, 2, H, W] -> scalar."""
    dx = flow[..., :, 1:] - flow[..., :, :-1]
    dy = flow[..., 1:, :] - flow[..., :-1, :]
    return charbonnier(dx, alpha, eps).mean() + charbonnier(dy, alpha, eps).mean()


def reconstruction_loss(
    frames: Tensor,
    flow: Tensor,
    zeta: float = 0.5,
    alpha: float = 0.45,
    eps: float = 1e-3,
) -> dict[str, Tensor]:
    """L_rec over the T-1 real pairs of a clip.

    frames [B, C, T, H, W] (the flow net's input grid), flow [B, 2, T, H, W] (flow of pair
    (t, t+1); the self-paired last frame is ignored) -> {"photometric", "smoothness", "rec"
    (scalars), "mask" [B, 1, T-1, H, W]}.
    """
    t = frames.shape[2]
    if t < 2:
        zero = frames.sum() * 0
        return {"photometric": zero, "smoothness": zero, "rec": zero, "mask": frames[:, :1, :0]}
    i_t = frames[:, :, :-1].transpose(1, 2).flatten(0, 1)
    i_next = frames[:, :, 1:].transpose(1, 2).flatten(0, 1)
    u = flow[:, :, :-1].transpose(1, 2).flatten(0, 1)
    photo, mask = photometric_loss(i_t, i_next, u, alpha, eps)
    smooth = smoothness_loss(u, alpha, eps)
    return {
        "photometric": photo,
        "smoothness": smooth,
        "rec": photo + zeta * smooth,
        "mask": mask.unflatten(0, (-1, t - 1)).transpose(1, 2),
    }


class FlowNet(nn.Module):
    """Densely connected 5-conv flow net on frame pairs.

    x [B, 3, T, H, W] -> {"frames": pooled input [B, 3, T, h, w], "flow": [B, 2, T, h, w],
    "features": [B, 4 * growth, T, h, w]} with h = H / scale; pair t is (t, t+1), the last
    frame paired with itself.
    """

    def __init__(self, growth: int = 8, scale: int = 2, in_channels: int = 3):
        super().__init__()
        self.scale = int(scale)
        self.growth = int(growth)
        c = 2 * in_channels
        convs = []
        for _ in range(4):
            convs.append(
                nn.Sequential(nn.Conv2d(c, growth, 3, padding=1), nn.LeakyReLU(0.1, inplace=True))
            )
            c += growth
        self.convs = nn.ModuleList(convs)
        self.to_flow = nn.Conv2d(c, 2, 3, padding=1)
        nn.init.zeros_(self.to_flow.weight)  # start from zero flow (identity warp)
        nn.init.zeros_(self.to_flow.bias)
        self.feature_channels = 4 * growth

    def forward_pairs(self, i_t: Tensor, i_next: Tensor) -> tuple[Tensor, Tensor]:
        """i_t, i_next [N, 3, h, w] -> (flow [N, 2, h, w], features [N, 4 * growth, h, w])."""
        feats = [torch.cat([i_t, i_next], 1)]
        for conv in self.convs:
            feats.append(conv(torch.cat(feats, 1)))
        flow = self.to_flow(torch.cat(feats, 1))
        return flow, torch.cat(feats[1:], 1)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        t = x.shape[2]
        f = x.transpose(1, 2).flatten(0, 1)
        if self.scale > 1:
            f = F.avg_pool2d(f, self.scale)
        flow, feats = self.forward_pairs(f, pair_next(f, t))

        def to5(v: Tensor) -> Tensor:
            return v.unflatten(0, (-1, t)).transpose(1, 2)

        return {"frames": to5(f), "flow": to5(flow), "features": to5(feats)}
