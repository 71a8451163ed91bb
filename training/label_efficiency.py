r"""Label efficiency (issue 16, item 4): accuracy against labelled clips a class, with and without
self-supervised pretraining.

Rows: labelled clips a class k in {2, 5, 20, all} x method, for each seed (default 0 and 1):

* ``pretrained``: the default network (``training/pretrain.yaml``'s model section) pretrained
  without labels (flow stage, then the progressive stages), loaded as ``init_from`` loads it
  (``hcml.training.init_from.load_pretrained``: everything but the classifier), fine-tuned with
  ``training/finetune.yaml``'s joint stage (L_cls + 0.1 L_rec);
* ``scratch``: the same network and joint stage from a random initialisation;
* ``tsm``: ``tsm_tiny`` (temporal shift), supervised stage;
* ``mscv``: ``mscv_tiny`` (single-level cost volume, d = 2, s = 1), supervised stage;
* ``probe``: linear probe, the pretrained network frozen (BatchNorm statistics too), only the
  classifier (``model.head``) trained.

Every row gets the same fine-tuning budget: ``--steps`` optimizer steps of ``--batch`` clips,
AdamW lr 0.002, warm-up (20 steps, at most a fifth of the steps) then cosine to 0, weight decay
1e-4, gradient clip 5, augmentation h-flip / reversal (labels swapped) 0.5, brightness and
contrast 0.1, lighting ramp 0.25; the same data order for every method of a seed.

Data (``hcml.data.synth``, 16 frames rendered at ``render`` px, stored at the input size; the
model sees 8 frames, step 2):

* labelled pool: seed 0, classic and ``train`` looks mixed 1:2 as ``training/train_style.yaml``
  mixes them; for seed s and class c one permutation of the class's pool clips
  (``default_rng([1000 + s, c])``) whose first k are the row's clips (nested: the 2 are among
  the 5, ...); ``all`` is the whole pool;
* unlabelled pretraining clips: synthetic seed 1 (classic and train, no label is ever read) and
  as many virtual-camera clips over the train split's photos (``dense_motion.camera_clip``:
  dense motion, as ``hcml pretrain --camera 0.5`` mixes in); pretraining runs once a seed
  (``OUT/pretrain-sS/model.pt``) and every pretrained and probe row of that seed loads it;
* evaluation: held-out ``train`` look, seed 7001, and the ``style-shift`` look, seed 7002 (no
  training uses either), ``eval`` clips a class each.

Sizes (``SIZES``, ``--size``): ``full`` for the GPU, ``cpu5`` for the 5-labels-a-class rows on
2 CPU cores (with ``--arch fast --flow-net small``; its measured cost is in a comment beside
it), ``smoke`` (``--smoke``: 32 px input, a few clips and steps) for the test and a quick look
on a CPU.

Network (``--arch``, ``--flow-net``; recorded in run.json and the table's heading): the
pretraining and every HCML row (pretrained, scratch, probe) of a run use one network.
``--arch default`` is ``training/pretrain.yaml``'s (motion blocks at levels 0-3, beta 1),
``--arch fast`` is ``training/tiny_fast.yaml``'s (levels 0-1, beta 2, the network of the
default ``engines/hcml_tiny_motion``); ``--flow-net big`` is pretrain.yaml's flow net (32 channels
a conv, cost volume r3, census), ``--flow-net small`` the registry default that
``training/default.yaml`` trains (8, no cost volume, no census). ``--contrastive-input high``
makes the contrastive heads read P^l alone instead of the design's [P^l, P^{l-1}] (the train
option ``contrastive_input``; docs/RESULTS.md, "What the pretraining learns"). What each part
of a run's pretrained network has learnt: ``training/motion_probe.py --out OUT``. ``cost``
times a training step of each stage for each choice (random clips, ``--steps`` after a
warm-up).

``--keep-models`` saves each row's trained network as ``OUT/models/NAME.pt`` (an
hcml-checkpoint like ``hcml train``'s model.pt: recipe, labels, frame step and the row's
held-out / style-shift accuracy as metrics), so e.g.
``hcml export OUT/models/pretrained-k5-s0.pt --name hcml_tiny_motion_5shot`` writes the card
with its measured accuracy.

GPU estimate (full size, H200, ``--parallel 14``; not measured on the device): the flow
ablation's rows with this flow net (growth 32, corr r3) ran ~145 ms a step with 10 processes on
the GPU (~70 flow steps a second in all); a CPU probe here (batch 16, 64 px, one thread, busy
cores) costs a joint step 16.8 s, a flow step 12.2 s, a progressive step 4.7 s, a TSM / MSCV
step 1.0 s, a probe step (frozen forward) ~2 s, so ~50 joint steps a second in all. Grid: 16
HCML joint rows x 300 steps = 4800, 16 TSM / MSCV rows (counted at 0.2 of a joint step: small
kernels are launch-bound on a GPU) ~960, 8 probe rows ~480, 2 pretrainings of 400 flow + 4 x 50
progressive steps ~700: ~6900 joint-step equivalents, ~140 s; the critical path (pretraining
~70 s, then a pretrained row ~60 s) fits inside it. Rendering 3600 pool + 480 eval + 600
unlabelled clips (~0.15-0.3 s each) on 16 cores: 45-90 s; start-up ~20 s. About 4 minutes.
``--deadline 210`` starts no row after 210 s (a running row finishes); rows are resumable, so
rerunning the same command does the rest.

The styled looks need the photo bank (``hcml.data.textures``): on a machine without it (or
without PyAV to read the two test videos) carry this machine's bank and wallpapers along, so
the device renders exactly these clips. GPU (torch CUDA; no GStreamer needed)::

    mkdir -p runs/le_cache && cp ~/.cache/hcml/textures-*.npz runs/le_cache/ \
        && cp -r ~/.cache/hcml/wallpapers runs/le_wallpapers          # here; carry both
    HCML_CACHE=runs/le_cache HCML_WALLPAPERS=runs/le_wallpapers python \
        training/label_efficiency.py run --out runs/label_eff --device cuda --parallel 14 \
        --workers 16 --deadline 210; mkdir -p $OUT/label_eff/rows \
        && cp runs/label_eff/run.json $OUT/label_eff/ && cp runs/label_eff/rows/*.json \
        $OUT/label_eff/rows/                                           # on the device
    python training/label_efficiency.py table --out FILES_AT/label_eff   # here -> docs/RESULTS.md

CPU, the grid at the cpu5 size, in phases into one folder (2026-12-02, 2 CPU cores, partly
shared: phase A 45 min, of it rendering 6 min and the two pretrainings side by side 15 min;
phase B 41 min; a pretrained or scratch row ~12 min, two at a time; a TSM / cost-volume /
probe row ~3-4 min; rows resumable, ``--deadline`` stops starting rows; then ``hcml export
runs/label_eff_cpu5/models/pretrained-k5-s0.pt --name hcml_tiny_motion_5shot``)::

    common="--size cpu5 --arch fast --flow-net small --out runs/label_eff_cpu5 --seeds 0,1 \
        --keep-models --parallel 2 --workers 2 --threads 1"
    python training/label_efficiency.py run $common --labels 5 --methods pretrained,scratch
    python training/label_efficiency.py run $common --labels 2,5,20,all --methods tsm,mscv,probe
    python training/label_efficiency.py run $common --labels 20,all --methods pretrained,scratch
    python training/label_efficiency.py run $common --labels 2 --methods pretrained,scratch

CPU: the smoke grid (all 40 rows: ~3.5 min on 2 busy cores, 1.5 min of it the first
rendering; the test runs 20 of them: ~55 s once rendered) and the small real run of
docs/RESULTS.md (33 min at nice 10 on 2 busy cores, 7 of them rendering)::

    python training/label_efficiency.py run --smoke --out runs/label_eff_smoke --parallel 2
    nice -n 10 python training/label_efficiency.py run --out runs/label_eff_cpu --seeds 0 \
        --labels 2,5 --steps 40 --batch 8 --pretrain-steps 40,5 --eval-clips 10 --parallel 2 \
        --workers 2 --deadline 2100
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python training/label_efficiency.py` from a bare checkout
    sys.path.insert(0, str(REPO))
METHODS = ("pretrained", "scratch", "tsm", "mscv", "probe")
TITLES = {
    "pretrained": "HCML pretrained, fine-tuned",
    "scratch": "HCML from scratch",
    "tsm": "TSM (`tsm_tiny`)",
    "mscv": "single-level cost volume (`mscv_tiny`)",
    "probe": "linear probe on frozen pretrained HCML",
}
NEEDS_PRETRAIN = ("pretrained", "probe")
LABELS = ("2", "5", "20", "all")
SEEDS = (0, 1)
POOL_SEED, UNLABELLED_SEED, HELDOUT_SEED, SHIFT_SEED = 0, 1, 7001, 7002
FRAMES, FRAME_STEP, RENDER_FRAMES = 8, 2, 16
LR, WEIGHT_DECAY, GRAD_CLIP = 0.002, 1e-4, 5.0
AUGMENT = {"hflip": 0.5, "reverse": 0.5, "brightness": 0.1, "contrast": 0.1, "lighting": 0.25}
BEGIN, END = "<!-- label-efficiency:begin -->", "<!-- label-efficiency:end -->"
HCML_METHODS = ("pretrained", "scratch", "probe")
# --arch: the HCML network of the pretraining and of every pretrained / scratch / probe row.
# default: training/pretrain.yaml's (PMBs at levels 0-3, beta 1, engines/hcml_tiny_motion);
# fast: training/tiny_fast.yaml's (levels 0-1, beta 2, engines/hcml_tiny_motion, the default).
ARCHS = {
    "default": {"max_displacement": 2, "stride": 1, "beta": 1, "levels": [0, 1, 2, 3],
                "moments_window": 8},
    "fast": {"max_displacement": 2, "stride": 1, "beta": 2, "levels": [0, 1], "moments_window": 8},
}  # fmt: skip
# --flow-net: the P^0 flow net (trained by the flow stage, L_rec in the joint stage).
# big: training/pretrain.yaml's (32 channels a conv, cost volume r3, census term);
# small: the registry default that training/default.yaml and tiny_fast.yaml train (8, no cost
# volume, no census).
FLOW_NETS = {
    "big": {"flow_growth": 32, "flow_corr": 3, "flow_census": 1.0},
    "small": {"flow_growth": 8, "flow_corr": 0, "flow_census": 0.0},
}


@dataclass(frozen=True)
class Size:
    """One grid size. pool / unlabelled: synthetic clips a class per look; eval: clips a class
    per eval set; camera: virtual-camera clips among the unlabelled ones; steps: fine-tuning
    steps a row; pretrain: (flow steps, progressive steps a level)."""

    input: int
    render: int
    pool: dict[str, int]
    unlabelled: dict[str, int]
    camera: int
    eval: int
    steps: int
    pretrain: tuple[int, int]
    batch: int
    name: str = field(default="custom", compare=False)


SIZES = {
    "full": Size(
        64,
        112,
        {"classic": 100, "train": 200},  # train_style.yaml's 1200 + 2400 clips (its cache)
        {"classic": 25, "train": 25},
        600,
        20,
        300,
        (400, 50),
        16,
        "full",
    ),  # fmt: skip
    # The 5-labels-a-class rows on 2 idle CPU cores with `--arch fast --flow-net small
    # --parallel 2` (pretrained + scratch x seeds 0, 1 and the 2 pretrainings in ~40-47 min).
    # Pool, unlabelled clips and camera bank as `full` (already cached after a `full`-pool run;
    # the same pool size gives the same k = 5 clips as the full grid), eval 20 a class as `full`
    # (480 clips to render, ~0.3-1.1 s a clip and worker). Cost, measured with `cost`
    # (batch 16, 1 torch thread, CPU seconds a step of the process, medians of 2 steps after a
    # warm-up, 2026-12-01 on the 2 shared cores at load average 3.1-4.0; wall was 4-5x that):
    #   arch / flow net   flow  progressive (per level)   joint  probe
    #   default / big     3.45  1.83 1.43 1.31 1.35       4.84   0.48
    #   default / small   0.25  0.96 0.76 0.74 0.71       1.66   0.44
    #   fast / big        3.50  1.46 1.22                 3.91   0.26
    #   fast / small      0.25  0.67 0.51                 1.09   0.28   (tsm 0.27, mscv 0.27)
    # The big flow net dominates (14x the flow step, 2.9x the joint step of the small one), so
    # this size is for fast / small. A process runs one pretraining and then two rows:
    # 1000 x 0.25 + 400 x (0.67 + 0.51) = 722 s, + 2 x (600 x 1.09 + ~15 s eval) = 1340 s:
    # ~2060 s, plus ~4-5 min of rendering and start-up: ~40 min, ~47 with 20 % for data loading
    # and the gap between CPU time under load and wall time on an idle core. tsm, mscv and
    # probe rows at k = 5 add ~180 s each (6 rows, ~9 min on 2 processes).
    "cpu5": Size(
        64,
        112,
        {"classic": 100, "train": 200},
        {"classic": 25, "train": 25},
        600,
        20,
        600,
        (1000, 400),
        16,
        "cpu5",
    ),  # fmt: skip
    "smoke": Size(
        32,
        112,
        {"classic": 1, "train": 2},
        {"classic": 1, "train": 1},
        24,
        1,
        2,
        (2, 1),
        2,
        "smoke",
    ),  # fmt: skip
}


# ---------------------------------------------------------------- data


class Subset:
    """Items ``indices`` of ``source`` (same labels)."""

    def __init__(self, source: Any, indices: list[int]):
        self.source, self.indices = source, [int(i) for i in indices]
        self.labels = list(source.labels)

    def __len__(self) -> int:
        return len(self.indices)

    def label_of(self, index: int) -> int:
        return self.source.label_of(self.indices[index])

    def load(self, index: int, rng: np.random.Generator | None = None):
        return self.source.load(self.indices[index], rng)


class Unlabelled:
    """Pretraining clips: synthetic clips with their label dropped, then camera clips.

    ``load`` -> (uint8 [T, S, S, 3], 0): the label is a constant the flow and progressive
    stages never read.
    """

    def __init__(self, synth: Any, camera: np.ndarray):
        from hcml.labels import LABELS as NAMES

        self.synth, self.camera, self.labels = synth, camera, list(NAMES)

    def __len__(self) -> int:
        return len(self.synth) + len(self.camera)

    def label_of(self, index: int) -> int:
        return 0

    def load(self, index: int, rng: np.random.Generator | None = None):
        import torch

        if index < len(self.synth):
            return self.synth.load(index)[0], 0
        return torch.from_numpy(np.array(self.camera[index - len(self.synth)])), 0


def _rendered(size: Size, seed: int, style: str, per_class: int, workers: int | None):
    from hcml.data.datasets import RenderedClips

    return RenderedClips(
        seed,
        RENDER_FRAMES,
        size.render,
        12 * per_class,
        store_size=size.input,
        workers=workers,
        progress=False,
        style=style,
    )


def _mixed(size: Size, seed: int, per_class: dict[str, int], workers: int | None = None):
    from hcml.training.run import MixedClips

    return MixedClips([_rendered(size, seed, st, k, workers) for st, k in per_class.items()])


def _camera_bank(size: Size, out: Path) -> Path:
    """``size.camera`` virtual-camera clips over the train split's photos, uint8 .npy."""
    path = out / f"camera-{size.camera}-x{size.input}.npy"
    if path.is_file():
        return path
    from hcml.data.dense_motion import camera_clip
    from hcml.data.textures import load_bank

    photos = [np.clip(t.image, 0, 255).astype(np.uint8) for t in load_bank().split("train")]
    bank = np.empty((size.camera, RENDER_FRAMES, size.input, size.input, 3), np.uint8)
    for i in range(size.camera):
        rng = np.random.default_rng([UNLABELLED_SEED, 99, i])
        photo = photos[int(rng.integers(len(photos)))]
        bank[i] = camera_clip(photo, rng, RENDER_FRAMES, size.input).frames
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, bank)
    os.replace(tmp, path)
    return path


