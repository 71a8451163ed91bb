"""Model registry: ``@register_model`` builders, default configs, ``create_model``, ``list_models``.

Every registered name maps to a function ``fn(**overrides) -> nn.Module``; the model carries its
resolved config as ``model.default_cfg`` (a plain, JSON-able dict) so that it can travel into
the model card and into checkpoints (``hcml.model.checkpoint``), from which ``create_model(name,
**cfg)`` rebuilds the same network.

Names: ``hcml_{tiny,resnet18,resnet50}`` and, on the same backbones and input, the ablation
baselines ``tsn_*`` (appearance only: per-frame average, no motion blocks), ``tsm_*`` (temporal
shift), ``fdiff_*`` (frame-difference input), ``mscv_*`` (one cost-volume block at one level,
MotionSqueeze-like) and ``hcml_nocl_*`` (the HCML network, trained without contrastive loss:
same architecture, ``cfg["train"]["contrastive"] = False``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from torch import nn

__all__ = [
    "register_model",
    "create_model",
    "list_models",
    "default_cfg",
    "is_model",
    "BACKBONE_DEFAULTS",
]

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_CFGS: dict[str, dict[str, Any]] = {}

MEAN = (0.45, 0.45, 0.45)
STD = (0.225, 0.225, 0.225)

# Per-backbone defaults: input size, motion levels, channel reduction, head dropout.
BACKBONE_DEFAULTS: dict[str, dict[str, Any]] = {
    "tiny": {"input_size": (3, 112, 112), "levels": [1, 2, 3], "beta": 4, "dropout": 0.0},
    "resnet18": {"input_size": (3, 224, 224), "levels": [1, 2, 3], "beta": 4, "dropout": 0.5},
    "resnet50": {"input_size": (3, 224, 224), "levels": [1, 2, 3], "beta": 8, "dropout": 0.5},
}

# Training-only side branches and losses (read by ``HCMLTrainingWrapper`` and the trainer).
TRAIN_DEFAULTS: dict[str, Any] = {
    "contrastive": True,  # use L_contrastive (False: the "HCML without contrastive" ablation)
    "flow": True,  # train the P^0 flow net with L_rec
    "flow_growth": 8,  # channels added by each of the flow net's densely connected convs
    "flow_scale": 2,  # the flow net runs on frames average-pooled by this factor
    "zeta": 0.5,  # L_rec = photometric + zeta * smoothness
    "charbonnier_alpha": 0.45,
    "charbonnier_eps": 1e-3,
    # L_rec options (hcml.model.flow.FlowLossConfig; 0 / 1 / False: the plain L_rec)
    "flow_census": 0.0,  # weight of the census term
    "flow_ssim": 0.0,  # weight of the SSIM term
    "flow_edge": 0.0,  # edge-aware smoothness: weight exp(-flow_edge * |grad I|)
    "flow_scales": 1,  # photometric terms at this many scales
    "flow_occlusion": False,  # forward-backward occlusion mask (runs the flow net twice)
    "flow_dilation": False,  # dilated flow-net convs (1, 2, 4, 8): same weights, wider view
    "flow_corr": 0,  # > 0: the flow net also reads a local cost volume of radius flow_corr
    "p0": "features",  # P^0 for the contrastive heads: "features" (flow net's) or "flow"
    "deltas": 2,  # D: predict P^{l-1}_{t+delta} for delta = 1..D
    "samples": 16,  # N spatial positions sampled per video
    "tau": 0.1,  # InfoNCE temperature
    "contrastive_hidden": 0,  # W1 width (0: max(C_l, C_{l-1}))
    "contrastive_input": "both",  # the head reads [P^l_t, P^{l-1}_t] ("both") or P^l_t ("high")
}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register ``fn`` under ``fn.__name__`` for ``create_model``."""
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"model {name!r} registered twice")
    _MODELS[name] = fn
    return fn


def list_models(pattern: str = "") -> list[str]:
    """Registered names containing ``pattern``, sorted."""
    return sorted(n for n in _MODELS if pattern in n)


def is_model(name: str) -> bool:
    return name in _MODELS


def default_cfg(name: str) -> dict[str, Any]:
    """A copy of ``name``'s default config (before overrides)."""
    if name not in _CFGS:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    return copy.deepcopy(_CFGS[name])


