"""Raw video frames -> model input: format conversion, resize and normalisation.

``Preprocessor.frame`` is the element's hot path: a mapped GStreamer buffer (RGB, RGBA, BGRx,
BGRA, I420, NV12, with the plane strides and offsets from its ``GstVideoInfo``) -> normalised
model input [3, h, w] float32. It resizes first, on the raw uint8 planes (torch's bilinear
antialiased uint8 kernels), and converts colour on the small result: a 1280x720 frame costs a few
milliseconds instead of a full-size colour conversion. Resize and BT.601 conversion are both
linear, so the order changes only rounding (tests compare with the full-size path).
``frame_to_rgb`` is the full-size conversion (an RGB view [H, W, 3] uint8, no copy where the
layout allows), used by ``__call__`` users and as the tests' reference.
YUV uses BT.601 limited range, what ``videoconvert`` uses for SD video.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["FORMATS", "Preprocessor", "frame_to_rgb"]

# format -> (bytes per pixel of plane 0, channel indices of R, G, B) for packed formats
_PACKED = {"RGB": (3, (0, 1, 2)), "RGBA": (4, (0, 1, 2)), "RGBx": (4, (0, 1, 2)),
           "BGRx": (4, (2, 1, 0)), "BGRA": (4, (2, 1, 0)), "BGR": (3, (2, 1, 0))}  # fmt: skip
FORMATS = (*_PACKED, "I420", "NV12")


def _plane(data: np.ndarray, offset: int, stride: int, rows: int, cols: int) -> np.ndarray:
    return np.lib.stride_tricks.as_strided(
        data[offset:], shape=(rows, cols), strides=(stride, 1), writeable=False
    )


def _planes(
    data: np.ndarray,
    fmt: str,
    width: int,
    height: int,
    strides: Sequence[int] | None,
    offsets: Sequence[int] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """I420 / NV12 -> (Y [H, W], U [H/2, W/2], V [H/2, W/2]) uint8 views."""
    ch, cw = (height + 1) // 2, (width + 1) // 2
    if fmt == "I420":
        strides = strides or (width, cw, cw)
        offsets = offsets or (0, width * height, width * height + cw * ch)
        return (
            _plane(data, offsets[0], strides[0], height, width),
            _plane(data, offsets[1], strides[1], ch, cw),
            _plane(data, offsets[2], strides[2], ch, cw),
        )
    if fmt == "NV12":
        strides = strides or (width, 2 * cw)
        offsets = offsets or (0, width * height)
        uv = _plane(data, offsets[1], strides[1], ch, 2 * cw)
        return _plane(data, offsets[0], strides[0], height, width), uv[:, 0::2], uv[:, 1::2]
    raise ValueError(f"unsupported video format {fmt!r}; supported: {', '.join(FORMATS)}")


def _tensor(a: np.ndarray) -> torch.Tensor:
    """A read-only uint8 view as a torch tensor without a copy (never written)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "array is not writable"
        return torch.from_numpy(a)


