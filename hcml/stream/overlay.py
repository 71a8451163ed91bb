"""Drawing for ``hcmloverlay``: label, score bar and a motion-energy thumbnail, in place.

``OverlayPainter.paint(rgb, label, score)`` draws on an RGB(A)/BGR(x) view [H, W, C] uint8
(numpy, writable). ``paint_objects(rgb, objects)`` draws per-object boxes (x, y, w, h frame
pixels) with the object's id, label and score above each box. The motion picture is
|frame t - frame t-1| of a downsampled grey copy, shown top-right; text uses Pillow's
built-in bitmap font.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["OverlayPainter"]


class OverlayPainter:
    """Keeps the previous frame's thumbnail for the motion picture; one per stream."""

    def __init__(self, thumb: int = 64, channels_rgb: tuple[int, int, int] = (0, 1, 2)):
        self.thumb = thumb
        self.rgb = channels_rgb  # where R, G, B live in the frame's channels
        self.prev: np.ndarray | None = None
        self.font = ImageFont.load_default()

    def reset(self) -> None:
        self.prev = None

    def motion_energy(self, frame: np.ndarray) -> np.ndarray:
        """uint8 [h, w] |grey_t - grey_t-1|, at most ``thumb`` px a side (0 on the 1st frame)."""
        h, w = frame.shape[:2]
        target = max(8, min(self.thumb, max(h, w) // 3))  # at most a third of the frame
        step = -(-max(h, w) // target)
        grey = frame[::step, ::step, list(self.rgb)].astype(np.float32).mean(-1)
        energy = (
            np.zeros_like(grey)
            if self.prev is None or self.prev.shape != grey.shape
            else (np.abs(grey - self.prev))
        )
        self.prev = grey
        return np.clip(energy * 4.0, 0, 255).astype(np.uint8)

    def paint(self, frame: np.ndarray, label: str | None, score: float, motion: bool = True):
        """Draw in place on ``frame`` [H, W, C] uint8 (the motion picture only if ``motion``)."""
        h, w = frame.shape[:2]
        energy = self.motion_energy(frame) if motion else None  # from the clean frame
        if label is not None:
            self._label(frame, label, score)
        if energy is not None:  # drawn last: on top of a label box that reaches the right edge
            eh, ew = min(energy.shape[0], h), min(energy.shape[1], w)
            for c in self.rgb:
                frame[:eh, w - ew :, c] = energy[:eh, :ew]

    def _label(self, frame: np.ndarray, label: str, score: float) -> None:
        h, w = frame.shape[:2]
        text = f"{label} {score:.2f}"
        box_w, box_h = min(w, 8 + 7 * len(text)), min(h, 30)
        patch = Image.new("RGB", (box_w, box_h), (0, 0, 0))
        draw = ImageDraw.Draw(patch)
        draw.text((4, 2), text, fill=(255, 255, 255), font=self.font)
        bar = int(round((box_w - 8) * max(0.0, min(1.0, score))))
        draw.rectangle([4, box_h - 9, 4 + bar, box_h - 4], fill=(40, 220, 60))
        pixels = np.asarray(patch)
        region = frame[:box_h, :box_w]
        for dst, src in zip(self.rgb, range(3), strict=True):
            region[..., dst] = (region[..., dst] * 0.35 + pixels[..., src] * 0.65).astype(np.uint8)

    def paint_objects(self, frame: np.ndarray, objects: list[tuple]) -> None:
        """Draw ``[(box, object_id, label or None, score)]`` in place on ``frame`` [H, W, C]."""
        h, w = frame.shape[:2]
        for box, object_id, label, score in objects:
            x, y, bw, bh = (int(round(v)) for v in box)
            x0, y0, x1, y1 = max(0, x), max(0, y), min(w, x + bw) - 1, min(h, y + bh) - 1
            if x1 <= x0 or y1 <= y0:
                continue
            colour = _colour(str(object_id))
            for c, value in zip(self.rgb, colour, strict=True):  # a 2 px frame
                frame[y0 : y0 + 2, x0 : x1 + 1, c] = value
                frame[y1 - 1 : y1 + 1, x0 : x1 + 1, c] = value
                frame[y0 : y1 + 1, x0 : x0 + 2, c] = value
                frame[y0 : y1 + 1, x1 - 1 : x1 + 1, c] = value
            text = f"#{object_id} {label} {score:.2f}" if label else f"#{object_id}"
            self._tag(frame, text, x0, y0, colour)

    def _tag(self, frame: np.ndarray, text: str, x: int, y: int, colour) -> None:
        """A text tag just above (x, y), or inside the box when there is no room above."""
        h, w = frame.shape[:2]
        tw, th = min(w, 6 + 6 * len(text)), 13
        ty = y - th if y >= th else y
        tx = min(x, max(0, w - tw))
        patch = Image.new("RGB", (tw, th), tuple(int(v) for v in colour))
        ImageDraw.Draw(patch).text((3, 1), text, fill=(0, 0, 0), font=self.font)
        pixels = np.asarray(patch)
        region = frame[ty : ty + th, tx : tx + tw]
        rh, rw = region.shape[:2]
        for dst, src in zip(self.rgb, range(3), strict=True):
            region[..., dst] = pixels[:rh, :rw, src]


def _colour(key: str) -> tuple[int, int, int]:
    """A bright colour per object id (stable across frames and runs)."""
    import zlib

    hue = (zlib.crc32(key.encode()) % 360) / 60.0
    x = int(255 * (1 - abs(hue % 2 - 1)))
    return [(255, x, 0), (x, 255, 0), (0, 255, x), (0, x, 255), (x, 0, 255), (255, 0, x)][
        int(hue) % 6
    ]
