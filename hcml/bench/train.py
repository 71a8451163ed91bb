"""``hcml bench train``: training clips per second for each stage, one process vs DDP.

The model and data are ``training/tiny.yaml``'s (hcml_tiny, T=4, 32x32 synthetic clips rendered
on the fly, flow net + contrastive heads), with ``--windows T``, ``--size``, ``--batch-size`` and
``--model`` overriding them. Each stage (flow, one progressive phase a level, joint, supervised)
runs ``hcml.training.trainer.train_phase`` for 1 warm-up step + ``--steps`` timed steps; clips
per second = clips of the timed steps / their wall time (from the trainer's per-step log),
data rendering included. Once in this process (``torch`` using every core), once as
``--world`` DDP processes on the CPU (gloo, ``torch.multiprocessing``; each process gets
cores / world threads and the same per-process batch, so a DDP step trains world x as many
clips). The ratio DDP / one process is the number to read.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import socket
from pathlib import Path
from typing import Any

from hcml.bench.common import (
    REPO_ROOT,
    bar_plot,
    footer,
    machine_line,
    md_table,
    paragraphs,
    plot_link,
    temp_dir,
    text_table,
)

TITLE = "Training: clips per second per stage, one process vs DDP"
WARMUP_STEPS = 1
DEFAULT_STEPS = 4
STAGES = ("flow", "progressive", "joint", "supervised")


def bench_recipe(args: argparse.Namespace) -> dict[str, Any]:
    """``training/tiny.yaml`` with the bench's overrides and one stage of every type."""
    from hcml.training.recipe import load_recipe, validate_recipe

    base = load_recipe(REPO_ROOT / "training" / "tiny.yaml")
    raw: dict[str, Any] = {
        "name": "bench-train",
        "seed": 0,
        "model": dict(base["model"]),
        "data": {k: v for k, v in base["data"].items() if k in ("train", "augment")},
        "optim": {"lr": 1e-3, "warmup": 0, "grad_clip": 5.0},
        "log_every": 1,
        "ckpt_every": 10**9,
        "stages": [
            {"type": t, "steps": WARMUP_STEPS + (args.steps or DEFAULT_STEPS)} for t in STAGES
        ],
    }
    if args.model != "hcml_tiny":
        raw["model"] = {"name": args.model, "frames": base["model"]["frames"]}
    frames = (args.windows or [raw["model"]["frames"]])[0]
    size = args.size or base["model"].get("input_size", 32)
    raw["model"]["frames"] = frames
    raw["model"]["input_size"] = size
    raw["data"]["train"] = {"synth": {"seed": 0, "frames": frames, "size": size}}
    raw["data"]["batch_size"] = args.batch_size or 8
    return validate_recipe(raw, "bench-train")


def run_stages(recipe: dict[str, Any], out: Path, rank: int = 0, world: int = 1) -> dict[str, Any]:
    """Train every phase of ``recipe`` once; returns {phase: clips/s} (rank 0's log; else {})."""
    import torch

    from hcml.training.run import build_datasets, build_module, expand_phases
    from hcml.training.stages import make_stage
    from hcml.training.trainer import DistInfo, PhaseConfig, train_phase

    torch.manual_seed(recipe["seed"])
    module = build_module(recipe)
    train_ds, n, _ = build_datasets(recipe, module.model.default_cfg)
    dist = DistInfo(rank, world, 0)
    batch = recipe["data"]["batch_size"]
    rates: dict[str, Any] = {}
    for i, ph in enumerate(expand_phases(recipe, module)):
        spec = ph["spec"]
        cfg = PhaseConfig(steps=spec["steps"], batch_size=batch, lr=spec["lr"], amp=False,
                          grad_clip=spec["grad_clip"], seed=recipe["seed"] + 101 * i,
                          log_every=1, ckpt_every=10**9, workers=0)  # fmt: skip
        pdir = out / ph["dir"]
        try:
            train_phase(module, make_stage(spec, ph["level"]), train_ds, n, cfg, pdir,
                        dist=dist, progress=False, tag=ph["name"])  # fmt: skip
        except RuntimeError as e:
            if world == 1:
                raise
            # Every rank fails at the same check (e.g. DDP's unused-parameter error), so the
            # process group stays in step and the next phase can still be measured.
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            rates[ph["name"]] = {"error": ". ".join(first.split(". ")[:2]).rstrip(".") + "."}
            continue
        if rank == 0:
            log = [json.loads(line) for line in (pdir / "metrics.jsonl").read_text().splitlines()]
            times = {r["step"]: r["time"] for r in log if "time" in r}
            timed = spec["steps"] - WARMUP_STEPS
            seconds = times[spec["steps"]] - times[WARMUP_STEPS]
            rates[ph["name"]] = {
                "clips_per_s": timed * batch * world / seconds,
                "s_per_step": seconds / timed,
            }
    return rates


