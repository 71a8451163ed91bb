"""ONNX Runtime's C++ exceptions stay Python exceptions once GStreamer is loaded (issue 18 item 1).

GStreamer links libunwind, which exports ``_Unwind_*`` like libgcc_s; objects loaded after
``Gst`` bind to libunwind, those loaded before to libgcc_s, and an exception raised through one
and resumed through the other kills the process (hcml/_unwind.py, docs/RELIABILITY.md). Every
check runs the real onnxruntime in a child process, importing in the order under test.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from onnx import TensorProto, helper, save

from hcml import DEFAULT_CARD

pytestmark = pytest.mark.gst
TOUR = Path(__file__).parent / "data" / "motion_tour_112.mp4"

_IMPORTS = {
    "numpy": "import numpy",
    "torch": "import torch",
    "hcml": "import hcml",
    "gst": "import gi; gi.require_version('Gst', '1.0'); from gi.repository import Gst",
}

# One child: the imports in order, then three ONNX Runtime errors that must come back as
# exceptions: a wrong-shaped input to the shipped card through the real backend, a kernel that
# fails while running (Reshape to an impossible shape), a graph that does not load.
_CHILD = """
import sys, json
{imports}
{ort_import}
import numpy as np
out = {{}}
try:
    from hcml.backends import load_backend
    be = load_backend(sys.argv[1], backend="onnxruntime", threads=1)
    be.run_clip(np.zeros((1, 3, 16, 64, 64), np.float32))
    out["shape"] = "no error"
except Exception as e:
    out["shape"] = type(e).__name__ + ": " + str(e).splitlines()[0]
s = ort.InferenceSession(sys.argv[2], providers=["CPUExecutionProvider"])
try:
    s.run(None, {{"x": np.zeros(6, np.float32), "shape": np.array([7], np.int64)}})
    out["kernel"] = "no error"
except Exception as e:
    out["kernel"] = type(e).__name__ + ": " + str(e).splitlines()[0]
try:
    ort.InferenceSession(sys.argv[3], providers=["CPUExecutionProvider"])
    out["graph"] = "no error"
except Exception as e:
    out["graph"] = type(e).__name__ + ": " + str(e).splitlines()[0]
print(json.dumps(out))
"""


def _model(path: Path, op: str) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])
    shape = helper.make_tensor_value_info("shape", TensorProto.INT64, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    node = helper.make_node(op, ["x", "shape"], ["y"])
    graph = helper.make_graph([node], "g", [x, shape], [y])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    save(m, str(path))
    return path


@pytest.fixture(scope="module")
def graphs(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("ort")
    return _model(d / "reshape.onnx", "Reshape"), _model(d / "bad.onnx", "NoSuchOperator")


def _child(order: list[str], graphs, plain_import: bool = False) -> subprocess.CompletedProcess:
    ort_import = (
        "import onnxruntime as ort"
        if plain_import
        else "from hcml._unwind import import_onnxruntime; ort = import_onnxruntime()"
    )
    code = _CHILD.format(imports="\n".join(_IMPORTS[k] for k in order), ort_import=ort_import)
    args = [str(DEFAULT_CARD), *map(str, graphs)]
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=180
    )


@pytest.mark.parametrize(
    "order",
    [
        ["numpy", "gst"],  # libstdc++ bound to libgcc_s, then libunwind global: RTLD_DEEPBIND
        ["torch", "gst"],  # the same through torch (what `hcml run` used to do)
        ["gst", "numpy"],  # everything bound to libunwind: plain import
        ["hcml", "numpy", "gst"],  # hcml first: libgcc_s pinned ahead of libunwind
    ],
    ids="-".join,
)
def test_ort_errors_are_exceptions_after_gstreamer(order, graphs):
    proc = _child(order, graphs)
    assert proc.returncode == 0, f"child died (rc {proc.returncode}):\n{proc.stderr[-2000:]}"
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["shape"].startswith("InvalidArgument") and "frames" in out["shape"], out
    assert out["kernel"].startswith(("RuntimeException", "Fail", "InvalidArgument")), out
    assert "reshape" in out["kernel"].lower(), out
    assert "NoSuchOperator" in out["graph"], out


def test_plain_import_after_gstreamer_dies(graphs):
    """The failure the fix removes, reproduced: numpy (libstdc++) before Gst, then a plain
    ``import onnxruntime``: the first ORT exception kills the process by a signal."""
    proc = _child(["numpy", "gst"], graphs, plain_import=True)
    assert proc.returncode < 0, f"expected a signal death, got rc {proc.returncode}: {proc.stdout}"


@pytest.mark.parametrize("with_hcml", [True, False], ids=["hcml-first", "reference"])
def test_torch_errors_after_gstreamer(with_hcml):
    """numpy, Gst, then torch (what hcmlaction does in a program that used numpy first): a
    torch error is a RuntimeError once ``import hcml`` came before torch; the reference run
    without it shows the same death as ONNX Runtime's."""
    code = "\n".join(
        [
            _IMPORTS["numpy"],
            _IMPORTS["gst"],
            "import hcml" if with_hcml else "",
            "import torch",
            "try:\n    torch.zeros(2) @ torch.zeros(3)\nexcept RuntimeError:\n    print('raised')",
        ]
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    if with_hcml:
        assert proc.returncode == 0 and proc.stdout.strip() == "raised", proc.stderr[-2000:]
    else:
        assert proc.returncode < 0, f"expected a signal death, got rc {proc.returncode}"


def _bad_card(tmp_path: Path) -> Path:
    """The shipped card with its clip graph replaced by one ONNX Runtime cannot load."""
    from hcml.card import sha256_file

    card = json.loads(DEFAULT_CARD.read_text())
    frames = helper.make_tensor_value_info("frames", TensorProto.FLOAT, [None, 3, 8, 64, 64])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 12])
    node = helper.make_node("NoSuchOperator", ["frames"], ["logits"])
    graph = helper.make_graph([node], "bad", [frames], [logits])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    save(m, str(tmp_path / "bad.onnx"))
    labels = DEFAULT_CARD.parent / card["files"]["labels"]
    shutil.copy(labels, tmp_path / labels.name)
    card["files"] = {"clip": "bad.onnx", "labels": labels.name}
    card["tensors"].pop("step", None)
    card["sha256"] = {n: sha256_file(tmp_path / n) for n in ("bad.onnx", labels.name)}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(card))
    return path


