r"""What label-free pretraining puts where: linear probes on frozen features (issue 16).

The label-efficiency grid's probe (``training/label_efficiency.py``, method ``probe``) trains
the network's own classifier on the pooled last-level features Z^{L-1} and stays at chance.
That says the classifier's input carries no linearly readable motion class after pretraining,
not whether the pretrained parts (the flow net P^0, the prime motion blocks P^l) learnt
anything. This script reads each part separately, pretrained against the same network from its
random initialisation, with one logistic regression (scikit-learn) per feature set:

* ``head``: Z^{L-1} averaged over space and time ([B, C]: what the classifier sees);
* ``motion``: every P^l averaged over time and pooled to a 2 x 2 grid ([B, 4 sum C_l]);
* ``flow``: the flow net's flow averaged over time and pooled to a 3 x 3 grid ([B, 18]: a
  global translation, divergence (zoom) and curl (rotation) are linear in it).

Training clips: the label-efficiency pool rows of a seed (``--labels``, e.g. 5,all: the same
nested clips as the grid's rows); scored on its held-out (train look, seed 7001) and
style-shift (seed 7002) sets. Needs a run folder whose ``pretrain-sS/model.pt`` exists (a
``label_efficiency.py run`` with a pretrained or probe row)::

    python training/motion_probe.py --out runs/label_eff_cpu5_k2 --seeds 0,1 --labels 5,all

prints a markdown table and writes ``OUT/motion_probe.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
for _p in (REPO, REPO / "training"):  # `python training/motion_probe.py` from a bare checkout
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import label_efficiency as le  # noqa: E402

FEATURES = ("head", "motion", "flow")


def features(module, source, size: le.Size, batch: int = 32) -> dict[str, np.ndarray]:
    """Frozen features of every clip of ``source``: {name: [N, D]} plus "y" [N]."""
    import torch
    import torch.nn.functional as F

    from hcml.data.datasets import ClipDataset

    cfg = module.model.default_cfg
    ds = ClipDataset(
        source, le.FRAMES, (size.input,) * 2, cfg["mean"], cfg["std"], le.FRAME_STEP, "uniform"
    )
    module.eval()
    out: dict[str, list] = {k: [] for k in (*FEATURES, "y")}
    with torch.no_grad():
        for s in range(0, len(ds), batch):
            items = [ds[i] for i in range(s, min(s + batch, len(ds)))]
            x = torch.stack([a for a, _ in items])
            o = module(x)
            out["head"].append(o["features"][-1].mean((2, 3, 4)))
            out["motion"].append(
                torch.cat(
                    [
                        F.adaptive_avg_pool3d(p, (1, 2, 2)).flatten(1)
                        for _, p in sorted(o["motion"].items())
                    ],
                    1,
                )
            )
            # the last frame is paired with itself (zero flow): average the T - 1 real pairs
            out["flow"].append(F.adaptive_avg_pool3d(o["flow"][:, :, :-1], (1, 3, 3)).flatten(1))
            out["y"].append(torch.tensor([b for _, b in items]))
    return {k: torch.cat(v).numpy() for k, v in out.items()}


def probe(train: dict, tests: dict[str, dict], name: str) -> dict[str, float]:
    """Standardised logistic regression on ``train[name]``; top-1 on each test set."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    clf.fit(train[name], train["y"])
    return {t: float((clf.predict(d[name]) == d["y"]).mean()) for t, d in tests.items()}


def run(a: argparse.Namespace) -> int:
    import torch

    from hcml.training.init_from import load_pretrained
    from hcml.training.run import build_module

    out = Path(a.out)
    meta = json.loads((out / "run.json").read_text())
    size = le.Size(**{**meta["size"], "pretrain": tuple(meta["size"]["pretrain"])})
    arch, flow_net = meta["net"]["arch"], meta["net"]["flow_net"]
    ci = meta["net"].get("contrastive_input", "both")
    pool = le._mixed(size, le.POOL_SEED, size.pool)
    tests = {
        "heldout": le._rendered(size, le.HELDOUT_SEED, "train", size.eval, 1),
        "style_shift": le._rendered(size, le.SHIFT_SEED, "style_shift", size.eval, 1),
    }
    torch.set_num_threads(a.threads)
    rows = []
    for seed in a.seeds:
        run_dir = out / f"pretrain-s{seed}"
        if not (run_dir / "model.pt").is_file():
            print(f"motion_probe: {run_dir}/model.pt is missing: run label_efficiency.py first")
            return 2
        for init in ("random", "pretrained"):
            torch.manual_seed(seed)
            module = build_module(le._recipe("pretrained", size, seed, arch, flow_net, ci))
            if init == "pretrained":
                load_pretrained(module, run_dir)
            t0 = time.time()
            test_feats = {k: features(module, src, size) for k, src in tests.items()}
            all_idx = le.subset_indices(size, seed, "all")
            pool_feats = features(module, le.Subset(pool, all_idx), size)
            pos = {i: j for j, i in enumerate(all_idx)}
            secs = time.time() - t0
            for labels in a.labels:
                rows_idx = [pos[i] for i in le.subset_indices(size, seed, labels)]
                train = {k: v[rows_idx] for k, v in pool_feats.items()}
                for name in FEATURES:
                    acc = probe(train, test_feats, name)
                    rows.append(
                        {"seed": seed, "init": init, "labels": labels, "features": name, **acc}
                    )
                    print(
                        f"seed {seed} {init:10s} k={labels:>3s} {name:6s} held-out "
                        f"{100 * acc['heldout']:5.1f}  style-shift {100 * acc['style_shift']:5.1f}"
                        f"  (features {secs:.0f} s)",
                        flush=True,
                    )
    (out / "motion_probe.json").write_text(json.dumps({"run": str(out), "rows": rows}, indent=1))
    print(markdown(rows))
    return 0


def markdown(rows: list[dict]) -> str:
    """Top-1 % (mean over seeds), a line per (features, init), a column per labels a class."""
    labels = sorted(
        {r["labels"] for r in rows}, key=lambda v: (v == "all", int(v) if v != "all" else 0)
    )
    head = "| features | init | " + " | ".join(
        f"{k if k == 'all' else k + ' a class'}: held-out / style-shift" for k in labels
    )
    lines = [head + " |", "|---|---|" + "---|" * len(labels)]
    for name in FEATURES:
        for init in ("random", "pretrained"):
            cells = []
            for k in labels:
                sel = [
                    r for r in rows if (r["features"], r["init"], r["labels"]) == (name, init, k)
                ]
                h = [100 * r["heldout"] for r in sel]
                s = [100 * r["style_shift"] for r in sel]
                cells.append(f"{np.mean(h):.1f} / {np.mean(s):.1f}")
            lines.append(f"| {name} | {init} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="a label_efficiency.py run folder")
    ap.add_argument("--seeds", type=le._ints, default=[0, 1], help="e.g. 0,1")
    ap.add_argument("--labels", default="5,all", help="clips a class, e.g. 2,5,20,all")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    a = ap.parse_args(argv)
    a.labels = [v.strip() for v in a.labels.split(",") if v.strip()]
    bad = [v for v in a.labels if v not in le.LABELS]
    if bad:
        ap.error(f"--labels: {bad} not in {list(le.LABELS)}")
    return run(a)


if __name__ == "__main__":
    raise SystemExit(main())
