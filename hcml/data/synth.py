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

Styles (``Style``, ``STYLES``; ``docs/TRAINING.md``, "Generator styles"): ``classic`` is the
renderer above, byte for byte. ``train`` and ``style_shift`` add photo textures and backgrounds
(``hcml.data.textures``, disjoint photo sources a split), a moving camera (pan, shake), blur,
sensor noise, a lighting ramp, more or fewer and larger or smaller objects and H.264 at a
per-clip CRF; the two draw from disjoint shapes, texture kinds, background kinds and photos,
so ``style_shift`` is a generalisation check that shares nothing of the look with ``train``.
With a moving camera the whole picture moves by the camera's offset: a label's motion is the
object's motion relative to the background (the background never moves in the world), and the
ground-truth flow is the true screen flow (camera plus object).
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
    "STYLES",
    "Style",
    "SynthClip",
    "get_style",
    "h264_roundtrip",
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


@dataclass(frozen=True)
class Style:
    """The look of a generated clip; every knob a range or a probability, drawn per clip.

    textures: the texture-bank split photos come from (None: no photos). shapes,
    object_textures, backgrounds: kinds drawn uniformly. marker: probability of the off-centre
    marker (always drawn on flat objects). radius_scale: object size factor. distractors: count
    range (inclusive) of slow distractors in non-static clips. pan_px / pan_prob: camera pan
    speed (px/frame, up to) and how often the camera pans (never in ``static``). shake_px: std
    of the camera's random-walk step (px/frame). blur: Gaussian sigma (px). noise: sensor noise
    sigma (0..255). lighting: the brightness may drift by up to this fraction over the clip.
    crf: H.264 CRF range when a clip is encoded.
    """

    name: str
    textures: str | None
    shapes: tuple[str, ...]
    object_textures: tuple[str, ...]
    backgrounds: tuple[str, ...]
    marker: float = 1.0
    radius_scale: tuple[float, float] = (1.0, 1.0)
    distractors: tuple[int, int] = (0, 1)
    pan_px: float = 0.0
    pan_prob: float = 0.0
    shake_px: float = 0.0
    blur: tuple[float, float] = (0.0, 0.0)
    noise: tuple[float, float] = (0.0, 3.0)
    lighting: float = 0.0
    crf: tuple[int, int] = (12, 12)


# Camera, blur, noise, lighting, size, distractors and codec: one set for both photo styles.
_NUISANCES = dict(
    radius_scale=(0.7, 1.4),
    distractors=(0, 2),
    pan_px=0.8,
    pan_prob=0.4,
    shake_px=0.25,
    blur=(0.0, 1.0),
    noise=(0.0, 6.0),
    lighting=0.25,
    crf=(12, 32),
)

STYLES = {
    "classic": Style("classic", None, SHAPES, TEXTURES, BACKGROUNDS),
    "train": Style(
        "train",
        "train",
        SHAPES + ("blob",),
        TEXTURES + ("photo",),
        BACKGROUNDS + ("photo",),
        marker=0.5,
        **_NUISANCES,
    ),
    "style_shift": Style(
        "style_shift",
        "style_shift",
        ("cross", "crescent", "heart", "arrow", "superellipse"),
        ("dots", "plaid", "photo"),
        ("cells", "rings", "photo_tiles"),
        marker=0.0,
        # The nuisances are train's: the set measures the look (photos, shapes, textures,
        # backgrounds), not a stronger blur or noise.
        **_NUISANCES,
    ),
}


