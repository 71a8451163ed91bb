"""Export: ONNX clip + step graphs (``onnx_export``), TensorRT plans (``tensorrt``), DeepStream
configs (``deepstream``, ``deepstream_check``) and the Triton model repository (``triton_repo``).

The model card they write is ``hcml.card`` (read by the backends too); the step module they
export is ``hcml.model.step``. Modules import torch or TensorRT where used.
"""