def subset_indices(size: Size, seed: int, labels: str) -> list[int]:
    """Pool indices of a row: k of each class (first k of a per-(seed, class) permutation)."""
    per = sum(size.pool.values())
    k = per if labels == "all" else min(int(labels), per)
    out: list[int] = []
    for c in range(12):
        own, offset = [], 0
        for n in size.pool.values():  # MixedClips: item i of a look is class i % 12
            own += [offset + c + 12 * j for j in range(n)]
            offset += 12 * n
        perm = np.random.default_rng([1000 + seed, c]).permutation(len(own))
        out += [own[int(p)] for p in perm[:k]]
    return sorted(out)


# ---------------------------------------------------------------- one row


class ProbeStage:
    """Linear probe: only the classifier (``model.head``) trains; everything else frozen and in
    eval mode (BatchNorm statistics fixed); L_cls."""

    name = "probe"
    classifies = True

    def setup(self, module):
        for p in module.parameters():
            p.requires_grad_(False)
        params = list(module.model.head.parameters())
        for p in params:
            p.requires_grad_(True)
        return params

    def train_mode(self, module) -> None:
        module.eval()

    def loss(self, model, x, y, generator):
        import torch.nn.functional as F

        logits = model.model(x)
        cls = F.cross_entropy(logits, y)
        return cls, {"cls": float(cls.detach())}


