"""The synthetic motion benchmark (``shared/MOTION_BENCH.md``): 12 motion classes, in numpy.

Every clip draws a random background (flat, gradient, noise or texture; it never moves), one or
two main objects (random shape, texture and colours, with an off-centre marker so that rotation
and flips are visible) and, in every class but ``static``, an optional slow distractor. Objects
move by a per-frame similarity transform (centre, radius, angle, vertical flip factor); pixels
are rendered by inverse mapping with 2x2 supersampling, and the ground-truth optical flow of a
pixel is where its object point lands in the next frame.

Conventions: image coordinates, x to the right, y down. ``rotate_cw`` turns clockwise as seen on
screen, which in these coordinates is an increasing angle and a flow field with positive curl
(dvy/dx - dvx/dy > 0). Twins are built as time reversals: a class's twin samples the same
trajectory distribution and plays it backwards, so reversal pairs match in distribution exactly.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hcml.labels import LABELS

__all__ = [
    "SynthClip",
    "SyntheticMotionDataset",
    "clip_seed",
    "render_batch",
    "render_clip",
    "write_dataset",
]

SUPERSAMPLE = 2
SHAPES = ("circle", "ellipse", "rectangle", "triangle", "polygon", "star")
TEXTURES = ("flat", "stripes", "checker", "noise")
BACKGROUNDS = ("flat", "gradient", "noise", "texture")
# The class whose trajectory a twin plays backwards (a self-twin plays its own either way).
_REVERSED_OF = {
    "move_left": "move_right",
    "move_up": "move_down",
    "rotate_ccw": "rotate_cw",
    "zoom_out": "zoom_in",
    "approach": "separate",
}


@dataclass
class SynthClip:
    """One rendered clip.

    frames: uint8 [T, H, W, 3] RGB. flow: float32 [T-1, H, W, 2] (dx, dy) from frame t to t+1,
    or None. label: class id. params: the sampled parameters (JSON-serializable).
    """

    frames: np.ndarray
    flow: np.ndarray | None
    label: int
    params: dict = field(default_factory=dict)


@dataclass
class _Object:
    """An object: shape + texture in local coords u, v in [-1, 1], and its per-frame pose.

    Pose arrays have length T: centre (cx, cy) px, radius px, angle rad, flip factor fy.
    """

    shape: str
    aspect: float
    sides: int
    texture: str
    colours: np.ndarray  # [3, 3] float in [0, 255]: base, second, marker
    noise_grid: np.ndarray  # [8, 8, 3] float, for the noise texture
    tex_freq: float
    tex_angle: float
    cx: np.ndarray
    cy: np.ndarray
    radius: np.ndarray
    angle: np.ndarray
    flip: np.ndarray

    def local_coords(self, x: np.ndarray, y: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Screen points [..] -> local (u, v) at frame t (inverse of the pose)."""
        dx, dy = x - self.cx[t], y - self.cy[t]
        c, s = np.cos(self.angle[t]), np.sin(self.angle[t])
        qx, qy = c * dx + s * dy, -s * dx + c * dy
        fy = self.flip[t] if abs(self.flip[t]) > 1e-3 else np.copysign(1e-3, self.flip[t])
        return qx / self.radius[t], qy / (self.radius[t] * fy)

    def to_screen(self, u: np.ndarray, v: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Local (u, v) -> screen points at frame t."""
        px, py = u * self.radius[t], v * self.radius[t] * self.flip[t]
        c, s = np.cos(self.angle[t]), np.sin(self.angle[t])
        return self.cx[t] + c * px - s * py, self.cy[t] + s * px + c * py

    def inside(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        rho, phi = np.hypot(u, v), np.arctan2(v, u)
        if self.shape == "circle":
            return rho <= 1.0
        if self.shape == "ellipse":
            return u**2 + (v / self.aspect) ** 2 <= 1.0
        if self.shape == "rectangle":
            return (np.abs(u) <= 0.9) & (np.abs(v) <= 0.9 * self.aspect)
        if self.shape == "star":
            return rho <= 0.6 + 0.4 * np.cos(self.sides * phi)
        n = 3 if self.shape == "triangle" else self.sides
        sector = np.pi / n
        return rho * np.cos(np.mod(phi, 2 * sector) - sector) <= np.cos(sector)

    def colour(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Texture colour at local coords: [..., 3] float."""
        base, second, marker = self.colours
        a = u * np.cos(self.tex_angle) + v * np.sin(self.tex_angle)
        if self.texture == "flat":
            w = np.zeros_like(u)
        elif self.texture == "stripes":
            w = (np.sin(self.tex_freq * a) > 0).astype(np.float64)
        elif self.texture == "checker":
            k = self.tex_freq / 3.0
            w = ((np.floor(u * k) + np.floor(v * k)) % 2).astype(np.float64)
        else:
            w = None
        if w is None:
            out = _bilinear(self.noise_grid, (u + 1.0) * 3.5, (v + 1.0) * 3.5)
        else:
            out = base + w[..., None] * (second - base)
        # The marker (upper right in local coords) breaks every symmetry of shape and texture.
        mark = (u - 0.42) ** 2 + (v + 0.42) ** 2 <= 0.3**2
        return np.where(mark[..., None], marker, out)


def _bilinear(grid: np.ndarray, gx: np.ndarray, gy: np.ndarray) -> np.ndarray:
    """Sample grid [h, w, C] at fractional (gx, gy), clamped to the edges: [..., C]."""
    h, w = grid.shape[:2]
    gx, gy = np.clip(gx, 0, w - 1.001), np.clip(gy, 0, h - 1.001)
    x0, y0 = gx.astype(np.int64), gy.astype(np.int64)
    fx, fy = (gx - x0)[..., None], (gy - y0)[..., None]
    top = grid[y0, x0] * (1 - fx) + grid[y0, x0 + 1] * fx
    bottom = grid[y0 + 1, x0] * (1 - fx) + grid[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, size=3)


def _contrasting(rng: np.random.Generator, ref: np.ndarray, min_dist: float = 90.0) -> np.ndarray:
    for _ in range(32):
        c = _random_colour(rng)
        if np.linalg.norm(c - ref) >= min_dist:
            return c
    return 255.0 - ref


def _background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, str]:
    """[S, S, 3] float background at supersampled resolution S = size * SUPERSAMPLE."""
    kind = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    s = size * SUPERSAMPLE
    yy, xx = np.mgrid[0:s, 0:s] / s
    c1, c2 = _random_colour(rng), _random_colour(rng)
    if kind == "flat":
        img = np.broadcast_to(c1, (s, s, 3)).astype(np.float64)
    elif kind == "gradient":
        a = rng.uniform(0, 2 * np.pi)
        w = (xx * np.cos(a) + yy * np.sin(a) + 1.5) / 3.0
        img = c1 + w[..., None] * (c2 - c1)
    elif kind == "noise":
        grid = rng.uniform(0, 255, size=(9, 9, 3))
        img = _bilinear(grid, xx * 8, yy * 8) + rng.normal(0, 6, size=(s, s, 3))
    else:
        f1, f2 = rng.uniform(4, 14, size=2)
        a = rng.uniform(0, np.pi)
        w = 0.5 + 0.25 * (
            np.sin(f1 * np.pi * (xx * np.cos(a) + yy * np.sin(a))) + np.sin(f2 * np.pi * yy)
        )
        img = c1 + w[..., None] * (c2 - c1)
    # Background colours must not swallow objects: keep them a little away from pure extremes.
    return np.clip(img, 0, 255), kind


