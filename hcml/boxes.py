"""Axis-aligned boxes ``(x, y, w, h)`` in pixels: overlap measures shared by the detectors
(``hcml.stream.detect``) and the per-object scoring (``hcml.data.scenes``)."""

from __future__ import annotations

__all__ = ["cover", "intersection", "iou"]


def intersection(a, b) -> float:
    """Area of the overlap of two boxes (0 when they do not meet)."""
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    return iw * ih


def iou(a, b) -> float:
    """Intersection over union of two boxes."""
    inter = intersection(a, b)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


def cover(box, gt) -> float:
    """The share of ``box`` inside ``gt`` (0 for an empty ``box``)."""
    area = box[2] * box[3]
    return float(intersection(box, gt) / area) if area > 0 else 0.0