def _recipe(
    method: str,
    size: Size,
    seed: int,
    arch: str = "default",
    flow_net: str = "big",
    contrastive_input: str = "both",
) -> dict:
    """The validated recipe whose model section a method trains (HCML methods: ``arch``'s
    motion blocks and ``flow_net``'s flow net on training/pretrain.yaml's)."""
    from hcml.training.recipe import load_recipe, validate_recipe

    if method in HCML_METHODS:
        r = load_recipe(REPO / "training" / "pretrain.yaml")
        r["model"]["input_size"] = size.input
        r["model"]["options"] = {**r["model"]["options"], **ARCHS[arch]}
        r["model"]["train"] = {**r["model"]["train"], **FLOW_NETS[flow_net]}
        if contrastive_input != "both":  # the design's heads: the recipe as pretrain.yaml has it
            r["model"]["train"]["contrastive_input"] = contrastive_input
        r["seed"] = seed
        return r
    name, opts = {"tsm": ("tsm_tiny", {}), "mscv": ("mscv_tiny", {"max_displacement": 2})}[method]
    if method == "mscv":
        opts["stride"] = 1
    raw = {
        "seed": seed,
        "model": {"name": name, "frames": FRAMES, "input_size": size.input, "options": opts},
        "stages": [{"type": "supervised", "steps": 1}],
    }
    return validate_recipe(raw, f"label_efficiency:{method}")


def _check_names(state: dict) -> list[str]:
    """Two tensors pretraining trains (the flow net's first conv, a motion block's first conv)."""
    names = []
    for prefix in ("flow_net.", "model.motion."):
        names += [k for k, v in state.items() if k.startswith(prefix) and v.ndim >= 2][:1]
    return names


