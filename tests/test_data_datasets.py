"""Datasets: synthetic stream, folder/CSV reading, safety errors, sampling, direction-safe flips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hcml.data.datasets import (
    DatasetError,
    RenderedClips,
    StreamSampler,
    SyntheticClips,
    open_dataset,
)
from hcml.data.transforms import ClipAugment, sample_indices
from hcml.labels import LABELS


def test_synthetic_clips_match_the_stream():
    from hcml.data.synth import SyntheticMotionDataset

    stream = iter(SyntheticMotionDataset(seed=3, frames=4, size=32))
    src = SyntheticClips(3, 4, 32)
    for i in range(3):
        a, la = next(stream)
        b, lb = src.load(i)
        assert la == lb and torch.equal(a, b)


def test_rendered_clips_equal_the_renderer_and_are_cached(tmp_path):
    from hcml.data.transforms import resize_clip

    cached = RenderedClips(5, 4, 32, 14, store_size=16, cache_dir=tmp_path, workers=2)
    src = SyntheticClips(5, 4, 32)
    for i in (0, 7, 13):
        clip, label = cached.load(i)
        want, want_label = src.load(i)
        assert label == want_label == i % 12
        assert torch.equal(clip, resize_clip(want, 16))
    stamp = cached.path.stat().st_mtime_ns
    again = RenderedClips(5, 4, 32, 14, store_size=16, cache_dir=tmp_path)
    assert again.path == cached.path and again.path.stat().st_mtime_ns == stamp  # not re-rendered
    assert not list(tmp_path.glob("*.tmp"))
    np.save(cached.path, np.zeros((3, 4, 16, 16, 3), np.uint8))  # a foreign / damaged file
    with pytest.raises(DatasetError, match="delete it"):
        RenderedClips(5, 4, 32, 14, store_size=16, cache_dir=tmp_path)


def test_sample_indices():
    assert sample_indices(16, 8, 2, "uniform").tolist() == list(range(0, 16, 2))
    assert sample_indices(4, 6, 1, "start").tolist() == [0, 1, 2, 3, 3, 3]
    idx = sample_indices(100, 8, 3, "random", np.random.default_rng(0))
    assert np.all(np.diff(idx) == 3) and idx[-1] < 100


def test_hflip_swaps_direction_labels():
    aug = ClipAugment(size=8, hflip=1.0)
    clip = torch.arange(2 * 8 * 8 * 3, dtype=torch.uint8).reshape(2, 8, 8, 3)
    out, y = aug(clip, LABELS.index("move_left"), np.random.default_rng(0))
    assert y == LABELS.index("move_right") and torch.equal(out, clip.flip(2))
    assert aug(clip, LABELS.index("rotate_cw"), np.random.default_rng(0))[1] == 6
    assert aug(clip, LABELS.index("move_up"), np.random.default_rng(0))[1] == 3
    with pytest.raises(ValueError, match="hflip_swap"):
        ClipAugment(size=8, hflip=0.5, labels=["a", "b"], hflip_swap={"a": "c"})


def test_stream_sampler_ranks_and_resume():
    full = list(StreamSampler(10, 2, seed=1, steps=6))
    r0 = list(StreamSampler(10, 2, seed=1, steps=3, rank=0, world=2))
    r1 = list(StreamSampler(10, 2, seed=1, steps=3, rank=1, world=2))
    merged = [k for s in range(3) for k in r0[2 * s : 2 * s + 2] + r1[2 * s : 2 * s + 2]]
    assert merged == full
    assert list(StreamSampler(10, 2, seed=1, start_step=4, steps=6)) == full[8:]


def test_folder_and_csv(synth_clips, tmp_path):
    ds = open_dataset(synth_clips)
    assert len(ds) == 12 and ds.labels == list(LABELS)
    clip, y = ds.load(5)
    assert clip.dtype == torch.uint8 and clip.shape[1:] == (112, 112, 3)
    assert LABELS[y] == ds.items[5][0].parent.name
    csv_ds = open_dataset(synth_clips / "index.csv")
    assert sorted(csv_ds.items) == sorted(ds.items)


def test_bad_paths_and_labels(synth_clips, tmp_path):
    bad = synth_clips / "bad_escape.csv"
    bad.write_text("path,label\n../../etc/passwd,static\n")
    with pytest.raises(DatasetError, match="outside the dataset root"):
        open_dataset(bad)
    bad.write_text("path,label\nstatic/static_0000.mp4,moonwalk\n")
    with pytest.raises(DatasetError, match="moonwalk"):
        open_dataset(bad)
    bad.unlink()
    with pytest.raises(DatasetError, match="not found"):
        open_dataset(tmp_path / "missing")
    with pytest.raises(DatasetError, match="bogus"):
        open_dataset("synth:bogus=1")
