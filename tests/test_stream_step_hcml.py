"""Exact incremental streaming on the real network (``hcml.model``): step == clip on every window.

hcml_tiny with random weights (BN statistics randomized so they matter) at 64x64 for the fast
tests, 112x112 (the shipped size) in the slow ones; PyTorch and ONNX Runtime; T in {8, 16},
frame step in {1, 2}; 100-frame streams; a restart mid-stream.
"""

from __future__ import annotations

import functools
import tempfile

import numpy as np
import pytest
import torch

import hcml.model.registry as registry
from hcml.backends import load_backend
from hcml.backends.torch_backend import TorchBackend
from hcml.export.onnx_export import export_model
from hcml.export.reference import randomize_
from hcml.model.step import StepModel

N_FRAMES = 100


@functools.cache
def _model(window: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return randomize_(registry.create_model("hcml_tiny", num_classes=12, frames=window))


@functools.cache
def _exported(window: int, size: int) -> tuple[str, torch.nn.Module]:
    model = _model(window)
    out = tempfile.mkdtemp(prefix="hcml-tiny-")
    card = export_model(model, out, f"tiny_t{window}", window=window, input_size=(size, size))
    return str(card.path), model


def _check_stream(backend, x: np.ndarray, window: int, frame_step: int) -> float:
    """max |step - clip| over every full window of a stream fed every frame_step-th frame.

    The step runs frame by frame; the reference clip forwards run batched (32 windows a call).
    """
    state = backend.init_state(x.shape[0])
    got, clips = [], []
    for i, t in enumerate(range(0, x.shape[2], frame_step)):
        logits, state = backend.run_step(x[:, :, t], state)
        if i + 1 >= window:
            got.append(logits)
            clips.append(x[:, :, t - (window - 1) * frame_step : t + 1 : frame_step])
    got_a = np.concatenate(got)
    ref = np.concatenate(
        [backend.run_clip(np.concatenate(clips[i : i + 32])) for i in range(0, len(clips), 32)]
    )
    return float(np.abs(got_a - ref).max())


def test_model_decomposes_into_a_stream_plan():
    step = StepModel(_model(8), 8, (64, 64))
    assert step.depth >= 1
    assert step.ring_len == 8 - step.depth - 1


@pytest.mark.parametrize("window", [8, 16])
@pytest.mark.parametrize("frame_step", [1, 2])
def test_torch_step_equals_clip(window, frame_step):
    path, model = _exported(window, 64)
    b = TorchBackend(model, load_backend(path).card)
    x = np.random.default_rng(window + frame_step).standard_normal(
        (1, 3, N_FRAMES, 64, 64), dtype=np.float32
    )
    assert _check_stream(b, x, window, frame_step) < 1e-4


@pytest.mark.parametrize("window", [8, 16])
@pytest.mark.parametrize("frame_step", [1, 2])
def test_onnxruntime_step_equals_clip(window, frame_step):
    path, _ = _exported(window, 64)
    b = load_backend(path)
    x = np.random.default_rng(window * frame_step).standard_normal(
        (2, 3, N_FRAMES, 64, 64), dtype=np.float32
    )
    assert _check_stream(b, x, window, frame_step) < 1e-4


def test_onnxruntime_equals_torch_both_graphs():
    path, model = _exported(8, 64)
    ob = load_backend(path)
    tb = TorchBackend(model, ob.card)
    rng = np.random.default_rng(5)
    clip = rng.standard_normal((2, 3, 8, 64, 64), dtype=np.float32)
    assert np.abs(ob.run_clip(clip) - tb.run_clip(clip)).max() < 1e-4
    frames = rng.standard_normal((2, 3, 12, 64, 64), dtype=np.float32)
    assert np.abs(ob.stream(frames) - tb.stream(frames)).max() < 1e-4


def test_restart_mid_stream():
    path, _ = _exported(8, 64)
    b = load_backend(path)
    x = np.random.default_rng(9).standard_normal((1, 3, 40, 64, 64), dtype=np.float32)
    state = b.init_state(1)
    for t in range(20):
        _, state = b.run_step(x[:, :, t], state)
    b.reset_state(state)
    assert _check_stream_from(b, x[:, :, 20:], state, 8) < 1e-4


def _check_stream_from(b, x, state, window) -> float:
    worst = 0.0
    for t in range(x.shape[2]):
        logits, state = b.run_step(x[:, :, t], state)
        if t + 1 >= window:
            worst = max(
                worst, float(np.abs(logits - b.run_clip(x[:, :, t - window + 1 : t + 1])).max())
            )
    return worst


@pytest.mark.slow
@pytest.mark.parametrize("window", [8, 16])
def test_onnxruntime_step_equals_clip_at_112(window):
    path, _ = _exported(window, 112)
    b = load_backend(path)
    x = np.random.default_rng(11).standard_normal((1, 3, 40, 112, 112), dtype=np.float32)
    assert _check_stream(b, x, window, 1) < 1e-4


@pytest.mark.parametrize("name", ["fdiff_tiny", "mscv_tiny", "tsn_tiny"])
def test_baselines_stream_exactly_too(name):
    """Frame-difference input (a pairing op on raw frames), one motion level, none at all."""
    torch.manual_seed(1)
    model = randomize_(registry.create_model(name, frames=8))
    card = load_backend(_exported(8, 64)[0]).card
    b = TorchBackend(model, card)
    x = np.random.default_rng(3).standard_normal((1, 3, 24, 64, 64), dtype=np.float32)
    assert _check_stream(b, x, 8, 1) < 1e-4


def test_torch_state_does_not_alias_the_callers_frame():
    """fdiff caches the raw frame: reusing the caller's buffer must not change the state."""
    torch.manual_seed(1)
    model = randomize_(registry.create_model("fdiff_tiny", frames=8))
    b = TorchBackend(model, load_backend(_exported(8, 64)[0]).card)
    x = np.random.default_rng(4).standard_normal((1, 3, 12, 64, 64), dtype=np.float32)
    buf = np.empty((1, 3, 64, 64), np.float32)  # one reused buffer, like a ring slot
    state = b.init_state(1)
    for t in range(12):
        buf[:] = x[:, :, t]
        logits, state = b.run_step(buf, state)
    assert np.abs(logits - b.run_clip(x[:, :, 4:12])).max() < 1e-4


def test_tsm_exports_a_clip_graph_only(tmp_path):
    """TSM looks back in time, so it has no step graph; its card and backend say so."""
    model = registry.create_model("tsm_tiny", frames=8).eval()
    card = export_model(model, tmp_path, "tsm", window=8, input_size=(64, 64))
    assert "step" not in card.files and "step" not in card.tensors
    b = load_backend(card.path)
    assert not b.supports_step
    assert b.run_clip(np.zeros((1, 3, 8, 64, 64), np.float32)).shape == (1, 12)


def test_motion_moments_export_and_stream_exactly():
    """A network with MotionMoments in every PMB: ONNX (both graphs) == torch, step == clip."""
    torch.manual_seed(2)
    model = randomize_(
        registry.create_model("hcml_tiny", frames=8, levels=[0, 1, 2, 3], moments_window=8)
    )
    out = tempfile.mkdtemp(prefix="hcml-moments-")
    card = export_model(model, out, "moments_t8", window=8, input_size=(64, 64))
    ob, tb = load_backend(card.path), TorchBackend(model, load_backend(card.path).card)
    rng = np.random.default_rng(6)
    clip = rng.standard_normal((2, 3, 8, 64, 64), dtype=np.float32)
    assert np.abs(ob.run_clip(clip) - tb.run_clip(clip)).max() < 1e-4
    x = rng.standard_normal((1, 3, 24, 64, 64), dtype=np.float32)
    assert _check_stream(ob, x, 8, 1) < 1e-4
