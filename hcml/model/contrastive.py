"""Hierarchical contrastive motion learning: prediction heads, negative sampling, InfoNCE.

At motion level l, from P^l_t and the lower level's P^{l-1}_t (resampled to level l's grid), a
head predicts the lower level's future P^{l-1}_{t+delta} for delta = 1..D::

    f_delta([P^l_t, P^{l-1}_t]) = W2_delta ReLU(W1 [P^l_t, P^{l-1}_t])      (W1 shared over delta)

Per video b, N spatial positions x_{b,n} are sampled (seeded). Keys are the targets
k_{b,n,tau} = P^{l-1}_tau(x_{b,n}) for all B*N*T (video, position, time) triples; the query
q_{b,n,t} = f_delta(...)(x_{b,n}) for t = 0..T-1-delta has one positive key, (b, n, t + delta),
and every other key is a negative of exactly one kind:

* spatial: same video, another sampled position, any time        -> (N-1) T per query;
* temporal: same video and position, another time (the hardest)  -> T - 1;
* easy: any key of another video                                  -> (B-1) N T.

    InfoNCE = -log( exp(cos(q, k+) / tau) / sum_k exp(cos(q, k) / tau) )   (mean over queries)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "ContrastiveHead",
    "ContrastiveIndex",
    "KIND_POSITIVE",
    "KIND_SPATIAL",
    "KIND_TEMPORAL",
    "KIND_EASY",
    "contrastive_index",
    "sample_positions",
    "gather_positions",
    "resample_to",
    "info_nce",
    "contrastive_loss",
]

KIND_POSITIVE, KIND_SPATIAL, KIND_TEMPORAL, KIND_EASY = 0, 1, 2, 3


class ContrastiveHead(nn.Module):
    """f_delta for delta = 1..D: [..., C_l + C_{l-1}] -> [D, ..., C_{l-1}] (channel-last).

    W1: Linear(C_l + C_{l-1} -> hidden) shared over delta; W2_delta: Linear(hidden -> C_{l-1}).
    Linear on channel-last vectors = a 1x1 conv; it runs only at the sampled positions.

    ``inputs="high"``: W1 reads P^l_t alone ([..., C_l]). With both inputs the head can predict
    P^{l-1}_{t+delta} from P^{l-1}_t (a clip's motion barely changes within 8 frames), so P^l
    need not carry anything; reading P^l alone makes the prediction go through it (as CPC
    predicts from its context vector). docs/RESULTS.md, "What the pretraining learns".
    """

    def __init__(
        self, c_high: int, c_low: int, deltas: int = 2, hidden: int = 0, inputs: str = "both"
    ):
        super().__init__()
        if inputs not in ("both", "high"):
            raise ValueError(f"inputs must be 'both' or 'high', got {inputs!r}")
        hidden = hidden or max(c_high, c_low)
        self.deltas = int(deltas)
        self.inputs = inputs
        self.w1 = nn.Linear(c_high + (c_low if inputs == "both" else 0), hidden)
        self.w2 = nn.ModuleList(nn.Linear(hidden, c_low) for _ in range(self.deltas))

    def forward(self, p_high: Tensor, p_low: Tensor) -> Tensor:
        """p_high [..., C_l], p_low [..., C_{l-1}] -> predictions [D, ..., C_{l-1}]."""
        x = torch.cat([p_high, p_low], -1) if self.inputs == "both" else p_high
        h = F.relu(self.w1(x))
        return torch.stack([w2(h) for w2 in self.w2], 0)


def sample_positions(
    batch: int, height: int, width: int, n: int, generator: torch.Generator | None = None
) -> Tensor:
    """N distinct flat positions (y * width + x) per video: -> [B, N] long.

    ``n`` larger than height * width is clipped to it. Reproducible for a seeded ``generator``.
    """
    n = min(int(n), height * width)
    return torch.stack(
        [torch.randperm(height * width, generator=generator)[:n] for _ in range(batch)]
    )


def gather_positions(x: Tensor, idx: Tensor) -> Tensor:
    """x [B, C, T, h, w], idx [B, N] -> [B, N, T, C] (the vectors at the sampled positions)."""
    b, c, t = x.shape[:3]
    flat = x.flatten(3)  # [B, C, T, h*w]
    g = torch.gather(flat, 3, idx.to(x.device).view(b, 1, 1, -1).expand(b, c, t, -1))
    return g.permute(0, 3, 2, 1)


def resample_to(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Resample per-frame maps x [B, C, T, H, W] to [B, C, T, *size]: area average when
    shrinking (the usual case, a finer lower level), bilinear otherwise."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    b, c, t = x.shape[:3]
    f = x.transpose(1, 2).flatten(0, 1)
    if x.shape[-2] >= size[0] and x.shape[-1] >= size[1]:
        f = F.adaptive_avg_pool2d(f, size)
    else:
        f = F.interpolate(f, size=size, mode="bilinear", align_corners=False)
    return f.unflatten(0, (b, t)).transpose(1, 2)


@dataclass
class ContrastiveIndex:
    """Which key is each query's positive, for keys flattened as ((b * N + n) * T + tau).

    queries: [Q, 3] long, (b, n, t) of each query (t = 0..T-1-delta);
    positive: [Q] long, index of key (b, n, t + delta).
    """

    batch: int
    samples: int
    frames: int
    delta: int
    queries: Tensor
    positive: Tensor

    def keys(self) -> Tensor:
        """[B*N*T, 3] long: (b, n, tau) of each key, in key order."""
        b, n, t = torch.meshgrid(
            torch.arange(self.batch),
            torch.arange(self.samples),
            torch.arange(self.frames),
            indexing="ij",
        )
        return torch.stack([b, n, t], -1).reshape(-1, 3)

    def kinds(self) -> Tensor:
        """[Q, B*N*T] uint8: KIND_POSITIVE / KIND_SPATIAL / KIND_TEMPORAL / KIND_EASY per pair."""
        k = self.keys()
        q = self.queries
        same_b = q[:, None, 0] == k[None, :, 0]
        same_n = q[:, None, 1] == k[None, :, 1]
        kinds = torch.full(same_b.shape, KIND_EASY, dtype=torch.uint8)
        kinds[same_b & ~same_n] = KIND_SPATIAL
        kinds[same_b & same_n] = KIND_TEMPORAL
        kinds[torch.arange(len(q)), self.positive] = KIND_POSITIVE
        return kinds


def contrastive_index(batch: int, samples: int, frames: int, delta: int) -> ContrastiveIndex:
    """Queries (b, n, t), t < T - delta, and the index of each one's positive key."""
    if not 1 <= delta < frames:
        raise ValueError(f"delta {delta} must be in 1..T-1 (T = {frames})")
    tq = frames - delta
    b, n, t = torch.meshgrid(
        torch.arange(batch), torch.arange(samples), torch.arange(tq), indexing="ij"
    )
    queries = torch.stack([b, n, t], -1).reshape(-1, 3)
    positive = (queries[:, 0] * samples + queries[:, 1]) * frames + queries[:, 2] + delta
    return ContrastiveIndex(batch, samples, frames, delta, queries, positive)


def info_nce(pred: Tensor, keys: Tensor, delta: int, tau: float = 0.1) -> Tensor:
    """InfoNCE with cosine similarity / tau.

    pred [B, N, T - delta, C] (query (b, n, t) predicts the key at t + delta), keys [B, N, T, C]
    -> scalar, the mean over the B*N*(T-delta) queries; all B*N*T keys are candidates.
    """
    b, n, t, c = keys.shape
    index = contrastive_index(b, n, t, delta)
    q = F.normalize(pred.reshape(-1, c), dim=-1, eps=1e-6)
    k = F.normalize(keys.reshape(-1, c), dim=-1, eps=1e-6)
    logits = q @ k.t() / tau  # [Q, B*N*T]
    return F.cross_entropy(logits, index.positive.to(logits.device))


def contrastive_loss(
    head: ContrastiveHead,
    p_high: Tensor,
    p_low: Tensor,
    samples: int = 16,
    tau: float = 0.1,
    generator: torch.Generator | None = None,
    positions: Tensor | None = None,
) -> Tensor:
    """L_contrastive^l, averaged over delta = 1..min(D, T-1).

    p_high = P^l [B, C_l, T, h, w]; p_low = P^{l-1} [B, C_{l-1}, T, H', W'] (resampled here to
    h x w). positions [B, N] (flat, from ``sample_positions``) or sampled with ``generator``.
    """
    b, _, t, h, w = p_high.shape
    low = resample_to(p_low, (h, w))
    if positions is None:
        positions = sample_positions(b, h, w, samples, generator)
    qh = gather_positions(p_high, positions)  # [B, N, T, C_l]
    ql = gather_positions(low, positions)  # [B, N, T, C_{l-1}]
    deltas = min(head.deltas, t - 1)
    if deltas < 1:
        return p_high.sum() * 0
    preds = head(qh, ql)  # [D, B, N, T, C_{l-1}]
    losses = [info_nce(preds[d - 1][:, :, : t - d], ql, d, tau) for d in range(1, deltas + 1)]
    return torch.stack(losses).mean()