def get_style(style: str | Style) -> Style:
    """A ``Style`` by name (``classic``, ``train``, ``style-shift`` / ``style_shift``)."""
    if isinstance(style, Style):
        return style
    key = str(style).replace("-", "_")
    if key not in STYLES:
        names = ", ".join(n.replace("_", "-") for n in STYLES)
        raise ValueError(f"unknown generator style {style!r}; use one of {names}")
    return STYLES[key]


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
    # Styled objects only: a photo [h, w, 3] with its local-to-photo map (x0, y0, k, a) and
    # channel gains, whether the marker is drawn, and a blob's radial harmonics [n, 3].
    photo: np.ndarray | None = None
    photo_map: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 0.0)
    marker: bool = True
    harmonics: np.ndarray | None = None

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
        if self.shape == "blob":  # a smooth random outline: r(phi) = 0.7 + sum a cos(k phi + p)
            edge = 0.7 + sum(a * np.cos(k * phi + p) for k, a, p in self.harmonics)
            return rho <= edge
        if self.shape == "cross":
            w = 0.22 + 0.15 * self.aspect
            return ((np.abs(u) <= 0.9) & (np.abs(v) <= w)) | ((np.abs(u) <= w) & (np.abs(v) <= 0.9))
        if self.shape == "crescent":
            return (rho <= 1.0) & (np.hypot(u - 0.35 - 0.2 * self.aspect, v) > 0.75)
        if self.shape == "heart":  # (x^2 + y^2 - 1)^3 <= x^2 y^3, y up, point at the bottom
            x, y = 1.25 * u, -1.25 * v + 0.25
            return (x**2 + y**2 - 1) ** 3 - x**2 * y**3 <= 0
        if self.shape == "arrow":
            shaft = (u >= -0.9) & (u <= 0.1) & (np.abs(v) <= 0.15 + 0.15 * self.aspect)
            return shaft | ((u >= 0.1) & (u <= 0.9) & (np.abs(v) <= 0.9 * (0.9 - u) / 0.8))
        if self.shape == "superellipse":
            return u**4 + (v / self.aspect) ** 4 <= 1.0
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
        elif self.texture == "dots":
            k = self.tex_freq / 4.0
            fu, fv = np.mod(u * k, 1.0) - 0.5, np.mod(v * k + 0.5 * np.floor(u * k), 1.0) - 0.5
            w = (fu**2 + fv**2 <= 0.09).astype(np.float64)
        elif self.texture == "plaid":
            b = -u * np.sin(self.tex_angle) + v * np.cos(self.tex_angle)
            w = 0.5 * ((np.sin(self.tex_freq * a) > 0.3) + (np.sin(0.7 * self.tex_freq * b) > 0))
        else:
            w = None
        if self.texture == "photo":
            x0, y0, k, ang = self.photo_map
            c, s = np.cos(ang), np.sin(ang)
            px, py = x0 + k * (c * u - s * v), y0 + k * (s * u + c * v)
            out = _bilinear(self.photo, px, py)
        elif w is None:
            out = _bilinear(self.noise_grid, (u + 1.0) * 3.5, (v + 1.0) * 3.5)
        else:
            out = base + w[..., None] * (second - base)
        if not self.marker:
            return out
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
    name: str, rng: np.random.Generator, frames: int, size: int, scale: float = 1.0
) -> tuple[list[dict], dict]:
    """Poses of the main objects for a canonical (not time-reversed) class, plus its params.

    ``scale`` multiplies the objects' radius ranges (1 in the classic style).
    """
    steps = frames - 1
    r = rng.uniform(0.09, 0.15) * size * scale
    margin = r + 2.0
    if name == "static":
        jitter = rng.uniform(-0.15, 0.15, size=(frames, 2))  # < 0.5 px/frame
        cx, cy = rng.uniform(margin, size - margin, size=2)
        pose = _pose(frames, cx + jitter[:, 0], cy + jitter[:, 1], r, rng.uniform(0, 2 * np.pi))
        return [pose], {"jitter_px": float(np.abs(np.diff(jitter, axis=0)).max())}
    if name in ("move_right", "move_down"):
        speed = min(rng.uniform(1.0, 4.0), (size - 2 * margin) / max(steps, 1))
        # max(): at the speed cap the range is one point, which rounding can put below margin
        start = rng.uniform(margin, max(margin, size - margin - speed * steps))
        along = start + speed * np.arange(frames)
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
        r1, r2 = rng.uniform(0.07, 0.11, size=2) * size * scale
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
    style: str | Style = "classic",
    encode: bool = False,
) -> SynthClip:
    """Render one clip of ``class_id``: frames uint8 [T, S, S, 3], flow float32 [T-1, S, S, 2].

    ``noise=False`` turns off sensor noise and ``distractor=False`` the slow distractor (for
    exact checks); ``distractor=None`` draws one in half of the non-static clips (classic) or
    the style's count. ``style``: a ``Style`` or its name (``STYLES``). ``encode=True`` passes
    the frames through H.264 at the clip's drawn CRF (``params["crf"]``), as a file would.
    ``noise=False`` also turns off a style's blur, lighting drift and camera shake.
    """
    if not 0 <= class_id < len(LABELS):
        raise ValueError(f"class_id must be in 0..{len(LABELS) - 1}, got {class_id}")
    if frames < 2 or size < 32:
        raise ValueError(f"need frames >= 2 and size >= 32, got frames={frames}, size={size}")
    style = get_style(style)
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    if style.name != "classic":
        clip = _render_styled(class_id, rng, frames, size, with_flow, noise, distractor, style)
    else:
        clip = _render_classic(class_id, rng, frames, size, with_flow, noise, distractor)
        clip.params["crf"] = style.crf[0]
    if encode:
        clip.frames = h264_roundtrip(clip.frames, clip.params["crf"])
    return clip


