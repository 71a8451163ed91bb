"""The TensorRT and DeepStream modules type-checked against NVIDIA's APIs, without a GPU.

mypy checks hcml/backends/tensorrt_backend.py, hcml/export/tensorrt.py and
hcml/gst/deepstream.py against the ``tensorrt-stubs`` and ``pyds-stubs`` packages, which
``make setup`` installs (--no-deps) into ``.venv/typestubs`` (setup.py's dev extra says why not
as requirements). The stubs are copied and two kinds of syntax defect in tensorrt-stubs'
generated ``tensorrt.pyi`` are repaired first (a parameter named ``in``; a parameter without a
default after one with a default): mypy stops at a syntax error in any stub. Errors inside the
stubs themselves are ignored; errors in our modules fail the test. A probe module with known API
misuses must fail, so the check is known to read both stubs.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STUBS = Path(os.environ.get("HCML_TYPESTUBS", ROOT / ".venv" / "typestubs"))
MODULES = [
    "hcml/backends/tensorrt_backend.py",
    "hcml/export/tensorrt.py",
    "hcml/gst/deepstream.py",
]
CONFIG = """\
[mypy]
python_version = 3.12
ignore_missing_imports = True
follow_imports = skip
check_untyped_defs = True
incremental = False
show_error_codes = True
[mypy-tensorrt.*,tensorrt_bindings.*,pyds.*]
ignore_errors = True
"""
PROBE = """\
import pyds
import tensorrt as trt


def misuse(builder: trt.Builder, ctx: trt.IExecutionContext, batch_meta: pyds.NvDsBatchMeta):
    builder.create_network("strongly typed")
    trt.BuilderFlag.FP17
    ctx.set_tensor_address("frames")
    pyds.nvds_acquire_obj_meta_from_pool()
"""


def _fix_line(line: str) -> str:
    line = re.sub(r"([(,]\s*)in(\s*:)", r"\1in_\2", line)
    m = re.match(r"(\s*def \w+\()(.*)(\)\s*->.*)$", line)
    if m:
        seen, params = False, []
        for p in re.split(r",\s*(?![^\[]*\])", m.group(2)):
            if "=" in p:
                seen = True
            elif seen and ":" in p and not p.strip().startswith("*"):
                p += " = ..."
            params.append(p)
        line = m.group(1) + ", ".join(params) + m.group(3)
    return line


def _repaired_stubs(dst: Path) -> Path:
    """tensorrt, tensorrt_bindings and pyds (from pyds-stubs) in ``dst``, tensorrt's parsable."""
    for name, to in (("tensorrt", "tensorrt"), ("tensorrt_bindings", "tensorrt_bindings"),
                     ("pyds-stubs", "pyds")):  # fmt: skip
        src = STUBS / name
        if not src.is_dir():
            pytest.fail(f"{src} missing: run `make setup` (it installs tensorrt-stubs/pyds-stubs)")
        shutil.copytree(src, dst / to)
    for f in (dst / "tensorrt_bindings").glob("*.pyi"):
        lines = f.read_text().splitlines()
        for _ in range(100):
            try:
                ast.parse("\n".join(lines))
                break
            except SyntaxError as e:
                i = (e.lineno or 1) - 1
                fixed = _fix_line(lines[i])
                assert fixed != lines[i], f"unrepairable stub line {f}:{i + 1}: {lines[i]}"
                lines[i] = fixed
        f.write_text("\n".join(lines) + "\n")
    return dst


def test_tensorrt_and_pyds_modules_typecheck(tmp_path):
    stubs = _repaired_stubs(tmp_path / "stubs")
    (tmp_path / "mypy.ini").write_text(CONFIG)
    probe = tmp_path / "probe_misuse.py"
    probe.write_text(PROBE)
    env = {**os.environ, "MYPYPATH": str(stubs)}
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(tmp_path / "mypy.ini")]
    proc = subprocess.run(
        [*cmd, *MODULES, str(probe)], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert "No module named mypy" not in out, "mypy missing: pip install -e '.[dev]'"
    errors = [ln for ln in out.splitlines() if ": error:" in ln]
    ours = [ln for ln in errors if not ln.startswith(str(probe))]
    assert not ours, "\n".join(ours)
    probe_errors = "\n".join(ln for ln in errors if ln.startswith(str(probe)))
    assert 'Argument 1 to "create_network" of "Builder" has incompatible type "str"' in (
        probe_errors
    ), out
    assert '"type[BuilderFlag]" has no attribute "FP17"' in probe_errors, out
    assert 'Missing positional argument "memory" in call to "set_tensor_address"' in (
        probe_errors
    ), out
    assert '"nvds_acquire_obj_meta_from_pool"' in probe_errors, out
    assert proc.returncode == 1
