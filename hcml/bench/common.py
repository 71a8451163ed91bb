"""What every suite shares: the machine, the command line, timing, tables, markdown sections.

A suite's result is a plain dict (the JSON file); its BENCHMARKS.md section and its plot are
rendered from that dict only, so ``hcml bench SUITE --from-json FILE`` reproduces them exactly.
Sections sit between ``<!-- bench:SUITE:begin -->`` and ``<!-- bench:SUITE:end -->`` markers;
everything outside the markers is prose that the bench never touches.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import shlex
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDER = "not yet measured: run make bench"


# ------------------------------------------------------------------------------ the machine
def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (``platform`` as a fallback)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def machine() -> dict[str, Any]:
    """Where the numbers were measured: CPU, cores, library versions, GPU, load at the start."""
    import numpy
    import onnxruntime
    import torch

    out: dict[str, Any] = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
    }
    with contextlib.suppress(OSError):
        out["load_avg_1min"] = round(os.getloadavg()[0], 2)
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
    return out


def machine_line(result: dict[str, Any]) -> str:
    """One sentence naming the date, CPU, cores, versions and load of a result."""
    m = result["machine"]
    extra = f", GPU {m['gpu']}" if m.get("gpu") else ""
    gst = f", {result['gstreamer']}" if result.get("gstreamer") else ""
    load = (
        f"; 1-minute load average {m['load_avg_1min']} at the start"
        if m.get("load_avg_1min") is not None
        else ""
    )
    return (
        f"Measured {result['date']} on {m['cpu']} ({m['cores']} cores visible){extra}, "
        f"torch {m['torch']}, onnxruntime {m['onnxruntime']}{gst}{load}."
    )


def stamp(
    result: dict[str, Any], suite: str, args: argparse.Namespace, where: dict[str, Any]
) -> dict[str, Any]:
    """Add suite, command, machine (``where``, taken before measuring) and date to a result
    (in place); returns it."""
    result.setdefault("suite", suite)
    result.setdefault("command", command_line(args))
    result.setdefault("machine", where)
    result.setdefault("date", time.strftime("%Y-%m-%d", time.gmtime()))
    return result


# ------------------------------------------------------------------------------ command line
#: (dest, option string, default) of every ``hcml bench`` option, filled by ``add_arguments``
OPTIONS: list[tuple[str, str, Any]] = []


def command_line(args: argparse.Namespace) -> str:
    """The exact ``hcml bench`` command that reproduces ``args`` (options left at their
    default are omitted; under ``all`` every suite records the ``all`` command)."""
    words = ["hcml", "bench", args.suite]
    for dest, flag, default in OPTIONS:
        value = getattr(args, dest, default)
        if value == default or value is None:
            continue
        if value is True:
            words.append(flag)
        elif isinstance(value, list | tuple):
            words += [flag, *(_word(v) for v in value)]
        else:
            words += [flag, _word(value)]
    return shlex.join(words)


def _word(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


# ------------------------------------------------------------------------------ timing
def summarize_ms(seconds: Sequence[float]) -> dict[str, float]:
    """median / p90 / min (ms) and the count of a list of durations in seconds."""
    acc = sorted(seconds)
    return {
        "median_ms": 1e3 * statistics.median(acc),
        "p90_ms": 1e3 * acc[int(0.9 * (len(acc) - 1))],
        "min_ms": 1e3 * acc[0],
        "runs": len(acc),
    }


def time_calls(fn: Callable[[], Any], seconds: float, min_runs: int = 3) -> dict[str, float]:
    """Call ``fn`` (after one warm-up call) for about ``seconds`` s, at least ``min_runs`` times;
    returns ``summarize_ms`` of the per-call wall times."""
    fn()
    acc: list[float] = []
    start = time.perf_counter()
    while len(acc) < min_runs or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        fn()
        acc.append(time.perf_counter() - t0)
    return summarize_ms(acc)


def time_interleaved(
    fns: dict[str, Callable[[], Any]], seconds: float, rounds: int = 6
) -> dict[str, dict]:
    """Median / p90 ms per call of each function, measured in interleaved rounds.

    The machine may be shared: interleaving short rounds exposes every function to the same
    background load, so ratios stay honest even when absolute times drift. Each function is
    warmed up twice, then gets ``seconds / (len(fns) * rounds)`` (at least 3 calls) a round.
    """
    for _ in range(2):  # warm-up
        for f in fns.values():
            f()
    times: dict[str, list[float]] = {name: [] for name in fns}
    share = seconds / (len(fns) * rounds)
    for _ in range(rounds):
        for name, f in fns.items():
            acc = times[name]
            start = time.perf_counter()
            n = 0
            while n < 3 or time.perf_counter() - start < share:
                t0 = time.perf_counter()
                f()
                acc.append(time.perf_counter() - t0)
                n += 1
    out = {}
    for name, acc in times.items():
        s = summarize_ms(acc)
        out[name] = {"median_ms": s["median_ms"], "p90_ms": s["p90_ms"], "runs": s["runs"]}
    return out


def time_pair(
    fa: Callable[[], Any], fb: Callable[[], Any], seconds: float, rounds: int = 6
) -> tuple[dict, dict]:
    """``time_interleaved`` of two functions: (fa's, fb's) median / p90 ms per call."""
    out = time_interleaved({"a": fa, "b": fb}, seconds, rounds)
    return out["a"], out["b"]


def percentiles(values: Sequence[float], ps: Sequence[int] = (50, 95, 99)) -> dict[str, float]:
    """``{"p50": ..., ...}`` of ``values`` (nearest rank; NaN when empty)."""
    acc = sorted(values)
    if not acc:
        return {f"p{p}": float("nan") for p in ps}
    return {f"p{p}": acc[max(0, math.ceil(p / 100 * len(acc)) - 1)] for p in ps}


# ------------------------------------------------------------------------------ tables
def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: floats to ``digits`` significant digits, None as '-'."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:  # NaN
            return "-"
        return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:.0f}"
    return str(value)


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], align: str = "") -> str:
    """A markdown table; ``align`` one letter a column (l/r), default: first left, rest right."""
    align = align or "l" + "r" * (len(headers) - 1)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """The same table aligned for a terminal."""
    cells = [list(headers)] + [[fmt(c) for c in row] for row in rows]
    widths = [min(24, max(len(str(r[i])) for r in cells)) for i in range(len(headers))]

    def cell(text: str, width: int) -> str:
        number = text.rstrip("%x").replace(".", "", 1).lstrip("+-").isdigit() or text == "-"
        return text.rjust(width) if number else text.ljust(width)

    lines = [
        "  ".join(cell(str(c), w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------ files
def markers(suite: str) -> tuple[str, str]:
    """The begin / end markers of a suite's generated section."""
    return f"<!-- bench:{suite}:begin -->", f"<!-- bench:{suite}:end -->"