def _render_classic(
    class_id: int,
    rng: np.random.Generator,
    frames: int,
    size: int,
    with_flow: bool,
    noise: bool,
    distractor: bool | None,
) -> SynthClip:
    """The classic look (flat/procedural, fixed camera); draws exactly as before styles."""
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


def h264_roundtrip(frames: np.ndarray, crf: int) -> np.ndarray:
    """Encode uint8 [T, H, W, 3] as H.264 (yuv420p, ``write_video``'s settings) at ``crf`` in
    memory and decode it again: the frames a file written at that CRF would give."""
    import io

    import av

    buf = io.BytesIO()
    t, h, w, _ = frames.shape
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(int(crf)), "preset": "veryfast"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    buf.seek(0)
    with av.open(buf) as container:
        out = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return np.stack(out)


def _bank_fingerprint(style: Style) -> str | None:
    if style.textures is None:
        return None
    from hcml.data.textures import load_bank

    return load_bank().fingerprint


def _photo(style: Style, rng: np.random.Generator):
    """A random photo of the style's split: (image [h, w, 3] float, texture sha, source)."""
    from hcml.data.textures import load_bank

    items = load_bank().split(style.textures)
    tex = items[rng.integers(len(items))]
    gains = rng.uniform(0.75, 1.25, size=3)
    img = np.clip(tex.image[..., rng.permutation(3)] * gains, 0, 255)
    return img, tex.sha, tex.source


def _styled_background(
    kind: str, rng: np.random.Generator, n: int, style: Style
) -> tuple[np.ndarray, str | None]:
    """[n, n, 3] float world background (supersampled px) of ``kind``; the photo's sha or None."""
    yy, xx = np.mgrid[0:n, 0:n] / n
    c1, c2 = _random_colour(rng), _random_colour(rng)
    sha = None
    if kind == "flat":
        img = np.broadcast_to(c1, (n, n, 3)).astype(np.float64)
    elif kind == "gradient":
        a = rng.uniform(0, 2 * np.pi)
        w = (xx * np.cos(a) + yy * np.sin(a) + 1.5) / 3.0
        img = c1 + w[..., None] * (c2 - c1)
    elif kind == "noise":
        grid = rng.uniform(0, 255, size=(9, 9, 3))
        img = _bilinear(grid, xx * 8, yy * 8) + rng.normal(0, 6, size=(n, n, 3))
    elif kind == "texture":
        f1, f2 = rng.uniform(4, 14, size=2)
        a = rng.uniform(0, np.pi)
        w = 0.5 + 0.25 * (
            np.sin(f1 * np.pi * (xx * np.cos(a) + yy * np.sin(a))) + np.sin(f2 * np.pi * yy)
        )
        img = c1 + w[..., None] * (c2 - c1)
    elif kind == "cells":  # Voronoi cells of flat colours
        k = int(rng.integers(6, 15))
        seeds, colours = rng.uniform(0, 1, size=(k, 2)), rng.uniform(0, 255, size=(k, 3))
        d = (xx[..., None] - seeds[:, 0]) ** 2 + (yy[..., None] - seeds[:, 1]) ** 2
        img = colours[d.argmin(-1)] + rng.normal(0, 3, size=(n, n, 3))
    elif kind == "rings":  # concentric rings about a random centre
        cx, cy = rng.uniform(-0.2, 1.2, size=2)
        f = rng.uniform(8, 25)
        w = 0.5 + 0.5 * np.sin(f * np.hypot(xx - cx, yy - cy) * np.pi)
        img = c1 + w[..., None] * (c2 - c1)
    elif kind in ("photo", "photo_tiles"):
        photo, sha, _ = _photo(style, rng)
        h, w = photo.shape[:2]
        a = rng.uniform(-0.3, 0.3)
        if kind == "photo":  # one view filling the frame, about native resolution
            k = rng.uniform(0.5, 0.95) * min(h, w) / (n * 1.3)
        else:  # a smaller view, mirrored into tiles
            k = rng.uniform(0.9, 1.6) * min(h, w) / n
        x0, y0 = rng.uniform(0.35, 0.65) * w, rng.uniform(0.35, 0.65) * h
        dx, dy = (xx - 0.5) * n, (yy - 0.5) * n
        px = x0 + k * (np.cos(a) * dx - np.sin(a) * dy)
        py = y0 + k * (np.sin(a) * dx + np.cos(a) * dy)
        if kind == "photo_tiles":
            px = (w - 1) - np.abs(np.mod(px, 2 * (w - 1)) - (w - 1))
            py = (h - 1) - np.abs(np.mod(py, 2 * (h - 1)) - (h - 1))
        img = _bilinear(photo, px, py)
    else:
        raise ValueError(f"unknown background kind {kind!r}")
    return np.clip(img, 0, 255), sha


