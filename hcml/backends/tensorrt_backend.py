"""TensorRT 10/11 engine: deserializes the card's plans for this GPU and runs them by tensor name.

Device memory is torch CUDA tensors (no pycuda): inputs are copied to the GPU, outputs are
allocated per call from the shapes the execution context reports, addresses are bound with
``set_tensor_address`` and the plan runs with ``execute_async_v3`` on torch's current stream.
The step graph's state stays on the GPU between calls (torch tensors in the opaque state dict).

Plans are not portable: a plan is built for one GPU model and one TensorRT version. The card keys
its plans ``"<gpu>.<tensorrt-version>"`` (``plan_key(N)``, ``<gpu>`` the model of CUDA device N) and
this backend refuses a card whose plans were built elsewhere, naming both sides.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np

from hcml.backends.base import Backend, BackendUnavailable
from hcml.card import ModelCard, ModelCardError

if TYPE_CHECKING:  # checked against tensorrt-stubs (tests/test_typecheck.py)
    import tensorrt as trt

MAX_BATCH = 32  # the optimization profile's max batch (streams); larger batches run in chunks


def missing() -> str | None:
    """Why TensorRT cannot run here (``"tensorrt not importable ..."``, ``"no CUDA device"``)."""
    try:
        import tensorrt  # noqa: F401
    except ImportError as e:
        return f"tensorrt not importable ({e})"
    try:
        import torch
    except ImportError:  # pragma: no cover
        return "torch not importable (device memory comes from torch CUDA tensors)"
    if not torch.cuda.is_available():
        return "no CUDA device (torch.cuda.is_available() is False)"
    return None


def gpu_name(device: int = 0) -> str:
    import torch

    return torch.cuda.get_device_name(device)


def gpu_slug(name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3' (file-name safe)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def device_index(device: str | int) -> int:
    """CUDA device index of ``"cuda"`` (0), ``"cuda:N"`` or ``N``; ValueError for anything else."""
    if isinstance(device, int) and not isinstance(device, bool):
        index = device
    else:
        m = re.fullmatch(r"cuda(?::(\d+))?", str(device).strip())
        if m is None:
            raise ValueError(f"device must be cuda or cuda:N for TensorRT, got {device!r}")
        index = int(m.group(1) or 0)
    if index < 0:
        raise ValueError(f"CUDA device index must be >= 0, got {index}")
    return index


def make_plan_key(gpu: str, tensorrt_version: str) -> str:
    """``"<gpu slug>.<tensorrt-version>"``: what a plan is portable across (not the index)."""
    return f"{gpu_slug(gpu)}.{tensorrt_version}"


def plan_key(device: int = 0) -> str:
    """The plan key of CUDA device ``device`` with this TensorRT (needs both)."""
    import tensorrt as trt

    return make_plan_key(gpu_name(device), trt.__version__)


def _dims(d: trt.Dims) -> tuple[int, ...]:
    return tuple(int(d[i]) for i in range(len(d)))


_TORCH_DTYPES = {
    "FLOAT": "float32",
    "HALF": "float16",
    "INT32": "int32",
    "INT64": "int64",
    "INT8": "int8",
    "BOOL": "bool",
}


class _Engine:
    """One deserialized plan + execution context, run by tensor name with torch CUDA memory."""

    def __init__(self, runtime: trt.Runtime, path: str, device: Any):
        import tensorrt as trt
        import torch

        with open(path, "rb") as f:
            blob = f.read()
        torch.cuda.init()
        with torch.cuda.device(device):  # plans and contexts live on the device they load on
            engine: trt.ICudaEngine | None = runtime.deserialize_cuda_engine(blob)
        if engine is None:
            raise BackendUnavailable(
                f"TensorRT {trt.__version__} could not deserialize {path}: plans are not portable "
                "across GPUs or TensorRT versions; rebuild with `hcml build-engine`"
            )
        self.engine: trt.ICudaEngine = engine
        with torch.cuda.device(device):
            context: trt.IExecutionContext | None = engine.create_execution_context()
        if context is None:
            raise BackendUnavailable(f"TensorRT could not create an execution context for {path}")
        self.context: trt.IExecutionContext = context
        self.device = device
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self.dtypes: dict[str, Any] = {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            mode = self.engine.get_tensor_mode(name)
            (self.inputs if mode == trt.TensorIOMode.INPUT else self.outputs).append(name)
            dt = self.engine.get_tensor_dtype(name)
            self.dtypes[name] = getattr(torch, _TORCH_DTYPES.get(dt.name, "float32"))
        self._torch = torch

    def __call__(self, feeds: dict[str, Any]) -> dict[str, Any]:
        """feeds: name -> CUDA tensor (batch-first) -> outputs: name -> CUDA tensor."""
        torch = self._torch
        batch = next(iter(feeds.values())).shape[0]
        if batch > MAX_BATCH:
            parts = [
                self({k: v[i : i + MAX_BATCH] for k, v in feeds.items()})
                for i in range(0, batch, MAX_BATCH)
            ]
            return {k: torch.cat([p[k] for p in parts], 0) for k in self.outputs}
        ctx = self.context
        keep = []
        for name in self.inputs:
            t = feeds[name].to(self.device, self.dtypes[name]).contiguous()
            keep.append(t)
            if not ctx.set_input_shape(name, tuple(t.shape)):
                rest = list(_dims(self.engine.get_tensor_shape(name)))[1:]
                raise RuntimeError(
                    f"TensorRT refused input {name} of shape {list(t.shape)} (the plan takes "
                    f"[1..{MAX_BATCH}, *{rest}])"
                )
            if not ctx.set_tensor_address(name, t.data_ptr()):
                raise RuntimeError(f"TensorRT refused the device address of input {name}")
        out = {}
        for name in self.outputs:
            shape = _dims(ctx.get_tensor_shape(name))
            out[name] = torch.empty(shape, dtype=self.dtypes[name], device=self.device)
            if not ctx.set_tensor_address(name, out[name].data_ptr()):
                raise RuntimeError(f"TensorRT refused the device address of output {name}")
        stream = torch.cuda.current_stream(self.device)
        with torch.cuda.device(self.device):
            if not ctx.execute_async_v3(stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed")
        return out


class TensorRTBackend(Backend):
    """Runs the card's TensorRT plans (clip and step) built for this GPU and TensorRT version."""

    name = "tensorrt"

    def __init__(self, card: ModelCard, device: str = "cuda"):
        why = missing()
        if why is not None:
            raise BackendUnavailable(f"tensorrt backend: {why}")
        import tensorrt as trt
        import torch

        if device == "cpu":
            device = "cuda"
        try:
            index = device_index(device)
        except ValueError as e:
            raise BackendUnavailable(f"tensorrt backend: {e}") from None
        self.card = card
        self.device = f"cuda:{index}"
        self._dev = torch.device(self.device)
        key = plan_key(index)
        plans = card.plans()
        if key not in plans:
            built = ", ".join(sorted(plans)) or "none"
            raise BackendUnavailable(
                f"{card.path}: no TensorRT plan for this machine ({gpu_name(index)}, TensorRT "
                f"{trt.__version__}; key {key}). Plans in the card: {built}. Plans are not "
                f"portable across GPUs or TensorRT versions: run `hcml build-engine {card.path}`."
            )
        entry = plans[key]
        self.plan = entry
        self._trt = trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(self._logger)
        clip_path = card.root / entry["clip"]
        if not clip_path.is_file():
            raise ModelCardError(
                f"files.plans.{key}.clip", f"file not found: {clip_path}", card.path
            )
        self._clip = _Engine(runtime, str(clip_path), self._dev)
        self._state = list(card.tensors.get("step", {}).get("state", []))
        self.supports_step = bool(entry.get("step"))
        if self.supports_step:
            step_path = card.root / entry["step"]
            if not step_path.is_file():
                raise ModelCardError(
                    f"files.plans.{key}.step", f"file not found: {step_path}", card.path
                )
            self._step_engine = _Engine(runtime, str(step_path), self._dev)
        ct, st = card.tensors.get("clip", {}), card.tensors.get("step", {})
        self._names = (
            ct.get("input", "frames"),
            ct.get("output", "logits"),
            st.get("input", "frame"),
            st.get("output", "logits"),
        )

    def describe(self) -> str:
        return (
            f"tensorrt {self._trt.__version__} {self.plan.get('precision', 'fp32')}, "
            f"{self.device} ({gpu_name(self._dev.index or 0)})"
        )

    def _tensor(self, x: Any) -> Any:
        import torch

        return torch.as_tensor(x).to(self._dev, torch.float32)

    def run_clip(self, frames: Any) -> np.ndarray:
        cin, cout, _, _ = self._names
        out = self._clip({cin: self._tensor(frames)})[cout]
        return out.float().cpu().numpy()

    def _init_tensors(self, batch: int) -> dict[str, Any]:
        import torch

        return {
            s["key"]: torch.zeros(batch, *s["shape"][1:], device=self._dev) for s in self._state
        }

    def _step(self, frame: Any, tensors: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        _, _, sin, sout = self._names
        feeds = {sin: self._tensor(frame)}
        for s in self._state:
            feeds[s["name"]] = tensors[s["key"]]
        out = self._step_engine(feeds)
        new = {s["key"]: out[s["out"]].float() for s in self._state}
        return out[sout].float().cpu().numpy(), new