def write_section(path: Path, suite: str, body: str, title: str) -> None:
    """Replace the text between ``suite``'s markers in ``path`` by ``body``; without markers,
    append ``## title`` and a marked section. Text outside the markers is kept."""
    begin, end = markers(suite)
    section = f"{begin}\n{body.strip()}\n{end}"
    text = path.read_text() if path.is_file() else "# Benchmarks\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + f"\n\n## {title}\n\n{section}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def plot_link(result: dict[str, Any], markdown: Path | None, alt: str) -> str:
    """A markdown image line for the result's ``plot`` (relative to the markdown file)."""
    plot = result.get("plot")
    if not plot:
        return ""
    where = Path(plot)
    if markdown is not None:
        where = Path(os.path.relpath(Path(plot).resolve(), markdown.resolve().parent))
    return f"![{alt}]({where.as_posix()})"


def footer(result: dict[str, Any], note: str = "") -> str:
    """The closing paragraph: the command and how the numbers were made."""
    return (
        f"Command: `{result['command']}`. {note}".rstrip()
        + " Generated from the JSON by the bench, not typed."
    )


def paragraphs(*parts: str) -> str:
    """Markdown paragraphs: the non-empty ``parts`` separated by blank lines."""
    return "\n\n".join(p.strip("\n") for p in parts if p and p.strip())


