"""StreamEngine async: exact step results, fairness, cross-stream batching, drops, gaps (issue 17).

Backends here are probes (logits encode which frames they saw) or the real ONNX Runtime backend
on a randomly initialised exported model; the sync engine is the independent reference.
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from hcml.stream.engine import StreamEngine

K = 4


class SlowStepProbe:
    """Step backend with a fixed cost per call (any batch): logits = last frame's value one-hot.

    Records the batch size of every call. State: the ids of the last T frames per stream.
    """

    name, device, supports_step = "probe", "cpu", True

    def __init__(self, window: int = 2, delay: float = 0.0):
        self.card = SimpleNamespace(window=window, frame_step=1, name="probe", num_classes=K,
                                    labels=[f"c{i}" for i in range(K)])  # fmt: skip
        self.delay, self.batches = delay, []
        self.lock = threading.Lock()

    def init_state(self, batch: int) -> dict:
        return {"ids": np.full((batch, self.card.window), -1), "frames": np.zeros(batch, int)}

    def run_step(self, frame, state):
        time.sleep(self.delay)
        frame = np.asarray(frame)
        with self.lock:
            self.batches.append(len(frame))
        ids = np.concatenate([state["ids"][:, 1:], frame[:, 0, 0, 0].astype(int)[:, None]], 1)
        logits = np.zeros((len(frame), K), np.float32)
        logits[np.arange(len(frame)), ids[:, -1] % K] = 10.0
        return logits, {"ids": ids, "frames": state["frames"] + 1}

    def run_clip(self, frames):
        time.sleep(self.delay)
        frames = np.asarray(frames)
        logits = np.zeros((len(frames), K), np.float32)
        logits[np.arange(len(frames)), frames[:, 0, -1, 0, 0].astype(int) % K] = 10.0
        return logits


def _frame(value: float) -> torch.Tensor:
    return torch.full((3, 2, 2), float(value))


@pytest.mark.parametrize("streams", [2, 4, 8])
def test_async_serves_every_stream_fairly(streams):
    """Streams pushed in turn every 5 ms against a backend that needs 20 ms a call."""
    probe = SlowStepProbe(window=2, delay=0.02)
    engine = StreamEngine(probe, mode="async", max_batch=8)
    counts = dict.fromkeys(range(streams), 0)
    try:
        for i in range(40):
            for s in range(streams):
                counts[s] += len(engine.push(f"s{s}", _frame(i), 1000 * i))
            time.sleep(0.005)
        for p in engine.drain():
            counts[int(p.stream[1:])] += 1
    finally:
        engine.close()
    per_stream = list(counts.values())
    assert min(per_stream) > 0
    assert (max(per_stream) - min(per_stream)) <= 0.1 * max(per_stream), counts
    # no stream lost a window another kept: drops are per stream and counted
    assert all(c + engine.dropped_by_stream.get(f"s{s}", 0) == 39 for s, c in counts.items())
    assert max(probe.batches) > 1  # several streams in one backend call


def test_async_batches_across_streams_bounded_by_max_batch():
    probe = SlowStepProbe(window=1, delay=0.03)
    engine = StreamEngine(probe, mode="async", max_batch=3, max_backlog=100)
    got = []
    try:
        for i in range(6):
            for s in range(5):
                got += engine.push(f"s{s}", _frame(i), i)
        got += engine.drain()
    finally:
        engine.close()
    assert len(got) == 30 and engine.dropped == 0  # nothing dropped with room in the backlog
    assert max(probe.batches) == 3 and sum(probe.batches) == 30


def test_batch_timeout_waits_for_more_streams():
    probe = SlowStepProbe(window=1)
    engine = StreamEngine(probe, mode="async", max_batch=4, batch_timeout=0.5)
    try:
        for s in range(4):  # four streams arrive within the timeout: one call for all
            engine.push(f"s{s}", _frame(s), 0)
            time.sleep(0.02)
        out = engine.drain()
    finally:
        engine.close()
    assert len(out) == 4 and probe.batches == [4]


def test_async_results_reach_on_result_before_the_next_buffer():
    """Bus messages/events go out from the worker at once; buffer meta on the next push."""
    probe = SlowStepProbe(window=1, delay=0.01)
    seen = []
    engine = StreamEngine(probe, mode="async", on_result=lambda p: seen.append(p))
    try:
        assert engine.push("s", _frame(3), 0) == []  # not ready yet: inference is running
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.005)
        assert [p.window_end_pts for p in seen] == [0]  # delivered without another push
        assert [p.window_end_pts for p in engine.push("s", _frame(4), 33)] == [0]  # the meta
    finally:
        engine.close()


def test_a_flooded_stream_drops_only_its_own_whole_windows():
    probe = SlowStepProbe(window=2, delay=0.02)
    engine = StreamEngine(probe, mode="async", max_backlog=2)
    quiet = []
    try:
        for i in range(30):
            engine.push("flood", _frame(i), i)  # 30 frames at once: falls behind
            if i % 6 == 0:  # the quiet stream: one frame now and then
                quiet += engine.push("quiet", _frame(i), i)
                time.sleep(0.05)
        quiet += [p for p in engine.drain() if p.stream == "quiet"]
    finally:
        engine.close()
    assert engine.dropped_by_stream.get("flood", 0) > 0
    assert engine.dropped_by_stream.get("quiet", 0) == 0
    assert len(quiet) == 4  # 5 frames, window 2: every one of its windows


@pytest.mark.parametrize("incremental", [True, False])
def test_async_equals_sync_on_the_real_model(tiny_card, incremental):
    """Three interleaved streams, async with batching vs sync: the same windows, 1e-4."""
    from hcml.backends import load_backend

    backend = load_backend(tiny_card, backend="onnxruntime", threads=1)
    rng = np.random.default_rng(1)
    streams = {
        s: [torch.from_numpy(rng.normal(size=(3, 112, 112)).astype(np.float32)) for _ in range(12)]
        for s in ("a", "b", "c")
    }
    results = {}
    for mode in ("sync", "async"):
        engine = StreamEngine(backend, stride=2, incremental=incremental, top_k=12, mode=mode,
                              max_backlog=100, max_batch=3)  # fmt: skip
        preds = []
        try:
            for i in range(12):
                for s, frames in streams.items():
                    preds += engine.push(s, frames[i], 40 * i)
            preds += engine.drain()
        finally:
            engine.close()
        assert engine.incremental is incremental and engine.dropped == 0
        results[mode] = {(p.stream, p.window_end_pts): p for p in preds}
    sync, asyn = results["sync"], results["async"]
    assert sorted(sync) == sorted(asyn) and len(sync) == 3 * 3
    for key, p in sync.items():
        q = asyn[key]
        assert (q.label, q.window_start_pts) == (p.label, p.window_start_pts)
        np.testing.assert_allclose(dict(q.topk)[p.label], p.score, atol=1e-4)
        np.testing.assert_allclose(
            sorted(s for _, s in q.topk), sorted(s for _, s in p.topk), atol=1e-4
        )


def test_stream_removed_and_added_mid_run_and_one_eos_while_others_go_on():
    probe = SlowStepProbe(window=2, delay=0.005)
    engine = StreamEngine(probe, mode="async", max_backlog=100)
    got = []
    try:
        for i in range(10):
            got += engine.push("a", _frame(i), i)
            if i < 5:
                got += engine.push("b", _frame(100 + i), i)
            if i == 5:
                engine.remove("b")  # b's EOS: a goes on
            if i >= 6:
                got += engine.push("c", _frame(200 + i), i)  # c joins mid-run
        got += engine.drain()
    finally:
        engine.close()
    by = {s: [p.window_end_pts for p in got if p.stream == s] for s in "abc"}
    assert by["a"] == list(range(1, 10))
    assert set(by["b"]) <= set(range(1, 5)) and "b" not in engine.streams
    assert by["c"] == [7, 8, 9]


def test_a_pts_gap_or_backwards_pts_restarts_the_window():
    probe = SlowStepProbe(window=3)
    engine = StreamEngine(probe, max_gap=1.0)
    ns = 1_000_000_000
    ends = []
    for pts in [0, ns // 30, 2 * ns // 30, 3 * ns // 30]:  # a window at the 3rd frame
        ends += [p.window_start_pts for p in engine.push("s", _frame(pts), pts)]
    for pts in [20 * ns, 20 * ns + ns // 30]:  # 20 s later, no DISCONT: a new window starts
        ends += [p.window_start_pts for p in engine.push("s", _frame(pts), pts)]
    assert ends == [0, ns // 30] and engine.restarts == 1
    for pts in [5 * ns, 5 * ns + 1, 5 * ns + 2]:  # backwards: restart, then a full window
        ends += [p.window_start_pts for p in engine.push("s", _frame(pts), pts)]
    assert ends[-1] == 5 * ns and engine.restarts == 2
    assert all(p >= 0 for p in ends)


class FailOnceProbe(SlowStepProbe):
    """Raises on the ``fail_at``-th step call (a lost server, a backend error)."""

    def __init__(self, window: int, fail_at: int):
        super().__init__(window=window)
        self.fail_at, self.calls, self.windows = fail_at, 0, []

    def run_step(self, frame, state):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("backend lost")
        logits, new = super().run_step(frame, state)
        self.windows += [tuple(int(i) for i in row) for row in new["ids"]]
        return logits, new


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_failed_step_restarts_the_state_so_no_window_spans_the_failure(mode):
    probe = FailOnceProbe(window=3, fail_at=5)
    engine = StreamEngine(probe, mode=mode, max_backlog=100)
    got, errors = [], 0
    try:
        for i in range(12):
            try:
                got += engine.push("s", _frame(i), i)
            except RuntimeError:
                errors += 1
            if mode == "async":
                time.sleep(0.02)  # let the worker fail before the next frame
        got += engine.drain()
    except RuntimeError:
        errors += 1
    finally:
        engine.close()
    assert errors == 1
    ends = [p.window_end_pts for p in got]
    # frame 4 failed: windows end at 2, 3; then the state restarts at frame 5: 7, 8, ... 11
    assert ends == [2, 3, 7, 8, 9, 10, 11]
    assert all(p.class_id == p.window_end_pts % K for p in got)