def _styled_object(
    rng: np.random.Generator, background_mean: np.ndarray, style: Style
) -> tuple[dict, str | None]:
    """An object's look in ``style`` (kwargs of ``_Object`` but the pose) + its photo's sha."""
    obj = _new_object(rng, background_mean)
    obj["shape"] = style.shapes[rng.integers(len(style.shapes))]
    obj["texture"] = style.object_textures[rng.integers(len(style.object_textures))]
    if obj["shape"] == "blob":
        k = np.arange(2, 6)
        obj["harmonics"] = np.stack(
            [k, rng.uniform(0.0, 0.12, size=4) / k * 2, rng.uniform(0, 2 * np.pi, size=4)], -1
        )
    sha = None
    if obj["texture"] == "photo":
        photo, sha, _ = _photo(style, rng)
        h, w = photo.shape[:2]
        k = rng.uniform(0.08, 0.3) * min(h, w)  # half the crop side, photo px
        x0, y0 = rng.uniform(k, w - k), rng.uniform(k, h - k)
        obj["photo"], obj["photo_map"] = photo, (x0, y0, k, rng.uniform(0, 2 * np.pi))
    obj["marker"] = bool(obj["texture"] == "flat" or rng.random() < style.marker)
    return obj, sha


def _camera(name: str, rng: np.random.Generator, frames: int, style: Style, shake: bool):
    """The background's screen offset [T, 2] px (pan + shake) and its params."""
    t = np.arange(frames)[:, None]
    cam = np.zeros((frames, 2))
    params: dict = {}
    if name != "static" and rng.random() < style.pan_prob:
        speed, a = rng.uniform(0.1, style.pan_px), rng.uniform(0, 2 * np.pi)
        cam += speed * t * np.array([np.cos(a), np.sin(a)])
        params["pan_px"] = float(speed)
    if shake and style.shake_px > 0:
        # static stays within MOTION_BENCH's jitter (< 0.5 px/frame with the object's own).
        limit = 0.05 if name == "static" else 3 * style.shake_px
        steps = np.clip(rng.normal(0, style.shake_px, size=(frames - 1, 2)), -limit, limit)
        cam[1:] += np.cumsum(steps, 0)
        params["shake_px"] = float(np.abs(steps).max())
    return cam, params


def _window(world: np.ndarray, x: float, y: float, s: int) -> np.ndarray:
    """world [N, N, 3] seen from (x, y) (fractional px): [s, s, 3], linear interpolation."""
    ix, iy = int(np.floor(x)), int(np.floor(y))
    fx, fy = x - ix, y - iy
    a = world[iy : iy + s + 1, ix : ix + s + 1]
    a = a[:, :-1] * (1 - fx) + a[:, 1:] * fx if fx else a[:, :-1]
    if fy:
        return a[:-1] * (1 - fy) + a[1:] * fy
    return a[:-1].copy()


