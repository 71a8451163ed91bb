"""hcml.stream: what the element runs, testable without GStreamer.

* ``StreamEngine`` (``engine``): per-stream rings or step state, window/stride/frame-step
  scheduling by PTS, sync or async inference, ``Prediction`` records.
* ``Preprocessor`` / ``frame_to_rgb`` (``preprocess``): raw frames to model input.
* ``LabelSmoother`` (``smoothing``): EMA + hysteresis.
"""

from hcml.stream.engine import Prediction, StreamEngine
from hcml.stream.preprocess import FORMATS, Preprocessor, frame_to_rgb
from hcml.stream.smoothing import LabelSmoother, softmax

__all__ = [
    "FORMATS",
    "LabelSmoother",
    "Prediction",
    "Preprocessor",
    "StreamEngine",
    "frame_to_rgb",
    "softmax",
]
