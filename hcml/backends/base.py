"""The one inference interface that every engine implements (``hcml.backends.loading`` picks one).

A ``Backend`` runs an exported model two ways:

* ``run_clip(frames [B, 3, T, H, W]) -> logits [B, K]``: the whole window at once (the clip graph,
  what DeepStream's nvinfer would run);
* ``run_step(frame [B, 3, H, W], state) -> (logits [B, K], state)``: one new frame per stream,
  with the per-level feature caches carried in ``state`` (the step graph). The logits equal
  ``run_clip`` on the last T frames fed (to float tolerance) once ``ready(state)`` is true, i.e.
  after T frames since ``init_state``/``reset_state``; before that they are finite but not
  meaningful (the caches still hold their zero initial value).

Inputs are float32, normalized with the card's mean/std, RGB, NCHW per frame. Rows of the batch
are independent streams. ``state`` is a dict of arrays whose first axis is the stream; callers
treat it as opaque and use ``init_state``, ``reset_state``, ``ready``, ``stack_states`` and
``split_state`` to manage it. Its ``"frames"`` entry (int64 [B]) counts frames fed per stream.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from hcml.card import ModelCard

BACKENDS = ("onnxruntime", "torch", "tensorrt", "triton")
FRAMES_KEY = "frames"

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendUnavailable",
    "split_state",
    "stack_states",
]


class BackendUnavailable(RuntimeError):
    """The requested engine cannot run here; the message names what is missing."""


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _zeros_like_rows(x: Any, rows: Any) -> None:
    if _is_torch(x):
        import torch

        if isinstance(rows, np.ndarray | list):
            rows = torch.as_tensor(np.asarray(rows), device=x.device)
        with torch.inference_mode():
            x[rows] = 0
    else:
        x[rows] = 0


class Backend(ABC):
    """One engine behind one interface (see the module docstring for the contract)."""

    name: str = ""
    device: str = "cpu"
    card: ModelCard
    supports_step: bool = True
    #: why ``load_backend(..., backend="auto")`` chose this engine (empty otherwise)
    auto_reason: str = ""

    # ---------------------------------------------------------------- engine-specific
    @abstractmethod
    def run_clip(self, frames: Any) -> np.ndarray:
        """frames: float32 [B, 3, T, H, W] normalized -> logits float32 [B, K]."""

    @abstractmethod
    def _init_tensors(self, batch: int) -> dict[str, Any]:
        """The step graph's state tensors at their initial (zero) value for ``batch`` streams."""

    @abstractmethod
    def _step(self, frame: Any, tensors: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        """One step-graph call: frame [B, 3, H, W] + state tensors -> (logits, new tensors)."""

    @abstractmethod
    def describe(self) -> str:
        """One line: engine, version, device/provider, threads."""

    # ---------------------------------------------------------------- shared streaming logic
    @property
    def window(self) -> int:
        return self.card.window

    @property
    def labels(self) -> list[str]:
        return self.card.labels

    def init_state(self, batch: int = 1) -> dict[str, Any]:
        """Fresh state for ``batch`` streams: zero caches and a zero frame counter."""
        if not self.supports_step:
            raise BackendUnavailable(f"{self.name}: this model has no step graph")
        state = self._init_tensors(batch)
        state[FRAMES_KEY] = np.zeros(batch, dtype=np.int64)
        return state

    def run_step(self, frame: Any, state: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        """Feed one frame per stream: frame [B, 3, H, W] -> (logits [B, K], new state).

        The returned logits are for the window of the last T frames fed to each stream and are
        meaningful where ``ready(new_state)`` is true. ``state`` is not modified.
        """
        if not self.supports_step:
            raise BackendUnavailable(f"{self.name}: this model has no step graph")
        tensors = {k: v for k, v in state.items() if k != FRAMES_KEY}
        logits, new = self._step(frame, tensors)
        new[FRAMES_KEY] = np.asarray(state[FRAMES_KEY]) + 1
        return logits, new

    def ready(self, state: dict[str, Any]) -> np.ndarray:
        """bool [B]: which streams have seen a full window since their start/reset."""
        return np.asarray(state[FRAMES_KEY]) >= self.window

    def reset_state(self, state: dict[str, Any], streams: Any = None) -> dict[str, Any]:
        """Restart the given streams (indices or bool mask; all when None), in place; returns it.

        A restarted stream behaves exactly like a fresh ``init_state`` row: after T new frames its
        logits equal the clip graph on those frames.
        """
        rows = slice(None) if streams is None else streams
        for v in state.values():
            _zeros_like_rows(v, rows)
        return state

    def stream(self, frames: Any, state: dict[str, Any] | None = None) -> np.ndarray:
        """Run the step graph over a clip: frames [B, 3, N, H, W] -> logits [B, N, K].

        Row ``t`` is the prediction for the window ending at frame ``t`` (meaningful for
        ``t >= T - 1`` when starting from a fresh state). Convenience for tests and the bench.
        """
        if state is None:
            state = self.init_state(frames.shape[0])
        out = []
        for t in range(frames.shape[2]):
            logits, state = self.run_step(frames[:, :, t], state)
            out.append(np.asarray(logits))
        return np.stack(out, axis=1)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()} model={self.card.name}>"


# -------------------------------------------------------------------- state helpers
def stack_states(states: list[dict[str, Any]]) -> dict[str, Any]:
    """Concatenate per-stream states along the stream axis (same backend, same model)."""
    out = {}
    for key in states[0]:
        parts = [s[key] for s in states]
        if _is_torch(parts[0]):
            import torch

            out[key] = torch.cat(parts, 0)
        else:
            out[key] = np.concatenate(parts, 0)
    return out


def split_state(state: dict[str, Any]) -> list[dict[str, Any]]:
    """Inverse of ``stack_states``: one single-stream state (batch 1) per row."""
    n = len(state[FRAMES_KEY])
    return [{k: v[i : i + 1] for k, v in state.items()} for i in range(n)]
