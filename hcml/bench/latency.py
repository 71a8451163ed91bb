"""``hcml bench latency``: a live 30 fps source through ``hcmlaction`` for minutes (or an hour).

Pipeline (in a child process): ``videotestsrc is-live=true pattern=smpte horizontal-speed=4 !
video/x-raw,format=I420,width=W,height=H,framerate=F/1 ! hcmlaction name=act events=FILE mode=M
stride=S ! fakesink sync=false`` (scrolling bars: moving content, cheap to draw). The live
source timestamps every frame with the pipeline's running time at capture and pushes it in real
time.

Event latency: each prediction carries ``pts``, the PTS of the last frame of its window (the
bus message, the meta and the events line all have it). A bus sync handler runs in the thread
that posts the element's ``hcml-action`` message, i.e. at the moment the event is emitted, and
reads the pipeline clock there: latency = (clock time - base time), the running time of the
emission, minus the frame's PTS converted to running time with the segment seen on the
element's sink pad. Both sides are on the pipeline clock (the monotonic system clock), so no
wall-clock jumps enter. In async mode the worker posts a result as soon as it exists (before
issue 17 it left with the next frame, a frame interval later).

Per interval (a minute for runs of 10 minutes or more): latency p50/p95/p99/max (ms), frames,
events, windows dropped (async: a stream's backlog was full; read from the element's
engine), RSS (MiB) and open fds of the child process. ``--minutes 60`` is the soak: for runs of
10 minutes or more, RSS or fd growth above 5% from the 5-minute mark to the end fails (exit 1).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hcml.bench.common import (
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

TITLE = "Latency: live source, event latency, memory over time"
SOAK_TITLE = "Soak: an hour of live input, memory and file descriptors"
DEFAULT_MINUTES = 2.0
SOAK_MINUTES = 10.0  # runs at least this long get the soak verdict
SOAK_BASELINE_S = 300.0  # growth is measured from the 5-minute mark
SOAK_GROWTH_PCT = 5.0


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """Run length, interval (s), resolution, fps, mode and stride from the options."""
    seconds = args.seconds or 60.0 * (args.minutes or DEFAULT_MINUTES)
    interval = args.interval or (60.0 if seconds >= 60 * SOAK_MINUTES else max(1.0, seconds / 12))
    mode = args.mode or "async"
    if mode not in ("sync", "async"):
        raise ValueError(f"--mode must be sync or async, got {mode!r}")
    return {
        "seconds": seconds,
        "interval": interval,
        "resolution": args.resolution or "1280x720",
        "fps": args.fps or 30,
        "mode": mode,
        "stride": args.stride or 1,
    }


def soak_verdict(intervals: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """RSS / fd growth from the first interval at or after 5 minutes to the last one."""
    out: dict[str, Any] = {"applies": seconds >= 60 * SOAK_MINUTES, "limit_pct": SOAK_GROWTH_PCT}
    base = next((iv for iv in intervals if iv["t_s"] >= SOAK_BASELINE_S), None)
    if base is None or base is intervals[-1]:
        out.update(passed=None, why="no samples after the 5-minute mark")
        return out
    last = intervals[-1]
    rss = 100.0 * (last["rss_mib"] - base["rss_mib"]) / base["rss_mib"]
    fds = 100.0 * (last["fds"] - base["fds"]) / max(base["fds"], 1)
    out.update(
        baseline_t_s=base["t_s"],
        rss_growth_pct=rss,
        fds_growth_pct=fds,
        passed=rss <= SOAK_GROWTH_PCT and fds <= SOAK_GROWTH_PCT,
    )
    return out


def measure(args: argparse.Namespace) -> dict[str, Any]:
    s = settings(args)
    w, h = (int(v) for v in s["resolution"].lower().split("x"))
    with temp_dir() as tmp:
        card, card_text = bench_card(args, tmp)
        events = Path(tmp) / "events.jsonl"
        desc = (
            f"videotestsrc is-live=true pattern=smpte horizontal-speed=4 ! "
            f"video/x-raw,format=I420,width={w},height={h},framerate={s['fps']}/1 ! "
            f"hcmlaction name=act model={card} mode={s['mode']} stride={s['stride']} "
            f"events={events} ! fakesink name=sink sync=false"
        )
        print(
            f"latency: {s['seconds']:.0f} s of a live {s['resolution']} @ {s['fps']} fps source, "
            f"mode={s['mode']} stride={s['stride']}, a row every {s['interval']:.0f} s",
            flush=True,
        )
        job = {"kind": "live", "description": desc, "seconds": s["seconds"]}
        job["interval"] = s["interval"]
        (r,) = run_gst_jobs([job], timeout=s["seconds"] + 300)
        lines = events.read_text().count("\n") if events.is_file() else 0
    if r["errors"]:
        raise RuntimeError(f"latency bench: {r['errors']}")
    intervals = r["intervals"]
    dropped = [iv["dropped"] for iv in intervals if iv["dropped"] is not None]
    result = {
        "suite": "latency",
        "model": card_text,
        "gstreamer": r.get("gstreamer", ""),
        **s,
        "pipeline": desc.replace(str(card), "CARD").replace(str(events), "EVENTS"),
        "intervals": intervals,
        "latency_ms": r["latency_ms"],
        "events": r["events"],
        "event_lines": lines,
        "dropped": sum(dropped) if dropped else None,
        "start": r["start"],
        "soak": soak_verdict(intervals, s["seconds"]),
    }
    print(text_table(*_table(result)), flush=True)
    return result


def _table(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    headers = ["t (s)", "fps", "events", "dropped", "p50 ms", "p95 ms", "p99 ms", "max ms",
               "RSS MiB", "fds"]  # fmt: skip
    rows = []
    prev = 0.0
    for iv in result["intervals"]:
        lat = iv["latency_ms"]
        fps = iv["frames"] / max(iv["t_s"] - prev, 1e-9)
        prev = iv["t_s"]
        rows.append(
            [f"{iv['t_s']:.0f}", f"{fps:.1f}", iv["events"], iv["dropped"],
             lat["p50"], lat["p95"], lat["p99"], lat["max"], f"{iv['rss_mib']:.1f}", iv["fds"]]
        )  # fmt: skip
    return headers, rows


def status(result: dict[str, Any]) -> int:
    """Exit status: 1 when the soak verdict applies and failed."""
    soak = result.get("soak") or {}
    return 1 if soak.get("applies") and soak.get("passed") is False else 0


def _verdict_text(result: dict[str, Any]) -> str:
    soak = result["soak"]
    if soak.get("passed") is None:
        growth = ""
    else:
        growth = (
            f"RSS {soak['rss_growth_pct']:+.1f}%, fds {soak['fds_growth_pct']:+.1f}% from "
            f"{soak['baseline_t_s']:.0f} s to the end"
        )
    if not soak["applies"]:
        return f"Soak verdict: not applicable (runs of {SOAK_MINUTES:.0f} minutes or more)" + (
            f"; {growth}." if growth else "."
        )
    if soak["passed"] is None:
        return f"Soak verdict: **unknown** ({soak.get('why', '')})."
    word = "passed" if soak["passed"] else "FAILED"
    return (
        f"Soak verdict (growth <= {soak['limit_pct']:.0f}% after 5 minutes): **{word}**, {growth}."
    )


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.3g} minutes" if seconds >= 120 else f"{seconds:.0f} s"


def markdown(result: dict[str, Any], md: Path | None = None) -> str:
    lat = result["latency_ms"]
    total = (
        f"Whole run: {result['events']} events, latency p50 {lat['p50']:.1f} ms, "
        f"p95 {lat['p95']:.1f} ms, p99 {lat['p99']:.1f} ms, max {lat['max']:.1f} ms; "
        f"windows dropped: {result['dropped'] if result['dropped'] is not None else '-'}; "
        f"RSS {result['start']['rss_mib']:.0f} MiB and {result['start']['fds']} fds at the start."
    )
    return paragraphs(
        f"{_duration(result['seconds'])} of `videotestsrc is-live=true` at "
        f"{result['resolution']}, {result['fps']} fps through `hcmlaction mode={result['mode']} "
        f"stride={result['stride']}` with events; model: {result['model']}. "
        + machine_line(result),
        md_table(*_table(result)),
        total,
        _verdict_text(result),
        plot_link(result, md, "p99 latency and RSS over time"),
        footer(
            result,
            "Latency: running time on the pipeline clock when the element posts its hcml-action "
            "message minus the running time of the window's last frame (its PTS); one row per "
            f"{result['interval']:.0f} s.",
        ),
    )


def section(result: dict[str, Any]) -> tuple[str, str]:
    """BENCHMARKS.md section (name, title): a soak-length run has its own, beside the short one."""
    return ("soak", SOAK_TITLE) if result["soak"]["applies"] else ("latency", TITLE)


def plot(result: dict[str, Any], out_dir: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ivs = result["intervals"]
    t = [iv["t_s"] / 60.0 for iv in ivs]
    fig, (a, b) = plt.subplots(2, 1, figsize=(6.4, 4.6), sharex=True)
    for key in ("p50", "p99"):
        a.plot(t, [iv["latency_ms"][key] for iv in ivs], marker=".", label=key)
    a.set_ylabel("event latency (ms)")
    a.set_ylim(bottom=0)
    a.legend(fontsize=8)
    a.grid(alpha=0.3)
    a.set_title(
        f"Latency: live {result['resolution']} @ {result['fps']} fps, mode={result['mode']}",
        fontsize=10,
    )
    b.plot(t, [iv["rss_mib"] for iv in ivs], marker=".", color="tab:red", label="RSS")
    b.set_ylabel("RSS (MiB)")
    b.set_ylim(0, 1.15 * max(iv["rss_mib"] for iv in ivs))
    b.set_xlabel("minutes")
    b.grid(alpha=0.3)
    fds = b.twinx()
    fds.plot(t, [iv["fds"] for iv in ivs], ls="--", color="tab:gray", label="open fds")
    fds.set_ylabel("open fds")
    fds.set_ylim(0, 1.5 * max(iv["fds"] for iv in ivs))
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{section(result)[0]}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
