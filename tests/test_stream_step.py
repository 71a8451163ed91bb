"""Exact incremental streaming (StepModel) against an independent, loop-over-frames clip forward.

Runs on ``hcml.export.reference.ToyMotionNet`` (per-frame stages + forward-pairing cost-volume
blocks, 32x32) so that it does not depend on a trained model; ``test_stream_step_hcml.py`` does
the same on the real network.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hcml.export.reference import ToyMotionNet, randomize_
from hcml.model.step import StepModel

SIZE = 32


def _toy(window: int) -> ToyMotionNet:
    torch.manual_seed(0)
    return randomize_(ToyMotionNet(frames=window, size=SIZE))


def _stream(step: StepModel, frames: torch.Tensor, state=None) -> tuple[torch.Tensor, list]:
    """frames [B, 3, N, H, W] -> logits [B, N, K] (row t: window ending at frame t)."""
    state = step.init_state(frames.shape[0]) if state is None else state
    out = []
    with torch.no_grad():
        for t in range(frames.shape[2]):
            logits, *state = step(frames[:, :, t], *state)
            out.append(logits)
    return torch.stack(out, 1), state


@pytest.mark.parametrize("window", [3, 8, 16])
def test_step_equals_clip_on_every_window(window):
    model = _toy(window)
    step = StepModel(model, window).eval()
    x = torch.randn(2, 3, 40, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    got, _ = _stream(step, x)
    with torch.no_grad():
        for t in range(window - 1, 40):
            ref = model.reference_forward(x[:, :, t - window + 1 : t + 1])
            assert torch.allclose(got[:, t], ref, atol=1e-5), (window, t)
            # the batched clip forward (the exported one) is the same function as the loops
            assert torch.allclose(model(x[:, :, t - window + 1 : t + 1]), ref, atol=1e-5)


def test_comparison_is_not_vacuous():
    """A window off by one frame gives different logits, so the equality above means something."""
    model = _toy(8)
    step = StepModel(model, 8).eval()
    x = torch.randn(1, 3, 20, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    got, _ = _stream(step, x)
    with torch.no_grad():
        shifted = model(x[:, :, 10:18])  # window ending at 17, compared with the one ending at 18
    assert (got[:, 18] - shifted).abs().max() > 1e-3


@pytest.mark.parametrize("frame_step", [1, 2, 3])
def test_frame_step_is_feeding_every_kth_frame(frame_step):
    window = 8
    model = _toy(window)
    step = StepModel(model, window).eval()
    x = torch.randn(1, 3, 60, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    fed = x[:, :, ::frame_step]
    got, _ = _stream(step, fed)
    with torch.no_grad():
        for i in range(window - 1, fed.shape[2]):
            t = i * frame_step  # the decoded frame index of the newest fed frame
            ref = model(x[:, :, t - (window - 1) * frame_step : t + 1 : frame_step])
            assert torch.allclose(got[:, i], ref, atol=1e-5)


def test_reset_restarts_one_stream_cleanly():
    window = 8
    model = _toy(window)
    step = StepModel(model, window).eval()
    g = torch.Generator().manual_seed(4)
    a = torch.randn(2, 3, 20, SIZE, SIZE, generator=g)
    b = torch.randn(2, 3, 12, SIZE, SIZE, generator=g)
    _, state = _stream(step, a)
    state = [s.clone() for s in state]
    for s in state:
        s[0] = 0  # restart stream 0 only
    got, _ = _stream(step, b, state)
    with torch.no_grad():
        for t in range(window - 1, 12):
            ref0 = model(b[:1, :, t - window + 1 : t + 1])
            assert torch.allclose(got[:1, t], ref0, atol=1e-5)
        joined = torch.cat([a[1:], b[1:]], 2)  # stream 1 never restarted
        for t in range(12):
            e = 20 + t
            ref1 = model(joined[:, :, e - window + 1 : e + 1])
            assert torch.allclose(got[1:, t], ref1, atol=1e-5)


def test_state_layout_and_start_of_stream():
    window = 8
    model = _toy(window)
    step = StepModel(model, window).eval()
    assert step.depth == 2
    assert step.state_names == ["cache0", "cache1", "ring"]
    assert step.state_shapes[-1] == (window - step.depth - 1, 16)
    assert all(float(s.abs().sum()) == 0 for s in step.init_state(3))
    x = torch.randn(1, 3, window - 1, SIZE, SIZE)
    got, _ = _stream(step, x)  # before T frames: defined (finite) but not meaningful
    assert torch.isfinite(got).all()
    with pytest.raises(ValueError, match="shorter than the streaming depth"):
        StepModel(model, 2)


def test_cost_per_frame_does_not_grow_with_window():
    """The step runs the same ops on the same tensor sizes for every T (only the ring grows)."""
    model = _toy(8)
    shapes = {}
    for window in (8, 32):
        step = StepModel(model, window).eval()
        seen = []
        hooks = [
            m.register_forward_hook(lambda _m, i, _o, seen=seen: seen.append(tuple(i[0].shape)))
            for m in model.modules()
            if isinstance(m, torch.nn.Conv2d)
        ]
        with torch.no_grad():
            step(torch.randn(1, 3, SIZE, SIZE), *step.init_state(1))
        for h in hooks:
            h.remove()
        shapes[window] = seen
    assert shapes[8] == shapes[32]
    assert np.prod(shapes[8][0]) == 3 * SIZE * SIZE  # the stem sees just the new frame
