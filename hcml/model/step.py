"""Exact incremental streaming: the step model (one new frame in, the window's logits out).

Why it is exact. Every op of the network is either *per-frame* (backbone stages, 1x1 convs,
BN, fusion) or *forward-pairing* (a prime motion block: output at frame t depends on its input at
t and t+1; the window's last frame is paired with itself). Nothing looks backwards, so a frame's
value at any depth does not depend on where the window starts. It depends on where the window
*ends* only through the self-pairing: after ``p`` pairing ops, the last ``p`` frames of a window
are *provisional* (they saw the self-paired end) and every earlier frame is *final* (identical in
every window that contains it).

So with a new frame ``e`` the step model carries, at every op, the frames ``[e-p, e]``: the first
is newly final, the other ``p`` are provisional and recomputed. A per-frame op runs on those
``p + 1`` frames in one batched call. A pairing op prepends its cached input at frame ``e-p-1``
(the newly-final input of the previous step) and runs on ``p + 2`` frames, which yields frame
``e-p-1`` final (paired with the now-known ``e-p``) and ``p + 1`` provisional frames; its cache
becomes its input at ``e-p``. After the last op, the spatially pooled features of the final
frames go into a ring of ``T - P - 1`` vectors (``P`` = number of pairing ops); the logits come
from the mean of the ring plus the ``P + 1`` tail frames, which is exactly the clip head's
temporal mean. Work per frame: 1 + p frames per per-frame op and p + 2 pairs per pairing op,
independent of the window T.

State (all batch-first; zeros at the start of a stream):

* ``cache{i}``: [B, C_i, H_i, W_i], the input of pairing op i at frame ``e-p_i-1``;
* ``ring``: [B, T - P - 1, C], pooled last-stage features of the final frames of the window
  (omitted when ``T == P + 1``).

Start of a stream: from zero state, step n (0-based) returns the logits of a window whose
first ``T - 1 - n`` frames are whatever the zero caches produce; they are finite but meaningless.
From step ``T - 1`` on (T frames fed) the zero values have all left the window and the
logits equal the clip forward on the last T frames. Callers count frames (the backends keep
``state["frames"]``) and emit only when ``frames >= T``. A reset is a fresh zero state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

__all__ = ["FrameOp", "PairOp", "StreamPlan", "StepModel", "stream_plan"]


class FrameOp(nn.Module):
    """A per-frame op: x [N, C, H, W] -> [N, C', H', W'] (N = batch x frames)."""

    def __init__(self, fn: nn.Module | Callable[[Tensor], Tensor]):
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)


class PairOp(nn.Module):
    """A forward-pairing op: x [B, n, C, H, W] -> [B, n, C', H', W'].

    Output frame t depends on input frames t and t+1 only; the last frame pairs with itself.
    """

    def __init__(self, fn: nn.Module | Callable[[Tensor], Tensor]):
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)


@dataclass
class StreamPlan:
    """The network as a chain of per-frame and pairing ops plus a head.

    ops: FrameOp / PairOp in order, from the normalized frame to the last-stage features.
    pool: per-frame head part, [N, C, H, W] -> [N, D] (usually global average pooling).
    classifier: [B, D] -> [B, K], applied to the temporal mean of ``pool`` over the window.
    modules: modules that own the parameters (registered on the StepModel for export).
    """

    ops: Sequence[nn.Module]
    pool: Callable[[Tensor], Tensor]
    classifier: Callable[[Tensor], Tensor]
    modules: list[nn.Module] = field(default_factory=list)

    @property
    def depth(self) -> int:
        """P, the number of pairing ops (= provisional frames at the end of a window)."""
        return sum(isinstance(op, PairOp) for op in self.ops)

    def clip_forward(self, x: Tensor) -> Tensor:
        """Reference: the plan run on a whole clip, x [B, 3, T, H, W] -> logits [B, K]."""
        t = x.shape[2]
        h = x.transpose(1, 2)  # [B, T, C, H, W]
        for op in self.ops:
            h = op(h) if isinstance(op, PairOp) else op(h.flatten(0, 1)).unflatten(0, (-1, t))
        feats = self.pool(h.flatten(0, 1)).unflatten(0, (-1, t))
        return self.classifier(feats.mean(1))


