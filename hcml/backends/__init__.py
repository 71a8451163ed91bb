"""One inference interface, several engines: onnxruntime (CPU default), torch, TensorRT.

``load_backend(model, backend="auto", device="cpu")`` (``loading``) is the entry point; the
interface is ``base.Backend``.
Engine modules import their runtime lazily, so importing this package stays light.
"""

from hcml.backends.base import BACKENDS, Backend, BackendUnavailable, split_state, stack_states
from hcml.backends.loading import load_backend, resolve_card

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendUnavailable",
    "load_backend",
    "resolve_card",
    "split_state",
    "stack_states",
]
