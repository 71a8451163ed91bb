"""DeepStream configs generated from a model card, so they never drift from the model.

For the SDK's ``deepstream-3d-action-recognition`` sample app (nvstreammux -> nvdspreprocess with
the custom sequence library -> nvinfer or nvinferserver) ``write_deepstream_configs(card, DIR)``
writes into DIR:

- ``config_preprocess_3d_custom.txt``: nvdspreprocess with the sample's
  ``libnvds_custom_sequence_preprocess.so``: the NCDHW clip tensor, per-channel normalization,
  subsample (frame step) and stride;
- ``config_infer_primary_3d_action.txt``: nvinfer on the card's clip ONNX with
  ``input-tensor-from-meta=1``, a classifier on its logits;
- ``deepstream_action_recognition_config.txt``: the app's own config (``-c``): sources, muxer,
  the two files above;
- ``config_triton_infer_primary_3d_action.txt`` (nvinferserver, protobuf text),
  ``triton_model_repo/NAME/config.pbtxt`` and ``1/model.onnx`` (a link to the card's ONNX), and
  ``deepstream_action_recognition_config_triton.txt``: the same through Triton.

Every model-dependent value comes from ``deepstream_values(card)``, which ``hcml check-config``
(``hcml.export.deepstream_check``) compares against; paths are relative to DIR.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hcml.card import ModelCard

__all__ = [
    "APP",
    "APP_TRITON",
    "DEFAULT_URI",
    "INFER",
    "PREPROCESS",
    "SEQUENCE_LIB",
    "TRITON_INFER",
    "TRITON_REPO",
    "DeepStreamSettings",
    "default_deepstream_dir",
    "deepstream_values",
    "engine_file_name",
    "render_deepstream_configs",
    "write_deepstream_configs",
]

PREPROCESS = "config_preprocess_3d_custom.txt"
INFER = "config_infer_primary_3d_action.txt"
APP = "deepstream_action_recognition_config.txt"
TRITON_INFER = "config_triton_infer_primary_3d_action.txt"
APP_TRITON = "deepstream_action_recognition_config_triton.txt"
TRITON_REPO = "triton_model_repo"

SEQUENCE_LIB = "/opt/nvidia/deepstream/deepstream/lib/libnvds_custom_sequence_preprocess.so"
SEQUENCE_FUNC = "CustomSequenceTensorPreparation"
DEFAULT_URI = "file:///opt/nvidia/deepstream/deepstream/samples/streams/sample_720p.mp4"
PRECISIONS = {"fp32": 0, "int8": 1, "fp16": 2}  # nvinfer network-mode
CARD_MARK = "# hcml-card: "  # header line naming the card, relative to the config's folder


@dataclass(frozen=True)
class DeepStreamSettings:
    """Deployment choices that are not in the card (the card fixes everything else)."""

    batch_size: int = 4  # max windows (sources x ROIs) in one inference batch
    stride: int = 1  # a window every `stride` sampled frames
    precision: str = "fp16"  # nvinfer network-mode
    gpu_id: int = 0
    uris: tuple[str, ...] = (DEFAULT_URI,)
    triton: bool = True  # also write the nvinferserver / Triton variant

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.stride < 1 or self.gpu_id < 0:
            raise ValueError("batch_size and stride must be >= 1, gpu_id >= 0")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}")
        if not self.uris:
            raise ValueError("at least one source URI")


def _fmt(x: float) -> str:
    return f"{x:.9g}"


def deepstream_values(card: ModelCard) -> dict[str, Any]:
    """The model-dependent values every DeepStream config must carry, from the card alone.

    Normalization: the card normalizes [0, 1] pixels as (x - mean) / std; DeepStream works on
    0..255 pixels and computes y = scale * (x - offset), so scale_c = 1 / (255 std_c) and
    offset_c = 255 mean_c. nvdspreprocess's default library and nvinfer take one scale for all
    channels (``pixel-normalization-factor`` / ``net-scale-factor``): the mean std's, exact only
    when the card's three stds are equal (``single_scale_exact``).
    """
    h, w = card.input_size
    clip = card.tensors.get("clip", {})
    in_name = clip.get("input", "frames")
    out_name = clip.get("output", "logits")
    scales = [1.0 / (255.0 * s) for s in card.std]
    mean_std = sum(card.std) / 3.0
    return {
        "input_name": in_name,
        "output_name": out_name,
        "chw": [3, card.window, h, w],  # per-sample input dims (C, T, H, W)
        "window": card.window,
        "height": h,
        "width": w,
        "num_classes": len(card.labels),
        "labels": list(card.labels),
        "color_format": 0 if card.color_order == "RGB" else 1,  # nvdspreprocess 0=RGB 1=BGR
        "channel_scale_factors": scales,
        "channel_mean_offsets": [255.0 * m for m in card.mean],
        "pixel_normalization_factor": 1.0 / (255.0 * mean_std),
        "single_scale_exact": max(card.std) - min(card.std) < 1e-12,
        "subsample": card.frame_step - 1,  # frames skipped between two sampled frames
        "frame_step": card.frame_step,
    }


def engine_file_name(onnx_rel: str, batch: int, gpu_id: int, precision: str) -> str:
    """nvinfer's own name for the plan it builds from ``onnx_rel`` (so it finds it next start)."""
    return f"{onnx_rel}_b{batch}_gpu{gpu_id}_{precision}.engine"


