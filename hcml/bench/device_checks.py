"""The GPU check: what a bare NVIDIA machine (torch with CUDA, onnxruntime; no GStreamer, no
TensorRT, no PyAV) can tell us about the device path, as one JSON. ``scripts/device_check.py``
runs it; ``hcml bench device`` runs or renders it (``hcml.bench.device``).

Checks, each fail-soft (an exception is that check's ``error``, the others still run):

* ``environment``: GPU, driver, torch / CUDA / cuDNN versions, TF32 flags, ORT providers;
* ``exactness``: the torch backend on ``device`` against the CPU one on the same random input:
  clip graph on a batch of windows, step graph over 2T frames after a reset (compared where
  ready), and the step graph against the clip graph on the device; max abs diff <= 1e-3;
* ``engine_device_input``: ``StreamEngine`` fed uint8 RGBA frames that already live on the device
  (standing in for NVMM surfaces) through ``Preprocessor(device=...)``, several streams, sync
  and async; host copies counted by the CUDA profiler (CUPTI memcpy records with their bytes;
  copies over 4 KiB are data, smaller ones logits/scalars) and by a torch-function hook naming
  the calls (``Tensor.cpu``... on the pushing thread only); sync predictions compared with the
  same engine on the CPU;
* ``throughput``: step and clip graphs at batch 1/8/32/128, eager and CUDA graphs, inputs on the
  device; frames / s and streams at 30 fps (= fps / (30 / frame-step)); ORT's CUDA provider
  too when this onnxruntime has it (else the reason);
* ``cuda_graphs``: the torch backend with ``cuda_graphs=True`` (torch.compile reduce-overhead)
  against eager on the device, and ms per step eager vs CUDA graphs at batch 1;
* ``imports``: which hcml modules were loaded, and that none of av, gi, onnxslim, tensorrt was
  (tqdm and onnx are optional: torch.hub imports tqdm when present, onnx verifies the card).

``device="cpu"`` is the dry run: every check on the CPU with tiny sizes (eager CPU stands in for
CUDA graphs), to prove the script end to end on a machine without a GPU; its numbers mean
nothing. A time budget skips what is left (recorded as skipped) rather than overrun.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

TOL = 1e-3
SOURCE_FPS = 30
SMALL_COPY_BYTES = 4096  # a copy this size or smaller is logits / a scalar, not frame or state
NOT_EXPECTED = ("av", "gi", "onnxslim", "tensorrt")
OPTIONAL = ("tqdm", "onnx")  # torch.hub imports tqdm when it is installed; onnx verifies the card


@dataclass
class Sizes:
    """How big each check is: full (a GPU), quick (a GPU, less time), dry run (CPU, tiny)."""

    clip_batch: int = 8
    step_batch: int = 4
    streams: int = 8
    frames_per_stream: int = 0  # 0: 2 windows of sampled frames (2 x T x frame-step)
    frame_hw: tuple[int, int] = (720, 1280)
    batches: tuple[int, ...] = (1, 8, 32, 128)
    seconds: float = 1.0  # per throughput measurement
    budget_s: float = 240.0

    @classmethod
    def for_run(cls, dry_run: bool, quick: bool) -> Sizes:
        if dry_run:
            return cls(1, 1, 2, 16, (48, 64), (1, 2), 0.02, 120.0)
        if quick:
            return cls(4, 4, 4, 0, (720, 1280), (1, 8, 32, 128), 0.3, 150.0)
        return cls()


class Context:
    """What the checks share: sizes, the card, the backends (opened once), the clock."""

    def __init__(self, device: str, sizes: Sizes, card_path: Path, log: Callable[[str], None]):
        import torch

        self.torch = torch
        self.device = device
        self.dry_run = not device.startswith("cuda")
        if self.dry_run:  # one thread: a loaded shared CPU makes OpenMP's threads spin 10x slower
            torch.set_num_threads(1)
        self.sizes = sizes
        self.log = log
        self.start = time.perf_counter()
        self.card_path = card_path
        self.card, self.card_note = load_card(card_path)
        self._backends: dict[str, Any] = {}

    def remaining(self) -> float:
        return self.sizes.budget_s - (time.perf_counter() - self.start)

    def backend(self, which: str) -> Any:
        """``cpu`` (reference), ``eager`` (on the device) or ``graphs`` (CUDA graphs; eager CPU
        stands in on a dry run)."""
        if which not in self._backends:
            from hcml.backends.torch_backend import TorchBackend

            if which == "cpu" or (self.dry_run and which in ("eager", "graphs")):
                b = TorchBackend.from_card(self.card, device="cpu")
            elif which == "eager":
                b = TorchBackend.from_card(self.card, device=self.device)
            else:
                b = TorchBackend.from_card(self.card, device=self.device, cuda_graphs=True)
            self._backends[which] = b
        return self._backends[which]


def load_card(path: Path) -> tuple[Any, str]:
    """The model card; checked against its ONNX files only where the ``onnx`` module exists."""
    try:
        from hcml.card import ModelCard  # where the card lives after the #17 layout change
    except ImportError:
        from hcml.card import ModelCard
    try:
        import onnx  # noqa: F401 - only to know whether the card can be verified
    except ImportError:
        return ModelCard.load(path, verify=False), "not checked against its ONNX files (no onnx)"
    return ModelCard.load(path), "verified"


def _max_diff(a: Any, b: Any) -> float:
    import numpy as np

    a, b = (np.asarray(x.cpu() if hasattr(x, "cpu") else x, dtype=np.float64) for x in (a, b))
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    return float(np.abs(a - b).max()) if a.size else 0.0


def _stream_logits(backend: Any, frames: Any, device: str) -> tuple[Any, Any]:
    """Step graph over frames [B, 3, N, H, W] after a reset: (logits [B, N, K], ready [B, N])."""
    import numpy as np

    frames = frames.to(device)
    b = frames.shape[0]
    state = backend.init_state(b)
    for t in range(3):  # junk before the reset: the reset must forget it
        _, state = backend.run_step(frames[:, :, -1 - t] * 3.0, state)
    state = backend.reset_state(state)
    out, ready = [], []
    for t in range(frames.shape[2]):
        logits, state = backend.run_step(frames[:, :, t], state)
        out.append(np.asarray(logits))
        ready.append(np.asarray(backend.ready(state)))
    return np.stack(out, 1), np.stack(ready, 1)


def _compare(ref: Any, dut: Any, frames: Any, clip: Any) -> dict[str, Any]:
    """clip, step (after reset, where ready) and step-vs-clip diffs of ``dut`` against ``ref``
    (inputs moved to each backend's device first)."""
    t, device = dut.card.window, dut.device
    clip_ref = ref.run_clip(clip.to(ref.device))
    clip_got = dut.run_clip(clip.to(device))
    step_ref, ready_ref = _stream_logits(ref, frames, ref.device)
    step_got, ready_got = _stream_logits(dut, frames, device)
    if not (ready_ref == ready_got).all():
        raise AssertionError("ready() differs between the two backends")
    last = dut.run_clip(frames[:, :, -t:].contiguous().to(device))
    out = {
        "clip_max_abs_diff": _max_diff(clip_ref, clip_got),
        "step_max_abs_diff": _max_diff(step_ref[ready_ref], step_got[ready_got]),
        "step_vs_clip_max_abs_diff": _max_diff(step_got[:, -1], last),
        "ready_steps_compared": int(ready_ref.sum()),
        "logit_scale": float(abs(clip_ref).max()),
    }
    out["pass"] = all(out[k] <= TOL for k in out if k.endswith("_diff"))
    return out


def check_environment(ctx: Context) -> dict[str, Any]:
    torch = ctx.torch
    out: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda_runtime": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "tf32": {
            "cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
            "cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
        },
    }
    with contextlib.suppress(Exception):
        out["cudnn"] = torch.backends.cudnn.version()
    try:
        from hcml._unwind import import_onnxruntime

        ort = import_onnxruntime()
        out["onnxruntime"] = ort.__version__
        out["onnxruntime_providers"] = ort.get_available_providers()
    except Exception as e:  # noqa: BLE001 - recorded, not fatal
        out["onnxruntime"] = f"not importable: {e}"
    if torch.cuda.is_available():
        i = torch.device(ctx.device).index or 0
        p = torch.cuda.get_device_properties(i)
        out.update(gpu=p.name, gpu_count=torch.cuda.device_count(),
                   capability=f"{p.major}.{p.minor}", memory_gib=round(p.total_memory / 2**30, 1),
                   multiprocessors=p.multi_processor_count)  # fmt: skip
        out["driver"] = _driver_version()
    out["pass"] = True if ctx.dry_run else bool(torch.cuda.is_available())
    if not out["pass"]:
        out["error"] = f"no CUDA device for {ctx.device} (torch.cuda.is_available() is False)"
    if ctx.dry_run:
        out["note"] = "dry run on the CPU: no GPU asked for"
    return out