# ------------------------------------------------------------------------------ models
def stand_in_card(out_dir: str | os.PathLike, checkpoint: bool = True) -> Path:
    """Export a randomly initialised model shaped like the shipped one (``training/tiny_fast*``:
    hcml_tiny, 8 frames every 2nd, 64x64, PMBs at levels 0-1, beta 2, cost volume d=2 s=1,
    motion moments over 8 px) to ``out_dir``; returns the card.
    Weights do not change the cost. ``checkpoint``: also save a ``.pt`` (the torch backend)."""
    import torch

    from hcml.export.onnx_export import export_model
    from hcml.model import create_model

    torch.manual_seed(0)
    model = create_model(
        "hcml_tiny", frames=8, input_size=(3, 64, 64), max_displacement=2, stride=1,
        levels=[0, 1], beta=2, moments_window=8,
    ).eval()  # fmt: skip
    out = Path(out_dir)
    name, ckpt = "hcml_tiny_random", None
    if checkpoint:
        from hcml.model.checkpoint import save_checkpoint

        ckpt = save_checkpoint(out / f"{name}.pt", model)
    card = export_model(model, out, name, frame_step=2, checkpoint=ckpt, check=False)
    return Path(card.path)


def bench_card(args: argparse.Namespace, tmp: str | os.PathLike) -> tuple[Path, str]:
    """(card, what it is): ``--card``, else the shipped ``hcml.DEFAULT_CARD``, else a stand-in
    exported to ``tmp``."""
    from hcml import DEFAULT_CARD

    if getattr(args, "card", None) is not None:
        return Path(args.card), f"card {args.card}"
    if DEFAULT_CARD.is_file():
        return DEFAULT_CARD, f"shipped card {DEFAULT_CARD.relative_to(REPO_ROOT)}"
    return stand_in_card(tmp), (
        "random hcml_tiny shaped like the shipped model (T=8, frame-step 2, 64x64; "
        "engines/ has no card yet)"
    )


def temp_dir(prefix: str = "hcml-bench-") -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix=prefix)


# ------------------------------------------------------------------------------ plots
def bar_plot(
    path: Path,
    groups: dict[str, dict[str, float | None]],
    ylabel: str,
    title: str,
    log: bool = False,
) -> Path:
    """Grouped bars: one group per key of ``groups``, one bar per series inside it (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = list(dict.fromkeys(s for g in groups.values() for s in g))
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(groups) * max(1, len(series)) ** 0.5), 3.4))
    width = 0.8 / max(1, len(series))
    for i, s in enumerate(series):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(groups))]
        ys = [g.get(s) or 0.0 for g in groups.values()]
        ax.bar(xs, ys, width, label=s)
    ax.set_xticks(range(len(groups)), list(groups), fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if log:
        ax.set_yscale("log")
    if len(series) > 1:
        ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------ child runs
def run_gst_jobs(jobs: list[dict[str, Any]], timeout: float) -> list[dict[str, Any]]:
    """Run timing jobs (``kind``: ``file`` (default), ``live``, ``streams``, the functions of
    ``hcml.bench.gst_jobs``) in one child process of ``hcml.gst.runner``; one dict a job."""
    from hcml.gst.runner import run_jobs

    named = [{**j, "kind": f"hcml.bench.gst_jobs:{j.get('kind', 'file')}"} for j in jobs]
    return run_jobs(named, timeout=timeout, cwd=REPO_ROOT)
