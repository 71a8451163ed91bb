"""Datasets for training and evaluation: synthetic (in memory) and video files on disk.

Sources (all give ``(uint8 clip [T, H, W, 3], label id)`` from ``source.load(index, rng)``):

* ``SyntheticClips(seed, frames, size)``: the synthetic benchmark, infinite and seeded; item ``i``
  is exactly item ``i`` of ``hcml.data.synth.SyntheticMotionDataset`` (class ``i % 12``).
* ``VideoFiles``: a list of (file, label id) decoded with PyAV (``hcml.data.video``), clipped by
  ``hcml.data.transforms.sample_indices``. Built by ``open_dataset(path)`` from
  - a folder ``<root>/<class>/<clip>.<mp4|avi|mkv|webm>`` (optional ``<root>/labels.txt``),
  - a CSV ``path,label`` (path relative to the CSV; ``shared/MOTION_BENCH.md``),
  - a Something-Something style JSON list ``[{"id": ..., "template"|"label": ...}]`` with videos
    ``<root>/<id>.webm`` and the class list ``labels.json`` (``{"name": "id"}``) beside it,
  - a Kinetics style CSV ``label,youtube_id,time_start,time_end[,split]`` with videos
    ``<root>/<label>/<youtube_id>_<start:06d>_<end:06d>.mp4`` (or directly under ``<root>``).

A file that resolves outside the dataset root and a label that is not in the label set raise
``DatasetError`` naming the file, the line and the offending value.

``ClipDataset(source, ...)`` samples + augments + normalizes: ``ds[(index, seed)]`` ->
(float32 [3, T, H, W], label). ``StreamSampler`` feeds it an exactly resumable stream of
``(index, seed)`` keys, split over DDP ranks.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hcml.data.cache import synth_cache_dir
from hcml.data.transforms import ClipAugment, resize_clip, sample_indices, to_model_input
from hcml.labels import LABELS

__all__ = [
    "VIDEO_EXTENSIONS",
    "ClipDataset",
    "DatasetError",
    "RenderedClips",
    "StreamSampler",
    "SyntheticClips",
    "VideoFiles",
    "open_dataset",
    "read_labels",
]

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov")


class DatasetError(ValueError):
    """A dataset that cannot be read as given; the message names the file and the cause."""


def read_labels(path: str | os.PathLike) -> list[str]:
    """Class names from a ``labels.txt`` (one a line, id order; blank lines and ``#`` skipped)."""
    names = [
        ln.strip()
        for ln in Path(path).read_text().splitlines()
        if ln.strip() and not ln.lstrip().startswith("#")
    ]
    if len(set(names)) != len(names):
        raise DatasetError(f"{path}: duplicate class names")
    return names


class SyntheticClips:
    """The synthetic benchmark as an indexable source: item i = class i % 12, seed (seed, c, i).

    ``length`` None means infinite (index anything >= 0).
    """

    labels: list[str] = list(LABELS)

    def __init__(
        self,
        seed: int = 0,
        frames: int = 16,
        size: int = 112,
        length: int | None = None,
        style: str = "classic",
    ):
        from hcml.data.synth import get_style

        self.seed, self.frames, self.size, self.length = int(seed), int(frames), int(size), length
        self.style = get_style(style).name  # non-classic clips go through H.264 at their CRF

    def __len__(self) -> int:
        if self.length is None:
            raise TypeError("an infinite SyntheticClips has no length")
        return self.length

    def label_of(self, index: int) -> int:
        return index % len(LABELS)

    def load(self, index: int, rng: np.random.Generator | None = None) -> tuple[torch.Tensor, int]:
        """Clip ``index``: (uint8 [T, S, S, 3], label)."""
        from hcml.data.synth import clip_seed, render_clip

        c = index % len(LABELS)
        clip = render_clip(
            c,
            clip_seed(self.seed, c, index),
            self.frames,
            self.size,
            style=self.style,
            encode=self.style != "classic",
        )
        return torch.from_numpy(clip.frames), c


def _render_item(args: tuple[int, int, int, int, int | None, str]) -> np.ndarray:
    seed, frames, size, index, store, style = args
    clip, _ = SyntheticClips(seed, frames, size, style=style).load(index)
    if store is not None:
        clip = resize_clip(clip, store)
    return clip.numpy()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def remove_stale_renders(folder: str | os.PathLike) -> list[Path]:
    """Delete ``*.<pid>.tmp`` renders in ``folder`` whose writer process is gone; returns them.

    ``RenderedClips`` writes its cache as ``<name>.<pid>.tmp`` and renames it when complete; a
    writer killed mid-render (SIGKILL, OOM, power) leaves the partial file behind (0.9 GB for
    the default recipe). A file whose pid still runs is another writer's and is kept. Pids are
    this machine's: a cache folder shared between machines can lose a live writer's file.
    """
    removed = []
    for tmp in Path(folder).glob("synth-*.*.tmp"):
        pid = tmp.suffixes[-2][1:] if len(tmp.suffixes) >= 2 else ""
        if not pid.isdigit() or int(pid) == os.getpid() or _pid_alive(int(pid)):
            continue
        try:
            tmp.unlink()
            removed.append(tmp)
        except FileNotFoundError:  # another process cleaned it first
            pass
    return removed


class RenderedClips:
    """Items ``0 .. length-1`` of ``SyntheticClips(seed, frames, size)`` rendered once.

    The renderer (numpy, ~60 ms a 16x112x112 clip) costs as much as a training step on CPU, so a
    training run that revisits clips renders them once, on every core (a process pool, with a
    progress bar), optionally downscaled to ``store_size`` (antialiased, as the model's resize
    would), into ``uint8 [length, T, S, S, 3]`` kept in ``cache_dir`` as a ``.npy`` written
    atomically (``<name>.<pid>.tmp``, renamed when complete; the partial files of killed
    writers are removed by the next ``RenderedClips``) and memory-mapped on later runs.
    Item ``i`` equals ``SyntheticClips`` item ``i`` resized; the label is ``i % 12``.
    """

    labels: list[str] = list(LABELS)

    def __init__(
        self,
        seed: int,
        frames: int,
        size: int,
        length: int,
        store_size: int | None = None,
        cache_dir: str | os.PathLike | None = None,
        workers: int | None = None,
        progress: bool = True,
        style: str = "classic",
    ):
        from hcml.data.synth import get_style

        self.seed, self.frames, self.size, self.length = int(seed), int(frames), int(size), length
        self.style = get_style(style).name
        self.store_size = None if store_size in (None, size) else int(store_size)
        folder = Path(cache_dir) if cache_dir is not None else synth_cache_dir()
        side = self.store_size or self.size
        tag = ""
        if self.style != "classic":  # styled renders depend on the photo bank too
            from hcml.data.textures import load_bank

            tag = f"-{self.style}-{load_bank().fingerprint}"
        self.path = folder / f"synth-s{seed}-t{frames}-r{size}-x{side}-n{length}{tag}.npy"
        if folder.is_dir():
            remove_stale_renders(folder)  # partial renders of killed writers
        if not self.path.is_file():
            self._render(workers, progress)
        self.clips = np.load(self.path, mmap_mode="r")
        want = (length, self.frames, side, side, 3)
        if self.clips.shape != want:
            raise DatasetError(f"{self.path}: shape {self.clips.shape}, expected {want}; delete it")

    def _render(self, workers: int | None, progress: bool) -> None:
        import multiprocessing as mp

        from tqdm import tqdm

        self.path.parent.mkdir(parents=True, exist_ok=True)
        side = self.store_size or self.size
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        try:
            out = np.lib.format.open_memmap(
                tmp, mode="w+", dtype=np.uint8, shape=(self.length, self.frames, side, side, 3)
            )
            jobs = [
                (self.seed, self.frames, self.size, i, self.store_size, self.style)
                for i in range(self.length)
            ]
            workers = workers or os.cpu_count() or 1
            with mp.get_context("spawn").Pool(workers) as pool:
                done = pool.imap(_render_item, jobs, chunksize=16)
                bar = tqdm(
                    done, total=self.length, desc="rendering", unit="clip", disable=not progress
                )
                for i, clip in enumerate(bar):
                    out[i] = clip
            out.flush()
            del out
            os.replace(tmp, self.path)
        except BaseException:  # Ctrl-C, an error: no partial file left (SIGKILL: see above)
            tmp.unlink(missing_ok=True)
            raise

    def __len__(self) -> int:
        return self.length

    def label_of(self, index: int) -> int:
        return index % len(LABELS)

    def load(self, index: int, rng: np.random.Generator | None = None) -> tuple[torch.Tensor, int]:
        """Clip ``index``: (uint8 [T, S, S, 3], label)."""
        return torch.from_numpy(np.array(self.clips[index])), index % len(LABELS)


class VideoFiles:
    """Video files with labels: ``items`` [(absolute path, label id)], ``labels`` names."""

    def __init__(self, items: Sequence[tuple[Path, int]], labels: Sequence[str], root: Path):
        if not items:
            raise DatasetError(f"{root}: the dataset holds no video")
        self.items = [(Path(p), int(y)) for p, y in items]
        self.labels = list(labels)
        self.root = Path(root)

    def __len__(self) -> int:
        return len(self.items)

    def label_of(self, index: int) -> int:
        return self.items[index][1]

    def load(self, index: int, rng: np.random.Generator | None = None) -> tuple[torch.Tensor, int]:
        """Decode file ``index`` whole: (uint8 [T, H, W, 3], label). Raises VideoReadError."""
        from hcml.data.video import read_video

        path, label = self.items[index]
        return torch.from_numpy(read_video(path)), label


def _inside(root: Path, rel: str, where: str) -> Path:
    """``root / rel`` resolved; DatasetError when it leaves ``root`` (``..``, absolute, links)."""
    if not rel:
        raise DatasetError(f"{where}: empty path")
    root_r = root.resolve()
    path = (root_r / rel).resolve()
    if path != root_r and root_r not in path.parents:
        raise DatasetError(
            f"{where}: path {rel!r} resolves to {path}, outside the dataset root {root_r}"
        )
    return path


def _label_id(name: str, index: dict[str, int], where: str) -> int:
    if name not in index:
        known = ", ".join(list(index)[:20]) + (" ..." if len(index) > 20 else "")
        raise DatasetError(f"{where}: unknown label {name!r} (known: {known})")
    return index[name]


def _folder(root: Path, labels: Sequence[str] | None) -> VideoFiles:
    if labels is None:
        lt = root / "labels.txt"
        if lt.is_file():
            labels = read_labels(lt)
        else:
            present = sorted(p.name for p in root.iterdir() if p.is_dir())
            labels = list(LABELS) if set(present) <= set(LABELS) else present
    index = {n: i for i, n in enumerate(labels)}
    items: list[tuple[Path, int]] = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        videos = sorted(f for f in sub.iterdir() if f.suffix.lower() in VIDEO_EXTENSIONS)
        if not videos:
            continue
        y = _label_id(sub.name, index, f"{root}: folder {sub.name}/")
        for f in videos:
            items.append((_inside(root, f"{sub.name}/{f.name}", f"{root}"), y))
    return VideoFiles(items, labels, root)


def _csv(path: Path, labels: Sequence[str] | None) -> VideoFiles:
    root = path.parent
    if labels is None:
        lt = root / "labels.txt"
        labels = read_labels(lt) if lt.is_file() else list(LABELS)
    index = {n: i for i, n in enumerate(labels)}
    items: list[tuple[Path, int]] = []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        if "path" not in fields or "label" not in fields:
            raise DatasetError(f"{path}: CSV header must have 'path' and 'label', got {fields}")
        for n, row in enumerate(reader, start=2):
            where = f"{path}:{n}"
            items.append((_inside(root, row["path"], where), _label_id(row["label"], index, where)))
    return VideoFiles(items, labels, root)


def _kinetics(path: Path, root: Path, labels: Sequence[str] | None) -> VideoFiles:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if labels is None:
        labels = sorted({r["label"] for r in rows})
    index = {n: i for i, n in enumerate(labels)}
    items: list[tuple[Path, int]] = []
    for n, row in enumerate(rows, start=2):
        where = f"{path}:{n}"
        y = _label_id(row["label"], index, where)
        stem = f"{row['youtube_id']}_{int(float(row['time_start'])):06d}_" + (
            f"{int(float(row['time_end'])):06d}"
        )
        found = None
        for d in (row["label"], row.get("split", ""), ""):
            for ext in VIDEO_EXTENSIONS:
                cand = _inside(root, f"{d}/{stem}{ext}" if d else f"{stem}{ext}", where)
                if cand.is_file():
                    found = cand
                    break
            if found:
                break
        if found is None:
            raise DatasetError(f"{where}: no video file {stem}.* under {root}")
        items.append((found, y))
    return VideoFiles(items, labels, root)


def _ssv2(path: Path, root: Path, labels: Sequence[str] | None) -> VideoFiles:
    entries = json.loads(path.read_text())
    if not isinstance(entries, list):
        raise DatasetError(f"{path}: expected a JSON list of {{'id', 'template'|'label'}}")
    if labels is None:
        lj = path.parent / "labels.json"
        if lj.is_file():
            mapping = json.loads(lj.read_text())
            labels = [k for k, _ in sorted(mapping.items(), key=lambda kv: int(kv[1]))]
        else:
            labels = sorted({_ssv2_name(e) for e in entries})
    index = {n: i for i, n in enumerate(labels)}
    items: list[tuple[Path, int]] = []
    for n, e in enumerate(entries):
        where = f"{path}[{n}]"
        if not isinstance(e, dict) or "id" not in e:
            raise DatasetError(f"{where}: entry without an 'id'")
        y = _label_id(_ssv2_name(e), index, where)
        found = None
        for ext in VIDEO_EXTENSIONS:
            cand = _inside(root, f"{e['id']}{ext}", where)
            if cand.is_file():
                found = cand
                break
        if found is None:
            raise DatasetError(f"{where}: no video file {e['id']}.* under {root}")
        items.append((found, y))
    return VideoFiles(items, labels, root)


def _ssv2_name(e: dict) -> str:
    name = e.get("template", e.get("label", ""))
    return str(name).replace("[", "").replace("]", "")


def open_dataset(
    spec: str | os.PathLike,
    labels: Sequence[str] | None = None,
    root: str | os.PathLike | None = None,
    fmt: str = "auto",
) -> VideoFiles | SyntheticClips:
    """Open a dataset by path (folder, ``.csv``, ``.json``) or ``synth:KEY=V,...``.

    ``synth:seed=7,clips=50,frames=16,size=112`` is the synthetic set with ``clips`` clips a class
    (12 * clips items); ``style=classic|train|style-shift`` picks the generator's look and
    ``cache=SIDE`` renders the set once, stored at SIDE px (``RenderedClips``).
    fmt: ``auto`` | ``folder`` | ``csv`` | ``kinetics`` | ``ssv2``; root:
    where the videos of a Kinetics CSV / SSv2 JSON lie (default: the file's folder).
    """
    s = str(spec)
    if s.startswith("synth:") or s == "synth":
        from hcml.data.synth import get_style

        opts: dict[str, Any] = {"seed": 0, "clips": 50, "frames": 16, "size": 112}
        opts.update(style="classic", cache=None)
        for part in filter(None, s[6:].split(",")):
            key, _, val = part.partition("=")
            if key not in opts:
                raise DatasetError(f"{s}: unknown synth option {key!r} (options: {list(opts)})")
            try:
                opts[key] = get_style(val).name if key == "style" else int(val)
            except ValueError as e:
                raise DatasetError(f"{s}: {key}: {e}") from None
        n = opts["clips"] * len(LABELS)
        if opts["cache"] is not None:
            return RenderedClips(
                opts["seed"], opts["frames"], opts["size"], n, opts["cache"], style=opts["style"]
            )
        return SyntheticClips(opts["seed"], opts["frames"], opts["size"], n, opts["style"])
    path = Path(spec)
    if not path.exists():
        raise DatasetError(f"dataset not found: {path}")
    base = Path(root) if root is not None else (path if path.is_dir() else path.parent)
    if fmt == "auto":
        if path.is_dir():
            fmt = "folder"
        elif path.suffix.lower() == ".json":
            fmt = "ssv2"
        elif path.suffix.lower() == ".csv":
            with open(path, newline="") as f:
                header = next(csv.reader(f), [])
            fmt = "kinetics" if "youtube_id" in header else "csv"
        else:
            raise DatasetError(f"{path}: not a folder, .csv or .json dataset")
    if fmt == "folder":
        return _folder(path, labels)
    if fmt == "csv":
        return _csv(path, labels)
    if fmt == "kinetics":
        return _kinetics(path, base, labels)
    if fmt == "ssv2":
        return _ssv2(path, base, labels)
    raise DatasetError(f"unknown dataset format {fmt!r}; use folder, csv, kinetics or ssv2")


class ClipDataset(torch.utils.data.Dataset):
    """Sampling + augmentation + normalization over a source.

    ``ds[(index, seed)]`` -> (float32 [3, T, H, W], label id); ``ds[index]`` uses seed 0. The
    random choices (offset, crop, flip, jitter) come from ``default_rng([base_seed, seed])``.
    frames / frame_step / sampling: see ``sample_indices``. size: output H = W (or (H, W)).
    """

    def __init__(
        self,
        source: VideoFiles | SyntheticClips,
        frames: int,
        size: int | tuple[int, int],
        mean: Sequence[float],
        std: Sequence[float],
        frame_step: int = 1,
        sampling: str = "random",
        augment: ClipAugment | None = None,
        base_seed: int = 0,
    ):
        self.source, self.frames, self.size = source, int(frames), size
        self.mean, self.std = tuple(mean), tuple(std)
        self.frame_step, self.sampling = int(frame_step), sampling
        self.augment, self.base_seed = augment, int(base_seed)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, seed = (key, 0) if isinstance(key, int) else (int(key[0]), int(key[1]))
        rng = np.random.default_rng([self.base_seed, seed])
        clip, label = self.source.load(index, rng)
        idx = sample_indices(clip.shape[0], self.frames, self.frame_step, self.sampling, rng)
        clip = clip[torch.from_numpy(idx)]
        if self.augment is not None:
            clip, label = self.augment(clip, label, rng)
        else:
            clip = resize_clip(clip, self.size)
        return to_model_input(clip, self.mean, self.std), label


class StreamSampler(torch.utils.data.Sampler):
    """An exactly resumable stream of ``(index, seed)`` keys for one DDP rank.

    Global position p = 0, 1, 2, ... maps to an item: for an infinite source (``n=None``) item p;
    for a finite one epoch p // n of a permutation drawn from (seed, epoch) (``shuffle``) or the
    identity. Each key's seed is p itself, so augmentation never repeats across epochs. Step s of
    batch size B over W ranks gives rank r the positions s*B*W + r*B .. + B - 1; ``start_step``
    resumes there. ``steps`` None: endless.
    """

    def __init__(
        self,
        n: int | None,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        start_step: int = 0,
        steps: int | None = None,
        rank: int = 0,
        world: int = 1,
    ):
        self.n, self.batch_size, self.seed, self.shuffle = n, int(batch_size), int(seed), shuffle
        self.start_step, self.steps, self.rank, self.world = start_step, steps, rank, world
        self._perm: tuple[int, np.ndarray] | None = None

    def _item(self, p: int) -> int:
        if self.n is None:
            return p
        epoch, off = divmod(p, self.n)
        if not self.shuffle:
            return off
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, epoch]).permutation(self.n))
        return int(self._perm[1][off])

    def __iter__(self) -> Iterator[tuple[int, int]]:
        step = self.start_step
        while self.steps is None or step < self.steps:
            base = (step * self.world + self.rank) * self.batch_size
            for p in range(base, base + self.batch_size):
                yield self._item(p), p
            step += 1

    def __len__(self) -> int:
        if self.steps is None:
            raise TypeError("an endless StreamSampler has no length")
        return max(self.steps - self.start_step, 0) * self.batch_size


def describe(source: Any) -> str:
    """One line about a source, for logs."""
    if isinstance(source, SyntheticClips):
        n = "inf" if source.length is None else source.length
        return (
            f"synthetic(seed={source.seed}, frames={source.frames}, size={source.size}, n={n}, "
            f"style={source.style})"
        )
    return f"{len(source)} videos under {source.root}, {len(source.labels)} classes"
