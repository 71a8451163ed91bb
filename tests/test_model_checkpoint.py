"""Checkpoints: round trip, atomic write, weights_only, and clear errors."""

from __future__ import annotations

import pytest
import torch

from hcml.export.reference import randomize_
from hcml.model import HCMLTrainingWrapper, create_model
from hcml.model.checkpoint import FORMAT, CheckpointError, load_model, save_checkpoint


@pytest.fixture()
def model():
    torch.manual_seed(0)
    return randomize_(create_model("hcml_tiny", num_classes=5, frames=4, levels=[1, 3]))


def test_round_trip(tmp_path, model):
    path = save_checkpoint(tmp_path / "sub" / "m.pt", model, epoch=3, metrics={"acc": 0.5})
    assert [p.name for p in path.parent.iterdir()] == ["m.pt"]  # no temporary file left
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == FORMAT and raw["model"] == "hcml_tiny" and raw["epoch"] == 3
    loaded = load_model(path)
    assert loaded.default_cfg == model.default_cfg and not loaded.training
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_wrapper_saves_its_deployable(tmp_path, model):
    path = save_checkpoint(tmp_path / "w.pt", HCMLTrainingWrapper(model))
    assert set(torch.load(path, weights_only=True)["state_dict"]) == set(model.state_dict())


def test_missing_and_corrupt_files(tmp_path, model):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_model(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="not a readable hcml checkpoint"):
        load_model(bad)
    good = save_checkpoint(tmp_path / "good.pt", model)
    truncated = tmp_path / "trunc.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="not a readable hcml checkpoint"):
        load_model(truncated)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(1)}, other)
    with pytest.raises(CheckpointError, match="not an hcml-checkpoint/1 file"):
        load_model(other)


class Payload:
    """An arbitrary class: weights_only loading must refuse to build it."""


def test_refuses_pickled_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "obj": Payload()}, path)
    with pytest.raises(CheckpointError, match="not a readable"):
        load_model(path)
    with pytest.raises(TypeError, match="cannot be stored"):
        save_checkpoint(tmp_path / "x.pt", create_model("tsn_tiny"), obj=Payload())


def _edit(path, fn) -> None:
    data = torch.load(path, weights_only=True)
    fn(data)
    torch.save(data, path)


def test_unknown_name_and_shape_mismatch(tmp_path, model):
    path = save_checkpoint(tmp_path / "m.pt", model)
    _edit(path, lambda d: d.update(model="hcml_huge"))
    with pytest.raises(CheckpointError, match="unknown model name 'hcml_huge'"):
        load_model(path)
    path = save_checkpoint(tmp_path / "m.pt", model)
    _edit(path, lambda d: d["state_dict"].update({"head.fc.weight": torch.zeros(5, 7)}))
    with pytest.raises(CheckpointError, match=r"'head\.fc\.weight' has shape \(5, 7\)"):
        load_model(path)
    path = save_checkpoint(tmp_path / "m.pt", model)
    _edit(path, lambda d: d["state_dict"].pop("motion.3.g.0.weight"))
    with pytest.raises(CheckpointError, match="missing.*motion.3.g.0.weight"):
        load_model(path)
    path = save_checkpoint(tmp_path / "m.pt", model)
    _edit(path, lambda d: d["cfg"].update(levels=[9]))
    with pytest.raises(CheckpointError, match="config does not build"):
        load_model(path)