def _driver_version() -> str | None:
    """From nvidia-smi, else libcuda's cuDriverGetVersion (CUDA API level, e.g. 12.8)."""
    with contextlib.suppress(Exception):
        smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)  # fmt: skip
        if smi.returncode == 0 and smi.stdout.strip():
            return smi.stdout.strip().splitlines()[0]
    with contextlib.suppress(Exception):
        v = ctypes.c_int()
        if ctypes.CDLL("libcuda.so.1").cuDriverGetVersion(ctypes.byref(v)) == 0:
            return f"CUDA driver API {v.value // 1000}.{v.value % 1000 // 10} (no nvidia-smi)"
    return None


def check_exactness(ctx: Context) -> dict[str, Any]:
    torch = ctx.torch
    card, s = ctx.card, ctx.sizes
    h, w = card.input_size
    gen = torch.Generator().manual_seed(0)
    clip = torch.randn(s.clip_batch, 3, card.window, h, w, generator=gen)
    frames = torch.randn(s.step_batch, 3, 2 * card.window, h, w, generator=gen)
    out = _compare(ctx.backend("cpu"), ctx.backend("eager"), frames, clip)
    out.update(tolerance=TOL, clip_batch=s.clip_batch, step_batch=s.step_batch,
               step_frames=2 * card.window)  # fmt: skip
    if not out["pass"] and not ctx.dry_run:  # is it TF32? same comparison in full fp32
        flags = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        try:
            out["without_tf32"] = _compare(ctx.backend("cpu"), ctx.backend("eager"), frames, clip)
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags
    return out


