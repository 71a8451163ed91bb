"""Re-create the real recorded test clips in tests/data/ from Debian's opencv-doc package.

    cd /tmp && apt-get download opencv-doc && dpkg -x opencv-doc_*.deb opencv-doc
    .venv/bin/python scripts/make_test_clips.py \
        /tmp/opencv-doc/usr/share/doc/opencv-doc/examples/data

Cuts the first frames of each recording and re-encodes them as H.264 MP4 (see tests/data/README.md).
"""

from __future__ import annotations

import sys
from itertools import islice
from pathlib import Path

import numpy as np

from hcml.data.video import iter_video, write_video

CLIPS = {  # source file -> (output name, frames kept, fps, crf)
    "vtest.avi": ("vtest_pedestrians_768x576.mp4", 60, 10, 30),
    "tree.avi": ("tree_320x240.mp4", 90, 15, 26),
}


def main(src: str) -> None:
    out_dir = Path(__file__).resolve().parents[1] / "tests" / "data"
    for name, (out, frames, fps, crf) in CLIPS.items():
        clip = np.stack(list(islice(iter_video(Path(src) / name), frames)))
        path = write_video(out_dir / out, clip, fps=fps, crf=crf)
        print(f"{path}: {clip.shape}, {path.stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main(sys.argv[1])
