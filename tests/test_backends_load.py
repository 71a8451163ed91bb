"""`load_backend`: what it accepts, what `auto` picks and says, and the shared interface."""

from __future__ import annotations

import numpy as np
import pytest

from hcml.backends import BackendUnavailable, load_backend
from hcml.backends.base import Backend
from hcml.card import ModelCard
from hcml.export.reference import exported_toy


@pytest.fixture(scope="module")
def card_path() -> str:
    return exported_toy(8)


def test_auto_on_cpu_is_onnxruntime_and_says_why(card_path):
    b = load_backend(card_path)
    assert isinstance(b, Backend)
    assert (b.name, b.device) == ("onnxruntime", "cpu")
    assert b.auto_reason == "CPU default"
    assert b.describe().startswith("onnxruntime ") and "CPUExecutionProvider" in b.describe()
    assert "threads" in b.describe()
    assert isinstance(b.card, ModelCard) and b.supports_step


def test_onnx_path_finds_its_card(card_path):
    card = ModelCard.load(card_path)
    for role in ("clip", "step"):
        b = load_backend(card.file(role), backend="onnxruntime")
        assert b.card.path == card.path


def test_interface_shapes_and_dtypes(card_path):
    b = load_backend(card_path, threads=1)
    assert "1 threads" in b.describe()
    out = b.run_clip(np.zeros((3, 3, 8, 32, 32), np.float32))
    assert out.shape == (3, 12) and out.dtype == np.float32
    state = b.init_state(2)
    assert state["frames"].tolist() == [0, 0] and not b.ready(state).any()
    logits, new = b.run_step(np.zeros((2, 3, 32, 32), np.float32), state)
    assert logits.shape == (2, 12) and logits.dtype == np.float32
    assert new["frames"].tolist() == [1, 1] and state["frames"].tolist() == [0, 0]
    assert set(new) == set(state)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"backend": "openvino"}, ValueError, "unknown backend"),
        ({"device": "tpu"}, ValueError, "unknown device"),
    ],
)
def test_bad_arguments(card_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        load_backend(card_path, **kwargs)


def test_missing_model_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="model not found"):
        load_backend(tmp_path / "nope.json")


def test_checkpoint_only_runs_on_torch(tmp_path):
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"")
    with pytest.raises(BackendUnavailable, match="only backend=torch"):
        load_backend(ckpt, backend="onnxruntime")


def test_auto_on_cuda_without_any_gpu_engine_says_what_is_missing(card_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(BackendUnavailable) as err:
        load_backend(card_path, device="cuda")
    msg = str(err.value)
    assert "tensorrt" in msg and "CUDAExecutionProvider" in msg