def create_model(name: str, num_classes: int = 12, frames: int = 16, **overrides: Any) -> nn.Module:
    """Build a registered model with random init.

    name: a ``list_models()`` entry. num_classes, frames: K and the clip length T the config
    records (the network itself accepts any T). overrides: any key of ``default_cfg(name)``
    (``input_size``, ``levels``, ``beta``, ``max_displacement``, ``stride``, ``dropout``,
    ``train`` (merged key by key), ...). Unknown keys raise ``TypeError``.
    """
    if name not in _MODELS:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    return _MODELS[name](num_classes=num_classes, frames=frames, **overrides)


def _resolve(name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    cfg = default_cfg(name)
    for key, value in overrides.items():
        if key not in cfg:
            raise TypeError(
                f"create_model({name!r}): unknown option {key!r}; options: {', '.join(cfg)}"
            )
        if key == "name" and value != name:
            raise ValueError(f"cfg name {value!r} does not match the model {name!r}")
        if key == "train":
            unknown = set(value) - set(cfg["train"])
            if unknown:
                raise TypeError(f"create_model({name!r}): unknown train option(s) {unknown}")
            cfg["train"].update(value)
        else:
            cfg[key] = value
    cfg["input_size"] = tuple(int(v) for v in cfg["input_size"])
    if len(cfg["input_size"]) == 2:
        cfg["input_size"] = (3, *cfg["input_size"])
    cfg["mean"] = tuple(float(v) for v in cfg["mean"])
    cfg["std"] = tuple(float(v) for v in cfg["std"])
    cfg["levels"] = sorted(int(v) for v in cfg["levels"])
    cfg["num_classes"] = int(cfg["num_classes"])
    cfg["frames"] = int(cfg["frames"])
    return cfg


def _build(name: str, overrides: dict[str, Any]) -> nn.Module:
    from hcml.model.net import HCMLNet

    return HCMLNet(_resolve(name, overrides))


def _define(name: str, backbone: str, variant: str, **extra: Any) -> None:
    """Record the default config of ``name`` and register its builder."""
    bb = BACKBONE_DEFAULTS[backbone]
    cfg: dict[str, Any] = {
        "name": name,
        "variant": variant,
        "backbone": backbone,
        "num_classes": 12,
        "frames": 16,
        "input_size": bb["input_size"],
        "mean": MEAN,
        "std": STD,
        "levels": list(bb["levels"]),
        "beta": bb["beta"],
        "max_displacement": 6,
        "stride": 2,
        "dropout": bb["dropout"],
        "input_mode": "rgb",
        "temporal_shift": False,
        "shift_div": 8,
        "zero_init_fusion": False,
        "cost_volume_impl": "auto",
        "moments_window": 0,  # half-width in input pixels; > 0 adds MotionMoments to every PMB
        "train": dict(TRAIN_DEFAULTS),
    }
    train = extra.pop("train", {})
    cfg.update(extra)
    cfg["train"].update(train)
    _CFGS[name] = cfg

    def builder(**overrides: Any) -> nn.Module:
        return _build(name, overrides)

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = f"{name}: {variant} on the {backbone} backbone (see hcml.model.registry)."
    register_model(builder)


_NO_SIDE = {"contrastive": False, "flow": False}
for _bb in BACKBONE_DEFAULTS:
    # The HCML network (``hcml_tiny`` is the project default).
    _define(f"hcml_{_bb}", _bb, "hcml")
    # Ablation baselines: same backbone, same input, same head.
    _define(f"tsn_{_bb}", _bb, "tsn", levels=[], train=_NO_SIDE)
    _define(f"tsm_{_bb}", _bb, "tsm", levels=[], temporal_shift=True, train=_NO_SIDE)
    _define(f"fdiff_{_bb}", _bb, "fdiff", levels=[], input_mode="diff", train=_NO_SIDE)
    _define(f"mscv_{_bb}", _bb, "mscv", levels=[1], train=_NO_SIDE)
    _define(f"hcml_nocl_{_bb}", _bb, "hcml_nocl", train={"contrastive": False})

hcml_tiny = _MODELS["hcml_tiny"]
hcml_resnet18 = _MODELS["hcml_resnet18"]
hcml_resnet50 = _MODELS["hcml_resnet50"]
