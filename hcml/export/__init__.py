"""Export: ONNX clip + step graphs, the model card, TensorRT plans.

``hcml.export.card`` (ModelCard) is light; ``onnx_export``, ``step`` and ``tensorrt`` import torch
or TensorRT and are imported where used.
"""

from hcml.export.card import ModelCard, ModelCardError

__all__ = ["ModelCard", "ModelCardError"]
