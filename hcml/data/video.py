"""Reading and writing video files with PyAV (FFmpeg; its wheel carries libx264).

``write_video`` writes H.264 MP4 (yuv420p) from RGB frames; ``read_video`` / ``iter_video``
decode any container FFmpeg reads to RGB frames. Unreadable input raises ``VideoReadError``
naming the file and the cause, never a bare FFmpeg exception.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

__all__ = ["VideoReadError", "iter_video", "open_video", "read_video", "write_video"]


class VideoReadError(ValueError):
    """A file that cannot be decoded as video (missing, empty, corrupt, not a video)."""

    def __init__(self, path: str | os.PathLike, cause: str):
        self.path = Path(path)
        super().__init__(f"cannot read video {self.path}: {cause}")


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: int = 25, crf: int = 12) -> Path:
    """Encode ``frames`` uint8 [T, H, W, 3] RGB (H, W even) as H.264 MP4 at ``fps``.

    ``crf`` 12 keeps small motions intact (about 40 dB PSNR on the synthetic clips).
    """
    import av

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(
            f"write_video expects uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}"
        )
    t, h, w, _ = frames.shape
    if t < 1 or h % 2 or w % 2:
        raise ValueError(f"write_video needs >= 1 frame and even H, W for yuv420p, got {h}x{w}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        for frame in frames:
            packet = stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24"))
            container.mux(packet)
        container.mux(stream.encode())
    return path


def open_video(path: str | os.PathLike):
    """The PyAV container of ``path`` after the checks every reader shares (a file, not empty,
    a container, a video stream); ``VideoReadError`` naming the file otherwise. Close it (use
    it as a context manager)."""
    import av

    path = Path(path)
    if not path.is_file():
        raise VideoReadError(path, "no such file")
    if path.stat().st_size == 0:
        raise VideoReadError(path, "the file is empty (0 bytes)")
    try:
        container = av.open(str(path))
    except av.FFmpegError as err:
        raise VideoReadError(path, f"not a readable container ({err})") from err
    if not container.streams.video:
        container.close()
        raise VideoReadError(path, "the file has no video stream")
    return container


def iter_video(path: str | os.PathLike) -> Iterator[np.ndarray]:
    """Yield decoded frames of the first video stream as uint8 [H, W, 3] RGB."""
    import av

    path = Path(path)
    with open_video(path) as container:
        try:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="rgb24")
        except av.FFmpegError as err:
            raise VideoReadError(path, f"decoding failed ({err})") from err


def read_video(path: str | os.PathLike) -> np.ndarray:
    """Decode a whole file: uint8 [T, H, W, 3] RGB. Raises ``VideoReadError`` on bad input."""
    frames = list(iter_video(path))
    if not frames:
        raise VideoReadError(path, "no frame could be decoded")
    return np.stack(frames)
