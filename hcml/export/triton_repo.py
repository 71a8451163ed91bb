"""The Triton model repository for a model card: what ``hcml serve`` loads and what DeepStream's
``nvinferserver`` (gRPC mode) or any Triton client points at.

Layout (one folder a model; ``NAME`` is the card's name)::

    REPO/NAME/config.pbtxt        the clip graph: frames [B,3,T,H,W] -> logits [B,K]
    REPO/NAME/1/model.onnx        copy of the card's clip ONNX
    REPO/NAME/1/model.py          hcml/serve/triton_model.py (ONNX Runtime in the python backend)
    REPO/NAME_step/config.pbtxt   the step graph: frame [B,3,H,W] + state.* -> logits + new_state.*
    REPO/NAME_step/1/model.onnx   copy of the card's step ONNX
    REPO/NAME_step/1/model.py     the same model.py
    REPO/NAME_step_seq/...        the step graph with the state held by the server:
                                  frame [B,3,H,W] -> logits [B,K] (same model.onnx, model.py)

All models use ``backend: "python"`` (the Triton in the nvidia-pytriton wheel has no
onnxruntime backend). ``NAME`` and ``NAME_step`` use the dynamic batcher and are stateless
(``NAME_step``: the client sends and receives each stream's state). ``NAME_step_seq`` uses the
sequence batcher: one correlation id per stream, control inputs ``START``/``END`` (fp32 0/1)
and ``CORRID`` (uint64), the ``oldest`` strategy (requests of different sequences batched into
one ORT call, a sequence always on the same instance), ``max_sequence_idle_microseconds``; the
model keeps each sequence's state in memory (docs/SERVING.md compares the two). The clip model
is named exactly like the card, so nvinferserver's ``model_name: "NAME"`` finds it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from hcml.card import ModelCard, clip_model_name, sequence_model_name, step_model_name
from hcml.export.deepstream import CARD_MARK

__all__ = [
    "clip_model_name",
    "sequence_idle_problem",
    "sequence_model_name",
    "step_model_name",
    "triton_model_configs",
    "write_triton_repo",
]

MODEL_PY = Path(__file__).resolve().parent.parent / "serve" / "triton_model.py"


def _dims(shape: list[int]) -> str:
    """Card shape with the batch axis (-1) dropped -> protobuf text ``[ a, b, c ]``."""
    return "[ " + ", ".join(str(int(d)) for d in shape[1:]) + " ]"


def _tensor(name: str, shape: list[int]) -> str:
    return f'  {{ name: "{name}" data_type: TYPE_FP32 dims: {_dims(shape)} }}'


def _config(
    name: str,
    inputs: list[tuple[str, list[int]]],
    outputs: list[tuple[str, list[int]]],
    max_batch: int,
    queue_delay_us: int,
    instances: int,
    threads: int,
    sequence: dict[str, Any] | None = None,
) -> str:
    """config.pbtxt text; ``sequence`` (idle_us, candidates, state) makes it a sequence model."""
    if sequence is None:
        batcher = [f"dynamic_batching {{ max_queue_delay_microseconds: {queue_delay_us} }}"]
        extra: list[str] = []
    else:
        ctl = [
            ("START", "kind: CONTROL_SEQUENCE_START fp32_false_true: [ 0, 1 ]"),
            ("END", "kind: CONTROL_SEQUENCE_END fp32_false_true: [ 0, 1 ]"),
            ("CORRID", "kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64"),
        ]
        batcher = [
            "sequence_batching {",
            f"  max_sequence_idle_microseconds: {sequence['idle_us']}",
            f"  oldest {{ max_candidate_sequences: {sequence['candidates']} "
            f"max_queue_delay_microseconds: {queue_delay_us} }}",
            "  control_input [",
            ",\n".join(f'    {{ name: "{n}" control [ {{ {c} }} ] }}' for n, c in ctl),
            "  ]",
            "}",
        ]
        # state input name = state output name = shape (batch axis kept): what model.py holds
        spec = ";".join(f"{n}={o}={','.join(map(str, sh))}" for n, o, sh in sequence["state"])
        extra = [
            f'parameters {{ key: "state" value: {{ string_value: "{spec}" }} }}',
            f'parameters {{ key: "idle_us" value: {{ string_value: "{sequence["idle_us"]}" }} }}',
        ]
    return "\n".join(
        [
            f"# written by hcml.export.triton_repo; model {name}",
            f'name: "{name}"',
            'backend: "python"',
            f"max_batch_size: {max_batch}",
            "input [",
            ",\n".join(_tensor(n, s) for n, s in inputs),
            "]",
            "output [",
            ",\n".join(_tensor(n, s) for n, s in outputs),
            "]",
            *batcher,
            f"instance_group [ {{ kind: KIND_CPU count: {instances} }} ]",
            'parameters { key: "onnx_file" value: { string_value: "model.onnx" } }',
            f'parameters {{ key: "threads" value: {{ string_value: "{threads}" }} }}',
            *extra,
            "",
        ]
    )


def sequence_idle_problem(seconds: float) -> str | None:
    """What is wrong with a sequence idle timeout (``--sequence-idle-s``), or None."""
    if 1e-6 <= seconds <= 86400 * 365:
        return None
    return (
        f"--sequence-idle-s must be a positive number of seconds (at most a year), got {seconds:g}"
    )


def triton_model_configs(
    card: ModelCard,
    max_batch: int = 64,
    queue_delay_us: int = 500,
    instances: int = 1,
    threads: int = 0,
    sequence_idle_s: float = 30.0,
    max_sequences: int = 1024,
) -> dict[str, str]:
    """{model name: config.pbtxt text} for the card's clip graph and (if any) its step graph
    twice: client-sent state (``NAME_step``) and server-held state (``NAME_step_seq``: a
    sequence idle for ``sequence_idle_s`` is dropped; ``max_sequences`` streams may be in
    flight per instance, more wait for a free slot)."""
    opts = dict(
        max_batch=max_batch, queue_delay_us=queue_delay_us, instances=instances, threads=threads
    )
    ct: dict[str, Any] = card.tensors.get("clip", {})
    c_in, c_out = ct.get("input", "frames"), ct.get("output", "logits")
    h, w = card.input_size
    k = len(card.labels)
    out = {
        clip_model_name(card): _config(
            clip_model_name(card),
            [(c_in, ct.get("inputs", {}).get(c_in, [-1, 3, card.window, h, w]))],
            [(c_out, ct.get("outputs", {}).get(c_out, [-1, k]))],
            **opts,
        )
    }
    if card.file("step") is not None:
        st: dict[str, Any] = card.tensors.get("step", {})
        s_in, s_out = st.get("input", "frame"), st.get("output", "logits")
        state = st.get("state", [])
        frame = (s_in, st.get("inputs", {}).get(s_in, [-1, 3, h, w]))
        logits = (s_out, st.get("outputs", {}).get(s_out, [-1, k]))
        out[step_model_name(card)] = _config(
            step_model_name(card),
            [frame] + [(s["name"], s["shape"]) for s in state],
            [logits] + [(s["out"], s["shape"]) for s in state],
            **opts,
        )
        if state:
            seq = {
                "idle_us": int(sequence_idle_s * 1e6),
                "candidates": max_sequences,
                "state": [(s["name"], s["out"], s["shape"]) for s in state],
            }
            out[sequence_model_name(card)] = _config(
                sequence_model_name(card), [frame], [logits], **opts, sequence=seq
            )
    return out


def write_triton_repo(
    card: ModelCard | str | os.PathLike, repo: str | os.PathLike, **options: Any
) -> list[Path]:
    """Write (or overwrite) the card's models into ``repo``; returns the files written.

    options: ``max_batch``, ``queue_delay_us``, ``instances``, ``threads``,
    ``sequence_idle_s``, ``max_sequences`` (see ``triton_model_configs``). Other models
    already in ``repo`` are left alone, so several cards can share one repository.
    """
    if not isinstance(card, ModelCard):
        card = ModelCard.load(card)
    repo = Path(repo)
    written = []
    roles = {
        clip_model_name(card): "clip",
        step_model_name(card): "step",
        sequence_model_name(card): "step",
    }
    for name, text in triton_model_configs(card, **options).items():
        version = repo / name / "1"
        version.mkdir(parents=True, exist_ok=True)
        if card.path is not None:  # hcml check-config finds the card from this line
            rel = os.path.relpath(card.path.resolve(), (repo / name).resolve())
            text = text.replace("\n", f"\n{CARD_MARK}{rel}\n", 1)
        (repo / name / "config.pbtxt").write_text(text)
        shutil.copyfile(MODEL_PY, version / "model.py")
        shutil.copyfile(card.file(roles[name]), version / "model.onnx")  # type: ignore[arg-type]
        written += [repo / name / "config.pbtxt", version / "model.py", version / "model.onnx"]
    return written
