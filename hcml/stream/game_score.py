"""``hcml game-score EVENTS SCHEDULE``: accuracy and latency of predictions on a game stream.

EVENTS: the JSON lines of ``hcml run rtp://... --json`` (or an ``events=`` file, which has no
wall-clock times, so no latency); SCHEDULE: what ``hcml game-server --schedule`` wrote.

Aligning the two: the receiver's PTS are its own (RTP carries no absolute time), but they
keep the sender's spacing exactly (``rtpjitterbuffer mode=none`` in ``pipelines/rtp-h264.pipeline``
derives them from the RTP timestamps, not from arrival times), so the frame a PTS shows is
``FIRST + round((pts - pts0) * fps)``,
where pts0 is the earliest window start among the events (the first frame the client decoded:
a window starts at a stream's first frame) and FIRST is the sender frame that was
(``--first-frame``, 0 when the client was listening before the server started).

Accuracy counts the windows whose first and last frames lie in one segment (windows that straddle
an action change are not scored); a window is right when its label is the segment's. Latency is
``wall_time`` of a prediction (when ``hcml run`` received it) minus the wall-clock time at which
the server pushed the window's last frame: render -> encode -> RTP -> decode -> inference -> bus.
Both clocks must agree (same machine, or NTP-synchronised machines).
"""

from __future__ import annotations

import argparse
import bisect
import json
import sys
from pathlib import Path

import numpy as np


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("events", type=Path, help="JSON lines from hcml run --json (or events=)")
    p.add_argument("schedule", type=Path, help="the JSON from hcml game-server --schedule")
    p.add_argument(
        "--first-frame",
        type=int,
        default=0,
        help="the server frame that the client decoded first (0: it listened from the start)",
    )
    p.add_argument("--json", type=Path, help="also write the result as JSON here")


def load_events(path: str | Path) -> list[dict]:
    """Prediction records with underscore keys (bus messages use dashes: window-end-pts)."""
    events = []
    for n, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except ValueError as e:
                raise ValueError(f"{path}:{n}: not a JSON record: {e}") from e
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{n}: not a JSON object")
            events.append({k.replace("-", "_"): v for k, v in record.items()})
    for n, e in enumerate(events, start=1):
        missing = [k for k in ("window_start_pts", "window_end_pts", "label") if k not in e]
        if missing and "label" in e:  # a prediction record without its window
            raise ValueError(f"{path}: prediction {n} lacks {', '.join(missing)}")
    return [e for e in events if "label" in e]


def load_schedule(path: str | Path) -> dict:
    """The JSON of ``hcml game-server --schedule``; ValueError naming the file when it is not
    JSON or lacks ``fps`` / ``segments`` / ``frame_wall``."""
    try:
        schedule = json.loads(Path(path).read_text())
    except ValueError as e:
        raise ValueError(f"{path}: not JSON: {e}") from e
    need = ("fps", "segments", "frame_wall")
    if not isinstance(schedule, dict) or any(k not in schedule for k in need):
        raise ValueError(
            f"{path}: not a game-server schedule (needs {', '.join(need)}: hcml game-server "
            "--schedule FILE)"
        )
    for i, seg in enumerate(schedule["segments"]):
        if not isinstance(seg, dict) or any(
            k not in seg for k in ("start_frame", "start_pts", "label")
        ):
            raise ValueError(f"{path}: segments[{i}] lacks start_frame, start_pts or label")
    return schedule


def score(events: list[dict], schedule: dict, first_frame: int = 0) -> dict:
    """Accuracy over windows inside one segment, per-segment counts, latency percentiles (ms)."""
    fps, segments, wall = schedule["fps"], schedule["segments"], schedule["frame_wall"]
    starts = [s["start_frame"] for s in segments]
    result: dict = {"events": len(events), "scored": 0, "correct": 0, "accuracy": None}
    per_segment = [{"label": s["label"], "scored": 0, "correct": 0} for s in segments]
    latencies = []
    if events:
        pts0 = min(e["window_start_pts"] for e in events)
        frame = lambda pts: first_frame + round((pts - pts0) * fps / 1e9)
        for e in events:
            first, last = frame(e["window_start_pts"]), frame(e["window_end_pts"])
            if not 0 <= last < len(wall):
                continue
            if "wall_time" in e:
                latencies.append((e["wall_time"] - wall[last]) * 1e3)
            seg = bisect.bisect_right(starts, last) - 1
            if seg < 0 or first < starts[seg]:
                continue  # the window straddles an action change
            ok = e["label"] == segments[seg]["label"]
            per_segment[seg]["scored"] += 1
            per_segment[seg]["correct"] += ok
    result["scored"] = sum(s["scored"] for s in per_segment)
    result["correct"] = sum(s["correct"] for s in per_segment)
    if result["scored"]:
        result["accuracy"] = result["correct"] / result["scored"]
    result["segments"] = per_segment
    result["latency_ms"] = None
    if latencies:
        lat = np.asarray(latencies)
        result["latency_ms"] = {
            "n": len(lat), "p50": float(np.percentile(lat, 50)),
            "p95": float(np.percentile(lat, 95)), "max": float(lat.max()),
            "negative": int((lat < 0).sum()),
        }  # fmt: skip
    return result


def format_report(result: dict, schedule: dict) -> str:
    """The per-segment table and the summary lines that ``hcml game-score`` prints."""
    lines = [f"{'segment':>7s}  {'start':>7s}  {'label':18s} right/scored"]
    for i, (seg, res) in enumerate(zip(schedule["segments"], result["segments"], strict=True)):
        lines.append(f"{i:7d}  {seg['start_pts'] / 1e9:6.2f}s  {seg['label']:18s} "
                     f"{res['correct']:5d}/{res['scored']}")  # fmt: skip
    acc = result["accuracy"]
    acc_text = "n/a" if acc is None else f"{acc:.3f}"
    lines.append(
        f"accuracy {acc_text} ({result['correct']}/{result['scored']} windows inside one "
        f"segment; {result['events']} predictions)"
    )
    lat = result["latency_ms"]
    if lat is None:
        lines.append(
            "latency n/a (the events carry no wall_time: record them with hcml run --json)"
        )
    else:
        lines.append(f"latency render->prediction p50 {lat['p50']:.1f} ms, p95 {lat['p95']:.1f} "
                     f"ms, max {lat['max']:.1f} ms ({lat['n']} predictions)")  # fmt: skip
        if lat["negative"]:
            lines.append(f"warning: {lat['negative']} predictions arrived before their frame was "
                         "sent: clocks or alignment are off (see --first-frame)")  # fmt: skip
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        events = load_events(args.events)
        schedule = load_schedule(args.schedule)
    except (OSError, ValueError) as e:
        print(f"hcml game-score: {e}", file=sys.stderr)
        return 2
    result = score(events, schedule, args.first_frame)
    print(format_report(result, schedule))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0 if result["scored"] else 1