def _assert_clean_failure(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode >= 0 and proc.returncode not in (134, 139), (
        f"died by a signal (rc {proc.returncode}):\n{proc.stderr[-2000:]}"
    )
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    text = (proc.stdout + proc.stderr).lower()
    assert any(w in text for w in words), proc.stderr[-2000:]


@pytest.mark.slow
def test_hcml_run_window_mismatch_no_signal_death():
    """`hcml run CLIP --set window=16` with the shipped card (T=8) used to die with rc 139."""
    proc = subprocess.run(
        [sys.executable, "-m", "hcml.cli", "run", str(TOUR), "--set", "window=16", "--quiet"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    # refused at start (an error naming the window) or every window's inference failed
    _assert_clean_failure(proc, "window", "inference failed")


@pytest.mark.slow
def test_hcml_run_invalid_graph_is_an_error(tmp_path):
    card = _bad_card(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "hcml.cli", "run", str(TOUR), "--model", str(card), "--quiet"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]
    _assert_clean_failure(proc, "nosuchoperator")


@pytest.mark.slow
def test_gst_launch_invalid_graph_is_an_error(tmp_path):
    """gst-launch-1.0 links GStreamer (libunwind) itself; the element comes through the python
    plugin loader."""
    gst_launch = shutil.which("gst-launch-1.0")
    if gst_launch is None:
        pytest.fail("gst-launch-1.0 not on PATH (make setup installs it)")
    card = _bad_card(tmp_path)
    desc = (
        f'filesrc location="{TOUR}" ! decodebin ! videoconvert ! '
        f'hcmlaction model="{card}" ! fakesink'
    )
    proc = subprocess.run([gst_launch, *desc.split()], capture_output=True, text=True, timeout=180)
    assert proc.returncode in (1, 255), proc.stderr[-2000:]  # 255: "failed to set PAUSED"
    _assert_clean_failure(proc, "nosuchoperator")


_EMBED = """
import sys
import numpy  # libstdc++ before GStreamer, as in a program that uses numpy first
import gi
gi.require_version("Gst", "1.0")
from gi.repository import Gst
Gst.init(None)
p = Gst.parse_launch(
    "videotestsrc num-buffers=20 ! video/x-raw,width=64,height=64 ! "
    f"hcmlaction model={sys.argv[1]} ! fakesink"
)
p.set_state(Gst.State.PLAYING)
msg = p.get_bus().timed_pop_filtered(60 * Gst.SECOND, Gst.MessageType.ERROR | Gst.MessageType.EOS)
p.set_state(Gst.State.NULL)
print("ERROR" if msg and msg.type == Gst.MessageType.ERROR else "NO ERROR")
print(msg.parse_error()[0].message if msg and msg.type == Gst.MessageType.ERROR else "")
"""


@pytest.mark.slow
def test_program_embedding_the_element_gets_a_bus_error(tmp_path):
    """numpy, then Gst, then hcmlaction (which imports hcml and onnxruntime): the graph that
    does not load is a bus error in the program, not a dead process."""
    card = _bad_card(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-c", _EMBED, str(card)], capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, f"died (rc {proc.returncode}):\n{proc.stderr[-2000:]}"
    first, message = proc.stdout.splitlines()[-2:]
    assert first == "ERROR" and "NoSuchOperator" in message, proc.stdout