def stream_plan(model: nn.Module) -> StreamPlan:
    """Decompose a model into a ``StreamPlan``.

    A model can describe itself with ``model.stream_plan() -> StreamPlan``; otherwise this adapts
    the HCML network of ``hcml.model`` (see ``_hcml_plan``).
    """
    if hasattr(model, "stream_plan"):
        return model.stream_plan()
    return _hcml_plan(model)


def _hcml_plan(model: nn.Module) -> StreamPlan:  # filled in against hcml.model's network
    raise TypeError(
        f"{type(model).__name__} cannot be decomposed into per-frame and pairing ops "
        "(no stream_plan() and not an hcml.model network)"
    )


class StepModel(nn.Module):
    """One streaming step: (frame [B, 3, H, W], *state) -> (logits [B, K], *new_state).

    ``StepModel(model, window)`` wraps an eval-mode network; ``state_names``/``state_shapes``
    describe the state (see the module docstring), ``init_state(batch)`` returns zeros.
    """

    def __init__(self, model: nn.Module, window: int, input_size: tuple[int, int] | None = None):
        super().__init__()
        plan = stream_plan(model)
        self.plan = plan
        self.window = int(window)
        self.depth = plan.depth
        self.ring_len = self.window - self.depth - 1
        if self.ring_len < 0:
            raise ValueError(
                f"window {window} is shorter than the streaming depth {self.depth} + 1 "
                f"(the network has {self.depth} pairing ops)"
            )
        self.ops = nn.ModuleList(plan.ops)
        head = [m for m in (plan.pool, plan.classifier) if isinstance(m, nn.Module)]
        self.owners = nn.ModuleList([*head, *plan.modules])
        if input_size is None:
            cfg = getattr(model, "default_cfg", {}) or {}
            input_size = tuple(cfg.get("input_size", (3, 112, 112))[-2:])
        self.input_size = tuple(int(v) for v in input_size)
        shapes = self._probe_shapes()
        self.state_names: list[str] = [f"cache{i}" for i in range(len(shapes) - 1)]
        self.state_shapes: list[tuple[int, ...]] = list(shapes[:-1])
        if self.ring_len > 0:
            self.state_names.append("ring")
            self.state_shapes.append((self.ring_len, shapes[-1][0]))

    @torch.no_grad()
    def _probe_shapes(self) -> list[tuple[int, ...]]:
        """Per-sample shapes of each pairing op's input, then the pooled feature size."""
        p = next(iter(self.parameters()), None)
        dev = p.device if p is not None else torch.device("cpu")
        h, w = self.input_size
        x = torch.zeros(1, 1, 3, h, w, device=dev)
        shapes = []
        for op in self.ops:
            if isinstance(op, PairOp):
                shapes.append(tuple(x.shape[2:]))
                x = op(x)
            else:
                x = op(x.flatten(0, 1)).unflatten(0, (1, x.shape[1]))
        shapes.append(tuple(self.plan.pool(x.flatten(0, 1)).shape[1:]))
        return shapes

    def init_state(self, batch: int = 1, device: torch.device | str | None = None) -> list[Tensor]:
        """Zero state for ``batch`` streams, in ``state_names`` order."""
        if device is None:
            p = next(iter(self.parameters()), None)
            device = p.device if p is not None else "cpu"
        return [torch.zeros(batch, *s, device=device) for s in self.state_shapes]

    def forward(self, frame: Tensor, *state: Tensor) -> tuple[Tensor, ...]:
        """frame [B, 3, H, W], state per ``state_names`` -> (logits [B, K], *new_state)."""
        caches = list(state[: self.depth])
        new_caches = []
        h = frame.unsqueeze(1)  # [B, p+1, C, H, W]: frames e-p .. e, the first newly final
        n = 1
        for op in self.ops:
            if isinstance(op, PairOp):
                cache = caches[len(new_caches)]
                new_caches.append(h[:, 0])
                h = op(torch.cat([cache.unsqueeze(1), h], 1))
                n += 1
            else:
                h = op(h.flatten(0, 1)).unflatten(0, (-1, n))
        tail = self.plan.pool(h.flatten(0, 1)).unflatten(0, (-1, n))  # [B, P+1, D]
        if self.ring_len > 0:
            feats = torch.cat([state[self.depth], tail], 1)  # [B, T, D]
            new_ring = feats[:, 1 : self.ring_len + 1]
            logits = self.plan.classifier(feats.mean(1))
            return (logits, *new_caches, new_ring)
        logits = self.plan.classifier(tail[:, -self.window :].mean(1))
        return (logits, *new_caches)