def _yuv_to_rgb(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """BT.601 limited range; u, v at half resolution: -> [H, W, 3] uint8."""
    h, w = y.shape
    u = np.repeat(np.repeat(u, 2, 0), 2, 1)[:h, :w].astype(np.float32) - 128.0
    v = np.repeat(np.repeat(v, 2, 0), 2, 1)[:h, :w].astype(np.float32) - 128.0
    c = 1.164 * (y.astype(np.float32) - 16.0)
    rgb = np.stack([c + 1.596 * v, c - 0.392 * u - 0.813 * v, c + 2.017 * u], axis=-1)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def frame_to_rgb(
    data: np.ndarray,
    fmt: str,
    width: int,
    height: int,
    strides: Sequence[int] | None = None,
    offsets: Sequence[int] | None = None,
) -> np.ndarray:
    """A mapped frame (flat uint8) -> RGB [H, W, 3] uint8 (a strided view for packed RGB)."""
    data = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data
    if fmt in _PACKED:
        bpp, (r, g, b) = _PACKED[fmt]
        stride = strides[0] if strides else width * bpp
        offset = offsets[0] if offsets else 0
        pixels = np.lib.stride_tricks.as_strided(
            data[offset:], shape=(height, width, bpp), strides=(stride, bpp, 1), writeable=False
        )
        return pixels if (r, g, b) == (0, 1, 2) and bpp == 3 else pixels[..., [r, g, b]]
    return _yuv_to_rgb(*_planes(data, fmt, width, height, strides, offsets))


def _box_reduce(plane: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """uint8 [1, H, W] -> [1, H/2^n, W/2^n]: 2x2 box means (rounded), halved while both sides
    are even and stay at least twice the target size; the plane itself when none is.

    OpenCV's INTER_AREA has a fast path for exactly 2x (0.13 ms for a 1280x720 plane here;
    other integer factors took 0.6-1.0 ms). A box mean is the first part of any antialiased
    downscale by far more than 2; the antialiased bilinear resize that follows does the rest
    (tests compare with the full-size path).
    """
    import cv2  # a runtime dependency (setup.py); imported here to keep module import light

    th, tw = int(size[0]), int(size[1])
    a = None
    h, w = plane.shape[-2:]
    while h % 2 == 0 and w % 2 == 0 and h >= 4 * th and w >= 4 * tw:
        a = cv2.resize(plane[0].numpy() if a is None else a, (w // 2, h // 2),
                       interpolation=cv2.INTER_AREA)  # fmt: skip
        h, w = a.shape
    return plane if a is None else torch.from_numpy(a)[None]


class Preprocessor:
    """RGB uint8 [H, W, 3] (numpy or torch) -> normalised float32 [3, h, w] on ``device``."""

    def __init__(
        self,
        size: Sequence[int],
        mean: Sequence[float],
        std: Sequence[float],
        device: str | torch.device = "cpu",
    ):
        self.size = (int(size[0]), int(size[1]))
        self.device = torch.device(device)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(3, 1, 1)

    @torch.inference_mode()
    def __call__(self, rgb: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(np.ascontiguousarray(rgb) if isinstance(rgb, np.ndarray) else rgb)
        x = x.to(self.device, non_blocking=True).permute(2, 0, 1).float().div_(255.0)
        if tuple(x.shape[-2:]) != self.size:
            x = F.interpolate(x[None], size=self.size, mode="bilinear", antialias=True)[0]
        return (x - self.mean) / self.std

    def _resize_u8(self, planes: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """uint8 [C, H, W] (any strides) -> float32 [C, h, w] in 0..255, antialiased bilinear.

        A single plane (I420/NV12 luma or chroma) on the CPU is first box-averaged by an
        factor of 2 with OpenCV, repeatedly (``_box_reduce``): torch's uint8 antialiased kernel
        is fast only for 3-4 channels, and a 1280x720 luma plane took 4.3 ms there.
        """
        size = size or self.size
        if planes.shape[0] == 1 and self.device.type == "cpu" and planes.device.type == "cpu":
            planes = _box_reduce(planes, size)
        x = planes[None].to(self.device, non_blocking=True)
        if self.device.type == "cpu":  # uint8 kernels (channels-last), no full-size float copy
            x = x.contiguous(memory_format=torch.channels_last)
        else:
            x = x.float()
        if tuple(x.shape[-2:]) != tuple(size):
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True)
        return x[0].float()

    @torch.inference_mode()
    def frame(
        self,
        data: np.ndarray | memoryview | bytes,
        fmt: str,
        width: int,
        height: int,
        strides: Sequence[int] | None = None,
        offsets: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """A mapped frame (flat uint8, GstVideoInfo layout) -> normalised float32 [3, h, w]."""
        data = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data
        if fmt in _PACKED:
            bpp, rgb = _PACKED[fmt]
            stride = strides[0] if strides else width * bpp
            offset = offsets[0] if offsets else 0
            pixels = np.lib.stride_tricks.as_strided(
                data[offset:], (height, width, bpp), (stride, bpp, 1), writeable=False
            )
            x = self._resize_u8(_tensor(pixels).permute(2, 0, 1))[list(rgb)] / 255.0
        else:
            y, u, v = (self._resize_u8(_tensor(p)[None])[0] for p in
                       _planes(data, fmt, width, height, strides, offsets))  # fmt: skip
            c, u, v = 1.164 * (y - 16.0), u - 128.0, v - 128.0
            x = torch.stack([c + 1.596 * v, c - 0.392 * u - 0.813 * v, c + 2.017 * u])
            x = x.clamp_(0.0, 255.0) / 255.0
        return (x - self.mean) / self.std

    def _crop_geometry(self, box, width: int, height: int):
        """(zero input [3, h, w], (x0, y0, x1, y1, ox, oy, ow, oh) or None when empty).

        The frame region [x0, x1) x [y0, y1) read for ``box`` and where it lands in the input
        (ox, oy, ow, oh).
        """
        th, tw = self.size
        x, y, w, h = (float(v) for v in box)
        scale = max(w / tw, h / th, 1e-6)  # frame px per model px
        rx0, ry0 = x + w / 2 - tw * scale / 2, y + h / 2 - th * scale / 2
        x0, y0 = max(0, int(np.floor(rx0))), max(0, int(np.floor(ry0)))
        x1 = min(width, int(np.ceil(rx0 + tw * scale)))
        y1 = min(height, int(np.ceil(ry0 + th * scale)))
        out = torch.zeros((3, th, tw), dtype=torch.float32, device=self.device)
        if x1 <= x0 or y1 <= y0:
            return out, None
        ox = min(max(int(round((x0 - rx0) / scale)), 0), tw - 1)
        oy = min(max(int(round((y0 - ry0) / scale)), 0), th - 1)
        ow = max(1, min(tw - ox, int(round((x1 - x0) / scale))))
        oh = max(1, min(th - oy, int(round((y1 - y0) / scale))))
        return out, (x0, y0, x1, y1, ox, oy, ow, oh)

    @torch.inference_mode()
    def crop_rgb(self, rgb: np.ndarray | torch.Tensor, box: Sequence[float]) -> torch.Tensor:
        """``crop`` for an RGB image [H, W, 3] uint8 (numpy, or a torch tensor on any device,
        e.g. a DeepStream surface): -> normalised float32 [3, h, w] on this device."""
        x = torch.as_tensor(rgb)
        out, geometry = self._crop_geometry(box, x.shape[1], x.shape[0])
        if geometry is None:
            return out
        x0, y0, x1, y1, ox, oy, ow, oh = geometry
        part = self._resize_u8(x[y0:y1, x0:x1].permute(2, 0, 1), (oh, ow)) / 255.0
        out[:, oy : oy + oh, ox : ox + ow] = (part - self.mean) / self.std
        return out

    @torch.inference_mode()
    def crop(
        self,
        data: np.ndarray | memoryview | bytes,
        fmt: str,
        width: int,
        height: int,
        box: Sequence[float],
        strides: Sequence[int] | None = None,
        offsets: Sequence[int] | None = None,
    ) -> torch.Tensor:
        """One region of a mapped frame -> normalised float32 [3, h, w], aspect kept.

        ``box`` (x, y, w, h) frame pixels. The region read is the box grown to the model
        input's aspect around its centre (the model was trained on undistorted square clips);
        where that region leaves the frame it is padded with the normalisation mean (0 after
        normalising). Same resize and colour conversion as ``frame``.
        """
        data = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data
        yuv = fmt not in _PACKED
        # the exact luma region, whatever its parity; 2x2-subsampled chroma covers it from
        # [x0 // 2, ceil(x1 / 2)) (at most half a chroma pixel wider at an odd edge)
        out, geometry = self._crop_geometry(box, width, height)
        if geometry is None:
            return out
        x0, y0, x1, y1, ox, oy, ow, oh = geometry
        if not yuv:
            bpp, rgb = _PACKED[fmt]
            stride = strides[0] if strides else width * bpp
            offset = offsets[0] if offsets else 0
            pixels = np.lib.stride_tricks.as_strided(
                data[offset:], (height, width, bpp), (stride, bpp, 1), writeable=False
            )[y0:y1, x0:x1]
            x_ = self._resize_u8(_tensor(pixels).permute(2, 0, 1), (oh, ow))[list(rgb)] / 255.0
        else:
            yp, up, vp = _planes(data, fmt, width, height, strides, offsets)
            cy0, cy1, cx0, cx1 = y0 // 2, (y1 + 1) // 2, x0 // 2, (x1 + 1) // 2
            yy, u, v = (
                self._resize_u8(_tensor(np.ascontiguousarray(p))[None], (oh, ow))[0]
                for p in (yp[y0:y1, x0:x1], up[cy0:cy1, cx0:cx1], vp[cy0:cy1, cx0:cx1])
            )
            c, u, v = 1.164 * (yy - 16.0), u - 128.0, v - 128.0
            x_ = torch.stack([c + 1.596 * v, c - 0.392 * u - 0.813 * v, c + 2.017 * u])
            x_ = x_.clamp_(0.0, 255.0) / 255.0
        out[:, oy : oy + oh, ox : ox + ow] = (x_ - self.mean) / self.std
        return out
