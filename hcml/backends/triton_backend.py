"""Triton engine: the card's clip and step graphs run by a remote Triton Inference Server (gRPC).

``load_backend(card, backend="triton", server="HOST:PORT")``. The server serves the repository
that ``hcml.export.triton_repo`` writes (``hcml serve CARD``): model ``NAME`` (clip) and
``NAME_step`` (step). The step graph is stateless on the server: each call sends the frame and
the streams' state and gets back the logits and the new state (docs/SERVING.md), so any replica
can answer any frame, and a batch of B rows is B streams (Triton's dynamic batcher also merges
concurrent requests of other clients).

Failures:

* at open: server unreachable, a model missing or not ready, or a model whose tensors disagree
  with the card -> ``BackendUnavailable`` with one line naming the server and the problem;
* at run time: a lost server raises ``TritonServerLost`` (a ``BackendUnavailable``) at once; the
  next calls fail fast until a retry is due (backoff ``backoff`` s doubling up to
  ``max_backoff``), then a fresh connection is tried. Every failed step call starts a new
  *epoch*: a stream state from an older epoch missed frames, so ``run_step`` restarts that
  stream (zero caches, frame counter 0) before using it; its windows are exact again T frames
  later, and ``ready()`` says when.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from hcml.backends.base import Backend, BackendUnavailable
from hcml.card import ModelCard

log = logging.getLogger(__name__)

EPOCH_KEY = "triton_epoch"
#: gRPC status codes that mean "the server is not there" rather than "this request is wrong"
_LOST = ("StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED", "StatusCode.CANCELLED")


class TritonServerLost(BackendUnavailable):
    """The Triton server stopped answering; the backend retries with backoff."""


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
    ):
        if not server:
            raise BackendUnavailable("backend=triton needs server=HOST:PORT (the gRPC endpoint)")
        try:
            import tritonclient.grpc as grpcclient
            from tritonclient.utils import InferenceServerException
        except ImportError as e:
            raise BackendUnavailable(
                f"tritonclient[grpc] not importable ({e}); install the serve extra: "
                "pip install -e '.[serve]'"
            ) from e
        from hcml.card import clip_model_name, step_model_name

        self._grpc, self._exc = grpcclient, InferenceServerException
        self.card, self.device, self.server = card, device, server
        self.timeout = timeout
        self.backoff, self.max_backoff = backoff, max_backoff
        self._delay = 0.0  # current backoff; 0 while the server answers
        self._retry_at = 0.0
        self.epoch = 0
        self.lost = self.reconnects = 0
        self.clip_model = clip_model_name(card)
        self.step_model = step_model_name(card)
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
        for s in t.get("state", []) if role == "step" else []:
            out[s["name"]] = out[s["out"]] = s["shape"]
        return out

    def _infer(self, model: str, inputs: dict[str, np.ndarray], outputs: list[str]) -> list:
        """One request; connection failures -> ``TritonServerLost`` and backoff."""
        now = time.monotonic()
        if self._delay and now < self._retry_at:
            raise TritonServerLost(
                f"triton server {self.server} is down; next retry in {self._retry_at - now:.1f} s"
            )
        g = self._grpc
        reqs = []
        for name, arr in inputs.items():
            r = g.InferInput(name, list(arr.shape), "FP32")
            r.set_data_from_numpy(arr)
            reqs.append(r)
        try:
            if self._delay:  # a retry: a fresh channel, not gRPC's own (long) reconnect backoff
                self._client.close()
                self._client = self._new_client()
            res = self._client.infer(
                model,
                reqs,
                outputs=[g.InferRequestedOutput(o) for o in outputs],
                client_timeout=self.timeout,
            )
        except self._exc as e:
            status = str(e.status())
            if status not in _LOST and "failed to connect" not in str(e).lower():
                if self._delay:  # it answered, with an error about this request
                    self.reconnects, self._delay = self.reconnects + 1, 0.0
                raise RuntimeError(
                    f"triton server {self.server}: model {model}: {_one_line(e)}"
                ) from e
            self.lost += not self._delay
            self._delay = min(self.max_backoff, self._delay * 2 or self.backoff)
            self._retry_at = time.monotonic() + self._delay
            raise TritonServerLost(
                f"lost triton server {self.server} ({_one_line(e)}); retrying in "
                f"{self._delay:.1f} s"
            ) from e
        if self._delay:
            log.warning("triton server %s answers again", self.server)
            self.reconnects += 1
            self._delay = 0.0
        return [res.as_numpy(o) for o in outputs]

    # ---------------------------------------------------------------- Backend interface
    def describe(self) -> str:
        return f"triton gRPC {self.server} models {self.clip_model}/{self.step_model}"

    def run_clip(self, frames: Any) -> np.ndarray:
        x = _as_numpy(frames)
        return self._infer(self.clip_model, {self._clip_in: x}, [self._clip_out])[0]

    def _init_tensors(self, batch: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            s["key"]: np.zeros([batch, *s["shape"][1:]], dtype=np.float32) for s in self._state
        }
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
        feeds = {self._step_in: _as_numpy(frame)}
        for s in self._state:
            feeds[s["name"]] = _as_numpy(tensors[s["key"]])
        try:
            outs = self._infer(
                self.step_model, feeds, [self._step_out] + [s["out"] for s in self._state]
            )
        except Exception:
            self.epoch += 1  # these streams missed a frame: their states restart on next use
            raise
        new = {s["key"]: o for s, o in zip(self._state, outs[1:], strict=True)}
        new[EPOCH_KEY] = np.full(len(outs[0]), self.epoch, dtype=np.int64)
        return outs[0], new

    def close(self) -> None:
        self._client.close()


__all__ = ["EPOCH_KEY", "TritonBackend", "TritonServerLost"]