def default_deepstream_dir(card_dir: str | os.PathLike) -> Path | None:
    """``<repo>/pipelines/deepstream`` for a card in ``<repo>/engines``, else None."""
    d = Path(card_dir).resolve()
    return d.parent / "pipelines" / "deepstream" if d.name == "engines" else None


def _rel(target: Path, start: Path) -> str:
    return Path(os.path.relpath(target.resolve(), start.resolve())).as_posix()


def _header(card: ModelCard, out: Path, what: str) -> list[str]:
    v = deepstream_values(card)
    return [
        f"# {what}",
        f"# Generated by hcml from the model card of {card.name} (window T={v['window']}, "
        f"{v['height']}x{v['width']},",
        f"# frame step {card.frame_step}, {v['num_classes']} labels, {card.color_order}). "
        "Do not edit: regenerate with",
        "# `hcml deepstream-configs CARD --out DIR`, check with `hcml check-config FILE`.",
        f"{CARD_MARK}{_rel(card.path, out)}",  # type: ignore[arg-type]
        "",
    ]


def _preprocess_text(card: ModelCard, out: Path, s: DeepStreamSettings) -> str:
    v = deepstream_values(card)
    c, t, h, w = v["chw"]
    lines = _header(card, out, "nvdspreprocess: temporal + spatial batching of full frames.")
    lines += [
        "[property]",
        "enable=1",
        "# the nvinfer / nvinferserver (gie-unique-id / unique_id) that takes the tensor",
        "target-unique-ids=1",
        f"gpu-id={s.gpu_id}",
        "# 1 = full frames (primary mode)",
        "process-on-frame=1",
        "# B;C;T;H;W: B = max windows a batch, T = the card's window, H x W = its input_size",
        f"network-input-shape={s.batch_size};{c};{t};{h};{w}",
        "# 0=NCHW 1=NHWC 2=CUSTOM: the sequence library lays the clip out as NCDHW",
        "network-input-order=2",
        f"# 0=RGB 1=BGR 2=GRAY: the card's color_order is {card.color_order}",
        f"network-color-format={v['color_format']}",
        "# 0=FP32",
        "tensor-data-type=0",
        "# the clip graph's input tensor",
        f"tensor-name={v['input_name']}",
        f"processing-width={w}",
        f"processing-height={h}",
        "# stretch to the model size with bilinear filtering, as hcml's own preprocessing does",
        "maintain-aspect-ratio=0",
        "scaling-filter=1",
        "scaling-pool-memory-type=0",
        "scaling-pool-compute-hw=0",
        "scaling-buf-pool-size=6",
        "tensor-buf-pool-size=8",
        "# built and installed by the SDK sample: cd custom_sequence_preprocess && make install",
        f"custom-lib-path={SEQUENCE_LIB}",
        f"custom-tensor-preparation-function={SEQUENCE_FUNC}",
        "",
        "[user-configs]",
        "# The sequence library computes y = scale_c * (x - mean_c) on 0..255 pixels; with",
        "# scale_c = 1/(255 std_c) and mean_c = 255 mean_c that is the card's (x/255 - mean)/std.",
        "channel-scale-factors=" + ";".join(_fmt(x) for x in v["channel_scale_factors"]),
        "channel-mean-offsets=" + ";".join(_fmt(x) for x in v["channel_mean_offsets"]),
        "# The same for nvdspreprocess's default 2D library, which takes one factor for all",
        "# channels (unused by the sequence library, kept for that library and as a record).",
    ]
    if not v["single_scale_exact"]:
        lines.append(
            "# The card's stds differ per channel ("
            + ", ".join(_fmt(x) for x in card.std)
            + "): one factor cannot match them all, this is the mean std's."
        )
    lines += [
        f"pixel-normalization-factor={_fmt(v['pixel_normalization_factor'])}",
        "offsets=" + ";".join(_fmt(x) for x in v["channel_mean_offsets"]),
        f"# frame step {card.frame_step}: skip {v['subsample']} decoded frame(s) between samples",
        f"subsample={v['subsample']}",
        f"# a window every {s.stride} sampled frame(s)",
        f"stride={s.stride}",
        "",
        "[group-0]",
        "# sources 0..B-1, one full-frame ROI each",
        "src-ids=" + ";".join(str(i) for i in range(s.batch_size)),
        "process-on-roi=0",
        "",
    ]
    return "\n".join(lines)


