"""The model card: round trip, DeepStream labels, and mismatches that must name the field."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hcml.backends import load_backend
from hcml.card import ModelCard, ModelCardError
from hcml.export.reference import exported_toy


@pytest.fixture
def card_dir(tmp_path: Path) -> Path:
    src = Path(exported_toy(8)).parent
    dst = tmp_path / "engines"
    shutil.copytree(src, dst)
    return dst


def _edit(card_dir: Path, **changes) -> Path:
    path = card_dir / "toy_t8.json"
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))
    return path


def test_round_trip_and_contents(card_dir):
    card = ModelCard.load(card_dir / "toy_t8.json")
    assert card.window == 8 and card.input_size == (32, 32) and card.frame_step == 1
    assert card.color_order == "RGB" and card.layout == "NCDHW" and len(card.labels) == 12
    assert set(card.files) >= {"clip", "step", "labels"}
    assert set(card.sha256) == {card.files[k] for k in ("clip", "step", "labels")}
    assert card.tensors["clip"]["inputs"]["frames"] == [-1, 3, 8, 32, 32]
    assert card.tensors["clip"]["outputs"]["logits"] == [-1, 12]
    assert [s["key"] for s in card.tensors["step"]["state"]] == ["cache0", "cache1", "ring"]
    assert card.metrics["export_check"]["clip_max_abs_diff"] < 1e-4
    card.save(card_dir / "again.json")
    again = ModelCard.load(card_dir / "again.json")
    assert again.to_dict() == card.to_dict()


def test_labels_txt_is_deepstream_classifier_format(card_dir):
    card = ModelCard.load(card_dir / "toy_t8.json")
    text = (card_dir / card.files["labels"]).read_text()
    assert text == card.labels_txt()
    assert text.count("\n") == 1 and text.strip().split(";") == card.labels


@pytest.mark.parametrize(
    ("changes", "field", "detail"),
    [
        ({"input_size": [64, 64]}, "input_size", "32x32"),
        ({"window": 16}, "window", "T=8"),
        ({"labels": ["a", "b", "c"]}, "labels", "3 labels but"),
        ({"window": "8"}, "window", "positive integer"),
        ({"mean": [0.5, 0.5]}, "mean", "3 numbers"),
        ({"colour": "RGB"}, "colour", "unknown key"),
        ({"color_order": "YUV"}, "color_order", "RGB or BGR"),
    ],
)
def test_mismatched_card_names_the_field(card_dir, changes, field, detail):
    path = _edit(card_dir, **changes)
    with pytest.raises(ModelCardError) as err:
        ModelCard.load(path)
    assert err.value.field == field
    msg = str(err.value)
    assert f"'{field}'" in msg and str(path) in msg and detail in msg


def test_missing_file_names_the_field(card_dir):
    (card_dir / "toy_t8.step.onnx").unlink()
    with pytest.raises(ModelCardError, match=r"'files\.step'.*file not found.*toy_t8\.step\.onnx"):
        ModelCard.load(card_dir / "toy_t8.json")


def test_wrong_sha256_names_the_field(card_dir):
    with open(card_dir / "toy_t8.labels.txt", "a") as f:
        f.write("extra\n")
    with pytest.raises(ModelCardError) as err:
        ModelCard.load(card_dir / "toy_t8.json")
    assert err.value.field == "sha256" and "toy_t8.labels.txt" in str(err.value)


def test_errors_reach_load_backend(card_dir):
    path = _edit(card_dir, input_size=[64, 48])
    with pytest.raises(ValueError, match="input_size"):
        load_backend(path)
    with pytest.raises(ModelCardError, match="no model card beside"):
        shutil.copy(card_dir / "toy_t8.onnx", card_dir / "orphan.onnx")
        load_backend(card_dir / "orphan.onnx")
