"""Fine-tuning from a pretraining run: ``init_from: RUN`` (or a ``.pt``) in a recipe.

``load_pretrained`` loads every tensor of the training wrapper (backbone, motion blocks, fusion,
flow net, contrastive heads) except the classifier, which pretraining never trains.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["CLASSIFIER_PREFIXES", "load_pretrained"]

# State-dict names of the classifier (pretraining never trains it; fine-tuning starts it fresh).
CLASSIFIER_PREFIXES = ("model.head.",)


def _checkpoint_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / "model.pt"
    if not p.is_file():
        raise FileNotFoundError(f"init_from: {p} not found (a pretraining run folder or a .pt)")
    return p


def load_pretrained(module: torch.nn.Module, path: str | os.PathLike) -> dict[str, list[str]]:
    """Load a pretraining run's weights into a training wrapper; returns the report.

    Every entry of ``module.state_dict()`` except the classifier (``CLASSIFIER_PREFIXES``) must
    be in the checkpoint's ``wrapper_state`` with the same shape, else RecipeError naming them
    (the architectures differ). Report: {"loaded": names, "kept": classifier names left as
    initialised, "unused": checkpoint names the module has no use for}.
    """
    from hcml.training.recipe import RecipeError

    p = _checkpoint_path(path)
    state = torch.load(p, map_location="cpu", weights_only=True)
    if "wrapper_state" not in state:
        raise RecipeError(f"init_from: {p} holds no training wrapper state (use a run's model.pt)")
    src: dict[str, torch.Tensor] = state["wrapper_state"]
    own = module.state_dict()
    want = [k for k in own if not k.startswith(CLASSIFIER_PREFIXES)]
    missing = [k for k in want if k not in src]
    bad = [k for k in want if k in src and tuple(src[k].shape) != tuple(own[k].shape)]
    if missing or bad:
        parts = []
        if missing:
            parts.append(f"missing {missing[:4]}{' ...' if len(missing) > 4 else ''}")
        if bad:
            parts.append(f"shape differs for {bad[:4]}{' ...' if len(bad) > 4 else ''}")
        raise RecipeError(
            f"init_from: {p} does not fit this model ({'; '.join(parts)}): pretrain with the "
            "same model section"
        )
    with torch.no_grad():
        for k in want:
            own[k].copy_(src[k])
    return {
        "loaded": want,
        "kept": [k for k in own if k.startswith(CLASSIFIER_PREFIXES)],
        "unused": [k for k in src if k not in own],
    }
