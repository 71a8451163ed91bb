"""Benchmarks: ``hcml bench SUITE``, one module a suite, each writing JSON and its own section.

Suites (``all`` runs every one with its defaults, each under 5 minutes on a 2-core CPU):

* ``streaming``: ms per prediction, incremental step graph vs full-window clip graph, T = 8/16/32;
* ``model``: FLOPs and parameters per branch, motion-branch overhead;
* ``element``: hcmlaction vs identity in a 720p decode pipeline: fps, CPU ms per frame, the
  element's own per-buffer overhead with inference disabled;
* ``latency``: a live 30 fps source through hcmlaction: event latency p50/p95/p99, windows
  dropped, RSS and open fds per interval; ``--minutes 60`` is the soak (exit 1 on growth);
* ``backends``: clip and step graphs on every available engine at batch 1/8/32, fps and
  streams at 30 fps this machine can hold;
* ``train``: training clips per second per stage, one process vs 2-process DDP (gloo);
* ``streams``: N live 720p30 sources into one async hcmlaction: predictions per stream,
  event latency, frames lost, windows dropped, CPU; the largest N that holds real time;
* ``objects``: per-object classification (N crops + one batched step call) against one
  whole-frame step call, 1/4/16 objects per frame;
* ``serve`` (not in ``all``): K client processes (``--clients``) x M streams (``--streams``)
  against one Triton server on loopback vs local ORT at the same stream count; see
  ``hcml.bench.serve`` and docs/SERVING.md;
* ``device`` (not in ``all``): the GPU check of ``scripts/device_check.py``, usually rendered
  from its JSON (``--from-json benchmarks/device.json``); see ``hcml.bench.device``.

Each suite prints a table; ``--json`` writes its result (with the machine and the exact command;
for ``all``, a folder gets one ``SUITE.json`` each), ``--plots DIR`` a PNG, and ``--markdown``
replaces its section of BENCHMARKS.md (between ``<!-- bench:SUITE:begin/end -->``), rendered
from that same result. ``--from-json`` re-renders sections and plots from saved JSON without
measuring. Ratios are compared inside one run, never absolute times across runs.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import traceback
from pathlib import Path
from typing import Any

from hcml.bench.common import OPTIONS, machine, stamp, write_json, write_section

SUITE_NAMES = (
    "streaming", "model", "element", "latency", "backends", "train", "streams", "objects"
)  # fmt: skip
SUITES = (*SUITE_NAMES, "device", "serve", "all")  # device: run on a lent GPU (its JSON)


def add_arguments(p: argparse.ArgumentParser) -> None:
    def opt(flag: str, **kw: Any) -> None:
        action = p.add_argument(flag, **kw)
        OPTIONS.append((action.dest, flag, action.default))

    OPTIONS.clear()
    p.add_argument("suite", choices=SUITES, help="which benchmark")
    opt(
        "--json",
        type=Path,
        default=None,
        help="write the result here (all: a folder gets SUITE.json each, a .json file one dict)",
    )
    opt("--markdown", type=Path, default=None, help="update this file's section(s)")
    opt("--plots", type=Path, default=None, help="write SUITE.png plots into this folder")
    opt(
        "--from-json",
        type=Path,
        default=None,
        help="measure nothing: render --markdown / --plots from this saved result (or folder)",
    )
    opt("--model", default="hcml_tiny", help="registry name (or 'toy'): streaming, model, train")
    opt(
        "--card",
        type=Path,
        default=None,
        help="time this exported model (streaming, element, latency, backends; default for the "
        "last three: the shipped engines/hcml_tiny_motion.json, else a random stand-in)",
    )
    opt(
        "--windows",
        type=int,
        nargs="+",
        default=None,
        help="window sizes T (streaming, model: 8 16 32; train: the first, default 4)",
    )
    opt(
        "--size", type=int, default=None, help="model input H = W (default: the model's; train: 32)"
    )
    opt("--backend", default="onnxruntime", help="streaming: onnxruntime | torch | tensorrt")
    opt("--device", default="cpu", help="streaming, backends: cpu | cuda[:N]")
    opt("--threads", type=int, default=None, help="CPU threads (default: all)")
    opt(
        "--seconds",
        type=float,
        default=None,
        help="streaming: time per measurement (3); backends: per measurement (1); "
        "latency: run length, overrides --minutes",
    )
    opt(
        "--minutes",
        type=float,
        default=None,
        help="latency: run length (2); >= 10 is a soak with a pass/fail verdict",
    )
    opt(
        "--interval",
        type=float,
        default=None,
        help="latency: seconds per row (60 for runs of 10 minutes or more, else length / 12)",
    )
    opt(
        "--resolution",
        default=None,
        help="element, latency: WxH of the stream (1280x720); objects: of the frames (640x480)",
    )
    opt("--fps", type=int, default=None, help="latency: frame rate of the live source (30)")
    opt("--mode", choices=("sync", "async"), default=None, help="latency: hcmlaction mode (async)")
    opt("--stride", type=int, default=None, help="latency: hcmlaction stride (1)")
    opt(
        "--input",
        type=Path,
        default=None,
        help="element: decode this recorded H.264 file instead of making the 720p stream",
    )
    opt(
        "--frames",
        type=int,
        default=None,
        help="element: frames of the made stream (300 of the demo stream's 384); objects: "
        "frames per variant and round (48)",
    )
    opt("--rounds", type=int, default=None, help="element: alternating rounds (2); objects: (3)")
    opt("--batches", type=int, nargs="+", default=None, help="backends: batch sizes (1 8 32)")
    opt("--steps", type=int, default=None, help="train: timed steps per stage (4)")
    opt("--batch-size", type=int, default=None, help="train: clips per step and process (8)")
    opt("--world", type=int, default=None, help="train: DDP processes (2; 1 = no DDP)")
    opt("--clients", type=int, nargs="+", default=None, help="serve: client processes (1 2 4)")
    opt("--streams", type=int, nargs="+", default=None, help="streams: N sources (1 2 4 6 8)")
    opt("--objects", type=int, nargs="+", default=None, help="objects: per frame (1 4 16)")


def _combined(args: argparse.Namespace, target: Path | None) -> bool:
    """True when ``all`` reads or writes one JSON file holding every suite's result."""
    return target is not None and args.suite == "all" and target.suffix == ".json"


