"""P^0 side branch: warping with known flow, the out-of-bounds mask, Charbonnier losses vs naive."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hcml.model.flow import (
    FlowNet,
    charbonnier,
    photometric_loss,
    reconstruction_loss,
    smoothness_loss,
    warp,
)


def _const_flow(n: int, h: int, w: int, u: float, v: float) -> torch.Tensor:
    flow = torch.zeros(n, 2, h, w)
    flow[:, 0], flow[:, 1] = u, v
    return flow


@pytest.mark.parametrize(("u", "v"), [(2, -1), (-3, 0), (0, 2), (1, 1)])
def test_constant_integer_flow_shifts_the_image(u, v):
    g = torch.Generator().manual_seed(0)
    img = torch.randn(2, 3, 6, 8, generator=g)
    out, mask = warp(img, _const_flow(2, 6, 8, u, v))
    for y in range(6):
        for x in range(8):
            inside = 0 <= x + u <= 7 and 0 <= y + v <= 5
            assert mask[0, 0, y, x].item() == float(inside)
            if inside:
                torch.testing.assert_close(out[:, :, y, x], img[:, :, y + v, x + u])


def test_half_pixel_flow_is_bilinear():
    img = torch.arange(20.0).view(1, 1, 4, 5)
    out, mask = warp(img, _const_flow(1, 4, 5, 0.5, 0.0))
    torch.testing.assert_close(out[0, 0, :, :4], (img[0, 0, :, :4] + img[0, 0, :, 1:]) / 2)
    assert mask[0, 0, :, :4].all() and not mask[0, 0, :, 4].any()


def test_charbonnier_equals_formula():
    zs = [-2.0, -0.1, 0.0, 1e-4, 0.3, 5.0]
    got = charbonnier(torch.tensor(zs, dtype=torch.float64), 0.45, 1e-3)
    want = [(z * z + 1e-6) ** 0.45 for z in zs]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
    got = charbonnier(torch.tensor(0.5, dtype=torch.float64), 0.3, 0.1).item()
    assert math.isclose(got, (0.25 + 0.01) ** 0.3, rel_tol=1e-12)


def test_photometric_and_smoothness_equal_naive_loops():
    g = torch.Generator().manual_seed(1)
    i0 = torch.randn(1, 2, 5, 6, generator=g, dtype=torch.float64)
    i1 = torch.randn(1, 2, 5, 6, generator=g, dtype=torch.float64)
    flow = torch.randn(1, 2, 5, 6, generator=g, dtype=torch.float64) * 2
    loss, mask = photometric_loss(i0, i1, flow)
    warped, _ = warp(i1, flow)
    num = den = 0.0
    for c in range(2):
        for y in range(5):
            for x in range(6):
                px, py = x + flow[0, 0, y, x].item(), y + flow[0, 1, y, x].item()
                if 0 <= px <= 5 and 0 <= py <= 4:  # masked-out pixels are not in the sum
                    z = (i0[0, c, y, x] - warped[0, c, y, x]).item()
                    num += (z * z + 1e-6) ** 0.45
                    den += 1
    assert 0 < mask.sum() < mask.numel()  # the case has pixels on both sides of the mask
    assert math.isclose(loss.item(), num / den, rel_tol=1e-10)

    f = flow[0].numpy()
    rho = lambda z: (z * z + 1e-6) ** 0.45
    dx = [rho(f[c, y, x + 1] - f[c, y, x]) for c in range(2) for y in range(5) for x in range(5)]
    dy = [rho(f[c, y + 1, x] - f[c, y, x]) for c in range(2) for y in range(4) for x in range(6)]
    assert math.isclose(smoothness_loss(flow).item(), np.mean(dx) + np.mean(dy), rel_tol=1e-10)


def test_reconstruction_loss_with_the_true_flow():
    """Content moving 1 px left per frame (I_{t+1}(x - 1) = I_t(x)): the true flow u = (-1, 0)
    makes the photometric term rho(0) = eps^(2 alpha) and the smoothness term (constant flow)
    rho(0) per direction; the first column warps from outside and is masked."""
    g = torch.Generator().manual_seed(2)
    base = torch.randn(1, 3, 8, 12, generator=g)
    frames = torch.stack([torch.roll(base, -t, dims=3) for t in range(4)], 2)
    flow = _const_flow(1, 8, 12, -1.0, 0.0).unsqueeze(2).expand(-1, -1, 4, -1, -1)
    out = reconstruction_loss(frames, flow, zeta=0.5)
    floor = 1e-3 ** (2 * 0.45)
    assert math.isclose(out["photometric"].item(), floor, rel_tol=1e-4)
    assert math.isclose(out["rec"].item(), floor + 0.5 * 2 * floor, rel_tol=1e-4)
    assert out["mask"].shape == (1, 1, 3, 8, 12)
    assert not out["mask"][..., 0].any() and out["mask"][..., 1:].all()
    wrong = reconstruction_loss(frames, torch.zeros_like(flow), zeta=0.5)
    assert wrong["photometric"] > 10 * out["photometric"]


def test_flow_net_shapes_and_gradients():
    net = FlowNet(growth=4, scale=2)
    assert len(net.convs) + 1 == 5  # five densely connected convs
    x = torch.randn(2, 3, 3, 16, 20, requires_grad=True)
    out = net(x)
    assert out["flow"].shape == (2, 2, 3, 8, 10)
    assert out["features"].shape == (2, 16, 3, 8, 10)
    assert out["frames"].shape == (2, 3, 3, 8, 10)
    loss = reconstruction_loss(out["frames"], out["flow"])["rec"]
    loss.backward()
    assert net.to_flow.weight.grad is not None and net.to_flow.weight.grad.abs().sum() > 0
