"""The `hcml` command: every subcommand is listed, unwritten ones refuse honestly."""

from __future__ import annotations

import subprocess
import sys

import pytest

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


@pytest.mark.parametrize("name", [n for n, module, *_ in SUBCOMMANDS if module is None])
def test_unwritten_subcommands_exit_2_with_pointer(name, capsys):
    assert main([name]) == 2
    err = capsys.readouterr().err
    assert "not implemented yet" in err and "issue" in err


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_subcommand_has_help(name):
    proc = subprocess.run(
        [sys.executable, "-m", "hcml.cli", name, "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0
    assert "usage: hcml" in proc.stdout
