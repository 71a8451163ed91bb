"""The training schedules as stage objects (``shared/DESIGN.md``, "Schedules").

A stage decides which parameters train (``setup``: sets ``requires_grad``, returns them), which
modules run in train mode (``train_mode``: frozen modules stay in eval so their BatchNorm
statistics do not move either) and the loss of a batch (``loss``). The trainer is generic over
this interface, so tests drive it with a stand-in module.

* ``FlowStage``: the P^0 flow net with L_rec only.
* ``ProgressiveStage(level)``: backbone stage ``level``, its motion block and contrastive head
  train with L_contrastive^level; everything else (below: frozen, above: unused) is fixed.
* ``JointStage``: everything, L = L_cls + lambda L_rec + sum_l gamma_l L_contrastive^l.
* ``SupervisedStage``: the deployable network with L_cls only (baselines, ablations).
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "Stage",
    "FlowStage",
    "ProgressiveStage",
    "JointStage",
    "SupervisedStage",
    "make_stage",
]


class Stage(Protocol):
    name: str
    classifies: bool

    def setup(self, module: nn.Module) -> list[nn.Parameter]: ...

    def train_mode(self, module: nn.Module) -> None: ...

    def loss(
        self, model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator
    ) -> tuple[Tensor, dict[str, float]]: ...


def _only(module: nn.Module, trainable: list[nn.Module]) -> list[nn.Parameter]:
    for p in module.parameters():
        p.requires_grad_(False)
    params: list[nn.Parameter] = []
    for m in trainable:
        for p in m.parameters():
            p.requires_grad_(True)
            params.append(p)
    if not params:
        raise ValueError("this stage has nothing to train (is the side branch disabled?)")
    return params


def _inner(module: nn.Module) -> nn.Module:
    return module.module if hasattr(module, "module") else module


class FlowStage:
    """Train the flow net (P^0) alone with L_rec = photometric + zeta * smoothness."""

    name = "flow"
    classifies = False

    def setup(self, module: nn.Module) -> list[nn.Parameter]:
        if getattr(module, "flow_net", None) is None:
            raise ValueError("stage 'flow': the model has no flow net (train.flow is off)")
        return _only(module, [module.flow_net])

    def train_mode(self, module: nn.Module) -> None:
        module.eval()
        module.flow_net.train()

    def loss(self, model, x, y, generator):
        # The flow net alone: the rest of the network is frozen and its output unused.
        out = model(x, generator=generator, contrastive_levels=[], flow_only=True)
        rec = out["rec"]
        return rec["rec"], {
            "rec": float(rec["rec"].detach()),
            "photometric": float(rec["photometric"].detach()),
            "smoothness": float(rec["smoothness"].detach()),
        }


class ProgressiveStage:
    """Level ``level`` with L_contrastive^level; every other parameter frozen."""

    classifies = False

    def __init__(self, level: int):
        self.level = int(level)
        self.name = f"progressive-l{self.level}"

    def _trainable(self, module: nn.Module) -> list[nn.Module]:
        key = str(self.level)
        if key not in module.heads:
            raise ValueError(
                f"stage 'progressive': level {self.level} has no contrastive head "
                f"(levels with heads: {list(module.heads)})"
            )
        net = module.model
        # L_contrastive^l sees P^l only: the fusion g^l gets no gradient here, and leaving it
        # trainable would make DDP wait for it (unused parameters).
        return [net.backbone.stages()[self.level], net.motion[key].pmb, module.heads[key]]

    def setup(self, module: nn.Module) -> list[nn.Parameter]:
        return _only(module, self._trainable(module))

    def train_mode(self, module: nn.Module) -> None:
        module.eval()
        for m in self._trainable(module):
            m.train()

    def loss(self, model, x, y, generator):
        out = model(x, generator=generator, contrastive_levels=[self.level])
        loss = out["contrastive"][self.level]
        return loss, {f"contrastive_{self.level}": float(loss.detach())}


class JointStage:
    """Everything: L_cls + lambda_rec L_rec + sum_l gamma_l L_contrastive^l."""

    name = "joint"
    classifies = True

    def __init__(self, lambda_rec: float = 0.1, gamma: float | dict = 0.1, smoothing: float = 0.0):
        self.lambda_rec, self.gamma, self.smoothing = float(lambda_rec), gamma, float(smoothing)

    def _gamma(self, level: int) -> float:
        if isinstance(self.gamma, dict):
            return float(self.gamma.get(level, self.gamma.get(str(level), 0.0)))
        return float(self.gamma)

    def setup(self, module: nn.Module) -> list[nn.Parameter]:
        return _only(module, [module])

    def train_mode(self, module: nn.Module) -> None:
        module.train()

    def loss(self, model, x, y, generator):
        levels = [lv for lv in _levels(model) if self._gamma(lv) > 0]
        out = model(x, generator=generator, contrastive_levels=levels)
        cls = F.cross_entropy(out["logits"], y, label_smoothing=self.smoothing)
        loss = cls
        logs: dict[str, Any] = {"cls": float(cls.detach()), "acc": _acc(out["logits"], y)}
        if "rec" in out and self.lambda_rec > 0:
            loss = loss + self.lambda_rec * out["rec"]["rec"]
            logs["rec"] = float(out["rec"]["rec"].detach())
        for lv, c in out["contrastive"].items():
            loss = loss + self._gamma(lv) * c
            logs[f"contrastive_{lv}"] = float(c.detach())
        return loss, logs


class SupervisedStage:
    """The deployable network with cross-entropy only (side branches frozen and unused)."""

    name = "supervised"
    classifies = True

    def __init__(self, smoothing: float = 0.0):
        self.smoothing = float(smoothing)

    def setup(self, module: nn.Module) -> list[nn.Parameter]:
        return _only(module, [module.model if hasattr(module, "model") else module])

    def train_mode(self, module: nn.Module) -> None:
        module.train()

    def loss(self, model, x, y, generator):
        inner = _inner(model)
        if hasattr(inner, "heads"):
            out = model(x, generator=generator, contrastive_levels=[])
            logits = out["logits"]
        else:
            logits = model(x)
        cls = F.cross_entropy(logits, y, label_smoothing=self.smoothing)
        return cls, {"cls": float(cls.detach()), "acc": _acc(logits, y)}


def _levels(model: nn.Module) -> list[int]:
    inner = _inner(model)
    return [int(k) for k in getattr(inner, "heads", {})]


def _acc(logits: Tensor, y: Tensor) -> float:
    return float((logits.argmax(1) == y).float().mean())


def make_stage(spec: dict[str, Any], level: int | None = None) -> Stage:
    """A stage object from a validated recipe stage dict (``level`` for progressive)."""
    kind = spec["type"]
    if kind == "flow":
        return FlowStage()
    if kind == "progressive":
        assert level is not None
        return ProgressiveStage(level)
    if kind == "joint":
        return JointStage(spec["lambda_rec"], spec["gamma"], spec["label_smoothing"])
    if kind == "supervised":
        return SupervisedStage(spec["label_smoothing"])
    raise ValueError(f"unknown stage type {kind!r}")
