"""Multi-object scenes for per-object actions: several objects, each with its own motion class.

``render_scene`` lays 2-4 (any number of) objects side by side on a canvas: each object is a
tile rendered by ``hcml.data.synth.render_clip`` at 112 px (its own background, shapes and one
motion class) and resized to the tile's size, so its ground-truth box is the tile and its label
is the tile's class. A scene is
``segments`` back-to-back clips of ``segment_frames`` frames; an object keeps its class and box
for the whole scene and gets a fresh clip every segment (a window of ``segment_frames``
frames that starts at a segment boundary sees exactly one clip, as in training). Objects can
``enter`` late or ``leave`` early (their tile is canvas before/after).

``score_events`` scores an element's JSON lines against the scene: the share of (object,
window) pairs whose label is the object's class. Objects are matched to predictions by box
(IoU >= 0.5 with the ground truth), so the same scorer works for fixed ROIs (ids = indices)
and for a detector's own ids. ``score_detections`` scores a detector's boxes: a line counts
for the object whose box covers most of the line's box (>= ``min_cover`` of it); lines of no
object and every window an object should have had but did not get count as wrong.

Shapes: frames uint8 [T, H, W, 3] RGB; boxes (x, y, w, h) frame pixels.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hcml.boxes import cover, iou
from hcml.data.synth import render_clip
from hcml.labels import LABELS

__all__ = [
    "Scene",
    "SceneObject",
    "render_scene",
    "score_detections",
    "score_events",
    "write_scene",
]

RENDER = 112  # px: the size clips are rendered at (the generator's and the model's training size)


@dataclass
class SceneObject:
    """One object: its id, motion class, box and the frames [enter, leave) it is visible in."""

    id: int
    class_id: int
    box: tuple[int, int, int, int]
    enter: int = 0
    leave: int | None = None  # None: until the end

    @property
    def label(self) -> str:
        return LABELS[self.class_id]


@dataclass
class Scene:
    frames: np.ndarray  # uint8 [T, H, W, 3]
    objects: list[SceneObject] = field(default_factory=list)
    fps: int = 25
    segment_frames: int = 16

    def rois_property(self, stream: str = "src0") -> str:
        """The objects' boxes as ``hcmlaction``'s ``rois`` value (ids = list order)."""
        return f"{stream}:" + ";".join(",".join(map(str, o.box)) for o in self.objects)

    def truth(self) -> list[dict]:
        return [asdict(o) | {"label": o.label} for o in self.objects]


def _tile(clip, size: int) -> np.ndarray:
    """A clip rendered at ``RENDER`` px resized to ``size`` (antialiased): uint8 [T, s, s, 3].

    The generator's trajectories are drawn for its training size (smaller sizes can leave no
    room for some classes' paths); the model sees every crop resized to its input anyway.
    """
    import torch
    import torch.nn.functional as F

    frames = clip.frames
    if size == frames.shape[1]:
        return frames
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
    return x.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


def _layout(rng, n: int, width: int, height: int, tiles: list[int]) -> list[tuple[int, int]]:
    """Non-overlapping top-left corners for square tiles (rejection sampling, then a grid)."""
    for _ in range(2000):
        spots: list[tuple[int, int, int]] = []
        for s in tiles:
            x, y = int(rng.integers(0, width - s + 1)), int(rng.integers(0, height - s + 1))
            if all(
                x + s + 4 <= ox or ox + os_ + 4 <= x or y + s + 4 <= oy or oy + os_ + 4 <= y
                for ox, oy, os_ in spots
            ):
                spots.append((x, y, s))
        if len(spots) == n:
            return [(x, y) for x, y, _ in spots]
    raise ValueError(f"cannot place {n} tiles of {tiles} px in a {width}x{height} canvas")


def render_scene(
    seed: int,
    n_objects: int = 3,
    width: int = 320,
    height: int = 240,
    segments: int = 3,
    segment_frames: int = 16,
    tile: tuple[int, int] = (80, 112),
    classes: list[int] | None = None,
    enter: list[int] | None = None,
    leave: list[int | None] | None = None,
    style: str = "classic",
) -> Scene:
    """A scene of ``n_objects`` objects (see the module doc); deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    if classes is None:
        classes = [int(c) for c in rng.choice(len(LABELS), size=n_objects, replace=False)]
    if len(classes) != n_objects:
        raise ValueError(f"{n_objects} objects but {len(classes)} classes")
    sizes = [int(rng.integers(tile[0] // 2, tile[1] // 2 + 1)) * 2 for _ in range(n_objects)]
    corners = _layout(rng, n_objects, width, height, sizes)
    total = segments * segment_frames
    canvas = np.full((height, width, 3), 96, np.uint8)
    canvas += rng.integers(0, 12, size=(height, width, 3), dtype=np.uint8)  # faint texture
    frames = np.repeat(canvas[None], total, axis=0)
    objects = []
    for i, (cls, s, (x, y)) in enumerate(zip(classes, sizes, corners, strict=True)):
        first = (enter or [0] * n_objects)[i]
        last = (leave or [None] * n_objects)[i]
        objects.append(SceneObject(i, cls, (x, y, s, s), first, last))
        for k in range(segments):
            clip = _tile(render_clip(cls, rng, frames=segment_frames, size=RENDER, style=style), s)
            for t in range(segment_frames):
                f = k * segment_frames + t
                if f >= first and (last is None or f < last):
                    frames[f, y : y + s, x : x + s] = clip[t]
    return Scene(frames, objects, segment_frames=segment_frames)


def write_scene(scene: Scene, path: str | Path, crf: int = 12) -> Path:
    """The scene as an H.264 MP4 plus ``<path>.json`` (objects, fps, segment length)."""
    from hcml.data.video import write_video

    path = Path(path)
    write_video(path, scene.frames, fps=scene.fps, crf=crf)
    meta = {"fps": scene.fps, "segment_frames": scene.segment_frames, "objects": scene.truth()}
    path.with_suffix(path.suffix + ".json").write_text(json.dumps(meta, indent=1))
    return path


def score_events(events: list[dict], objects: list[SceneObject], min_iou: float = 0.5) -> dict:
    """Per-object accuracy of JSON lines (with ``box``) against the scene's objects.

    A line counts for the ground-truth object its box overlaps most (IoU >= ``min_iou``);
    lines matching no object are counted in ``unmatched``. Returns {"pairs", "right",
    "accuracy", "unmatched", "missed": objects with no line, "per_object": {id: [right, n]},
    "per_class": {label: [right, n]}}.
    """
    per = {o.id: [0, 0] for o in objects}
    unmatched = 0
    for e in events:
        if e.get("box") is None:
            continue
        best = max(objects, key=lambda o: iou(o.box, e["box"]))
        if iou(best.box, e["box"]) < min_iou:
            unmatched += 1
            continue
        per[best.id][1] += 1
        per[best.id][0] += int(e["class_id"] == best.class_id)
    right, pairs = sum(r for r, _ in per.values()), sum(n for _, n in per.values())
    return {
        "pairs": pairs,
        "right": right,
        "accuracy": right / pairs if pairs else 0.0,
        "unmatched": unmatched,
        "missed": [i for i, (_, n) in per.items() if n == 0],
        "per_object": per,
        "per_class": _per_class(per, objects),
    }


def _per_class(per: dict[int, list[int]], objects: list[SceneObject]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for o in objects:
        acc = out.setdefault(o.label, [0, 0])
        acc[0] += per[o.id][0]
        acc[1] += per[o.id][1]
    return out


def score_detections(
    events: list[dict], objects: list[SceneObject], windows: int, min_cover: float = 0.5
) -> dict:
    """Per-object accuracy of JSON lines whose boxes come from a detector, strictly counted.

    A line counts for the object whose ground-truth box covers the largest share of the line's
    box, if that share is >= ``min_cover`` (a detector's box may be the part that moves, so
    IoU would be unfair to it); right when its label is that object's class. Wrong pairs:
    lines of a box no object covers (``false``: a false detection's windows), and for every
    object each of the ``windows`` windows it should have had but got no line for
    (``shortfall``; an object never found is ``windows`` wrong pairs). A line more than
    ``windows`` for one object (an id switch) is a pair like any other.
    Returns {"pairs", "right", "accuracy", "false", "shortfall", "missed": objects with no
    line, "per_object": {id: [right, lines]}, "per_class": {label: [right, pairs]}}.
    """
    per = {o.id: [0, 0] for o in objects}
    false = 0
    for e in events:
        if e.get("box") is None:
            continue
        best = max(objects, key=lambda o: cover(e["box"], o.box))
        if cover(e["box"], best.box) < min_cover:
            false += 1
            continue
        per[best.id][1] += 1
        per[best.id][0] += int(e["class_id"] == best.class_id)
    short = {i: max(0, windows - n) for i, (_, n) in per.items()}
    right = sum(r for r, _ in per.values())
    pairs = sum(n for _, n in per.values()) + false + sum(short.values())
    per_class = _per_class({i: [r, n + short[i]] for i, (r, n) in per.items()}, objects)
    return {
        "pairs": pairs,
        "right": right,
        "accuracy": right / pairs if pairs else 0.0,
        "false": false,
        "shortfall": sum(short.values()),
        "missed": [i for i, (_, n) in per.items() if n == 0],
        "per_object": per,
        "per_class": per_class,
    }