def _new_object(rng: np.random.Generator, background_mean: np.ndarray) -> dict:
    base = _contrasting(rng, background_mean)
    return dict(
        shape=SHAPES[rng.integers(len(SHAPES))],
        aspect=float(rng.uniform(0.55, 1.0)),
        sides=int(rng.integers(5, 8)),
        texture=TEXTURES[rng.integers(len(TEXTURES))],
        colours=np.stack([base, _contrasting(rng, base, 60), _contrasting(rng, base, 120)]),
        noise_grid=np.clip(base + rng.normal(0, 60, size=(8, 8, 3)), 0, 255),
        tex_freq=float(rng.uniform(6, 14)),
        tex_angle=float(rng.uniform(0, np.pi)),
    )


def _pose(frames: int, cx, cy, radius, angle=0.0, flip=1.0) -> dict:
    full = lambda v: np.broadcast_to(np.asarray(v, dtype=np.float64), (frames,)).copy()
    return dict(cx=full(cx), cy=full(cy), radius=full(radius), angle=full(angle), flip=full(flip))


def _trajectories(
    name: str, rng: np.random.Generator, frames: int, size: int
) -> tuple[list[dict], dict]:
    """Poses of the main objects for a canonical (not time-reversed) class, plus its params."""
    steps = frames - 1
    r = rng.uniform(0.09, 0.15) * size
    margin = r + 2.0
    if name == "static":
        jitter = rng.uniform(-0.15, 0.15, size=(frames, 2))  # < 0.5 px/frame
        cx, cy = rng.uniform(margin, size - margin, size=2)
        pose = _pose(frames, cx + jitter[:, 0], cy + jitter[:, 1], r, rng.uniform(0, 2 * np.pi))
        return [pose], {"jitter_px": float(np.abs(np.diff(jitter, axis=0)).max())}
    if name in ("move_right", "move_down"):
        speed = min(rng.uniform(1.0, 4.0), (size - 2 * margin) / max(steps, 1))
        along = rng.uniform(margin, size - margin - speed * steps) + speed * np.arange(frames)
        across = rng.uniform(margin, size - margin)
        cx, cy = (along, across) if name == "move_right" else (across, along)
        return [_pose(frames, cx, cy, r, rng.uniform(0, 2 * np.pi))], {"speed_px": speed}
    if name == "rotate_cw":
        omega = np.deg2rad(rng.uniform(3.0, 12.0))
        cx, cy = rng.uniform(margin, size - margin, size=2)
        angle = rng.uniform(0, 2 * np.pi) + omega * np.arange(frames)
        return [_pose(frames, cx, cy, r, angle)], {"deg_per_frame": float(np.rad2deg(omega))}
    if name == "zoom_in":
        rate = rng.uniform(0.02, 0.06)
        growth = (1.0 + rate) ** np.arange(frames)
        r0 = min(r, 0.33 * size / growth[-1])
        cx, cy = rng.uniform(r0 * growth[-1] + 2, size - r0 * growth[-1] - 2, size=2)
        pose = _pose(frames, cx, cy, r0 * growth, rng.uniform(0, 2 * np.pi))
        return [pose], {"scale_per_frame": rate}
    if name == "separate":
        r1, r2 = rng.uniform(0.07, 0.11, size=2) * size
        gap0 = r1 + r2 + rng.uniform(2.0, 6.0)
        for attempt in range(100):
            v1, v2 = rng.uniform(1.0, 3.0, size=2) * (0.98 ** max(attempt - 50, 0))
            a = rng.uniform(0, 2 * np.pi)
            u = np.array([np.cos(a), np.sin(a)])
            d1 = gap0 * r1 / (r1 + r2) + v1 * np.arange(frames)
            d2 = gap0 * r2 / (r1 + r2) + v2 * np.arange(frames)
            # The midpoint m keeps both end positions (m - u d1, m + u d2) inside the frame;
            # the start positions lie between them, so they fit too.
            lo = np.maximum(r1 + 1 + u * d1[-1], r2 + 1 - u * d2[-1])
            hi = np.minimum(size - r1 - 1 + u * d1[-1], size - r2 - 1 - u * d2[-1])
            if np.all(lo <= hi):
                break
        m = rng.uniform(lo, np.maximum(lo, hi))
        poses = [
            _pose(frames, m[0] - u[0] * d1, m[1] - u[1] * d1, r1, rng.uniform(0, 2 * np.pi)),
            _pose(frames, m[0] + u[0] * d2, m[1] + u[1] * d2, r2, rng.uniform(0, 2 * np.pi)),
        ]
        return poses, {"speeds_px": [float(v1), float(v2)], "axis_deg": float(np.rad2deg(a))}
    if name == "flip_upside_down":
        duration = rng.uniform(0.5, 1.0) * steps
        start = rng.uniform(0, steps - duration)
        phase = np.clip((np.arange(frames) - start) / duration, 0, 1)
        cx, cy = rng.uniform(margin, size - margin, size=2)
        pose = _pose(frames, cx, cy, r, rng.uniform(-0.3, 0.3), np.cos(np.pi * phase))
        return [pose], {"flip_frames": float(duration)}
    raise KeyError(name)