def check_cuda_graphs(ctx: Context) -> dict[str, Any]:
    from hcml.bench.common import time_calls

    torch = ctx.torch
    card, s = ctx.card, ctx.sizes
    h, w = card.input_size
    gen = torch.Generator().manual_seed(1)
    clip = torch.randn(s.clip_batch, 3, card.window, h, w, generator=gen)
    frames = torch.randn(s.step_batch, 3, 2 * card.window, h, w, generator=gen)
    t0 = time.perf_counter()
    graphs = ctx.backend("graphs")
    out = _compare(ctx.backend("eager"), graphs, frames, clip)
    out["first_calls_s"] = round(time.perf_counter() - t0, 2)  # torch.compile, unless throughput
    # already compiled these graphs (it runs first)
    out["describe"] = graphs.describe()
    if ctx.dry_run:
        out["note"] = "dry run: eager CPU stands in for CUDA graphs (no GPU)"
    timing = {}
    for name in ("eager", "graphs"):
        fn = _step_call(ctx.backend(name), 1, ctx)
        for _ in range(0 if ctx.dry_run else 3):  # cudagraph trees: warm-up, record, replay
            fn()
        timing[name] = time_calls(fn, s.seconds)["median_ms"]
    out.update(step_ms_eager_b1=timing["eager"], step_ms_graphs_b1=timing["graphs"],
               speedup_b1=timing["eager"] / timing["graphs"], tolerance=TOL)  # fmt: skip
    return out


