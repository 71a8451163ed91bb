"""Per-object accuracy of hcmlaction on generated multi-object scenes (issue 20's targets).

    python scripts/object_accuracy.py [--scenes 12] [--detect] [--out DIR]

Renders scenes of 2, 3 and 4 objects (``hcml.data.scenes``; each object its own motion class,
3 segments of 16 frames), writes them as H.264 MP4 (CRF 12) and runs
``filesrc ! decodebin ! videoconvert ! [hcmldetect !] hcmlaction stride=16`` on each, in a
child ``gst-launch-1.0``: boxes are the ground truth (``rois`` property) or, with
``--detect``, hcmldetect's (HOG people detector + IoU tracker). Windows with stride 16 start on
segment boundaries, so each sees exactly one clip per object. Prints the share of (object,
window) pairs labelled right (``score_events``: matched to the ground truth by IoU >= 0.5) and
writes ``object_accuracy.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path

from hcml import DEFAULT_CARD
from hcml.data.scenes import render_scene, score_events, write_scene


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenes", type=int, default=12, help="scenes (2, 3, 4 objects in turn)")
    p.add_argument("--detect", action="store_true", help="boxes from hcmldetect, not the truth")
    p.add_argument("--model", default=str(DEFAULT_CARD))
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="hcml-objacc-"))
    out.mkdir(parents=True, exist_ok=True)
    total = {"pairs": 0, "right": 0, "unmatched": 0, "missed_objects": 0, "objects": 0}
    rows = []
    for i in range(args.scenes):
        n = 2 + i % 3
        scene = render_scene(1000 + i, n_objects=n, width=320, height=240, segments=3)
        video = write_scene(scene, out / f"scene{i}.mp4")
        events = out / f"scene{i}{'_det' if args.detect else ''}.jsonl"
        events.unlink(missing_ok=True)
        if args.detect:
            middle = "hcmldetect interval=1 ! hcmlaction roi-mode=meta"
        else:
            middle = f'hcmlaction rois="{scene.rois_property()}"'
        cmd = (
            f"gst-launch-1.0 -q filesrc location={video} ! decodebin ! videoconvert ! {middle} "
            f"model={args.model} stride=16 events={events} ! fakesink"
        )
        subprocess.run(cmd, shell=True, check=True, env=os.environ)
        lines = (
            [json.loads(ln) for ln in events.read_text().splitlines()] if events.exists() else []
        )
        s = score_events(lines, scene.objects)
        rows.append({"scene": i, "objects": n, **{k: v for k, v in s.items() if k != "per_object"}})
        total["pairs"] += s["pairs"]
        total["right"] += s["right"]
        total["unmatched"] += s["unmatched"]
        total["missed_objects"] += len(s["missed"])
        total["objects"] += n
        print(f"scene {i}: {n} objects, {s['right']}/{s['pairs']} right, "
              f"{s['unmatched']} unmatched, missed objects {s['missed']}", flush=True)  # fmt: skip
    total["accuracy"] = total["right"] / total["pairs"] if total["pairs"] else 0.0
    # pairs expected with every object found: 3 windows (segments) per object
    total["expected_pairs"] = 3 * total["objects"]
    total["accuracy_of_expected"] = total["right"] / total["expected_pairs"]
    print(json.dumps(total))
    (out / "object_accuracy.json").write_text(
        json.dumps({"total": total, "scenes": rows}, indent=1)
    )


if __name__ == "__main__":
    main()
