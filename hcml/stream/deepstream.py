"""DeepStream glue for ``hcmlaction``: NVMM frames in, NvDsClassifierMeta out (through pyds).

Written against the DeepStream Python bindings' documented API (deepstream_python_apps):
``gst_buffer_get_nvds_batch_meta``, ``NvDsFrameMeta.cast``, ``get_nvds_buf_surface_gpu`` and
the ``nvds_acquire_*_from_pool`` / ``nvds_add_*`` meta calls. ``pyds`` ships with the DeepStream
SDK (never from PyPI); without it ``AVAILABLE`` is False and nothing here is called.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

try:  # DeepStream's own wheel; PyPI's "pyds" is an unrelated package
    import pyds

    AVAILABLE = hasattr(pyds, "gst_buffer_get_nvds_batch_meta")
except ImportError:  # pragma: no cover - depends on the machine
    pyds = None
    AVAILABLE = False

__all__ = ["AVAILABLE", "attach_classifier_meta", "batch_frames"]

#: unique-component-id written into our metadata (nvinfer's gie-unique-id convention)
COMPONENT_ID = 77


class _CudaArray:
    """Exposes a device pointer through ``__cuda_array_interface__`` so torch can wrap it."""

    def __init__(self, ptr: int, shape: tuple[int, ...], strides: tuple[int, ...]):
        self.__cuda_array_interface__ = {
            "shape": shape, "typestr": "|u1", "data": (ptr, False), "strides": strides,
            "version": 3,
        }  # fmt: skip


def batch_frames(buffer_hash: int) -> Iterator[tuple[Any, Any, Any]]:
    """For a buffer carrying NvDsBatchMeta: ``(batch_meta, frame_meta, rgba)`` per frame.

    ``rgba`` is a torch uint8 CUDA tensor [H, W, 4] viewing the NVMM surface (no host copy);
    it needs RGBA surfaces (``nvvideoconvert ! video/x-raw(memory:NVMM),format=RGBA``).
    """
    import torch

    batch_meta = pyds.gst_buffer_get_nvds_batch_meta(buffer_hash)
    if batch_meta is None:
        return
    item = batch_meta.frame_meta_list
    while item is not None:
        frame_meta = pyds.NvDsFrameMeta.cast(item.data)
        _dtype, shape, strides, ptr, _size = pyds.get_nvds_buf_surface_gpu(
            buffer_hash, frame_meta.batch_id
        )
        rgba = torch.as_tensor(_CudaArray(ptr, tuple(shape), tuple(strides)), device="cuda")
        yield batch_meta, frame_meta, rgba
        item = item.next


def attach_classifier_meta(batch_meta: Any, frame_meta: Any, label: str, class_id: int,
                           score: float) -> None:  # fmt: skip
    """A full-frame object meta carrying one NvDsClassifierMeta with the label info."""
    obj = pyds.nvds_acquire_obj_meta_from_pool(batch_meta)
    rect = obj.rect_params
    rect.left, rect.top = 0, 0
    rect.width, rect.height = frame_meta.source_frame_width, frame_meta.source_frame_height
    rect.border_width = 0
    obj.class_id, obj.confidence, obj.obj_label = class_id, score, label
    obj.unique_component_id = COMPONENT_ID
    pyds.nvds_add_obj_meta_to_frame(frame_meta, obj, None)
    cls = pyds.nvds_acquire_classifier_meta_from_pool(batch_meta)
    cls.unique_component_id = COMPONENT_ID
    info = pyds.nvds_acquire_label_info_meta_from_pool(batch_meta)
    info.result_class_id, info.result_label, info.result_prob = class_id, label, score
    pyds.nvds_add_label_info_meta_to_classifier(cls, info)
    pyds.nvds_add_classifier_meta_to_object(obj, cls)