# ------------------------------------------------------------------------------ host copies
class _HostCalls:
    """Counts Python-level calls that move a device tensor's data to the host, by name."""

    NAMES = ("cpu", "numpy", "item", "tolist", "to", "copy_", "__array__")

    def __init__(self) -> None:
        from torch.overrides import TorchFunctionMode

        counts: Counter[str] = Counter()
        names = self.NAMES

        def on_device(x: Any) -> bool:
            return getattr(x, "device", None) is not None and x.device.type != "cpu"

        def to_host(args: tuple, kwargs: dict) -> bool:
            for a in (*args[1:], kwargs.get("device")):
                if (isinstance(a, str) and a == "cpu") or getattr(a, "type", None) == "cpu":
                    return True
            return False

        class Mode(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                kwargs = kwargs or {}
                name = getattr(func, "__name__", "")
                if name in names and args:
                    if name == "copy_":
                        hit = len(args) > 1 and on_device(args[1]) and not on_device(args[0])
                    elif name == "to":
                        hit = on_device(args[0]) and to_host(args, kwargs)
                    else:
                        hit = on_device(args[0])
                    if hit:
                        counts[f"Tensor.{name}"] += 1
                return func(*args, **kwargs)

        self.counts = counts
        self.mode = Mode()


def memcpy_stats(trace: dict[str, Any] | list[dict[str, Any]]) -> dict[str, Any]:
    """Device memcpy records of a chrome trace (torch.profiler, CUDA activity): count and bytes
    per direction, data-sized ones (> SMALL_COPY_BYTES) apart; kernels seen (0 = CUPTI saw
    nothing, the counts then prove nothing)."""
    events = trace.get("traceEvents", []) if isinstance(trace, dict) else trace
    out: dict[str, Any] = {"kernels": 0, "bytes_known": True}
    for kind in ("dtoh", "htod", "dtod"):
        out.update({kind: 0, f"{kind}_bytes": 0, f"{kind}_data": 0})
    for ev in events:
        name, cat = str(ev.get("name", "")), str(ev.get("cat", ""))
        if cat == "kernel":
            out["kernels"] += 1
        if not (cat == "gpu_memcpy" or name.startswith("Memcpy")):
            continue
        kind = next((k for k in ("DtoH", "HtoD", "DtoD") if k in name), None)
        if kind is None:
            continue
        kind = kind.lower()
        size = (ev.get("args") or {}).get("bytes")
        out[kind] += 1
        if size is None:
            out["bytes_known"] = False
            out[f"{kind}_data"] += 1  # unknown size: counted as data, the cautious side
        else:
            out[f"{kind}_bytes"] += int(size)
            out[f"{kind}_data"] += int(size) > SMALL_COPY_BYTES
    return out


def profile_copies(
    fn: Callable[[], Any], cuda: bool, profiler: bool = True
) -> tuple[Any, dict[str, Any]]:
    """Run ``fn`` under the profiler (``profiler=False``: not) and the host-call hook: (its
    result, copy statistics)."""
    torch = sys.modules["torch"]
    from torch.profiler import ProfilerActivity, profile

    # CPU too on CUDA: some torch versions record nothing with the CUDA activity alone
    acts = [ProfilerActivity.CPU, ProfilerActivity.CUDA] if cuda else [ProfilerActivity.CPU]
    hook = _HostCalls()
    if not profiler:
        with hook.mode:
            result = fn()
        return result, {**memcpy_stats([]), "profiled": False,
                        "host_transfer_calls": dict(hook.counts)}  # fmt: skip
    with profile(activities=acts) as prof:
        with hook.mode:
            result = fn()
        if cuda:
            torch.cuda.synchronize()
    with tempfile.TemporaryDirectory(prefix="hcml-devcheck-") as d:
        path = Path(d) / "trace.json"
        prof.export_chrome_trace(str(path))
        stats = memcpy_stats(json.loads(path.read_text()))
    stats["host_transfer_calls"] = dict(hook.counts)
    stats["profiled"] = True
    return result, stats


def _moving_frames(ctx: Context, streams: int, n: int) -> tuple[list[list[Any]], list[list[Any]]]:
    """Per stream, n uint8 RGBA frames [H, W, 4] on the device: strided views of one wider random
    image sliding 2 px a frame (horizontal motion; row pitch > 4 W, like an NVMM surface); and
    the same frames on the host (the CPU reference)."""
    torch = ctx.torch
    h, w = ctx.sizes.frame_hw
    dev = "cpu" if ctx.dry_run else ctx.device
    gen = torch.Generator(device=dev).manual_seed(2)
    bases = [torch.randint(0, 256, (h, w + 2 * n, 4), dtype=torch.uint8, device=dev,
                           generator=gen) for _ in range(streams)]  # fmt: skip

    def views(images: list[Any]) -> list[list[Any]]:
        return [[b[:, 2 * i : 2 * i + w] for i in range(n)] for b in images]

    return views(bases), views([b.cpu() for b in bases])


def _run_engine(ctx: Context, backend: Any, frames: list[list[Any]], mode: str, dev: str):
    """Push every stream's frames round-robin (PTS 33.3 ms apart); (predictions, engine stats)."""
    from hcml.stream.engine import StreamEngine
    from hcml.stream.preprocess import Preprocessor

    card = ctx.card
    prep = Preprocessor(card.input_size, card.mean, card.std, device=dev)
    engine = StreamEngine(backend, mode=mode, device=dev)
    preds = []
    try:
        for i in range(len(frames[0])):
            for s, stream in enumerate(frames):
                x = prep(stream[i][..., :3])
                preds += engine.push(f"source-{s}", x, int(i * 1e9 / SOURCE_FPS))
        preds += engine.drain()
        stats = {"incremental": getattr(engine, "incremental", None),
                 "dropped": getattr(engine, "dropped", None)}  # fmt: skip
    finally:
        engine.close()
    return preds, stats


def _match(ref: list[Any], got: list[Any]) -> dict[str, Any]:
    """Same (stream, pts) predictions, top-k probabilities within TOL."""
    a = {(p.stream, p.pts): p for p in ref}
    b = {(p.stream, p.pts): p for p in got}
    diff = 0.0
    for key in set(a) & set(b):
        pa, pb = dict(a[key].topk), dict(b[key].topk)
        diff = max([diff, *(abs(pa[k] - pb[k]) for k in set(pa) & set(pb))])
    same = set(a) == set(b)
    return {"same_windows": same, "max_prob_diff": diff, "match": same and diff <= TOL}


def check_engine_device_input(ctx: Context) -> dict[str, Any]:
    card, s = ctx.card, ctx.sizes
    n = s.frames_per_stream or 2 * card.window * (card.frame_step or 1)
    dev = "cpu" if ctx.dry_run else ctx.device
    frames, host_frames = _moving_frames(ctx, s.streams, n)
    total = s.streams * n
    out: dict[str, Any] = {"streams": s.streams, "frames_per_stream": n,
                           "frame_size": f"{s.frame_hw[1]}x{s.frame_hw[0]} RGBA uint8",
                           "small_copy_bytes": SMALL_COPY_BYTES}  # fmt: skip
    ref, _ = _run_engine(ctx, ctx.backend("cpu"), host_frames, "sync", "cpu")
    ok = True
    for mode in ("sync", "async"):
        if not ctx.dry_run:  # warm-up (CUDA context, cuDNN autotuning) outside the profile
            _run_engine(ctx, ctx.backend("eager"), [st[: card.window] for st in frames], mode, dev)
        t0 = time.perf_counter()
        (preds, stats), copies = profile_copies(
            lambda m=mode: _run_engine(ctx, ctx.backend("eager"), frames, m, dev),
            cuda=not ctx.dry_run,
            profiler=not ctx.dry_run or mode == "sync",  # CPU profiling is slow: once is proof
        )
        r = {**stats, "seconds": round(time.perf_counter() - t0, 3), "predictions": len(preds),
             "reference_predictions": len(ref), **copies}  # fmt: skip
        for kind in ("dtoh", "htod"):
            r[f"{kind}_per_frame"] = copies[kind] / total
            r[f"{kind}_data_per_frame"] = copies[f"{kind}_data"] / total
            r[f"{kind}_bytes_per_frame"] = copies[f"{kind}_bytes"] / total
        r.update(_match(ref, preds))
        r["zero_host_copies"] = copies["dtoh_data"] == 0 and copies["htod_data"] == 0
        if not ctx.dry_run and copies["kernels"] == 0:
            r["zero_host_copies"] = None
            r["note"] = "the profiler saw no kernels (no CUPTI?): copy counts prove nothing"
        # async may drop windows by design (today's engine): only sync must match exactly
        ok = ok and (r["match"] or mode == "async") and bool(r["zero_host_copies"])
        out[mode] = r
        ctx.log(f"  {mode}: {len(preds)} predictions, DtoH {r['dtoh_per_frame']:.2f} / frame "
                f"({r['dtoh_data_per_frame']:.2f} data), HtoD {r['htod_per_frame']:.2f} / frame, "
                f"match CPU: {r['match']}")  # fmt: skip
    out["pass"] = ok
    if ctx.dry_run:
        out["note"] = "dry run: frames on the CPU, no device copies to count"
    return out


# ------------------------------------------------------------------------------ throughput
def _step_call(backend: Any, batch: int, ctx: Context) -> Callable[[], Any]:
    torch = ctx.torch
    h, w = ctx.card.input_size
    dev = getattr(backend, "device", "cpu") if backend.name == "torch" else "cpu"
    frames = torch.randn(4, batch, 3, h, w, device=dev)
    if backend.name != "torch":
        frames = frames.numpy()
    box = {"state": backend.init_state(batch), "i": 0}

    def step() -> None:
        _, box["state"] = backend.run_step(frames[box["i"] % 4], box["state"])
        box["i"] += 1

    return step


def _clip_call(backend: Any, batch: int, ctx: Context) -> Callable[[], Any]:
    torch = ctx.torch
    h, w = ctx.card.input_size
    dev = getattr(backend, "device", "cpu") if backend.name == "torch" else "cpu"
    clip = torch.randn(batch, 3, ctx.card.window, h, w, device=dev)
    if backend.name != "torch":
        clip = clip.numpy()
    return lambda: backend.run_clip(clip)


def _ort_cuda(ctx: Context) -> Any:
    """ORT on the device, or why not (a string)."""
    if ctx.dry_run:
        return "dry run: no GPU"
    try:
        from hcml.backends.onnxruntime_backend import OnnxRuntimeBackend, cuda_provider_available

        if not cuda_provider_available():
            from hcml._unwind import import_onnxruntime

            providers = import_onnxruntime().get_available_providers()
            return f"CUDAExecutionProvider not in this onnxruntime's providers {providers}"
        return OnnxRuntimeBackend(ctx.card, device=ctx.device)
    except Exception as e:  # noqa: BLE001 - the reason is the result
        return f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"


def check_throughput(ctx: Context) -> dict[str, Any]:
    from hcml.bench.common import time_calls

    s, card = ctx.sizes, ctx.card
    need = SOURCE_FPS / (card.frame_step or 1)  # graph calls a second per 30 fps stream
    rows: list[dict[str, Any]] = []
    described: dict[str, str] = {}
    graphs = "torch CUDA graphs"
    if ctx.dry_run:
        graphs = "torch eager CPU (dry-run stand-in for CUDA graphs)"
    # CUDA graphs last: their compiles are the slow part, and the budget is checked per row
    engines = [("torch eager", lambda: ctx.backend("eager")),
               ("onnxruntime CUDA", lambda: _ort_cuda(ctx)),
               (graphs, lambda: ctx.backend("graphs"))]  # fmt: skip
    for label, opener in engines:
        try:
            backend = opener()
        except Exception as e:  # noqa: BLE001
            backend = f"{type(e).__name__}: {e}"
        if isinstance(backend, str):
            rows.append({"engine": label, "skipped": backend})
            ctx.log(f"  {label}: skipped: {backend}")
            continue
        described[label] = backend.describe()  # e.g. whether ORT really runs on CUDA
        # CUDA graphs rows leave a minute for the cuda_graphs check that follows
        reserve = 60 if label == graphs and not ctx.dry_run else 15
        for graph, make in (("step", _step_call), ("clip", _clip_call)):
            failed = None
            for batch in s.batches:
                row: dict[str, Any] = {"engine": label, "graph": graph, "batch": batch}
                if ctx.remaining() < reserve or failed:
                    row["skipped"] = f"batch {failed} failed" if failed else "time budget spent"
                    rows.append(row)
                    continue
                try:
                    fn = make(backend, batch, ctx)
                    t0 = time.perf_counter()
                    fn()
                    row["first_call_s"] = round(time.perf_counter() - t0, 3)
                    for _ in range(0 if ctx.dry_run else 2):  # CUDA graphs: record, replay
                        fn()
                    t = time_calls(fn, s.seconds)
                    fps = batch * 1e3 / t["median_ms"]
                    row.update(ms_per_call=t["median_ms"], p90_ms=t["p90_ms"], runs=t["runs"],
                               fps=fps, streams_at_30fps=fps / need)  # fmt: skip
                    ctx.log(f"  {label:18s} {graph} batch {batch:3d}: {t['median_ms']:8.2f} ms "
                            f"{fps:9.1f} frames/s {fps / need:8.1f} streams")  # fmt: skip
                except Exception as e:  # noqa: BLE001 - one row failing is that row
                    row["error"] = f"{type(e).__name__}: {str(e).strip()[:300]}"
                    failed = batch
                    ctx.log(f"  {label} {graph} batch {batch}: {row['error']}")
                rows.append(row)
    best: dict[str, Any] = {}
    for r in rows:
        if r.get("graph") != "step" or "fps" not in r:
            continue
        if r["engine"] not in best or r["streams_at_30fps"] > best[r["engine"]]["streams"]:
            best[r["engine"]] = {"streams": r["streams_at_30fps"], "batch": r["batch"]}
    top = max(best.values(), key=lambda v: v["streams"], default=None)
    return {"rows": rows, "engines": described, "streams_per_device": best,
            "frame_step": card.frame_step or 1, "source_fps": SOURCE_FPS, "seconds": s.seconds,
            "best_streams_at_30fps": top["streams"] if top else None,
            "pass": any("fps" in r and r["graph"] == "step" for r in rows)}  # fmt: skip


def check_imports(ctx: Context) -> dict[str, Any]:
    loaded = sorted(m for m in NOT_EXPECTED if sys.modules.get(m) is not None)
    return {"hcml_modules": sorted(m for m in sys.modules if m.split(".")[0] == "hcml"),
            "not_expected": list(NOT_EXPECTED), "loaded_not_expected": loaded,
            "loaded_optional": sorted(m for m in OPTIONAL if sys.modules.get(m) is not None),
            "pass": not loaded}  # fmt: skip


CHECKS: list[tuple[str, Callable[[Context], dict[str, Any]]]] = [
    ("environment", check_environment),
    ("exactness", check_exactness),
    ("engine_device_input", check_engine_device_input),
    ("throughput", check_throughput),  # compiles the CUDA graphs that cuda_graphs then checks
    ("cuda_graphs", check_cuda_graphs),
    ("imports", check_imports),
]


def _machine() -> dict[str, Any]:
    try:
        from hcml.bench.common import machine

        return machine()
    except Exception as e:  # noqa: BLE001 - e.g. onnxruntime missing: record what we can
        import torch

        return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                "python": platform.python_version(), "torch": torch.__version__,
                "onnxruntime": f"not importable ({e})"}  # fmt: skip


