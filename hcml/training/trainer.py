"""The training loop: one phase (a stage over a module) with exact resume and DDP.

``train_phase`` is generic over a ``Stage`` (``hcml.training.stages``) and any ``nn.Module``; it
does cosine LR with linear warm-up, gradient clipping, AMP on CUDA, tqdm (loss, clips/s),
TensorBoard and a ``metrics.jsonl`` log, and atomic training-state checkpoints (``last.pt``:
module + optimizer + step + python/numpy/torch RNG states; the data stream position is the step,
see ``hcml.data.datasets.StreamSampler``). Resuming from ``last.pt`` gives bit-identical next
steps on CPU. Under ``torchrun`` (``WORLD_SIZE`` > 1) the module runs in
DistributedDataParallel (gloo on CPU, NCCL on CUDA) and each rank reads its own slice of every
global batch; rank 0 writes logs and checkpoints.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hcml.model.checkpoint import CheckpointError, atomic_save

__all__ = [
    "DistInfo",
    "PhaseConfig",
    "atomic_save",
    "cosine_lr",
    "init_distributed",
    "load_training_state",
    "rng_state",
    "set_rng_state",
    "train_phase",
]


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "cpu") -> DistInfo:
    """Join the process group that ``torchrun`` describes (env ``WORLD_SIZE``/``RANK``)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


@dataclass
class PhaseConfig:
    """One phase's settings (from a validated recipe stage)."""

    steps: int
    batch_size: int = 8
    lr: float = 1e-3
    min_lr: float = 0.0
    weight_decay: float = 1e-4
    warmup: int = 0
    grad_clip: float = 0.0
    amp: bool = True
    seed: int = 0
    log_every: int = 10
    ckpt_every: int = 100
    workers: int = 0


def cosine_lr(step: int, cfg: PhaseConfig) -> float:
    """LR for optimizer step ``step`` (0-based): linear warm-up, then cosine to ``min_lr``."""
    if cfg.warmup > 0 and step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    span = max(cfg.steps - cfg.warmup, 1)
    progress = min((step - cfg.warmup) / span, 1.0)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + math.cos(math.pi * progress))


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch global RNG states as plain values (weights_only-loadable)."""
    py = random.getstate()
    np_state = np.random.get_state()
    out: dict[str, Any] = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), *n[2:]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_training_state(path: Path) -> dict[str, Any]:
    """A phase's ``last.pt`` (see ``train_phase``); CheckpointError naming the file when it is
    truncated, corrupt or lacks a field (a run killed while the disk filled, a copied file)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, not a torch file, forbidden pickled object
        first = str(e).splitlines()[0] if str(e) else ""
        raise CheckpointError(
            f"{path}: cannot resume: not a readable training checkpoint (truncated or corrupt: "
            f"{type(e).__name__}: {first}); delete it to restart this phase from its start"
        ) from e
    keys = ("module", "optimizer", "step", "rng")
    missing = [k for k in keys if k not in state] if isinstance(state, dict) else list(keys)
    if missing:
        raise CheckpointError(
            f"{path}: cannot resume: not a training checkpoint (missing {', '.join(missing)}); "
            "delete it to restart this phase from its start"
        )
    return state


