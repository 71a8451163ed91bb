"""Dense-motion clips: a virtual camera panning, zooming and rotating over a still photo.

Every pixel moves, and the ground-truth flow is exact because the warp is known. A clip of
``frames`` frames at ``size`` x ``size`` views the photo through a similarity transform per frame
(c: pixel centre relative to the frame centre, (size - 1) / 2)::

    p_t(c) = s_t R(theta_t) c + o_t        (photo pixels)
    s_t = s_0 z^t,  theta_t = theta_0 + w t,  o_t = o_0 + v t

so the flow of pixel c from frame t to t + 1 (the generator's convention, ``hcml.data.synth``:
``I_{t+1}(x + u_t(x)) = I_t(x)``) is ``u_t(c) = A_{t+1}^{-1} (A_t c + o_t - o_{t+1}) - c`` with
A_t = s_t R(theta_t). Frames are sampled bilinearly with 2x2 supersampling (as the synthetic
renderer does), so a zoomed-out view does not alias.

``render_dense_clip(seed, ...)`` draws the motion (``pan``, ``zoom``, ``rotate`` or ``mixed``)
and the photo from ``sample_photos()``: scikit-learn's two bundled sample images (``china.jpg``,
``flower.jpg``), the evaluation set. ``camera_clip(photo, rng, ...)`` does the same over any
image, e.g. a frame of an unlabelled video (pretraining data with dense motion,
``hcml.data.unlabelled``). Motion sizes are in pixels of the ``size`` grid a frame.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

__all__ = ["KINDS", "DenseClip", "camera_clip", "render_dense_clip", "sample_photos"]

KINDS = ("pan", "zoom", "rotate", "mixed")


@dataclass
class DenseClip:
    """frames uint8 [T, S, S, 3]; flow float32 [T-1, S, S, 2] (dx, dy) from t to t+1."""

    frames: np.ndarray
    flow: np.ndarray
    kind: str
    params: dict


@functools.lru_cache(maxsize=1)
def sample_photos() -> tuple[np.ndarray, ...]:
    """scikit-learn's bundled sample photos, uint8 [427, 640, 3] each (china, flower)."""
    try:
        from sklearn.datasets import load_sample_images
    except ImportError as e:  # pragma: no cover - scikit-learn is a dependency
        raise RuntimeError(
            "the dense-motion set needs scikit-learn (pip install scikit-learn)"
        ) from e
    return tuple(np.ascontiguousarray(im) for im in load_sample_images().images)


def _bilinear(photo: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """photo float32 [H, W, 3], px/py [...] photo coordinates -> [..., 3] (edge-clamped)."""
    h, w = photo.shape[:2]
    px = np.clip(px, 0.0, w - 1.0).astype(np.float32)
    py = np.clip(py, 0.0, h - 1.0).astype(np.float32)
    x0 = np.minimum(px.astype(np.int64), w - 2)
    y0 = np.minimum(py.astype(np.int64), h - 2)
    fx = (px - x0)[..., None]
    fy = (py - y0)[..., None]
    flat = photo.reshape(-1, 3)
    i = y0 * w + x0
    a, b = np.take(flat, i, axis=0), np.take(flat, i + 1, axis=0)
    c, d = np.take(flat, i + w, axis=0), np.take(flat, i + w + 1, axis=0)
    return (a + (b - a) * fx) * (1 - fy) + (c + (d - c) * fx) * fy


def _mat(s: float, theta: float) -> np.ndarray:
    c, n = np.cos(theta), np.sin(theta)
    return s * np.array([[c, -n], [n, c]])


def _draw_motion(rng: np.random.Generator, kind: str, size: int) -> dict:
    """Per-frame motion: pan v (grid px / frame), zoom z, rotation w (rad / frame)."""
    half = size / 2.0
    v, z, w = np.zeros(2), 1.0, 0.0
    if kind in ("pan", "mixed"):
        speed = rng.uniform(0.02, 0.06) * size  # 2-7 px a frame at 112 px
        ang = rng.uniform(0, 2 * np.pi)
        v = speed * np.array([np.cos(ang), np.sin(ang)])
    if kind in ("zoom", "mixed"):
        rate = rng.uniform(0.02, 0.06)  # the frame's edge moves 0.02-0.06 * half px a frame
        z = float(np.exp(rng.choice([-1.0, 1.0]) * rate))
    if kind in ("rotate", "mixed"):
        w = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.02, 0.06))  # edge: 0.02-0.06 * half px
    return {"v": v, "z": z, "w": w, "half": half}


