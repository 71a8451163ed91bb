"""Probes behind docs/RESULTS.md, "Rotation direction": is the sense in the data, is it learnable?

    python training/rotation_probe.py estimator [--step 1|2]
        sign of a least-squares angular velocity (brightness constancy about the motion
        centroid, no learning) on the default recipe's cached rotate_cw / rotate_ccw clips
    python training/rotation_probe.py breakdown CKPT HELDOUT_DIR
        a checkpoint's accuracy on the held-out rotation clips by speed, shape and texture
    python training/rotation_probe.py binary [--size 64] [--steps 300] [--option KEY=VALUE ...]
        train rotate_cw vs rotate_ccw alone (mscv_tiny, PMBs at levels 1-3, beta 1, d=2, s=1;
        mirror + time reversal with label swaps); prints the loss every 25 steps and the
        held-out accuracy (runs/heldout-s777)

The cached clips are the default recipe's (seed 0, 16 frames rendered at 112, stored at 64; made
on first use); ``--size 112`` renders the 800 rotation clips at full size instead.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hcml.data.datasets import ClipDataset, RenderedClips, _render_item, open_dataset
from hcml.labels import LABELS

CW, CCW = LABELS.index("rotate_cw"), LABELS.index("rotate_ccw")
MEAN, STD = (0.45,) * 3, (0.225,) * 3
HELDOUT = "runs/heldout-s777"


def rotation_clips(size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """The default training set's rotation clips: uint8 [800, 16, S, S, 3], labels 0 cw / 1 ccw."""
    idx = np.array([i for i in range(4800) if i % 12 in (CW, CCW)])
    if size == 64:
        clips = np.asarray(RenderedClips(0, 16, 112, 4800, 64).clips[idx])
    else:
        store = None if size == 112 else size
        clips = np.stack([_render_item((0, 16, 112, int(i), store)) for i in idx])
    return clips, (idx % 12 == CCW).astype(np.int64)


def _smooth(img: np.ndarray) -> np.ndarray:
    k = np.exp(-0.5 * np.arange(-3, 4) ** 2)
    k /= k.sum()
    img = np.apply_along_axis(np.convolve, 0, img, k, "same")
    return np.apply_along_axis(np.convolve, 1, img, k, "same")


def angular_velocity(clip: np.ndarray) -> float:
    """Median over frame pairs of the least-squares omega in I_t = omega (I_x dy - I_y dx)."""
    grey = [_smooth(f.astype(np.float64).mean(-1)) for f in clip]
    yy, xx = np.mgrid[: grey[0].shape[0], : grey[0].shape[1]]
    out = []
    for a, b in zip(grey[:-1], grey[1:], strict=True):
        it = b - a
        iy, ix = np.gradient(0.5 * (a + b))
        w = np.abs(it) / np.abs(it).sum()
        cx, cy = (w * xx).sum(), (w * yy).sum()
        g = ix * (yy - cy) - iy * (xx - cx)
        out.append((it * g).sum() / (g * g).sum())
    return float(np.median(out))


def estimator(args: argparse.Namespace) -> None:
    clips, labels = rotation_clips()
    omega = np.array([angular_velocity(c[:: args.step]) for c in clips[: args.clips]])
    for name, lab, sign in (("rotate_cw", 0, 1), ("rotate_ccw", 1, -1)):
        m = labels[: args.clips] == lab
        print(f"{name}: sense right in {np.mean(np.sign(omega[m]) == sign):.3f} of {m.sum()} clips")


