"""Raw frame formats -> RGB -> model input, against slow reference conversions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hcml.stream.preprocess import Preprocessor, frame_to_rgb


def _rgb_to_yuv601(rgb: np.ndarray):
    """Reference BT.601 limited-range RGB -> (Y [H, W], U, V [H/2, W/2]) with 2x2 chroma means."""
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 16 + 0.257 * r + 0.504 * g + 0.098 * b
    u = 128 - 0.148 * r - 0.291 * g + 0.439 * b
    v = 128 + 0.439 * r - 0.368 * g - 0.071 * b
    h, w = y.shape
    sub = lambda c: c.reshape(h // 2, 2, w // 2, 2).mean((1, 3))
    q = lambda c: np.clip(np.rint(c), 0, 255).astype(np.uint8)
    return q(y), q(sub(u)), q(sub(v))


@pytest.fixture
def smooth_rgb() -> np.ndarray:
    yy, xx = np.mgrid[0:48, 0:64]
    return np.stack([xx * 3, yy * 4, 255 - xx * 2], -1).clip(0, 255).astype(np.uint8)


def test_packed_formats_with_row_padding(smooth_rgb):
    h, w, _ = smooth_rgb.shape
    stride = w * 4 + 16  # padded rows, as GStreamer may allocate
    for fmt, order in (("RGBA", (0, 1, 2)), ("BGRx", (2, 1, 0))):
        buf = np.zeros((h, stride), np.uint8)
        px = buf[:, : w * 4].reshape(h, w, 4)
        px[..., list(order)] = smooth_rgb
        out = frame_to_rgb(buf.reshape(-1), fmt, w, h, [stride], [0])
        np.testing.assert_array_equal(out, smooth_rgb)


def test_i420_and_nv12_match_the_reference(smooth_rgb):
    h, w, _ = smooth_rgb.shape
    y, u, v = _rgb_to_yuv601(smooth_rgb)
    i420 = np.concatenate([y.ravel(), u.ravel(), v.ravel()])
    nv12 = np.concatenate([y.ravel(), np.stack([u, v], -1).ravel()])
    for fmt, data in (("I420", i420), ("NV12", nv12)):
        out = frame_to_rgb(data, fmt, w, h).astype(int)
        assert np.abs(out - smooth_rgb.astype(int)).mean() < 3.0, fmt


def test_unknown_format_is_named():
    with pytest.raises(ValueError, match="unsupported video format 'YUY2'"):
        frame_to_rgb(np.zeros(32, np.uint8), "YUY2", 4, 4)


def test_preprocessor_resizes_and_normalises():
    pre = Preprocessor((8, 8), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    x = pre(np.full((32, 16, 3), 255, np.uint8))
    assert x.shape == (3, 8, 8) and x.dtype == torch.float32
    torch.testing.assert_close(x, torch.full((3, 8, 8), 2.0))


@pytest.mark.parametrize("fmt", ["RGB", "RGBA", "BGRx", "I420", "NV12"])
@pytest.mark.parametrize("size", [(16, 16), (48, 64), (96, 80)])
def test_frame_resizes_before_converting_and_matches_the_full_size_path(smooth_rgb, fmt, size):
    h, w, _ = smooth_rgb.shape
    pre = Preprocessor(size, mean=(0.45, 0.45, 0.45), std=(0.225, 0.225, 0.225))
    if fmt in ("I420", "NV12"):
        y, u, v = _rgb_to_yuv601(smooth_rgb)
        pad = 8  # padded rows in every plane, as GStreamer may allocate
        planes = [np.pad(p, ((0, 0), (0, pad))) for p in (y, u, v)]
        if fmt == "NV12":
            uv = np.pad(np.stack([u, v], -1).reshape(h // 2, w), ((0, 0), (0, pad)))
            planes = [planes[0], uv]
        data = np.concatenate([p.ravel() for p in planes])
        strides = [p.shape[1] for p in planes]
        offsets = list(np.cumsum([0] + [p.size for p in planes[:-1]]))
    else:
        order = {"RGB": (0, 1, 2), "RGBA": (0, 1, 2), "BGRx": (2, 1, 0)}[fmt]
        bpp = 3 if fmt == "RGB" else 4
        stride = w * bpp + 12
        buf = np.zeros((h, stride), np.uint8)
        buf[:, : w * bpp].reshape(h, w, bpp)[..., list(order)] = smooth_rgb
        data, strides, offsets = buf.ravel(), [stride], [0]
    fast = pre.frame(data, fmt, w, h, strides, offsets)
    full = pre(frame_to_rgb(data, fmt, w, h, strides, offsets))
    assert fast.shape == full.shape == (3, *size) and fast.dtype == torch.float32
    # rounding, clipping order and chroma upsampling (bilinear here, repeated in frame_to_rgb)
    # differ; 1/255 is 0.017 after std 0.225
    assert (fast - full).abs().mean() < 0.03 and (fast - full).abs().max() < 0.08
    truth = pre(smooth_rgb)  # the RGB the YUV was made from
    assert (fast - truth).abs().mean() < 0.025


def test_large_yuv_frames_are_box_halved_first_and_still_match_the_full_size_path():
    """1280x720 I420 -> 64x64: the planes are 2x2-box-averaged with OpenCV before the final
    antialiased resize (torch's single-plane uint8 kernel is slow); the result stays within
    the full-size path's tolerance, on a real frame."""
    import av

    from hcml.stream.preprocess import _box_reduce

    with av.open("tests/data/vtest_pedestrians_768x576.mp4") as c:
        frame = next(c.decode(video=0)).reformat(width=1280, height=720, format="yuv420p")
    y, u, v = (
        np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[:, :w]
        for p, w in zip(frame.planes, (1280, 640, 640), strict=True)
    )
    # the halving itself: 2x2 means of the plane, twice for luma (720 -> 360 -> 180), rounded
    want = y.reshape(180, 4, 320, 4).astype(np.float64).mean((1, 3))
    got = _box_reduce(torch.from_numpy(y.copy())[None], (64, 64))[0].numpy()
    assert got.shape == (180, 320) and np.abs(got - want).max() <= 1.0
    assert _box_reduce(torch.from_numpy(u.copy())[None], (64, 64)).shape == (1, 180, 320)
    odd = torch.zeros((1, 721, 1280), dtype=torch.uint8)  # odd height: left alone
    assert _box_reduce(odd, (64, 64)) is odd
    data = np.concatenate([p.ravel() for p in (y, u, v)])
    pre = Preprocessor((64, 64), mean=(0.45, 0.45, 0.45), std=(0.225, 0.225, 0.225))
    fast = pre.frame(data, "I420", 1280, 720)
    full = pre(frame_to_rgb(data, "I420", 1280, 720))
    # measured 0.011 mean, 0.076 max (0.008 / 0.068 without the halving)
    assert (fast - full).abs().mean() < 0.02 and (fast - full).abs().max() < 0.1