def _to_device(batch: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = batch
    return x.to(device, non_blocking=True), torch.as_tensor(y).to(device)


def train_phase(
    module: nn.Module,
    stage: Any,
    dataset: torch.utils.data.Dataset,
    dataset_len: int | None,
    cfg: PhaseConfig,
    out_dir: str | os.PathLike,
    resume: bool = False,
    device: str = "cpu",
    dist: DistInfo | None = None,
    stop_after: int | None = None,
    on_end: Callable[[nn.Module], dict[str, float]] | None = None,
    progress: bool = True,
    tag: str = "",
) -> dict[str, Any]:
    """Train ``module`` with ``stage`` for ``cfg.steps`` optimizer steps; returns a summary.

    dataset: indexed by ``(index, seed)`` keys (``ClipDataset``); dataset_len: its length, None
    for an infinite source. out_dir: this phase's folder (``last.pt``, ``metrics.jsonl``,
    ``tb/``). resume: continue from ``out_dir/last.pt`` when it exists. stop_after: stop (and
    checkpoint) once this many steps are done in total, as a preemption would (tests).
    on_end: called with the (unwrapped) module after the last step, its dict is logged.
    Summary: ``{"step", "losses" (per step, this process), "seconds", "clips_per_s", ...}``.
    """
    from hcml.data.datasets import StreamSampler

    dist = dist or DistInfo()
    out_dir = Path(out_dir)
    dev = torch.device(device)
    module.to(dev)
    params = stage.setup(module)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    use_amp = bool(cfg.amp) and dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    step = 0
    last = out_dir / "last.pt"
    if resume and last.is_file():
        state = load_training_state(last)
        try:
            module.load_state_dict(state["module"])
            opt.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError) as e:  # another recipe's module or stage
            raise CheckpointError(
                f"{last}: cannot resume: it does not fit this phase's model "
                f"({str(e).splitlines()[0]}); resume with the recipe that wrote it"
            ) from e
        if "scaler" in state and use_amp:
            scaler.load_state_dict(state["scaler"])
        step = int(state["step"])
        set_rng_state(state["rng"])
    elif step == 0:
        torch.manual_seed(cfg.seed + dist.rank)

    def save(path: Path) -> None:
        if not dist.main:
            return
        atomic_save(
            path,
            {
                "module": {k: v.detach().cpu() for k, v in module.state_dict().items()},
                "optimizer": opt.state_dict(),
                "scaler": scaler.state_dict() if use_amp else {},
                "step": step,
                "rng": rng_state(),
                "stage": getattr(stage, "name", ""),
            },
        )

    model: nn.Module = module
    if dist.world > 1:
        model = nn.parallel.DistributedDataParallel(
            module, device_ids=[dev.index] if dev.type == "cuda" else None
        )
    sampler = StreamSampler(
        dataset_len,
        cfg.batch_size,
        seed=cfg.seed,
        shuffle=True,
        start_step=step,
        steps=cfg.steps,
        rank=dist.rank,
        world=dist.world,
    )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=cfg.workers,
        generator=torch.Generator().manual_seed(cfg.seed),
        persistent_workers=False,
        pin_memory=dev.type == "cuda",
    )
    writer = None
    log_file = None
    if dist.main:
        out_dir.mkdir(parents=True, exist_ok=True)
        log_file = open(out_dir / "metrics.jsonl", "a")  # noqa: SIM115 (closed in finally)
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(out_dir / "tb"), purge_step=step)
        except Exception:  # tensorboard missing: jsonl still has everything
            writer = None
    bar = None
    if progress and dist.main:
        from tqdm import tqdm

        bar = tqdm(
            total=cfg.steps,
            initial=step,
            desc=tag or getattr(stage, "name", "train"),
            unit="step",
            dynamic_ncols=True,
        )
    losses: list[float] = []
    t0 = time.perf_counter()
    t_last, clips_since = t0, 0
    start_step = step
    try:
        for batch in loader:
            if stop_after is not None and step >= stop_after:
                break
            x, y = _to_device(batch, dev)
            lr = cosine_lr(step, cfg)
            for g in opt.param_groups:
                g["lr"] = lr
            stage.train_mode(module)
            gen = torch.Generator(device=dev).manual_seed(
                cfg.seed * 1_000_003 + step * 7919 + dist.rank
            )
            with torch.autocast(dev.type, enabled=use_amp):
                loss, logs = stage.loss(model, x, y, gen)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{tag}: loss is {float(loss.detach())} at step {step}")
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if cfg.grad_clip > 0:
                scaler.unscale_(opt)
                gnorm = float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip))
            else:
                gnorm = float("nan")
            scaler.step(opt)
            scaler.update()
            step += 1
            losses.append(float(loss.detach()))
            clips_since += x.shape[0] * dist.world
            if dist.main and (step % cfg.log_every == 0 or step == cfg.steps or step == 1):
                now = time.perf_counter()
                rate = clips_since / max(now - t_last, 1e-9)
                t_last, clips_since = now, 0
                rec = {
                    "step": step,
                    "loss": float(loss.detach()),
                    "lr": lr,
                    "grad_norm": gnorm,
                    "clips_per_s": rate,
                    "time": now - t0,
                    **logs,
                }
                log_file.write(json.dumps(rec) + "\n")
                log_file.flush()
                if writer is not None:
                    for k, v in rec.items():
                        if k != "step" and isinstance(v, float) and math.isfinite(v):
                            writer.add_scalar(f"{tag or 'train'}/{k}", v, step)
            if bar is not None:
                bar.set_postfix(loss=f"{float(loss):.4f}", lr=f"{lr:.2e}")
                bar.update(1)
            if step % cfg.ckpt_every == 0 and step < cfg.steps:
                save(last)
        save(last)
        seconds = time.perf_counter() - t0
        summary: dict[str, Any] = {
            "step": step,
            "losses": losses,
            "seconds": seconds,
            "clips_per_s": (step - start_step) * cfg.batch_size * dist.world / max(seconds, 1e-9),
            "done": step >= cfg.steps,
        }
        if summary["done"] and on_end is not None and dist.main:
            metrics = on_end(module)
            summary.update(metrics)
            if log_file is not None:
                log_file.write(json.dumps({"step": step, **metrics}) + "\n")
            if writer is not None:
                for k, v in metrics.items():
                    writer.add_scalar(f"{tag or 'train'}/{k}", float(v), step)
        return summary
    finally:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()
        if log_file is not None:
            log_file.close()