def _infer_text(card: ModelCard, out: Path, s: DeepStreamSettings) -> str:
    v = deepstream_values(card)
    onnx = _rel(card.file("clip"), out)  # type: ignore[arg-type]
    labels = _rel(card.file("labels"), out)  # type: ignore[arg-type]
    lines = _header(card, out, "nvinfer: the clip graph on the tensor from nvdspreprocess.")
    lines += [
        "[property]",
        f"gpu-id={s.gpu_id}",
        "gie-unique-id=1",
        "# 1 = primary",
        "process-mode=1",
        f"onnx-file={onnx}",
        "# nvinfer builds this plan beside the ONNX on first start and reuses it afterwards",
        f"model-engine-file={engine_file_name(onnx, s.batch_size, s.gpu_id, s.precision)}",
        "# one line, labels separated by ';' (one line per output layer)",
        f"labelfile-path={labels}",
        f"batch-size={s.batch_size}",
        "# 0=FP32 1=INT8 2=FP16",
        f"network-mode={PRECISIONS[s.precision]}",
        "# 1 = classifier",
        "network-type=1",
        "# the clip tensor comes from nvdspreprocess (its config fixes shape and normalization)",
        "input-tensor-from-meta=1",
        f"output-blob-names={v['output_name']}",
        "# No infer-dims: nvinfer takes only [c;h;w] there, the 5-D input [B,3,T,H,W] comes from",
        "# the ONNX itself (batch dynamic, T/H/W static).",
        "# The graph outputs logits, not probabilities: nvinfer labels a window with the",
        "# largest output above classifier-threshold (>= 0), so the confidence shown is a logit.",
        f"# The card's calibrated scores are softmax(logits / {_fmt(card.temperature)}) (its",
        "# temperature); the label does not depend on it.",
        "classifier-threshold=0",
        "# the app reads the raw output tensor as well",
        "output-tensor-meta=1",
        "tensor-meta-pool-size=8",
        "",
    ]
    return "\n".join(lines)


def _app_text(card: ModelCard, out: Path, s: DeepStreamSettings, triton: bool) -> str:
    engine = "nvinferserver (Triton)" if triton else "nvinfer (TensorRT)"
    lines = _header(card, out, f"deepstream-3d-action-recognition app config, {engine}.")
    lines += [
        "# run from this folder: deepstream-3d-action-recognition -c "
        + (APP_TRITON if triton else APP),
        "[action-recognition]",
        "# sources, ';'-separated URIs (at most batch-size of them)",
        "uri-list=" + ";".join(s.uris),
        "display-sync=1",
        f"preprocess-config={PREPROCESS}",
        f"triton-infer-config={TRITON_INFER}" if triton else f"infer-config={INFER}",
        "muxer-height=720",
        "muxer-width=1280",
        "# usec",
        "muxer-batch-timeout=40000",
        "tiler-height=720",
        "tiler-width=1280",
        "# 0 disabled, 1 debug, 2 verbose (also the sequence library's log)",
        "debug=0",
        "enable-fps=1",
        "# 1: no display (fakesink)",
        "fakesink=0",
        "",
    ]
    return "\n".join(lines)


