"""The streaming engine that ``hcmlaction`` drives: per-stream rings, scheduling, smoothing.

``StreamEngine.push(stream, frame, pts)`` takes one preprocessed frame [3, H, W] of one stream
and returns that stream's predictions that are ready to go on its buffer. Frame sampling and
windows:

* every ``frame_step``-th frame of a stream is sampled (frames 0, k, 2k, ... since its start or
  last reset); a window is the last ``window`` sampled frames;
* a prediction is made at a sampled frame once the window is full and at least ``stride``
  frames have passed since the previous one (so stride is rounded up to a multiple of
  ``frame_step``);
* incremental mode feeds each sampled frame to the backend's step graph (per-stream state, cost
  flat in T); full-window mode runs the clip graph on the stream's ring. Both give the same
  logits (the step graph is exact).

Every stream keeps a preallocated ring of sampled frames on the engine's device (the backend's
unless told otherwise): a CUDA frame stays on the GPU from the element to the backend.

``mode="async"`` runs inference on a worker thread, exactly as sync would: every stream has an
ordered queue of sampled frames (incremental) or due windows (full-window), bounded by
``max_backlog``. Each tick the worker takes the head of up to ``max_batch`` streams' queues,
round-robin (so every stream is served), waiting up to ``batch_timeout`` seconds for more
streams to become ready, and runs ONE backend call for all of them (step graph: stacked
states; clip graph: stacked windows). A stream whose queue is full has its backlog dropped as
whole windows (counted in ``dropped`` and ``dropped_by_stream``), never frames of another
stream: in incremental mode its step state restarts and the window due at the drop is served
by one clip call on its ring; windows due while the state re-primes (fewer than T frames fed)
are dropped too, except the newest one at ``drain``. Results are handed to ``on_result`` the
moment they exist (bus messages, events) and to the stream's next ``push`` (buffer meta).
Timestamps are the frames' PTS (ns), never counters.

``max_gap`` (seconds, 0 = off) restarts a stream's window when its PTS jumps forward by more
than that, and any PTS that goes backwards restarts it too (a non-flushing seek, a source
restart): a window never spans time it should not.

``idle_timeout`` (seconds, 0 = off) evicts a stream whose newest frame is that much older (in
PTS) than a frame another stream just pushed: a source that leaves a ``funnel`` never sends its
own EOS downstream, and would otherwise keep its state until the pipeline's EOS. Streams must
share a timestamp base (live sources, or files started together) for this to be meaningful.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from hcml.stream.smoothing import LabelSmoother

__all__ = ["Prediction", "StreamEngine"]


@dataclass
class Prediction:
    """One classification of the window [window_start_pts, window_end_pts] of a stream."""

    stream: str
    pts: int
    window_start_pts: int
    window_end_pts: int
    label: str
    class_id: int
    score: float
    topk: list[tuple[str, float]]
    model: str
    frame: int = 0  # index of the window's last frame in the stream (since start/reset)
    extra: dict[str, Any] = field(default_factory=dict)
    object_id: str | None = None  # per-object results (hcmlaction ROIs): the tracker's id
    box: list[int] | None = None  # and its box [x, y, w, h] in frame pixels

    def to_json(self) -> str:
        d = asdict(self)
        d.pop("extra")
        for name in ("object_id", "box"):  # whole-frame lines stay as they were
            if d[name] is None:
                d.pop(name)
        d["topk"] = [[label, round(score, 6)] for label, score in self.topk]
        d["score"] = round(self.score, 6)
        return json.dumps(d)


@dataclass
class _Item:
    """One unit of async work for a stream, in stream order.

    kind "step": feed ring slot ``slot`` to the step state (and predict if ``meta``);
    kind "clip": predict the window of T sampled frames ending at ring slot ``slot``.
    """

    kind: str
    slot: int
    meta: tuple | None  # (stream, start pts, end pts, frame index) when a prediction is due
    n: int = 0  # the stream's sampled-frame number of ``slot``
    gen: int = 0  # the stream's step-state generation when queued (stale after a drop)
    x: torch.Tensor | None = None  # full-window mode: the window copied when it was due


class _Stream:
    """Per-stream state: counters, PTS of the window's frames, ring, step state, smoother."""

    def __init__(self, engine: StreamEngine, name: str):
        self.name = name
        self.frames = 0  # input frames since start/reset
        self.last_pts: int | None = None  # PTS of the newest input frame (sampled or not)
        self.sampled = 0  # sampled frames since start/reset
        self.last_emit: int | None = None
        self.pts: deque[int] = deque(maxlen=engine.window)
        self.ring: torch.Tensor | None = None  # [R, 3, H, W] on the engine's device
        self.step_state: dict[str, Any] | None = None
        self.fed = 0  # frames fed to step_state since it was (re)started
        self.gen = 0  # bumped when a backlog drop restarts the step state
        self.smoother = LabelSmoother(engine.smoothing, engine.hysteresis)
        self.queue: deque[_Item] = deque()  # async work, oldest first
        self.out: list[Prediction] = []  # results not yet handed to a push of this stream
        self.skipped: _Item | None = None  # newest window skipped while re-priming (async)
        self.dropped = 0


