"""GPU engines: TensorRT plans (build, run, refuse foreign plans), ONNX Runtime CUDA, torch CUDA.

Tests that need hardware skip with a reason naming what is missing; the plan-portability refusal
and the build-engine message without TensorRT are tested everywhere.
"""

from __future__ import annotations

import json
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from hcml.backends import BackendUnavailable, load_backend
from hcml.backends import tensorrt_backend as trt_b
from hcml.backends.onnxruntime_backend import cuda_provider_available
from hcml.card import ModelCard
from hcml.cli import main
from hcml.export.reference import exported_toy

MISSING_TRT = trt_b.missing()
needs_trt = pytest.mark.skipif(MISSING_TRT is not None, reason=MISSING_TRT or "")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.fixture
def card_dir(tmp_path: Path) -> Path:
    src = Path(exported_toy(8)).parent
    shutil.copytree(src, tmp_path / "engines")
    return tmp_path / "engines"


def _stream_diff(a, b, frames) -> float:
    return float(np.abs(a.stream(frames) - b.stream(frames))[:, 7:].max())


PRECISION_ARGS = {"fp32": [], "fp16": ["--fp16"], "int8": ["--int8-calib", "synth"]}


@pytest.mark.gpu
@needs_trt
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_tensorrt_build_and_run_matches_onnxruntime(card_dir, precision, capsys):
    """One strongly typed build (TensorRT 10 and 11): the precision is the graph's."""
    card_path = card_dir / "toy_t8.json"
    args = ["build-engine", str(card_path), "--workspace", "256", "--opt-batch", "4"]
    assert main(args + PRECISION_ARGS[precision]) == 0
    card = ModelCard.load(card_path)
    key = trt_b.plan_key()
    assert key in card.plans() and card.plans()[key]["precision"] == precision
    assert card.plans()[key]["strongly_typed"] is True
    trt = load_backend(card_path, backend="tensorrt", device="cuda")
    auto = load_backend(card_path, device="cuda")
    assert auto.name == "tensorrt" and "plan" in auto.auto_reason
    ort = load_backend(card_path, backend="onnxruntime")
    rng = np.random.default_rng(0)
    for batch in (1, 5, 40):  # 40 > the profile's 32: runs in chunks
        clip = rng.standard_normal((batch, 3, 8, 32, 32), dtype=np.float32)
        a, b = trt.run_clip(clip), ort.run_clip(clip)
        if precision == "int8":  # quantized: compared as a whole (tests/test_tensorrt_build.py)
            assert batch == 1 or np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9
        else:
            assert np.abs(a - b).max() < (1e-3 if precision == "fp32" else 5e-2)
    if precision != "int8":
        frames = rng.standard_normal((3, 3, 20, 32, 32), dtype=np.float32)
        assert _stream_diff(trt, ort, frames) < (1e-3 if precision == "fp32" else 5e-2)


def test_foreign_plans_are_refused_with_both_sides_named(card_dir, monkeypatch):
    """A card whose plans were built on another GPU / TensorRT version is refused, not run."""
    fake = types.ModuleType("tensorrt")
    fake.__version__ = "10.7.0"
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setattr(trt_b, "missing", lambda: None)
    monkeypatch.setattr(trt_b, "gpu_name", lambda device=0: "NVIDIA L4")
    card_path = card_dir / "toy_t8.json"
    data = json.loads(card_path.read_text())
    data["files"]["plans"] = {
        "nvidia-a100-sxm4-80gb.10.3.0": {"clip": "a.plan", "step": "b.plan", "tensorrt": "10.3.0"}
    }
    card_path.write_text(json.dumps(data))
    card = ModelCard.load(card_path)
    with pytest.raises(BackendUnavailable) as err:
        trt_b.TensorRTBackend(card, device="cuda")
    msg = str(err.value)
    assert "NVIDIA L4" in msg and "10.7.0" in msg and "nvidia-a100-sxm4-80gb.10.3.0" in msg
    assert "not portable" in msg and "hcml build-engine" in msg


def test_build_engine_without_tensorrt_says_what_is_missing(card_dir, capsys):
    if MISSING_TRT is None:
        pytest.skip("TensorRT and a CUDA device are present")
    assert main(["build-engine", str(card_dir / "toy_t8.json")]) != 0
    err = capsys.readouterr().err
    assert "cannot build TensorRT plans" in err
    assert ("tensorrt not importable" in err) or ("no CUDA device" in err)


def test_tensorrt_backend_without_tensorrt_says_what_is_missing(card_dir):
    if MISSING_TRT is None:
        pytest.skip("TensorRT and a CUDA device are present")
    with pytest.raises(BackendUnavailable, match="tensorrt not importable|no CUDA device"):
        load_backend(card_dir / "toy_t8.json", backend="tensorrt", device="cuda")


@pytest.mark.gpu
@pytest.mark.skipif(
    not cuda_provider_available(), reason="onnxruntime CUDAExecutionProvider not available"
)
def test_onnxruntime_cuda_matches_cpu(card_dir):
    gpu = load_backend(card_dir / "toy_t8.json", backend="onnxruntime", device="cuda")
    cpu = load_backend(card_dir / "toy_t8.json", backend="onnxruntime")
    assert "CUDAExecutionProvider" in gpu.describe()
    frames = np.random.default_rng(1).standard_normal((2, 3, 12, 32, 32), dtype=np.float32)
    assert _stream_diff(gpu, cpu, frames) < 1e-3


@pytest.mark.gpu
@needs_cuda
def test_torch_cuda_matches_cpu(card_dir):
    from hcml.backends.torch_backend import TorchBackend
    from hcml.export.reference import ToyMotionNet

    card = ModelCard.load(card_dir / "toy_t8.json")
    model = ToyMotionNet(frames=8, size=32)
    model.load_state_dict(torch.load(card_dir / "toy_t8.state.pt", weights_only=True))
    gpu = TorchBackend(model, card, device="cuda")
    cpu = load_backend(card.path)
    assert "cuda" in gpu.describe()
    frames = np.random.default_rng(2).standard_normal((2, 3, 12, 32, 32), dtype=np.float32)
    assert _stream_diff(gpu, cpu, frames) < 1e-3


@pytest.mark.gpu
@needs_cuda
def test_torch_cuda_graphs_match_eager(card_dir):
    from hcml.backends.torch_backend import TorchBackend
    from hcml.export.reference import ToyMotionNet

    card = ModelCard.load(card_dir / "toy_t8.json")
    model = ToyMotionNet(frames=8, size=32)
    model.load_state_dict(torch.load(card_dir / "toy_t8.state.pt", weights_only=True))
    graphs = TorchBackend(model, card, device="cuda", cuda_graphs=True)
    eager = TorchBackend(model, card, device="cuda")
    assert "CUDA graphs" in graphs.describe()
    frames = np.random.default_rng(3).standard_normal((2, 3, 20, 32, 32), dtype=np.float32)
    # replays reuse output buffers: a stream of 20 steps checks that no output is overwritten
    assert _stream_diff(graphs, eager, frames) < 1e-3


def test_torch_cuda_graphs_refuse_cpu(card_dir):
    from hcml.backends.torch_backend import TorchBackend
    from hcml.export.reference import ToyMotionNet

    card = ModelCard.load(card_dir / "toy_t8.json")
    with pytest.raises(ValueError, match="cuda_graphs needs device=cuda"):
        TorchBackend(ToyMotionNet(frames=8, size=32), card, device="cpu", cuda_graphs=True)
