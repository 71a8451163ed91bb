"""hcml train on tiny recipes: every stage's loss goes down; progressive freezes lower levels."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch
import yaml

from hcml.cli import main
from hcml.training.recipe import RecipeError, validate_recipe

REPO = Path(__file__).resolve().parents[1]

TINY = {
    "seed": 0,
    "model": {
        "name": "hcml_tiny",
        "frames": 4,
        "input_size": 32,
        "options": {"max_displacement": 2, "stride": 1},
        "train": {"samples": 4, "deltas": 1},
    },
    # A fixed set of 4 clips: the loss of a stage must go down on it within a few steps.
    "data": {
        "train": {"synth": {"seed": 0, "frames": 4, "size": 32, "length": 4}},
        "batch_size": 4,
    },
    "optim": {"lr": 0.01, "warmup": 0, "grad_clip": 5.0},
    "log_every": 1,
    "ckpt_every": 100,
    "stages": [
        {"type": "flow", "steps": 12},
        {"type": "progressive", "steps": 12},
        {"type": "joint", "steps": 12, "lambda_rec": 0.1, "gamma": 0.1},
    ],
}


def _losses(phase_dir: Path) -> list[float]:
    rows = [json.loads(ln) for ln in (phase_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r]


def test_tiny_recipe_every_stage_learns(tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(TINY))
    t0 = time.perf_counter()
    assert main(["train", str(recipe), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    assert time.perf_counter() - t0 < 120
    run = tmp_path / "run"
    phases = sorted(p.name for p in run.iterdir() if p.is_dir())
    assert phases == [
        "01-flow",
        "02-progressive-l1",
        "03-progressive-l2",
        "04-progressive-l3",
        "05-joint",
    ]
    for ph in phases:
        losses = _losses(run / ph)
        assert len(losses) == 12, ph
        assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, (ph, losses)
        assert (run / ph / "final.pt").is_file()
        assert any((run / ph / "tb").iterdir())
    from hcml.model.checkpoint import load_model

    model = load_model(run / "model.pt")
    assert model(torch.zeros(1, 3, 4, 32, 32)).shape == (1, 12)


def test_progressive_freezes_lower_levels(tmp_path):
    from hcml.training.run import build_datasets, build_module
    from hcml.training.stages import ProgressiveStage
    from hcml.training.trainer import PhaseConfig, train_phase

    recipe = validate_recipe(json.loads(json.dumps(TINY)))
    module = build_module(recipe)
    ds, n, _ = build_datasets(recipe, module.model.default_cfg)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    stage = ProgressiveStage(2)
    train_phase(
        module,
        stage,
        ds,
        n,
        PhaseConfig(steps=3, batch_size=4, lr=0.01),
        tmp_path / "p",
        progress=False,
    )
    after = module.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    allowed = ("model.backbone.stages.2.", "model.backbone.layer2.", "model.motion.2.", "heads.2.")
    assert changed, "level 2 did not train"
    for k in changed:  # parameters and BN statistics of every other part are unchanged
        assert k.startswith(allowed) or ".2." in k.split("model.backbone.")[-1][:12], k
    for k in before:
        if k.startswith(
            (
                "model.backbone.stem",
                "model.motion.1.",
                "flow_net.",
                "heads.1.",
                "heads.3.",
                "model.motion.3.",
                "model.head.",
            )
        ):
            assert torch.equal(before[k], after[k]), k


@pytest.mark.parametrize(
    "patch, needle",
    [
        ({"stages": [{"type": "flow", "steps": 2, "lr_typo": 1}]}, "lr_typo"),
        ({"stages": [{"type": "warp", "steps": 2}]}, "warp"),
        ({"model": {"name": "nope"}}, "nope"),
        ({"data": {"augment": {"vflip": 0.5}}}, "vflip"),
        ({"optimizer": {}}, "optimizer"),
        ({"stages": [{"type": "joint"}]}, "steps"),
    ],
)
def test_recipe_errors_name_the_bad_key(patch, needle):
    raw = json.loads(json.dumps(TINY))
    raw.update(patch)
    with pytest.raises(RecipeError, match=needle):
        validate_recipe(raw, "r.yaml")


def test_shipped_recipes_validate(repo_root):
    from hcml.training.recipe import load_recipe

    recipes = sorted((repo_root / "training").glob("*.yaml"))
    assert recipes
    for r in recipes:
        load_recipe(r)


def test_base_recipe_is_merged_key_by_key_and_the_child_wins(tmp_path):
    """``_base_``: a child recipe equals its base with the child's keys written over it
    (mappings merged, lists replaced), through a chain of two."""
    from hcml.training.recipe import load_recipe

    base = json.loads(json.dumps(TINY))
    base["data"] = {"batch_size": 4, "frame_step": 2, "augment": {"hflip": 0.5}}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    (tmp_path / "sub").mkdir()
    child = {"_base_": "../base.yaml", "seed": 3, "data": {"augment": {"reverse": 0.5}},
             "stages": [{"type": "supervised", "steps": 7}]}  # fmt: skip
    (tmp_path / "sub" / "child.yaml").write_text(yaml.safe_dump(child))
    (tmp_path / "grand.yaml").write_text(yaml.safe_dump({"_base_": "sub/child.yaml", "seed": 5}))
    written = json.loads(json.dumps(base))
    written.update(seed=3, stages=[{"type": "supervised", "steps": 7}])
    written["data"]["augment"] = {"hflip": 0.5, "reverse": 0.5}
    expected = validate_recipe(written, "x")
    got = load_recipe(tmp_path / "sub" / "child.yaml")
    assert got == dict(expected, name="child")
    assert load_recipe(tmp_path / "grand.yaml") == dict(expected, seed=5, name="grand")


def test_base_recipe_errors_are_one_line(tmp_path):
    from hcml.training.recipe import load_recipe

    (tmp_path / "a.yaml").write_text("_base_: missing.yaml\nseed: 1\n")
    with pytest.raises(RecipeError, match=r"recipe not found: .*missing\.yaml \(the _base_ of"):
        load_recipe(tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text("_base_: c.yaml\n")
    (tmp_path / "c.yaml").write_text("_base_: b.yaml\n")
    with pytest.raises(RecipeError, match="cycle"):
        load_recipe(tmp_path / "b.yaml")
    (tmp_path / "d.yaml").write_text("_base_: [a.yaml]\n")
    with pytest.raises(RecipeError, match="_base_: expected a recipe file path"):
        load_recipe(tmp_path / "d.yaml")


def test_the_default_models_cycles_inherit_cycle_one():
    """training/tiny_fast_b.yaml and tiny_fast_c.yaml are tiny_fast.yaml but for what they say."""
    from hcml.training.recipe import load_recipe

    a, b, c = (load_recipe(REPO / "training" / f"tiny_fast{s}.yaml") for s in ("", "_b", "_c"))
    assert b["model"] == c["model"] == a["model"]
    assert b["optim"] == c["optim"] == a["optim"]
    assert b["data"] == a["data"]
    assert c["data"]["train"]["synth"]["styles"] == {"classic": 4800, "train": 2400}
    assert dict(c["data"], train=None) == dict(a["data"], train=None)
    assert (b["init_from"], c["init_from"]) == (
        "runs/tiny_fast/model.pt",
        "runs/tiny_fast_b/model.pt",
    )
    assert [s["steps"] for s in (*b["stages"], *c["stages"])] == [500, 700]


@pytest.mark.parametrize("level", [1, 2, 3])
def test_progressive_trains_only_what_its_loss_reaches(level):
    """Every trainable parameter gets a gradient: DistributedDataParallel requires it."""
    from hcml.training.run import build_module
    from hcml.training.stages import ProgressiveStage

    recipe = validate_recipe(json.loads(json.dumps(TINY)))
    module = build_module(recipe)
    stage = ProgressiveStage(level)
    params = stage.setup(module)
    stage.train_mode(module)
    x = torch.randn(2, 3, recipe["model"]["frames"], 32, 32)
    loss, _ = stage.loss(module, x, None, torch.Generator().manual_seed(0))
    loss.backward()
    names = {id(p): n for n, p in module.named_parameters()}
    assert [names[id(p)] for p in params if p.grad is None] == []


@pytest.mark.parametrize(
    "recipe", sorted(p.relative_to(REPO) for p in (REPO / "training").rglob("*.yaml")), ids=str
)
def test_every_shipped_recipe_validates_and_builds_its_model(recipe):
    """The recipes in training/ (default, CI smoke, each ablation row) load and build their
    network; a typo in one would otherwise surface only after a long run was started."""
    from hcml.training.recipe import load_recipe
    from hcml.training.run import build_module

    loaded = load_recipe(REPO / recipe)
    net = build_module(loaded).deployable()
    assert net.default_cfg["name"] == loaded["model"]["name"]
    assert net.default_cfg["frames"] == loaded["model"]["frames"]
