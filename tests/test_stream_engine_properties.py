"""StreamEngine under any sequence of push, reset (gap), flush, caps change and EOS (hypothesis).

Every frame carries a unique id in its pixels, so the backend sees which frames make each window.
A slow, obvious reference (per stream: the sampled frames since its last reset) says which
windows must exist. Invariants, in every mode (sync full-window, incremental step, async
full-window, async step):
a window is exactly T sampled frames, consecutive in one stream's PTS since its last reset (never
mixed across a reset or a caps change), and no prediction is made for a window never full.
Sync modes must produce exactly the reference's predictions; async a subset of them, in each
stream's order, without duplicates, all of them unless a backlog drop (counted) or a cut
(reset, flush, caps change) intervened, and always the newest window at EOS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hcml.stream.engine import StreamEngine

K = 3
STREAMS = ("a", "b")
SIZES = ((2, 2), (3, 2), (2, 4))


class IdProbe:
    """Clip and step backend that reports the frame ids of every window it is given."""

    name, device = "probe", "cpu"

    def __init__(self, window: int, frame_step: int, step: bool):
        self.card = SimpleNamespace(window=window, frame_step=frame_step, name="probe",
                                    labels=[f"c{i}" for i in range(K)], num_classes=K)  # fmt: skip
        self.supports_step = step
        self.windows: list[tuple[int, ...]] = []  # ids of each run_clip window / step state

    def run_clip(self, frames) -> np.ndarray:
        frames = np.asarray(frames)
        assert frames.shape[1:3] == (3, self.card.window)
        for clip in frames:  # rows are independent streams (async batches them)
            ids = tuple(int(v) for v in clip[0, :, 0, 0])
            assert all((clip[:, t] == i).all() for t, i in enumerate(ids))  # one frame, one id
            self.windows.append(ids)
        return np.zeros((len(frames), K), np.float32)

    def init_state(self, batch: int) -> dict:
        return {"ids": np.full((batch, self.card.window), -1), "frames": np.zeros(batch, int)}

    def run_step(self, frame, state: dict) -> tuple[np.ndarray, dict]:
        frame = np.asarray(frame)
        new = np.concatenate([state["ids"][:, 1:], frame[:, 0, 0, 0].astype(int)[:, None]], 1)
        for row in new:
            self.windows.append(tuple(int(i) for i in row if i >= 0))
        return np.zeros((len(frame), K), np.float32), {"ids": new, "frames": state["frames"] + 1}


@dataclass
class Frame:
    stream: str
    segment: int  # which run of the stream (a new one after every reset)
    index: int  # frame index since the segment's start
    pts: int
    size: tuple[int, int]
    sampled: int = -1  # position among the segment's sampled frames (-1: skipped)


@dataclass
class Reference:
    """The slow, obvious model of which windows exist and which are predicted."""

    window: int
    stride: int
    frame_step: int
    frames: dict[int, Frame] = field(default_factory=dict)  # id -> frame
    by_pts: dict[int, int] = field(default_factory=dict)  # pts -> id
    state: dict[str, dict] = field(default_factory=dict)  # stream -> current segment
    segments: int = 0
    expected: list[tuple] = field(default_factory=list)  # (stream, start pts, end pts, frame)
    windows: dict[tuple, tuple[int, ...]] = field(default_factory=dict)  # prediction -> ids

    def reset(self, stream: str, size=None) -> None:
        old = self.state.pop(stream, None)
        self.segments += 1
        size = size or (old["size"] if old else SIZES[0])
        self.state[stream] = {"segment": self.segments, "index": 0, "sampled": [], "last": None,
                              "size": size}  # fmt: skip

    def push(self, stream: str, fid: int, pts: int) -> None:
        if stream not in self.state:
            self.reset(stream)
        s = self.state[stream]
        f = Frame(stream, s["segment"], s["index"], pts, s["size"])
        self.frames[fid], self.by_pts[pts] = f, fid
        s["index"] += 1
        if f.index % self.frame_step:
            return
        f.sampled = len(s["sampled"])
        s["sampled"].append(fid)
        if len(s["sampled"]) < self.window:
            return
        if s["last"] is not None and f.index - s["last"] < self.stride:
            return
        s["last"] = f.index
        ids = tuple(s["sampled"][-self.window :])
        key = (stream, self.frames[ids[0]].pts, pts, f.index)
        self.expected.append(key)
        self.windows[key] = ids


def check_window(ref: Reference, ids: tuple[int, ...]) -> None:
    """Exactly T frames, one stream, one segment, one size, consecutive sampled frames."""
    assert len(ids) == ref.window, ids
    frames = [ref.frames[i] for i in ids]
    assert len({(f.stream, f.segment, f.size) for f in frames}) == 1, frames
    assert [f.sampled for f in frames] == list(range(frames[0].sampled, frames[-1].sampled + 1))
    assert all(f.index % ref.frame_step == 0 for f in frames)
    pts = [f.pts for f in frames]
    assert pts == sorted(pts)


def check_prediction(ref: Reference, p) -> tuple:
    end = ref.frames[ref.by_pts[p.window_end_pts]]
    start = ref.frames[ref.by_pts[p.window_start_pts]]
    assert (p.stream, p.pts, p.frame) == (end.stream, end.pts, end.index)
    assert (start.stream, start.segment) == (end.stream, end.segment)  # never across a reset
    assert end.sampled - start.sampled == ref.window - 1  # T frames: full, and no longer
    assert end.sampled >= ref.window - 1
    return (p.stream, p.window_start_pts, p.window_end_pts, p.frame)


push = st.tuples(st.just("push"), st.sampled_from(STREAMS), st.integers(1, 20))
op = st.one_of(
    push,
    push,
    push,  # weighted: most steps feed frames
    st.tuples(st.just("reset"), st.sampled_from(STREAMS)),  # a gap (DISCONT) in one stream
    st.tuples(st.just("flush")),  # flush-seek: every stream restarts
    st.tuples(st.just("caps"), st.sampled_from(STREAMS), st.sampled_from(SIZES)),
    st.tuples(st.just("eos")),  # drain, then every stream is evicted
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mode=st.sampled_from(["sync", "incremental", "async", "async-step"]),
    window=st.integers(1, 4),
    stride=st.integers(1, 4),
    frame_step=st.integers(1, 3),
    ops=st.lists(op, min_size=2, max_size=40),
)
def test_any_sequence_keeps_windows_contiguous_unmixed_full_and_at_most_t(
    mode, window, stride, frame_step, ops
):
    incremental = mode in ("incremental", "async-step")
    probe = IdProbe(window, frame_step, step=incremental)
    engine = StreamEngine(probe, stride=stride, incremental=incremental, max_batch=2,
                          mode="async" if mode.startswith("async") else "sync")  # fmt: skip
    cuts = 0  # resets, flushes and caps changes: queued async windows of the stream may go
    ref = Reference(window, stride, frame_step)
    preds, must_survive = [], []
    newest = None  # the newest window submitted since the last EOS, unless a reset cleared it
    fid = pts = 0
    try:
        for o in ops:
            if o[0] == "push":
                for _ in range(o[2]):
                    fid, pts = fid + 1, pts + 1000
                    before = len(ref.expected)
                    ref.push(o[1], fid, pts)
                    newest = ref.expected[-1] if len(ref.expected) > before else newest
                    h, w = ref.state[o[1]]["size"]
                    preds += engine.push(o[1], torch.full((3, h, w), float(fid)), pts)
                continue
            if o[0] == "eos":
                preds += engine.drain()
                for s in list(engine.streams):
                    engine.remove(s)
                ref.state.clear()
                must_survive.append(newest)
                newest = None
                continue
            cuts += 1
            resets = list(engine.streams) if o[0] == "flush" else [o[1]]
            for s in resets:  # flush: every stream; a gap or a caps change: one
                engine.reset(s)
                ref.reset(s, size=o[2] if o[0] == "caps" else None)
            if newest is not None and newest[0] in resets:
                newest = None  # a pending window of a reset stream may be dropped
        preds += engine.drain()
    finally:
        engine.close()

    for ids in probe.windows:  # what the backend was given
        if incremental and len(ids) < window:
            continue  # the step state filling up: no prediction may come from it (below)
        check_window(ref, ids)
    got = [check_prediction(ref, p) for p in preds]
    assert len(set(got)) == len(got)  # no window predicted twice
    if mode.startswith("async"):  # exact per stream; drops only whole windows, counted
        for stream in STREAMS:  # each stream's predictions come in its submission order
            order = [ref.expected.index(k) for k in got if k[0] == stream]
            assert order == sorted(order)
        assert set(got) <= set(ref.expected)
        assert all(k in got for k in must_survive if k is not None)
        if not cuts and engine.dropped == 0:
            assert sorted(got) == sorted(ref.expected)  # nothing lost without a drop or a cut
        assert len(got) + engine.dropped <= len(ref.expected)
        windows = set(probe.windows)
        assert all(ref.windows[k] in windows for k in got)  # computed on exactly its frames
    else:
        assert got == ref.expected  # exactly the reference's windows, in order
        if not incremental:
            assert probe.windows == [ref.windows[k] for k in ref.expected]
        else:  # the step state at each predicted frame held exactly that window
            state_at = {ids[-1]: ids for ids in probe.windows}
            for k in ref.expected:
                assert state_at[ref.windows[k][-1]] == ref.windows[k]
