"""``hcml game-server``: a synthetic game streamed over RTP/H.264, with its ground truth.

Plays ``hcml.stream.game_scene``'s scene (the motion benchmark's sprites, one action at a time,
changing every ``--segment-seconds`` on a schedule drawn from ``--seed``); this module is the
GStreamer half: the sender pipeline, real-time pacing and the schedule file.

Frames are pushed in real time (``--fps``) into
  appsrc is-live=true format=time (PTS = frame index / fps) ! videoconvert ! x264enc
  tune=zerolatency speed-preset=ultrafast key-int-max=30 bitrate=B ! rtph264pay
  config-interval=1 pt=96 ! udpsink host=HOST port=PORT
and ``pipelines/rtp-h264.pipeline`` receives them. ``--schedule OUT.json`` writes the ground
truth: every segment (label, class id, first/last frame, start/end PTS in ns, wall-clock send
times) and the wall-clock time (Unix seconds) at which each frame, fully rendered, was pushed.

A scored run (start the client first, so it sees the stream from frame 0):
  terminal 1: hcml run rtp://127.0.0.1:5004 --json > events.jsonl     (Ctrl-C when done)
  terminal 2: hcml game-server --port 5004 --duration 60 --schedule schedule.json
  then:       hcml game-score events.jsonl schedule.json
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

import numpy as np

from hcml.gst.environment import gst_environment
from hcml.labels import LABELS

FORMAT = "hcml-game-schedule/1"
KEY_INT = 30


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="where to send the RTP packets")
    p.add_argument("--port", type=int, default=5004, help="UDP port of the receiver")
    p.add_argument("--fps", type=int, default=30, help="frames a second")
    p.add_argument("--size", type=int, default=112, help="frame width and height in pixels")
    p.add_argument(
        "--duration", type=float, default=0.0, help="seconds to stream (0: until Ctrl-C)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the scene and the schedule")
    p.add_argument(
        "--segment-seconds", type=float, default=3.0, help="seconds between action changes"
    )
    p.add_argument("--bitrate", type=int, default=1500, help="x264enc bitrate in kbit/s")
    p.add_argument("--schedule", type=Path, help="write the ground truth (JSON) here at the end")
    p.add_argument("--quiet", action="store_true", help="do not print each segment as it starts")


def sender_description(args: argparse.Namespace) -> str:
    """The gst-launch text of the sender (appsrc named ``src``)."""
    caps = f"video/x-raw,format=RGB,width={args.size},height={args.size},framerate={args.fps}/1"
    return (
        f'appsrc name=src is-live=true format=time caps="{caps}" ! videoconvert ! '
        "video/x-raw,format=I420 ! "
        f"x264enc tune=zerolatency speed-preset=ultrafast key-int-max={KEY_INT} "
        f"bitrate={args.bitrate} ! rtph264pay config-interval=1 pt=96 ! "
        f'udpsink host="{args.host}" port={args.port} sync=false'
    )


def _segment_record(index: int, class_id: int, first: int, fps: int, wall: list[float]) -> dict:
    last = len(wall) - 1
    return {
        "index": index, "label": LABELS[class_id], "class_id": class_id,
        "start_frame": first, "end_frame": last + 1,
        "start_pts": round(first * 1e9 / fps), "end_pts": round((last + 1) * 1e9 / fps),
        "start_wall": wall[first], "end_wall": wall[last],
    }  # fmt: skip


def run(args: argparse.Namespace) -> int:
    if args.fps < 1 or args.size < 32 or args.segment_seconds <= 0 or args.duration < 0:
        print("hcml game-server: need fps >= 1, size >= 32, segment-seconds > 0", file=sys.stderr)
        return 2
    gst_environment()
    import gi

    gi.require_version("Gst", "1.0")
    from gi.repository import GLib, Gst

    Gst.init(None)
    try:
        pipeline = Gst.parse_launch(sender_description(args))
    except GLib.Error as e:
        print(f"hcml game-server: cannot build the sender: {e.message}", file=sys.stderr)
        return 1
    src, bus = pipeline.get_by_name("src"), pipeline.get_bus()
    from hcml.stream.game_scene import GameScene, class_schedule  # torch, after GStreamer as before

    scene = GameScene(args.size, args.seed)
    classes = class_schedule(args.seed)
    frame_ns = 1e9 / args.fps
    per_segment = args.segment_seconds * args.fps
    total = round(args.duration * args.fps) if args.duration else None
    wall: list[float] = []
    segments: list[dict] = []
    current: tuple[int, int, int] | None = None  # (index, class id, first frame)
    stop: list[bool] = []
    previous = signal.signal(signal.SIGINT, lambda *_: stop.append(True))
    status = 0
    pipeline.set_state(Gst.State.PLAYING)
    print(
        f"hcml game-server: {args.size}x{args.size} at {args.fps} fps, RTP/H.264 (payload 96) "
        f"to {args.host}:{args.port}; receive with: hcml run rtp://{args.host}:{args.port}",
        file=sys.stderr,
        flush=True,
    )
    start = time.monotonic()
    try:
        n = 0
        while not stop and (total is None or n < total):
            seg = int(n // per_segment)
            if current is None or seg != current[0]:
                if current is not None:
                    segments.append(_segment_record(*current, args.fps, wall))
                current = (seg, next(classes), n)
                scene.start(current[1], np.random.default_rng([args.seed, 2, seg]))
                if not args.quiet:
                    print(f"{n / args.fps:8.2f} s  segment {seg}: {scene.name}", flush=True)
            pixels = scene.frame()
            delay = start + n / args.fps - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            buf = Gst.Buffer.new_wrapped(pixels.tobytes())
            buf.pts, buf.duration = round(n * frame_ns), round(frame_ns)
            wall.append(time.time())
            if src.emit("push-buffer", buf) != Gst.FlowReturn.OK:
                break
            n += 1
            msg = bus.pop_filtered(Gst.MessageType.ERROR)
            if msg is not None:
                err, _ = msg.parse_error()
                print(f"hcml game-server: error from {msg.src.get_name()}: {err.message}",
                      file=sys.stderr)  # fmt: skip
                status = 1
                break
        if current is not None and wall:
            segments.append(_segment_record(*current, args.fps, wall))
        src.emit("end-of-stream")
        bus.timed_pop_filtered(5 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    finally:
        pipeline.set_state(Gst.State.NULL)
        signal.signal(signal.SIGINT, previous)
    late = sum(w - wall[0] > i / args.fps + 1 / args.fps for i, w in enumerate(wall))
    print(f"hcml game-server: sent {len(wall)} frames in {time.monotonic() - start:.1f} s "
          f"({late} more than a frame late)", file=sys.stderr)  # fmt: skip
    if args.schedule:
        schedule = {
            "format": FORMAT, "seed": args.seed, "fps": args.fps,
            "width": args.size, "height": args.size, "segment_seconds": args.segment_seconds,
            "host": args.host, "port": args.port, "labels": list(LABELS),
            "segments": segments,
            "frame_wall": wall,  # Unix seconds at which frame i (PTS i / fps) was pushed
        }  # fmt: skip
        args.schedule.parent.mkdir(parents=True, exist_ok=True)
        args.schedule.write_text(json.dumps(schedule, indent=1) + "\n")
        print(f"hcml game-server: schedule written to {args.schedule}", file=sys.stderr)
    return status
