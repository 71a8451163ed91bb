"""ONNX Runtime engine: the CPU default (CUDA execution provider when installed and asked for).

onnxruntime is imported through ``hcml._unwind.import_onnxruntime`` so that its C++ exceptions
stay Python exceptions when GStreamer (and with it libunwind) was loaded first.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from hcml._unwind import import_onnxruntime
from hcml.backends.base import Backend, BackendUnavailable
from hcml.card import ModelCard


def cuda_provider_available() -> bool:
    """True when this onnxruntime build has the CUDA execution provider."""
    try:
        ort = import_onnxruntime()
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()


def _as_numpy(x: Any) -> np.ndarray:
    if type(x).__module__.startswith("torch"):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


def step_state_spec(card: ModelCard) -> list[dict[str, Any]]:
    """The step graph's state tensors from the card: dicts with key, name, out, shape, dtype."""
    return list(card.tensors.get("step", {}).get("state", []))


class OnnxRuntimeBackend(Backend):
    """Runs ``files.clip`` and ``files.step`` of a model card with onnxruntime."""

    name = "onnxruntime"

    def __init__(
        self,
        card: ModelCard,
        device: str = "cpu",
        threads: int | None = None,
        optimization: str = "all",
    ):
        try:
            ort = import_onnxruntime()
        except ImportError as e:  # pragma: no cover - a hard dependency
            raise BackendUnavailable(f"onnxruntime not importable ({e})") from e
        self._ort = ort
        self.card = card
        self.device = device
        if device.startswith("cuda"):
            if not cuda_provider_available():
                raise BackendUnavailable(
                    "onnxruntime: CUDAExecutionProvider not available "
                    f"(providers: {ort.get_available_providers()}); install onnxruntime-gpu"
                )
            index = int(device.split(":")[1]) if ":" in device else 0
            providers: list[Any] = [("CUDAExecutionProvider", {"device_id": index})]
        else:
            providers = ["CPUExecutionProvider"]
        self.threads = threads or int(os.environ.get("HCML_THREADS", 0)) or (os.cpu_count() or 1)
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        # Worker threads that spin after each run burn the cores the streaming threads need:
        # off, a live 720p30 stream's event latency fell from p50 26 / p99 38 ms to 22 / 29 ms
        # (hcml bench latency, 30 s runs, same machine). HCML_ORT_SPINNING=1 turns it back on.
        if os.environ.get("HCML_ORT_SPINNING", "0") != "1":
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.graph_optimization_level = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        }[optimization]
        self._clip = ort.InferenceSession(str(card.file("clip")), so, providers=providers)
        ct = card.tensors.get("clip", {})
        self._clip_in = ct.get("input", "frames")
        self._clip_out = ct.get("output", "logits")
        self._state = step_state_spec(card)
        step_path = card.file("step")
        self.supports_step = step_path is not None
        if self.supports_step:
            self._step_sess = ort.InferenceSession(str(step_path), so, providers=providers)
            st = card.tensors.get("step", {})
            self._step_in = st.get("input", "frame")
            self._step_out = st.get("output", "logits")
            self._step_outputs = [self._step_out] + [s["out"] for s in self._state]
        self.provider = self._clip.get_providers()[0]

    def describe(self) -> str:
        return f"onnxruntime {self._ort.__version__} {self.provider}, {self.threads} threads"

    def run_clip(self, frames: Any) -> np.ndarray:
        x = _as_numpy(frames)
        return self._clip.run([self._clip_out], {self._clip_in: x})[0]

    def _init_tensors(self, batch: int) -> dict[str, Any]:
        return {
            s["key"]: np.zeros([batch, *s["shape"][1:]], dtype=np.dtype(s.get("dtype", "float32")))
            for s in self._state
        }

    def _step(self, frame: Any, tensors: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        feeds = {self._step_in: _as_numpy(frame)}
        for s in self._state:
            feeds[s["name"]] = tensors[s["key"]]
        outs = self._step_sess.run(self._step_outputs, feeds)
        return outs[0], {s["key"]: o for s, o in zip(self._state, outs[1:], strict=True)}
