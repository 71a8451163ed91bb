"""Build TensorRT 10 plans for a model card's clip and step graphs (the Python API, no trtexec).

Settings mirror ``trtexec --onnx=G --minShapes=in:1x.. --optShapes=in:Bx.. --maxShapes=in:32x..
[--fp16] [--int8 --calib=CACHE] --memPoolSize=workspace:MB --saveEngine=P``: one optimization
profile over the batch (= streams) axis 1..32 for every input, workspace limit, precision flags.
Plans land beside the card as ``NAME.<gpu>.<trt>.plan`` and ``NAME.step.<gpu>.<trt>.plan`` and are
recorded under ``files.plans["<gpu>.<trt>"]`` with their sha256.
"""

from __future__ import annotations

import datetime as _dt
import logging
from pathlib import Path
from typing import Any

import numpy as np

from hcml.backends.tensorrt_backend import MAX_BATCH, gpu_name, missing, plan_key
from hcml.export.card import ModelCard, sha256_file

log = logging.getLogger(__name__)

__all__ = ["build_plan", "build_engines", "calibration_batches"]


def _calibrator(trt: Any, batches: list[dict[str, np.ndarray]], cache: Path) -> Any:
    """An entropy calibrator (INT8) feeding ``batches`` (name -> array) from torch CUDA memory."""
    import torch

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.i = 0
            self.keep: list[torch.Tensor] = []

        def get_batch_size(self) -> int:
            return int(next(iter(batches[0].values())).shape[0]) if batches else 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.i >= len(batches):
                return None
            b = batches[self.i]
            self.i += 1
            self.keep = [torch.from_numpy(np.ascontiguousarray(b[n])).cuda() for n in names]
            return [t.data_ptr() for t in self.keep]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data: Any) -> None:
            cache.write_bytes(bytes(data))

    return Calibrator()


def build_plan(
    onnx_path: str | Path,
    plan_path: str | Path,
    fp16: bool = False,
    workspace_mb: int = 1024,
    opt_batch: int = 8,
    calib: list[dict[str, np.ndarray]] | None = None,
    calib_cache: Path | None = None,
) -> Path:
    """Parse an ONNX graph and serialize a plan with a batch profile 1..32 (see module doc)."""
    why = missing()
    if why is not None:
        raise RuntimeError(f"cannot build TensorRT plans: {why}")
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if fp16:
        if not getattr(builder, "platform_has_fast_fp16", True):
            log.warning("this GPU has no fast FP16; building anyway")
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    opt = max(1, min(opt_batch, MAX_BATCH))
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        rest = tuple(tensor.shape)[1:]
        if any(d < 0 for d in rest):
            raise RuntimeError(
                f"{onnx_path}: input {tensor.name} has dynamic non-batch dims {rest}"
            )
        profile.set_shape(tensor.name, (1, *rest), (opt, *rest), (MAX_BATCH, *rest))
    config.add_optimization_profile(profile)
    if calib:
        config.set_flag(trt.BuilderFlag.INT8)
        if fp16:
            config.set_flag(trt.BuilderFlag.FP16)
        config.int8_calibrator = _calibrator(
            trt, calib, calib_cache or Path(str(plan_path) + ".calib")
        )
        config.set_calibration_profile(profile)
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise RuntimeError(f"TensorRT failed to build a plan from {onnx_path} (see the log above)")
    plan_path = Path(plan_path)
    plan_path.write_bytes(memoryview(blob))
    return plan_path


def calibration_batches(
    card: ModelCard, dataset: str, batch: int = 8, batches: int = 8
) -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]]]:
    """INT8 calibration inputs for (clip graph, step graph).

    dataset: a ``.npy`` file of normalized clips [N, 3, T, H, W], or ``synth`` (clips rendered
    by ``hcml.data.synth``). Step-graph batches pair real frames with the real states that ONNX
    Runtime produces while streaming those clips.
    """
    from hcml.backends.onnxruntime_backend import OnnxRuntimeBackend

    t = card.window
    h, w = card.input_size
    n = batch * batches
    if dataset.endswith(".npy"):
        clips = np.load(dataset).astype(np.float32)
    elif dataset == "synth":
        from hcml.data.synth import render_clip

        rng = np.random.default_rng(0)
        mean = np.asarray(card.mean, np.float32)[:, None, None, None]
        std = np.asarray(card.std, np.float32)[:, None, None, None]
        clips = np.stack(
            [
                (
                    render_clip(i % card.num_classes, rng, t, (h, w)).frames.transpose(3, 0, 1, 2)
                    / 255.0
                    - mean
                )
                / std
                for i in range(n)
            ]
        ).astype(np.float32)
    else:
        raise ValueError(
            f"--int8-calib: expected a .npy file of normalized clips or 'synth', got {dataset}"
        )
    if clips.ndim != 5 or clips.shape[1:] != (3, t, h, w):
        raise ValueError(f"calibration clips are {clips.shape}, want [N, 3, {t}, {h}, {w}]")
    clips = clips[: (len(clips) // batch) * batch]
    ct = card.tensors["clip"]
    clip_batches = [{ct["input"]: clips[i : i + batch]} for i in range(0, len(clips), batch)]
    ort = OnnxRuntimeBackend(card)
    st = card.tensors["step"]
    step_batches = []
    for i in range(0, len(clips), batch):
        state = ort.init_state(batch)
        for k in range(t):
            frame = clips[i : i + batch, :, k]
            if k == t - 1:
                feed = {st["input"]: frame}
                feed.update({s["name"]: state[s["key"]] for s in st["state"]})
                step_batches.append(feed)
            _, state = ort.run_step(frame, state)
    return clip_batches, step_batches


def build_engines(
    card_path: str | Path,
    fp16: bool = False,
    int8_calib: str | None = None,
    workspace_mb: int = 1024,
    opt_batch: int = 8,
) -> ModelCard:
    """Build clip and step plans for this GPU/TensorRT and record them in the card."""
    card = ModelCard.load(card_path)
    key = plan_key()
    import tensorrt as trt

    precision = "int8" if int8_calib else ("fp16" if fp16 else "fp32")
    calib_clip = calib_step = None
    if int8_calib:
        calib_clip, calib_step = calibration_batches(card, int8_calib)
    root = card.root
    entry: dict[str, Any] = {
        "gpu": gpu_name(),
        "tensorrt": trt.__version__,
        "precision": precision,
        "workspace_mb": workspace_mb,
        "batch": [1, opt_batch, MAX_BATCH],
        "built": _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat(),
        "from": {card.files["clip"]: card.sha256.get(card.files["clip"], "")},
    }
    clip_plan = f"{card.name}.{key}.plan"
    build_plan(
        root / card.files["clip"], root / clip_plan, fp16, workspace_mb, opt_batch, calib_clip
    )
    entry["clip"] = clip_plan
    if card.files.get("step"):
        step_plan = f"{card.name}.step.{key}.plan"
        build_plan(
            root / card.files["step"], root / step_plan, fp16, workspace_mb, opt_batch, calib_step
        )
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
