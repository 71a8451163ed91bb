"""Triton engine: the card's clip and step graphs run by a remote Triton Inference Server (gRPC).

``load_backend(card, backend="triton", server="HOST:PORT", state="server"|"client")``. The
server serves the repository that ``hcml.export.triton_repo`` writes (``hcml serve CARD``):
model ``NAME`` (clip), ``NAME_step`` and ``NAME_step_seq`` (step). Two ways to keep the step
graph's per-stream state (docs/SERVING.md compares them):

* ``state="server"`` (default): ``NAME_step_seq`` under Triton's sequence batcher holds it.
  Each stream is a sequence with a random 63-bit correlation id kept in the stream's state
  (``triton_seq``; 0 = not started); a request carries one frame and the sequence flags
  (``sequence_start`` on a stream's first frame and after every restart), so a batch of B
  streams is B concurrent requests that the batcher runs as one ORT call. ``close()`` ends the
  sequences this backend started (the server also drops a sequence idle for its timeout). A
  server that lost a sequence (restarted, expired) answers an error, and the stream restarts.
* ``state="client"``: ``NAME_step`` is stateless; each call sends the frame and the streams'
  state and gets back the logits and the new state, so any replica can answer any frame, and a
  batch of B rows is one request.

Failures:

* at open: server unreachable, a model missing or not ready, or a model whose tensors disagree
  with the card -> ``BackendUnavailable`` with one line naming the server and the problem;
* at run time: a lost server raises ``TritonServerLost`` (a ``BackendUnavailable``) at once; the
  next calls fail fast until a retry is due (backoff ``backoff`` s doubling up to
  ``max_backoff``), then a fresh connection is tried. Only the first failure of an outage has
  ``repeat=False`` (warn once); ``on_notice`` gets one summary line (failed calls, seconds
  down) when the server answers again, or from ``end_of_streams()`` while it is still down.
  A request error from a server that no longer says it is ready (a stopping server unloading
  its models: "unknown model", a sequence it dropped) is an outage too, not this request's
  fault (``hcml serve`` stopping: docs/SERVING.md).
  Every failed step call starts a new *epoch*: a stream state from an older epoch missed
  frames (or names a sequence the server may have lost), so ``run_step`` restarts that stream
  (zero caches / a new sequence with ``sequence_start``, frame counter 0) before using it; its
  windows are exact again T frames later, and ``ready()`` says when.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any

import numpy as np

from hcml.backends.base import Backend, BackendUnavailable
from hcml.card import ModelCard

log = logging.getLogger(__name__)

EPOCH_KEY = "triton_epoch"
SEQ_KEY = "triton_seq"
STATE_MODES = ("server", "client")
#: gRPC metadata key carrying a request's correlation id (server-held state), so that a load
#: balancer in front of several Triton replicas can route each sequence to one of them
SEQUENCE_HEADER = "hcml-sequence-id"
#: gRPC status codes that mean "the server is not there" rather than "this request is wrong"
_LOST = ("StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.CANCELLED")


class TritonServerLost(BackendUnavailable):
    """The Triton server stopped answering; the backend retries with backoff.

    ``repeat`` is False for the call that found the server gone and True for every later failed
    call of the same outage: callers warn once, and ``TritonBackend.on_notice`` gets one summary
    (failed calls, seconds down) when the server answers again or at ``end_of_streams``.
    """

    def __init__(self, message: str, repeat: bool = False):
        super().__init__(message)
        self.repeat = repeat


def _losses(err: BaseException | None):
    """The ``TritonServerLost`` errors in ``err``'s chain of causes."""
    while err is not None:
        if isinstance(err, TritonServerLost):
            yield err
        err = err.__cause__


def server_outage(err: BaseException | None) -> bool:
    """True if ``err`` (or an error it was raised from) says the inference server is lost."""
    return any(True for _ in _losses(err))


def repeated_outage(err: BaseException | None) -> bool:
    """True if ``err`` (or an error it was raised from) is a repeat failure of a known outage."""
    return any(lost.repeat for lost in _losses(err))


def _as_numpy(x: Any) -> np.ndarray:
    if type(x).__module__.startswith("torch"):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(x, dtype=np.float32)


def _one_line(err: BaseException) -> str:
    text = getattr(err, "message", None)
    text = text() if callable(text) else (text or str(err))
    return " ".join(str(text).split())[:300]


