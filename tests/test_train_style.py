"""training/train_style.yaml's pieces: mixed-look synthetic sources, the lighting ramp."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hcml.data.transforms import ClipAugment
from hcml.training.recipe import RecipeError, load_recipe, validate_recipe
from hcml.training.run import MixedClips

ROOT = Path(__file__).resolve().parent.parent


def _recipe(synth: dict) -> dict:
    return {
        "model": {"name": "hcml_tiny", "frames": 8},
        "data": {"train": {"synth": synth}},
        "stages": [{"type": "joint", "steps": 1}],
    }


def test_the_recipe_mixes_classic_and_train_clips_with_a_lighting_ramp():
    r = load_recipe(ROOT / "training" / "train_style.yaml")
    syn = r["data"]["train"]["synth"]
    assert syn["styles"] == {"classic": 1200, "train": 2400} and syn["cache"] == 64
    assert r["data"]["augment"]["lighting"] > 0
    assert [s["type"] for s in r["stages"]] == ["flow", "joint"]


@pytest.mark.parametrize(
    "synth, message",
    [
        ({"styles": {"train": 12}}, "needs cache"),
        ({"styles": {"train": 12}, "cache": 64, "length": 12}, "replaces length"),
        ({"styles": {"train": 0}, "cache": 64}, "clip count"),
        ({"styles": {"sepia": 12}, "cache": 64}, "unknown generator style 'sepia'"),
        ({"style": "sepia"}, "unknown generator style"),
    ],
)
def test_bad_style_settings_are_one_line_errors(synth, message):
    with pytest.raises(RecipeError, match=message):
        validate_recipe(_recipe(synth), "r.yaml")


class _Listed:
    """A source holding clips whose first pixel is their global tag."""

    labels = ["a", "b", "c"]

    def __init__(self, tags: list[int]):
        self.tags = tags

    def __len__(self) -> int:
        return len(self.tags)

    def label_of(self, i: int) -> int:
        return i % 3

    def load(self, i: int, rng=None):
        return torch.full((2, 4, 4, 3), self.tags[i], dtype=torch.uint8), i % 3


def test_mixed_clips_are_the_sources_one_after_another():
    mixed = MixedClips([_Listed([10, 11, 12]), _Listed([20, 21]), _Listed([30, 31, 32, 33])])
    assert len(mixed) == 9 and mixed.labels == ["a", "b", "c"]
    want = [(10, 0), (11, 1), (12, 2), (20, 0), (21, 1), (30, 0), (31, 1), (32, 2), (33, 0)]
    got = [(int(mixed.load(i)[0][0, 0, 0, 0]), mixed.load(i)[1]) for i in range(9)]
    assert got == want
    assert [mixed.label_of(i) for i in range(9)] == [y for _, y in want]


def test_lighting_ramp_scales_frames_linearly_over_time():
    t, v = 9, 100.0
    clip = torch.full((t, 8, 8, 3), int(v), dtype=torch.uint8)
    aug = ClipAugment(size=8, lighting=0.3)
    drifts = []
    for seed in range(20):
        out, label = aug(clip, 4, np.random.default_rng(seed))
        assert label == 4
        level = out.float().mean(dim=(1, 2, 3)).numpy()
        d = np.random.default_rng(seed).uniform(-0.3, 0.3)  # the augmenter's one draw
        want = np.round(v * (1 + d * np.linspace(-1, 1, t)))
        np.testing.assert_array_equal(level, want)
        assert level[t // 2] == v  # the ramp pivots on the middle frame
        drifts.append(d)
    assert min(drifts) < -0.1 and max(drifts) > 0.1  # both directions are drawn
