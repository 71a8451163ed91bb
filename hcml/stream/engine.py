"""The streaming engine that ``hcmlaction`` drives: per-stream rings, scheduling, smoothing.

``StreamEngine.push(stream, frame, pts)`` takes one preprocessed frame [3, H, W] of one stream
and returns the predictions that are ready. Frame sampling and windows:

* every ``frame_step``-th frame of a stream is sampled (frames 0, k, 2k, ... since its start or
  last reset); a window is the last ``window`` sampled frames;
* a prediction is made at a sampled frame once the window is full and at least ``stride``
  frames have passed since the previous one (so stride is rounded up to a multiple of
  ``frame_step``);
* incremental mode feeds each sampled frame to the backend's step graph (per-stream state, cost
  flat in T); full-window mode keeps a preallocated ring of T frames on the device and runs the
  clip graph. Both give the same logits (the step graph is exact).

``mode="async"`` runs inference on a worker thread with a one-slot mailbox: a newer window
replaces a pending one (counted in ``dropped``) and ``push`` never waits for inference; results
come back from a later ``push`` or from ``drain()``. Async mode uses full-window inference, since
step state must see every sampled frame. Timestamps are the frames' PTS (ns), never counters.

``idle_timeout`` (seconds, 0 = off) evicts a stream whose newest frame is that much older (in
PTS) than a frame another stream just pushed: a source that leaves a ``funnel`` never sends its
own EOS downstream, and would otherwise keep its state until the pipeline's EOS. Streams must
share a timestamp base (live sources, or files started together) for this to be meaningful.
"""

from __future__ import annotations

import json
import threading
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

    def to_json(self) -> str:
        d = asdict(self)
        d.pop("extra")
        d["topk"] = [[label, round(score, 6)] for label, score in self.topk]
        d["score"] = round(self.score, 6)
        return json.dumps(d)


