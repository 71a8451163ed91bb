"""Per-object windows: ROIs from a property or from upstream meta -> one engine key per object.

``hcmlaction`` classifies each region of interest (a tracked person, a player) on its own: an
object is keyed by (stream, object id) and gets the engine key ``f"{stream}/{object_id}"``, so
its ring, step state and smoother are its own. This module holds the element-independent part:

* ``parse_rois("src0:x,y,w,h;x,y,w,h|src1:...")``: fixed ROIs per source, like DeepStream's
  ``roi-params-src-N``; a group without ``NAME:`` applies to every stream. ``srcN`` names the
  N-th stream the element saw; any other name must equal a stream id.
* ``check_box(box, width, height)``: a box partly outside the frame is clipped, one wholly
  outside or of zero size is refused; both with a one-line reason (the element warns).
* ``ObjectTracks``: per object its EMA-smoothed box (tracker jitter), its last PTS, eviction of
  objects not seen for ``timeout`` seconds (PTS), a cap of ``max_objects`` per stream.
* ``object_id_of(roi_id, params)``: the tracker id of an upstream meta: a param structure's
  ``object_id`` / ``object-id`` / ``id`` / ``track-id`` field, else the meta's own ``id``.

Boxes are (x, y, w, h) in frame pixels (floats while smoothed, ints when reported).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

__all__ = ["ObjectTracks", "check_box", "object_id_of", "parse_rois", "rois_for_stream"]

Box = tuple[float, float, float, float]
_ID_FIELDS = ("object_id", "object-id", "id", "track-id", "track_id")


def parse_rois(text: str | None) -> dict[str, list[Box]]:
    """``"src0:x,y,w,h;x,y,w,h|src1:x,y,w,h"`` -> {name: [boxes]}; ``"*"`` when unnamed.

    A malformed item is a ValueError naming it (the element turns it into one error line).
    """
    table: dict[str, list[Box]] = {}
    for group in (text or "").split("|"):
        group = group.strip()
        if not group:
            continue
        name, colon, rest = group.partition(":")
        if not colon:
            name, rest = "*", group
        name = name.strip()
        if not re.fullmatch(r"[^\s;,]+", name):
            raise ValueError(f"rois: bad source name {name!r} in {group!r}")
        boxes = table.setdefault(name, [])
        for item in rest.split(";"):
            if not item.strip():
                continue
            parts = item.split(",")
            try:
                box = tuple(float(v) for v in parts)
            except ValueError:
                box = ()
            if len(box) != 4 or not all(math.isfinite(v) for v in box):
                raise ValueError(f"rois: expected x,y,w,h (4 numbers) in {name}, got {item!r}")
            boxes.append(box)  # type: ignore[arg-type]
    return table


def rois_for_stream(table: dict[str, list[Box]], stream: str, index: int) -> list[Box]:
    """The fixed ROIs of a stream: by its id, else ``src<index>``, else the unnamed group."""
    for name in (stream, f"src{index}", "*"):
        if name in table:
            return table[name]
    return []


def check_box(box: Box, width: int, height: int) -> tuple[Box | None, str]:
    """(box clipped to the frame, '') or (None, why) for a box that cannot be used.

    A box partly outside the frame comes back clipped with a reason too (a warning, not a
    refusal); zero or negative size, NaN and wholly-outside boxes come back as None.
    """
    x, y, w, h = (float(v) for v in box)
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        return None, f"box {list(box)} is not finite"
    if w < 1 or h < 1:
        return None, f"zero-size box {_fmt(box)} (w and h must be >= 1 px)"
    x0, y0, x1, y1 = max(0.0, x), max(0.0, y), min(float(width), x + w), min(float(height), y + h)
    if x1 - x0 < 1 or y1 - y0 < 1:
        return None, f"box {_fmt(box)} is outside the {width}x{height} frame"
    clipped = (x0, y0, x1 - x0, y1 - y0)
    if clipped != (x, y, w, h):
        return clipped, f"box {_fmt(box)} is partly outside the {width}x{height} frame; clipped"
    return clipped, ""


def _fmt(box) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box) + "]"


def object_id_of(roi_id: int, params: dict[str, dict]) -> str:
    """The tracker id of an upstream ROI meta (see the module doc), as a string."""
    for fields in params.values():
        for name in _ID_FIELDS:
            value = fields.get(name)
            if value is not None and not isinstance(value, bool):
                return str(value)
    return str(roi_id)


@dataclass
class _Track:
    stream: str
    object_id: str
    box: Box  # smoothed
    last_pts: int


class ObjectTracks:
    """The objects of every stream: smoothed box, last seen PTS, eviction and cap.

    ``update`` returns the object's engine key (``None`` when the stream already has
    ``max_objects`` others: the caller warns); ``expire`` returns the keys of objects not seen
    for more than ``timeout`` seconds of PTS (0: not seen in the newest frame), forgotten here:
    the caller removes them from the engine, so an id that comes back starts afresh.
    ``smoothing`` is the EMA weight of the past box (0 = raw boxes).
    """

    def __init__(self, timeout: float = 1.0, max_objects: int = 16, smoothing: float = 0.5):
        if timeout < 0 or max_objects < 1 or not 0.0 <= smoothing < 1.0:
            raise ValueError("object timeout must be >= 0, max_objects >= 1, 0 <= smoothing < 1")
        self.timeout_ns = int(timeout * 1e9)
        self.max_objects = int(max_objects)
        self.smoothing = float(smoothing)
        self.tracks: dict[str, _Track] = {}

    @staticmethod
    def key(stream: str, object_id: str) -> str:
        return f"{stream}/{object_id}"

    def keys_of(self, stream: str) -> list[str]:
        return [k for k, t in self.tracks.items() if t.stream == stream]

    def update(self, stream: str, object_id: str, box: Box, pts: int) -> str | None:
        key = self.key(stream, object_id)
        track = self.tracks.get(key)
        if track is None:
            if len(self.keys_of(stream)) >= self.max_objects:
                return None
            self.tracks[key] = _Track(stream, object_id, tuple(map(float, box)), int(pts))
            return key
        a = self.smoothing
        track.box = tuple(a * p + (1.0 - a) * float(n) for p, n in zip(track.box, box, strict=True))
        track.last_pts = int(pts)
        return key

    def expire(self, stream: str, pts: int) -> list[str]:
        """Forget the stream's objects last seen more than ``timeout`` before ``pts``."""
        gone = [
            k
            for k, t in self.tracks.items()
            if t.stream == stream and int(pts) - t.last_pts > self.timeout_ns
        ]
        for k in gone:
            del self.tracks[k]
        return gone

    def drop_stream(self, stream: str) -> list[str]:
        gone = self.keys_of(stream)
        for k in gone:
            del self.tracks[k]
        return gone

    def box(self, key: str) -> Box:
        return self.tracks[key].box

    def describe(self, key: str) -> tuple[str, str, list[int]] | None:
        """(stream, object id, box [x, y, w, h] int pixels) of a key, None if not an object."""
        t = self.tracks.get(key)
        if t is None:
            return None
        return t.stream, t.object_id, [int(round(v)) for v in t.box]
