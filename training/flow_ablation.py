"""P^0 flow ablation: which training data and which L_rec terms make the flow net learn flow.

Trains the flow net alone (``hcml.model.flow.FlowNet``, as the flow stage does) for each row of
``CONFIGS`` and scores it with ``hcml eval-flow``'s code on both flow sets (synthetic benchmark,
seed 777, and the dense-motion set over scikit-learn's photos, 10 clips a class each):
moving-pixel EPE over the zero-flow predictor's. Rows run in parallel processes, one GPU shared.

Training data, all 8 consecutive frames at 64x64 (the default model's input):
* ``camera``: a virtual camera over frames of the unlabelled videos (``dense_motion.camera_clip``,
  what ``hcml pretrain`` mixes in with ``camera:``);
* ``video``: random crops of real windows of those videos;
* ``synth``: the motion benchmark's clips (seed 5; none of eval-flow's seed 777).

    # here (PyAV decodes the videos once; the device needs no PyAV):
    python training/flow_ablation.py frames --out runs/flow_frames.npz tests/data/tree_320x240.mp4 \
        tests/data/vtest_pedestrians_768x576.mp4
    python training/flow_ablation.py run --frames runs/flow_frames.npz --out runs/flow_ablation \
        --steps 3000 --device cuda
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np

BASE = {"zeta": 0.5, "census": 0.0, "ssim": 0.0, "edge": 0.0, "scales": 1, "occlusion": False}
NET = {"growth": 8, "scale": 2, "dilation": False, "corr": 0}
MIX = {"video": 0.5, "camera": 0.5}  # what `hcml pretrain` feeds (camera: 0.5)
CES = {"census": 1.0, "edge": 10.0, "scales": 3}
# name: (data mix {source: share}, loss overrides, flow-net overrides)
CONFIGS: dict[str, tuple[dict[str, float], dict, dict]] = {
    # round 1: data and loss terms on the shipped flow net (growth 8, no cost volume)
    "synth_base": ({"synth": 1}, {}, {}),
    "video_base": ({"video": 1}, {}, {}),
    "camera_base": ({"camera": 1}, {}, {}),
    "mix_base": (MIX, {}, {}),
    "mix_dil": (MIX, {}, {"dilation": True}),
    "mix_census": (MIX, {"census": 1.0}, {}),
    "mix_census_edge": (MIX, {"census": 1.0, "edge": 10.0}, {}),
    "mix_census_edge_s3": (MIX, CES, {}),
    "mix_census_edge_s3_dil": (MIX, CES, {"dilation": True}),
    "mix_census_edge_s3_dil_occ": (MIX, {**CES, "occlusion": True}, {"dilation": True}),
    "mix_ssim_edge_s3_dil": (MIX, {"ssim": 1.0, "edge": 10.0, "scales": 3}, {"dilation": True}),
    "mix_census_edge_s3_dil_z2": (MIX, {**CES, "zeta": 2.0}, {"dilation": True}),
    "all3_census_edge_s3_dil": (
        {"video": 1 / 3, "camera": 1 / 3, "synth": 1 / 3},
        CES,
        {"dilation": True},
    ),
    "synth_census_edge_s3_dil": ({"synth": 1}, CES, {"dilation": True}),
    # round 2: capacity (growth), a local cost volume (corr), the full-resolution grid (scale 1)
    "r2_mix_census_g32": (MIX, {"census": 1.0}, {"growth": 32}),
    "r2_mix_census_corr3": (MIX, {"census": 1.0}, {"corr": 3}),
    "r2_mix_census_corr3_g32": (MIX, {"census": 1.0}, {"corr": 3, "growth": 32}),
    "r2_mix_census_s1": (MIX, {"census": 1.0}, {"scale": 1}),
    "r2_mix_ces_corr3_g32": (MIX, CES, {"corr": 3, "growth": 32}),
    "r2_mix_census_corr2_g16": (MIX, {"census": 1.0}, {"corr": 2, "growth": 16}),
    "r2_all3_census_corr3_g32": (
        {"video": 1 / 3, "camera": 1 / 3, "synth": 1 / 3},
        {"census": 1.0},
        {"corr": 3, "growth": 32},
    ),
    "r2_mix_base_corr3_g32": (MIX, {}, {"corr": 3, "growth": 32}),
    "r2_mix_census_corr3_s1": (MIX, {"census": 1.0}, {"corr": 3, "scale": 1}),
    "r2_mix_census_corr3_g32_occ": (
        MIX,
        {"census": 1.0, "occlusion": True},
        {"corr": 3, "growth": 32},
    ),
}
SIZE, FRAMES = 64, 8
_BANKS: dict[str, np.ndarray] = {}
_EVAL: dict[str, list] = {}


def _cfg() -> dict:
    from hcml.model import create_model

    return dict(create_model("hcml_tiny", frames=FRAMES, input_size=(3, SIZE, SIZE)).default_cfg)


def make_frames(out: str, videos: list[str], max_side: int = 384) -> None:
    """Decode ``videos`` (PyAV) to one npz of uint8 [T, H, W, 3] arrays, long side <= max_side."""
    import torch

    from hcml.data.transforms import resize_clip
    from hcml.data.video import read_video

    arrays = {}
    for i, v in enumerate(videos):
        clip = torch.from_numpy(read_video(v))
        h, w = clip.shape[1:3]
        f = min(1.0, max_side / max(h, w))
        arrays[f"v{i}"] = resize_clip(clip, (int(h * f) // 2 * 2, int(w * f) // 2 * 2)).numpy()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)


def _bank_item(args: tuple[str, int]) -> np.ndarray:
    import torch

    from hcml.data.transforms import resize_clip

    kind, i = args
    rng = np.random.default_rng([7, ("synth", "camera", "video").index(kind), i])
    if kind == "synth":
        from hcml.data.synth import clip_seed, render_clip

        c = i % 12
        clip = render_clip(c, clip_seed(5, c, i // 12), FRAMES, 112).frames
        return resize_clip(torch.from_numpy(clip), (SIZE, SIZE)).numpy()
    vids = _BANKS["_videos"]
    v = vids[int(rng.integers(len(vids)))]
    if kind == "camera":
        from hcml.data.dense_motion import camera_clip

        return camera_clip(v[int(rng.integers(len(v)))], rng, FRAMES, SIZE).frames
    start = int(rng.integers(len(v) - FRAMES + 1))
    w = v[start : start + FRAMES]
    h, wd = w.shape[1:3]
    side = int(min(h, wd) * rng.uniform(0.6, 1.0))
    y0, x0 = int(rng.integers(h - side + 1)), int(rng.integers(wd - side + 1))
    crop = np.ascontiguousarray(w[:, y0 : y0 + side, x0 : x0 + side])
    return resize_clip(torch.from_numpy(crop), (SIZE, SIZE)).numpy()


def _eval_clip(args: tuple[str, int, int]) -> tuple:
    """Clip (c, i) of eval-flow's set (seed 777), as ``hcml eval-flow`` renders it."""
    from hcml.training.flow_eval import flow_clip

    flow_set, c, i = args
    return flow_clip(flow_set, 777, c, i, FRAMES, 112)