def _gauss_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of [H, W, 3] (edges repeated)."""
    r = max(1, int(np.ceil(2.5 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    for axis in (0, 1):
        pad = [(r, r) if a == axis else (0, 0) for a in range(3)]
        p = np.pad(img, pad, mode="edge")
        n = img.shape[axis]
        img = sum(w * np.take(p, np.arange(i, i + n), axis=axis) for i, w in enumerate(k))
    return img


def _render_styled(
    class_id: int,
    rng: np.random.Generator,
    frames: int,
    size: int,
    with_flow: bool,
    noise: bool,
    distractor: bool | None,
    style: Style,
) -> SynthClip:
    """A clip in a non-classic ``style`` (see ``Style``); the same trajectories as classic."""
    name = LABELS[class_id]
    scale = float(rng.uniform(*style.radius_scale))
    cam, cam_params = _camera(name, rng, frames, style, shake=noise)
    margin = int(np.ceil(np.abs(cam).max())) + 2
    s = size * SUPERSAMPLE
    n = s + 2 * margin * SUPERSAMPLE
    bg_kind = style.backgrounds[rng.integers(len(style.backgrounds))]
    world, bg_sha = _styled_background(bg_kind, rng, n, style)
    canonical = _REVERSED_OF.get(name, name)
    poses, params = _trajectories(canonical, rng, frames, size, scale)
    if canonical != name:
        poses = [{k: v[::-1].copy() for k, v in pose.items()} for pose in poses]
    bg_mean = world.reshape(-1, 3).mean(0)
    looks = [_styled_object(rng, bg_mean, style) for _ in poses]
    if name == "static" or distractor is False:
        count = 0
    else:
        lo, hi = style.distractors
        count = max(int(rng.integers(lo, hi + 1)), 1 if distractor else 0)
    speeds = []
    for _ in range(count):  # slow distractors, drawn below the main objects
        speed, a = rng.uniform(0.1, 0.9), rng.uniform(0, 2 * np.pi)
        rd = rng.uniform(0.05, 0.08) * size * scale
        x0, y0 = rng.uniform(rd, size - rd, size=2)
        t = np.arange(frames)
        poses.insert(0, _pose(frames, x0 + speed * np.cos(a) * t, y0 + speed * np.sin(a) * t, rd))
        looks.insert(0, _styled_object(rng, bg_mean, style))
        speeds.append(float(speed))
    for pose in poses:  # the camera moves every object with the background
        pose["cx"] = pose["cx"] + cam[:, 0]
        pose["cy"] = pose["cy"] + cam[:, 1]
    objects = [_Object(**look, **pose) for (look, _), pose in zip(looks, poses, strict=True)]
    sigma = float(rng.uniform(*style.noise)) if noise else 0.0
    blur = float(rng.uniform(*style.blur)) if noise else 0.0
    blur = blur if blur > 0.3 else 0.0  # below 0.3 px a Gaussian changes next to nothing
    drift = float(rng.uniform(-style.lighting, style.lighting)) if noise else 0.0
    crf = int(rng.integers(style.crf[0], style.crf[1] + 1))

    sub = (np.arange(s) + 0.5) / SUPERSAMPLE - 0.5
    m = margin * SUPERSAMPLE
    out = np.empty((frames, size, size, 3), dtype=np.uint8)
    for t in range(frames):
        canvas = _window(world, m - cam[t, 0] * SUPERSAMPLE, m - cam[t, 1] * SUPERSAMPLE, s)
        for obj in objects:
            # Only the object's bounding box (every shape lies within |u|, |v| <= 1.05).
            ext = 1.05 * obj.radius[t] + 1.0
            x0, x1 = np.searchsorted(sub, [obj.cx[t] - ext, obj.cx[t] + ext])
            y0, y1 = np.searchsorted(sub, [obj.cy[t] - ext, obj.cy[t] + ext])
            if x0 >= x1 or y0 >= y1:
                continue
            yy, xx = np.meshgrid(sub[y0:y1], sub[x0:x1], indexing="ij")
            u, v = obj.local_coords(xx, yy, t)
            mask = obj.inside(u, v)
            canvas[y0:y1, x0:x1][mask] = obj.colour(u[mask], v[mask])
        img = 0.25 * (
            canvas[0::2, 0::2] + canvas[1::2, 0::2] + canvas[0::2, 1::2] + canvas[1::2, 1::2]
        )
        if drift:
            img = img * (1.0 + drift * (2.0 * t / max(frames - 1, 1) - 1.0))
        if blur:
            img = _gauss_blur(img, blur)
        if sigma > 0:
            img = img + rng.normal(0, sigma, size=img.shape)
        out[t] = np.clip(np.rint(img), 0, 255).astype(np.uint8)

    flow = _flow(objects, frames, size, cam) if with_flow else None
    if speeds:
        params["distractor_px"] = max(speeds)
    params.update(cam_params)
    params.update(
        name=name,
        style=style.name,
        background=bg_kind,
        shapes=[o.shape for o in objects],
        textures=[o.texture for o in objects],
        photos=[sha for _, sha in looks if sha is not None] + ([bg_sha] if bg_sha else []),
        texture_bank=_bank_fingerprint(style),
        radius_scale=scale,
        camera_px=cam.tolist(),
        noise_sigma=sigma,
        blur_sigma=blur,
        lighting_drift=drift,
        crf=crf,
    )
    return SynthClip(frames=out, flow=flow, label=class_id, params=params)


def _flow(
    objects: list[_Object], frames: int, size: int, camera: np.ndarray | None = None
) -> np.ndarray:
    """Ground-truth flow at pixel centres: float32 [T-1, H, W, 2]; the top object wins.

    ``camera`` [T, 2] (px): the background's screen offset; it moves by the camera's step.
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    flow = np.zeros((frames - 1, size, size, 2), dtype=np.float32)
    for t in range(frames - 1):
        if camera is not None:
            flow[t] = camera[t + 1] - camera[t]
        for obj in objects:
            u, v = obj.local_coords(xx, yy, t)
            mask = obj.inside(u, v)
            nx, ny = obj.to_screen(u[mask], v[mask], t + 1)
            flow[t][mask] = np.stack([nx - xx[mask], ny - yy[mask]], -1)
    return flow


