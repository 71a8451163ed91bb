"""Per-class statistics of a rendered dataset: what moved, which way and how fast.

``python -m hcml.data.synth_stats DIR`` prints, for each class, the clip count, the mean
ground-truth flow (dx, dy) over moving pixels, its mean divergence and curl (x right, y down:
zoom_in diverges, rotate_cw has positive curl) and the mean decoded frame difference. With a
moving camera (styles ``train``, ``style_shift``; ``camera_px`` in ``params.jsonl``) the flow is
taken relative to the background, as the labels are: the camera's step is subtracted first.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np

from hcml.labels import LABELS


def flow_stats(flow: np.ndarray) -> dict[str, float]:
    """flow float32 [T-1, H, W, 2] -> mean dx, dy, divergence and curl over moving pixels."""
    moving = np.abs(flow).sum(-1) > 1e-6
    if not moving.any():
        return {"dx": 0.0, "dy": 0.0, "div": 0.0, "curl": 0.0, "speed": 0.0}
    dvx_dy, dvx_dx = np.gradient(flow[..., 0], axis=(1, 2))
    dvy_dy, dvy_dx = np.gradient(flow[..., 1], axis=(1, 2))
    inner = moving & np.roll(moving, 1, 1) & np.roll(moving, -1, 1)
    inner &= np.roll(moving, 1, 2) & np.roll(moving, -1, 2)
    sel = inner if inner.any() else moving
    return {
        "dx": float(flow[..., 0][moving].mean()),
        "dy": float(flow[..., 1][moving].mean()),
        "div": float((dvx_dx + dvy_dy)[sel].mean()),
        "curl": float((dvy_dx - dvx_dy)[sel].mean()),
        "speed": float(np.linalg.norm(flow[moving], axis=-1).mean()),
    }


def relative_flow(flow: np.ndarray, camera_px: list | np.ndarray | None) -> np.ndarray:
    """Screen flow [T-1, H, W, 2] -> flow relative to the background: minus the camera's step
    (``camera_px`` [T, 2], the background's screen offset a frame; None: a fixed camera)."""
    if camera_px is None:
        return flow
    cam = np.asarray(camera_px, dtype=np.float64)
    return (flow - np.diff(cam, axis=0)[:, None, None, :]).astype(np.float32)


def dataset_stats(root: str | Path) -> dict[str, dict[str, float]]:
    """Class name -> averaged stats (``n`` clips; flow stats when .flow.npz files exist)."""
    from hcml.data.video import read_video

    root = Path(root)
    cameras: dict[str, list] = {}
    if (root / "params.jsonl").is_file():
        with open(root / "params.jsonl") as f:
            for line in f:
                p = json.loads(line)
                if "camera_px" in p:
                    cameras[p["path"]] = p["camera_px"]
    per_class: dict[str, list[dict[str, float]]] = {name: [] for name in LABELS}
    with open(root / "index.csv", newline="") as f:
        for row in csv.DictReader(f):
            path = root / row["path"]
            frames = read_video(path).astype(np.float32)
            stats = {"frame_diff": float(np.abs(np.diff(frames, axis=0)).mean())}
            flow_file = path.with_suffix(".flow.npz")
            if flow_file.exists():
                flow = relative_flow(np.load(flow_file)["flow"], cameras.get(row["path"]))
                stats.update(flow_stats(flow))
            per_class[row["label"]].append(stats)
    return {
        name: {"n": len(rows), **{k: float(np.mean([r[k] for r in rows])) for k in rows[0]}}
        for name, rows in per_class.items()
        if rows
    }


def format_stats(stats: dict[str, dict[str, float]]) -> str:
    keys = ["dx", "dy", "div", "curl", "speed", "frame_diff"]
    head = f"{'class':18s} {'n':>3s} " + " ".join(f"{k:>10s}" for k in keys)
    lines = [head, "-" * len(head)]
    for name, s in stats.items():
        cells = " ".join(f"{s[k]:10.3f}" if k in s else f"{'-':>10s}" for k in keys)
        lines.append(f"{name:18s} {int(s['n']):3d} {cells}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(format_stats(dataset_stats(sys.argv[1])))
