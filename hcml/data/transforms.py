"""Clip sampling and direction-safe augmentation.

Clips travel as uint8 [T, H, W, 3] (what the decoder and the synthetic renderer give) until
``to_model_input`` turns them into normalized float [3, T, H, W]. Every random choice takes a
``numpy.random.Generator`` so that a clip's augmentation is a pure function of its seed (exact
resume, same stream whatever the number of workers).

Horizontal mirroring reverses left/right motion and the sense of rotation, so ``ClipAugment``
only mirrors a clip when it can swap the label too (``hcml.labels.HFLIP_SWAP``, by name); a label
set that is not the benchmark's must pass its own ``hflip_swap`` or leave ``hflip=0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from hcml.labels import HFLIP_SWAP, LABELS

__all__ = ["ClipAugment", "sample_indices", "resize_clip", "to_model_input"]


def sample_indices(
    num_frames: int,
    frames: int,
    frame_step: int = 1,
    mode: str = "random",
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Indices of a ``frames``-long clip taking every ``frame_step``-th of ``num_frames``.

    mode: ``random`` (random offset, for training), ``uniform`` (centred offset, for evaluation)
    or ``start`` (offset 0). A video shorter than the span is read with its last frame repeated.
    Returns int64 [frames].
    """
    if frames < 1 or frame_step < 1 or num_frames < 1:
        raise ValueError(
            f"need frames, frame_step, num_frames >= 1 ({frames}, {frame_step}, {num_frames})"
        )
    span = (frames - 1) * frame_step + 1
    slack = max(num_frames - span, 0)
    if mode == "random":
        rng = rng if rng is not None else np.random.default_rng()
        offset = int(rng.integers(0, slack + 1))
    elif mode == "uniform":
        offset = slack // 2
    elif mode == "start":
        offset = 0
    else:
        raise ValueError(f"unknown sampling mode {mode!r}; use random, uniform or start")
    idx = offset + frame_step * np.arange(frames, dtype=np.int64)
    return np.minimum(idx, num_frames - 1)


def resize_clip(clip: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> uint8 [T, h, w, 3] (bilinear, antialiased). No-op when equal."""
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if clip.shape[1] == h and clip.shape[2] == w:
        return clip
    x = clip.permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def to_model_input(clip: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 [..., T, H, W, 3] -> normalized float32 [..., 3, T, H, W] ((x/255 - mean) / std)."""
    x = clip.float().div_(255.0)
    m = torch.tensor(mean, dtype=x.dtype)
    s = torch.tensor(std, dtype=x.dtype)
    x = (x - m) / s
    return x.movedim(-1, -4).contiguous()


@dataclass
class ClipAugment:
    """Motion-preserving augmentation of one clip, the same for every frame of it.

    * ``scale``: random crop of area fraction in [scale, 1] (aspect kept), then resize to
      ``size``; with ``scale=1`` only the resize.
    * ``hflip``: probability of a horizontal mirror; the label is swapped by ``hflip_swap``
      (names; default ``HFLIP_SWAP``) and labels absent from it are taken as mirror-invariant.
    * ``brightness`` / ``contrast``: per-clip jitter amplitudes (0 = off).
    * ``lighting``: a gain ramp over the clip, frame t scaled by 1 + d (2 t / (T - 1) - 1) with
      d drawn in [-lighting, lighting] per clip (the generator's lighting drift; 0 = off).
    * ``reverse``: probability of playing the clip backwards with the label replaced by its
      reversal twin (``reverse_twin``, names); off by default.

    ``labels`` are the class names in id order (default: the benchmark's).
    """

    size: int | tuple[int, int] = 112
    scale: float = 1.0
    hflip: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    reverse: float = 0.0
    lighting: float = 0.0
    labels: Sequence[str] = LABELS
    hflip_swap: dict[str, str] | None = None
    reverse_twin: dict[str, str] | None = None

    def __post_init__(self) -> None:
        names = list(self.labels)
        self._index = {n: i for i, n in enumerate(names)}
        swap = HFLIP_SWAP if self.hflip_swap is None else self.hflip_swap
        for a, b in swap.items():
            if self.hflip > 0 and (a not in self._index or b not in self._index):
                raise ValueError(f"hflip_swap names {a!r} -> {b!r}, not both in the label set")
        self._swap = {
            self._index[a]: self._index[b]
            for a, b in swap.items()
            if a in self._index and b in self._index
        }
        self._twin: dict[int, int] = {}
        if self.reverse > 0:
            from hcml.labels import REVERSAL_TWIN

            twin = REVERSAL_TWIN if self.reverse_twin is None else self.reverse_twin
            missing = [n for n in names if n not in twin]
            if missing:
                raise ValueError(f"reverse augmentation needs a twin for every label: {missing}")
            self._twin = {
                self._index[a]: self._index[b] for a, b in twin.items() if a in self._index
            }

    def __call__(
        self, clip: torch.Tensor, label: int, rng: np.random.Generator
    ) -> tuple[torch.Tensor, int]:
        """clip uint8 [T, H, W, 3], label id -> (uint8 [T, h, w, 3], label id)."""
        t, h, w, _ = clip.shape
        if self.scale < 1.0:
            area = rng.uniform(self.scale, 1.0)
            ch, cw = max(int(round(h * area**0.5)), 8), max(int(round(w * area**0.5)), 8)
            y0 = int(rng.integers(0, h - ch + 1))
            x0 = int(rng.integers(0, w - cw + 1))
            clip = clip[:, y0 : y0 + ch, x0 : x0 + cw]
        clip = resize_clip(clip, self.size)
        if self.hflip > 0 and rng.random() < self.hflip:
            clip = clip.flip(2)
            label = self._swap.get(label, label)
        if self.reverse > 0 and rng.random() < self.reverse:
            clip = clip.flip(0)
            label = self._twin[label]
        if self.brightness > 0 or self.contrast > 0:
            b = rng.uniform(-self.brightness, self.brightness) * 255.0
            c = 1.0 + rng.uniform(-self.contrast, self.contrast)
            x = clip.float()
            mean = x.mean()
            clip = ((x - mean) * c + mean + b).round().clamp(0, 255).to(torch.uint8)
        if self.lighting > 0:
            d = rng.uniform(-self.lighting, self.lighting)
            ramp = 1.0 + d * torch.linspace(-1.0, 1.0, t)
            x = clip.float() * ramp.view(t, 1, 1, 1)
            clip = x.round().clamp(0, 255).to(torch.uint8)
        return clip.contiguous(), label
