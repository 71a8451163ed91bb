"""Contrastive heads and InfoNCE: negative counts by kind, the minimum, seeded sampling."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hcml.model.contrastive import (
    KIND_EASY,
    KIND_POSITIVE,
    KIND_SPATIAL,
    KIND_TEMPORAL,
    ContrastiveHead,
    contrastive_index,
    contrastive_loss,
    gather_positions,
    info_nce,
    resample_to,
    sample_positions,
)


@pytest.mark.parametrize(("b", "n", "t", "delta"), [(2, 3, 4, 1), (3, 5, 6, 2), (1, 4, 3, 1)])
def test_negative_counts_per_query(b, n, t, delta):
    index = contrastive_index(b, n, t, delta)
    kinds = index.kinds()
    assert kinds.shape == (b * n * (t - delta), b * n * t)
    counts = {
        k: (kinds == k).sum(1) for k in (KIND_POSITIVE, KIND_SPATIAL, KIND_TEMPORAL, KIND_EASY)
    }
    assert (counts[KIND_POSITIVE] == 1).all()
    assert (counts[KIND_SPATIAL] == (n - 1) * t).all()
    assert (counts[KIND_TEMPORAL] == t - 1).all()
    assert (counts[KIND_EASY] == (b - 1) * n * t).all()
    # the positive is the same video and position, delta frames later
    keys = index.keys()
    pos = keys[index.positive]
    assert (pos[:, :2] == index.queries[:, :2]).all()
    assert (pos[:, 2] == index.queries[:, 2] + delta).all()


def _naive_info_nce(pred, keys, delta, tau):
    """Per query: -log(e^{s+} / (e^{s+} + sum over spatial, temporal and easy negatives))."""
    b, n, t, _ = keys.shape
    total, count = 0.0, 0
    for bi in range(b):
        for ni in range(n):
            for ti in range(t - delta):
                q = F.normalize(pred[bi, ni, ti], dim=0)

                def sim(k, q=q):
                    return math.exp(float(q @ F.normalize(k, dim=0)) / tau)

                pos = sim(keys[bi, ni, ti + delta])
                spatial = sum(sim(keys[bi, m, s]) for m in range(n) if m != ni for s in range(t))
                temporal = sum(sim(keys[bi, ni, s]) for s in range(t) if s != ti + delta)
                easy = sum(
                    sim(keys[c, m, s])
                    for c in range(b)
                    if c != bi
                    for m in range(n)
                    for s in range(t)
                )
                total += -math.log(pos / (pos + spatial + temporal + easy))
                count += 1
    return total / count


def test_info_nce_equals_naive_sum_over_negative_kinds():
    g = torch.Generator().manual_seed(0)
    keys = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64)
    pred = torch.randn(2, 3, 3, 5, generator=g, dtype=torch.float64)
    got = info_nce(pred, keys, delta=1, tau=0.2).item()
    assert math.isclose(got, _naive_info_nce(pred, keys, 1, 0.2), rel_tol=1e-9)


def test_info_nce_is_minimal_when_predictions_equal_positives():
    """Orthonormal keys: pred = positive gives the least possible loss,
    log(1 + (M - 1) e^{-1/tau}) with M = B N T candidates; any perturbation raises it."""
    b, n, t, delta, tau = 2, 3, 4, 1, 0.1
    m = b * n * t
    keys = torch.eye(m, dtype=torch.float64).view(b, n, t, m)
    pred = keys[:, :, delta:].clone()
    best = info_nce(pred, keys, delta, tau).item()
    assert math.isclose(best, math.log(1 + (m - 1) * math.exp(-1 / tau)), rel_tol=1e-9)
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        noisy = pred + 0.3 * torch.randn(pred.shape, generator=g, dtype=torch.float64)
        assert info_nce(noisy, keys, delta, tau).item() > best
    shifted = keys[:, :, : t - delta]  # predicting the present instead of the future
    assert info_nce(shifted, keys, delta, tau).item() > best + 1.0


def test_sampling_is_seeded_and_distinct():
    a = sample_positions(3, 7, 9, 10, torch.Generator().manual_seed(42))
    b = sample_positions(3, 7, 9, 10, torch.Generator().manual_seed(42))
    c = sample_positions(3, 7, 9, 10, torch.Generator().manual_seed(43))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (3, 10) and a.min() >= 0 and a.max() < 63
    assert all(len(set(row.tolist())) == 10 for row in a)
    assert sample_positions(2, 2, 3, 50).shape == (2, 6)  # N clipped to h * w


def test_gather_and_resample():
    x = torch.randn(2, 4, 3, 5, 6)
    idx = torch.tensor([[0, 7, 29], [13, 1, 2]])
    g = gather_positions(x, idx)
    assert g.shape == (2, 3, 3, 4)
    torch.testing.assert_close(g[1, 0, 2], x[1, :, 2, 13 // 6, 13 % 6])
    small = resample_to(torch.randn(1, 2, 3, 8, 8), (4, 4))
    assert small.shape == (1, 2, 3, 4, 4)
    ones = resample_to(torch.ones(1, 2, 3, 8, 8), (4, 4))
    torch.testing.assert_close(ones, torch.ones_like(ones))


def test_head_shares_w1_and_loss_is_reproducible():
    head = ContrastiveHead(c_high=6, c_low=4, deltas=3)
    assert isinstance(head.w1, torch.nn.Linear) and len(head.w2) == 3
    assert head(torch.randn(5, 6), torch.randn(5, 4)).shape == (3, 5, 4)
    p_high = torch.randn(2, 6, 5, 4, 4, requires_grad=True)
    p_low = torch.randn(2, 4, 5, 8, 8)
    l1 = contrastive_loss(
        head, p_high, p_low, samples=6, generator=torch.Generator().manual_seed(0)
    )
    l2 = contrastive_loss(
        head, p_high, p_low, samples=6, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(l1, l2) and l1.item() > 0
    l1.backward()
    assert p_high.grad.abs().sum() > 0 and head.w1.weight.grad.abs().sum() > 0
    assert all(w.weight.grad.abs().sum() > 0 for w in head.w2)  # D = 3 <= T - 1: all deltas used


def test_head_reading_p_high_alone_ignores_the_lower_level():
    """inputs="high": the prediction of P^{l-1}_{t+delta} comes from P^l_t only (no shortcut
    through P^{l-1}_t); the lower level still gives the keys, and only P^l gets a gradient."""
    from hcml.model import create_model
    from hcml.model.training import HCMLTrainingWrapper

    head = ContrastiveHead(c_high=6, c_low=4, deltas=2, inputs="high")
    assert head.w1.in_features == 6
    hi = torch.randn(5, 6)
    torch.testing.assert_close(head(hi, torch.randn(5, 4)), head(hi, torch.randn(5, 4)))
    both = ContrastiveHead(c_high=6, c_low=4, deltas=2)
    assert both.w1.in_features == 10
    assert not torch.allclose(both(hi, torch.randn(5, 4)), both(hi, torch.randn(5, 4)))
    p_high = torch.randn(2, 6, 5, 4, 4, requires_grad=True)
    p_low = torch.randn(2, 4, 5, 8, 8, requires_grad=True)
    loss = contrastive_loss(
        head, p_high, p_low, samples=6, generator=torch.Generator().manual_seed(0)
    )
    loss.backward()
    assert p_high.grad.abs().sum() > 0 and p_low.grad.abs().sum() > 0  # keys still from P^{l-1}
    with pytest.raises(ValueError, match="'both' or 'high'"):
        ContrastiveHead(6, 4, inputs="low")
    # the wrapper builds its heads from the training option
    net = create_model("hcml_tiny", num_classes=12, frames=4, input_size=(32, 32))
    w = HCMLTrainingWrapper(net, {"contrastive_input": "high"})
    assert w.heads and all(h.inputs == "high" for h in w.heads.values())
    assert all(
        h.w1.in_features == c
        for h, c in zip(w.heads.values(), net.motion_channels().values(), strict=True)
    )
