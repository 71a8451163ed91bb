"""The one inference interface that every engine implements, and ``load_backend``.

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

import logging
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from hcml.export.card import ModelCard, ModelCardError

log = logging.getLogger(__name__)

BACKENDS = ("onnxruntime", "torch", "tensorrt", "triton")
FRAMES_KEY = "frames"

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendUnavailable",
    "load_backend",
    "resolve_card",
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


# -------------------------------------------------------------------- loading
def resolve_card(model: str | os.PathLike) -> ModelCard:
    """The validated card for a ``.json`` card or an ``.onnx`` file with its card beside it."""
    path = Path(model)
    if path.suffix == ".json":
        return ModelCard.load(path)
    if path.suffix == ".onnx":
        stem = path.name[: -len(".step.onnx")] if path.name.endswith(".step.onnx") else path.stem
        card_path = path.with_name(stem + ".json")
        if not card_path.is_file():
            raise ModelCardError(
                "<file>", f"no model card beside {path} (expected {card_path.name})", card_path
            )
        return ModelCard.load(card_path)
    raise ModelCardError("<file>", f"not a model card (.json) or ONNX file: {path}", path)


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return False
    return torch.cuda.is_available()


def load_backend(
    model: str | os.PathLike, backend: str = "auto", device: str = "cpu", **options: Any
) -> Backend:
    """Open ``model`` with an inference engine.

    model: a model card ``.json`` (normal case), an ``.onnx`` file with its card beside it
    (same stem + ``.json``), or a torch checkpoint ``.pt`` (torch backend; the card is
    synthesized from the checkpoint's cfg).
    backend: ``auto`` | ``onnxruntime`` | ``torch`` | ``tensorrt``. ``auto`` picks, for
    ``device="cpu"``, ONNX Runtime (torch for a checkpoint); for ``device="cuda[:N]"``, TensorRT
    when it is importable and the card has a plan for this GPU, else ONNX Runtime's CUDA
    provider, else torch on CUDA. The choice and why is logged and kept in ``auto_reason``.
    device: ``cpu`` or ``cuda`` / ``cuda:N``.
    options: passed to the engine (e.g. ``threads=`` for onnxruntime, ``compile=`` for torch).
    """
    if backend not in ("auto", *BACKENDS):
        raise ValueError(f"unknown backend {backend!r}; choose auto or one of {BACKENDS}")
    if not (device == "cpu" or device.startswith("cuda")):
        raise ValueError(f"unknown device {device!r}; use cpu, cuda or cuda:N")
    path = Path(model)
    if not path.exists():
        raise FileNotFoundError(f"model not found: {path}")

    if path.suffix in (".pt", ".pth"):
        if backend not in ("auto", "torch"):
            raise BackendUnavailable(
                f"{path.name} is a torch checkpoint: only backend=torch runs it "
                "(export it with `hcml export` for onnxruntime/tensorrt)"
            )
        from hcml.backends.torch_backend import TorchBackend

        b = TorchBackend.from_checkpoint(path, device=device, **options)
        if backend == "auto":
            b.auto_reason = "a torch checkpoint runs only on the torch backend"
        return b

    card = resolve_card(path)
    if backend != "auto":
        return _open(backend, card, device, options)

    reasons = []
    if device.startswith("cuda"):
        from hcml.backends import tensorrt_backend as trt_b

        missing = trt_b.missing()
        if missing is None:
            key = trt_b.plan_key()
            if key in card.plans():
                return _chosen("tensorrt", card, device, options, f"TensorRT plan {key} present")
            reasons.append(f"tensorrt: no plan for {key} in the card (run hcml build-engine)")
        else:
            reasons.append(f"tensorrt: {missing}")
        from hcml.backends.onnxruntime_backend import cuda_provider_available

        if cuda_provider_available():
            return _chosen("onnxruntime", card, device, options, "; ".join(reasons))
        reasons.append("onnxruntime: CUDAExecutionProvider not available")
        if _cuda_available() and card.file("checkpoint") is not None:
            return _chosen("torch", card, device, options, "; ".join(reasons))
        reasons.append("torch: no CUDA device or no checkpoint in the card")
        raise BackendUnavailable(
            f"no engine can run {card.name} on {device}: " + "; ".join(reasons)
        )
    return _chosen("onnxruntime", card, device, options, "CPU default")


def _chosen(name: str, card: ModelCard, device: str, options: dict, why: str) -> Backend:
    b = _open(name, card, device, options)
    b.auto_reason = why
    log.info("backend=auto chose %s (%s): %s", b.describe(), card.name, why)
    return b


def _open(name: str, card: ModelCard, device: str, options: dict) -> Backend:
    if name == "onnxruntime":
        from hcml.backends.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(card, device=device, **options)
    if name == "torch":
        from hcml.backends.torch_backend import TorchBackend

        return TorchBackend.from_card(card, device=device, **options)
    if name == "tensorrt":
        from hcml.backends.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(card, device=device, **options)
    if name == "triton":  # options: server="HOST:PORT" (hcml serve), timeout=, backoff=
        from hcml.backends.triton_backend import TritonBackend

        return TritonBackend(card, device=device, **options)
    raise ValueError(f"unknown backend {name!r}")
