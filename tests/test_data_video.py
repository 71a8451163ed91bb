"""Video IO: encode/decode round trips, real recordings, and clear errors on broken files."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from hcml.data.synth import clip_seed, render_clip
from hcml.data.video import VideoReadError, iter_video, read_video, write_video
from hcml.labels import LABELS


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / max(mse, 1e-12)))


def test_write_then_read_round_trip(tmp_path):
    clip = render_clip(1, 0).frames
    path = write_video(tmp_path / "a.mp4", clip, fps=25)
    back = read_video(path)
    assert back.shape == clip.shape and back.dtype == np.uint8
    assert _psnr(back, clip) > 30


def test_dataset_folder_round_trips_through_decoding(synth_clips):
    assert (synth_clips / "labels.txt").read_text().split() == list(LABELS)
    with open(synth_clips / "index.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["label"] for r in rows] == list(LABELS)
    for class_id, row in enumerate(rows):
        path = synth_clips / row["path"]
        assert path.parent.name == row["label"]
        decoded = read_video(path)
        original = render_clip(class_id, clip_seed(2024, class_id, 0)).frames
        assert decoded.shape == (16, 112, 112, 3)
        assert _psnr(decoded, original) > 30
        flow = np.load(path.with_suffix(".flow.npz"))["flow"]
        assert flow.shape == (15, 112, 112, 2)


def test_real_recordings_decode(real_clip):
    frames = read_video(real_clip)
    assert frames.shape[0] >= 60 and frames.shape[-1] == 3
    assert frames.std() > 10  # real content, not a blank frame


@pytest.mark.parametrize("kind", ["truncated", "empty", "not_video"])
def test_broken_files_raise_a_named_error(broken_files, kind):
    path = broken_files[kind]
    if kind == "truncated":  # decodes what it can, or says why not; never returns garbage
        try:
            frames = read_video(path)
        except VideoReadError as err:
            assert str(path) in str(err)
        else:
            assert 0 < len(frames) < 60
        return
    with pytest.raises(VideoReadError, match=str(path)):
        read_video(path)


def test_corrupt_stream_yields_the_intact_start_then_a_named_error(broken_files):
    path = broken_files["corrupt"]
    got = []
    with pytest.raises(VideoReadError, match="decoding failed") as err:
        for frame in iter_video(path):
            got.append(frame)
    assert str(path) in str(err.value)
    assert 1 <= len(got) < 60 and got[0].shape == (576, 768, 3)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(VideoReadError, match="no such file"):
        read_video(tmp_path / "nope.mp4")


def test_write_video_refuses_odd_sizes(tmp_path):
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "x.mp4", np.zeros((2, 33, 32, 3), np.uint8))
