"""``hcml check-config`` accepts the model repository that ``hcml export --triton-repo`` writes
(Triton's python backend: clip, step with client-sent state, step with server-held state) and
still names genuine mismatches in it (issue 19 item 4)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from hcml import DEFAULT_CARD
from hcml.card import ModelCard, clip_model_name, sequence_model_name, step_model_name
from hcml.export.deepstream_check import check_configs
from hcml.export.triton_repo import write_triton_repo


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("triton") / "repo"
    write_triton_repo(DEFAULT_CARD, root)
    return root


def test_the_exported_repository_passes_with_the_card_found_from_its_configs(repo):
    card = ModelCard.load(DEFAULT_CARD)
    names = {clip_model_name(card), step_model_name(card), sequence_model_name(card)}
    assert {p.name for p in repo.iterdir()} == names
    report = check_configs([repo])  # no --card: each config names it
    assert report.issues == [] and len(report.files) == 3 and report.keys >= 20
    proc = subprocess.run([sys.executable, "-m", "hcml.cli", "check-config", str(repo)],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.startswith("ok:"), proc.stdout + proc.stderr


def test_mismatches_in_the_repository_are_named(repo, tmp_path):
    card = ModelCard.load(DEFAULT_CARD)
    bad = tmp_path / "repo"
    shutil.copytree(repo, bad)
    h, w = card.input_size
    seq = bad / sequence_model_name(card) / "config.pbtxt"
    seq.write_text(
        seq.read_text()
        .replace(f"dims: [ 3, {h}, {w} ]", f"dims: [ 3, {h // 2}, {w // 2} ]")
        .replace('name: "CORRID"', 'name: "CID"')
    )
    lines = seq.read_text().splitlines(keepends=True)
    seq.write_text("".join(ln for ln in lines if not ln.startswith("# hcml-card:")))  # --card
    step = bad / step_model_name(card)
    shutil.copyfile(bad / clip_model_name(card) / "1" / "model.onnx", step / "1" / "model.onnx")
    (bad / clip_model_name(card) / "1" / "model.py").unlink()
    issues = {(i.file.parent.name, i.key): i.message for i in check_configs([bad]).issues}
    assert set(issues) == {
        (clip_model_name(card), "model.py"),
        (step_model_name(card), "model.onnx"),
        (sequence_model_name(card), "-"),
    }
    assert "file not found" in issues[(clip_model_name(card), "model.py")]
    assert "expected the card's step graph" in issues[(step_model_name(card), "model.onnx")]
    assert "no model card found" in issues[(sequence_model_name(card), "-")]
    with_card = {i.key: i.message for i in check_configs([seq], card=DEFAULT_CARD).issues}
    assert set(with_card) == {"input", "sequence_batching.control_input"}
    assert f"expected frame [3, {h}, {w}]" in with_card["input"]
    assert f"found frame [3, {h // 2}, {w // 2}]" in with_card["input"]
    assert "found CID, END, START" in with_card["sequence_batching.control_input"]
