"""Checkpoints: one file with the model's registry name, config and weights (no pickled code).

Format ``hcml-checkpoint/1``, a plain dict saved with ``torch.save``::

    {"format": "hcml-checkpoint/1", "model": "hcml_tiny", "cfg": model.default_cfg,
     "state_dict": {name: tensor}, **extra}

``extra`` holds anything else the trainer wants (epoch, metrics, recipe, labels, optimizer
state, side-branch weights, ...) as long as it is made of tensors and plain Python values, so
``load_model`` can read it with ``torch.load(weights_only=True)`` and never unpickles arbitrary
objects. Writes are atomic (a temporary file beside the target, then ``os.replace``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "FORMAT",
    "CheckpointError",
    "atomic_save",
    "save_checkpoint",
    "load_checkpoint",
    "load_model",
]

FORMAT = "hcml-checkpoint/1"
_PLAIN = (str, int, float, bool, type(None), Tensor, torch.Size, torch.dtype)


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit its model; the message names the cause."""


def _check_plain(value: Any, where: str) -> None:
    if isinstance(value, _PLAIN):
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str | int):
                raise TypeError(f"checkpoint field {where}: key {k!r} is not a str or int")
            _check_plain(v, f"{where}.{k}")
        return
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
        return
    raise TypeError(
        f"checkpoint field {where}: {type(value).__name__} cannot be stored (only tensors, "
        "numbers, strings, None and dicts/lists/tuples of them load with weights_only=True)"
    )


def save_checkpoint(path: str | os.PathLike, model: nn.Module, **extra: Any) -> Path:
    """Write ``model`` (an ``HCMLNet``; a training wrapper saves its ``deployable()``) to ``path``.

    extra: more top-level fields (plain values and tensors only, else ``TypeError``). Returns
    the path. The file appears complete or not at all.
    """
    if hasattr(model, "deployable"):
        model = model.deployable()
    cfg = getattr(model, "default_cfg", None)
    if not isinstance(cfg, dict) or "name" not in cfg:
        raise TypeError(f"{type(model).__name__} has no default_cfg with a registry name")
    reserved = {"format", "model", "cfg", "state_dict"} & set(extra)
    if reserved:
        raise ValueError(f"extra fields {sorted(reserved)} are reserved")
    payload: dict[str, Any] = {
        "format": FORMAT,
        "model": cfg["name"],
        "cfg": cfg,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **extra,
    }
    _check_plain(payload, "checkpoint")
    return atomic_save(path, payload)


def atomic_save(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a checkpoint file (weights_only); returns the dict (CPU tensors)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, not a torch file, forbidden pickled object, ...
        raise CheckpointError(
            f"{path}: not a readable hcml checkpoint (corrupt, truncated, or holding pickled "
            f"objects): {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        ) from e
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(f"{path}: not an {FORMAT} file (format: {got!r})")
    for key, kind in (("model", str), ("cfg", dict), ("state_dict", dict)):
        if not isinstance(data.get(key), kind):
            raise CheckpointError(f"{path}: field {key!r} missing or not a {kind.__name__}")
    return data


def load_model(path: str | os.PathLike) -> nn.Module:
    """Rebuild the network a checkpoint describes and load its weights; eval mode, CPU.

    Raises FileNotFoundError (no file), CheckpointError (corrupt file, unknown model name,
    config the registry does not accept, missing/unexpected parameters, shape mismatch naming
    the parameter).
    """
    from hcml.model.registry import create_model, is_model, list_models

    path = Path(path)
    data = load_checkpoint(path)
    name = data["model"]
    if not is_model(name):
        raise CheckpointError(
            f"{path}: unknown model name {name!r} (known: {', '.join(list_models())})"
        )
    cfg = {k: v for k, v in data["cfg"].items() if k != "name"}
    try:
        model = create_model(name, **cfg)
    except (TypeError, ValueError, KeyError) as e:
        raise CheckpointError(f"{path}: config does not build {name!r}: {e}") from e
    expected = model.state_dict()
    state = data["state_dict"]
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: state_dict does not match {name!r}: missing {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
            f"{' ...' if len(unexpected) > 5 else ''}"
        )
    for k, v in expected.items():
        if not isinstance(state[k], Tensor) or state[k].shape != v.shape:
            got = tuple(state[k].shape) if isinstance(state[k], Tensor) else type(state[k])
            raise CheckpointError(
                f"{path}: parameter {k!r} has shape {got} in the checkpoint but {name!r} "
                f"expects {tuple(v.shape)}"
            )
    model.load_state_dict(state, strict=True)
    return model.eval()
