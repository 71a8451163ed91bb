"""Test streams: generated clips of every class, real recordings, and broken files.

Fixtures are session-scoped; everything generated lands in one temporary folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parent / "data"
REAL_CLIPS = ("vtest_pedestrians_768x576.mp4", "tree_320x240.mp4")


@pytest.fixture(scope="session")
def synth_clips(tmp_path_factory) -> Path:
    """A dataset folder with 1 clip of every class (16 frames, 112x112) + labels.txt, index.csv."""
    from hcml.data.synth import write_dataset

    return write_dataset(tmp_path_factory.mktemp("synth"), 1, seed=2024, flow=True, progress=False)


@pytest.fixture(scope="session", params=REAL_CLIPS)
def real_clip(request) -> Path:
    """Each real recorded clip committed under tests/data/ (sources in tests/data/README.md)."""
    return DATA / request.param


@pytest.fixture(scope="session")
def broken_files(tmp_path_factory) -> dict[str, Path]:
    """Bad inputs: ``corrupt`` (garbage mid-stream), ``truncated``, ``empty``, ``not_video``."""
    root = tmp_path_factory.mktemp("broken")
    data = (DATA / REAL_CLIPS[0]).read_bytes()
    corrupt = bytearray(data)
    lo, hi = len(data) // 3, len(data) // 3 + len(data) // 4
    corrupt[lo:hi] = np.random.default_rng(0).integers(0, 256, hi - lo, dtype=np.uint8).tobytes()
    files = {
        "corrupt": root / "corrupt.mp4",
        "truncated": root / "truncated.mp4",
        "empty": root / "empty.mp4",
        "not_video": root / "notes.mp4",
    }
    files["corrupt"].write_bytes(bytes(corrupt))
    files["truncated"].write_bytes(data[: int(len(data) * 0.4)])
    files["empty"].write_bytes(b"")
    files["not_video"].write_text("this is a text file, not a video\n" * 50)
    return files


@pytest.fixture(scope="session")
def tiny_card(tmp_path_factory) -> Path:
    """Card of a randomly initialised hcml_tiny (T=8, 112x112) exported to ONNX (clip + step)."""
    import torch

    from hcml.export.onnx_export import export_model
    from hcml.export.reference import randomize_
    from hcml.model import create_model

    torch.manual_seed(0)
    model = randomize_(create_model("hcml_tiny", frames=8), 0)
    card = export_model(model, tmp_path_factory.mktemp("tiny"), "tiny_random_t8", window=8)
    return card.path
