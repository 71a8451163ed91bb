"""Score the demo's predictions on the motion tour: segment k of the stream shows class k % 12.

    python scripts/demo_score.py EVENTS.jsonl [--segment-frames 16] [--fps 25]

Each prediction's window is assigned to the segment its middle falls in (times from the first
window's start, which is the stream's first frame).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hcml.labels import LABELS


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("events", type=Path)
    p.add_argument("--segment-frames", type=int, default=16)
    p.add_argument("--fps", type=float, default=25.0)
    args = p.parse_args()
    events = [json.loads(ln) for ln in args.events.read_text().splitlines() if ln.strip()]
    if not events:
        raise SystemExit(f"{args.events}: no predictions")
    origin = min(e["window_start_pts"] for e in events)
    seg_ns = args.segment_frames / args.fps * 1e9
    right = 0
    print(f"{'time':>8s}  {'expected':18s} {'predicted':18s} score")
    for e in events:
        middle = (e["window_start_pts"] + e["window_end_pts"]) / 2 - origin
        expected = LABELS[int(middle // seg_ns) % len(LABELS)]
        ok = e["label"] == expected
        right += ok
        mark = "ok" if ok else "MISS"
        print(f"{(e['pts'] - origin) / 1e9:7.2f}s  {expected:18s} {e['label']:18s} "
              f"{e['score']:.3f} {mark}")  # fmt: skip
    print(f"{right}/{len(events)} windows labelled with the segment's class")


if __name__ == "__main__":
    main()
