"""Where a mapped video buffer's planes are: the buffer's GstVideoMeta, else its caps' layout.

Upstream elements (decoders, pools) may hand out frames with padded strides or moved planes and
say so in a ``GstVideoMeta`` once downstream accepts video meta (any ``videoconvert`` after our
element does). Reading such a buffer with the caps' default layout scrambles it, so the
elements take strides and offsets from here.
"""

from __future__ import annotations

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstVideo", "1.0")
from gi.repository import Gst, GstVideo  # noqa: E402

__all__ = ["plane_layout"]


def plane_layout(buf: Gst.Buffer, info: GstVideo.VideoInfo) -> tuple[list[int], list[int]]:
    """(strides, offsets) in bytes of each plane of ``buf`` (n_planes entries each)."""
    n = info.finfo.n_planes
    meta = GstVideo.buffer_get_video_meta(buf)
    if meta is not None:
        return list(meta.stride)[:n], list(meta.offset)[:n]
    return list(info.stride)[:n], list(info.offset)[:n]
