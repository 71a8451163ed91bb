"""Unlabelled video for self-supervised pretraining: any folder or list of files, random clips.

``find_videos(spec)``: the files a spec names: a folder (searched recursively for
``VIDEO_EXTENSIONS``), a list file (one path a line, relative to the list's folder; blank lines
and ``#`` skipped) or one video file.

``scan_videos(paths)``: decodes every file once (PyAV, frame threads) to learn its frame count,
frame rate and size. Files that cannot be decoded to the end (missing, empty, truncated,
corrupt, not a video) or that are shorter than a clip are skipped with a one-line warning each
and counted; the result (``VideoIndex``) is written to the run folder as ``videos.json`` so a
resumed run samples from exactly the same list.

``UnlabelledClips(index, ...)``: a ``torch`` dataset keyed like ``ClipDataset`` by ``(index,
seed)``: ``ds[(i, seed)]`` -> (float32 [3, T, H, W], -1). The seed alone picks the file (weighted
by its number of clip positions), the start frame, a square crop (side: 60-100 % of the short
side, aspect kept) and, with probability ``camera``, replaces the clip by a virtual camera move
over one of its frames (``hcml.data.dense_motion.camera_clip``: dense motion with known size).
With ``fps`` set, frames are taken at that rate (nearest decoded frame at or before
t_0 + k / fps), so footage of any frame rate shows motion on one time scale. A clip whose
window fails to decode falls back, deterministically, to the next file (warned once a file and
counted in ``failed``); every choice depends on the key only, so resuming is exact.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hcml.data.datasets import VIDEO_EXTENSIONS, DatasetError
from hcml.data.transforms import resize_clip, to_model_input
from hcml.data.video import VideoReadError, open_video

__all__ = [
    "UnlabelledClips",
    "VideoIndex",
    "find_videos",
    "read_window",
    "scan_videos",
    "unlabelled_dataset",
]


def find_videos(spec: str | os.PathLike) -> list[Path]:
    """Video files named by a folder, a list file or a single video (sorted, absolute)."""
    p = Path(spec).expanduser()
    if p.is_dir():
        files = sorted(
            f.resolve()
            for f in p.rglob("*")
            if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS
        )
        if not files:
            raise DatasetError(
                f"{p}: no video files ({', '.join(VIDEO_EXTENSIONS)}) in this folder"
            )
        return files
    if not p.exists():
        raise DatasetError(f"{p}: no such folder or file")
    if p.suffix.lower() in VIDEO_EXTENSIONS:
        return [p.resolve()]
    files = []
    for line in p.read_text(errors="replace").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        f = Path(line).expanduser()
        files.append((f if f.is_absolute() else p.parent / f).resolve())
    if not files:
        raise DatasetError(f"{p}: the list names no video file")
    return files


@dataclass
class VideoIndex:
    """Scanned files: ``videos`` [{path, frames, fps, width, height}], ``skipped`` [{path, why}]."""

    videos: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> VideoIndex:
        data = json.loads(Path(path).read_text())
        return cls(list(data["videos"]), list(data.get("skipped", [])))

    def summary(self) -> str:
        frames = sum(v["frames"] for v in self.videos)
        return (
            f"{len(self.videos)} videos ({frames} frames) usable, "
            f"{len(self.skipped)} skipped as unreadable or too short"
        )


def _probe(path: Path) -> dict[str, Any]:
    """Decode ``path`` to the end: {path, frames, fps, width, height}; VideoReadError if bad."""
    import av

    with open_video(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        n, size = 0, None
        try:
            for frame in container.decode(stream):
                n += 1
                size = size or (frame.width, frame.height)
        except av.FFmpegError as err:
            raise VideoReadError(path, f"decoding failed after {n} frames ({err})") from err
        rate = stream.average_rate or stream.guessed_rate or 25
        if n == 0 or size is None:
            raise VideoReadError(path, "no frame could be decoded")
    return {"path": str(path), "frames": n, "fps": float(rate), "width": size[0], "height": size[1]}


def scan_videos(paths: list[Path], min_frames: int, progress: bool = True, warn=None) -> VideoIndex:
    """Probe every file (see the module doc); skipped files are warned about one a line."""
    from tqdm import tqdm

    warn = warn or (lambda msg: print(msg, file=sys.stderr))
    index = VideoIndex()
    for path in tqdm(paths, desc="scan videos", unit="file", disable=not progress):
        try:
            info = _probe(Path(path))
        except VideoReadError as err:
            index.skipped.append({"path": str(path), "why": str(err)})
            warn(f"warning: skipping {err}")
            continue
        if info["frames"] < min_frames:
            why = f"{path}: {info['frames']} frames, fewer than a clip's {min_frames}"
            index.skipped.append({"path": str(path), "why": why})
            warn(f"warning: skipping {why}")
            continue
        index.videos.append(info)
    return index


def read_window(path: str | os.PathLike, start: int, count: int, fps_in: float) -> np.ndarray:
    """Frames ``start .. start + count - 1`` (decode order) of a file: uint8 [count, H, W, 3].

    Seeks to the key frame before ``start`` (by time, ``start / fps_in``), then decodes forward;
    VideoReadError when the window cannot be decoded whole.
    """
    import av

    path = Path(path)
    try:
        container = av.open(str(path))
    except av.FFmpegError as err:
        raise VideoReadError(path, f"not a readable container ({err})") from err
    out: list[np.ndarray] = []
    with container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        tb = stream.time_base
        t0 = float(stream.start_time * tb) if stream.start_time is not None else 0.0
        target = t0 + start / fps_in
        seeked = start > 0 and tb is not None
        try:
            if seeked:
                container.seek(int(max(target - 0.5, t0) / tb), stream=stream, backward=True)
            idx = -1
            for frame in container.decode(stream):
                if seeked:
                    # After a seek the decode index is unknown: place frames by their time.
                    if frame.time is None or frame.time < target - 0.5 / fps_in:
                        continue
                else:
                    idx += 1
                    if idx < start:
                        continue
                out.append(frame.to_ndarray(format="rgb24"))
                if len(out) == count:
                    break
        except av.FFmpegError as err:
            raise VideoReadError(path, f"decoding failed ({err})") from err
    if len(out) < count:
        raise VideoReadError(path, f"only {len(out)} of {count} frames from frame {start}")
    return np.stack(out)


class UnlabelledClips(torch.utils.data.Dataset):
    """Random clips of unlabelled videos (see the module doc): ds[(i, seed)] -> ([3, T, H, W], -1).

    index: a ``VideoIndex`` (or its ``videos.json``). frames: T; frame_step: step between sampled
    frames (at ``fps`` when given, else in decoded frames); size: output (H, W); mean, std: the
    model's normalisation; camera: share of clips replaced by a virtual camera move; base_seed:
    mixed into every key's generator.
    """

    def __init__(
        self,
        index: VideoIndex | str | os.PathLike,
        frames: int,
        size: int | tuple[int, int],
        mean,
        std,
        frame_step: int = 1,
        fps: float | None = None,
        camera: float = 0.0,
        min_crop: float = 0.6,
        base_seed: int = 0,
        num_classes: int = 12,
    ):
        self.index = index if isinstance(index, VideoIndex) else VideoIndex.load(index)
        if not self.index.videos:
            raise DatasetError("no usable video: every file was skipped (see the warnings)")
        self.frames, self.frame_step = int(frames), int(frame_step)
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.mean, self.std = tuple(mean), tuple(std)
        self.fps = None if fps is None else float(fps)
        self.camera, self.min_crop, self.base_seed = float(camera), float(min_crop), int(base_seed)
        self.failed: dict[str, str] = {}
        # Labels exist only so that checkpoints of a pretraining run look like any other's.
        self.source = self
        self.labels = [f"unlabelled_{i}" for i in range(num_classes)]
        self._weights = np.array(
            [max(self._positions(v), 1) for v in self.index.videos], dtype=np.float64
        )
        self._weights /= self._weights.sum()

    def _span(self, v: dict[str, Any]) -> int:
        """Decoded frames a clip of ``v`` covers."""
        step = self.frame_step
        if self.fps is not None:
            step = step * v["fps"] / self.fps
        return int(np.floor((self.frames - 1) * step)) + 1

    def _positions(self, v: dict[str, Any]) -> int:
        return v["frames"] - self._span(v) + 1

    def __len__(self) -> int:
        return sum(max(self._positions(v), 1) for v in self.index.videos)

    def _clip(self, v: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
        span = self._span(v)
        start = int(rng.integers(max(v["frames"] - span + 1, 1)))
        window = read_window(v["path"], start, min(span, v["frames"] - start), v["fps"])
        if self.fps is None:
            pick = np.arange(self.frames) * self.frame_step
        else:
            step = self.frame_step * v["fps"] / self.fps
            pick = np.floor(np.arange(self.frames) * step + 1e-6).astype(np.int64)
        return window[np.minimum(pick, len(window) - 1)]

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        seed = key if isinstance(key, int) else int(key[1])
        rng = np.random.default_rng([self.base_seed, 0x5E1F, seed])
        k = int(rng.choice(len(self.index.videos), p=self._weights))
        use_camera = rng.random() < self.camera
        clip = None
        for j in range(len(self.index.videos)):
            v = self.index.videos[(k + j) % len(self.index.videos)]
            try:
                clip = self._clip(v, rng)
                break
            except VideoReadError as err:
                if v["path"] not in self.failed:
                    self.failed[v["path"]] = str(err)
                    print(f"warning: {err}; using the next file for this clip", file=sys.stderr)
        if clip is None:
            raise DatasetError("no video could be decoded (every file failed)")
        if use_camera:
            from hcml.data.dense_motion import camera_clip

            photo = clip[int(rng.integers(len(clip)))]
            h, w = self.size
            frames = camera_clip(photo, rng, self.frames, max(h, w)).frames
            return to_model_input(
                resize_clip(torch.from_numpy(frames), self.size), self.mean, self.std
            ), -1
        _, h, w, _ = clip.shape
        side = int(min(h, w) * rng.uniform(self.min_crop, 1.0))
        y0 = int(rng.integers(h - side + 1))
        x0 = int(rng.integers(w - side + 1))
        crop = torch.from_numpy(np.ascontiguousarray(clip[:, y0 : y0 + side, x0 : x0 + side]))
        return to_model_input(resize_clip(crop, self.size), self.mean, self.std), -1


def unlabelled_dataset(spec: dict[str, Any], recipe: dict[str, Any], cfg: dict[str, Any]):
    """The ``UnlabelledClips`` of a recipe's ``data.train.unlabelled`` for model config cfg.

    spec["path"]: a ``videos.json`` (used as is) or a folder / list file (scanned now).
    """
    frames, step = int(cfg["frames"]), int(recipe["data"]["frame_step"])
    path = Path(spec["path"])
    if path.suffix == ".json" and path.is_file():
        index = VideoIndex.load(path)
    else:
        index = scan_videos(find_videos(path), (frames - 1) * step + 1, progress=False)
        print(f"unlabelled videos: {index.summary()}", file=sys.stderr)
    return UnlabelledClips(
        index,
        frames,
        tuple(cfg["input_size"][1:]),
        cfg["mean"],
        cfg["std"],
        frame_step=step,
        fps=spec.get("fps"),
        camera=float(spec.get("camera", 0.0)),
        min_crop=float(spec.get("min_crop", 0.6)),
        base_seed=recipe["seed"],
        num_classes=int(cfg["num_classes"]),
    )
