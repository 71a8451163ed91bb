"""hcml: motion-aware action recognition inline in live video pipelines."""

from hcml.labels import LABELS

__version__ = "0.1.0"
__all__ = ["LABELS", "__version__"]
