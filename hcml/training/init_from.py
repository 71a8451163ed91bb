"""Fine-tuning from a pretraining run: ``init_from: RUN`` (or a ``.pt``) in a recipe.

``load_pretrained`` loads every tensor of the training wrapper (backbone, motion blocks, fusion,
flow net, contrastive heads) except the classifier, which pretraining never trains.

``load_matching`` (``init_from_match: shapes``) is the warm start across architectures: every
tensor whose name and shape the checkpoint shares with this model is loaded, the classifier
included; the rest (e.g. motion blocks of another width, or at other levels) keep their fresh
initialisation. Used to train a cheaper variant from the shipped model's backbone, head and flow
net (training/tiny_fast.yaml).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["CLASSIFIER_PREFIXES", "load_matching", "load_pretrained"]

# State-dict names of the classifier (pretraining never trains it; fine-tuning starts it fresh).
CLASSIFIER_PREFIXES = ("model.head.",)


def _checkpoint_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    if p.is_dir():
        p = p / "model.pt"
    if not p.is_file():
        raise FileNotFoundError(f"init_from: {p} not found (a pretraining run folder or a .pt)")
    return p


def _wrapper_state(p: Path) -> dict[str, torch.Tensor]:
    from hcml.training.recipe import RecipeError

    state = torch.load(p, map_location="cpu", weights_only=True)
    if "wrapper_state" not in state:
        raise RecipeError(f"init_from: {p} holds no training wrapper state (use a run's model.pt)")
    return state["wrapper_state"]


def load_matching(module: torch.nn.Module, path: str | os.PathLike) -> dict[str, list[str]]:
    """Load every tensor whose name and shape match (classifier included); returns the report.

    Report: {"loaded": names, "kept": this model's names left as initialised (absent from the
    checkpoint or of another shape), "unused": checkpoint names not loaded}. RecipeError when
    nothing matches (not a checkpoint of this model family).
    """
    from hcml.training.recipe import RecipeError

    p = _checkpoint_path(path)
    src = _wrapper_state(p)
    own = module.state_dict()
    loaded = [k for k in own if k in src and tuple(src[k].shape) == tuple(own[k].shape)]
    if not loaded:
        raise RecipeError(f"init_from: no tensor of {p} fits this model (another model family?)")
    with torch.no_grad():
        for k in loaded:
            own[k].copy_(src[k])
    done = set(loaded)
    return {
        "loaded": loaded,
        "kept": [k for k in own if k not in done],
        "unused": [k for k in src if k not in done],
    }


def load_pretrained(module: torch.nn.Module, path: str | os.PathLike) -> dict[str, list[str]]:
    """Load a pretraining run's weights into a training wrapper; returns the report.

    Every entry of ``module.state_dict()`` except the classifier (``CLASSIFIER_PREFIXES``) must
    be in the checkpoint's ``wrapper_state`` with the same shape, else RecipeError naming them
    (the architectures differ). Report: {"loaded": names, "kept": classifier names left as
    initialised, "unused": checkpoint names the module has no use for}.
    """
    from hcml.training.recipe import RecipeError

    p = _checkpoint_path(path)
    src = _wrapper_state(p)
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
