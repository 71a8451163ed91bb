"""`hcml synth`: documented options, end-to-end rendering, and clear refusals."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hcml.cli import main
from hcml.labels import LABELS


def test_help_documents_every_option():
    out = subprocess.run(
        [sys.executable, "-m", "hcml.cli", "synth", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for option in ("--clips-per-class", "--frames", "--size", "--seed", "--flow", "--fps"):
        assert option in out
    assert "labels.txt" in out  # the description says what is written


def test_synth_end_to_end(tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["synth", str(out), "--clips-per-class", "1", "--frames", "6", "--size", "48"]) == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(LABELS)
    assert len(list(out.rglob("*.mp4"))) == 12
    printed = capsys.readouterr().out
    assert "wrote 12 clips" in printed and "move_left" in printed


def test_same_seed_same_files(tmp_path):
    for name in ("a", "b"):
        assert main(["synth", str(tmp_path / name), "--clips-per-class", "1", "--frames", "4",
                     "--size", "32", "--quiet"]) == 0  # fmt: skip
    a = (tmp_path / "a" / "zoom_in" / "zoom_in_0000.mp4").read_bytes()
    b = (tmp_path / "b" / "zoom_in" / "zoom_in_0000.mp4").read_bytes()
    assert a == b


@pytest.mark.parametrize(
    "args, message",
    [
        (["--size", "33"], "--size must be even"),
        (["--frames", "1"], "--frames must be >= 2"),
        (["--clips-per-class", "0"], "--clips-per-class must be >= 1"),
    ],
)
def test_bad_arguments_exit_2_with_reason(tmp_path, capsys, args, message):
    assert main(["synth", str(tmp_path / "x"), *args]) == 2
    assert message in capsys.readouterr().err


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["synth", str(target)]) == 2
    assert "not a folder" in capsys.readouterr().err
