"""``hcml bench device``: the GPU check (``hcml.bench.device_checks``) as a BENCHMARKS.md section.

Usually the JSON comes from ``scripts/device_check.py`` on a lent GPU machine (torch with CUDA
and onnxruntime only) and is rendered here without measuring:
``hcml bench device --from-json benchmarks/device.json --markdown BENCHMARKS.md``
(``--plots benchmarks`` for the plot).
``hcml bench device --device cuda`` measures directly (``--device cpu``, the default of
``hcml bench``, is the dry run: every check on the CPU with tiny sizes, numbers meaningless).
Not part of ``hcml bench all``. Exit status 1 when a check failed or was skipped for time.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hcml.bench.common import (
    bar_plot,
    fmt,
    footer,
    machine_line,
    md_table,
    paragraphs,
    plot_link,
    text_table,
)

TITLE = "GPU check: torch CUDA backend, CUDA graphs, device input, streams per GPU"


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from hcml.bench.device_checks import Sizes, run_checks

    device = args.device if args.device.startswith("cuda") else "cpu"
    sizes = Sizes.for_run(device == "cpu", quick=False)
    if args.batches:
        sizes.batches = tuple(args.batches)
    if args.seconds:
        sizes.seconds = args.seconds
    result = run_checks(device, card=args.card, sizes=sizes)
    print(text_table(*_summary(result)), flush=True)
    return result


def status(result: dict[str, Any]) -> int:
    return int("error" in result or result.get("failed", 0) > 0 or result.get("skipped", 0) > 0)


def _verdict(check: dict[str, Any]) -> str:
    if "skipped" in check:
        return f"skipped ({check['skipped']})"
    v = {True: "pass", False: "**fail**", None: "-"}[check.get("pass")]
    return v + (f": {check['error']}" if "error" in check else "")


def _g(value: Any, unit: str = "") -> str:
    return "-" if value is None else f"{fmt(value)}{unit}"


def _numbers(name: str, c: dict[str, Any]) -> str:
    """The key numbers of one check, one cell."""
    if "error" in c or "skipped" in c:
        return ""
    if name == "environment":
        if not c.get("gpu"):
            return c.get("note", "no GPU")
        return (f"{c['gpu']} ({c.get('memory_gib')} GiB, sm {c.get('capability')}), driver "
                f"{c.get('driver') or '?'}, CUDA {c.get('cuda_runtime')}, cuDNN {c.get('cudnn')}, "
                f"cudnn TF32 {c['tf32']['cudnn.allow_tf32']}")  # fmt: skip
    if name in ("exactness", "cuda_graphs"):
        text = (f"clip {_g(c.get('clip_max_abs_diff'))}, step {_g(c.get('step_max_abs_diff'))}, "
                f"step vs clip {_g(c.get('step_vs_clip_max_abs_diff'))} (max abs, tol "
                f"{_g(c.get('tolerance'))})")  # fmt: skip
        if "without_tf32" in c:
            t = c["without_tf32"]
            text += (f"; TF32 off: clip {_g(t['clip_max_abs_diff'])}, step "
                     f"{_g(t['step_max_abs_diff'])}")  # fmt: skip
        if name == "cuda_graphs" and "step_ms_eager_b1" in c:
            text += (f"; step at batch 1: eager {_g(c['step_ms_eager_b1'], ' ms')}, CUDA graphs "
                     f"{_g(c['step_ms_graphs_b1'], ' ms')} ({fmt(c['speedup_b1'])}x); first "
                     f"calls (compile) {_g(c.get('first_calls_s'), ' s')}")  # fmt: skip
        return text
    if name == "engine_device_input":
        parts = []
        for mode in ("sync", "async"):
            m = c.get(mode)
            if m:
                parts.append(
                    f"{mode}: DtoH {fmt(m['dtoh_per_frame'])} / frame "
                    f"({fmt(m['dtoh_data_per_frame'])} over {c['small_copy_bytes']} B, "
                    f"{fmt(m['dtoh_bytes_per_frame'] / 1024)} KiB), HtoD "
                    f"{fmt(m['htod_per_frame'])} / frame ({fmt(m['htod_data_per_frame'])} over), "
                    f"{m['predictions']} predictions, equal to the CPU: {m['match']}"
                )
        return f"{c['streams']} streams x {c['frames_per_stream']} frames; " + "; ".join(parts)
    if name == "throughput":
        best = c.get("best_streams_at_30fps")
        return f"best: {fmt(best)} streams at 30 fps" if best is not None else ""
    if name == "imports":
        bad = c.get("loaded_not_expected") or []
        return "loaded: " + ", ".join(bad) if bad else f"none of {', '.join(c['not_expected'])}"
    return ""


def _cell(text: str) -> str:
    """Table-safe text: no pipes or line breaks from an error message."""
    return " ".join(str(text).replace("|", "\\|").split())


def _summary(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    rows = []
    for name, c in result.get("checks", {}).items():
        rows.append([name, _cell(_verdict(c)), _cell(_numbers(name, c)), c.get("seconds")])
    return ["check", "result", "numbers", "s"], rows


def _throughput(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    headers = ["engine", "graph", "batch", "ms / call", "frames / s", "streams at 30 fps",
               "first call s"]  # fmt: skip
    rows = []
    for r in result.get("checks", {}).get("throughput", {}).get("rows", []):
        if "fps" not in r:
            why = _cell(
                f"skipped: {r['skipped']}" if "skipped" in r else f"error: {r.get('error')}"
            )
            rows.append([r["engine"], r.get("graph", "-"), r.get("batch", "-"), "-", "-", why,
                         "-"])  # fmt: skip
            continue
        rows.append([r["engine"], r["graph"], r["batch"], r["ms_per_call"], r["fps"],
                     r["streams_at_30fps"], r.get("first_call_s")])  # fmt: skip
    return headers, rows


def markdown(result: dict[str, Any], md: Path | None = None) -> str:
    if "error" in result:
        return paragraphs(f"The GPU check could not start: {result['error']}.",
                          footer(result))  # fmt: skip
    thr = result.get("checks", {}).get("throughput", {})
    per = "; ".join(
        f"**{k}: {fmt(v['streams'])} streams** (batch {v['batch']})"
        for k, v in thr.get("streams_per_device", {}).items()
    )
    dry = (
        "**Dry run on the CPU** (`--device cpu`, tiny sizes): it proves the script end to end; "
        "its numbers are not GPU numbers."
        if result.get("dry_run")
        else ""
    )
    return paragraphs(
        dry,
        f"Model: {result.get('model')}; window T={result.get('window')}, frame-step "
        f"{result.get('frame_step')}. {machine_line(result)} "
        f"{result.get('passed', 0)} checks passed, {result.get('failed', 0)} failed, "
        f"{result.get('skipped', 0)} skipped, in {result.get('total_seconds')} s.",
        md_table(*_summary(result), align="llll"),
        md_table(*_throughput(result), align="lllrrrr"),
        "Engines: " + "; ".join(f"{k} = {v}" for k, v in thr.get("engines", {}).items()) + "."
        if thr.get("engines")
        else "",
        f"Streams at {thr.get('source_fps', 30)} fps one device holds (step graph, best batch; "
        f"streams = frames / s / (30 / frame-step)): {per or 'none measured'}.",
        plot_link(result, md, "step-graph frames per second per engine and batch"),
        footer(
            result,
            "Host copies are CUPTI memcpy records (torch.profiler, CUDA activity) over the frames "
            "pushed; 'over N B' counts the copies larger than logits. Inputs of the throughput "
            "rows are already on the device.",
        ),
    )


def plot(result: dict[str, Any], out_dir: Path) -> Path:
    groups: dict[str, dict[str, float | None]] = {}
    for r in result.get("checks", {}).get("throughput", {}).get("rows", []):
        if "fps" in r:
            groups.setdefault(f"{r['engine']}\n{r['graph']}", {})[f"batch {r['batch']}"] = r["fps"]
    return bar_plot(out_dir / "device.png", groups, "frames / s", "GPU check: throughput",
                    log=True)  # fmt: skip
