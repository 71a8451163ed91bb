"""PyTorch engine: eager on CPU or CUDA (optionally ``torch.compile``), from a checkpoint or card.

``cuda_graphs=True`` (CUDA only) compiles both graphs with ``mode="reduce-overhead"``, which
records CUDA graphs and replays them: one launch a step instead of one a kernel. Replays write
into the same output buffers, so every output is copied (state clone, logits to host) before the
next call.

It runs the network itself (``model.forward`` for clips) and ``hcml.model.step.StepModel`` for
streaming, i.e. the very modules that ``hcml export`` turns into the ONNX graphs; the exactness
tests compare the others against it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hcml.backends.base import Backend, BackendUnavailable
from hcml.card import ModelCard, ModelCardError, card_from_cfg


def _load_checkpoint(path: Path) -> torch.nn.Module:
    try:
        from hcml.model.checkpoint import load_model
    except ImportError as e:
        raise BackendUnavailable(
            f"torch backend: hcml.model.checkpoint not importable ({e})"
        ) from e
    return load_model(path)


class TorchBackend(Backend):
    """Runs an ``nn.Module`` (eval mode, inference mode) and its ``StepModel``."""

    name = "torch"

    def __init__(
        self,
        model: torch.nn.Module,
        card: ModelCard,
        device: str = "cpu",
        compile: bool = False,
        threads: int | None = None,
        cuda_graphs: bool = False,
    ):
        from hcml.model.step import StepModel

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendUnavailable(
                "torch backend: no CUDA device (torch.cuda.is_available() is False)"
            )
        threads = threads or int(os.environ.get("HCML_THREADS", 0)) or None
        if threads and device == "cpu":
            torch.set_num_threads(threads)
        self.card = card
        self.device = device
        self._dev = torch.device(device)
        self.model = model.eval().to(self._dev)
        if cuda_graphs and not device.startswith("cuda"):
            raise ValueError(
                "torch backend: cuda_graphs needs device=cuda (CUDA graphs are GPU-only)"
            )
        self.cuda_graphs = cuda_graphs
        self.compiled = compile or cuda_graphs
        try:
            self.step_model: StepModel | None = StepModel(self.model, card.window, card.input_size)
        except (TypeError, ValueError):
            self.step_model = None
        self.supports_step = self.step_model is not None
        mode = "reduce-overhead" if cuda_graphs else None
        self._clip_fn = torch.compile(self.model, mode=mode) if self.compiled else self.model
        self._step_fn = (
            torch.compile(self.step_model, mode=mode)
            if self.compiled and self.step_model
            else self.step_model
        )

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike, device: str = "cpu", window: int | None = None, **kw: Any
    ) -> TorchBackend:
        """Load a ``.pt`` checkpoint; the card is synthesized from the model's ``default_cfg``."""
        path = Path(path)
        model = _load_checkpoint(path)
        cfg = dict(getattr(model, "default_cfg", {}) or {})
        card = card_from_cfg(cfg, name=path.stem, window=window)
        card.files = {"checkpoint": path.name}
        card.path = path.with_suffix(".json").resolve()
        return cls(model, card, device=device, **kw)

    @classmethod
    def from_card(cls, card: ModelCard, device: str = "cpu", **kw: Any) -> TorchBackend:
        """Open the checkpoint that a card references (``files.checkpoint``)."""
        ckpt = card.file("checkpoint")
        if ckpt is None:
            raise ModelCardError(
                "files.checkpoint",
                "the torch backend needs a checkpoint; this card has none",
                card.path,
            )
        return cls(_load_checkpoint(ckpt), card, device=device, **kw)

    # ---------------------------------------------------------------- interface
    def describe(self) -> str:
        where = self.device
        if self._dev.type == "cuda":
            where = f"{self.device} ({torch.cuda.get_device_name(self._dev)})"
        else:
            where = f"cpu, {torch.get_num_threads()} threads"
        mode = "CUDA graphs" if self.cuda_graphs else "compiled" if self.compiled else "eager"
        return f"torch {torch.__version__} {mode}, {where}"

    def _tensor(self, x: Any) -> torch.Tensor:
        return torch.as_tensor(x, dtype=torch.float32).to(self._dev, non_blocking=True)

    @torch.inference_mode()
    def run_clip(self, frames: Any) -> np.ndarray:
        self._mark_step()
        return self._clip_fn(self._tensor(frames)).float().cpu().numpy()

    def _mark_step(self) -> None:
        """Tell the CUDA-graph trees that the previous replay's outputs are no longer read."""
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()

    def _init_tensors(self, batch: int) -> dict[str, Any]:
        assert self.step_model is not None
        zeros = self.step_model.init_state(batch, device=self._dev)
        return dict(zip(self.step_model.state_names, zeros, strict=True))

    @torch.inference_mode()
    def _step(self, frame: Any, tensors: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        assert self.step_model is not None
        names = self.step_model.state_names
        self._mark_step()
        outs = self._step_fn(self._tensor(frame), *(tensors[n] for n in names))
        # clone: a state entry may be a view of the caller's frame (a pairing op's cache of the
        # raw input) or of a larger temporary; the state must own its memory
        new = {n: o.clone() for n, o in zip(names, outs[1:], strict=True)}
        return outs[0].float().cpu().numpy(), new