class StreamEngine:
    """Sliding-window classification over many streams with one backend (see module doc)."""

    def __init__(
        self,
        backend: Any,
        window: int | None = None,
        stride: int = 1,
        frame_step: int | None = None,
        incremental: bool | None = None,
        top_k: int = 5,
        threshold: float = 0.0,
        smoothing: float = 0.0,
        hysteresis: int = 1,
        mode: str = "sync",
        labels: list[str] | None = None,
        device: str | None = None,
        idle_timeout: float = 0.0,
        max_batch: int = 8,
        batch_timeout: float = 0.0,
        max_backlog: int | None = None,
        max_gap: float = 0.0,
        on_result: Callable[[Prediction], None] | None = None,
    ):
        card = backend.card
        self.backend = backend
        self.window = int(window or card.window)
        self.frame_step = int(frame_step or card.frame_step or 1)
        if mode not in ("sync", "async"):
            raise ValueError(f"mode must be 'sync' or 'async', got {mode!r}")
        if self.window < 1 or stride < 1 or self.frame_step < 1:
            raise ValueError("window, stride and frame_step must be >= 1")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if batch_timeout < 0 or max_gap < 0 or idle_timeout < 0:
            raise ValueError("batch_timeout, max_gap and idle_timeout must be >= 0 seconds")
        self.mode, self.stride, self.top_k, self.threshold = mode, int(stride), top_k, threshold
        self.smoothing, self.hysteresis = smoothing, hysteresis
        # scores = softmax(logits / T) on every path (sync, async, clip, step, per-object)
        self.temperature = float(getattr(card, "temperature", 1.0) or 1.0)
        self.labels = list(labels or card.labels)
        if len(self.labels) != card.num_classes:
            raise ValueError(
                f"labels override has {len(self.labels)} names, the model has {card.num_classes}"
            )
        can_step = bool(getattr(backend, "supports_step", False)) and self.window == card.window
        if incremental and not can_step:
            raise ValueError(
                "incremental mode needs the model's step graph and window == the card's window "
                f"({card.window}); use incremental=False"
            )
        self.incremental = can_step if incremental is None else bool(incremental)
        self.device = torch.device(device or getattr(backend, "device", "cpu") or "cpu")
        self.model_name = card.name
        self.max_batch, self.batch_timeout = int(max_batch), float(batch_timeout)
        self.max_backlog = int(max_backlog or max(self.window, 2))
        self.max_gap_ns = int(max_gap * 1e9)
        self.idle_timeout_ns = int(idle_timeout * 1e9)
        self.on_result = on_result
        # called as on_evict(stream, last_pts) for each stream evicted as idle
        self.on_evict: Callable[[str, int], None] | None = None
        self.streams: dict[str, _Stream] = {}
        self.dropped = 0  # windows dropped (async backlog), all streams
        self.dropped_by_stream: dict[str, int] = {}
        self.predictions = 0
        self.evicted = 0
        self.restarts = 0  # windows restarted on a PTS gap or a backwards PTS
        self.batches: list[int] = []  # async: streams served per backend call (last 1000)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._busy = False
        self._closed = False
        self._error: BaseException | None = None
        self._rr = 0  # round-robin start
        self._worker: threading.Thread | None = None
        if mode == "async":
            self._worker = threading.Thread(target=self._work, name="hcml-infer", daemon=True)
            self._worker.start()

    # ---------------------------------------------------------------- stream lifecycle
    def reset(self, stream: str) -> None:
        """Forget a stream's frames (flush, discontinuity, caps change); queued work is dropped."""
        with self._lock:
            self.streams.pop(stream, None)

    def remove(self, stream: str) -> None:
        """Evict a stream (EOS, stream removed) and free its ring."""
        self.reset(stream)

    def _evict_idle(self, now: int) -> None:
        """Remove every stream whose newest frame is older than ``now - idle_timeout``."""
        limit = now - self.idle_timeout_ns
        idle = [(s, st) for s, st in self.streams.items() if st.last_pts is not None]
        for sid, st in [(s, st) for s, st in idle if st.last_pts < limit]:
            self.remove(sid)
            self.evicted += 1
            if self.on_evict is not None:
                self.on_evict(sid, st.last_pts)

    # ---------------------------------------------------------------- the hot path
    def push(
        self, stream: str, frame: torch.Tensor | Callable[[], torch.Tensor], pts: int
    ) -> list[Prediction]:
        """Feed one preprocessed frame [3, H, W] with its PTS (ns); returns ready predictions.

        ``frame`` may be a callable returning it: it is called only for frames the frame step
        samples, so skipped frames cost no preprocessing. The predictions returned are this
        stream's (sync: of this frame; async: those finished since its previous push).
        """
        pts = int(pts)
        st, index = self._enter(stream, pts)
        if index % self.frame_step == 0:
            if callable(frame):
                frame = frame()
            self._sample(st, frame, index, pts)
        with self._lock:
            out, st.out = st.out, []
            if self._error is not None:  # after this frame is in: a failure loses no frame
                st.out = out + st.out  # handed out by the next push
        self._raise_worker_error()
        return out

    def _enter(self, stream: str, pts: int) -> tuple[_Stream, int]:
        """A frame of ``stream`` arrives: idle eviction, PTS restarts; (state, frame index)."""
        if self.idle_timeout_ns and self.streams:
            self._evict_idle(pts)
        st = self.streams.get(stream)
        if st is not None and st.last_pts is not None:
            backwards = pts < st.last_pts
            if backwards or (self.max_gap_ns and pts - st.last_pts > self.max_gap_ns):
                self.restarts += 1
                self.reset(stream)
                st = None
        if st is None:
            st = _Stream(self, stream)
            with self._lock:
                self.streams[stream] = st
        st.last_pts = pts
        index = st.frames
        st.frames += 1
        return st, index

    def push_many(
        self, items: list[tuple[str, torch.Tensor | Callable[[], torch.Tensor], int]]
    ) -> dict[str, list[Prediction]]:
        """Feed one frame each of several streams at once: ``[(stream, frame, pts), ...]``.

        The streams must be distinct (e.g. the objects of one video frame). Sync mode: every
        sampled frame goes through ONE backend call (step graph: the streams' states stacked;
        full-window mode: their due windows stacked), with the same scheduling, state and
        results as ``push`` one by one (logits equal up to the backend's batched arithmetic).
        Async mode pushes them one by one (the worker batches across streams already).
        Returns {stream: its ready predictions}.
        """
        keys = [k for k, _, _ in items]
        if len(set(keys)) != len(keys):
            raise ValueError("push_many: each stream may appear once per call")
        if self.mode == "async" or len(items) <= 1:
            return {k: self.push(k, f, p) for k, f, p in items}
        steps: list[tuple[_Stream, int, tuple | None]] = []
        clips: list[tuple[_Stream, int, tuple]] = []
        for stream, frame, pts in items:
            st, index = self._enter(stream, int(pts))
            if index % self.frame_step:
                continue
            slot, meta = self._schedule(st, frame() if callable(frame) else frame, index, int(pts))
            if self.incremental:
                steps.append((st, slot, meta))
            elif meta:
                clips.append((st, slot, meta))
        if steps:
            frames = torch.stack([st.ring[slot] for st, slot, _ in steps])
            logits = self._run_steps([st for st, _, _ in steps], frames)
            for (st, _, meta), row in zip(steps, logits, strict=True):
                if meta and st.fed >= self.window:  # else re-priming after a failed step
                    self._deliver(st, row, meta)
        if clips:
            logits = self._run_clips(torch.stack([self._clip_of(st, s) for st, s, _ in clips]))
            for (st, _, meta), row in zip(clips, logits, strict=True):
                self._deliver(st, row, meta)
        out = {}
        with self._lock:
            for k in keys:
                st = self.streams.get(k)
                out[k], st.out = (st.out, []) if st is not None else ([], [])
        return out

    def _schedule(
        self, st: _Stream, frame: torch.Tensor, index: int, pts: int
    ) -> tuple[int, tuple | None]:
        """Sync: store a sampled frame in the ring; (slot, prediction meta if one is due)."""
        return self._store(st, frame), self._advance(st, index, pts)

    def _advance(self, st: _Stream, index: int, pts: int) -> tuple | None:
        """Count a sampled frame just stored; the prediction meta if a window is due now."""
        st.sampled += 1
        st.pts.append(pts)
        full = st.sampled >= self.window
        if not full or (st.last_emit is not None and index - st.last_emit < self.stride):
            return None
        st.last_emit = index
        return (st.name, st.pts[0], st.pts[-1], index)

    def drain(self, timeout: float = 30.0) -> list[Prediction]:
        """Finish queued async work (EOS) and return every prediction not yet returned."""
        if self.mode == "async":
            deadline = time.monotonic() + timeout

            def idle() -> bool:
                busy = self._busy or any(s.queue for s in self.streams.values())
                return self._closed or not busy

            with self._lock:
                while True:  # the worker may skip a window (re-priming) while it finishes
                    self._wake.notify_all()
                    self._wake.wait_for(idle, max(0.0, deadline - time.monotonic()))
                    if self._closed or not idle() or not self._requeue_skipped():
                        break
        self._raise_worker_error()
        with self._lock:
            out = [p for st in self.streams.values() for p in st.out]
            for st in self.streams.values():
                st.out = []
        return out

    def _requeue_skipped(self) -> bool:
        """Serve each stream's newest skipped window with one clip call (locked, worker idle)."""
        requeued = False
        for st in self.streams.values():
            it, st.skipped = st.skipped, None
            if it is None or st.ring is None:
                continue
            if st.sampled - 1 - it.n > len(st.ring) - self.window:
                continue  # its frames were overwritten since
            st.queue.appendleft(_Item("clip", it.slot, it.meta, it.n, st.gen))
            st.dropped -= 1  # counted when skipped; served after all
            self.dropped -= 1
            self.dropped_by_stream[st.name] = st.dropped
            requeued = True
        return requeued

    def close(self) -> None:
        """Stop the worker (if any) and drop every stream."""
        with self._lock:
            self._closed = True
            self._wake.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=30)
        with self._lock:
            self.streams.clear()

    # ---------------------------------------------------------------- sampling and scheduling
    def _sample(self, st: _Stream, frame: torch.Tensor, index: int, pts: int) -> None:
        if self.mode == "async":
            with self._lock:  # the worker gathers its batch from the ring under the lock
                slot = self._store(st, frame)
        else:
            slot = self._store(st, frame)
        meta = self._advance(st, index, pts)
        if self.mode == "sync":
            if self.incremental:
                logits = self._run_steps([st], st.ring[slot][None])[0]
                if meta and st.fed >= self.window:  # else re-priming after a failed step
                    self._deliver(st, logits, meta)
            elif meta:
                self._deliver(st, self._run_clips(self._clip_of(st, slot)[None])[0], meta)
            return
        n = st.sampled - 1
        item = _Item("step" if self.incremental else "clip", slot, meta, n, st.gen)
        if not self.incremental and meta is None:
            return  # full-window async: only due windows are work
        with self._lock:
            if not self.incremental:  # due windows may wait longer than the ring's frames last
                item.x = self._clip_of(st, slot).contiguous()
            if len(st.queue) >= self.max_backlog:
                self._drop_backlog(st, item)
            else:
                st.queue.append(item)
            self._wake.notify_all()

    def _drop_backlog(self, st: _Stream, item: _Item) -> None:
        """The stream fell behind: drop its queued windows, restart its step state (locked)."""
        due = [it for it in st.queue if it.meta is not None]
        lost = len(due)
        if due and item.meta is None:  # drain serves the newest window if nothing newer comes
            st.skipped = due[-1]
        if self.incremental:  # the step state restarts: every queued frame goes
            st.queue.clear()
            st.step_state, st.fed, st.gen = None, 0, st.gen + 1
            if item.meta is not None:  # served now by one clip call on the ring
                st.queue.append(_Item("clip", item.slot, item.meta, item.n, st.gen))
            st.queue.append(_Item("step", item.slot, None, item.n, st.gen))
        else:  # windows are independent: keep the newest
            st.queue.clear()
            st.queue.append(item)
        st.dropped += lost
        self.dropped += lost
        self.dropped_by_stream[st.name] = st.dropped

    def _store(self, st: _Stream, frame: torch.Tensor) -> int:
        """Write a sampled frame into the stream's ring; returns its slot."""
        frame = torch.as_tensor(frame)
        size = self.window + (self.max_backlog + 1 if self.mode == "async" else 0)
        if st.ring is None or st.ring.shape[1:] != frame.shape:
            st.ring = torch.empty((size, *frame.shape), dtype=torch.float32, device=self.device)
        slot = st.sampled % size
        st.ring[slot].copy_(frame, non_blocking=True)
        return slot

    def _clip_of(self, st: _Stream, slot: int) -> torch.Tensor:
        """The window ending at ``slot`` in time order: [3, T, H, W] on the engine's device."""
        size = len(st.ring)
        order = torch.arange(slot - self.window + 1, slot + 1, device=st.ring.device) % size
        return st.ring[order].permute(1, 0, 2, 3)

    # ---------------------------------------------------------------- backend calls
    def _run_clips(self, clips: torch.Tensor) -> np.ndarray:
        """One clip-graph call: clips [B, 3, T, H, W] -> logits [B, K]."""
        return np.asarray(self.backend.run_clip(clips.contiguous()))

    def _run_steps(
        self, streams: list[_Stream], frames: torch.Tensor, gens: list[int] | None = None
    ) -> np.ndarray:
        """One step-graph call, frames [B, 3, H, W]: each stream's state advances by one frame.

        ``gens``: the state generation each frame was queued for; a frame queued before a
        backlog drop (stale) runs on a throwaway state and never reaches the stream's.
        """
        from hcml.backends.base import split_state, stack_states

        states = []
        with self._lock:
            gens = [st.gen for st in streams] if gens is None else list(gens)
            for st, gen in zip(streams, gens, strict=True):
                if st.gen != gen:
                    states.append(self.backend.init_state(1))
                    continue
                if st.step_state is None:
                    st.step_state, st.fed = self.backend.init_state(1), 0
                states.append(st.step_state)
        state = states[0] if len(states) == 1 else stack_states(states)
        try:
            logits, new = self.backend.run_step(frames, state)
        except Exception:
            # the states may be half-advanced (or reset by the backend, e.g. a lost server):
            # restart them, so no window mixes frames from before and after the failure
            with self._lock:
                for st, gen in zip(streams, gens, strict=True):
                    if st.gen == gen:
                        st.step_state, st.fed, st.gen = None, 0, st.gen + 1
            raise
        news = [new] if len(streams) == 1 else split_state(new)
        with self._lock:
            for st, s, gen in zip(streams, news, gens, strict=True):
                if st.gen == gen:  # else a drop restarted the state meanwhile: keep the restart
                    st.step_state = s
                    st.fed += 1
        return np.asarray(logits)

    # ---------------------------------------------------------------- results
    def _deliver(self, st: _Stream, logits: np.ndarray, meta: tuple) -> None:
        with self._lock:
            if self.streams.get(st.name) is not st:
                return  # the stream was cut (reset, flush, EOS) while its window was inferred
        pred = self._predict(st, logits, *meta)
        if pred is None:
            return
        with self._lock:
            st.out.append(pred)
        if self.on_result is not None:
            self.on_result(pred)

    def _predict(
        self, st: _Stream, logits: np.ndarray, stream, start, end, index
    ) -> Prediction | None:
        logits = np.asarray(logits, dtype=np.float64).reshape(-1)
        if not np.isfinite(logits).all():  # never emitted, never fed to the smoother's EMA
            raise FloatingPointError(
                f"the backend returned non-finite logits (NaN/inf) for stream {stream!r}, window "
                f"[{start}, {end}] ns; no prediction made"
            )
        probs, class_id = st.smoother.update(logits / self.temperature)
        score = float(probs[class_id])
        self.predictions += 1
        if score < self.threshold:
            return None
        top = np.argsort(-probs)[: self.top_k]
        return Prediction(
            stream=stream,
            pts=end,
            window_start_pts=start,
            window_end_pts=end,
            label=self.labels[class_id],
            class_id=class_id,
            score=score,
            topk=[(self.labels[i], float(probs[i])) for i in top],
            model=self.model_name,
            frame=index,
        )

    def _raise_worker_error(self) -> None:
        with self._lock:
            err, self._error = self._error, None
        if err is not None:
            raise RuntimeError(f"inference failed on the worker thread: {err}") from err

    # ---------------------------------------------------------------- the async worker
    def _ready(self) -> list[_Stream]:
        return [st for st in self.streams.values() if st.queue]

    def _take(self) -> list[tuple[_Stream, _Item, torch.Tensor]]:
        """Heads of up to ``max_batch`` streams' queues, round-robin, with their input (locked).

        The input (a frame [3, H, W] or a window [3, T, H, W]) is copied out of the ring here,
        on its device, so the streaming thread may reuse the slot while inference runs.
        """
        ready = self._ready()
        if not ready:
            return []
        start = self._rr % len(ready)
        chosen = (ready[start:] + ready[:start])[: self.max_batch]
        self._rr += len(chosen)
        work = []
        for st in chosen:
            it = st.queue.popleft()
            if it.x is not None:
                x = it.x
            elif it.kind == "step":
                x = st.ring[it.slot].clone()
            else:
                x = self._clip_of(st, it.slot).contiguous()
            work.append((st, it, x))
        return work

    def _work(self) -> None:
        while True:
            with self._lock:
                self._wake.wait_for(lambda: self._closed or bool(self._ready()))
                if self._closed:
                    return
                if self.batch_timeout and len(self._ready()) < self.max_batch:
                    deadline = time.monotonic() + self.batch_timeout
                    self._wake.wait_for(
                        lambda: self._closed or len(self._ready()) >= self.max_batch,
                        max(0.0, deadline - time.monotonic()),
                    )
                    if self._closed:
                        return
                work = self._take()
                self._busy = True
            try:
                self._serve(work)
            except BaseException as err:  # surfaced on the streaming thread by push/drain
                with self._lock:
                    self._error = err
            with self._lock:
                self._busy = False
                self._wake.notify_all()

    def _serve(self, work: list[tuple[_Stream, _Item, torch.Tensor]]) -> None:
        """One tick: one step call for the step items, one clip call for the clip items."""
        self.batches = [*self.batches[-999:], len(work)]
        groups: dict[tuple, list] = {}  # one backend call per kind and input shape
        for st, it, x in work:
            groups.setdefault((it.kind, tuple(x.shape)), []).append((st, it, x))
        done: list[tuple[_Stream, _Item, np.ndarray]] = []
        for (kind, _), items in groups.items():
            done += self._serve_group(kind, items)
        error = None
        for st, it, row in done:  # one stream's bad logits never cost another its result
            try:
                self._deliver(st, row, it.meta)
            except Exception as err:  # noqa: BLE001 - the first is raised after the others
                error = error or err
        if error is not None:
            raise error

    def _serve_group(self, kind: str, items: list) -> list[tuple[_Stream, _Item, np.ndarray]]:
        """One backend call for items of one kind and shape; returns the rows to deliver."""
        done: list[tuple[_Stream, _Item, np.ndarray]] = []
        clips = items if kind == "clip" else []
        steps = items if kind == "step" else []
        if clips:
            with self._lock:
                for st, it, _ in clips:
                    if st.skipped is not None and st.skipped.n <= it.n:
                        st.skipped = None
            logits = self._run_clips(torch.stack([x for _, _, x in clips]))
            done += [(st, it, row) for (st, it, _), row in zip(clips, logits, strict=True)]
        if steps:
            frames = torch.stack([x for _, _, x in steps])
            gens = [it.gen for _, it, _ in steps]
            logits = self._run_steps([st for st, _, _ in steps], frames, gens)
            for (st, it, _), row in zip(steps, logits, strict=True):
                if it.meta is None or it.gen != st.gen:  # stale: its drop counted it
                    continue
                if st.fed < self.window:  # re-priming after a drop: the state is not ready
                    with self._lock:
                        st.skipped = it
                        st.dropped += 1
                        self.dropped += 1
                        self.dropped_by_stream[st.name] = st.dropped
                    continue
                with self._lock:
                    if st.skipped is not None and st.skipped.n <= it.n:
                        st.skipped = None  # a newer window was served
                done.append((st, it, row))
        return done
