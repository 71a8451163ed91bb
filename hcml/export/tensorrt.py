"""Build TensorRT plans for a model card's clip and step graphs: one strongly typed path that
runs on TensorRT 10 and 11 (the Python API, no trtexec).

TensorRT 11 removed weak typing (``BuilderFlag.FP16``/``INT8``, ``IBuilderConfig.int8_calibrator``,
calibration profiles, ``platform_has_fast_fp16``); TensorRT 10 (what DeepStream releases ship)
builds strongly typed networks too. So the precision lives in the ONNX graph, never in builder
flags:

- ``fp32``: the card's graph as exported;
- ``fp16``: the graph with its float tensors and weights converted to float16 by ONNX Runtime's
  converter (``onnxruntime.transformers.float16``), inputs and outputs kept float32 (Cast nodes
  at the edges), so callers and DeepStream's FP32 tensors are unchanged;
- ``int8``: explicit quantization, Q/DQ nodes inserted by ONNX Runtime's static quantizer
  (``QuantFormat.QDQ``, symmetric signed INT8 activations and per-channel weights, the form
  TensorRT's explicit quantization takes), calibrated on CPU with ``calibration_batches``.

The network is created with ``NetworkDefinitionCreationFlag.STRONGLY_TYPED`` (a no-op where
strong typing is the only mode). Settings mirror ``trtexec --onnx=G --stronglyTyped
--minShapes=in:1x.. --optShapes=in:Bx.. --maxShapes=in:32x.. --memPoolSize=workspace:MB
--saveEngine=P``: one optimization profile over the batch (= streams) axis 1..32 for every input.
Plans land beside the card as ``NAME.<gpu>.<trt>.plan`` and ``NAME.step.<gpu>.<trt>.plan`` and are
recorded under ``files.plans["<gpu>.<trt>"]`` with their sha256; ``<gpu>`` is the model of the
device the plan is built on (``cuda:N``).
"""

from __future__ import annotations

import datetime as _dt
import logging
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hcml.backends.tensorrt_backend import MAX_BATCH, device_index, gpu_name, missing, plan_key
from hcml.card import ModelCard, sha256_file

if TYPE_CHECKING:
    import tensorrt as trt

log = logging.getLogger(__name__)

__all__ = [
    "CALIB_CLIPS",
    "PRECISIONS",
    "build_engines",
    "build_plan",
    "calibration_batches",
    "calibration_clips",
    "fp16_onnx",
    "int8_qdq_onnx",
    "network_flags",
    "profile_shapes",
]

PRECISIONS = ("fp32", "fp16", "int8")
CALIB_CLIPS = 64  # clips the INT8 calibration sees, whatever the batch
# Ops given Q/DQ inputs: the convolutions and matrix products (TensorRT's INT8 kernels). The
# cost volume's products, the softmax and the moments stay FP32: quantizing every op measured
# an output correlation of -0.001 with FP32 on the shipped clip graph, these ops alone 0.995.
INT8_OPS = ("Conv", "MatMul", "Gemm")