def _train(name: str, steps: int, batch: int, lr: float, device: str, max_s: float) -> dict:
    import torch

    from hcml.data.transforms import to_model_input
    from hcml.model.flow import FlowLossConfig, FlowNet, reconstruction_loss
    from hcml.training.flow_eval import flow_epe_clips

    torch.set_num_threads(1)
    mix, loss_over, net_over = CONFIGS[name]
    ncfg = {**NET, **net_over}
    lcfg = FlowLossConfig(**{**BASE, **loss_over})
    cfg = _cfg()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    net = FlowNet(ncfg["growth"], ncfg["scale"], dilation=ncfg["dilation"], corr=ncfg["corr"]).to(
        device
    )
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    kinds = list(mix)
    p = np.array([mix[k] for k in kinds], dtype=np.float64)
    p /= p.sum()
    t0 = time.perf_counter()
    last = []
    for step in range(steps):
        ks = rng.choice(len(kinds), size=batch, p=p)
        clips = []
        for k in ks:
            bank = _BANKS[kinds[k]]
            c = bank[int(rng.integers(len(bank)))]
            if rng.random() < 0.5:
                c = c[:, :, ::-1]
            if rng.random() < 0.5:
                c = c[::-1]
            clips.append(np.ascontiguousarray(c))
        x = to_model_input(torch.from_numpy(np.stack(clips)), cfg["mean"], cfg["std"]).to(device)
        cur = lr * 0.5 * (1 + np.cos(np.pi * min(step / steps, 1.0)))
        for g in opt.param_groups:
            g["lr"] = cur if step >= 100 else lr * (step + 1) / 100
        fo = net(x, backward=lcfg.occlusion)
        rec = reconstruction_loss(fo["frames"], fo["flow"], cfg=lcfg, flow_bw=fo.get("flow_bw"))
        opt.zero_grad(set_to_none=True)
        rec["rec"].backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        last.append(float(rec["rec"].detach()))
        if time.perf_counter() - t0 > max_s:
            break
    secs = time.perf_counter() - t0
    net.eval()
    res = {"name": name, "mix": mix, "loss": {**BASE, **loss_over}, "net": ncfg}
    res.update({"steps": len(last), "batch": batch, "lr": lr, "train_s": round(secs, 1)})
    res["final_rec"] = float(np.mean(last[-50:]))
    for s, clips in _EVAL.items():
        r = flow_epe_clips(net, cfg, clips)
        r["ratio"] = r["epe_moving"] / r["epe_moving_zero_flow"]
        res[s] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
    res["state"] = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    return res


