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

Options (``FlowLossConfig``; all off by default, which is the loss above exactly):

* ``census`` w: + w * masked Charbonnier of the soft ternary census distance (7x7) between I_t
  and I^w_t (Meister et al., UnFlow): invariant to brightness and contrast, and it still sees a
  texture's structure where the plain difference is flat.
* ``ssim`` w: + w * masked mean of (1 - SSIM(I_t, I^w_t)) / 2 (3x3 windows).
* ``edge`` lambda: smoothness weighted by exp(-lambda * mean_c |d I_t|) (edge-aware: the flow may
  jump where the image does).
* ``scales`` n: the photometric terms are also taken at n - 1 coarser scales (frames and flow
  average-pooled by 2 each time, the flow halved), weights 1, 1/2, 1/4, ... summed: the coarse
  levels see motions of several pixels as sub-pixel ones, so their gradient points the right way.
* ``occlusion``: pixels whose forward flow and the backward flow at the target disagree
  (|u_f + u_b(x + u_f)|^2 > 0.01 (|u_f|^2 + |u_b(x+u_f)|^2) + 0.5, Meister et al.) are left out
  of the photometric terms; needs the backward flow (``FlowNet`` on reversed pairs).

The flow net's convs may be dilated (``dilation``: 1, 2, 4, 8 for convs 1-4): the same
weights, a receptive field of 31 instead of 9 pixels, so smoothness reaches across flat regions.
With ``corr`` r > 0 the net also sees a local cost volume: the correlation of learned features of
I_t and I_{t+1} over displacements -r..r (``FlowNet._correlation``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hcml.model.motion import pair_next

__all__ = [
    "FlowLossConfig",
    "FlowNet",
    "census_distance",
    "charbonnier",
    "occlusion_mask",
    "ssim_distance",
    "edge_smoothness_loss",
    "flow_loss",
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


@dataclass(frozen=True)
class FlowLossConfig:
    """L_rec's terms (see the module doc); the defaults give the plain L_rec."""

    zeta: float = 0.5
    alpha: float = 0.45
    eps: float = 1e-3
    census: float = 0.0
    ssim: float = 0.0
    edge: float = 0.0
    scales: int = 1
    occlusion: bool = False


def _census(img: Tensor, patch: int = 7) -> Tensor:
    """Soft ternary census of img [N, C, H, W]: [N, patch^2, H, W] (grey, normalised diffs)."""
    grey = img.mean(1, keepdim=True)
    k = patch * patch
    eye = torch.eye(k, dtype=img.dtype, device=img.device).view(k, 1, patch, patch)
    neigh = F.conv2d(grey, eye, padding=patch // 2)
    diff = neigh - grey
    return diff / torch.sqrt(0.81 + diff * diff)


def census_distance(a: Tensor, b: Tensor, patch: int = 7) -> Tensor:
    """Soft Hamming distance of the ternary census transforms: a, b [N, C, H, W] -> [N, 1, H, W].

    Per neighbour d^2 / (0.1 + d^2) with d the difference of the two soft census codes, averaged
    over the patch (so it lies in [0, 1)).
    """
    d = _census(a, patch) - _census(b, patch)
    d2 = d * d
    return (d2 / (0.1 + d2)).mean(1, keepdim=True)


def ssim_distance(a: Tensor, b: Tensor) -> Tensor:
    """(1 - SSIM) / 2 in 3x3 windows, averaged over channels: a, b [N, C, H, W] -> [N, 1, H, W].

    Inputs are taken as they are (normalised frames); C1 = 0.01^2 * 16, C2 = 0.03^2 * 16 for a
    dynamic range of about 4 (mean/std-normalised pixels).
    """
    c1, c2 = 0.0016, 0.0144
    mu_a = F.avg_pool2d(a, 3, 1, 1)
    mu_b = F.avg_pool2d(b, 3, 1, 1)
    sa = F.avg_pool2d(a * a, 3, 1, 1) - mu_a**2
    sb = F.avg_pool2d(b * b, 3, 1, 1) - mu_b**2
    sab = F.avg_pool2d(a * b, 3, 1, 1) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * sab + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (sa + sb + c2)
    return ((1 - num / den) / 2).clamp(0, 1).mean(1, keepdim=True)


def occlusion_mask(flow_fw: Tensor, flow_bw: Tensor) -> Tensor:
    """Forward-backward check: flow_fw, flow_bw [N, 2, H, W] -> [N, 1, H, W], 1 = visible.

    Visible where |u_f + u_b(x + u_f)|^2 <= 0.01 (|u_f|^2 + |u_b(x + u_f)|^2) + 0.5; no gradient.
    """
    with torch.no_grad():
        bw, _ = warp(flow_bw, flow_fw)
        diff = (flow_fw + bw).pow(2).sum(1, keepdim=True)
        bound = 0.01 * (flow_fw.pow(2).sum(1, keepdim=True) + bw.pow(2).sum(1, keepdim=True)) + 0.5
        return (diff <= bound).to(flow_fw.dtype)


def edge_smoothness_loss(
    flow: Tensor, img: Tensor, edge: float, alpha: float = 0.45, eps: float = 1e-3
) -> Tensor:
    """Charbonnier of the flow's forward differences, weighted by exp(-edge * mean_c |d img|).

    flow [N, 2, H, W], img [N, C, H, W] -> scalar; edge 0 is ``smoothness_loss``.
    """
    dx = flow[..., :, 1:] - flow[..., :, :-1]
    dy = flow[..., 1:, :] - flow[..., :-1, :]
    wx = torch.exp(-edge * (img[..., :, 1:] - img[..., :, :-1]).abs().mean(1, keepdim=True))
    wy = torch.exp(-edge * (img[..., 1:, :] - img[..., :-1, :]).abs().mean(1, keepdim=True))
    return (wx * charbonnier(dx, alpha, eps)).mean() + (wy * charbonnier(dy, alpha, eps)).mean()


def _photo_terms(
    i_t: Tensor, i_next: Tensor, flow: Tensor, cfg: FlowLossConfig, vis: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Masked photometric (+ census, SSIM) loss at one scale -> (scalar, mask [N, 1, H, W])."""
    warped, mask = warp(i_next, flow)
    if vis is not None:
        mask = mask * vis
    denom = mask.sum().clamp_min(1.0)
    rho = charbonnier(i_t - warped, cfg.alpha, cfg.eps).mean(1, keepdim=True)
    loss = (rho * mask).sum() / denom
    if cfg.census > 0:
        cd = charbonnier(census_distance(i_t, warped), cfg.alpha, cfg.eps)
        loss = loss + cfg.census * (cd * mask).sum() / denom
    if cfg.ssim > 0:
        loss = loss + cfg.ssim * (ssim_distance(i_t, warped) * mask).sum() / denom
    return loss, mask


def flow_loss(
    i_t: Tensor, i_next: Tensor, flow: Tensor, cfg: FlowLossConfig, flow_bw: Tensor | None = None
) -> dict[str, Tensor]:
    """L_rec of pairs with every option of ``cfg``.

    i_t, i_next [N, C, H, W], flow [N, 2, H, W] (pixels), flow_bw [N, 2, H, W] (pair reversed;
    used with ``cfg.occlusion``) -> {"photometric", "smoothness", "rec" (scalars), "mask"
    [N, 1, H, W]}.
    """
    vis = occlusion_mask(flow, flow_bw) if cfg.occlusion and flow_bw is not None else None
    photo, mask = _photo_terms(i_t, i_next, flow, cfg, vis)
    a, b, u, v, wsum = i_t, i_next, flow, vis, 1.0
    for k in range(1, max(int(cfg.scales), 1)):
        if min(a.shape[-2:]) < 8:
            break
        a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
        u = F.avg_pool2d(u, 2) / 2.0
        v = None if v is None else (F.avg_pool2d(v, 2) > 0.5).to(v.dtype)
        w = 0.5**k
        photo = photo + w * _photo_terms(a, b, u, cfg, v)[0]
        wsum += w
    photo = photo / wsum
    if cfg.edge > 0:
        smooth = edge_smoothness_loss(flow, i_t, cfg.edge, cfg.alpha, cfg.eps)
    else:
        smooth = smoothness_loss(flow, cfg.alpha, cfg.eps)
    return {
        "photometric": photo,
        "smoothness": smooth,
        "rec": photo + cfg.zeta * smooth,
        "mask": mask,
    }


def reconstruction_loss(
    frames: Tensor,
    flow: Tensor,
    zeta: float = 0.5,
    alpha: float = 0.45,
    eps: float = 1e-3,
    cfg: FlowLossConfig | None = None,
    flow_bw: Tensor | None = None,
) -> dict[str, Tensor]:
    """L_rec over the T-1 real pairs of a clip.

    frames [B, C, T, H, W] (the flow net's input grid), flow [B, 2, T, H, W] (flow of pair
    (t, t+1); the self-paired last frame is ignored), flow_bw [B, 2, T, H, W] (pair (t+1, t) at
    index t; only for ``cfg.occlusion``) -> {"photometric", "smoothness", "rec" (scalars),
    "mask" [B, 1, T-1, H, W]}. ``cfg`` (``FlowLossConfig``) replaces zeta / alpha / eps.
    """
    cfg = cfg or FlowLossConfig(zeta=zeta, alpha=alpha, eps=eps)
    t = frames.shape[2]
    if t < 2:
        zero = frames.sum() * 0
        return {"photometric": zero, "smoothness": zero, "rec": zero, "mask": frames[:, :1, :0]}

    def pairs(v: Tensor, sl: slice) -> Tensor:
        return v[:, :, sl].transpose(1, 2).flatten(0, 1)

    bw = None if flow_bw is None else pairs(flow_bw, slice(None, -1))
    out = flow_loss(
        pairs(frames, slice(None, -1)),
        pairs(frames, slice(1, None)),
        pairs(flow, slice(None, -1)),
        cfg,
        bw,
    )
    out["mask"] = out["mask"].unflatten(0, (-1, t - 1)).transpose(1, 2)
    return out


class FlowNet(nn.Module):
    """Densely connected 5-conv flow net on frame pairs.

    x [B, 3, T, H, W] -> {"frames": pooled input [B, 3, T, h, w], "flow": [B, 2, T, h, w],
    "features": [B, 4 * growth, T, h, w]} with h = H / scale; pair t is (t, t+1), the last
    frame paired with itself.
    """

    def __init__(
        self,
        growth: int = 8,
        scale: int = 2,
        in_channels: int = 3,
        dilation: bool = False,
        corr: int = 0,
    ):
        super().__init__()
        self.scale = int(scale)
        self.growth = int(growth)
        self.corr = int(corr)
        c = 2 * in_channels
        if self.corr > 0:
            # Local correlation of learned 16-channel features over displacements -r..r: the
            # (2r + 1)^2 matching costs join the pair as input (a one-level cost volume).
            self.corr_features = nn.Sequential(
                nn.Conv2d(in_channels, 16, 3, padding=1),
                nn.LeakyReLU(0.1, inplace=True),
                nn.Conv2d(16, 16, 3, padding=1),
            )
            c += (2 * self.corr + 1) ** 2
        convs = []
        for i in range(4):
            d = 2**i if dilation else 1
            convs.append(
                nn.Sequential(
                    nn.Conv2d(c, growth, 3, padding=d, dilation=d), nn.LeakyReLU(0.1, inplace=True)
                )
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
        if self.corr > 0:
            feats[0] = torch.cat([feats[0], self._correlation(i_t, i_next)], 1)
        for conv in self.convs:
            feats.append(conv(torch.cat(feats, 1)))
        flow = self.to_flow(torch.cat(feats, 1))
        return flow, torch.cat(feats[1:], 1)

    def _correlation(self, i_t: Tensor, i_next: Tensor) -> Tensor:
        """[N, 3, h, w] x 2 -> [N, (2r + 1)^2, h, w]: mean_c f_t(x) f_{t+1}(x + d), d row-major."""
        r = self.corr
        a = self.corr_features(i_t)
        b = F.pad(self.corr_features(i_next), (r, r, r, r))
        h, w = a.shape[-2:]
        costs = [
            (a * b[..., dy : dy + h, dx : dx + w]).mean(1, keepdim=True)
            for dy in range(2 * r + 1)
            for dx in range(2 * r + 1)
        ]
        return F.leaky_relu(torch.cat(costs, 1), 0.1)

    def forward(self, x: Tensor, backward: bool = False) -> dict[str, Tensor]:
        """backward: also "flow_bw" [B, 2, T, h, w], the flow of pair (t+1, t) at index t."""
        t = x.shape[2]
        f = x.transpose(1, 2).flatten(0, 1)
        if self.scale > 1:
            f = F.avg_pool2d(f, self.scale)
        nxt = pair_next(f, t)
        flow, feats = self.forward_pairs(f, nxt)

        def to5(v: Tensor) -> Tensor:
            return v.unflatten(0, (-1, t)).transpose(1, 2)

        out = {"frames": to5(f), "flow": to5(flow), "features": to5(feats)}
        if backward:
            out["flow_bw"] = to5(self.forward_pairs(nxt, f)[0])
        return out
