"""DeepStream glue without DeepStream: the surface capsule, the CUDA array interface, the box.

pyds is not installable here, so its batch/frame/object meta structs are stand-ins (plain
objects with the documented field names); the surface capsule is a REAL PyCapsule built with
``PyCapsule_New`` the way pybind11's ``py::cast(void*)`` builds the one that
``pyds.get_nvds_buf_surface_gpu`` returns (unnamed, no destructor).
"""

from __future__ import annotations

import ctypes
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from hcml.gst import deepstream

_new_capsule = ctypes.PYFUNCTYPE(
    ctypes.py_object, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p
)(("PyCapsule_New", ctypes.pythonapi))


def make_capsule(address: int, name: bytes | None = None):
    return _new_capsule(address, name, None)


class _Host:
    """The same interface dict read as host memory (numpy), to check pointer + strides."""

    def __init__(self, cuda_interface: dict):
        self.__array_interface__ = dict(cuda_interface, version=3)


def read_host(interface: dict) -> np.ndarray:
    return np.asarray(_Host(interface))


def padded_surface(height: int, width: int, pitch: int, seed: int = 0) -> np.ndarray:
    """A pitched RGBA surface in host memory: [height, pitch] bytes, pixels in the first 4W."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(height, pitch), dtype=np.uint8)


# ------------------------------------------------------------------------------ the capsule
def test_capsule_pointer_unwraps_a_real_unnamed_capsule_to_its_address():
    buf = ctypes.create_string_buffer(64)
    address = ctypes.addressof(buf)
    capsule = make_capsule(address)
    assert type(capsule).__name__ == "PyCapsule"
    got = deepstream.capsule_pointer(capsule)
    assert type(got) is int and got == address


def test_capsule_pointer_reads_a_named_capsule_under_its_own_name():
    address = 0x7F00_1234_5000
    assert deepstream.capsule_pointer(make_capsule(address, b"NvBufSurface.dataPtr")) == address


@pytest.mark.parametrize("bad", [12345, None, b"\x00" * 8, memoryview(b"ab")])
def test_capsule_pointer_rejects_what_is_not_a_capsule_by_name(bad):
    with pytest.raises(TypeError, match=type(bad).__name__):
        deepstream.capsule_pointer(bad)


def test_cuda_array_interface_has_an_integer_pointer_that_addresses_the_pixels():
    h, w, pitch = 6, 5, 32  # pitch > 4 * w, as NVMM surfaces are pitched
    surface = padded_surface(h, w, pitch)
    capsule = make_capsule(surface.ctypes.data)
    shape, strides = (h, w, 4), (pitch, 4, 1)  # what get_nvds_buf_surface_gpu returns

    interface = deepstream.cuda_array(capsule, shape, strides).__cuda_array_interface__
    ptr, read_only = interface["data"]
    assert type(ptr) is int and ptr == surface.ctypes.data and read_only is False
    assert interface["shape"] == shape and interface["strides"] == strides
    assert interface["typestr"] == "|u1" and interface["version"] == 3
    # reading through that exact dict gives the pixels, not the pitch padding
    expected = surface[:, : 4 * w].reshape(h, w, 4)
    np.testing.assert_array_equal(read_host(interface), expected)


@pytest.mark.gpu
def test_surface_capsule_of_device_memory_becomes_a_cuda_tensor_view():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device (torch.cuda.is_available() is False)")
    h, w, pitch = 24, 10, 64
    backing = torch.randint(0, 256, (h, pitch), dtype=torch.uint8, device="cuda")
    capsule = make_capsule(backing.data_ptr())
    stand_in = SimpleNamespace(
        get_nvds_buf_surface_gpu=lambda buf, i: (
            np.dtype(np.uint8),
            (h, w, 4),
            (pitch, 4, 1),
            capsule,
            h * pitch,
        )
    )
    old, deepstream.pyds = deepstream.pyds, stand_in
    try:
        rgba = deepstream.surface_tensor(1, 0)
    finally:
        deepstream.pyds = old
    assert rgba.is_cuda and rgba.data_ptr() == backing.data_ptr()  # a view, no copy
    assert torch.equal(rgba, backing[:, : 4 * w].reshape(h, w, 4))
    deepstream.sync()  # the element's last step before pushing the buffer on


# ------------------------------------------------------------------------------ pyds stand-in
class _PydsStandIn:
    """Only the calls deepstream.py makes, with the documented argument and field names."""

    def __init__(self, muxer_size: tuple[int, int], sources: list[tuple[int, int]], pitch: int):
        self.muxer_w, self.muxer_h = muxer_size
        self.pitch = pitch
        self.surfaces = [padded_surface(self.muxer_h, self.muxer_w, pitch, seed=i)
                         for i in range(len(sources))]  # fmt: skip
        self.frames = [
            SimpleNamespace(batch_id=i, source_id=10 + i, buf_pts=1000 * i,
                            source_frame_width=sw, source_frame_height=sh, objects=[])
            for i, (sw, sh) in enumerate(sources)
        ]  # fmt: skip
        node = None
        for frame in reversed(self.frames):
            node = SimpleNamespace(data=frame, next=node)
        self.batch = SimpleNamespace(frame_meta_list=node)
        self.NvDsFrameMeta = SimpleNamespace(cast=lambda data: data)
        self.buffers_asked: list[int] = []

    def gst_buffer_get_nvds_batch_meta(self, buffer_hash: int):
        self.buffers_asked.append(buffer_hash)
        return self.batch

    def get_nvds_buf_surface_gpu(self, buffer_hash: int, batch_id: int):
        s = self.surfaces[batch_id]
        shape, strides = (self.muxer_h, self.muxer_w, 4), (self.pitch, 4, 1)
        return np.dtype(np.uint8), shape, strides, make_capsule(s.ctypes.data), s.nbytes

    def nvds_acquire_obj_meta_from_pool(self, batch_meta):
        assert batch_meta is self.batch
        return SimpleNamespace(rect_params=SimpleNamespace(), classifiers=[])

    def nvds_add_obj_meta_to_frame(self, frame_meta, obj, parent):
        assert parent is None
        frame_meta.objects.append(obj)  # AttributeError unless the real frame meta is passed

    def nvds_acquire_classifier_meta_from_pool(self, batch_meta):
        return SimpleNamespace(labels=[])

    def nvds_acquire_label_info_meta_from_pool(self, batch_meta):
        return SimpleNamespace()

    def nvds_add_label_info_meta_to_classifier(self, cls, info):
        cls.labels.append(info)

    def nvds_add_classifier_meta_to_object(self, obj, cls):
        obj.classifiers.append(cls)


@pytest.fixture
def batch(monkeypatch):
    """Two sources (1280x720, 640x480) muxed to 320x240 surfaces; the surface read through the
    capsule and the interface dict on host memory (no GPU here), syncs recorded."""
    stand_in = _PydsStandIn((320, 240), [(1280, 720), (640, 480)], pitch=1536)
    events: list[str] = []

    def host_surface(buffer_hash: int, batch_id: int):
        dtype, shape, strides, data, _ = stand_in.get_nvds_buf_surface_gpu(buffer_hash, batch_id)
        interface = deepstream.cuda_array(data, shape, strides, dtype.str).__cuda_array_interface__
        return torch.from_numpy(read_host(interface))

    monkeypatch.setattr(deepstream, "pyds", stand_in)
    monkeypatch.setattr(deepstream, "surface_tensor", host_surface)
    monkeypatch.setattr(deepstream, "sync", lambda: events.append("sync"))
    return stand_in, events


def test_full_frame_box_is_the_muxer_size_not_the_source_size(batch):
    stand_in, events = batch
    seen = []
    for batch_meta, frame, rgba in deepstream.batch_frames(0xBEEF):
        # what the element reads off the frame still works through the wrapper
        seen.append((frame.source_id, frame.buf_pts, tuple(rgba.shape)))
        expected = stand_in.surfaces[frame.batch_id][:, : 4 * 320].reshape(240, 320, 4)
        np.testing.assert_array_equal(rgba.numpy(), expected)
        deepstream.attach_classifier_meta(batch_meta, frame, "move_left", 1, 0.75)
        events.append(f"frame {frame.batch_id}")
    assert stand_in.buffers_asked == [0xBEEF]
    assert seen == [(10, 0, (240, 320, 4)), (11, 1000, (240, 320, 4))]
    assert events == ["frame 0", "frame 1", "sync"]  # synced once, after the batch's frames
    for fm in stand_in.frames:
        (obj,) = fm.objects
        r = obj.rect_params
        assert (r.left, r.top, r.width, r.height) == (0, 0, 320, 240)
        assert (r.width, r.height) != (fm.source_frame_width, fm.source_frame_height)
        assert (obj.class_id, obj.confidence, obj.obj_label) == (1, 0.75, "move_left")
        (cls,) = obj.classifiers
        (info,) = cls.labels
        assert (info.result_class_id, info.result_label, info.result_prob) == (1, "move_left", 0.75)
        assert obj.unique_component_id == cls.unique_component_id == deepstream.COMPONENT_ID


def test_stopping_early_still_syncs_before_the_buffer_goes_on(batch):
    _, events = batch
    frames = deepstream.batch_frames(1)
    next(frames)
    frames.close()  # what a for loop leaving by break/exception does
    assert events == ["sync"]


def test_a_bare_frame_meta_needs_the_batch_frame_size(batch):
    stand_in, _ = batch
    fm = stand_in.frames[0]
    with pytest.raises(ValueError, match="frame size"):
        deepstream.attach_classifier_meta(stand_in.batch, fm, "static", 0, 0.5)
    assert fm.objects == []  # nothing half-attached
    deepstream.attach_classifier_meta(stand_in.batch, fm, "static", 0, 0.5, frame_size=(320, 240))
    assert (fm.objects[0].rect_params.width, fm.objects[0].rect_params.height) == (320, 240)
