"""DeepStream glue for ``hcmlaction``: NVMM frames in, NvDsClassifierMeta out (through pyds).

Written against the DeepStream Python bindings' documented API (deepstream_python_apps):
``gst_buffer_get_nvds_batch_meta``, ``NvDsFrameMeta.cast``, ``get_nvds_buf_surface_gpu`` and
the ``nvds_acquire_*_from_pool`` / ``nvds_add_*`` meta calls. ``pyds`` ships with the DeepStream
SDK (never from PyPI); without it ``AVAILABLE`` is False and only the pyds-free helpers
(``capsule_pointer``, ``cuda_array``, ``full_frame_box``, ``sync``) are usable.

Three things the bindings leave to the caller (NVIDIA's deepstream-imagedata-multistream-cupy
sample does the same):

* ``get_nvds_buf_surface_gpu(buffer, batch_id)`` returns ``(dtype, (H, W, 4), (pitch, 4, 1),
  data, size)`` where ``data`` is an unnamed PyCapsule around the surface's device pointer;
  ``__cuda_array_interface__`` needs the integer, so ``capsule_pointer`` unwraps it.
* H x W there is the batch's frame size (nvstreammux's output ``width``/``height``), while
  ``NvDsFrameMeta.source_frame_width/height`` is the size at the muxer's input: a full-frame
  box must use the former, or it lands outside a downscaled frame.
* Torch reads the surface asynchronously on its current CUDA stream; the stream must be
  synchronised before the buffer leaves the element (downstream may rewrite or recycle the
  surface). ``batch_frames`` does it after the last frame of a batch; ``sync()`` is the same.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

try:  # DeepStream's own wheel; PyPI's "pyds" is an unrelated package
    import pyds

    AVAILABLE = hasattr(pyds, "gst_buffer_get_nvds_batch_meta")
except ImportError:  # pragma: no cover - depends on the machine
    pyds = None  # type: ignore[assignment]
    AVAILABLE = False

__all__ = [
    "AVAILABLE",
    "SurfaceFrame",
    "attach_classifier_meta",
    "batch_frames",
    "capsule_pointer",
    "cuda_array",
    "full_frame_box",
    "surface_tensor",
    "sync",
]

#: unique-component-id written into our metadata (nvinfer's gie-unique-id convention)
COMPONENT_ID = 77

# Our own prototypes of the capsule C API (setting restype/argtypes on ctypes.pythonapi's shared
# function objects, as the sample does, would change them for every other user in the process).
# PYFUNCTYPE: called with the GIL held, and a Python error the call sets is raised.
_get_name = ctypes.PYFUNCTYPE(ctypes.c_char_p, ctypes.py_object)(
    ("PyCapsule_GetName", ctypes.pythonapi)
)
_get_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
    ("PyCapsule_GetPointer", ctypes.pythonapi)
)


def capsule_pointer(capsule: Any) -> int:
    """The address held by a PyCapsule (pybind11's ``py::cast(void*)``, what pyds returns for a
    surface's ``dataPtr``) as a Python int. Capsules are read under their own name (pyds's are
    unnamed), so a named one works too. Anything else is a TypeError naming its type."""
    if type(capsule).__name__ != "PyCapsule":
        raise TypeError(
            f"expected the PyCapsule that pyds.get_nvds_buf_surface_gpu returns, "
            f"got {type(capsule).__name__}"
        )
    ptr = _get_pointer(capsule, _get_name(capsule))
    if not ptr:  # a valid capsule never holds NULL; kept for a broken binding
        raise ValueError("the surface's PyCapsule holds a NULL device pointer")
    return int(ptr)


class _CudaArray:
    """Exposes a device pointer through ``__cuda_array_interface__`` (v3) so torch can wrap it."""

    def __init__(self, interface: dict[str, Any]):
        self.__cuda_array_interface__ = interface


def cuda_array(
    data: Any, shape: tuple[int, ...], strides: tuple[int, ...], typestr: str = "|u1"
) -> _CudaArray:
    """An object with ``__cuda_array_interface__`` for the memory at ``data`` (a PyCapsule or an
    int). shape and strides (bytes) as pyds gives them: (H, W, 4), (pitch, 4, 1)."""
    ptr = data if isinstance(data, int) and not isinstance(data, bool) else capsule_pointer(data)
    interface = {"shape": tuple(int(s) for s in shape), "typestr": typestr, "data": (ptr, False),
                 "strides": tuple(int(s) for s in strides), "version": 3}  # fmt: skip
    return _CudaArray(interface)


@dataclass
class SurfaceFrame:
    """One frame of a batch: the pyds ``NvDsFrameMeta`` plus the batch's frame size.

    Attribute reads the dataclass does not define (``source_id``, ``buf_pts``, ``batch_id``...)
    go to ``meta``, so code written for the bare ``NvDsFrameMeta`` keeps working.
    """

    meta: Any
    width: int  # the surface's (nvstreammux's output) width, pixels
    height: int

    def __getattr__(self, name: str) -> Any:
        if name == "meta":  # not yet set (copy/pickle): no recursion
            raise AttributeError(name)
        return getattr(self.meta, name)


def full_frame_box(frame: Any, frame_size: tuple[int, int] | None = None) -> tuple[int, ...]:
    """(left, top, width, height) of a box covering the whole batch frame.

    The size is ``frame_size`` (W, H) when given, else the ``SurfaceFrame``'s; a bare
    ``NvDsFrameMeta`` without either is an error (its ``source_frame_width/height`` is the size
    at the muxer's input, not the frame the box is drawn on).
    """
    if frame_size is None:
        if not isinstance(frame, SurfaceFrame):
            raise ValueError(
                "full_frame_box needs the batch's frame size: pass the SurfaceFrame that "
                "batch_frames yields, or frame_size=(width, height)"
            )
        frame_size = (frame.width, frame.height)
    return 0, 0, int(frame_size[0]), int(frame_size[1])


def surface_tensor(buffer_hash: int, batch_id: int) -> Any:
    """The RGBA NVMM surface of frame ``batch_id`` as a torch uint8 CUDA tensor [H, W, 4] (a
    view: no copy; valid while the buffer is)."""
    import torch

    dtype, shape, strides, data, _size = pyds.get_nvds_buf_surface_gpu(buffer_hash, batch_id)
    typestr = getattr(dtype, "str", "|u1")  # a numpy dtype in the bindings
    return torch.as_tensor(cuda_array(data, tuple(shape), tuple(strides), typestr), device="cuda")


def sync() -> None:
    """Wait for the work queued on torch's current CUDA stream (no-op without CUDA)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.current_stream().synchronize()


def batch_frames(buffer_hash: int) -> Iterator[tuple[Any, SurfaceFrame, Any]]:
    """For a buffer carrying NvDsBatchMeta: ``(batch_meta, frame, rgba)`` per frame.

    ``frame`` is a ``SurfaceFrame`` (the NvDsFrameMeta plus the batch frame size); ``rgba`` a
    torch uint8 CUDA tensor [H, W, 4] viewing the NVMM surface (no host copy); it needs RGBA
    surfaces (``nvvideoconvert ! video/x-raw(memory:NVMM),format=RGBA``). After the last frame
    (or when the caller stops early) the CUDA stream is synchronised, so work queued on the
    surfaces is done before the caller pushes the buffer on.
    """
    batch_meta = pyds.gst_buffer_get_nvds_batch_meta(buffer_hash)
    if batch_meta is None:
        return
    try:
        item = batch_meta.frame_meta_list
        while item is not None:
            frame_meta = pyds.NvDsFrameMeta.cast(item.data)
            rgba = surface_tensor(buffer_hash, frame_meta.batch_id)
            yield batch_meta, SurfaceFrame(frame_meta, rgba.shape[1], rgba.shape[0]), rgba
            item = item.next
    finally:
        sync()


def attach_classifier_meta(
    batch_meta: Any,
    frame: Any,
    label: str,
    class_id: int,
    score: float,
    frame_size: tuple[int, int] | None = None,
) -> None:
    """A full-frame object meta carrying one NvDsClassifierMeta with the label info.

    ``frame``: the ``SurfaceFrame`` from ``batch_frames`` (or a bare NvDsFrameMeta with
    ``frame_size=(W, H)``, the batch's frame size); see ``full_frame_box``.
    """
    left, top, width, height = full_frame_box(frame, frame_size)
    frame_meta = frame.meta if isinstance(frame, SurfaceFrame) else frame
    obj = pyds.nvds_acquire_obj_meta_from_pool(batch_meta)
    rect = obj.rect_params
    rect.left, rect.top, rect.width, rect.height = left, top, width, height
    rect.border_width = 0
    obj.class_id, obj.confidence, obj.obj_label = class_id, score, label
    obj.unique_component_id = COMPONENT_ID
    # no parent object: None, as NVIDIA's samples pass (pyds-stubs type it non-optional)
    pyds.nvds_add_obj_meta_to_frame(frame_meta, obj, None)  # type: ignore[arg-type]
    attach_object_classifier_meta(batch_meta, obj, label, class_id, score)


def frame_objects(frame: Any) -> Iterator[tuple[Any, int, tuple[float, float, float, float]]]:
    """A frame's detected/tracked objects: ``(NvDsObjectMeta, object_id, (left, top, w, h))``.

    ``object_id`` is nvtracker's id (``UNTRACKED_OBJECT_ID``, 2^64 - 1, without a tracker);
    boxes are in the batch's frame pixels. Objects hcmlaction added itself are skipped.
    """
    frame_meta = frame.meta if isinstance(frame, SurfaceFrame) else frame
    item = frame_meta.obj_meta_list
    while item is not None:
        obj = pyds.NvDsObjectMeta.cast(item.data)
        if obj.unique_component_id != COMPONENT_ID:
            r = obj.rect_params
            box = (float(r.left), float(r.top), float(r.width), float(r.height))
            yield obj, int(obj.object_id), box
        item = item.next


def attach_object_classifier_meta(
    batch_meta: Any, obj: Any, label: str, class_id: int, score: float
) -> None:
    """One NvDsClassifierMeta with the label info on an upstream NvDsObjectMeta."""
    cls = pyds.nvds_acquire_classifier_meta_from_pool(batch_meta)
    cls.unique_component_id = COMPONENT_ID
    info = pyds.nvds_acquire_label_info_meta_from_pool(batch_meta)
    info.result_class_id, info.result_label, info.result_prob = class_id, label, score
    pyds.nvds_add_label_info_meta_to_classifier(cls, info)
    pyds.nvds_add_classifier_meta_to_object(obj, cls)
