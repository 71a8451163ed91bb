"""`hcml export` output: both ONNX graphs pass the checker, have the documented names, opset and
dynamic batch, and ONNX Runtime matches PyTorch to 1e-4 on both."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from hcml.backends import load_backend
from hcml.backends.torch_backend import TorchBackend
from hcml.card import ModelCard
from hcml.export.reference import ToyMotionNet, exported_toy


@pytest.fixture(scope="module")
def card() -> ModelCard:
    return ModelCard.load(exported_toy(8))


def _io(path: Path) -> tuple[dict, dict, int]:
    m = onnx.load(str(path))

    def dims(vi):
        return [d.dim_param or d.dim_value for d in vi.type.tensor_type.shape.dim]

    opset = next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))
    return (
        {i.name: dims(i) for i in m.graph.input},
        {o.name: dims(o) for o in m.graph.output},
        opset,
    )


def test_files_checker_and_opset(card):
    for role in ("clip", "step"):
        onnx.checker.check_model(str(card.file(role)), full_check=True)
    assert {p.name for p in card.root.iterdir()} >= {
        "toy_t8.onnx",
        "toy_t8.step.onnx",
        "toy_t8.json",
        "toy_t8.labels.txt",
    }


def test_clip_graph_is_ncdhw_with_dynamic_batch(card):
    ins, outs, opset = _io(card.file("clip"))
    assert opset >= 17
    assert ins == {"frames": ["batch", 3, 8, 32, 32]}
    assert outs == {"logits": ["batch", 12]}


def test_step_graph_names_state_explicitly(card):
    ins, outs, opset = _io(card.file("step"))
    assert opset >= 17
    assert list(ins) == ["frame", "state.cache0", "state.cache1", "state.ring"]
    assert list(outs) == ["logits", "new_state.cache0", "new_state.cache1", "new_state.ring"]
    assert ins["frame"] == ["batch", 3, 32, 32]
    for spec in card.tensors["step"]["state"]:
        assert ins[spec["name"]] == ["batch", *spec["shape"][1:]]
        assert outs[spec["out"]] == ins[spec["name"]]


@pytest.mark.parametrize("batch", [1, 4])
def test_onnxruntime_equals_torch_on_both_graphs(card, batch):
    model = ToyMotionNet(frames=8, size=32)
    model.load_state_dict(torch.load(card.root / "toy_t8.state.pt", weights_only=True))
    tb = TorchBackend(model, card)
    ob = load_backend(card.path, backend="onnxruntime")
    rng = np.random.default_rng(batch)
    clip = rng.standard_normal((batch, 3, 8, 32, 32), dtype=np.float32)
    assert np.abs(ob.run_clip(clip) - tb.run_clip(clip)).max() < 1e-4
    frames = rng.standard_normal((batch, 3, 12, 32, 32), dtype=np.float32)
    assert np.abs(ob.stream(frames) - tb.stream(frames)).max() < 1e-4
    # and torch accepts torch tensors as well as arrays
    assert np.abs(tb.run_clip(torch.from_numpy(clip)) - tb.run_clip(clip)).max() == 0


def test_export_command_with_missing_checkpoint_exits_2(tmp_path, capsys):
    from hcml.cli import main

    assert main(["export", str(tmp_path / "none.pt"), "--name", "x", "--out", str(tmp_path)]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