def _train_star(args):
    try:
        return _train(*args)
    except Exception as e:  # one row failing must not lose the others
        return {"name": args[0], "error": repr(e)}


def run(a: argparse.Namespace) -> int:
    import torch

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    data = np.load(a.frames)
    _BANKS["_videos"] = [data[k] for k in data.files]
    names = a.only.split(",") if a.only else list(CONFIGS)
    need = {k for n in names for k in CONFIGS[n][0]}
    ctx = mp.get_context("fork")
    t0 = time.perf_counter()
    with ctx.Pool(a.workers) as pool:
        for kind in sorted(need):
            items = pool.map(_bank_item, [(kind, i) for i in range(a.bank)], chunksize=16)
            _BANKS[kind] = np.stack(items)
        for s in ("synth", "dense"):
            jobs = [(s, c, i) for i in range(a.eval_clips) for c in range(12)]
            _EVAL[s] = pool.map(_eval_clip, jobs, chunksize=4)
    print(f"banks + eval sets: {time.perf_counter() - t0:.0f} s", flush=True)
    jobs = [(n, a.steps, a.batch, a.lr, a.device, a.max_seconds) for n in names]
    results, states = [], {}
    with ctx.Pool(min(a.jobs, len(jobs))) as pool:
        for r in pool.imap_unordered(_train_star, jobs):
            if "state" in r:
                states[r["name"]] = r.pop("state")
            results.append(r)
            print(
                json.dumps({k: r.get(k) for k in ("name", "steps", "synth", "dense")}), flush=True
            )
            torch.save(states, out / "flow_nets.pt")
            (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    for r in results:
        if "error" in r:
            print(f"{r['name']}: {r['error']}")
            continue
        print(
            f"{r['name']:32s} synth {r['synth']['epe_moving']:.3f}/"
            f"{r['synth']['epe_moving_zero_flow']:.3f} ({r['synth']['ratio']:.2f})  dense "
            f"{r['dense']['epe_moving']:.3f}/{r['dense']['epe_moving_zero_flow']:.3f} "
            f"({r['dense']['ratio']:.2f})  rec {r['final_rec']:.4f}  {r['train_s']:.0f} s"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("frames")
    f.add_argument("--out", required=True)
    f.add_argument("videos", nargs="+")
    r = sub.add_parser("run")
    r.add_argument("--frames", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--steps", type=int, default=3000)
    r.add_argument("--batch", type=int, default=16)
    r.add_argument("--lr", type=float, default=3e-3)
    r.add_argument("--bank", type=int, default=1500, help="clips per training source")
    r.add_argument("--device", default="cpu")
    r.add_argument("--jobs", type=int, default=len(CONFIGS))
    r.add_argument("--workers", type=int, default=14)
    r.add_argument("--only", help="comma-separated config names")
    r.add_argument("--max-seconds", type=float, default=1e9, help="training time cap a row")
    r.add_argument("--eval-clips", type=int, default=10, help="eval clips a class and set")
    a = ap.parse_args(argv)
    if a.cmd == "frames":
        make_frames(a.out, a.videos)
        return 0
    return run(a)


if __name__ == "__main__":
    sys.exit(main())
