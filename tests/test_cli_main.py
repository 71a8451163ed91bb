"""The `hcml` command: every subcommand is listed, unwritten ones refuse honestly."""

from __future__ import annotations

import subprocess
import sys

import pytest

import hcml.cli as cli
from hcml.cli import SUBCOMMANDS, main

EXPECTED = {"synth", "train", "eval", "export", "build-engine", "run", "bench"}


def test_help_lists_every_subcommand():
    out = subprocess.run(
        [sys.executable, "-m", "hcml.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for name in EXPECTED:
        assert name in out


def test_registry_covers_the_issue_list():
    assert {name for name, *_ in SUBCOMMANDS} >= EXPECTED


def test_unwritten_subcommands_exit_2_with_pointer(capsys, monkeypatch):
    # every shipped subcommand is written now: register a placeholder to exercise the path
    monkeypatch.setattr(cli, "SUBCOMMANDS", [*SUBCOMMANDS, ("later", None, "a plan", "#99")])
    assert main(["later", "clip.mp4"]) == 2
    err = capsys.readouterr().err
    assert "hcml later: not implemented yet" in err and "issue #99" in err


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_subcommand_has_help(name):
    proc = subprocess.run(
        [sys.executable, "-m", "hcml.cli", name, "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0
    assert "usage: hcml" in proc.stdout
