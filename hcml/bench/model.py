"""``hcml bench model``: FLOPs and parameters per branch (``hcml.model.complexity``).

One clip [1, 3, T, H, W] of a registry model (random weights) is counted with torch's
FlopCounterMode and split into backbone, motion branch (prime motion blocks + fusion) and head,
plus the training-only side branches; one more row counts the model a card describes (``--card``,
else the shipped one) at its own config, window and input size. Goal: the motion branch costs
<= 10% of backbone + head.
Counts are exact for the graph, so this suite needs no timing and no quiet machine.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hcml.bench.common import (
    bar_plot,
    footer,
    machine_line,
    md_table,
    paragraphs,
    plot_link,
    text_table,
)

TITLE = "Model: FLOPs and parameters per branch"
DEFAULT_WINDOWS = [8, 16, 32]
GOAL_PCT = 10.0


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from hcml.model import complexity

    reports = [
        complexity.report(args.model, window, args.size)
        for window in (args.windows or DEFAULT_WINDOWS)
    ]
    card = _card_report(args.card)
    if card is not None:
        reports.append(card)
    print(text_table(*_table(reports)), flush=True)
    worst = max(r["motion_overhead_pct"] for r in reports)
    return {
        "suite": "model",
        "model": args.model,
        "reports": reports,
        "goal": {
            "text": f"motion branch <= {GOAL_PCT:.0f}% of backbone + head FLOPs",
            "worst_pct": worst,
            "met": worst <= GOAL_PCT,
        },
    }


def _card_report(path: Path | None) -> dict[str, Any] | None:
    """The report of the network a card describes (its cfg, window, input size); None when there
    is no card (``path`` None and nothing shipped) or it holds no registry model (a toy)."""
    from hcml import DEFAULT_CARD
    from hcml.card import ModelCard
    from hcml.model import complexity
    from hcml.model.registry import is_model

    if path is None:
        if not DEFAULT_CARD.is_file():
            return None
        path = DEFAULT_CARD
    card = ModelCard.load(path)
    if not is_model(card.model) or not card.cfg:
        return None
    cfg = {k: v for k, v in card.cfg.items() if k not in ("name", "frames")}
    report = complexity.report(card.model, card.window, card.input_size, **cfg)
    report["model"] = f"{card.name} (card)"
    return report


def _table(reports: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    headers = ["model", "T", "HxW", "GFLOP total", "backbone", "motion", "head",
               "motion overhead %", "side (train only)", "M params net / side"]  # fmt: skip
    rows = []
    for r in reports:
        f, p = r["flops"], r["params"]
        rows.append(
            [
                r["model"], r["frames"], f"{r['input_size'][0]}x{r['input_size'][1]}",
                f"{f['total'] / 1e9:.3f}", f"{f['backbone'] / 1e9:.3f}",
                f"{f['motion'] / 1e9:.3f}", f"{f['head'] / 1e9:.2e}",
                f"{r['motion_overhead_pct']:.1f}", f"{f['side']['total'] / 1e9:.3f}",
                f"{p['total'] / 1e6:.3f} / {p['side']['total'] / 1e6:.3f}",
            ]
        )  # fmt: skip
    return headers, rows


def markdown(result: dict[str, Any], md: Path | None = None) -> str:
    goal = result["goal"]
    convention = result["reports"][0].get("convention", "") if result["reports"] else ""
    return paragraphs(
        f"Model `{result['model']}` (random weights; counts do not depend on them). "
        + machine_line(result),
        md_table(*_table(result["reports"]), align="lrrrrrrrrr"),
        f"Goal: {goal['text']}: **{'met' if goal['met'] else 'not met'}** "
        f"(worst {goal['worst_pct']:.1f}%).",
        plot_link(result, md, "GFLOP per branch"),
        footer(result, f"{convention}."),
    )


def plot(result: dict[str, Any], out_dir: Path) -> Path:
    groups = {
        f"T={r['frames']}": {
            "backbone": r["flops"]["backbone"] / 1e9,
            "motion": r["flops"]["motion"] / 1e9,
            "side (train)": r["flops"]["side"]["total"] / 1e9,
        }
        for r in result["reports"]
    }
    return bar_plot(out_dir / "model.png", groups, "GFLOP / clip", "Model: FLOPs per branch")