def clip_seed(seed: int, class_id: int, index: int) -> np.random.SeedSequence:
    """The seed of clip ``index`` of class ``class_id`` in a dataset made with ``seed``."""
    return np.random.SeedSequence([seed, class_id, index])


def render_clip(
    class_id: int,
    rng: int | np.random.Generator | np.random.SeedSequence,
    frames: int = 16,
    size: int = 112,
    with_flow: bool = False,
    noise: bool = True,
    distractor: bool | None = None,
) -> SynthClip:
    """Render one clip of ``class_id``: frames uint8 [T, S, S, 3], flow float32 [T-1, S, S, 2].

    ``noise=False`` turns off sensor noise and ``distractor=False`` the slow distractor (for
    exact checks); ``distractor=None`` draws one in half of the non-static clips.
    """
    if not 0 <= class_id < len(LABELS):
        raise ValueError(f"class_id must be in 0..{len(LABELS) - 1}, got {class_id}")
    if frames < 2 or size < 32:
        raise ValueError(f"need frames >= 2 and size >= 32, got frames={frames}, size={size}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    name = LABELS[class_id]
    background, bg_kind = _background(rng, size)
    canonical = _REVERSED_OF.get(name, name)
    poses, params = _trajectories(canonical, rng, frames, size)
    if canonical != name:  # the twin: the same trajectory played backwards
        poses = [{k: v[::-1].copy() for k, v in pose.items()} for pose in poses]
    bg_mean = background.reshape(-1, 3).mean(0)
    objects = [_Object(**_new_object(rng, bg_mean), **pose) for pose in poses]
    draw = rng.random() < 0.5 if distractor is None else distractor
    if name != "static" and draw:  # slow distractor, drawn below the main objects
        speed, a = rng.uniform(0.1, 0.9), rng.uniform(0, 2 * np.pi)
        rd = rng.uniform(0.05, 0.08) * size
        x0, y0 = rng.uniform(rd, size - rd, size=2)
        t = np.arange(frames)
        pose = _pose(frames, x0 + speed * np.cos(a) * t, y0 + speed * np.sin(a) * t, rd)
        objects.insert(0, _Object(**_new_object(rng, bg_mean), **pose))
        params["distractor_px"] = float(speed)
    sigma = float(rng.uniform(0.0, 3.0)) if noise else 0.0

    s = size * SUPERSAMPLE
    sub = (np.arange(s) + 0.5) / SUPERSAMPLE - 0.5
    yy, xx = np.meshgrid(sub, sub, indexing="ij")
    out = np.empty((frames, size, size, 3), dtype=np.uint8)
    for t in range(frames):
        canvas = background.copy()
        for obj in objects:
            u, v = obj.local_coords(xx, yy, t)
            mask = obj.inside(u, v)
            canvas[mask] = obj.colour(u[mask], v[mask])
        img = canvas.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE, 3).mean((1, 3))
        if sigma > 0:
            img = img + rng.normal(0, sigma, size=img.shape)
        out[t] = np.clip(np.rint(img), 0, 255).astype(np.uint8)

    flow = _flow(objects, frames, size) if with_flow else None
    params.update(
        name=name,
        background=bg_kind,
        shapes=[o.shape for o in objects],
        textures=[o.texture for o in objects],
        noise_sigma=sigma,
    )
    return SynthClip(frames=out, flow=flow, label=class_id, params=params)


