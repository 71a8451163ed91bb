"""Print the ablation table of docs/RESULTS.md from the runs that run_all.sh made.

    python training/ablation/table.py [RUNS_DIR]

Reads RUNS_DIR/ablation-NAME/{model.pt, heldout.json} and counts
FLOPs of each trained network with ``hcml.model.complexity`` (the deployable network only).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from hcml.model.checkpoint import load_model
from hcml.model.complexity import complexity_report

ROWS = [
    ("tsn", "TSN (appearance only)"),
    ("tsm", "TSM (temporal shift)"),
    ("fdiff", "frame difference input"),
    ("mscv", "single-level cost volume (MotionSqueeze-like)"),
    ("hcml_nocl", "HCML without contrastive"),
    ("hcml", "HCML (flow, progressive, joint)"),
    ("hcml_moments_nocl", "shipped architecture (levels 0-3, MotionMoments), no contrastive"),
    ("hcml_moments", "shipped architecture, flow, progressive, joint"),
]


def main(runs: Path) -> int:
    print(
        "| model | top-1 | reversal-pair acc. | twin confusion | GFLOP / clip | motion overhead |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    torch.set_grad_enabled(False)
    for key, title in ROWS:
        run = runs / f"ablation-{key}"
        if not (run / "heldout.json").is_file():
            print(f"| {title} | not run | | | | |")
            continue
        r = json.loads((run / "heldout.json").read_text())
        model = load_model(run / "model.pt")
        cfg = model.default_cfg
        c = complexity_report(model, cfg["frames"], tuple(cfg["input_size"][-2:]))
        print(
            f"| {title} (`{cfg['name']}`) | {100 * r['top1']:.1f}% "
            f"| {100 * r['reversal']['accuracy']:.1f}% "
            f"| {100 * r['reversal']['twin_confusion']:.1f}% | {c['flops']['total'] / 1e9:.3f} "
            f"| {c['motion_overhead_pct']:.1f}% |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs")))