def camera_clip(
    photo: np.ndarray,
    rng: np.random.Generator,
    frames: int = 8,
    size: int = 112,
    kind: str | None = None,
) -> DenseClip:
    """A virtual camera over ``photo`` uint8 [H, W, 3] (H, W >= 16): see the module doc."""
    kind = kind or str(rng.choice(KINDS))
    if kind not in KINDS:
        raise ValueError(f"unknown camera motion {kind!r} (one of {', '.join(KINDS)})")
    ph = np.asarray(photo, dtype=np.float32)
    h, w = ph.shape[:2]
    m = _draw_motion(rng, kind, size)
    # Grid px -> photo px: the view covers 35-70 % of the photo's short side.
    s0 = rng.uniform(0.35, 0.7) * min(h, w) / size
    theta0 = rng.uniform(-0.3, 0.3)
    # Motion in grid px: photo offset per frame is s * (grid velocity) in the camera's frame.
    v_photo = _mat(s0, theta0) @ m["v"]
    centre = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    o0 = centre - v_photo * (frames - 1) / 2.0
    o0 = o0 + rng.uniform(-0.1, 0.1, 2) * np.array([w, h])
    mats = [_mat(s0 * m["z"] ** t, theta0 + m["w"] * t) for t in range(frames)]
    offs = [o0 + v_photo * t for t in range(frames)]
    c = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    cx, cy = np.meshgrid(c, c)
    pts = np.stack([cx, cy], -1)  # [S, S, 2]
    sub = np.array([[dx, dy] for dy in (-0.25, 0.25) for dx in (-0.25, 0.25)])
    a = np.stack(mats)  # [T, 2, 2]
    o = np.stack(offs)  # [T, 2]
    p = pts[None] + sub[:, None, None]  # [4, S, S, 2]
    qx = a[:, None, None, None, 0, 0] * p[..., 0] + a[:, None, None, None, 0, 1] * p[..., 1]
    qy = a[:, None, None, None, 1, 0] * p[..., 0] + a[:, None, None, None, 1, 1] * p[..., 1]
    q = np.stack([qx + o[:, 0, None, None, None], qy + o[:, 1, None, None, None]], -1)
    acc = _bilinear(ph, q[..., 0], q[..., 1]).mean(1)
    out = np.clip(np.rint(acc), 0, 255).astype(np.uint8)
    flow = np.empty((frames - 1, size, size, 2), dtype=np.float32)
    for t in range(frames - 1):
        p = pts @ mats[t].T + offs[t] - offs[t + 1]
        c1 = p @ np.linalg.inv(mats[t + 1]).T
        flow[t] = (c1 - pts).astype(np.float32)
    params = {
        "kind": kind,
        "scale0": float(s0),
        "theta0": float(theta0),
        "pan": [float(v) for v in m["v"]],
        "zoom": m["z"],
        "rot": m["w"],
    }
    return DenseClip(out, flow, kind, params)


def render_dense_clip(
    seed: int, frames: int = 8, size: int = 112, kind: str | None = None
) -> DenseClip:
    """Clip ``seed`` of the dense-motion evaluation set (scikit-learn's sample photos)."""
    rng = np.random.default_rng([0xD15E, int(seed)])
    photos = sample_photos()
    photo = photos[int(rng.integers(len(photos)))]
    kind = kind or KINDS[int(seed) % len(KINDS)]
    return camera_clip(photo, rng, frames, size, kind)
