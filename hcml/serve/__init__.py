"""Serving the model cards from a real Triton Inference Server (``hcml serve``).

``server.TritonServer`` starts and stops the ``tritonserver`` binary that the nvidia-pytriton
wheel ships (python backend, ONNX Runtime inside the model: ``triton_model.py``) on a model
repository written by ``hcml.export.triton_repo``; ``cli`` is the ``hcml serve`` command. Clients
use ``load_backend(card, backend="triton", server="HOST:PORT")`` (``hcml.backends.triton_backend``).
See docs/SERVING.md.
"""
