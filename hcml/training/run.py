"""Run a recipe: build the model and data, expand the stages into phases, chain them.

Phases: ``flow`` -> one ``progressive-l<l>`` a level -> ``joint`` (or whatever the recipe lists),
numbered ``NN-<name>`` under the run folder. Each phase starts from the previous phase's
``final.pt`` (the whole training wrapper: network + flow net + heads), writes ``last.pt`` while
it runs and ``final.pt`` (an ``hcml-checkpoint/1``, loadable with ``load_model``) at its end.
The run's ``model.pt`` is a copy of the last phase's ``final.pt``. With ``resume`` the finished
phases are skipped and the unfinished one continues from its ``last.pt``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hcml.training.recipe import RecipeError

__all__ = ["build_module", "build_datasets", "check_values", "expand_phases", "run_recipe"]

# (key, lowest allowed value, whether the bound itself is allowed) for every stage's optimizer
_STAGE_BOUNDS = (
    ("lr", 0.0, False),
    ("min_lr", 0.0, True),
    ("weight_decay", 0.0, True),
    ("warmup", 0, True),
    ("grad_clip", 0.0, True),
)


def check_values(recipe: dict[str, Any]) -> None:
    """RecipeError naming the first out-of-range value (a negative lr, batch size 0, ...).

    ``load_recipe`` checks keys and types; this checks what a run needs of the values, before
    anything is built or written, so a bad value costs one line and leaves no run folder.
    """
    bs = recipe["data"].get("batch_size", 1)
    if not isinstance(bs, int) or bs < 1:
        raise RecipeError(f"data.batch_size must be a positive integer, got {bs!r}")
    for i, spec in enumerate(recipe["stages"]):
        for key, low, inclusive in _STAGE_BOUNDS:
            v = spec.get(key)
            if v is None:
                continue
            if not (v >= low if inclusive else v > low) or v != v:
                rel = ">=" if inclusive else ">"
                raise RecipeError(f"stages[{i}].{key} must be {rel} {low}, got {v!r}")
        if spec.get("min_lr", 0.0) > spec["lr"]:
            raise RecipeError(
                f"stages[{i}].min_lr {spec['min_lr']!r} is above its lr {spec['lr']!r}"
            )
        init = spec.get("init")
        if init and not Path(init).is_file():
            raise RecipeError(f"stages[{i}].init: checkpoint not found: {init}")


def _holds_a_run(out: Path) -> bool:
    """Whether ``out`` holds a run worth keeping: any checkpoint (``*.pt``) at its top or in a
    phase folder. A folder with only ``recipe.json`` and logs is a run that failed before its
    first checkpoint; rerunning the same command starts it afresh (see ``_clear_failed_start``).
    """
    return any(out.glob("*.pt")) or any(out.glob("*/*.pt"))


def _clear_failed_start(out: Path) -> None:
    """Remove what a failed start wrote (recipe.json, ``NN-*`` phase folders without a
    checkpoint); leave anything else. Raises FileExistsError when other files remain."""
    import re

    for p in out.iterdir():
        if p.name == "recipe.json" and p.is_file():
            p.unlink()
        elif p.is_dir() and re.fullmatch(r"\d\d-[\w.-]+", p.name):
            shutil.rmtree(p)
    left = sorted(p.name for p in out.iterdir())
    if left:
        raise FileExistsError(
            f"{out} holds files that are not a run ({', '.join(left[:3])}): choose another --out"
        )


def build_module(recipe: dict[str, Any]) -> torch.nn.Module:
    """The training wrapper (``HCMLTrainingWrapper``) the recipe's model section describes."""
    from hcml.model import HCMLTrainingWrapper, create_model

    m = recipe["model"]
    overrides: dict[str, Any] = dict(m["options"])
    if "input_size" in m:
        s = m["input_size"]
        overrides["input_size"] = (3, s, s) if isinstance(s, int) else (3, *s)
    if m["train"]:
        overrides["train"] = dict(m["train"])
    try:
        net = create_model(m["name"], frames=m["frames"], **overrides)
    except (TypeError, ValueError) as e:
        raise RecipeError(f"model: {e}") from e
    return HCMLTrainingWrapper(net)


