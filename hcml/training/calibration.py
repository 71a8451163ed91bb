"""Temperature scaling: scores that mean what they say (issue 16 item 7).

A card's ``temperature`` T (default 1.0) turns the network's logits z [K] into the scores users
see, ``softmax(z / T)``, in every runtime path (``StreamEngine``, hence ``hcmlaction`` sync,
async, clip, step and per-object, and every backend including Triton). T is fitted on held-out
clips by minimising the negative log-likelihood of their labels (``fit_temperature``); the
argmax, hence top-1, does not change. ``ece`` is the expected calibration error of the top-1
confidence over 15 equal-width bins (Guo et al. 2017): sum over bins of
(bin count / N) * |accuracy - mean confidence|.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ece", "fit_temperature", "nll", "scaled_softmax"]


def scaled_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """logits [..., K] -> softmax(logits / T) [..., K] (float64, numerically stable)."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` int [N] under softmax(logits [N, K] / T)."""
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(z)), np.asarray(labels, dtype=np.int64)].mean())


def ece(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0, bins: int = 15) -> float:
    """Expected calibration error of the top-1 confidence of softmax(logits [N, K] / T).

    Bins are (i/bins, (i+1)/bins] (the first also holds 0); a confidence falls in exactly one.
    """
    p = scaled_softmax(logits, temperature)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == np.asarray(labels, dtype=np.int64)).astype(np.float64)
    which = np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            total += m.mean() * abs(correct[m].mean() - conf[m].mean())
    return float(total)


def fit_temperature(logits: np.ndarray, labels: np.ndarray, max_iter: int = 100) -> float:
    """The T > 0 minimising ``nll(logits [N, K], labels [N], T)`` (LBFGS on log T, float64).

    Raises ValueError on empty or mismatched inputs or non-finite logits.
    """
    import torch

    z = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    if z.ndim != 2 or len(z) == 0 or len(y) != len(z):
        raise ValueError(f"need logits [N, K] and labels [N] with N >= 1, got {tuple(z.shape)}")
    if not torch.isfinite(z).all():
        raise ValueError("logits hold NaN or inf: no temperature can be fitted")
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp())
