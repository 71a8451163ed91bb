"""The exported step graph in ONNX Runtime equals the exported clip graph on every window.

Random streams of 100 frames, T in {8, 16}, frame step in {1, 2}, two streams in one batch, and a
restart of one stream mid-way. Toy network at 32x32 (``hcml.export.reference``).
"""

from __future__ import annotations

import numpy as np
import pytest

from hcml.backends import load_backend, split_state, stack_states
from hcml.export.reference import exported_toy

N_FRAMES = 100


def _windows(frames: np.ndarray, t: int, window: int, frame_step: int) -> np.ndarray:
    """The clip for the window whose newest fed frame is decoded frame t: [B, 3, T, H, W]."""
    return frames[:, :, t - (window - 1) * frame_step : t + 1 : frame_step]


@pytest.mark.parametrize("window", [8, 16])
@pytest.mark.parametrize("frame_step", [1, 2])
def test_onnx_step_equals_onnx_clip(window, frame_step):
    b = load_backend(exported_toy(window))
    assert b.name == "onnxruntime"
    rng = np.random.default_rng(window * 10 + frame_step)
    x = rng.standard_normal((2, 3, N_FRAMES, 32, 32), dtype=np.float32)
    state = b.init_state(2)
    worst, checked = 0.0, 0
    for i, t in enumerate(range(0, N_FRAMES, frame_step)):
        logits, state = b.run_step(x[:, :, t], state)
        assert bool(b.ready(state).all()) == (i + 1 >= window)
        if i + 1 >= window:
            ref = b.run_clip(_windows(x, t, window, frame_step))
            worst = max(worst, float(np.abs(logits - ref).max()))
            checked += 1
    assert checked == N_FRAMES // frame_step - window + 1
    assert worst < 1e-4, worst


def test_onnx_step_across_a_reset():
    window = 8
    b = load_backend(exported_toy(window))
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, N_FRAMES, 32, 32), dtype=np.float32)
    state = b.init_state(2)
    restart = 40  # stream 0 restarts at frame 40 (e.g. a flush); stream 1 goes on
    for t in range(N_FRAMES):
        if t == restart:
            b.reset_state(state, [0])
            assert list(b.ready(state)) == [False, True]
        logits, state = b.run_step(x[:, :, t], state)
        if t - restart + 1 >= window and t >= restart:
            ref = b.run_clip(x[:1, :, t - window + 1 : t + 1])
            assert np.abs(logits[:1] - ref).max() < 1e-4
        if t + 1 >= window:
            ref = b.run_clip(x[1:, :, t - window + 1 : t + 1])
            assert np.abs(logits[1:] - ref).max() < 1e-4


def test_states_stack_and_split_per_stream():
    """Streams can join and leave a batch: per-stream states stacked in any order stay exact."""
    window = 8
    b = load_backend(exported_toy(window))
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 3, 20, 32, 32), dtype=np.float32)
    s0, s1 = b.init_state(1), b.init_state(1)
    for t in range(12):  # stream 0 alone for 12 frames, then both batched (in swapped order)
        _, s0 = b.run_step(x[:1, :, t], s0)
    state = stack_states([s1, s0])
    for t in range(12, 20):
        frames = np.concatenate([x[1:, :, t - 12], x[:1, :, t]])
        logits, state = b.run_step(frames, state)
    ref0 = b.run_clip(x[:1, :, 20 - window : 20])
    ref1 = b.run_clip(x[1:, :, 0:window])
    assert np.abs(logits[1:] - ref0).max() < 1e-4
    assert np.abs(logits[:1] - ref1).max() < 1e-4
    parts = split_state(state)
    assert [int(p["frames"][0]) for p in parts] == [8, 20]