def breakdown(args: argparse.Namespace) -> None:
    from hcml.model.checkpoint import load_checkpoint, load_model

    model = load_model(args.ckpt).eval()
    cfg = model.default_cfg
    step = int(load_checkpoint(args.ckpt).get("data", {}).get("frame_step", 2))
    src = open_dataset(args.heldout)
    with open(Path(args.heldout) / "params.jsonl") as f:
        params = {p["path"]: p for p in map(json.loads, f)}
    size = tuple(cfg["input_size"][-2:])
    ds = ClipDataset(src, int(cfg["frames"]), size, cfg["mean"], cfg["std"], step, "uniform")
    rows = []
    with torch.no_grad():
        for i, (path, label) in enumerate(src.items):
            if label in (CW, CCW):
                right = int(model(ds[i][0][None]).argmax(1)) == label
                rows.append((params["/".join(path.parts[-2:])], right))
    print(f"{len(rows)} rotation clips, accuracy {np.mean([ok for _, ok in rows]):.2f}")
    for key in ("shapes", "textures", "background"):
        groups = defaultdict(list)
        for p, ok in rows:
            groups[p[key][0] if isinstance(p[key], list) else p[key]].append(ok)
        print(key, {k: f"{np.mean(v):.2f} of {len(v)}" for k, v in sorted(groups.items())})
    deg = np.array([p["deg_per_frame"] for p, _ in rows])
    ok = np.array([right for _, right in rows])
    for lo, hi in ((3, 5), (5, 7), (7, 9), (9, 12)):
        m = (deg >= lo) & (deg < hi)
        print(f"{lo}-{hi} deg/frame: {ok[m].mean():.2f} of {m.sum()}")


def binary(args: argparse.Namespace) -> None:
    from hcml.model import create_model

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    clips, labels = rotation_clips(args.size)
    options = dict(levels=[1, 2, 3], beta=1, max_displacement=2, stride=1)
    for item in args.option:
        key, value = item.split("=", 1)
        options[key] = json.loads(value)
    model = create_model(
        "mscv_tiny", num_classes=2, frames=8, input_size=(args.size,) * 2, **options
    )
    opt = torch.optim.AdamW(model.parameters(), 2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=args.steps, pct_start=0.05)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1, 1) for v in (MEAN, STD))

    def batch(b: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
        pick, offset = rng.integers(0, len(clips), b), rng.integers(0, 2, b)
        x = np.stack([clips[k, o : o + 15 : 2] for k, o in zip(pick, offset, strict=True)])
        y = labels[pick].copy()
        for i in range(b):  # a mirror or a time reversal turns the sense around
            if rng.random() < 0.5:
                x[i], y[i] = x[i, :, :, ::-1], 1 - y[i]
            if rng.random() < 0.5:
                x[i], y[i] = x[i, ::-1], 1 - y[i]
        x = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 4, 1, 2, 3).float() / 255
        return (x - mean) / std, torch.from_numpy(y)

    print(f"binary cw/ccw probe: {options}, {args.size}x{args.size}, {args.steps} steps")
    start = time.time()
    model.train()
    for step in range(args.steps):
        x, y = batch()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 25 == 0 or step == args.steps - 1:
            took = time.time() - start
            print(f"step {step:4d}  loss {loss.item():.3f}  {took:.0f} s", flush=True)
    src = open_dataset(args.heldout)
    ds = ClipDataset(src, 8, (args.size,) * 2, MEAN, STD, 2, "uniform")
    model.eval()
    with torch.no_grad():
        right = [
            int(model(ds[i][0][None]).argmax(1)) == (label == CCW)
            for i, (_, label) in enumerate(src.items)
            if label in (CW, CCW)
        ]
    print(f"held-out accuracy {np.mean(right):.3f} on {len(right)} rotation clips")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="probe", required=True)
    e = sub.add_parser("estimator", help="angular-velocity sign on the cached clips")
    e.add_argument("--step", type=int, default=1, help="frame step of the pairs")
    e.add_argument("--clips", type=int, default=800, help="how many of the 800 clips")
    b = sub.add_parser("breakdown", help="a checkpoint's rotation accuracy by clip parameters")
    b.add_argument("ckpt")
    b.add_argument("heldout", nargs="?", default=HELDOUT)
    n = sub.add_parser("binary", help="train cw vs ccw alone")
    n.add_argument("--size", type=int, default=64)
    n.add_argument("--steps", type=int, default=300)
    n.add_argument("--option", action="append", default=[], help="model option KEY=JSON")
    n.add_argument("--heldout", default=HELDOUT)
    args = p.parse_args()
    {"estimator": estimator, "breakdown": breakdown, "binary": binary}[args.probe](args)


if __name__ == "__main__":
    main()
