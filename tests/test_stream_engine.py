"""StreamEngine: windows, stride, frame step, PTS, resets, async dropping, smoothing."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from hcml.stream.engine import StreamEngine
from hcml.stream.smoothing import LabelSmoother

K = 4


class WindowProbe:
    """A backend whose logits encode the window: logit k = value of frame k's pixels (k < K)."""

    name, device, supports_step = "probe", "cpu", False

    def __init__(self, window: int = 4, delay: float = 0.0):
        self.card = SimpleNamespace(
            window=window, frame_step=1, labels=[f"c{i}" for i in range(K)], num_classes=K,
            name="probe",
        )  # fmt: skip
        self.delay, self.calls = delay, []

    def run_clip(self, frames) -> np.ndarray:
        time.sleep(self.delay)
        frames = np.asarray(frames)
        logits = np.zeros((len(frames), K), np.float32)
        for b, clip in enumerate(frames):
            values = clip[0, :, 0, 0].copy()  # [T]: the value each frame was filled with
            self.calls.append(values)
            logits[b, int(values[-1]) % K] = 10.0  # the newest frame's value mod K wins
        return logits


def _frame(value: float) -> torch.Tensor:
    return torch.full((3, 2, 2), float(value))


def test_windows_hold_the_last_t_frames_in_order_and_emit_every_stride():
    probe = WindowProbe(window=4)
    engine = StreamEngine(probe, stride=2, top_k=2)
    preds = []
    for i in range(12):
        preds += engine.push("s", _frame(i), pts=1000 * i)
    assert [list(c) for c in probe.calls] == [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7],
                                               [6, 7, 8, 9], [8, 9, 10, 11]]  # fmt: skip
    assert [p.window_end_pts for p in preds] == [3000, 5000, 7000, 9000, 11000]
    assert [p.window_start_pts for p in preds] == [0, 2000, 4000, 6000, 8000]
    assert [p.class_id for p in preds] == [3 % K, 5 % K, 7 % K, 9 % K, 11 % K]
    assert all(len(p.topk) == 2 and p.topk[0][0] == p.label for p in preds)


def test_frame_step_samples_every_kth_frame():
    probe = WindowProbe(window=3)
    engine = StreamEngine(probe, stride=1, frame_step=2)
    preds = []
    for i in range(10):
        preds += engine.push("s", _frame(i), pts=i)
    assert [list(c) for c in probe.calls] == [[0, 2, 4], [2, 4, 6], [4, 6, 8]]
    assert [(p.window_start_pts, p.window_end_pts) for p in preds] == [(0, 4), (2, 6), (4, 8)]


def test_no_prediction_before_a_full_window_and_reset_starts_over():
    probe = WindowProbe(window=4)
    engine = StreamEngine(probe)
    assert sum(len(engine.push("s", _frame(i), i)) for i in range(3)) == 0
    engine.reset("s")
    assert sum(len(engine.push("s", _frame(i), i)) for i in range(10, 13)) == 0
    assert len(engine.push("s", _frame(13), 13)) == 1
    assert list(probe.calls[-1]) == [10, 11, 12, 13]  # nothing from before the reset


def test_streams_are_independent():
    probe = WindowProbe(window=2)
    engine = StreamEngine(probe)
    out = []
    for i in range(3):
        out += engine.push("a", _frame(i), i)
        out += engine.push("b", _frame(100 + i), 100 + i)
    assert [(p.stream, p.window_start_pts) for p in out] == [
        ("a", 0), ("b", 100), ("a", 1), ("b", 101)]  # fmt: skip
    assert [list(c) for c in probe.calls] == [[0, 1], [100, 101], [1, 2], [101, 102]]


def test_async_never_waits_and_newest_window_wins():
    probe = WindowProbe(window=2, delay=0.05)
    engine = StreamEngine(probe, mode="async")
    start = time.perf_counter()
    out = []
    for i in range(40):
        out += engine.push("s", _frame(i), i)
    pushing = time.perf_counter() - start
    out += engine.drain()
    engine.close()
    assert pushing < 0.05 * 39 / 2  # push did not wait for each inference
    assert engine.dropped > 0 and len(out) + engine.dropped == 39
    ends = [p.window_end_pts for p in out]
    assert ends == sorted(ends) and ends[-1] == 39  # the newest window was computed at EOS


def test_labels_override_must_match_the_model():
    with pytest.raises(ValueError, match="labels override has 2 names"):
        StreamEngine(WindowProbe(), labels=["a", "b"])


def test_threshold_suppresses_low_scores():
    engine = StreamEngine(WindowProbe(window=1), threshold=0.999999)
    assert engine.push("s", _frame(1), 0) == []
    assert engine.predictions == 1


def test_smoother_ema_and_hysteresis():
    sm = LabelSmoother(alpha=0.0, hysteresis=3)
    a, b = np.array([5.0, 0.0]), np.array([0.0, 5.0])
    assert sm.update(a)[1] == 0
    assert [sm.update(b)[1] for _ in range(3)] == [0, 0, 1]  # switches on the 3rd win
    ema = LabelSmoother(alpha=0.9)
    ema.update(a)
    probs, label = ema.update(b)
    assert label == 0 and 0.5 < probs[0] < 1.0  # the past still dominates


def test_incremental_equals_full_window_on_the_real_model(tiny_card):
    from hcml.backends import load_backend

    backend = load_backend(tiny_card, backend="onnxruntime")
    rng = np.random.default_rng(0)
    frames = [
        torch.from_numpy(rng.normal(size=(3, 112, 112)).astype(np.float32)) for _ in range(14)
    ]
    results = {}
    for incremental in (True, False):
        engine = StreamEngine(backend, stride=3, incremental=incremental, top_k=12)
        assert engine.incremental is incremental
        preds = [p for i, f in enumerate(frames) for p in engine.push("s", f, 40 * i)]
        results[incremental] = preds
    inc, full = results[True], results[False]
    assert [p.window_end_pts for p in inc] == [p.window_end_pts for p in full] == [280, 400, 520]
    for a, b in zip(inc, full, strict=True):
        assert a.label == b.label
        np.testing.assert_allclose([s for _, s in a.topk], [s for _, s in b.topk], atol=1e-4)
