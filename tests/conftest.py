"""Shared fixtures: a fresh GStreamer registry per test run, and the project's paths."""

from __future__ import annotations

import os
import sysconfig
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A stale registry caches zero features for Python elements: give every run its own.
_REGISTRY_DIR = tempfile.mkdtemp(prefix="hcml-gst-registry-")
os.environ["GST_REGISTRY"] = os.path.join(_REGISTRY_DIR, "registry.bin")
os.environ["GST_PLUGIN_PATH"] = str(ROOT / "plugin")
# The plugin scanner embeds the system Python: it must see the venv's packages and hcml.
_site = sysconfig.get_paths()["purelib"]
os.environ["PYTHONPATH"] = os.pathsep.join(
    [_site, str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


from streams import broken_files, real_clip, synth_clips, tiny_card  # noqa: E402,F401  (fixtures)