class _Stream:
    """Per-stream state: counters, PTS of the window's frames, ring or step state, smoother."""

    def __init__(self, engine: StreamEngine):
        self.frames = 0  # input frames since start/reset
        self.last_pts = 0  # PTS of the newest input frame (sampled or not)
        self.sampled = 0  # sampled frames since start/reset
        self.last_emit: int | None = None
        self.pts: deque[int] = deque(maxlen=engine.window)
        self.ring: torch.Tensor | None = None  # [T, 3, H, W] on the device (full-window)
        self.step_state: dict[str, Any] | None = None
        self.smoother = LabelSmoother(engine.smoothing, engine.hysteresis)


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
        device: str = "cpu",
        idle_timeout: float = 0.0,
    ):
        card = backend.card
        self.backend = backend
        self.window = int(window or card.window)
        self.frame_step = int(frame_step or card.frame_step or 1)
        if mode not in ("sync", "async"):
            raise ValueError(f"mode must be 'sync' or 'async', got {mode!r}")
        if self.window < 1 or stride < 1 or self.frame_step < 1:
            raise ValueError("window, stride and frame_step must be >= 1")
        self.mode, self.stride, self.top_k, self.threshold = mode, int(stride), top_k, threshold
        self.smoothing, self.hysteresis = smoothing, hysteresis
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
        self.incremental = (can_step if incremental is None else incremental) and mode == "sync"
        self.device = torch.device(device)
        self.model_name = card.name
        self.streams: dict[str, _Stream] = {}
        self.dropped = 0
        self.predictions = 0
        if idle_timeout < 0:
            raise ValueError(f"idle_timeout must be >= 0 seconds, got {idle_timeout}")
        self.idle_timeout_ns = int(idle_timeout * 1e9)
        self.evicted = 0
        # called as on_evict(stream, last_pts) for each stream evicted as idle
        self.on_evict: Callable[[str, int], None] | None = None
        self._lock = threading.Lock()
        self._results: list[Prediction] = []
        self._pending: tuple | None = None
        self._busy = False
        self._wake = threading.Condition(self._lock)
        self._closed = False
        self._error: BaseException | None = None
        self._worker: threading.Thread | None = None
        if mode == "async":
            self._worker = threading.Thread(target=self._work, name="hcml-infer", daemon=True)
            self._worker.start()

    # ---------------------------------------------------------------- stream lifecycle
    def reset(self, stream: str) -> None:
        """Forget a stream's frames (flush, discontinuity, caps change); keeps it registered."""
        with self._lock:
            if self._pending is not None and self._pending[0] is self.streams.get(stream):
                self._pending = None
        self.streams.pop(stream, None)

    def remove(self, stream: str) -> None:
        """Evict a stream (EOS, stream removed) and free its ring."""
        self.reset(stream)

    def _evict_idle(self, now: int) -> None:
        """Remove every stream whose newest frame is older than ``now - idle_timeout``."""
        limit = now - self.idle_timeout_ns
        for sid, st in [(sid, st) for sid, st in self.streams.items() if st.last_pts < limit]:
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
        samples, so skipped frames cost no preprocessing.
        """
        if self.idle_timeout_ns and self.streams:
            self._evict_idle(int(pts))
        st = self.streams.get(stream)
        if st is None:
            st = self.streams[stream] = _Stream(self)
        st.last_pts = int(pts)
        index = st.frames
        st.frames += 1
        out = self._collect() if self.mode == "async" else []
        if index % self.frame_step:
            return out
        if callable(frame):
            frame = frame()
        st.sampled += 1
        st.pts.append(int(pts))
        if self.incremental:
            logits = self._step(st, frame)
        else:
            self._store(st, frame)
            logits = None
        full = st.sampled >= self.window
        due = st.last_emit is None or index - st.last_emit >= self.stride
        if not (full and due):
            return out
        st.last_emit = index
        meta = (stream, st.pts[0], st.pts[-1], index)
        if self.incremental:
            pred = self._predict(st, logits, *meta)
            return out + ([pred] if pred else [])
        clip = self._window(st)
        if self.mode == "sync":
            pred = self._predict(st, self.backend.run_clip(clip[None]), *meta)
            return out + ([pred] if pred else [])
        with self._lock:
            if self._pending is not None:
                self.dropped += 1
            self._pending = (st, clip, meta)
            self._wake.notify()
        return out

    def drain(self, timeout: float = 30.0) -> list[Prediction]:
        """Wait for pending async work (EOS) and return what is left."""
        if self.mode == "async":
            with self._lock:
                self._wake.wait_for(lambda: self._pending is None and not self._busy, timeout)
        return self._collect()

    def close(self) -> None:
        """Stop the worker (if any) and drop every stream."""
        with self._lock:
            self._closed = True
            self._wake.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=30)
        self.streams.clear()

    # ---------------------------------------------------------------- internals
    def _store(self, st: _Stream, frame: torch.Tensor) -> None:
        if st.ring is None or st.ring.shape[1:] != frame.shape:
            st.ring = torch.empty(
                (self.window, *frame.shape), dtype=torch.float32, device=frame.device
            )
        st.ring[(st.sampled - 1) % self.window] = frame

    def _window(self, st: _Stream) -> np.ndarray:
        """The ring in time order as the clip input [3, T, H, W] (float32 numpy)."""
        start = st.sampled % self.window
        order = torch.arange(start, start + self.window, device=st.ring.device) % self.window
        return st.ring[order].permute(1, 0, 2, 3).contiguous().cpu().numpy()

    def _step(self, st: _Stream, frame: torch.Tensor) -> np.ndarray:
        if st.step_state is None:
            st.step_state = self.backend.init_state(1)
        logits, st.step_state = self.backend.run_step(frame[None].cpu().numpy(), st.step_state)
        return np.asarray(logits)

    def _predict(
        self, st: _Stream, logits: np.ndarray, stream, start, end, index
    ) -> Prediction | None:
        logits = np.asarray(logits, dtype=np.float64).reshape(-1)
        if not np.isfinite(logits).all():  # never emitted, never fed to the smoother's EMA
            raise FloatingPointError(
                f"the backend returned non-finite logits (NaN/inf) for stream {stream!r}, window "
                f"[{start}, {end}] ns; no prediction made"
            )
        probs, class_id = st.smoother.update(logits)
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

    def _collect(self) -> list[Prediction]:
        with self._lock:
            if self._error is not None:
                err, self._error = self._error, None
                raise RuntimeError(f"inference failed on the worker thread: {err}") from err
            out, self._results = self._results, []
        return out

    def _work(self) -> None:
        while True:
            with self._lock:
                self._wake.wait_for(lambda: self._pending is not None or self._closed)
                if self._closed:
                    return
                st, clip, meta = self._pending
                self._pending, self._busy = None, True
            try:
                pred = self._predict(st, self.backend.run_clip(clip[None]), *meta)
            except BaseException as err:  # surfaced on the streaming thread by _collect
                pred = None
                with self._lock:
                    self._error = err
            with self._lock:
                if pred is not None:
                    self._results.append(pred)
                self._busy = False
                self._wake.notify_all()
