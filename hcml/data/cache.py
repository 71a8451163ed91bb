"""Where hcml keeps what it renders or fetches once: ``$HCML_CACHE`` or ``$XDG_CACHE_HOME/hcml``."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["synth_cache_dir"]


def synth_cache_dir() -> Path:
    """Where rendered synthetic sets are kept: ``$HCML_CACHE`` or ``$XDG_CACHE_HOME/hcml``."""
    if os.environ.get("HCML_CACHE"):
        return Path(os.environ["HCML_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hcml"
