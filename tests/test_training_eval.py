"""hcml eval: metrics (slow reference beside the fast one), JSON keys, plots."""

from __future__ import annotations

import json

import numpy as np
import torch

from hcml.labels import LABELS
from hcml.training.evaluate import metrics


def test_metrics_against_a_slow_reference():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(60, 12))
    labels = rng.integers(0, 12, size=60)
    logits[np.arange(30), labels[:30]] += 5  # half right
    r = metrics(logits, labels, LABELS)
    pred = logits.argmax(1)
    assert r["n"] == 60
    assert r["top1"] == sum(int(p == y) for p, y in zip(pred, labels, strict=True)) / 60
    top5 = [y in np.argsort(-row)[:5] for row, y in zip(logits, labels, strict=True)]
    assert r["top5"] == sum(top5) / 60
    conf = [[0] * 12 for _ in range(12)]
    for p, y in zip(pred, labels, strict=True):
        conf[y][p] += 1
    assert r["confusion"] == conf
    twin = {0: 0, 1: 2, 2: 1, 3: 4, 4: 3, 5: 6, 6: 5, 7: 8, 8: 7, 9: 10, 10: 9, 11: 11}
    sel = [i for i in range(60) if twin[labels[i]] != labels[i]]
    assert r["reversal"]["n"] == len(sel)
    assert r["reversal"]["accuracy"] == np.mean([pred[i] == labels[i] for i in sel])
    assert r["reversal"]["twin_confusion"] == np.mean([pred[i] == twin[labels[i]] for i in sel])


def test_eval_cli_on_a_checkpoint(tmp_path, synth_clips):
    from hcml.cli import main
    from hcml.model import create_model
    from hcml.model.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = create_model("hcml_tiny", frames=4, input_size=(3, 32, 32))
    ckpt = save_checkpoint(tmp_path / "m.pt", model, labels=list(LABELS))
    out = tmp_path / "r.json"
    rc = main(
        [
            "eval",
            str(ckpt),
            str(synth_clips),
            "--json",
            str(out),
            "--plots",
            str(tmp_path / "plots"),
            "--no-progress",
        ]
    )
    assert rc == 0
    r = json.loads(out.read_text())
    assert {"top1", "top5", "per_class", "confusion", "n"} <= set(r)
    assert r["n"] == 12 and len(r["confusion"]) == 12
    assert (tmp_path / "plots" / "confusion.png").stat().st_size > 1000
    assert main(["eval", str(ckpt), "synth:seed=5,clips=1,frames=4,size=32", "--no-progress"]) == 0
    assert main(["eval", str(ckpt), str(tmp_path / "nothing"), "--no-progress"]) == 2