def _flow(objects: list[_Object], frames: int, size: int) -> np.ndarray:
    """Ground-truth flow at pixel centres: float32 [T-1, H, W, 2]; the top object wins."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    flow = np.zeros((frames - 1, size, size, 2), dtype=np.float32)
    for t in range(frames - 1):
        for obj in objects:
            u, v = obj.local_coords(xx, yy, t)
            mask = obj.inside(u, v)
            nx, ny = obj.to_screen(u[mask], v[mask], t + 1)
            flow[t][mask] = np.stack([nx - xx[mask], ny - yy[mask]], -1)
    return flow


def render_batch(
    batch_size: int, seed: int, frames: int = 16, size: int = 112
) -> tuple[np.ndarray, np.ndarray]:
    """A class-balanced batch: (uint8 [B, T, H, W, 3], int64 [B])."""
    labels = np.arange(batch_size, dtype=np.int64) % len(LABELS)
    clips = [
        render_clip(int(c), clip_seed(seed, int(c), i), frames, size).frames
        for i, c in enumerate(labels)
    ]
    return np.stack(clips), labels


class SyntheticMotionDataset(torch.utils.data.IterableDataset):
    """Infinite (or ``length``-limited), seeded, class-balanced stream of rendered clips.

    Yields ``(clip uint8 tensor [T, H, W, 3], label int)``. Clip ``i`` has class ``i % 12`` and
    seed ``clip_seed(seed, class, i)``; DataLoader workers take disjoint indices, so the stream is
    the same whatever the number of workers.
    """

    def __init__(self, seed: int = 0, frames: int = 16, size: int = 112, length: int | None = None):
        super().__init__()
        self.seed, self.frames, self.size, self.length = seed, frames, size, length

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int]]:
        info = torch.utils.data.get_worker_info()
        start, step = (info.id, info.num_workers) if info is not None else (0, 1)
        i = start
        while self.length is None or i < self.length:
            c = i % len(LABELS)
            clip = render_clip(c, clip_seed(self.seed, c, i), self.frames, self.size)
            yield torch.from_numpy(clip.frames), c
            i += step


def write_dataset(
    out: str | os.PathLike,
    clips_per_class: int,
    frames: int = 16,
    size: int = 112,
    seed: int = 0,
    flow: bool = False,
    fps: int = 25,
    progress: bool = True,
) -> Path:
    """Write ``<out>/<class>/<class>_NNNN.mp4`` (+ ``.flow.npz``), ``labels.txt``, ``index.csv``.

    Clip (seed, class, index) is the same whatever ``clips_per_class`` is. ``params.jsonl``
    records every clip's sampled parameters.
    """
    from tqdm import tqdm

    from hcml.data.video import write_video

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "labels.txt").write_text("\n".join(LABELS) + "\n")
    rows: list[tuple[str, str]] = []
    jobs = [(c, i) for c in range(len(LABELS)) for i in range(clips_per_class)]
    with open(out / "params.jsonl", "w") as meta:
        for c, i in tqdm(jobs, desc="rendering", unit="clip", disable=not progress):
            clip = render_clip(c, clip_seed(seed, c, i), frames, size, with_flow=flow)
            rel = Path(LABELS[c]) / f"{LABELS[c]}_{i:04d}.mp4"
            write_video(out / rel, clip.frames, fps=fps)
            if flow:
                np.savez_compressed(out / rel.with_suffix(".flow.npz"), flow=clip.flow)
            rows.append((rel.as_posix(), LABELS[c]))
            meta.write(json.dumps({"path": rel.as_posix(), **clip.params}) + "\n")
    with open(out / "index.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        writer.writerows(rows)
    return out
