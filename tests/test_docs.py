"""The user-facing docs point at things that exist in a clone."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_names_only_files_a_clone_has():
    text = (ROOT / "README.md").read_text()
    named = set(re.findall(r"`([\w./-]+\.md)`|\]\(([\w./-]+\.md)\)", text))
    paths = {a or b for a, b in named}
    assert "docs/ARCHITECTURE.md" in paths  # the pattern finds the README's references
    missing = sorted(p for p in paths if not (ROOT / p).is_file())
    assert not missing, f"README.md names files that are not in the repository: {missing}"
    assert "shared/" not in text, "shared/ is the development workspace, not part of a clone"


def _reliability_tests() -> list[tuple[str, str]]:
    """(file, test function) for every test the fault matrix names.

    Cells name tests as ``tests/FILE.py::test_x``, ``T::test_x`` (T = tests/test_reliability.py)
    or ``::test_x`` (the file named last in the cell); ``[param]`` ids are dropped.
    """
    out = []
    for line in (ROOT / "docs" / "RELIABILITY.md").read_text().splitlines():
        if not line.startswith("|"):
            continue
        cell = line.rstrip().rstrip("|").rsplit("|", 1)[-1]
        current = None
        for file, name in re.findall(r"`(tests/[\w/]+\.py|T)?::(test_\w+)", cell):
            if file:
                current = "tests/test_reliability.py" if file == "T" else file
            assert current is not None, f"no file before ::{name} in: {cell.strip()}"
            out.append((current, name))
    return out


def test_every_test_the_fault_matrix_names_exists():
    named = _reliability_tests()
    assert len(named) > 50  # the parser does find the matrix's tests
    missing = []
    for file, name in named:
        path = ROOT / file
        if not path.is_file() or not re.search(rf"^def {name}\(", path.read_text(), re.M):
            missing.append(f"{file}::{name}")
    assert not missing, f"docs/RELIABILITY.md names tests that do not exist: {missing}"


def test_reliability_states_the_shipped_cards_input_size():
    import json

    card = json.loads((ROOT / "engines" / "hcml_tiny_motion.json").read_text())
    h, w = card["input_size"]
    text = (ROOT / "docs" / "RELIABILITY.md").read_text()
    assert f"shipped card takes {h}x{w}" in text
