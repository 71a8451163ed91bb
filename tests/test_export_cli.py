"""`hcml export CKPT --name NAME`: files, card contents and the torch-checkpoint path end to end."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

import hcml.model.checkpoint as ckpt_mod
import hcml.model.registry as registry
from hcml.backends import load_backend
from hcml.card import ModelCard
from hcml.cli import main
from hcml.export.deepstream import APP
from hcml.export.deepstream_check import check_configs

ROOT = Path(__file__).resolve().parents[1]


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    import torch

    from hcml.export.reference import randomize_

    torch.manual_seed(0)
    model = randomize_(registry.create_model("hcml_tiny", num_classes=12, frames=8))
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    ckpt_mod.save_checkpoint(path, model)
    return path


def test_export_command_writes_everything(checkpoint, tmp_path, capsys):
    out = tmp_path / "engines"
    # a checkout's layout: engines/ beside pipelines/deepstream, whose files are tracked
    tracked = tmp_path / "pipelines" / "deepstream"
    tracked.mkdir(parents=True)
    (tracked / APP).write_bytes((ROOT / "pipelines" / "deepstream" / APP).read_bytes())
    before, repo_before = _digests(tracked), _digests(ROOT / "pipelines" / "deepstream")
    argv = ["export", str(checkpoint), "--name", "tiny", "--out", str(out)]
    assert main([*argv, "--frames", "8", "--size", "64", "64"]) == 0
    printed = capsys.readouterr().out
    assert "onnxruntime vs torch" in printed
    names = {p.name for p in out.iterdir()}
    assert {"tiny.onnx", "tiny.step.onnx", "tiny.json", "tiny.labels.txt", "tiny.pt"} <= names
    # the DeepStream configs go next to the card; tracked configs stay as they were
    assert _digests(tracked) == before
    assert _digests(ROOT / "pipelines" / "deepstream") == repo_before
    assert f"wrote DeepStream configs in {out / 'tiny.deepstream'}" in printed
    assert check_configs([out / "tiny.deepstream"], out / "tiny.json").ok
    card = ModelCard.load(out / "tiny.json")
    assert card.window == 8 and card.input_size == (64, 64) and card.model == "hcml_tiny"
    assert card.files["checkpoint"] == "tiny.pt" and "tiny.pt" in card.sha256
    check = card.metrics["export_check"]
    assert check["clip_max_abs_diff"] < 1e-4 and check["step_max_abs_diff"] < 1e-4

    # the same card on the torch backend (through the copied checkpoint) agrees with onnxruntime
    ob = load_backend(out / "tiny.json")
    tb = load_backend(out / "tiny.json", backend="torch")
    clip = np.random.default_rng(0).standard_normal((1, 3, 8, 64, 64), dtype=np.float32)
    assert tb.name == "torch" and np.abs(ob.run_clip(clip) - tb.run_clip(clip)).max() < 1e-4


def test_checkpoint_loads_on_torch_backend(checkpoint):
    b = load_backend(checkpoint)
    assert b.name == "torch" and "checkpoint" in b.auto_reason
    assert b.card.window == 8 and len(b.card.labels) == 12
    h, w = b.card.input_size
    logits = b.run_clip(np.zeros((1, 3, 8, h, w), np.float32))
    assert logits.shape == (1, 12)
    assert b.supports_step
