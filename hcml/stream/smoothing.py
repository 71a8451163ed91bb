"""Flicker control for streamed predictions: EMA over window probabilities plus hysteresis."""

from __future__ import annotations

import numpy as np

__all__ = ["LabelSmoother", "softmax"]


def softmax(logits: np.ndarray) -> np.ndarray:
    """logits [..., K] -> probabilities [..., K] (float64, numerically stable)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class LabelSmoother:
    """EMA of probabilities (``alpha`` = weight of the past, 0 = off) and label hysteresis.

    A new top label replaces the current one only after winning ``hysteresis`` consecutive
    predictions (1 = switch at once). ``update(logits [K]) -> (probs [K], label id)``.
    """

    def __init__(self, alpha: float = 0.0, hysteresis: int = 1):
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {alpha}")
        if hysteresis < 1:
            raise ValueError(f"hysteresis must be >= 1, got {hysteresis}")
        self.alpha, self.hysteresis = alpha, hysteresis
        self.reset()

    def reset(self) -> None:
        self._ema: np.ndarray | None = None
        self._label: int | None = None
        self._candidate: int | None = None
        self._wins = 0

    def update(self, logits: np.ndarray) -> tuple[np.ndarray, int]:
        probs = softmax(logits)
        if self._ema is None or self.alpha == 0.0:
            self._ema = probs
        else:
            self._ema = self.alpha * self._ema + (1.0 - self.alpha) * probs
        top = int(np.argmax(self._ema))
        if self._label is None or top == self._label:
            self._label, self._candidate, self._wins = top, None, 0
        else:
            self._wins = self._wins + 1 if top == self._candidate else 1
            self._candidate = top
            if self._wins >= self.hysteresis:
                self._label, self._candidate, self._wins = top, None, 0
        return self._ema, self._label