class MixedClips:
    """Sources one after another (items of the first, then of the second, ...); same labels."""

    def __init__(self, sources: list):
        self.sources = sources
        self.labels = list(sources[0].labels)
        self.offsets = np.cumsum([0] + [len(s) for s in sources])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _where(self, index: int) -> tuple[Any, int]:
        k = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return self.sources[k], index - int(self.offsets[k])

    def label_of(self, index: int) -> int:
        src, i = self._where(index)
        return src.label_of(i)

    def load(self, index: int, rng: np.random.Generator | None = None):
        """Clip ``index``: (uint8 [T, S, S, 3], label) from the source that holds it."""
        src, i = self._where(index)
        return src.load(i, rng)


def build_datasets(recipe: dict[str, Any], cfg: dict[str, Any], progress: bool = True):
    """(train ClipDataset, its length or None, val ClipDataset or None) for model config cfg.

    progress: draw the bar of a synthetic cache's one-time render (``RenderedClips``).
    """
    from hcml.data.datasets import ClipDataset, RenderedClips, SyntheticClips, open_dataset
    from hcml.data.transforms import ClipAugment

    d = recipe["data"]
    size = tuple(cfg["input_size"][1:])
    frames = int(cfg["frames"])
    train = d["train"]
    if isinstance(train, dict) and "unlabelled" in train:
        from hcml.data.unlabelled import unlabelled_dataset

        return unlabelled_dataset(train["unlabelled"], recipe, cfg), None, None
    if train == "synth" or isinstance(train, dict):
        syn = dict(train.get("synth", {})) if isinstance(train, dict) else {}
        span = (frames - 1) * d["frame_step"] + 1
        seed, n_frames, side = (
            syn.get("seed", recipe["seed"]),
            syn.get("frames", span),
            syn.get("size", size[0]),
        )
        style = syn.get("style", "classic")
        if "styles" in syn:
            source = MixedClips(
                [
                    RenderedClips(
                        seed,
                        n_frames,
                        side,
                        k,
                        store_size=syn["cache"],
                        progress=progress,
                        style=st,
                    )
                    for st, k in syn["styles"].items()
                ]
            )
        elif "cache" in syn:
            source = RenderedClips(
                seed,
                n_frames,
                side,
                syn["length"],
                store_size=syn["cache"],
                progress=progress,
                style=style,
            )
        else:
            source = SyntheticClips(seed, n_frames, side, length=syn.get("length"), style=style)
        n = len(source) if "styles" in syn else syn.get("length")
    else:
        source = open_dataset(train)
        n = len(source)
    labels = source.labels
    if len(labels) != cfg["num_classes"]:
        raise RecipeError(
            f"data.train has {len(labels)} classes but the model has {cfg['num_classes']}"
        )
    aug = ClipAugment(size=size, labels=labels, **d["augment"])
    train_ds = ClipDataset(
        source,
        frames,
        size,
        cfg["mean"],
        cfg["std"],
        d["frame_step"],
        d["sampling"],
        aug,
        base_seed=recipe["seed"],
    )
    val_ds = None
    if d["val"]:
        vsrc = open_dataset(d["val"], labels=labels)
        val_ds = ClipDataset(
            vsrc, frames, size, cfg["mean"], cfg["std"], d["frame_step"], "uniform", None
        )
    return train_ds, n, val_ds


def expand_phases(recipe: dict[str, Any], module: torch.nn.Module) -> list[dict[str, Any]]:
    """The recipe's stages as a flat list of phases: {"name", "spec", "level"}."""
    phases: list[dict[str, Any]] = []
    for spec in recipe["stages"]:
        if spec["type"] == "progressive":
            levels = spec.get("levels") or [int(k) for k in module.heads]
            if not levels:
                raise RecipeError("a progressive stage needs contrastive heads (train.contrastive)")
            for lv in levels:
                phases.append({"name": f"progressive-l{lv}", "spec": spec, "level": int(lv)})
        else:
            phases.append({"name": spec.get("name", spec["type"]), "spec": spec, "level": None})
    for i, ph in enumerate(phases):
        ph["dir"] = f"{i + 1:02d}-{ph['name']}"
    return phases