class TritonBackend(Backend):
    """Runs a card's graphs on a Triton server over gRPC (see the module docstring)."""

    name = "triton"

    def __init__(
        self,
        card: ModelCard,
        device: str = "cpu",
        server: str | None = None,
        timeout: float = 10.0,
        backoff: float = 0.5,
        max_backoff: float = 4.0,
        state: str = "server",
    ):
        if not server:
            raise BackendUnavailable("backend=triton needs server=HOST:PORT (the gRPC endpoint)")
        if state not in STATE_MODES:
            raise BackendUnavailable(f"triton state must be server or client, got {state!r}")
        try:
            import tritonclient.grpc as grpcclient
            from tritonclient.utils import InferenceServerException
        except ImportError as e:
            raise BackendUnavailable(
                f"tritonclient[grpc] not importable ({e}); install the serve extra: "
                "pip install -e '.[serve]'"
            ) from e
        from hcml.card import clip_model_name, sequence_model_name, step_model_name

        self._grpc, self._exc = grpcclient, InferenceServerException
        self.card, self.device, self.server = card, device, server
        self.timeout = timeout
        self.backoff, self.max_backoff = backoff, max_backoff
        self._delay = 0.0  # current backoff; 0 while the server answers
        self._retry_at = 0.0
        self.epoch = 0
        self.lost = self.reconnects = 0
        #: called with one line when the server answers again after an outage (failed calls,
        #: seconds down) or, at ``end_of_streams``, when it is still down; also logged
        self.on_notice: Any = None
        self._outage: list[float] = []  # [monotonic start, failed calls] while the server is down
        self.clip_model = clip_model_name(card)
        self.state_mode = state
        self.step_model = sequence_model_name(card) if state == "server" else step_model_name(card)
        self._lock = threading.Lock()  # one call at a time (streaming thread vs async worker)
        self._rng = random.Random()  # correlation ids: unique across clients with high odds
        self._live: set[int] = set()  # sequences started here and not ended
        ct = card.tensors.get("clip", {})
        self._clip_in, self._clip_out = ct.get("input", "frames"), ct.get("output", "logits")
        self.supports_step = card.file("step") is not None
        st = card.tensors.get("step", {})
        self._step_in, self._step_out = st.get("input", "frame"), st.get("output", "logits")
        self._state = list(st.get("state", []))
        self._client = self._connect()
        self._check_models()

    # ---------------------------------------------------------------- connection
    def _new_client(self):
        """A client on its own channel: a local subchannel pool, so a retry after a lost server
        really dials again instead of sharing a subchannel stuck in gRPC's reconnect backoff."""
        big = 2**31 - 1
        return self._grpc.InferenceServerClient(
            url=self.server,
            channel_args=[
                ("grpc.max_send_message_length", big),
                ("grpc.max_receive_message_length", big),
                ("grpc.use_local_subchannel_pool", 1),
                ("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.min_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", int(self.max_backoff * 1000)),
            ],
        )

    def _connect(self):
        try:
            client = self._new_client()
            live = client.is_server_live(client_timeout=self.timeout)
        except Exception as e:  # noqa: BLE001 - one line naming the server
            raise BackendUnavailable(
                f"triton server {self.server} is not reachable: {_one_line(e)}"
            ) from e
        if not live:
            raise BackendUnavailable(f"triton server {self.server} is not live")
        return client

    def _check_models(self) -> None:
        c = self._client
        models = [(self.clip_model, "clip")]
        if self.supports_step:
            models.append((self.step_model, "step"))
        for model, role in models:
            try:
                ready = c.is_model_ready(model, client_timeout=self.timeout)
            except self._exc as e:
                raise BackendUnavailable(
                    f"triton server {self.server}: model {model}: {_one_line(e)}"
                ) from e
            if not ready:
                names = [m.name for m in c.get_model_repository_index().models]
                raise BackendUnavailable(
                    f"triton server {self.server} has no ready model {model!r} ({role} graph "
                    f"of card {self.card.name}); models there: {', '.join(names) or 'none'}"
                )
            meta = c.get_model_metadata(model, client_timeout=self.timeout)
            served = {t.name: [int(d) for d in t.shape] for t in [*meta.inputs, *meta.outputs]}
            for name, shape in self._expected(role).items():
                got = served.get(name)
                if got is None or got[1:] != list(shape[1:]):
                    raise BackendUnavailable(
                        f"triton server {self.server}: model {model} tensor {name} is "
                        f"{got}, the card {self.card.name} says {list(shape)} (shape mismatch: "
                        "serve this card's repository)"
                    )

    def _expected(self, role: str) -> dict[str, list[int]]:
        t = self.card.tensors.get(role, {})
        out = {**t.get("inputs", {}), **t.get("outputs", {})}
        if role == "step" and self.state_mode == "client":
            for s in t.get("state", []):
                out[s["name"]] = out[s["out"]] = s["shape"]
        return out

    def _infer(
        self,
        model: str,
        inputs: dict[str, np.ndarray],
        outputs: list[str],
        sequences: list[tuple[int, bool, bool]] | None = None,
    ) -> list:
        """One request, or with ``sequences`` [(id, start, end)] one request per row (sent
        concurrently, outputs stacked); connection failures -> ``TritonServerLost`` and
        backoff, any other failure -> ``RuntimeError`` naming Triton's complaint."""
        now = time.monotonic()
        if self._delay and now < self._retry_at:
            self._outage[1] += 1
            raise TritonServerLost(
                f"triton server {self.server} is down; next retry in {self._retry_at - now:.1f} s",
                repeat=True,
            )
        try:
            if self._delay:  # a retry: a fresh channel, not gRPC's own (long) reconnect backoff
                self._client.close()
                self._client = self._new_client()
            if sequences is None:
                res = [self._request(model, inputs, outputs)]
            else:
                res = self._sequence_requests(model, inputs, outputs, sequences)
        except self._exc as e:
            status = str(e.status())
            lost = status in _LOST or "failed to connect" in str(e).lower()
            if not lost and not self._server_ready():
                lost = True  # stopping (or starting): its request errors are an outage
            if not lost:
                if self._delay:  # it answered, with an error about this request
                    self._recovered()
                raise RuntimeError(
                    f"triton server {self.server}: model {model}: {_one_line(e)}"
                ) from e
            repeat = bool(self._delay)
            if repeat:
                self._outage[1] += 1
            else:
                self.lost += 1
                self._outage = [time.monotonic(), 1]
            self._delay = min(self.max_backoff, self._delay * 2 or self.backoff)
            self._retry_at = time.monotonic() + self._delay
            raise TritonServerLost(
                f"lost triton server {self.server} ({_one_line(e)}); retrying in "
                f"{self._delay:.1f} s",
                repeat=repeat,
            ) from e
        if self._delay:
            self._recovered()
        if len(res) == 1:
            return [res[0].as_numpy(o) for o in outputs]
        return [np.concatenate([r.as_numpy(o) for r in res], 0) for o in outputs]

    def _server_ready(self) -> bool:
        """Asked after a request error: does the server still say it is ready? (A stopping
        Triton answers "unknown model" while it unloads, and refuses a sequence it dropped.)"""
        try:
            return bool(self._client.is_server_ready(client_timeout=1.0))
        except Exception:  # noqa: BLE001 - no answer: not ready
            return False

    def _outage_line(self, what: str) -> str:
        since, failed = self._outage or [time.monotonic(), 0]
        return (
            f"triton server {self.server} {what} after {int(failed)} failed calls "
            f"({time.monotonic() - since:.1f} s down)"
        )

    def _notify(self, text: str) -> None:
        log.warning("%s", text)
        if self.on_notice is not None:
            self.on_notice(text)

    def _recovered(self) -> None:
        self.reconnects += 1
        self._delay = 0.0
        text, self._outage = self._outage_line("answers again"), []
        self._notify(text)

    def end_of_streams(self) -> None:
        """Every stream ended (EOS): end the server's sequences; an outage still going on gets
        its summary through ``on_notice`` (the next failure warns again)."""
        if self._delay:
            text, self._outage = self._outage_line("still down at end of stream"), []
            self._notify(text)
            self._delay = 0.0  # the next call retries at once and, failing, warns again
        elif self.state_mode == "server":
            self.end_sequences()

    def _inputs(self, inputs: dict[str, np.ndarray]) -> list:
        reqs = []
        for name, arr in inputs.items():
            r = self._grpc.InferInput(name, list(arr.shape), "FP32")
            r.set_data_from_numpy(arr)
            reqs.append(r)
        return reqs

    def _request(self, model: str, inputs: dict[str, np.ndarray], outputs: list[str], **seq):
        return self._client.infer(
            model,
            self._inputs(inputs),
            outputs=[self._grpc.InferRequestedOutput(o) for o in outputs],
            client_timeout=self.timeout,
            **seq,
        )

    def _sequence_requests(self, model, inputs, outputs, sequences) -> list:
        """Row i of every input is the next frame of sequence ``sequences[i]``."""

        def flags(i: int) -> dict[str, Any]:
            sid, start, end = sequences[i]
            return {
                "sequence_id": sid,
                "sequence_start": start,
                "sequence_end": end,
                "headers": {SEQUENCE_HEADER: str(sid)},  # for a balancer's sticky routing
            }

        def row(i: int) -> dict[str, np.ndarray]:
            return {n: a[i : i + 1] for n, a in inputs.items()}

        if len(sequences) == 1:
            return [self._request(model, row(0), outputs, **flags(0))]
        done = threading.Semaphore(0)
        results: list[Any] = [None] * len(sequences)
        errors: list[Any] = [None] * len(sequences)

        def callback(i: int, result: Any, error: Any) -> None:
            results[i], errors[i] = result, error
            done.release()

        for i in range(len(sequences)):
            self._client.async_infer(
                model,
                self._inputs(row(i)),
                lambda result, error, i=i: callback(i, result, error),
                outputs=[self._grpc.InferRequestedOutput(o) for o in outputs],
                client_timeout=self.timeout,
                **flags(i),
            )
        for _ in sequences:
            done.acquire()
        for e in errors:
            if e is not None:
                raise e
        return results

    # ---------------------------------------------------------------- Backend interface
    def describe(self) -> str:
        return (
            f"triton gRPC {self.server} models {self.clip_model}/{self.step_model} "
            f"(step state held by the {self.state_mode})"
        )

    def run_clip(self, frames: Any) -> np.ndarray:
        x = _as_numpy(frames)
        with self._lock:
            return self._infer(self.clip_model, {self._clip_in: x}, [self._clip_out])[0]

    def _init_tensors(self, batch: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.state_mode == "server":  # the sequence id; 0 = start a new sequence
            out[SEQ_KEY] = np.zeros(batch, dtype=np.int64)
        else:
            for s in self._state:
                out[s["key"]] = np.zeros([batch, *s["shape"][1:]], dtype=np.float32)
        out[EPOCH_KEY] = np.full(batch, self.epoch, dtype=np.int64)
        return out

    def run_step(self, frame: Any, state: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        """``Backend.run_step``; rows whose state predates a failed call restart first."""
        stale = np.asarray(state[EPOCH_KEY]) != self.epoch
        if stale.any():
            state = {k: np.array(v, copy=True) for k, v in state.items()}
            self.reset_state(state, stale)
            state[EPOCH_KEY][:] = self.epoch
        return super().run_step(frame, state)

    def _step(self, frame: Any, tensors: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
        with self._lock:
            try:
                if self.state_mode == "server":
                    return self._step_server(frame, tensors)
                return self._step_client(frame, tensors)
            except Exception:
                self.epoch += 1  # these streams missed a frame: their states restart on next use
                raise

    def _step_client(self, frame: Any, tensors: dict[str, Any]) -> tuple[np.ndarray, dict]:
        feeds = {self._step_in: _as_numpy(frame)}
        for s in self._state:
            feeds[s["name"]] = _as_numpy(tensors[s["key"]])
        outs = self._infer(
            self.step_model, feeds, [self._step_out] + [s["out"] for s in self._state]
        )
        new = {s["key"]: o for s, o in zip(self._state, outs[1:], strict=True)}
        new[EPOCH_KEY] = np.full(len(outs[0]), self.epoch, dtype=np.int64)
        return outs[0], new

    def _step_server(self, frame: Any, tensors: dict[str, Any]) -> tuple[np.ndarray, dict]:
        ids = np.array(tensors[SEQ_KEY], dtype=np.int64, copy=True).reshape(-1)
        start = ids == 0
        for i in np.flatnonzero(start):  # a new stream, or one restarted: a new sequence
            ids[i] = self._rng.getrandbits(63) or 1
            self._live.add(int(ids[i]))
        seqs = [(int(i), bool(s), False) for i, s in zip(ids, start, strict=True)]
        feeds = {self._step_in: _as_numpy(frame)}
        try:
            logits = self._infer(self.step_model, feeds, [self._step_out], seqs)[0]
        except Exception:
            self._live.difference_update(int(i) for i in ids)  # restarted: left to idle out
            raise
        return logits, {SEQ_KEY: ids, EPOCH_KEY: np.full(len(ids), self.epoch, dtype=np.int64)}

    def end_sequences(self, timeout: float = 5.0) -> int:
        """End every sequence this backend started (the server frees their state at once);
        returns how many the server ended. Failures are ignored: the idle timeout frees them."""
        with self._lock:
            live, self._live = sorted(self._live), set()
            if not live or self._delay:
                return 0
            h, w = self.card.input_size
            frame = {self._step_in: np.zeros((1, 3, h, w), np.float32)}
            done = threading.Semaphore(0)
            ended = []

            def callback(result: Any, error: Any) -> None:
                ended.append(error is None)  # an expired sequence answers an error
                done.release()

            try:
                for sid in live:
                    self._client.async_infer(
                        self.step_model,
                        self._inputs(frame),
                        callback,
                        outputs=[self._grpc.InferRequestedOutput(self._step_out)],
                        client_timeout=timeout,
                        sequence_id=sid,
                        sequence_end=True,
                        headers={SEQUENCE_HEADER: str(sid)},
                    )
            except Exception:  # noqa: BLE001 - server gone: its idle timeout frees the rest
                return 0
            deadline = time.monotonic() + timeout + 1
            for _ in live:
                if not done.acquire(timeout=max(0.0, deadline - time.monotonic())):
                    break
            return sum(ended)

    def close(self) -> None:
        if self.state_mode == "server":
            self.end_sequences()
        self._client.close()


__all__ = [
    "EPOCH_KEY",
    "SEQUENCE_HEADER",
    "SEQ_KEY",
    "STATE_MODES",
    "TritonBackend",
    "TritonServerLost",
    "repeated_outage",
]
