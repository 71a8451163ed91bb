"""Photo textures for the generator, split into TRAIN and STYLE-SHIFT sources (issue 16).

Every source photo belongs to exactly one split, so a clip of the style-shift set never shows a
pixel of a photo that training saw:

- ``train``: scikit-learn's two bundled sample photos (``china.jpg``, ``flower.jpg``;
  ``sklearn.datasets.load_sample_images``) and the even-numbered (sorted by file name) photos of
  Debian's ``lomiri-wallpapers-16.04`` package, when fetched;
- ``style_shift``: frames of the two real recordings in ``tests/data`` (a street with
  pedestrians, a tree in the wind; from the *videos* of Debian's ``opencv-doc``) and the
  odd-numbered wallpapers.

Never the still images of ``opencv-doc``: the independent motion check draws its textures from
them. The wallpapers are optional (``python -m hcml.data.textures --fetch`` runs
``apt-get download`` + ``dpkg -x`` into ``~/.cache/hcml/wallpapers``, or ``$HCML_WALLPAPERS``);
without them each split has only its fixed sources, and ``TextureBank.fingerprint`` (written
into every clip's params and into styled render-cache names) says which bank rendered a set.

A texture: ``Texture.image`` float32 [H, W, 3] in [0, 255], long side at most ``MAX_SIDE`` px;
``Texture.sha`` the first 12 hex digits of the SHA-1 of its uint8 pixels (the id tests compare).
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["SPLITS", "Texture", "TextureBank", "fetch_wallpapers", "load_bank"]

SPLITS = ("train", "style_shift")
MAX_SIDE = 320
WALLPAPER_PACKAGE = "lomiri-wallpapers-16.04"
# Frames of each real recording used as style-shift photos (hand-held tree; fixed street camera).
VIDEO_FRAMES = {"tree_320x240.mp4": (0, 22, 44, 66), "vtest_pedestrians_768x576.mp4": (0, 30, 59)}
_REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Texture:
    """One source photo: ``source`` names it (``sklearn:china.jpg``, ``video:tree...mp4@22``,
    ``wallpaper:Bridge...jpg``), ``split`` is ``train`` or ``style_shift``."""

    source: str
    split: str
    sha: str
    image: np.ndarray  # float32 [H, W, 3], 0..255


class TextureBank:
    """The textures of both splits; ``split(name)`` -> list of ``Texture`` (never empty)."""

    def __init__(self, textures: list[Texture]):
        self.textures = sorted(textures, key=lambda t: t.source)
        self._by_split = {s: [t for t in self.textures if t.split == s] for s in SPLITS}
        for s, items in self._by_split.items():
            if not items:
                raise RuntimeError(f"texture bank: no {s} texture (sources missing?)")
        digest = hashlib.sha1(" ".join(t.sha for t in self.textures).encode()).hexdigest()
        self.fingerprint = digest[:12]

    def split(self, name: str) -> list[Texture]:
        if name not in self._by_split:
            raise ValueError(f"unknown texture split {name!r}; use one of {SPLITS}")
        return self._by_split[name]


def _sha(img: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(img).tobytes()).hexdigest()[:12]


def _shrink(img: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3] -> float32, box-filtered down so that the long side <= MAX_SIDE."""
    img = np.asarray(img, dtype=np.float32)
    k = int(np.ceil(max(img.shape[:2]) / MAX_SIDE))
    if k > 1:
        h, w = (img.shape[0] // k) * k, (img.shape[1] // k) * k
        img = img[:h, :w].reshape(h // k, k, w // k, k, 3).mean((1, 3))
    return img


def _texture(source: str, split: str, img: np.ndarray) -> Texture:
    small = _shrink(img)
    return Texture(source, split, _sha(np.rint(small).astype(np.uint8)), small)


def wallpaper_dir() -> Path:
    """``$HCML_WALLPAPERS``, else ``$XDG_CACHE_HOME/hcml/wallpapers`` (``~/.cache``): not under
    ``$HCML_CACHE``, so pointing the render cache elsewhere does not change the bank."""
    if os.environ.get("HCML_WALLPAPERS"):
        return Path(os.environ["HCML_WALLPAPERS"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hcml" / "wallpapers"


def _sklearn_files() -> list[Path]:
    """scikit-learn's bundled sample photos, found without importing sklearn (slow)."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise RuntimeError("texture bank: scikit-learn is not installed (pip install scikit-learn)")
    files = sorted((Path(spec.origin).parent / "datasets" / "images").glob("*.jpg"))
    if not files:
        raise RuntimeError("texture bank: scikit-learn's sample images are missing")
    return files


def _read_photo(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        im.thumbnail((2 * MAX_SIDE, 2 * MAX_SIDE))
        return np.asarray(im)


def _sklearn_textures(files: list[Path]) -> list[Texture]:
    return [_texture(f"sklearn:{f.name}", "train", _read_photo(f)) for f in files]


def _video_textures(data_dir: Path) -> list[Texture]:
    from hcml.data.video import read_video

    out = []
    for name, picks in VIDEO_FRAMES.items():
        path = data_dir / name
        if not path.is_file():
            raise RuntimeError(f"texture bank: style-shift video {path} is missing")
        frames = read_video(path)
        for k in picks:
            out.append(
                _texture(f"video:{name}@{k}", "style_shift", frames[min(k, len(frames) - 1)])
            )
    return out


def _wallpaper_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.jpg")) if folder.is_dir() else []


def _wallpaper_textures(files: list[Path]) -> list[Texture]:
    return [
        _texture(f"wallpaper:{f.name}", SPLITS[i % 2], _read_photo(f)) for i, f in enumerate(files)
    ]


@functools.lru_cache(maxsize=4)
def load_bank(
    data_dir: str | None = None, wallpapers: str | None = None, use_wallpapers: bool = True
) -> TextureBank:
    """The bank (cached per process, and on disk as ``$HCML_CACHE/textures-KEY.npz``, KEY from
    the source files' names and sizes). ``data_dir``: where the real test recordings lie
    (default ``tests/data`` of this checkout); ``wallpapers``: the fetched wallpaper folder
    (default ``wallpaper_dir()``; used when present unless ``use_wallpapers`` is False)."""
    from hcml.data.cache import synth_cache_dir

    videos = Path(data_dir) if data_dir else _REPO / "tests" / "data"
    sk = _sklearn_files()
    wp = _wallpaper_files(Path(wallpapers) if wallpapers else wallpaper_dir())
    wp = wp if use_wallpapers else []
    stats = [f"{f.name}:{f.stat().st_size}" for f in sk + wp]
    stats += [
        f"{n}:{(videos / n).stat().st_size if (videos / n).is_file() else -1}" for n in VIDEO_FRAMES
    ]
    key = hashlib.sha1(f"{MAX_SIDE} {VIDEO_FRAMES} {stats}".encode()).hexdigest()[:12]
    cache = synth_cache_dir() / f"textures-{key}.npz"
    if cache.is_file():
        with np.load(cache) as z:
            meta = [m.split("|") for m in z["meta"]]
            return TextureBank(
                [Texture(src, split, sha, z[f"t{i}"]) for i, (src, split, sha) in enumerate(meta)]
            )
    textures = _sklearn_textures(sk) + _video_textures(videos) + _wallpaper_textures(wp)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(
        tmp,
        meta=np.array([f"{t.source}|{t.split}|{t.sha}" for t in textures]),
        **{f"t{i}": t.image for i, t in enumerate(textures)},
    )
    os.replace(tmp, cache)
    return TextureBank(textures)


def fetch_wallpapers(dest: str | os.PathLike | None = None) -> Path:
    """Download ``lomiri-wallpapers-16.04`` (Debian, 15.8 MB, CC-BY / CC-BY-SA / CC0 photos)
    with ``apt-get download`` and unpack its JPEGs and copyright file into ``dest``."""
    dest = Path(dest) if dest else wallpaper_dir()
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["apt-get", "download", WALLPAPER_PACKAGE], cwd=tmp, check=True)
        deb = next(Path(tmp).glob("*.deb"))
        subprocess.run(["dpkg", "-x", str(deb), str(Path(tmp) / "x")], check=True)
        root = Path(tmp) / "x" / "usr" / "share"
        for f in (root / "backgrounds").glob("*.jpg"):
            shutil.copy(f, dest / f.name)
        shutil.copy(root / "doc" / WALLPAPER_PACKAGE / "copyright", dest / "copyright")
    return dest


def _main(argv: list[str]) -> int:
    if argv[:1] == ["--fetch"]:
        print(f"wallpapers in {fetch_wallpapers()}")
    bank = load_bank()
    print(f"texture bank {bank.fingerprint}:")
    for t in bank.textures:
        print(f"  {t.split:12s} {t.sha} {t.image.shape[1]}x{t.image.shape[0]} {t.source}")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