def run_recipe(
    recipe: dict[str, Any],
    out: str | os.PathLike,
    resume: bool = False,
    device: str = "cpu",
    stop_after: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train every phase of ``recipe`` into ``out``; returns {phase name: summary}."""
    from hcml.model.checkpoint import save_checkpoint
    from hcml.training.evaluate import evaluate_module
    from hcml.training.stages import make_stage
    from hcml.training.trainer import PhaseConfig, init_distributed, train_phase

    out = Path(out)
    dist = init_distributed(device)
    if device.startswith("cuda") and dist.world > 1:
        device = f"cuda:{dist.local_rank}"
        torch.cuda.set_device(device)
    if recipe["deterministic"]:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    check_values(recipe)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder: choose another --out")
    if out.exists() and any(out.iterdir()) and not resume:
        if _holds_a_run(out):
            raise FileExistsError(f"{out} already holds a run: pass --resume, or another --out")
        if dist.main:  # (other ranks: rank 0 may be clearing it right now)
            if not (out / "recipe.json").is_file():
                raise FileExistsError(f"{out} is not empty and holds no run: choose another --out")
            _clear_failed_start(out)  # a run of ours that failed before its first checkpoint
    if dist.world > 1:
        torch.distributed.barrier()
    torch.manual_seed(recipe["seed"])
    module = build_module(recipe)
    cfg = module.model.default_cfg
    train_ds, n, val_ds = build_datasets(recipe, cfg, progress=progress and dist.main)
    phases = expand_phases(recipe, module)
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "recipe.json").write_text(json.dumps(recipe, indent=2, default=str))
    results: dict[str, Any] = {}
    prev_final: Path | None = None
    for i, ph in enumerate(phases):
        spec = ph["spec"]
        pdir = out / ph["dir"]
        final = pdir / "final.pt"
        if final.is_file():
            prev_final = final
            results[ph["name"]] = {"skipped": "finished earlier"}
            continue
        init = spec.get("init") if i == 0 or spec.get("init") else None
        src = Path(init) if init else prev_final
        if src is not None and not (pdir / "last.pt").is_file():
            state = torch.load(src, map_location="cpu", weights_only=True)
            if "wrapper_state" in state:
                module.load_state_dict(state["wrapper_state"])
            else:
                module.model.load_state_dict(state["state_dict"])
        elif i == 0 and recipe.get("init_from") and not (pdir / "last.pt").is_file():
            from hcml.training.init_from import load_matching, load_pretrained

            if recipe.get("init_from_match", "exact") == "shapes":
                rep = load_matching(module, recipe["init_from"])
            else:
                rep = load_pretrained(module, recipe["init_from"])
            if dist.main:
                print(
                    f"init_from: {len(rep['loaded'])} tensors loaded, {len(rep['kept'])} new "
                    f"({', '.join(sorted({k.rsplit('.', 1)[0] for k in rep['kept']})[:8])})"
                )
        stage = make_stage(spec, ph["level"])
        pcfg = PhaseConfig(
            steps=spec["steps"],
            batch_size=recipe["data"]["batch_size"],
            lr=spec["lr"],
            min_lr=spec["min_lr"],
            weight_decay=spec["weight_decay"],
            warmup=spec["warmup"],
            grad_clip=spec["grad_clip"],
            amp=spec["amp"],
            seed=recipe["seed"] + 101 * i,
            log_every=recipe["log_every"],
            ckpt_every=recipe["ckpt_every"],
            workers=recipe["data"]["workers"],
        )
        on_end = None
        if val_ds is not None and stage.classifies:

            def on_end(m, _ds=val_ds):
                r = evaluate_module(
                    m.model, _ds, batch_size=recipe["data"]["batch_size"], device=device
                )
                return {"val_top1": r["top1"], "val_n": float(r["n"])}

        summary = train_phase(
            module,
            stage,
            train_ds,
            n,
            pcfg,
            pdir,
            resume=resume,
            device=device,
            dist=dist,
            stop_after=stop_after,
            on_end=on_end,
            progress=progress,
            tag=ph["name"],
        )
        results[ph["name"]] = summary
        if not summary["done"]:
            return results
        if dist.main:
            save_checkpoint(
                final,
                module.deployable(),
                wrapper_state={k: v.detach().cpu() for k, v in module.state_dict().items()},
                phase=ph["name"],
                recipe=json.loads(json.dumps(recipe, default=str)),
                labels=list(train_ds.source.labels),
                data={"frames": int(cfg["frames"]), "frame_step": recipe["data"]["frame_step"]},
                metrics={k: v for k, v in summary.items() if k.startswith("val_")},
            )
        if dist.world > 1:
            torch.distributed.barrier()
        prev_final = final
    if dist.main and prev_final is not None:
        shutil.copyfile(prev_final, out / "model.pt")
    return results
