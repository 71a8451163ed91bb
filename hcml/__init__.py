"""hcml: motion-aware action recognition inline in live video pipelines."""

from pathlib import Path

from hcml._unwind import import_consistently, needs_deepbind, pin_gcc_unwinder
from hcml.labels import LABELS

# Before GStreamer can load libunwind: keep libgcc_s the process's C++ unwinder (hcml/_unwind.py).
pin_gcc_unwinder()
if needs_deepbind():  # imported after GStreamer by a program that had loaded libstdc++ before it
    import_consistently("torch")

__version__ = "0.1.0"
__all__ = ["DEFAULT_CARD", "LABELS", "__version__"]

# The shipped default model (training/default.yaml, then training/tiny_fast.yaml, tiny_fast_b.yaml
# and tiny_fast_c.yaml as warm starts; docs/TRAINING.md; exported by hcml export).
DEFAULT_CARD = Path(__file__).resolve().parents[1] / "engines" / "hcml_tiny_motion.json"