def _triton_infer_text(card: ModelCard, out: Path, s: DeepStreamSettings) -> str:
    v = deepstream_values(card)
    labels = _rel(card.file("labels"), out)  # type: ignore[arg-type]
    dims = ", ".join(str(d) for d in v["chw"])
    lines = _header(card, out, "nvinferserver: the clip graph in Triton (protobuf text).")
    lines += [
        "infer_config {",
        "  unique_id: 1",
        f"  gpu_ids: [{s.gpu_id}]",
        f"  max_batch_size: {s.batch_size}",
        "  backend {",
        f'    inputs: [ {{ name: "{v["input_name"]}" dims: [{dims}] }} ]',
        f'    outputs: [ {{ name: "{v["output_name"]}" }} ]',
        "    triton {",
        f'      model_name: "{card.name}"',
        "      version: -1",
        "      model_repo {",
        f'        root: "./{TRITON_REPO}"',
        "        strict_model_config: true",
        "      }",
        "    }",
        "  }",
        "  # the clip tensor comes from nvdspreprocess",
        "  input_tensor_from_meta {",
        "    is_first_dim_batch: true",
        "  }",
        "  postprocess {",
        f'    labelfile_path: "{labels}"',
        "    # logits, not probabilities: the largest output above the threshold wins; the",
        f"    # card's calibrated scores are softmax(logits / {_fmt(card.temperature)})",
        "    classification {",
        "      threshold: 0.0",
        "    }",
        "  }",
        "  extra {",
        "    copy_input_to_host_buffers: false",
        "    output_buffer_pool_size: 8",
        "  }",
        "}",
        "input_control {",
        "  process_mode: PROCESS_MODE_FULL_FRAME",
        "  interval: 0",
        "}",
        "output_control {",
        "  output_tensor_meta: true",
        "}",
        "",
    ]
    return "\n".join(lines)


def _triton_model_text(card: ModelCard, out: Path, s: DeepStreamSettings) -> str:
    v = deepstream_values(card)
    dims = ", ".join(str(d) for d in v["chw"])
    lines = _header(card, out, "Triton model configuration: the card's clip graph.")
    lines += [
        f'name: "{card.name}"',
        'platform: "onnxruntime_onnx"',
        f"max_batch_size: {s.batch_size}",
        "input [",
        "  {",
        f'    name: "{v["input_name"]}"',
        "    data_type: TYPE_FP32",
        f"    dims: [ {dims} ]",
        "  }",
        "]",
        "output [",
        "  {",
        f'    name: "{v["output_name"]}"',
        "    data_type: TYPE_FP32",
        f"    dims: [ {v['num_classes']} ]",
        "  }",
        "]",
        f"instance_group [ {{ kind: KIND_GPU count: 1 gpus: [ {s.gpu_id} ] }} ]",
        "",
    ]
    return "\n".join(lines)


def _link_model(card: ModelCard, version_dir: Path) -> Path:
    """``version_dir/model.onnx`` -> the card's ONNX (a relative symlink; a copy if links fail)."""
    version_dir.mkdir(parents=True, exist_ok=True)
    target = card.file("clip")
    dst = version_dir / "model.onnx"
    if dst.is_symlink() or dst.exists():
        dst.unlink()
    try:
        dst.symlink_to(os.path.relpath(target, version_dir))  # type: ignore[arg-type]
    except OSError:
        shutil.copyfile(target, dst)  # type: ignore[arg-type]
    return dst


def _loaded(card: ModelCard | str | os.PathLike) -> ModelCard:
    if not isinstance(card, ModelCard):
        card = ModelCard.load(card)
    if card.path is None or card.file("clip") is None or card.file("labels") is None:
        raise ValueError("the card needs a path and files.clip / files.labels")
    return card


def render_deepstream_configs(
    card: ModelCard | str | os.PathLike,
    out_dir: str | os.PathLike,
    settings: DeepStreamSettings | None = None,
) -> dict[str, str]:
    """The config texts for ``card`` as they would be written into ``out_dir`` (path: text)."""
    card = _loaded(card)
    s = settings or DeepStreamSettings()
    out = Path(out_dir)
    texts = {
        PREPROCESS: _preprocess_text(card, out, s),
        INFER: _infer_text(card, out, s),
        APP: _app_text(card, out, s, triton=False),
    }
    if s.triton:
        texts[TRITON_INFER] = _triton_infer_text(card, out, s)
        texts[APP_TRITON] = _app_text(card, out, s, triton=True)
        model_dir = out / TRITON_REPO / card.name
        texts[f"{TRITON_REPO}/{card.name}/config.pbtxt"] = _triton_model_text(card, model_dir, s)
    return texts


def write_deepstream_configs(
    card: ModelCard | str | os.PathLike,
    out_dir: str | os.PathLike,
    settings: DeepStreamSettings | None = None,
) -> list[Path]:
    """Write the DeepStream configs for ``card`` into ``out_dir``; returns the files written
    (the Triton ``model.onnx`` link last)."""
    card = _loaded(card)
    s = settings or DeepStreamSettings()
    out = Path(out_dir)
    written = []
    for rel, text in render_deepstream_configs(card, out, s).items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    if s.triton:
        written.append(_link_model(card, out / TRITON_REPO / card.name / "1"))
    return written