def render_batch(
    batch_size: int, seed: int, frames: int = 16, size: int = 112, style: str = "classic"
) -> tuple[np.ndarray, np.ndarray]:
    """A class-balanced batch: (uint8 [B, T, H, W, 3], int64 [B]); styled clips H.264'd."""
    labels = np.arange(batch_size, dtype=np.int64) % len(LABELS)
    encode = get_style(style).name != "classic"
    clips = [
        render_clip(
            int(c), clip_seed(seed, int(c), i), frames, size, style=style, encode=encode
        ).frames
        for i, c in enumerate(labels)
    ]
    return np.stack(clips), labels


class SyntheticMotionDataset(torch.utils.data.IterableDataset):
    """Infinite (or ``length``-limited), seeded, class-balanced stream of rendered clips.

    Yields ``(clip uint8 tensor [T, H, W, 3], label int)``. Clip ``i`` has class ``i % 12`` and
    seed ``clip_seed(seed, class, i)``; DataLoader workers take disjoint indices, so the stream is
    the same whatever the number of workers.
    """

    def __init__(
        self,
        seed: int = 0,
        frames: int = 16,
        size: int = 112,
        length: int | None = None,
        style: str = "classic",
    ):
        super().__init__()
        self.seed, self.frames, self.size, self.length = seed, frames, size, length
        self.style = get_style(style).name
        # Styled clips pass through H.264 at their drawn CRF, as they would from a file.
        self.encode = self.style != "classic"

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int]]:
        info = torch.utils.data.get_worker_info()
        start, step = (info.id, info.num_workers) if info is not None else (0, 1)
        i = start
        while self.length is None or i < self.length:
            c = i % len(LABELS)
            seq = clip_seed(self.seed, c, i)
            clip = render_clip(c, seq, self.frames, self.size, style=self.style, encode=self.encode)
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
    style: str | Style = "classic",
) -> Path:
    """Write ``<out>/<class>/<class>_NNNN.mp4`` (+ ``.flow.npz``), ``labels.txt``, ``index.csv``.

    Clip (seed, class, index) is the same whatever ``clips_per_class`` is. ``params.jsonl``
    records every clip's sampled parameters. Each clip is encoded at its ``params["crf"]``
    (12 in the classic style, drawn per clip in the others).
    """
    style = get_style(style)
    from tqdm import tqdm

    from hcml.data.video import write_video

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "labels.txt").write_text("\n".join(LABELS) + "\n")
    rows: list[tuple[str, str]] = []
    jobs = [(c, i) for c in range(len(LABELS)) for i in range(clips_per_class)]
    with open(out / "params.jsonl", "w") as meta:
        for c, i in tqdm(jobs, desc="rendering", unit="clip", disable=not progress):
            clip = render_clip(c, clip_seed(seed, c, i), frames, size, with_flow=flow, style=style)
            rel = Path(LABELS[c]) / f"{LABELS[c]}_{i:04d}.mp4"
            write_video(out / rel, clip.frames, fps=fps, crf=clip.params["crf"])
            if flow:
                np.savez_compressed(out / rel.with_suffix(".flow.npz"), flow=clip.flow)
            rows.append((rel.as_posix(), LABELS[c]))
            meta.write(json.dumps({"path": rel.as_posix(), **clip.params}) + "\n")
    with open(out / "index.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        writer.writerows(rows)
    return out
