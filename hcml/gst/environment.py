"""What GStreamer needs to find the ``hcml*`` elements, set before ``Gst.init``.

Used by every program that starts GStreamer itself (``hcml run``, ``hcml game-server``, the
child pipeline runner); ``scripts/env.sh`` does the same for a shell.
"""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

__all__ = ["REPO_ROOT", "gst_environment"]


def gst_environment(registry_dir: Path | None = None) -> None:
    """Set what GStreamer needs to find ``hcmlaction`` before ``Gst.init`` (kept if already set).

    ``GST_PLUGIN_PATH`` gets the folder holding ``python/``; ``PYTHONPATH`` gets this interpreter's
    site-packages and the repository (the plugin scanner is a separate process); ``GST_REGISTRY``
    defaults to a file of our own, so a registry cached without the Python loader cannot hide it.
    """
    plugin_dir = str(REPO_ROOT / "plugin")
    paths = os.environ.get("GST_PLUGIN_PATH", "").split(os.pathsep)
    if plugin_dir not in paths:
        os.environ["GST_PLUGIN_PATH"] = os.pathsep.join(p for p in [plugin_dir, *paths] if p)
    py = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    want = [sysconfig.get_paths()["purelib"], str(REPO_ROOT)]
    os.environ["PYTHONPATH"] = os.pathsep.join([*want, *(p for p in py if p and p not in want)])
    if "GST_REGISTRY" not in os.environ:
        from hcml.data.cache import synth_cache_dir

        folder = registry_dir or synth_cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        os.environ["GST_REGISTRY"] = str(folder / "gst-registry.bin")
