"""Cosine cost volume vs a brute-force double loop; channel count; known shifts; gradcheck."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hcml.model.cost_volume import (
    CostVolume,
    cost_volume,
    cost_volume_channels,
    displacements,
)

CASES = [(6, 2, 5, 7), (3, 1, 6, 5), (5, 2, 9, 4), (2, 3, 5, 5), (0, 1, 3, 4), (4, 4, 7, 9)]


def brute_force(a: np.ndarray, b: np.ndarray, d: int, s: int) -> np.ndarray:
    """The slow, obvious way: loop over samples, pixels and displacements."""
    n, c, h, w = a.shape
    k = d // s
    steps = [s * i for i in range(-k, k + 1)]
    out = np.zeros((n, len(steps) ** 2, h, w))
    for i in range(n):
        for y in range(h):
            for x in range(w):
                va = a[i, :, y, x]
                va = va / max(np.linalg.norm(va), 1e-6)
                ch = 0
                for dy in steps:
                    for dx in steps:
                        yy, xx = y + dy, x + dx
                        if 0 <= yy < h and 0 <= xx < w:
                            vb = b[i, :, yy, xx]
                            vb = vb / max(np.linalg.norm(vb), 1e-6)
                            out[i, ch, y, x] = float(va @ vb)
                        ch += 1
    return out


@pytest.mark.parametrize("impl", ["slices", "fast", "unfold"])
@pytest.mark.parametrize(("d", "s", "h", "w"), CASES)
def test_equals_brute_force(d, s, h, w, impl):
    g = torch.Generator().manual_seed(d * 100 + s * 10 + h)
    a = torch.randn(2, 3, h, w, generator=g)
    b = torch.randn(2, 3, h, w, generator=g)
    got = cost_volume(a, b, d, s, impl).numpy()
    want = brute_force(a.numpy().astype(np.float64), b.numpy().astype(np.float64), d, s)
    assert got.shape == (2, cost_volume_channels(d, s), h, w)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("d", "s", "k"), [(6, 2, 7), (6, 1, 13), (5, 2, 5), (7, 3, 5), (1, 2, 1)])
def test_channel_count(d, s, k):
    assert cost_volume_channels(d, s) == k * k == (2 * (d // s) + 1) ** 2
    assert len(displacements(d, s)) == k * k
    cv = CostVolume(d, s)
    assert cv(torch.randn(1, 4, 9, 9), torch.randn(1, 4, 9, 9)).shape == (1, k * k, 9, 9)
    assert CostVolume().out_channels == 49  # the defaults d = 6, s = 2


@pytest.mark.parametrize(("dy", "dx"), [(0, 0), (2, -4), (-6, 6), (4, 2), (-2, 0)])
def test_known_shift_peaks_at_its_channel(dy, dx):
    """b(y + dy, x + dx) = a(y, x): the channel of (dy, dx) is 1 and the argmax wherever the
    displaced position lies inside the frame."""
    g = torch.Generator().manual_seed(7)
    h, w = 15, 17
    a = torch.randn(1, 8, h, w, generator=g)
    b = torch.randn(1, 8, h, w, generator=g)  # noise where nothing shifts in
    ys = slice(max(0, -dy), min(h, h - dy))
    xs = slice(max(0, -dx), min(w, w - dx))
    b[:, :, ys.start + dy : ys.stop + dy, xs.start + dx : xs.stop + dx] = a[:, :, ys, xs]
    cv = cost_volume(a, b, 6, 2)
    ch = displacements(6, 2).index((dy, dx))
    inner = cv[0, :, ys, xs]
    assert torch.allclose(inner[ch], torch.ones_like(inner[ch]), atol=1e-5)
    assert (inner.argmax(0) == ch).all()


@pytest.mark.parametrize("impl", ["slices", "fast", "unfold"])
def test_gradcheck_float64(impl):
    g = torch.Generator().manual_seed(3)
    a = torch.randn(1, 3, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(1, 3, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda u, v: cost_volume(u, v, 2, 1, impl), (a, b))


def test_fast_path_equals_slices_in_values_and_gradients():
    g = torch.Generator().manual_seed(4)
    a = torch.randn(3, 8, 9, 11, generator=g, requires_grad=True)
    b = torch.randn(3, 8, 9, 11, generator=g, requires_grad=True)
    up = torch.randn(3, 49, 9, 11, generator=g)
    results = []
    for impl in ("slices", "fast", "auto"):
        a.grad = b.grad = None
        y = cost_volume(a, b, 6, 2, impl)
        (y * up).sum().backward()
        results.append((y.detach(), a.grad.clone(), b.grad.clone()))
    for other in results[1:]:
        for want, got in zip(results[0], other, strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="N, C, H, W"):
        cost_volume(torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 5))
    with pytest.raises(ValueError, match="impl"):
        cost_volume(torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4), impl="cuda")
