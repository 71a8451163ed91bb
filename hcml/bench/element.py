"""``hcml bench element``: what ``hcmlaction`` costs a decode pipeline, against ``identity``.

A recorded 720p H.264 stream (made at bench time in a temporary folder: the demo stream
``tests/data/motion_tour_112.mp4`` scaled to --resolution, x264 ultrafast; or --input) is decoded
by ``filesrc ! decodebin ! ELEMENT ! fakesink sync=false`` (as fast as possible, no clock) with
ELEMENT one of: ``identity``; ``hcmlaction`` with inference disabled; ``hcmlaction`` in sync and
async mode at stride 1 and 4. Decoded I420 goes straight in (the element converts it itself).

Each pipeline runs in a child process: preroll first (model loading is not timed), then PLAYING
to EOS is timed: frames per second (wall), CPU ms per frame (the child's CPU time over every
thread / frames). Variants are run in ``--rounds`` rounds, alternating their order, and medians
are reported; the fps ratios to ``identity`` within the same run are the robust numbers.

"Inference disabled": hcmlaction has no switch for it, so it runs with ``frame-step=1000
incremental=false``: only frame 0 of every 1000 is sampled and the window (T sampled frames)
never fills on a stream shorter than 1000 x T frames, so no inference runs. What is left is the
element's own per-buffer work: map, caps/PTS bookkeeping and scheduling (frames the frame step
does not sample are never converted, so this excludes preprocessing, which the sync rows
include: about 3 ms a sampled 720p frame with inference). Its overhead per buffer = its CPU
(and wall) ms per frame minus identity's.
Goal: async mode keeps >= 95% of identity's fps.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Any

from hcml.bench.common import (
    REPO_ROOT,
    bar_plot,
    bench_card,
    footer,
    machine_line,
    md_table,
    paragraphs,
    plot_link,
    run_gst_jobs,
    temp_dir,
    text_table,
)

TITLE = "Element: hcmlaction in a decode pipeline"
DEFAULT_SOURCE = REPO_ROOT / "tests" / "data" / "motion_tour_112.mp4"
DEFAULT_RESOLUTION = "1280x720"
DEFAULT_FRAMES = 300  # of the demo stream's 384: keeps the suite under 5 minutes on 2 cores
NO_INFERENCE = "frame-step=1000 incremental=false"
GOAL = 0.95


def variants(card: Path) -> list[tuple[str, str]]:
    """(name, element description) of every measured variant, identity first."""
    act = f"hcmlaction model={card}"
    return [
        ("identity", "identity"),
        ("hcmlaction, inference disabled", f"{act} {NO_INFERENCE}"),
        ("sync, stride 1", f"{act} mode=sync stride=1"),
        ("sync, stride 4", f"{act} mode=sync stride=4"),
        ("async, stride 1", f"{act} mode=async stride=1"),
        ("async, stride 4", f"{act} mode=async stride=4"),
    ]


def parse_resolution(text: str) -> tuple[int, int]:
    """'1280x720' -> (1280, 720)."""
    w, h = (int(v) for v in text.lower().split("x"))
    return w, h


def make_stream(source: Path, out: Path, resolution: str, frames: int | None) -> Path:
    """Re-encode ``source`` to H.264 in Matroska at ``resolution`` (x264 ultrafast); first N
    frames."""
    w, h = parse_resolution(resolution)
    cut = f"identity eos-after={frames} ! " if frames else ""
    desc = (
        f"filesrc location={source} ! decodebin ! videoconvert ! videoscale ! "
        f"video/x-raw,format=I420,width={w},height={h},pixel-aspect-ratio=1/1 ! {cut}"
        f"x264enc speed-preset=ultrafast key-int-max=30 ! h264parse ! matroskamux ! "
        f"filesink location={out}"
    )
    (r,) = run_gst_jobs([{"kind": "file", "description": desc, "preroll": False}], timeout=600)
    if r["errors"] or not r.get("eos"):
        raise RuntimeError(f"could not make the {resolution} stream: {r['errors']}")
    return out


def measure(args: argparse.Namespace) -> dict[str, Any]:
    rounds = args.rounds or 2
    resolution = args.resolution or DEFAULT_RESOLUTION
    with temp_dir() as tmp:
        card, card_text = bench_card(args, tmp)
        if args.input is not None:
            stream, stream_text = Path(args.input), f"{args.input}"
        else:
            stream = make_stream(
                DEFAULT_SOURCE, Path(tmp) / "stream.mkv", resolution, args.frames or DEFAULT_FRAMES
            )
            stream_text = (
                f"{DEFAULT_SOURCE.relative_to(REPO_ROOT)} scaled to {resolution}, "
                "H.264 (x264 ultrafast)"
            )
        names = variants(card)
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in names}
        gstreamer = ""
        for i in range(rounds):
            order = names if i % 2 == 0 else names[::-1]
            jobs = [
                {
                    "kind": "file",
                    "description": f"filesrc location={stream} ! decodebin ! {element} ! "
                    "fakesink name=sink sync=false",
                }
                for _, element in order
            ]
            for (name, _), r in zip(order, run_gst_jobs(jobs, timeout=1800), strict=True):
                if r["errors"] or not r.get("eos"):
                    raise RuntimeError(f"element bench, {name}: {r['errors'] or 'no EOS'}")
                runs[name].append(r)
                gstreamer = r.get("gstreamer", gstreamer)
            print(f"round {i + 1}/{rounds} done", flush=True)
    rows = []
    for name, element in names:
        rs = runs[name]
        fps = statistics.median(r["frames"] / r["wall_s"] for r in rs)
        rows.append(
            {
                "variant": name,
                "element": element.replace(str(card), "CARD"),
                "frames": rs[0]["frames"],
                "predictions": rs[0]["predictions"],
                "fps": fps,
                "fps_runs": [r["frames"] / r["wall_s"] for r in rs],
                "wall_ms_per_frame": 1e3 / fps,
                "cpu_ms_per_frame": statistics.median(1e3 * r["cpu_s"] / r["frames"] for r in rs),
            }
        )
    base = rows[0]
    for r in rows:
        r["fps_vs_identity"] = r["fps"] / base["fps"]
    off = rows[1]
    overhead = {
        "cpu_ms_per_buffer": off["cpu_ms_per_frame"] - base["cpu_ms_per_frame"],
        "wall_ms_per_buffer": off["wall_ms_per_frame"] - base["wall_ms_per_frame"],
        "how": NO_INFERENCE,
    }
    asyncs = [r for r in rows if r["variant"].startswith("async")]
    result = {
        "suite": "element",
        "model": card_text,
        "stream": stream_text,
        "resolution": resolution,
        "rounds": rounds,
        "gstreamer": gstreamer,
        "rows": rows,
        "overhead": overhead,
        "goal": {
            "text": f"async keeps >= {GOAL:.0%} of identity's fps",
            "worst": min(r["fps_vs_identity"] for r in asyncs),
            "met": all(r["fps_vs_identity"] >= GOAL for r in asyncs),
        },
    }
    print(text_table(*_table(result)), flush=True)
    return result


def _table(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    headers = ["element", "fps", "vs identity", "CPU ms / frame", "wall ms / frame",
               "predictions"]  # fmt: skip
    rows = [
        [r["variant"], f"{r['fps']:.1f}", f"{100 * r['fps_vs_identity']:.1f}%",
         f"{r['cpu_ms_per_frame']:.2f}", f"{r['wall_ms_per_frame']:.2f}", r["predictions"]]
        for r in result["rows"]
    ]  # fmt: skip
    return headers, rows


def markdown(result: dict[str, Any], md: Path | None = None) -> str:
    o, g = result["overhead"], result["goal"]
    frames = result["rows"][0]["frames"]
    return paragraphs(
        f"Stream: {result['stream']}, {frames} frames, decoded by `decodebin` (avdec_h264). "
        f"Model: {result['model']}; medians over {result['rounds']} round(s). "
        + machine_line(result),
        md_table(*_table(result)),
        f"Element overhead per buffer with inference disabled (`{o['how']}`): "
        f"**{o['cpu_ms_per_buffer']:.2f} ms CPU**, {o['wall_ms_per_buffer']:.2f} ms wall "
        "(map and scheduling; unsampled frames are not preprocessed).",
        f"Goal: {g['text']}: **{'met' if g['met'] else 'not met'}** "
        f"(worst async {100 * g['worst']:.1f}%).",
        plot_link(result, md, "element fps"),
        footer(
            result,
            "`fakesink sync=false`: the pipeline runs as fast as it can, so identity's fps is "
            "the decoder's; CPU time is the child process's over all threads.",
        ),
    )


def plot(result: dict[str, Any], out_dir: Path) -> Path:
    groups = {r["variant"].replace(", ", "\n"): {"fps": r["fps"]} for r in result["rows"]}
    return bar_plot(
        out_dir / "element.png", groups, "frames / s", f"Element: {result['resolution']} decode"
    )