def _ddp_worker(rank: int, world: int, port: int, recipe: dict, out: str, threads: int) -> None:
    import torch
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(threads)
    dist.init_process_group(
        "gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=120)
    )
    try:
        rates = run_stages(recipe, Path(out) / "ddp", rank, world)
        if rank == 0:
            (Path(out) / "ddp.json").write_text(json.dumps(rates))
        dist.barrier()  # leave together: gloo aborts a rank whose peer closes mid-teardown
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    import torch.multiprocessing as mp

    recipe = bench_recipe(args)
    world = args.world or 2
    cores = args.threads or os.cpu_count() or 1
    threads_before = torch.get_num_threads()
    with temp_dir() as tmp:
        torch.set_num_threads(cores)
        try:
            single = run_stages(recipe, Path(tmp) / "single")
        finally:
            torch.set_num_threads(threads_before)
        print(f"one process ({cores} threads) done", flush=True)
        ddp: dict[str, Any] = {}
        per_rank = max(1, cores // world)
        if world > 1:
            mp.spawn(_ddp_worker, args=(world, _free_port(), recipe, tmp, per_rank),
                     nprocs=world, join=True)  # fmt: skip
            ddp = json.loads((Path(tmp) / "ddp.json").read_text())
            print(f"DDP ({world} processes x {per_rank} threads) done", flush=True)
    rows = []
    for phase, r in single.items():
        d = ddp.get(phase) or {}
        ok = "clips_per_s" in d
        rows.append(
            {
                "stage": phase,
                "single_clips_per_s": r["clips_per_s"],
                "single_s_per_step": r["s_per_step"],
                "ddp_clips_per_s": d["clips_per_s"] if ok else None,
                "ddp_s_per_step": d["s_per_step"] if ok else None,
                "ddp_speedup": d["clips_per_s"] / r["clips_per_s"] if ok else None,
                "ddp_error": d.get("error"),
            }
        )
    m = recipe["model"]
    result = {
        "suite": "train",
        "model": m["name"],
        "frames": m["frames"],
        "input_size": m["input_size"],
        "batch_size": recipe["data"]["batch_size"],
        "steps": (args.steps or DEFAULT_STEPS),
        "warmup_steps": WARMUP_STEPS,
        "world": world,
        "threads_single": cores,
        "threads_per_rank": per_rank,
        "rows": rows,
    }
    print(text_table(*_table(result)), flush=True)
    return result


def _table(result: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    w = result["world"]
    headers = ["stage", "1 process: clips / s", "s / step", f"DDP x{w}: clips / s", "s / step",
               "DDP / 1 process"]  # fmt: skip
    rows = [
        [r["stage"], f"{r['single_clips_per_s']:.1f}", f"{r['single_s_per_step']:.3f}",
         r["ddp_clips_per_s"] and f"{r['ddp_clips_per_s']:.1f}",
         r["ddp_s_per_step"] and f"{r['ddp_s_per_step']:.3f}",
         r["ddp_speedup"] and f"{r['ddp_speedup']:.2f}x"]
        for r in result["rows"]
    ]  # fmt: skip
    for row, r in zip(rows, result["rows"], strict=True):
        if r.get("ddp_error"):
            row[3] = "fails (see below)"
    return headers, rows


def markdown(result: dict[str, Any], md: Path | None = None) -> str:
    return paragraphs(
        f"Model `{result['model']}` T={result['frames']} at {result['input_size']} px, "
        f"{result['batch_size']} clips a step and process, synthetic clips rendered on the fly; "
        f"{result['warmup_steps']} warm-up + {result['steps']} timed steps a stage. One process: "
        f"{result['threads_single']} threads; DDP: {result['world']} processes (gloo) x "
        f"{result['threads_per_rank']} threads. " + machine_line(result),
        md_table(*_table(result)),
        "\n".join(
            f"- DDP `{r['stage']}`: {r['ddp_error']}" for r in result["rows"] if r.get("ddp_error")
        ),
        plot_link(result, md, "training clips per second"),
        footer(result, "Clips / s counts every process's clips (DDP trains world x the batch)."),
    )


def plot(result: dict[str, Any], out_dir: Path) -> Path:
    groups = {
        r["stage"]: {
            "1 process": r["single_clips_per_s"],
            f"DDP x{result['world']}": r["ddp_clips_per_s"],
        }
        for r in result["rows"]
    }
    return bar_plot(out_dir / "train.png", groups, "clips / s", "Training throughput per stage")
