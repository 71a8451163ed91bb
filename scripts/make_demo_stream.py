"""Re-create the demo's recorded stream, tests/data/motion_tour_112.mp4.

Twelve 16-frame clips of the synthetic motion benchmark, one a class in class-id order, rendered
with seed 2026 (never used for training or evaluation), played back to back twice at 25 fps and
encoded as H.264 (crf 18). Segment k (frames 16k .. 16k+15) shows class k % 12.

    .venv/bin/python scripts/make_demo_stream.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hcml.data.synth import clip_seed, render_clip
from hcml.data.video import write_video
from hcml.labels import LABELS

SEED, FRAMES, SIZE, ROUNDS = 2026, 16, 112, 2


def main() -> None:
    out = Path(__file__).resolve().parents[1] / "tests" / "data" / "motion_tour_112.mp4"
    clips = [
        render_clip(k % len(LABELS), clip_seed(SEED, k % len(LABELS), k), FRAMES, SIZE).frames
        for k in range(ROUNDS * len(LABELS))
    ]
    path = write_video(out, np.concatenate(clips), fps=25, crf=18)
    print(f"{path}: {len(clips)} segments of {FRAMES} frames, {path.stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
