"""A small CPU detector + tracker for demos and tests (``hcmldetect``, ``hcml run --detect``).

``HogPeopleDetector``: OpenCV's bundled HOG + linear SVM people detector (no download), on a
grey frame [H, W] uint8 (optionally downscaled first), non-maximum suppression, boxes
(x, y, w, h) in frame pixels with their SVM weight. ``IouTracker``: greedy IoU matching of each
frame's boxes to the live tracks; a track not matched for ``max_missed`` detection rounds ends,
ids are never reused (a person who leaves and comes back gets a new id: fresh state in
``hcmlaction``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["HogPeopleDetector", "IouTracker", "Track", "iou"]


def iou(a, b) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return float(inter / union) if union > 0 else 0.0


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