def tensor_sha(t) -> str:
    """SHA-1 (12 hex) of a tensor's float32 bytes."""
    return hashlib.sha1(t.detach().cpu().float().contiguous().numpy().tobytes()).hexdigest()[:12]


def _phase_cfg(size: Size, steps: int, seed: int, lr: float = LR, warmup: int = 20):
    from hcml.training.trainer import PhaseConfig

    return PhaseConfig(
        steps=steps,
        batch_size=size.batch,
        lr=lr,
        weight_decay=WEIGHT_DECAY,
        warmup=min(warmup, steps // 5),
        grad_clip=GRAD_CLIP,
        seed=seed,
        log_every=max(steps // 10, 1),
        ckpt_every=steps + 1,
    )


def _accuracy(net, source: Any, size: Size, device: str) -> dict:
    """Top-1 of ``net`` on every clip of ``source`` (8 frames uniformly sampled, step 2)."""
    import torch

    from hcml.data.datasets import ClipDataset

    cfg = net.default_cfg
    ds = ClipDataset(
        source, FRAMES, (size.input,) * 2, cfg["mean"], cfg["std"], FRAME_STEP, "uniform"
    )
    net.eval()
    correct = 0
    with torch.no_grad():
        for s in range(0, len(ds), 32):
            items = [ds[i] for i in range(s, min(s + 32, len(ds)))]
            x = torch.stack([a for a, _ in items]).to(device)
            y = torch.tensor([b for _, b in items])
            correct += int((net(x).argmax(1).cpu() == y).sum())
    return {"top1": correct / len(ds), "correct": correct, "n": len(ds)}


def train_row(job: dict) -> dict:
    """Train and score one row; writes ``OUT/rows/NAME.json`` and returns its dict."""
    import torch

    from hcml.data.datasets import ClipDataset
    from hcml.data.transforms import ClipAugment
    from hcml.training.run import build_module
    from hcml.training.stages import JointStage, SupervisedStage
    from hcml.training.trainer import train_phase

    size, method, seed, labels = Size(**job["size"]), job["method"], job["seed"], job["labels"]
    size = replace(size, pretrain=tuple(size.pretrain))
    out, device = Path(job["out"]), job["device"]
    arch, flow_net = job.get("arch", "default"), job.get("flow_net", "big")
    recipe = _recipe(method, size, seed, arch, flow_net, job.get("contrastive_input", "both"))
    torch.manual_seed(seed)
    module = build_module(recipe)
    names = _check_names(module.state_dict())
    init: dict[str, Any] = {"from": None}
    if method in NEEDS_PRETRAIN:
        from hcml.training.init_from import load_pretrained

        run = out / f"pretrain-s{seed}"
        rep = load_pretrained(module, run)
        init = {"from": str(run), "loaded": len(rep["loaded"]), "kept": rep["kept"]}
    own = module.state_dict()
    init["sha"] = {k: tensor_sha(own[k]) for k in names}
    pool = _mixed(size, POOL_SEED, size.pool)
    idx = subset_indices(size, seed, labels)
    by_style: dict[str, int] = {}
    for i in idx:
        st = list(size.pool)[int(np.searchsorted(pool.offsets, i, side="right")) - 1]
        by_style[st] = by_style.get(st, 0) + 1
    cfg = module.model.default_cfg
    aug = ClipAugment(size=(size.input,) * 2, labels=pool.labels, **AUGMENT)
    ds = ClipDataset(
        Subset(pool, idx),
        FRAMES,
        (size.input,) * 2,
        cfg["mean"],
        cfg["std"],
        FRAME_STEP,
        "random",
        aug,
        base_seed=seed,
    )
    if method in ("pretrained", "scratch"):
        stage = JointStage(0.1, 0.0)  # training/finetune.yaml's: L_cls + 0.1 L_rec
    elif method == "probe":
        stage = ProbeStage()
    else:
        stage = SupervisedStage()
    pcfg = _phase_cfg(size, job["steps"], seed)
    with tempfile.TemporaryDirectory(prefix="label-eff-") as work:
        summary = train_phase(
            module, stage, ds, len(ds), pcfg, work, device=device, progress=False, tag=job["name"]
        )
    net = module.model
    final = module.state_dict()
    res = {
        "name": job["name"],
        "method": method,
        "labels": labels,
        "seed": seed,
        "model": cfg["name"],
        "arch": arch if method in HCML_METHODS else None,
        "flow_net": flow_net if method in HCML_METHODS else None,
        "size": size.name,
        "n_train": len(idx),
        "n_train_by_style": by_style,
        "steps": summary["step"],
        "batch": size.batch,
        "lr": LR,
        "warmup": pcfg.warmup,
        "train_s": round(summary["seconds"], 1),
        "final_loss": float(np.mean(summary["losses"][-10:])),
        "device": device,
        "init": init,
        "final_sha": {k: tensor_sha(final[k]) for k in names},
        "heldout": _accuracy(
            net, _rendered(size, HELDOUT_SEED, "train", size.eval, 1), size, device
        ),
        "style_shift": _accuracy(
            net, _rendered(size, SHIFT_SEED, "style_shift", size.eval, 1), size, device
        ),
    }
    if job.get("keep_models"):
        res["model_path"] = str(_keep_model(out, job["name"], module, recipe, res, pool.labels))
    _write_json(out / "rows" / f"{job['name']}.json", res)
    return res


def _keep_model(out: Path, name: str, module, recipe: dict, res: dict, labels: list) -> Path:
    """``OUT/models/NAME.pt``: the row's fine-tuned network as ``hcml train`` writes model.pt
    (hcml-checkpoint with recipe, labels, frames / frame_step and metrics), so ``hcml export
    OUT/models/NAME.pt --name NAME`` writes its graphs and a card holding the row's accuracy."""
    from hcml.model.checkpoint import save_checkpoint

    stage = {"pretrained": "joint", "scratch": "joint", "probe": "probe"}.get(res["method"])
    recipe = json.loads(json.dumps(recipe, default=str))
    recipe["description"] = (
        f"training/label_efficiency.py row {name}: {TITLES[res['method']]}, "
        f"{res['n_train']} labelled clips ({res['labels']} a class, seed {res['seed']})"
    )
    recipe["stages"] = [
        {"type": stage or "supervised", "steps": res["steps"], "batch_size": res["batch"],
         "lr": LR, "warmup": res["warmup"], **({"lambda_rec": 0.1, "gamma": 0.0}
                                               if stage == "joint" else {})}
    ]  # fmt: skip
    recipe["label_efficiency"] = {
        k: res[k] for k in ("name", "method", "labels", "seed", "arch", "flow_net", "size")
    } | {"init_from": res["init"]["from"], "command": " ".join(sys.argv)}
    metrics = {f"{key}_top1": res[key]["top1"] for key in ("heldout", "style_shift")} | {
        "heldout": {**res["heldout"], "seed": HELDOUT_SEED, "style": "train"},
        "style_shift": {**res["style_shift"], "seed": SHIFT_SEED, "style": "style_shift"},
    }
    path = out / "models" / f"{name}.pt"
    save_checkpoint(
        path,
        module.deployable(),
        wrapper_state={k: v.detach().cpu() for k, v in module.state_dict().items()},
        recipe=recipe,
        labels=list(labels),
        data={"frames": FRAMES, "frame_step": FRAME_STEP},
        metrics=metrics,
    )
    return path


def pretrain(job: dict) -> dict:
    """Flow + progressive stages of ``training/pretrain.yaml`` on the unlabelled clips (no label
    read); ``OUT/pretrain-sS/model.pt`` holds the training wrapper's weights (as ``hcml
    pretrain`` writes them). Resumable phase by phase."""
    import torch

    from hcml.data.datasets import ClipDataset
    from hcml.model.checkpoint import save_checkpoint
    from hcml.training.run import build_module, expand_phases
    from hcml.training.stages import make_stage
    from hcml.training.trainer import train_phase

    size, seed, device = Size(**job["size"]), job["seed"], job["device"]
    run = Path(job["out"]) / f"pretrain-s{seed}"
    if (run / "model.pt").is_file():
        return {"name": job["name"], "cached": True}
    t0 = time.perf_counter()
    arch, flow_net = job.get("arch", "default"), job.get("flow_net", "big")
    recipe = _recipe("pretrained", size, seed, arch, flow_net, job.get("contrastive_input", "both"))
    flow_steps, prog_steps = job["pretrain"]
    for st in recipe["stages"]:
        st["steps"] = flow_steps if st["type"] == "flow" else prog_steps
    torch.manual_seed(seed)
    module = build_module(recipe)
    cfg = module.model.default_cfg
    camera = np.load(job["camera"], mmap_mode="r")
    source = Unlabelled(_mixed(size, UNLABELLED_SEED, size.unlabelled), camera)
    ds = ClipDataset(
        source, FRAMES, (size.input,) * 2, cfg["mean"], cfg["std"], FRAME_STEP, "random", None,
        base_seed=seed,
    )  # fmt: skip
    for i, ph in enumerate(expand_phases(recipe, module)):
        pdir, spec = run / ph["dir"], ph["spec"]
        if (pdir / "final.pt").is_file():
            state = torch.load(pdir / "final.pt", map_location="cpu", weights_only=True)
            module.load_state_dict(state["wrapper_state"])
            continue
        pcfg = _phase_cfg(size, spec["steps"], seed + 101 * i, spec["lr"], spec["warmup"])
        train_phase(
            module,
            make_stage(spec, ph["level"]),
            ds,
            len(ds),
            pcfg,
            pdir,
            resume=True,
            device=device,
            progress=False,
            tag=f"{job['name']}/{ph['name']}",
        )
        save_checkpoint(
            pdir / "final.pt",
            module.deployable(),
            wrapper_state={k: v.detach().cpu() for k, v in module.state_dict().items()},
            phase=ph["name"],
        )
    save_checkpoint(
        run / "model.pt",
        module.deployable(),
        wrapper_state={k: v.detach().cpu() for k, v in module.state_dict().items()},
        recipe=json.loads(json.dumps(recipe, default=str)),
        data={"frames": FRAMES, "frame_step": FRAME_STEP, "unlabelled": len(source)},
    )
    return {"name": job["name"], "seconds": round(time.perf_counter() - t0, 1)}


def _write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _call(fn_name: str, job: dict, deadline: float | None) -> dict:
    if deadline is not None and time.time() > deadline:
        return {"name": job["name"], "skipped": "deadline passed before it started"}
    try:
        return globals()[fn_name](job)
    except Exception as e:  # one row failing must not lose the others
        import traceback

        return {
            "name": job["name"],
            "error": f"{type(e).__name__}: {e}",
            "tb": traceback.format_exc(),
        }


# ---------------------------------------------------------------- the grid


def row_name(method: str, labels: str, seed: int) -> str:
    return f"{method}-k{labels}-s{seed}"


def run(a: argparse.Namespace) -> int:
    if a.smoke and a.size not in (None, "smoke"):
        print(f"label_efficiency: --smoke and --size {a.size}: choose one", file=sys.stderr)
        return 2
    size = SIZES["smoke" if a.smoke else a.size or "full"]
    if a.steps is not None:
        size = replace(size, steps=a.steps)
    if a.pretrain_steps is not None:
        parts = a.pretrain_steps
        size = replace(
            size, pretrain=(parts[0], parts[1] if len(parts) > 1 else max(parts[0] // 8, 1))
        )
    if a.batch is not None:
        size = replace(size, batch=a.batch)
    if a.eval_clips is not None:
        size = replace(size, eval=a.eval_clips)
    if size != SIZES[size.name]:
        size = replace(size, name=f"{size.name}, changed")
    seeds = a.seeds
    labels = a.labels.split(",")
    methods = a.methods.split(",")
    for x, allowed, what in ((labels, LABELS, "--labels"), (methods, METHODS, "--methods")):
        bad = [v for v in x if v not in allowed]
        if bad:
            print(
                f"label_efficiency: {what}: unknown {bad} (one of {', '.join(allowed)})",
                file=sys.stderr,
            )
            return 2
    rows = [(m, k, s) for s in seeds for k in labels for m in methods]
    if a.only:
        known = {row_name(*r): r for r in rows}
        bad = [n for n in a.only if n not in known]
        if bad:
            print(
                f"label_efficiency: --only: unknown rows {bad} (e.g. {next(iter(known))})",
                file=sys.stderr,
            )
            return 2
        rows = [known[n] for n in a.only]
    out = Path(a.out)
    (out / "rows").mkdir(parents=True, exist_ok=True)
    meta_path = out / "run.json"
    meta = {
        "size": asdict(size),
        "seeds": seeds,
        "labels": labels,
        "methods": methods,
        "net": {
            "arch": a.arch,
            "flow_net": a.flow_net,
            "options": ARCHS[a.arch],
            "train": FLOW_NETS[a.flow_net],
            "contrastive_input": a.contrastive_input,
        },
        "device": a.device,
        "commands": [" ".join(sys.argv)],
        "data": {
            "pool_seed": POOL_SEED,
            "unlabelled_seed": UNLABELLED_SEED,
            "heldout": {"seed": HELDOUT_SEED, "style": "train", "clips": 12 * size.eval},
            "style_shift": {"seed": SHIFT_SEED, "style": "style-shift", "clips": 12 * size.eval},
            "pool_clips": {k: 12 * v for k, v in size.pool.items()},
        },
    }
    if meta_path.is_file():
        old = json.loads(meta_path.read_text())
        if old["size"] != json.loads(json.dumps(asdict(size))):
            print(
                f"label_efficiency: {out} holds a run of another size ({old['size']}): "
                "use another --out",
                file=sys.stderr,
            )
            return 2
        old_net = {"arch": "default", "flow_net": "big", **old.get("net", {})}
        old_ci = old_net.get("contrastive_input", "both")
        if (old_net["arch"], old_net["flow_net"], old_ci) != (
            a.arch,
            a.flow_net,
            a.contrastive_input,
        ):
            print(
                f"label_efficiency: {out} holds a run of --arch {old_net['arch']} --flow-net "
                f"{old_net['flow_net']} --contrastive-input {old_ci}: use another --out",
                file=sys.stderr,
            )
            return 2
        # Rows of one folder may come from several commands (e.g. a grid run in phases): the
        # folder's record is the union of what they asked for, and every command is kept.
        meta["seeds"] = sorted(set(old["seeds"]) | set(seeds))
        meta["labels"] = [k for k in LABELS if k in set(old["labels"]) | set(labels)]
        meta["methods"] = [m for m in METHODS if m in set(old["methods"]) | set(methods)]
        cmds = old.get("commands") or [old["command"]]  # "command": folders from before
        meta["commands"] = cmds + [c for c in meta["commands"] if c not in cmds]
    _write_json(meta_path, meta)
    todo = [r for r in rows if not (out / "rows" / f"{row_name(*r)}.json").is_file()]
    print(f"{len(rows) - len(todo)} rows done earlier, {len(todo)} to run", flush=True)
    t0 = time.perf_counter()
    deadline = time.time() + a.deadline if a.deadline else None
    # Render every set once, before the training processes: one thread a set, each with its own
    # pool of --workers processes (the pools' start-up, not the rendering, dominates small sets).
    need_pre = sorted({s for m, _, s in todo if m in NEEDS_PRETRAIN})
    sets = [(POOL_SEED, size.pool), (HELDOUT_SEED, {"train": size.eval})]
    sets += [(SHIFT_SEED, {"style_shift": size.eval})]
    sets += [(UNLABELLED_SEED, size.unlabelled)] if need_pre else []
    from hcml.data.textures import load_bank

    load_bank()  # once, here: it writes its disk cache under this process's pid
    with ThreadPoolExecutor(8) as tp:
        futs = [
            tp.submit(_rendered, size, sd, st, k, a.workers)
            for sd, m in sets
            for st, k in m.items()
        ]
        cam = tp.submit(_camera_bank, size, out) if need_pre else None
        for f in futs:
            f.result()
        camera = str(cam.result()) if cam is not None else None
    print(f"data ready: {time.perf_counter() - t0:.0f} s", flush=True)
    base = {"size": asdict(size), "out": str(out), "device": a.device, "steps": size.steps,
            "arch": a.arch, "flow_net": a.flow_net, "keep_models": a.keep_models,
            "contrastive_input": a.contrastive_input}  # fmt: skip
    queue: list[tuple[str, dict]] = [
        ("pretrain", {**base, "name": f"pretrain-s{s}", "seed": s, "camera": camera,
                      "pretrain": list(size.pretrain)})
        for s in need_pre
    ]  # fmt: skip
    waiting: dict[int, list] = {s: [] for s in need_pre}
    order = {m: i for i, m in enumerate(("scratch", "mscv", "tsm"))}
    for m, k, s in sorted(todo, key=lambda r: order.get(r[0], 0)):
        job = {**base, "name": row_name(m, k, s), "method": m, "labels": k, "seed": s}
        (waiting[s] if m in NEEDS_PRETRAIN else queue).append(("train_row", job))
    failed = 0
    ctx = mp.get_context("spawn")  # CUDA needs spawn; the parent never touches the device
    with ProcessPoolExecutor(a.parallel, mp_context=ctx, initializer=_worker_init,
                             initargs=(a.threads,)) as ex:  # fmt: skip
        running: dict = {}
        while queue or running:
            while queue and len(running) < a.parallel:
                fn, job = queue.pop(0)
                running[ex.submit(_call, fn, job, deadline)] = job
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in done:
                job = running.pop(f)
                r = f.result()
                el = time.perf_counter() - t0
                if "error" in r or "skipped" in r:
                    failed += 1
                    if job["name"].startswith("pretrain-"):
                        waiting.pop(job["seed"])  # its rows cannot run
                    print(
                        f"[{el:5.0f} s] {r['name']}: {r.get('error') or r['skipped']}", flush=True
                    )
                    if "tb" in r and a.verbose:
                        print(r["tb"], file=sys.stderr)
                    continue
                if job["name"].startswith("pretrain-"):
                    print(f"[{el:5.0f} s] {r['name']} done", flush=True)
                    queue[:0] = waiting.pop(job["seed"])  # its rows go first: the critical path
                    continue
                print(
                    f"[{el:5.0f} s] {r['name']}: held-out {r['heldout']['top1']:.3f} "
                    f"style-shift {r['style_shift']['top1']:.3f} ({r['n_train']} clips, "
                    f"{r['train_s']:.0f} s)",
                    flush=True,
                )
    left = [row_name(*r) for r in rows if not (out / "rows" / f"{row_name(*r)}.json").is_file()]
    print(
        f"grid: {len(rows) - len(left)}/{len(rows)} rows in {out}, {time.perf_counter() - t0:.0f} s"
    )
    if left:
        print(f"not done ({len(left)}): {' '.join(left)}")
    return 1 if failed or left else 0


# ---------------------------------------------------------------- the table


def _cell(vals: list[float]) -> str:
    if not vals:
        return "not run"
    m = 100 * float(np.mean(vals))
    if len(vals) == 1:
        return f"{m:.1f} (1 seed)"
    return f"{m:.1f} ± {100 * (max(vals) - min(vals)) / 2:.1f}"


def render_table(out: Path) -> str:
    """The markdown block of a run folder: both eval sets, every cell, the 5-label gap."""
    meta = json.loads((out / "run.json").read_text())
    rows = [json.loads(p.read_text()) for p in sorted((out / "rows").glob("*.json"))]
    size, data = meta["size"], meta["data"]
    net = meta.get("net") or {
        "arch": "default",
        "flow_net": "big",
        "options": ARCHS["default"],
        "train": FLOW_NETS["big"],
    }  # runs from before --arch
    opts, flow = net["options"], net["train"]
    ci = net.get("contrastive_input", "both")
    cmds = meta.get("commands") or [meta["command"]]  # "command": folders from before
    runs = " then ".join(f"`{c}`" for c in cmds)
    got: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        got.setdefault((r["method"], r["labels"]), []).append(r)
    n_of = {r["labels"]: r["n_train"] for r in rows}
    labels = [k for k in LABELS if k in meta["labels"]]
    methods = [m for m in METHODS if m in meta["methods"]]
    pool = sum(data["pool_clips"].values())
    steps = sorted({r["steps"] for r in rows})
    full = {**json.loads(json.dumps(asdict(SIZES["full"]))), "name": "full"}
    if (
        size == full
        and meta["device"].startswith("cuda")
        and meta["seeds"] == list(SEEDS)
        and (net["arch"], net["flow_net"]) == ("default", "big")
    ):
        kind = "**Full grid.**"
    else:
        kind = (
            "**Small run, not the full grid** (fewer steps, clips or seeds than the `full` size "
            "on a GPU): a check that the pipeline runs, with numbers to read as such."
        )
    lines = [
        kind,
        "",
        f"HCML network (`--arch {net['arch']} --flow-net {net['flow_net']}"
        f"{' --contrastive-input high' if ci == 'high' else ''}`, pretraining and "
        f"every HCML row): `hcml_tiny`, motion blocks at levels {opts['levels']}, beta "
        f"{opts['beta']}; flow net {flow['flow_growth']} channels a conv, cost volume radius "
        f"{flow['flow_corr']}, census {flow['flow_census']}"
        + ("; contrastive heads read P^l alone." if ci == "high" else "."),
        "",
        f"Run: {runs} (size `{size['name']}`, device `{meta['device']}`, seeds "
        f"{', '.join(map(str, meta['seeds']))}). Every row: {size['steps']} fine-tuning steps "
        f"of {size['batch']} clips (steps done: {', '.join(map(str, steps)) or '-'}), AdamW "
        f"{LR}, warm-up then cosine; input {size['input']} px, 8 frames step 2. Labelled pool "
        f"(seed {data['pool_seed']}): {pool} clips ("
        + ", ".join(f"{v} {k}" for k, v in data["pool_clips"].items())
        + f"); pretraining: {size['pretrain'][0]} flow + {len(opts['levels'])} x "
        f"{size['pretrain'][1]} progressive "
        f"steps on {12 * sum(size['unlabelled'].values()) + size['camera']} unlabelled clips "
        f"(synthetic seed {data['unlabelled_seed']}, labels unread, and {size['camera']} "
        "camera clips over train-split photos), once a seed.",
        "",
        "Cells: top-1 %, mean ± half the range over the seeds. Held-out: "
        f"{data['heldout']['clips']} clips of the train look (seed {data['heldout']['seed']}); "
        "style-shift: "
        f"{data['style_shift']['clips']} clips (seed {data['style_shift']['seed']}).",
        "",
    ]
    head = " | ".join(
        f"{'all' if k == 'all' else k + ' a class'} ({n_of.get(k, '?')} clips)" for k in labels
    )
    for key, title in (("heldout", "held-out (train look)"), ("style_shift", "style-shift")):
        lines += [f"| {title} | {head} |", "|---|" + "---:|" * len(labels)]
        for m in methods:
            cells = [_cell([r[key]["top1"] for r in got.get((m, k), [])]) for k in labels]
            lines.append(f"| {TITLES[m]} | " + " | ".join(cells) + " |")
        lines.append("")
    pre = {r["seed"]: r["style_shift"]["top1"] for r in got.get(("pretrained", "5"), [])}
    scr = {r["seed"]: r["style_shift"]["top1"] for r in got.get(("scratch", "5"), [])}
    both = sorted(set(pre) & set(scr))
    if both:
        d = [100 * (pre[s] - scr[s]) for s in both]
        verdict = "met" if np.mean(d) >= 15 else "**not met**"
        lines.append(
            f"Pretrained - scratch, 5 labelled clips a class, style-shift: "
            f"{np.mean(d):+.1f} points (per seed: {', '.join(f'{x:+.1f}' for x in d)}); "
            f"issue 16's target is >= +15: {verdict}."
        )
    else:
        lines.append("Pretrained - scratch at 5 labels on style-shift: not run.")
    return "\n".join(lines)


def write_between_markers(path: Path, block: str) -> None:
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise ValueError(f"{path} has no {BEGIN} ... {END} markers")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{block}\n{END}{tail}")


def table(a: argparse.Namespace) -> int:
    out = Path(a.out)
    if not (out / "run.json").is_file():
        print(f"label_efficiency: {out} holds no run (no run.json)", file=sys.stderr)
        return 2
    block = render_table(out)
    if a.print:
        print(block)
        return 0
    try:
        write_between_markers(Path(a.results), block)
    except (OSError, ValueError) as e:
        print(f"label_efficiency: {e}", file=sys.stderr)
        return 2
    print(f"table written to {a.results}")
    return 0


def _time_steps(module, stage, x, y, steps: int) -> dict:
    """Seconds (wall, and CPU of this process) a training step of ``stage`` on batch ``x``:
    forward, loss, backward, gradient clip, AdamW; one untimed warm-up step first."""
    import torch

    params = stage.setup(module)
    opt = torch.optim.AdamW(params, lr=LR, weight_decay=WEIGHT_DECAY)
    stage.train_mode(module)
    gen = torch.Generator().manual_seed(0)
    wall, cpu = [], []
    for i in range(steps + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        loss, _ = stage.loss(module, x, y, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
        opt.step()
        if i:
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    return {"wall_s": float(np.median(wall)), "cpu_s": float(np.median(cpu)), "steps": steps}


def cost(a: argparse.Namespace) -> int:
    """Seconds a training step of every stage the grid runs, for each --arch and --flow-net
    (random clips at the full size's input; cost does not depend on the pixels)."""
    import torch

    from hcml.training.run import build_module
    from hcml.training.stages import FlowStage, JointStage, ProgressiveStage, SupervisedStage

    torch.set_num_threads(a.threads)
    size = SIZES["full"]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.batch, 3, FRAMES, size.input, size.input, generator=g)
    y = torch.randint(0, 12, (a.batch,), generator=g)
    load = os.getloadavg()[0]
    print(f"batch {a.batch}, {a.threads} torch thread(s), load average {load:.2f} at start")
    print("| arch | flow net | stage | wall s/step | CPU s/step |\n|---|---|---|---:|---:|")
    out = []
    todo = [(ar, fl) for ar in a.arch.split(",") for fl in a.flow_net.split(",")]
    for ar, fl in todo:
        if ar not in ARCHS or fl not in FLOW_NETS:
            print(f"label_efficiency: unknown --arch {ar} or --flow-net {fl}", file=sys.stderr)
            return 2
    for ar, fl in todo:
        torch.manual_seed(0)
        module = build_module(_recipe("pretrained", size, 0, ar, fl))
        stages: list[tuple[str, Any]] = []
        for want in a.stages.split(","):
            if want == "flow":
                stages.append(("flow", FlowStage()))
            elif want == "progressive":
                stages += [
                    (f"progressive-l{lv}", ProgressiveStage(lv)) for lv in ARCHS[ar]["levels"]
                ]
            elif want == "joint":
                stages.append(("joint", JointStage(0.1, 0.0)))
            elif want == "probe":
                stages.append(("probe", ProbeStage()))
            else:
                print(f"label_efficiency: --stages: unknown {want!r}", file=sys.stderr)
                return 2
        for name, st in stages:
            r = {
                "arch": ar,
                "flow_net": fl,
                "stage": name,
                **_time_steps(module, st, x, y, a.steps),
            }
            out.append(r)
            print(f"| {ar} | {fl} | {name} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} |", flush=True)
    for m in a.baselines.split(",") if a.baselines else []:
        torch.manual_seed(0)
        module = build_module(_recipe(m, size, 0))
        r = {"arch": m, "flow_net": "-", "stage": "supervised"}
        r.update(_time_steps(module, SupervisedStage(), x, y, a.steps))
        out.append(r)
        print(f"| {m} | - | supervised | {r['wall_s']:.2f} | {r['cpu_s']:.2f} |", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    if a.json:
        _write_json(Path(a.json), {"batch": a.batch, "threads": a.threads, "rows": out})
    return 0


def _ints(text: str) -> list[int]:
    """``"1,2"`` -> [1, 2] (argparse type: a bad value is a one-line usage error)."""
    try:
        vals = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of integers"
        ) from None
    if any(v < 0 for v in vals):
        raise argparse.ArgumentTypeError(f"{text!r}: negative value")
    return vals


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train and score the grid (resumable)")
    r.add_argument("--out", required=True, help="run folder: rows/NAME.json, pretrain-sS/")
    r.add_argument("--smoke", action="store_true", help="the tiny CPU size (tests): --size smoke")
    r.add_argument("--size", choices=sorted(SIZES), help="grid size (default: full)")
    r.add_argument("--steps", type=int, help="fine-tuning steps a row (size default)")
    r.add_argument("--pretrain-steps", type=_ints, help="FLOW[,PROGRESSIVE a level] (size default)")
    r.add_argument("--batch", type=int, help="clips a step (size default)")
    r.add_argument("--eval-clips", type=int, help="eval clips a class and set (size default)")
    r.add_argument("--seeds", type=_ints, default=list(SEEDS), help="e.g. 0,1")
    r.add_argument("--labels", default=",".join(LABELS), help="from " + ",".join(LABELS))
    r.add_argument("--methods", default=",".join(METHODS), help="from " + ",".join(METHODS))
    r.add_argument("--only", nargs="+", metavar="ROW", help="row names, e.g. pretrained-k5-s0")
    r.add_argument(
        "--arch",
        choices=sorted(ARCHS),
        default="default",
        help="HCML network of the pretraining and the HCML rows (default: default)",
    )
    r.add_argument(
        "--flow-net",
        choices=sorted(FLOW_NETS),
        default="big",
        help="flow net of the HCML network (default: big, pretrain.yaml's)",
    )
    r.add_argument(
        "--keep-models",
        action="store_true",
        help="save every row's trained network as OUT/models/NAME.pt (hcml export)",
    )
    r.add_argument(
        "--contrastive-input",
        choices=("both", "high"),
        default="both",
        help="what the contrastive heads read: [P^l, P^(l-1)] (both, the design's) or P^l alone",
    )
    r.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    r.add_argument("--parallel", type=int, default=2, help="training processes")
    r.add_argument("--workers", type=int, default=None, help="render processes (default: all)")
    r.add_argument("--threads", type=int, default=1, help="torch threads a training process")
    r.add_argument("--deadline", type=float, help="start no row after this many seconds")
    r.add_argument("--verbose", action="store_true", help="tracebacks of failed rows")
    c = sub.add_parser("cost", help="seconds a training step of each stage (short probe)")
    c.add_argument("--arch", default="default,fast", help="comma-separated, from ARCHS")
    c.add_argument("--flow-net", default="big,small", help="comma-separated, from FLOW_NETS")
    c.add_argument("--stages", default="flow,progressive,joint,probe", help="comma-separated")
    c.add_argument("--baselines", default="", help="also time these, e.g. tsm,mscv")
    c.add_argument("--batch", type=int, default=16)
    c.add_argument("--steps", type=int, default=2, help="timed steps (after one warm-up)")
    c.add_argument("--threads", type=int, default=1)
    c.add_argument("--json", help="also write the rows here")
    t = sub.add_parser("table", help="write the markdown table between the markers")
    t.add_argument("--out", required=True)
    t.add_argument("--results", default=str(REPO / "docs" / "RESULTS.md"))
    t.add_argument("--print", action="store_true", help="print the block instead")
    a = ap.parse_args(argv)
    if a.cmd == "run":
        if a.parallel < 1 or a.threads < 1:
            ap.error("--parallel and --threads must be >= 1")
        return run(a)
    if a.cmd == "cost":
        if a.batch < 1 or a.steps < 1 or a.threads < 1:
            ap.error("--batch, --steps and --threads must be >= 1")
        return cost(a)
    return table(a)


if __name__ == "__main__":
    sys.exit(main())