def profile_shapes(
    name: str, shape: Sequence[int], opt_batch: int
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(min, opt, max) shapes of one input for the batch profile 1 / opt / ``MAX_BATCH``.

    shape: the network input's shape, batch first (-1 where dynamic). The other dims must be
    static; ``opt_batch`` is clamped to 1..MAX_BATCH.
    """
    rest = tuple(int(d) for d in shape[1:])
    if not shape or any(d < 0 for d in rest):
        raise ValueError(f"input {name} has dynamic non-batch dims {tuple(shape)}")
    opt = max(1, min(int(opt_batch), MAX_BATCH))
    return (1, *rest), (opt, *rest), (MAX_BATCH, *rest)


def network_flags(trt_module: Any) -> int:
    """``create_network`` flags: STRONGLY_TYPED where the enum has it (TensorRT 10 and 11)."""
    flag = getattr(trt_module.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


def fp16_onnx(src: str | Path, dst: str | Path) -> Path:
    """``src`` with float32 tensors and weights as float16, inputs/outputs kept float32."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dst))
    return Path(dst)


class _Batches:
    """An ONNX Runtime ``CalibrationDataReader`` over a list of feeds (name -> array)."""

    def __init__(self, batches: list[dict[str, np.ndarray]]):
        self._it: Iterator[dict[str, np.ndarray]] = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def int8_qdq_onnx(src: str | Path, dst: str | Path, batches: list[dict[str, np.ndarray]]) -> Path:
    """``src`` with explicit INT8 Q/DQ nodes calibrated on ``batches`` (ONNX Runtime, CPU).

    Symmetric signed INT8 (zero points 0) for activations and per-channel weights: the Q/DQ form
    TensorRT's explicit quantization builds from. Only ``INT8_OPS`` are quantized; everything
    else stays float32.
    """
    if not batches:
        raise ValueError("INT8 needs calibration batches")
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(_Batches, CalibrationDataReader):
        pass

    quantize_static(
        str(src),
        str(dst),
        Reader(batches),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        op_types_to_quantize=list(INT8_OPS),
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
    )
    return Path(dst)


def build_plan(
    onnx_path: str | Path,
    plan_path: str | Path,
    workspace_mb: int = 1024,
    opt_batch: int = 8,
    device: int = 0,
) -> Path:
    """Parse an ONNX graph into a strongly typed network and serialize a plan with a batch
    profile 1..32 on CUDA device ``device`` (see module doc). The precision is the graph's."""
    why = missing()
    if why is not None:
        raise RuntimeError(f"cannot build TensorRT plans: {why}")
    import tensorrt as trt
    import torch

    logger = trt.Logger(trt.Logger.WARNING)
    with torch.cuda.device(device):  # the builder works on the current CUDA device
        builder = trt.Builder(logger)
        network = builder.create_network(network_flags(trt))
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            shape = [tensor.shape[j] for j in range(len(tensor.shape))]
            try:
                lo, opt, hi = profile_shapes(tensor.name, shape, opt_batch)
            except ValueError as e:
                raise RuntimeError(f"{onnx_path}: {e}") from None
            profile.set_shape(
                tensor.name, trt.Dims(list(lo)), trt.Dims(list(opt)), trt.Dims(list(hi))
            )
        config.add_optimization_profile(profile)
        blob: trt.IHostMemory | None = builder.build_serialized_network(network, config)
    if blob is None:
        raise RuntimeError(f"TensorRT failed to build a plan from {onnx_path} (see the log above)")
    plan_path = Path(plan_path)
    plan_path.write_bytes(memoryview(blob))
    return plan_path


def calibration_clips(card: ModelCard, dataset: str, n: int = CALIB_CLIPS) -> np.ndarray:
    """Normalized clips [N, 3, T, H, W] for INT8 calibration.

    dataset: a ``.npy`` file of normalized clips [N, 3, T, H, W], or ``synth`` (clips rendered by
    ``hcml.data.synth`` at its own size with the card's frame step, resized to the card's
    input_size and normalized as the card says).
    """
    t = card.window
    h, w = card.input_size
    if dataset.endswith(".npy"):
        try:
            clips = np.load(dataset).astype(np.float32)
        except (OSError, ValueError) as e:
            raise ValueError(f"--int8-calib: cannot read {dataset} ({e})") from None
    elif dataset == "synth":
        import torch

        from hcml.data.synth import render_clip
        from hcml.data.transforms import resize_clip, to_model_input

        rng = np.random.default_rng(0)
        step = max(1, card.frame_step)
        out = []
        for i in range(n):
            frames = render_clip(i % card.num_classes, rng, t * step).frames[::step]
            clip = resize_clip(torch.from_numpy(np.ascontiguousarray(frames)), (h, w))
            out.append(to_model_input(clip, card.mean, card.std).numpy())
        clips = np.stack(out).astype(np.float32)
    else:
        raise ValueError(
            f"--int8-calib: expected a .npy file of normalized clips or 'synth', got {dataset}"
        )
    if clips.ndim != 5 or clips.shape[1:] != (3, t, h, w):
        raise ValueError(
            f"calibration clips are {list(clips.shape)}, want [N, 3, {t}, {h}, {w}] (the card's)"
        )
    return clips[:n]


def calibration_batches(
    card: ModelCard, dataset: str, batch: int = 8, clips: int = CALIB_CLIPS
) -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]]]:
    """INT8 calibration feeds for (clip graph, step graph), ``batch`` clips a feed (the profile's
    opt batch; clamped to 1..MAX_BATCH) over ``clips`` clips (the last feed may be smaller).

    Step-graph feeds pair real frames with the real states that ONNX Runtime produces while
    streaming those clips.
    """
    from hcml.backends.onnxruntime_backend import OnnxRuntimeBackend

    data = calibration_clips(card, dataset, clips)
    batch = max(1, min(int(batch), MAX_BATCH))
    t = card.window
    ct = card.tensors["clip"]
    starts = range(0, len(data), batch)
    clip_batches = [{ct["input"]: data[i : i + batch]} for i in starts]
    step_batches: list[dict[str, np.ndarray]] = []
    st = card.tensors.get("step")
    if not st or not card.files.get("step"):
        return clip_batches, step_batches
    ort = OnnxRuntimeBackend(card)
    for i in starts:
        part = data[i : i + batch]
        state = ort.init_state(len(part))
        for k in range(t):
            frame = part[:, :, k]
            if k == t - 1:
                feed = {st["input"]: frame}
                feed.update({s["name"]: state[s["key"]] for s in st["state"]})
                step_batches.append(feed)
            _, state = ort.run_step(frame, state)
    return clip_batches, step_batches


