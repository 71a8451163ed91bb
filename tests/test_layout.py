"""The package layout of docs/ARCHITECTURE.md, read from the source (AST, no imports run).

* ``hcml/stream/`` is GStreamer-free, as its docstring says: no module there imports ``gi`` or
  ``pyds`` (the glue lives in ``hcml/gst/``).
* No import cycles: neither between modules of ``hcml`` nor between its packages
  (``hcml.backends``, ``hcml.export``, ``hcml.model``, ... with the top-level modules such as
  ``hcml.card`` as their own nodes). Every import statement counts, also those inside
  functions: a lazy import hides a cycle from Python, not from the layering.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "hcml"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> list[str]:
    """Every module name an import statement of ``path`` names (absolute, relative resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            for a in node.names:  # ``from pkg import module`` names the module, not pkg
                out.append(f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base)
    return out


def _resolve(name: str) -> str | None:
    """The hcml module an imported name is (``hcml.x.y.func`` -> ``hcml.x.y``), else None."""
    if name in MODULES:
        return name
    head = name.rpartition(".")[0]
    return _resolve(head) if head else None


def module_graph() -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        targets = {_resolve(n) for n in _imports(name, path) if n.split(".")[0] == "hcml"}
        graph[name] = {t for t in targets if t is not None and t != name}
    return graph


def package_of(module: str) -> str:
    """``hcml.backends.base`` -> ``hcml.backends``; top-level modules are their own node."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 2 or (PKG / parts[-1]).is_dir() else module


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for src, targets in graph.items():
        a = package_of(src)
        out.setdefault(a, set())
        out[a] |= {package_of(t) for t in targets} - {a}
    return out


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path ``[a, b, ..., a]``, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if start in state:
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


GRAPH = module_graph()


def test_the_walk_sees_imports(tmp_path):
    """The reader resolves absolute, relative, ``from pkg import module`` and lazy imports."""
    src = tmp_path / "m.py"
    src.write_text(
        "import hcml.card\nfrom hcml import DEFAULT_CARD\nfrom hcml.gst import runner\n"
        "from . import video\nfrom .run_errors import Explainer\nimport numpy\n"
        "def f():\n    from hcml.backends.base import Backend\n"
    )
    found = {_resolve(n) for n in _imports("hcml.gst.m", src)}
    assert found == {"hcml.card", "hcml", "hcml.gst.runner", "hcml.gst.video",
                     "hcml.gst.run_errors", "hcml.backends.base", None}  # fmt: skip
    assert "hcml.gst.run_errors" in GRAPH["hcml.gst.run_cli"]
    assert "hcml.stream.engine" in GRAPH["hcml.stream"]  # the package's __init__
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_stream_package_is_gstreamer_free():
    def foreign(path: Path) -> list[str]:
        names = []
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names.append(node.module or "")
        return sorted({n for n in names if n.split(".")[0] in ("gi", "pyds")})

    found = {n: foreign(p) for n, p in MODULES.items() if n.startswith("hcml.stream")}
    assert {n: f for n, f in found.items() if f} == {}
    # the check itself: the GStreamer glue does import them
    assert foreign(MODULES["hcml.gst.video"]) == ["gi", "gi.repository"]
    assert foreign(MODULES["hcml.gst.deepstream"]) == ["pyds"]


def test_no_import_cycle_between_modules():
    assert find_cycle(GRAPH) is None, " -> ".join(find_cycle(GRAPH) or [])


def test_no_import_cycle_between_packages():
    packages = package_graph(GRAPH)
    assert {"hcml.backends", "hcml.export", "hcml.model", "hcml.gst", "hcml.stream"} <= set(
        packages
    )
    cycle = find_cycle(packages)
    if cycle:
        steps = [f"{a} -> {b}: {_links(a, b)}" for a, b in zip(cycle, cycle[1:], strict=False)]
        raise AssertionError("package import cycle:\n  " + "\n  ".join(steps))


def _links(a: str, b: str) -> str:
    """Which modules of package ``a`` import which of package ``b``."""
    pairs = [f"{s} imports {t}" for s in sorted(GRAPH) if package_of(s) == a
             for t in sorted(GRAPH[s]) if package_of(t) == b]  # fmt: skip
    return "; ".join(pairs)


def _map_rows() -> list[list[str]]:
    """docs/ARCHITECTURE.md's table: per row, the paths of its first cell (bare names taken
    relative to the folder of the path before them)."""
    rows = []
    for line in (ROOT / "docs" / "ARCHITECTURE.md").read_text().splitlines():
        if not line.startswith("| `"):
            continue
        paths, folder = [], ""
        for item in re.findall(r"`([^`]+)`", line.split("|")[1]):
            path = item if "/" in item else folder + item
            folder = path if path.endswith("/") else path.rpartition("/")[0] + "/"
            paths.append(path)
        rows.append([*paths, line])
    return rows


def test_architecture_map_names_what_exists_and_every_stream_and_gst_module():
    rows = _map_rows()
    named = [p for row in rows for p in row[:-1]]
    assert len(named) > 40  # the parser reads the table
    assert sorted(p for p in named if not (ROOT / p).exists()) == []
    for package in ("hcml/gst", "hcml/stream"):
        for path in sorted((ROOT / package).glob("*.py")):
            if path.name == "__init__.py":
                continue
            rel = f"{package}/{path.name}"
            in_row = any(rel in row[:-1] for row in rows)
            in_package_row = any(
                f"{package}/" in row[:-1] and re.search(rf"`{path.stem}[.`]", row[-1])
                for row in rows
            )
            assert in_row or in_package_row, f"docs/ARCHITECTURE.md does not say what {rel} is"
