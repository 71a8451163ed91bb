"""Read and write ``GstVideoRegionOfInterestMeta`` on a buffer (ctypes on the C API).

PyGObject cannot iterate a buffer's metas of one API (``gst_buffer_iterate_meta_filtered``
takes a pointer to a state), so this module walks them in C and reads each meta's fields:
``RoiMeta(ptr, roi_type, id, parent_id, x, y, w, h, params)``, where ``params`` maps each
param structure's name to its fields (a dict). ``add_param`` adds a ``GstStructure`` (given
as a ``Gst.Structure``) to the meta at ``ptr``: the meta owns it. ``add_roi`` attaches a new
meta and returns its pointer. ``read_custom_metas`` reads every ``GstCustomMeta`` of a name
(``Gst.Buffer.get_custom_meta`` returns only the first). Note: ``videoconvert`` keeps ROI
metas but not their params; per-object results also travel in ``HcmlActionMeta``. The
buffer must be writable for the writers (an in-place transform's buffer is).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field

__all__ = ["RoiMeta", "add_param", "add_roi", "read_custom_metas", "read_rois"]

_gst = ctypes.CDLL("libgstreamer-1.0.so.0")
_video = ctypes.CDLL("libgstvideo-1.0.so.0")
_glib = ctypes.CDLL("libglib-2.0.so.0")
_gobject = ctypes.CDLL("libgobject-2.0.so.0")
_gobject.g_type_from_name.restype = ctypes.c_size_t
_gobject.g_type_from_name.argtypes = [ctypes.c_char_p]
_gst.gst_buffer_iterate_meta_filtered.restype = ctypes.c_void_p
_gst.gst_buffer_iterate_meta_filtered.argtypes = [
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.c_void_p),
    ctypes.c_size_t,
]
_gst.gst_structure_to_string.restype = ctypes.c_void_p  # gchar*, freed with g_free
_gst.gst_structure_to_string.argtypes = [ctypes.c_void_p]
_gst.gst_structure_from_string.restype = ctypes.c_void_p
_gst.gst_structure_from_string.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
_glib.g_free.argtypes = [ctypes.c_void_p]
_glib.g_quark_to_string.restype = ctypes.c_char_p
_glib.g_quark_to_string.argtypes = [ctypes.c_uint32]
_video.gst_video_region_of_interest_meta_api_get_type.restype = ctypes.c_size_t
_video.gst_video_region_of_interest_meta_add_param.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
_video.gst_buffer_add_video_region_of_interest_meta.restype = ctypes.c_void_p
_video.gst_buffer_add_video_region_of_interest_meta.argtypes = [
    ctypes.c_void_p,
    ctypes.c_char_p,
    *[ctypes.c_uint] * 4,
]
_API = _video.gst_video_region_of_interest_meta_api_get_type()


class _Fields(ctypes.Structure):
    """GstVideoRegionOfInterestMeta after its GstMeta header (flags + info, 16 bytes)."""

    _fields_ = [
        ("roi_type", ctypes.c_uint32),
        ("id", ctypes.c_int),
        ("parent_id", ctypes.c_int),
        ("x", ctypes.c_uint),
        ("y", ctypes.c_uint),
        ("w", ctypes.c_uint),
        ("h", ctypes.c_uint),
        ("params", ctypes.c_void_p),  # GList* of GstStructure*
    ]


class _GList(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("next", ctypes.c_void_p), ("prev", ctypes.c_void_p)]


@dataclass
class RoiMeta:
    """One region of interest read from a buffer (frame pixels)."""

    ptr: int
    roi_type: str
    id: int
    parent_id: int
    x: int
    y: int
    w: int
    h: int
    params: dict[str, dict] = field(default_factory=dict)


def buffer_pointer(buf) -> int:
    """The GstBuffer* of a PyGObject ``Gst.Buffer`` (its boxed pointer)."""
    return ctypes.c_void_p.from_address(id(buf) + 16).value


def _structure_fields(ptr: int) -> tuple[str, dict]:
    from gi.repository import Gst

    raw = _gst.gst_structure_to_string(ptr)
    try:
        text = ctypes.string_at(raw).decode()
    finally:
        _glib.g_free(raw)
    s = Gst.Structure.from_string(text)[0]
    if s is None:
        return text.split(",", 1)[0], {}
    fields = {}
    for i in range(s.n_fields()):
        name = s.nth_field_name(i)
        try:
            fields[name] = s.get_value(name)
        except TypeError:  # a type PyGObject cannot convert: keep the serialised value
            fields[name] = None
    return s.get_name(), fields


def read_rois(buf) -> list[RoiMeta]:
    """Every ``GstVideoRegionOfInterestMeta`` on ``buf``, in the order they were added."""
    out: list[RoiMeta] = []
    state = ctypes.c_void_p(None)
    bp = buffer_pointer(buf)
    while True:
        p = _gst.gst_buffer_iterate_meta_filtered(bp, ctypes.byref(state), _API)
        if not p:
            return out
        f = _Fields.from_address(p + 16)
        params: dict[str, dict] = {}
        node = f.params
        while node:
            item = _GList.from_address(node)
            if item.data:
                name, fields = _structure_fields(item.data)
                params[name] = fields
            node = item.next
        kind = _glib.g_quark_to_string(f.roi_type)
        out.append(
            RoiMeta(p, (kind or b"").decode(), f.id, f.parent_id, f.x, f.y, f.w, f.h, params)
        )


def add_param(ptr: int, structure) -> None:
    """Add a copy of ``structure`` (a ``Gst.Structure``) to the ROI meta at ``ptr``."""
    s = _gst.gst_structure_from_string(structure.to_string().encode(), None)
    if not s:
        raise ValueError(f"cannot serialise {structure.to_string()!r} as a GstStructure")
    _video.gst_video_region_of_interest_meta_add_param(ptr, s)  # the meta takes ownership


def add_roi(buf, roi_type: str, x: int, y: int, w: int, h: int, roi_id: int = 0) -> int:
    """Attach a new ROI meta to ``buf`` (frame pixels); returns its pointer."""
    p = _video.gst_buffer_add_video_region_of_interest_meta(
        buffer_pointer(buf), roi_type.encode(), max(0, x), max(0, y), max(0, w), max(0, h)
    )
    if not p:
        raise ValueError("cannot add a region-of-interest meta (buffer not writable?)")
    _Fields.from_address(p + 16).id = int(roi_id)
    return p


def read_custom_metas(buf, name: str) -> list[dict]:
    """The fields of every ``GstCustomMeta`` called ``name`` on ``buf`` (``get_custom_meta``
    returns only the first), in the order they were added."""
    from gi.repository import Gst

    info = Gst.Meta.get_info(name)
    if info is None:
        return []
    out: list[dict] = []
    state = ctypes.c_void_p(None)
    bp = buffer_pointer(buf)
    api = _gobject.g_type_from_name(info.api.name.encode())
    while True:
        p = _gst.gst_buffer_iterate_meta_filtered(bp, ctypes.byref(state), api)
        if not p:
            return out
        struct = ctypes.c_void_p.from_address(p + 16).value  # GstCustomMeta.structure
        if struct:
            found, fields = _structure_fields(struct)
            if found == name:
                out.append(fields)
