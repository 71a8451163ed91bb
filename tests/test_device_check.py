"""scripts/device_check.py: the dry run (--device cpu) end to end on a machine shaped like the GPU
one (no PyAV, GStreamer, onnxslim, tqdm, onnx, TensorRT importable), and its rendering."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from hcml.bench.common import markers
from hcml.bench.device_checks import memcpy_stats

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "device_check.py"
BLOCKED = ("av", "gi", "onnxslim", "tqdm", "onnx", "tensorrt")
CHECKS = {"environment", "exactness", "engine_device_input", "cuda_graphs", "throughput",
          "imports"}  # fmt: skip

# run the script as `python scripts/device_check.py` would, with those modules unimportable
_RUNNER = (
    "import runpy, sys\n"
    "for name in {blocked!r}:\n"
    "    sys.modules[name] = None  # `import name` now raises ImportError\n"
    "sys.argv = [{script!r}, *{argv!r}]\n"
    "runpy.run_path({script!r}, run_name='__main__')\n"
)


def _run(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    code = _RUNNER.format(blocked=BLOCKED, script=str(SCRIPT), argv=list(argv))
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1",
           "HOME": str(Path.home())}  # fmt: skip
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=env)  # fmt: skip


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("device") / "device.json"
    proc = _run("--device", "cpu", "--out", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout, out


def test_dry_run_without_av_gi_onnxslim_tqdm_onnx_writes_every_check(dry_run):
    result, stdout, _ = dry_run
    assert result["suite"] == "device" and result["dry_run"] is True
    assert result["command"].startswith("PYTHONPATH=. python scripts/device_check.py --device cpu")
    assert set(result["checks"]) == CHECKS
    for name, check in result["checks"].items():
        assert check["pass"] is True, (name, check)
        assert check["seconds"] >= 0
        assert f"[{name}] PASS" in stdout  # progress lines
    assert (result["passed"], result["failed"], result["skipped"]) == (len(CHECKS), 0, 0)
    assert "not checked against its ONNX files" in result["model"]  # onnx was blocked
    imports = result["checks"]["imports"]
    assert imports["loaded_not_expected"] == [] and imports["loaded_optional"] == []
    assert {"hcml.stream.engine", "hcml.backends.torch_backend"} <= set(imports["hcml_modules"])


def test_dry_run_numbers_are_consistent(dry_run):
    result, _, _ = dry_run
    checks = result["checks"]
    ex = checks["exactness"]
    for key in ("clip_max_abs_diff", "step_max_abs_diff", "step_vs_clip_max_abs_diff"):
        assert 0.0 <= ex[key] <= result["tolerance"]
    # 2T frames after a reset: ready from frame T-1 on, in every row
    assert ex["ready_steps_compared"] == ex["step_batch"] * (
        ex["step_frames"] - result["window"] + 1
    )

    eng = checks["engine_device_input"]
    sampled = math.ceil(eng["frames_per_stream"] / result["frame_step"])
    expected = eng["streams"] * (sampled - result["window"] + 1)  # stride 1: every sampled frame
    assert eng["sync"]["predictions"] == eng["sync"]["reference_predictions"] == expected > 0
    assert eng["sync"]["match"] is True
    for key in ("dtoh_per_frame", "htod_per_frame", "dtoh_data_per_frame", "host_transfer_calls"):
        assert key in eng["sync"] and key in eng["async"]

    rows = checks["throughput"]["rows"]
    measured = [r for r in rows if "fps" in r]
    batches = result["sizes"]["batches"]
    assert {(r["graph"], r["batch"]) for r in measured} == {
        (g, b) for g in ("step", "clip") for b in batches
    }
    for r in measured:
        assert r["fps"] == pytest.approx(r["batch"] * 1e3 / r["ms_per_call"])
        assert r["streams_at_30fps"] == pytest.approx(r["fps"] / (30 / result["frame_step"]))
    (ort,) = [r for r in rows if r["engine"] == "onnxruntime CUDA"]
    assert "skipped" in ort and "fps" not in ort  # a reason, not a number


def test_bench_renders_the_device_section_from_the_json(dry_run, tmp_path):
    from hcml.cli import main

    _, _, out = dry_run
    md = tmp_path / "BENCHMARKS.md"
    md.write_text("# Benchmarks\n\nprose kept\n")
    assert main(["bench", "device", "--from-json", str(out), "--markdown", str(md)]) == 0
    text = md.read_text()
    begin, end = markers("device")
    section = text.split(begin)[1].split(end)[0]
    assert "prose kept" in text
    assert "**Dry run on the CPU**" in section
    assert "| torch eager | step | 1 |" in section
    assert "skipped: dry run: no GPU" in section
    for name in CHECKS:
        assert f"| {name} | pass |" in section


def test_failed_check_makes_the_render_exit_1(dry_run, tmp_path):
    from hcml.cli import main

    result, _, _ = dry_run
    broken = dict(result, failed=1, passed=result["passed"] - 1)
    broken["checks"] = dict(result["checks"], exactness={"pass": False, "error": "boom"})
    src = tmp_path / "device.json"
    src.write_text(json.dumps(broken))
    md = tmp_path / "B.md"
    assert main(["bench", "device", "--from-json", str(src), "--markdown", str(md)]) == 1
    assert "| exactness | **fail**: boom |" in md.read_text()


def test_bad_device_is_one_line_and_exit_2(tmp_path):
    proc = _run("--device", "tpu", "--out", str(tmp_path / "x.json"), timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "device_check: unknown device 'tpu'; use cuda, cuda:N or cpu"
    assert not (tmp_path / "x.json").exists()


def test_memcpy_stats_splits_directions_and_data_sized_copies():
    # the chrome-trace form torch.profiler (kineto) writes for CUPTI memcpy records
    trace = {"traceEvents": [
        {"ph": "X", "cat": "kernel", "name": "void at::native::vectorized_elementwise_kernel"},
        {"ph": "X", "cat": "gpu_memcpy", "name": "Memcpy DtoH (Device -> Pageable)",
         "args": {"bytes": 48}},
        {"ph": "X", "cat": "gpu_memcpy", "name": "Memcpy DtoH (Device -> Pageable)",
         "args": {"bytes": 3 * 64 * 64 * 4}},
        {"ph": "X", "cat": "gpu_memcpy", "name": "Memcpy HtoD (Pageable -> Device)",
         "args": {"bytes": 3 * 64 * 64 * 4}},
        {"ph": "X", "cat": "cuda_runtime", "name": "cudaMemcpyAsync", "args": {}},
        {"ph": "X", "cat": "gpu_memset", "name": "Memset (Device)", "args": {"bytes": 64}},
    ]}  # fmt: skip
    s = memcpy_stats(trace)
    assert (s["kernels"], s["dtoh"], s["dtoh_data"], s["htod"], s["htod_data"], s["dtod"]) == (
        1, 2, 1, 1, 1, 0
    )  # fmt: skip
    assert s["dtoh_bytes"] == 48 + 49152 and s["bytes_known"] is True


def test_a_spent_budget_skips_checks_and_exits_1(tmp_path):
    out = tmp_path / "device.json"
    proc = _run("--device", "cpu", "--budget", "0", "--out", str(out))
    assert proc.returncode == 1, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    skipped = {name for name, c in result["checks"].items() if c["pass"] is None}
    assert skipped == CHECKS - {"imports"}  # imports is a free look at sys.modules
    assert all(result["checks"][n]["skipped"] == "time budget spent" for n in skipped)
    assert result["skipped"] == len(skipped) and result["failed"] == 0
