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


# --- L_rec options (issue 16): census, SSIM, edge-aware smoothness, scales, occlusion, corr ---


def _pattern(h: int, w: int, dx: float = 0.0, dy: float = 0.0) -> torch.Tensor:
    """A smooth analytic image sampled at (x + dx, y + dy): [1, 3, h, w] (independent reference
    for a known sub-pixel translation: I_1(x) = I_0(x + d), so the flow of I_0 -> I_1 is -d)."""
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    x, y = xs + dx, ys + dy
    chans = [
        torch.sin(0.45 * x) * torch.cos(0.31 * y),
        torch.cos(0.23 * x + 0.37 * y) + 0.5 * torch.sin(0.61 * y),
        torch.sin(0.29 * x - 0.41 * y),
    ]
    return torch.stack(chans)[None].float()


@pytest.mark.parametrize(
    "terms", [{}, {"census": 1.0}, {"ssim": 1.0}, {"census": 1.0, "scales": 3}]
)
def test_flow_loss_is_smallest_at_the_true_translation(terms):
    from hcml.model.flow import FlowLossConfig, flow_loss

    d = (0.6, -0.4)
    i0 = _pattern(40, 40)
    i1 = _pattern(40, 40, -d[0], -d[1])  # content moves by +d: I_1(x + d) = I_0(x)
    cfg = FlowLossConfig(zeta=0.0, **terms)
    # two lines through the truth, 0.2 px apart (a full 2-D grid is 5x slower)
    grid = [(u / 5.0, d[1]) for u in range(-5, 6)] + [(d[0], v / 5.0) for v in range(-5, 6)]
    grid.append((0.0, 0.0))
    losses = {uv: float(flow_loss(i0, i1, _const_flow(1, 40, 40, *uv), cfg)["rec"]) for uv in grid}
    best = min(losses, key=losses.get)
    assert best == d, (best, terms)
    assert losses[best] < 0.5 * losses[(0.0, 0.0)]


def test_census_and_ssim_distances_vanish_on_equal_images_and_ignore_brightness():
    from hcml.model.flow import census_distance, ssim_distance

    a = _pattern(24, 24)
    assert float(census_distance(a, a).abs().max()) == 0.0
    assert float(ssim_distance(a, a).abs().max()) < 1e-5
    # census compares signs of neighbour differences: a brightness offset changes nothing
    inner = (..., slice(3, -3), slice(3, -3))  # the 7x7 patch's zero padding aside
    assert float(census_distance(a, a + 0.7)[inner].abs().max()) < 1e-6
    assert float(census_distance(a, _pattern(24, 24, 1.5, 0)).mean()) > 0.05


def test_edge_aware_smoothness_is_the_plain_one_at_zero_and_smaller_across_edges():
    from hcml.model.flow import edge_smoothness_loss

    g = torch.Generator().manual_seed(3)
    flow = torch.randn(2, 2, 8, 8, generator=g)
    img = torch.zeros(2, 3, 8, 8)
    torch.testing.assert_close(edge_smoothness_loss(flow, img, 0.0), smoothness_loss(flow))
    img[..., 4:] = 5.0  # a vertical edge: flow jumps across it cost less
    assert float(edge_smoothness_loss(flow, img, 1.0)) < float(smoothness_loss(flow))


def test_occlusion_mask_keeps_consistent_flow_and_drops_inconsistent():
    from hcml.model.flow import occlusion_mask

    fw = _const_flow(1, 12, 12, 1.0, 0.0)
    assert float(occlusion_mask(fw, -fw)[..., 2:-2, 2:-2].min()) == 1.0
    assert float(occlusion_mask(fw, fw)[..., 2:-2, 2:-2].max()) == 0.0  # |2u|^2 = 4 > bound


def test_default_loss_config_is_the_plain_l_rec():
    from hcml.model.flow import FlowLossConfig

    g = torch.Generator().manual_seed(1)
    frames = torch.randn(2, 3, 4, 10, 12, generator=g)
    flow = torch.randn(2, 2, 4, 10, 12, generator=g)
    plain = reconstruction_loss(frames, flow, 0.5)
    same = reconstruction_loss(frames, flow, cfg=FlowLossConfig(zeta=0.5))
    for k in ("photometric", "smoothness", "rec"):
        torch.testing.assert_close(plain[k], same[k])


def test_flow_net_cost_volume_and_dilation_keep_the_interface():
    base = FlowNet(8, 2)
    dil = FlowNet(8, 2, dilation=True)
    assert {k: v.shape for k, v in base.state_dict().items()} == {
        k: v.shape for k, v in dil.state_dict().items()
    }
    net = FlowNet(8, 2, corr=2)
    x = torch.randn(1, 3, 4, 16, 16)
    out = net(x, backward=True)
    assert out["flow"].shape == out["flow_bw"].shape == (1, 2, 4, 8, 8)
    assert out["features"].shape == (1, 32, 4, 8, 8)
    # the cost volume at displacement d matches features shifted by d (row-major order)
    i_t, i_n = torch.randn(1, 3, 8, 8), torch.randn(1, 3, 8, 8)
    c = net._correlation(i_t, i_n)
    fa, fb = net.corr_features(i_t), net.corr_features(i_n)
    k = (1 + 2) * 5 + (2 + 2)  # dy = 1, dx = 2
    ref = (fa[..., 2:4, 1:3] * fb[..., 3:5, 3:5]).mean(1)
    torch.testing.assert_close(c[:, k, 2:4, 1:3], torch.nn.functional.leaky_relu(ref, 0.1))


def test_dense_motion_flow_is_exact_for_an_analytic_photo():
    """Frame t+1 sampled at x + u_t(x) is frame t (the known warp), for each camera motion."""
    from hcml.data.dense_motion import KINDS, camera_clip

    ys, xs = np.mgrid[0:300, 0:400].astype(np.float64)
    photo = 127.5 + 100 * np.stack(
        [np.sin(xs / 9.0) * np.cos(ys / 13.0), np.cos((xs + ys) / 17.0), np.sin((xs - ys) / 11.0)],
        -1,
    )
    photo = np.clip(photo, 0, 255).astype(np.uint8)
    for kind in KINDS:
        clip = camera_clip(photo, np.random.default_rng(5), 4, 48, kind)
        f = torch.from_numpy(clip.frames).permute(0, 3, 1, 2).float()
        u = torch.from_numpy(clip.flow).permute(0, 3, 1, 2)
        assert float(u.norm(dim=1).min()) > 0.05 or kind in ("zoom", "rotate")
        warped, mask = warp(f[1:], u)
        inner = (slice(None), slice(None), slice(4, -4), slice(4, -4))
        err = ((warped - f[:-1]).abs() * mask)[inner].sum() / (3 * mask[inner].sum())
        still = (f[1:] - f[:-1]).abs()[inner].mean()
        assert float(err) < 2.0 and float(err) < 0.25 * float(still), (
            kind,
            float(err),
            float(still),
        )
