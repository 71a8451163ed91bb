"""Give a Python-implemented GstElement back the floating reference its factory expects.

``gst_element_factory_create`` checks that a new element is floating: its caller (``gst_bin_add``
via ``gst-launch-1.0``, ``parse_launch``, ``ElementFactory.make``) takes that floating reference
with ``ref_sink``. PyGObject sinks the floating reference of a Python subclass instance while it
builds the wrapper during ``g_object_new`` (the caller's reference becomes the wrapper's), so
GStreamer prints ``GStreamer-CRITICAL ... The created element should be floating`` on every
Python element it creates (any element: one with an empty body does it too). ``restore(obj)``
adds the caller's reference back and marks it floating: the wrapper keeps its own, the bin sinks
the other, and refcounts come out as for a C element (tests/test_element_floating.py).
"""

from __future__ import annotations

import ctypes

_gobject = ctypes.CDLL("libgobject-2.0.so.0")
_gobject.g_object_ref.argtypes = [ctypes.c_void_p]
_gobject.g_object_ref.restype = ctypes.c_void_p
_gobject.g_object_force_floating.argtypes = [ctypes.c_void_p]
_gobject.g_object_is_floating.argtypes = [ctypes.c_void_p]
_gobject.g_object_is_floating.restype = ctypes.c_int

__all__ = ["restore"]


def restore(obj) -> None:
    """Called at the end of a Python element's ``__init__`` (PyGObject's hash is the GObject*)."""
    ptr = hash(obj)
    if not _gobject.g_object_is_floating(ptr):
        _gobject.g_object_ref(ptr)
        _gobject.g_object_force_floating(ptr)
