"""Engine selection: ``load_backend`` opens a model card (or checkpoint) with an engine.

``backend="auto"`` picks, for ``device="cpu"``, ONNX Runtime (torch for a checkpoint); for
``device="cuda[:N]"``, TensorRT when it is importable and the card has a plan for this GPU, else
ONNX Runtime's CUDA provider, else torch on CUDA. Engine modules are imported here, lazily: they
import ``hcml.backends.base`` (the interface), never this module.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from hcml.backends.base import BACKENDS, Backend, BackendUnavailable
from hcml.card import ModelCard, ModelCardError

log = logging.getLogger(__name__)

__all__ = ["load_backend", "resolve_card"]


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
