"""A small CPU detector + tracker for demos and tests (``hcmldetect``, ``hcml run --detect``).

``HogPeopleDetector``: OpenCV's bundled HOG + linear SVM people detector (no download), on a
grey frame [H, W] uint8 (optionally downscaled first), non-maximum suppression, boxes
(x, y, w, h) in frame pixels with their SVM weight. ``IouTracker``: greedy IoU matching of each
frame's boxes to the live tracks; a track not matched for ``max_missed`` detection rounds ends,
ids are never reused (a person who leaves and comes back gets a new id: fresh state in
``hcmlaction``). ``grow_box``: a box smaller than a minimum size grown around its centre,
inside the frame (a moving part gets context and a box that holds still while it moves).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hcml.boxes import iou

__all__ = ["HogPeopleDetector", "IouTracker", "MotionDetector", "Track", "grow_box"]


class HogPeopleDetector:
    """Upright people, about 64x128 px and larger (at ``scale``): grey [H, W] -> boxes."""

    def __init__(self, scale: float = 1.0, min_weight: float = 0.5, nms_iou: float = 0.4):
        import cv2

        self.cv2 = cv2
        self.scale, self.min_weight, self.nms_iou = float(scale), float(min_weight), nms_iou
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def __call__(self, grey: np.ndarray) -> list[tuple[tuple[int, int, int, int], float]]:
        """grey uint8 [H, W] -> [((x, y, w, h), weight)], strongest first, NMS applied."""
        img = np.ascontiguousarray(grey)
        if self.scale != 1.0:
            img = self.cv2.resize(img, None, fx=self.scale, fy=self.scale)
        rects, weights = self.hog.detectMultiScale(
            img, winStride=(8, 8), padding=(8, 8), scale=1.05
        )
        found = [
            (tuple(int(round(v / self.scale)) for v in r), float(w))
            for r, w in zip(rects, np.ravel(weights), strict=True)
            if w >= self.min_weight
        ]
        found.sort(key=lambda rw: -rw[1])
        kept: list[tuple[tuple[int, int, int, int], float]] = []
        for box, w in found:  # greedy NMS; also drops a box mostly inside a stronger one
            if all(iou(box, k) < self.nms_iou and not _inside(box, k) for k, _ in kept):
                kept.append((box, w))
        return kept


class MotionDetector:
    """What moves: grey frames [H, W] uint8, every frame in order -> boxes of changed regions.

    Frame differencing over a short history (a motion-history image): a pixel is moving while
    it changed by more than ``threshold`` grey levels (after a ``blur`` x ``blur`` Gaussian)
    between two consecutive frames within the last ``history`` frames. The moving pixels are
    dilated by ``gap`` px (parts of one object join), split into connected components, those
    with fewer than ``min_area`` moving pixels dropped, and boxes that overlap merged. A box is
    where something moved during the last ``history`` frames (an object's swept area), so it
    holds still while the object moves inside it. The default history, 32 frames, is two of
    the shipped model's 16-frame window spans: an object whose whole look changes keeps its
    whole box for the next window even where its next look leaves part of it unchanged (with
    16 frames that part dropped out of the box exactly when the next change came, and the
    object got a smaller box or two). ``update`` takes every frame; ``boxes`` reads the
    regions (any frame, e.g. every ``interval``-th); ``__call__`` does both.
    """

    def __init__(
        self,
        threshold: float = 6.0,
        history: int = 32,
        min_area: int = 64,
        gap: int = 0,
        blur: int = 3,
    ):
        import cv2

        if threshold <= 0 or history < 1 or min_area < 1 or gap < 0 or blur < 1 or blur % 2 == 0:
            raise ValueError(
                "motion detector: threshold > 0, history >= 1, min_area >= 1, gap >= 0 and an "
                f"odd blur >= 1 expected, got {threshold}, {history}, {min_area}, {gap}, {blur}"
            )
        self.cv2 = cv2
        self.threshold, self.history = float(threshold), int(history)
        self.min_area, self.gap, self.blur = int(min_area), int(gap), int(blur)
        self.reset()

    def reset(self) -> None:
        """Forget the history (a new stream or a seek)."""
        self.prev: np.ndarray | None = None
        self.age: np.ndarray | None = None  # frames since each pixel last changed

    def update(self, grey: np.ndarray) -> None:
        """Feed the next frame, grey uint8 [H, W]."""
        cv2 = self.cv2
        g = np.ascontiguousarray(grey, dtype=np.uint8)
        if self.blur > 1:
            g = cv2.GaussianBlur(g, (self.blur, self.blur), 0)
        if self.prev is None or self.prev.shape != g.shape:
            self.prev = g
            self.age = np.full(g.shape, self.history, np.int32)
            return
        changed = cv2.absdiff(g, self.prev) > self.threshold
        self.prev = g
        np.minimum(self.age + 1, self.history, out=self.age)
        self.age[changed] = 0

    def boxes(self) -> list[tuple[tuple[int, int, int, int], float]]:
        """[((x, y, w, h), share of moving pixels in the box)], largest first."""
        if self.age is None:
            return []
        cv2 = self.cv2
        moving = (self.age < self.history).astype(np.uint8)
        grown = moving
        if self.gap:
            k = 2 * self.gap + 1
            grown = cv2.dilate(moving, np.ones((k, k), np.uint8))
        n, labels, stats, _ = cv2.connectedComponentsWithStats(grown, connectivity=8)
        h, w = moving.shape
        found = []
        for i in range(1, n):
            x, y, bw, bh, _ = (int(v) for v in stats[i])
            # back to the moving pixels' extent (the dilation grew it by ``gap``)
            x0, y0 = min(x + self.gap, w - 1), min(y + self.gap, h - 1)
            x1, y1 = max(x0 + 1, x + bw - self.gap), max(y0 + 1, y + bh - self.gap)
            found.append([x0, y0, x1, y1])
        found = _merge_overlapping(found)
        out = []
        for x0, y0, x1, y1 in found:
            area = int(moving[y0:y1, x0:x1].sum())
            if area >= self.min_area:
                out.append(((x0, y0, x1 - x0, y1 - y0), area / ((x1 - x0) * (y1 - y0))))
        out.sort(key=lambda bs: -bs[0][2] * bs[0][3])
        return out

    def __call__(self, grey: np.ndarray) -> list[tuple[tuple[int, int, int, int], float]]:
        self.update(grey)
        return self.boxes()


def grow_box(
    box: tuple[int, int, int, int], min_size: int, width: int, height: int
) -> tuple[int, int, int, int]:
    """``box`` (x, y, w, h) with each side grown to at least ``min_size`` px around its centre,
    moved back inside the ``width`` x ``height`` frame (a side longer than the frame is the
    frame's). Sides already that long stay as they are; ``min_size`` 0 returns the box.

    What a motion detector finds of an object that only partly moves is its moving part, whose
    box grows while the part sweeps across the object; grown to ``min_size`` (the model's input
    size, 64 px for the shipped card) the box holds still while the part moves inside it and
    the crop shows the part with its surroundings, not blown up.
    """
    x, y, w, h = box
    out = []
    for lo, side, limit in ((x, w, width), (y, h, height)):
        if side >= min_size:
            out.append((lo, side))
            continue
        side2 = min(min_size, limit)
        lo2 = int(round(lo + side / 2 - side2 / 2))
        out.append((min(max(0, lo2), limit - side2), side2))
    (x2, w2), (y2, h2) = out
    return (x2, y2, w2, h2)


def _merge_overlapping(boxes: list[list[int]]) -> list[list[int]]:
    """Union (x0, y0, x1, y1) boxes that overlap until none do."""
    boxes = [list(b) for b in boxes]
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    boxes[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return boxes


def _inside(a, b, share: float = 0.8) -> bool:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0, min(ay + ah, by + bh) - max(ay, by))
    return iw * ih >= share * aw * ah


@dataclass
class Track:
    id: int
    box: tuple[int, int, int, int]
    missed: int = 0
    hits: int = 1


class IouTracker:
    """Greedy IoU association; ``update(boxes)`` -> the live tracks (ids from 1)."""

    def __init__(self, min_iou: float = 0.3, max_missed: int = 2):
        self.min_iou, self.max_missed = min_iou, max_missed
        self.tracks: list[Track] = []
        self.next_id = 1

    def update(self, boxes: list[tuple[int, int, int, int]]) -> list[Track]:
        pairs = sorted(
            (
                (iou(t.box, b), ti, bi)
                for ti, t in enumerate(self.tracks)
                for bi, b in enumerate(boxes)
            ),
            reverse=True,
        )
        used_t, used_b = set(), set()
        for score, ti, bi in pairs:
            if score < self.min_iou:
                break
            if ti in used_t or bi in used_b:
                continue
            used_t.add(ti)
            used_b.add(bi)
            t = self.tracks[ti]
            t.box, t.missed, t.hits = tuple(boxes[bi]), 0, t.hits + 1
        for ti, t in enumerate(self.tracks):
            if ti not in used_t:
                t.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        for bi, b in enumerate(boxes):
            if bi not in used_b:
                self.tracks.append(Track(self.next_id, tuple(b)))
                self.next_id += 1
        return [t for t in self.tracks if t.missed == 0]