def run_checks(
    device: str = "cuda",
    quick: bool = False,
    card: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    sizes: Sizes | None = None,
    log: Callable[[str], None] | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Run every check; returns the result dict (also written to ``out`` after each check)."""
    from hcml import DEFAULT_CARD
    from hcml.bench.common import write_json

    log = log or (lambda text: print(text, flush=True))
    dry_run = not device.startswith("cuda")
    sizes = sizes or Sizes.for_run(dry_run, quick)
    card_path = Path(card) if card is not None else DEFAULT_CARD
    result: dict[str, Any] = {
        "suite": "device",
        **({"command": command} if command else {}),
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "machine": _machine(),
        "device": device,
        "dry_run": dry_run,
        "quick": quick,
        "sizes": asdict(sizes),
        "tolerance": TOL,
        "checks": {},
    }
    started = time.perf_counter()
    try:
        ctx = Context(device, sizes, card_path, log)
    except Exception as e:  # noqa: BLE001 - no card or no torch: nothing else can run
        result["error"] = f"{type(e).__name__}: {e}"
        result["passed"], result["failed"] = 0, len(CHECKS)
        if out is not None:
            write_json(Path(out), result)
        return result
    c = ctx.card
    result.update(model=f"{c.name} ({card_path.name}; card {ctx.card_note})", window=c.window,
                  input_size=list(c.input_size), frame_step=c.frame_step or 1)  # fmt: skip
    for name, fn in CHECKS:
        if ctx.remaining() <= 0 and name != "imports":
            result["checks"][name] = {"pass": None, "skipped": "time budget spent"}
            log(f"[{name}] skipped: time budget spent")
            continue
        log(f"[{name}] ...")
        t0 = time.perf_counter()
        try:
            r = fn(ctx)
        except Exception as e:  # noqa: BLE001 - fail-soft: the next check still runs
            text = (str(e).strip().splitlines() or [""])[0][:300]
            r = {"pass": False, "error": f"{type(e).__name__}: {text}",
                 "traceback": traceback.format_exc()[-2000:]}  # fmt: skip
        r["seconds"] = round(time.perf_counter() - t0, 2)
        result["checks"][name] = r
        verdict = {True: "PASS", False: "FAIL", None: "SKIP"}[r.get("pass")]
        log(f"[{name}] {verdict} in {r['seconds']:.1f} s" + (f": {r['error']}" if "error" in r
                                                              else ""))  # fmt: skip
        result["total_seconds"] = round(time.perf_counter() - started, 1)
        if out is not None:
            write_json(Path(out), result)
    verdicts = [r.get("pass") for r in result["checks"].values()]
    result["passed"] = sum(v is True for v in verdicts)
    result["failed"] = sum(v is False for v in verdicts)
    result["skipped"] = sum(v is None for v in verdicts)
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    if out is not None:
        write_json(Path(out), result)
    return result