def _json_path(args: argparse.Namespace, suite: str, target: Path | None) -> Path | None:
    """Where ``suite``'s own JSON goes (or comes from): the file itself, or FOLDER/SUITE.json."""
    if target is None or _combined(args, target):
        return None
    return target / f"{suite}.json" if args.suite == "all" else target


def _one(args: argparse.Namespace, suite: str) -> tuple[dict[str, Any], int]:
    mod = importlib.import_module(f"hcml.bench.{suite}")
    if args.from_json is not None:
        src = _json_path(args, suite, args.from_json)
        if src is None:
            result = json.loads(args.from_json.read_text())[suite]
        else:
            result = json.loads(src.read_text())
    else:
        where = machine()  # before measuring: the load average is the one at the start
        result = stamp(mod.measure(args), suite, args, where)
    if args.plots is not None and hasattr(mod, "plot"):
        try:
            result["plot"] = str(mod.plot(result, args.plots))
        except ImportError as e:  # matplotlib missing: the numbers still count
            print(f"hcml bench {suite}: no plot ({e})", file=sys.stderr)
    out = _json_path(args, suite, args.json)
    if out is not None:
        write_json(out, result)
    if args.markdown is not None:
        name, title = mod.section(result) if hasattr(mod, "section") else (suite, mod.TITLE)
        write_section(args.markdown, name, mod.markdown(result, args.markdown), title)
    check = getattr(mod, "status", None)
    return result, int(check(result)) if check else 0


def run(args: argparse.Namespace) -> int:
    suites = SUITE_NAMES if args.suite == "all" else (args.suite,)
    results: dict[str, Any] = {}
    status = 0
    for suite in suites:
        if len(suites) > 1:
            print(f"== hcml bench {suite}", flush=True)
        try:
            results[suite], code = _one(args, suite)
        except Exception as e:  # noqa: BLE001 - under `all` the other suites still run
            if len(suites) == 1:
                raise
            traceback.print_exc()
            print(f"hcml bench {suite}: failed: {e}", file=sys.stderr)
            code = 1
        status = max(status, code)
    if _combined(args, args.json):
        write_json(args.json, results)
    return status
