"""Training recipes: a YAML file, validated into plain dicts with clear errors.

Schema (every key optional unless marked; unknown keys are errors naming the key)::

    _base_: PATH                   # inherit another recipe file (relative to this one; it may
                                   # have its own _base_): its mappings are merged key by key,
                                   # this file's values win, lists and scalars are replaced
    name: str                      # run name (default: the file's stem)
    seed: int = 0
    deterministic: bool = false    # torch.use_deterministic_algorithms, no cuDNN benchmark
    out: str                       # run folder (default runs/<name>); --out overrides
    init_from: PATH                # start the first phase from a pretraining run (its folder
                                   # or a .pt): every weight except the classifier's is loaded
                                   # (hcml.training.pretrain.load_pretrained)
    init_from_match: exact | shapes = exact   # shapes: load every tensor whose name and shape
                                   # match, classifier included, keep the rest fresh (a warm
                                   # start for another architecture of the same family)
    model:                         # required
      name: str                    # required, a hcml.model.list_models() entry
      frames: int = 16             # T the model is trained (and deployed) with
      input_size: int | [H, W]     # default: the model's
      options: {}                  # more create_model overrides (beta, levels, dropout, ...)
      train: {}                    # side-branch options (hcml.model.registry.TRAIN_DEFAULTS)
    data:
      train: synth | {synth: {seed, frames, size, length, cache, style, styles}} | PATH
                                   # default synth (seed = recipe seed); cache: render `length`
                                   # clips once, stored at this side (px) in $HCML_CACHE
                                   # (RenderedClips); style: classic | train | style-shift;
                                   # styles: {STYLE: clips, ...} mixes looks (one cache each,
                                   # concatenated; replaces length and style, needs cache)
             | {unlabelled: {path, fps, camera, min_crop}}   # unlabelled video (folder, list
                                   # file or videos.json) for flow / progressive stages only
      val: DATASET SPEC | null     # e.g. "synth:seed=999,clips=4" or a folder / CSV
      batch_size: int = 8          # per process
      workers: int = 0
      frame_step: int = 1
      sampling: random | uniform | start = random
      augment: {scale, hflip, brightness, contrast, reverse, lighting}   # lighting: a gain
                                   # ramp over the clip (ClipAugment)
    optim: {lr, weight_decay, warmup, grad_clip, amp, min_lr}   # defaults for every stage
    log_every: int = 10
    ckpt_every: int = 100
    stages:                        # required, run in order, each from the previous one's weights
      - type: flow | progressive | joint | supervised     # required
        steps: int                 # required (progressive: per level)
        levels: [int]              # progressive only (default: every level with a head)
        lambda_rec: float = 0.1    # joint
        gamma: float | {level: float} = 0.1   # joint
        label_smoothing: float = 0.0          # joint / supervised
        init: PATH                 # start from this checkpoint instead of the previous stage
        + any optim key (overrides optim for this stage)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["RecipeError", "load_recipe", "validate_recipe", "STAGE_TYPES", "OPTIM_DEFAULTS"]

STAGE_TYPES = ("flow", "progressive", "joint", "supervised")
OPTIM_DEFAULTS: dict[str, Any] = {
    "lr": 1e-3,
    "weight_decay": 1e-4,
    "warmup": 0,
    "grad_clip": 5.0,
    "amp": True,
    "min_lr": 0.0,
}
_NUM = (int, float)


class RecipeError(ValueError):
    """A recipe that does not validate; the message names the file and the bad key."""


def _check(section: dict, allowed: dict[str, Any], where: str) -> dict:
    if not isinstance(section, dict):
        raise RecipeError(f"{where}: expected a mapping, got {type(section).__name__}")
    for key, value in section.items():
        if key not in allowed:
            raise RecipeError(
                f"{where}: unknown key {key!r} (allowed: {', '.join(sorted(allowed))})"
            )
        kind = allowed[key]
        if kind is not None and not isinstance(value, kind):
            if kind == _NUM and isinstance(value, str):
                try:
                    section[key] = float(value)
                    continue
                except ValueError:
                    pass
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise RecipeError(f"{where}.{key}: expected {names}, got {value!r}")
        if kind == _NUM and isinstance(value, bool):
            raise RecipeError(f"{where}.{key}: expected a number, got {value!r}")
    return section


def validate_recipe(raw: Any, source: str = "<recipe>") -> dict[str, Any]:
    """Check ``raw`` (parsed YAML) against the schema and fill defaults; RecipeError if bad."""
    _check(
        raw,
        {
            "name": str,
            "seed": int,
            "deterministic": bool,
            "out": str,
            "model": dict,
            "data": dict,
            "optim": dict,
            "log_every": int,
            "ckpt_every": int,
            "stages": list,
            "description": str,
            "init_from": str,
            "init_from_match": str,
        },
        source,
    )
    r = dict(raw)
    if "model" not in r:
        raise RecipeError(f"{source}: missing required key 'model'")
    if "stages" not in r or not r["stages"]:
        raise RecipeError(f"{source}: missing required key 'stages' (a non-empty list)")
    r.setdefault("name", Path(source).stem)
    r.setdefault("seed", 0)
    r.setdefault("deterministic", False)
    r.setdefault("log_every", 10)
    r.setdefault("ckpt_every", 100)
    if r.get("init_from_match", "exact") not in ("exact", "shapes"):
        raise RecipeError(
            f"{source}: init_from_match must be exact or shapes, got {r['init_from_match']!r}"
        )
    if "init_from_match" in r and "init_from" not in r:
        raise RecipeError(f"{source}: init_from_match without init_from")

    model = _check(
        dict(r["model"]),
        {"name": str, "frames": int, "input_size": (int, list), "options": dict, "train": dict},
        f"{source}: model",
    )
    if "name" not in model:
        raise RecipeError(f"{source}: model: missing required key 'name'")
    from hcml.model.registry import is_model, list_models

    if not is_model(model["name"]):
        raise RecipeError(
            f"{source}: model.name: unknown model {model['name']!r} "
            f"(known: {', '.join(list_models())})"
        )
    model.setdefault("frames", 16)
    model.setdefault("options", {})
    model.setdefault("train", {})
    r["model"] = model

    data = _check(
        dict(r.get("data", {})),
        {
            "train": (str, dict),
            "val": (str, type(None)),
            "batch_size": int,
            "workers": int,
            "frame_step": int,
            "sampling": str,
            "augment": dict,
        },
        f"{source}: data",
    )
    data.setdefault("train", "synth")
    data.setdefault("val", None)
    data.setdefault("batch_size", 8)
    data.setdefault("workers", 0)
    data.setdefault("frame_step", 1)
    data.setdefault("sampling", "random")
    if data["sampling"] not in ("random", "uniform", "start"):
        raise RecipeError(
            f"{source}: data.sampling: {data['sampling']!r} is not random, uniform or start"
        )
    data["augment"] = _check(
        dict(data.get("augment", {})),
        {
            "scale": _NUM,
            "hflip": _NUM,
            "brightness": _NUM,
            "contrast": _NUM,
            "reverse": _NUM,
            "lighting": _NUM,
        },
        f"{source}: data.augment",
    )
    if isinstance(data["train"], dict) and "unlabelled" in data["train"]:
        _check(data["train"], {"unlabelled": dict}, f"{source}: data.train")
        un = _check(
            data["train"]["unlabelled"],
            {"path": str, "fps": _NUM, "camera": _NUM, "min_crop": _NUM},
            f"{source}: data.train.unlabelled",
        )
        if "path" not in un:
            raise RecipeError(f"{source}: data.train.unlabelled: missing required key 'path'")
        if not 0.0 <= float(un.get("camera", 0.0)) <= 1.0:
            raise RecipeError(f"{source}: data.train.unlabelled.camera: a share in [0, 1]")
    elif isinstance(data["train"], dict):
        _check(data["train"], {"synth": dict}, f"{source}: data.train")
        _check(
            data["train"].get("synth", {}),
            {
                "seed": int,
                "frames": int,
                "size": int,
                "length": int,
                "cache": int,
                "style": str,
                "styles": dict,
            },
            f"{source}: data.train.synth",
        )
        syn = data["train"].get("synth", {})
        from hcml.data.synth import get_style

        for name in [syn.get("style", "classic"), *syn.get("styles", {})]:
            try:
                get_style(name)
            except ValueError as e:
                raise RecipeError(f"{source}: data.train.synth: {e}") from None
        if "styles" in syn:
            if "length" in syn or "style" in syn or "cache" not in syn:
                raise RecipeError(
                    f"{source}: data.train.synth.styles ({{STYLE: clips}}) needs cache and "
                    "replaces length and style"
                )
            bad = [k for k, v in syn["styles"].items() if not isinstance(v, int) or v < 1]
            if bad or not syn["styles"]:
                raise RecipeError(
                    f"{source}: data.train.synth.styles: a clip count >= 1 a style ({bad})"
                )
        if "cache" in syn and "length" not in syn and "styles" not in syn:
            raise RecipeError(
                f"{source}: data.train.synth.cache needs a finite length (clips to render once)"
            )
    r["data"] = data

    optim_keys = {
        "lr": _NUM,
        "weight_decay": _NUM,
        "warmup": int,
        "grad_clip": _NUM,
        "amp": bool,
        "min_lr": _NUM,
    }
    optim = dict(OPTIM_DEFAULTS)
    optim.update(_check(dict(r.get("optim", {})), optim_keys, f"{source}: optim"))
    r["optim"] = optim

    stages = []
    for i, st in enumerate(r["stages"]):
        where = f"{source}: stages[{i}]"
        st = _check(
            dict(st) if isinstance(st, dict) else st,
            {
                "type": str,
                "steps": int,
                "levels": list,
                "lambda_rec": _NUM,
                "gamma": (int, float, dict),
                "label_smoothing": _NUM,
                "init": str,
                "name": str,
                **optim_keys,
            },
            where,
        )
        if "type" not in st:
            raise RecipeError(f"{where}: missing required key 'type' ({', '.join(STAGE_TYPES)})")
        if st["type"] not in STAGE_TYPES:
            raise RecipeError(f"{where}.type: {st['type']!r} is not one of {STAGE_TYPES}")
        if "steps" not in st or st["steps"] < 1:
            raise RecipeError(f"{where}: missing or non-positive required key 'steps'")
        full = dict(optim)
        full.update({k: v for k, v in st.items() if k in optim_keys})
        full.update({k: v for k, v in st.items() if k not in optim_keys})
        full.setdefault("lambda_rec", 0.1)
        full.setdefault("gamma", 0.1)
        full.setdefault("label_smoothing", 0.0)
        stages.append(full)
    r["stages"] = stages
    unlabelled = isinstance(data["train"], dict) and "unlabelled" in data["train"]
    if unlabelled:
        for i, st in enumerate(stages):
            if st["type"] not in ("flow", "progressive"):
                raise RecipeError(
                    f"{source}: stages[{i}]: a {st['type']} stage needs labels; unlabelled "
                    "data trains flow and progressive stages only"
                )
    return r


def _merged(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``: mappings merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def _read_raw(path: Path, chain: tuple[Path, ...] = ()) -> Any:
    """The YAML of ``path`` with its ``_base_`` chain merged in (MMAction2-style inheritance)."""
    import yaml

    if not path.is_file():
        raise RecipeError(
            f"recipe not found: {path}" + (f" (the _base_ of {chain[-1]})" if chain else "")
        )
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(raw, dict) or "_base_" not in raw:
        return raw
    raw = dict(raw)
    base = raw.pop("_base_")
    if not isinstance(base, str) or not base:
        raise RecipeError(f"{path}: _base_: expected a recipe file path, got {base!r}")
    base_path = (path.parent / base).resolve()
    if base_path in chain or base_path == path.resolve():
        raise RecipeError(f"{path}: _base_ {base} inherits from itself (a cycle)")
    base_raw = _read_raw(base_path, (*chain, path.resolve()))
    if not isinstance(base_raw, dict):
        raise RecipeError(f"{base_path}: expected a mapping (the _base_ of {path})")
    return _merged(base_raw, raw)


def load_recipe(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a recipe YAML file (``_base_`` chains merged first)."""
    path = Path(path)
    raw = _read_raw(path)
    recipe = validate_recipe(raw, str(path))
    if "name" not in (raw or {}):
        recipe["name"] = path.stem
    return recipe
