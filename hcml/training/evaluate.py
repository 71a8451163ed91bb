"""Evaluation: top-1/top-5, per-class and reversal-pair accuracy, confusion matrix, plots.

``metrics(logits, labels, names)`` is the pure part (numpy); ``evaluate_module`` runs a torch
module over a ``ClipDataset``; ``evaluate_backend`` runs an ``hcml.backends`` backend.
Reversal-pair accuracy is the accuracy over the classes whose reversal twin is another class
(``hcml.labels.REVERSAL_TWIN``), and ``twin_confusion`` is how often such a clip is predicted as
its twin.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hcml.labels import REVERSAL_TWIN

__all__ = ["metrics", "evaluate_module", "evaluate_fn", "plot_confusion", "plot_curves"]


def metrics(
    logits: np.ndarray, labels: np.ndarray, names: Sequence[str], temperature: float = 1.0
) -> dict[str, Any]:
    """logits float [N, K], labels int [N] -> the eval JSON dict.

    Keys: ``n``, ``top1``, ``top5``, ``per_class`` {name: acc or None}, ``confusion`` [K][K]
    (row: true class, column: predicted), ``reversal`` {``accuracy``, ``twin_confusion``,
    ``n``} over classes with a distinct twin; ``ece`` (15 bins, top-1 confidence) and ``nll``
    of the scores softmax(logits / ``temperature``), and ``temperature``.
    """
    from hcml.training.calibration import ece, nll

    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    k = logits.shape[1]
    pred = logits.argmax(1)
    top = np.argsort(-logits, axis=1)[:, : min(5, k)]
    conf = np.zeros((k, k), dtype=np.int64)
    np.add.at(conf, (labels, pred), 1)
    per_class = {}
    for c, name in enumerate(names):
        m = labels == c
        per_class[name] = float((pred[m] == c).mean()) if m.any() else None
    index = {n: i for i, n in enumerate(names)}
    twins = {
        index[a]: index[b] for a, b in REVERSAL_TWIN.items() if a in index and b in index and a != b
    }
    rm = np.isin(labels, list(twins)) if twins else np.zeros_like(labels, dtype=bool)
    rev: dict[str, Any] = {"n": int(rm.sum()), "accuracy": None, "twin_confusion": None}
    if rm.any():
        twin_of = np.array([twins.get(int(y), -1) for y in labels[rm]])
        rev["accuracy"] = float((pred[rm] == labels[rm]).mean())
        rev["twin_confusion"] = float((pred[rm] == twin_of).mean())
    return {
        "n": int(len(labels)),
        "top1": float((pred == labels).mean()) if len(labels) else 0.0,
        "top5": float((top == labels[:, None]).any(1).mean()) if len(labels) else 0.0,
        "per_class": per_class,
        "confusion": conf.tolist(),
        "reversal": rev,
        "labels": list(names),
        "temperature": float(temperature),
        "ece": ece(logits, labels, temperature) if len(labels) else None,
        "nll": nll(logits, labels, temperature) if len(labels) else None,
    }


def evaluate_fn(
    fn: Callable[[torch.Tensor], np.ndarray],
    dataset: torch.utils.data.Dataset,
    names: Sequence[str],
    batch_size: int = 8,
    progress: bool = False,
) -> dict[str, Any]:
    """Run ``fn(x float [B, 3, T, H, W]) -> logits [B, K]`` over ``dataset`` (item i, seed 0)."""
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False)
    outs, ys = [], []
    it = loader
    if progress:
        from tqdm import tqdm

        it = tqdm(loader, desc="eval", unit="batch")
    for x, y in it:
        outs.append(np.asarray(fn(x)))
        ys.append(np.asarray(y))
    return metrics(np.concatenate(outs), np.concatenate(ys), names)


def evaluate_module(
    model: torch.nn.Module,
    dataset: torch.utils.data.Dataset,
    batch_size: int = 8,
    device: str = "cpu",
    names: Sequence[str] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Evaluate a torch network (x -> logits) on ``dataset``; restores its train/eval mode."""
    was = model.training
    model.eval()

    @torch.no_grad()
    def fn(x: torch.Tensor) -> np.ndarray:
        return model(x.to(device)).float().cpu().numpy()

    names = list(names or dataset.source.labels)
    try:
        return evaluate_fn(fn, dataset, names, batch_size, progress)
    finally:
        model.train(was)


def plot_confusion(result: dict[str, Any], path: str | os.PathLike) -> Path:
    """Confusion matrix PNG (row-normalized, counts printed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conf = np.asarray(result["confusion"], dtype=np.float64)
    names = result["labels"]
    norm = conf / np.maximum(conf.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1 + 0.6 * len(names), 1 + 0.55 * len(names)))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    for i in range(len(names)):
        for j in range(len(names)):
            if conf[i, j]:
                ax.text(
                    j,
                    i,
                    int(conf[i, j]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"top-1 {result['top1']:.3f} (n={result['n']})")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_curves(run_dir: str | os.PathLike, path: str | os.PathLike) -> Path | None:
    """Training curves (loss per phase) from ``<run>/*/metrics.jsonl``; None if no log."""
    logs = sorted(Path(run_dir).glob("*/metrics.jsonl"))
    if not logs:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(logs), figsize=(3.5 * len(logs), 3), squeeze=False)
    for ax, log in zip(axes[0], logs, strict=True):
        rows = [json.loads(ln) for ln in log.read_text().splitlines() if ln.strip()]
        rows = [r for r in rows if "loss" in r]
        ax.plot([r["step"] for r in rows], [r["loss"] for r in rows])
        ax.set_title(log.parent.name, fontsize=9)
        ax.set_xlabel("step")
        ax.set_yscale("log")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