def _precision_onnx(
    src: Path, tmp: Path, precision: str, batches: list[dict[str, np.ndarray]] | None
) -> Path:
    if precision == "fp16":
        return fp16_onnx(src, tmp / f"{src.stem}.fp16.onnx")
    if precision == "int8":
        return int8_qdq_onnx(src, tmp / f"{src.stem}.int8.onnx", batches or [])
    return src


def build_engines(
    card_path: str | Path,
    fp16: bool = False,
    int8_calib: str | None = None,
    workspace_mb: int = 1024,
    opt_batch: int = 8,
    device: str | int = "cuda",
) -> ModelCard:
    """Build clip and step plans on ``device`` (``cuda``, ``cuda:N``) and record them in the card.

    fp16: FP16 graphs; int8_calib: INT8 through Q/DQ calibrated on that dataset (see
    ``calibration_clips``). One precision a build: both raise ValueError.
    """
    if fp16 and int8_calib:
        raise ValueError("--fp16 and --int8-calib: choose one precision a build")
    index = device_index(device)
    card = ModelCard.load(card_path)
    key = plan_key(index)
    import tensorrt as trt

    precision = "int8" if int8_calib else ("fp16" if fp16 else "fp32")
    calib_clip = calib_step = None
    if int8_calib:
        calib_clip, calib_step = calibration_batches(card, int8_calib, opt_batch)
    root = card.root
    entry: dict[str, Any] = {
        "gpu": gpu_name(index),
        "tensorrt": trt.__version__,
        "precision": precision,
        "strongly_typed": True,
        "workspace_mb": workspace_mb,
        "batch": [1, max(1, min(opt_batch, MAX_BATCH)), MAX_BATCH],
        "built": _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat(),
        "from": {card.files["clip"]: card.sha256.get(card.files["clip"], "")},
    }
    with tempfile.TemporaryDirectory(prefix="hcml-trt-") as tmp:
        clip_onnx = _precision_onnx(root / card.files["clip"], Path(tmp), precision, calib_clip)
        clip_plan = f"{card.name}.{key}.plan"
        build_plan(clip_onnx, root / clip_plan, workspace_mb, opt_batch, index)
        entry["clip"] = clip_plan
        if card.files.get("step"):
            step_onnx = _precision_onnx(root / card.files["step"], Path(tmp), precision, calib_step)
            step_plan = f"{card.name}.step.{key}.plan"
            build_plan(step_onnx, root / step_plan, workspace_mb, opt_batch, index)
            entry["step"] = step_plan
            entry["from"][card.files["step"]] = card.sha256.get(card.files["step"], "")
    plans = dict(card.files.get("plans") or {})
    plans[key] = entry
    card.files["plans"] = plans
    for role in ("clip", "step"):
        if role in entry:
            card.sha256[entry[role]] = sha256_file(root / entry[role])
    card.save()
    return card
