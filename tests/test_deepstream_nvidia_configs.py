"""`hcml check-config` on configs laid out like NVIDIA's 3D action recognition sample.

The fixtures (tests/data/deepstream_nvidia, see its README) follow the structure and keys of the
sample's files and of the nvinfer / nvinferserver / nvdspreprocess documentation, with the shipped
card's values; hcml did not generate them. Valid ones must pass (information lines allowed);
copies broken one value at a time must fail naming the file and key.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from hcml.cli import main
from hcml.export.deepstream_check import check_configs

ROOT = Path(__file__).resolve().parents[1]
NVIDIA = ROOT / "tests" / "data" / "deepstream_nvidia"
CARD = ROOT / "engines" / "hcml_tiny_motion.json"
PLAN = "triton_model_repo/hcml_tiny_motion/1/hcml_tiny_motion.onnx_b4_gpu0_fp16.engine"
APP = "deepstream_action_recognition_config.txt"
PRE = "config_preprocess_3d_custom.txt"
INFER = "config_infer_primary_3d_action.txt"
TRITON = "config_triton_infer_primary_3d_action.txt"
GRPC = "config_triton_grpc_infer_primary_3d_action.txt"
TRITON_ONNX = "config_triton_onnx_infer_primary_3d_action.txt"
PLAN_MODEL = "triton_model_repo/hcml_tiny_motion/config.pbtxt"
ONNX_MODEL = "triton_onnx_repo/hcml_tiny_motion/config.pbtxt"


@pytest.fixture
def nvidia(tmp_path) -> Path:
    """A copy of the fixtures at the same depth below a link to engines/, with a stand-in for
    the TensorRT plan that nvinfer would have built on the target (its bytes are never read)."""
    dst = tmp_path / "tests" / "data" / "deepstream_nvidia"
    shutil.copytree(NVIDIA, dst, symlinks=True)
    (tmp_path / "engines").symlink_to(ROOT / "engines")
    (dst / PLAN).write_bytes(b"stand-in: built by nvinfer on the target GPU\n")
    return dst


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(["check-config", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} not once in {path}"
    path.write_text(text.replace(old, new))


def test_nvidia_layout_passes_with_information(nvidia, capsys):
    report = check_configs([nvidia])
    assert report.ok, "\n".join(map(str, report.issues))
    assert report.cards == [CARD.resolve()]
    assert len(report.files) == 9 and report.keys > 100
    rc, out, err = _cli(capsys, str(nvidia))
    assert rc == 0 and err == "", err
    assert re.search(r"^ok: \d+ keys checked in 9 file\(s\)", out, re.M)
    infos = [ln for ln in out.splitlines() if ln.startswith("info: ")]
    joined = "\n".join(infos)
    assert f"{APP}: [action-recognition] triton-infer-config:" in joined
    assert "the app runs nvinferserver with config_triton_infer_primary_3d_action.txt" in joined
    assert f"{GRPC}: [infer_config.backend.triton.grpc] url:" in joined and "8001" in joined
    assert "is a TensorRT plan" in joined
    assert f"{INFER}: [property] model-engine-file:" in joined  # another name: rebuilt
    assert "hcml_tiny_motion.onnx_b4_gpu0_fp16.engine" in joined
    # the app config alone: itself, both inference configs, the preprocess config, the plan model
    rc, out, _ = _cli(capsys, str(nvidia / APP))
    assert rc == 0 and "in 5 file(s)" in out


def test_missing_model_files_are_one_line_errors(capsys):
    """On the committed folder the plan is absent: each config that needs it says so in one
    line naming the file (default_model_filename honoured), no traceback."""
    rc, out, err = _cli(capsys, str(NVIDIA / APP))
    assert rc == 1
    errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, err
    assert (
        f"{PLAN_MODEL}: [version] hcml_tiny_motion.onnx_b4_gpu0_fp16.engine: file not found:"
        in (errors[0])
    )
    assert "(default_model_filename)" in errors[0] and "Traceback" not in err
    rc, _, err = _cli(capsys, str(NVIDIA / "config_infer_primary_3d_action_engine.txt"))
    assert rc == 1 and "[property] model-engine-file: file not found:" in err
    assert "(no onnx-file to build it from)" in err


def test_onnx_triton_layout_missing_default_file(nvidia, capsys):
    """A default_model_filename that is not there: an error naming it, never a hash of it."""
    assert _cli(capsys, str(nvidia / TRITON_ONNX))[0] == 0
    _edit(nvidia / ONNX_MODEL, '"hcml_tiny_motion.onnx"', '"gone.onnx"')
    rc, _, err = _cli(capsys, str(nvidia / TRITON_ONNX), "--card", str(CARD))
    assert rc == 1 and "Traceback" not in err
    assert f"{ONNX_MODEL}: [version] gone.onnx: file not found:" in err
    assert "1/gone.onnx (default_model_filename)" in err


def test_neither_onnx_nor_engine_is_an_error(nvidia, capsys):
    _edit(nvidia / INFER, "onnx-file=../../../engines/hcml_tiny_motion.onnx\n", "")
    _edit(nvidia / INFER, "model-engine-file=./hcml_tiny_motion_fp16.engine\n", "")
    rc, _, err = _cli(capsys, str(nvidia / INFER), "--card", str(CARD))
    assert rc == 1 and "[property] onnx-file: missing (and no model-engine-file)" in err


BROKEN = [  # (file, old, new, what the error line must hold)
    (PRE, "4;3;8;64;64", "4;3;16;64;64", f"{PRE}: [property] network-input-shape: expected B;3;8"),
    (PRE, "tensor-name=frames", "tensor-name=input_rgb", f"{PRE}: [property] tensor-name"),
    (PRE, "114.75;114.75;114.75", "123.675;116.28;103.53", "[user-configs] channel-mean-offsets"),
    (PRE, "0.0174291939;0.0174291939;0.0174291939", "0.0078431;0.0078431;0.0078431",
     "[user-configs] channel-scale-factors"),
    (PRE, "subsample=1", "subsample=0", "[user-configs] subsample: expected 1"),
    (PRE, "network-color-format=0", "network-color-format=1", "network-color-format"),
    (INFER, "classifier-threshold=0.51", "output-blob-names=fc_pred",
     f"{INFER}: [property] output-blob-names: expected logits"),
    (INFER, "num-detected-classes=12", "num-detected-classes=5", "num-detected-classes"),
    ("labels.txt", ";flip_upside_down", "", "expected 12 labels (the card's), found 11"),
    (PLAN_MODEL, "dims: [ 3, 8, 64, 64 ]", "dims: [ 3, 32, 224, 224 ]", "[input] dims"),
    (PLAN_MODEL, "dims: [ 12 ]", "dims: [ 5 ]", f"{PLAN_MODEL}: [output] dims: expected [12]"),
    (PLAN_MODEL, 'name: "logits"', 'name: "fc_pred"', "[output] name: expected logits"),
    (PLAN_MODEL, '"tensorrt_plan"', '"pytorch_libtorch"', "[model] platform: expected one of"),
    (PLAN_MODEL, "max_batch_size: 4", "max_batch_size: 2", "exceeds the Triton model's"),
    (GRPC, "./labels.txt", "./short.txt", f"{GRPC}: [infer_config.postprocess] labelfile_path"),
    (APP, "preprocess-config=config_preprocess_3d_custom.txt", "preprocess-config=nope.txt",
     "[action-recognition] preprocess-config: file not found"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "old", "new", "named"), BROKEN, ids=[b[3][-30:] for b in BROKEN])
def test_genuine_mismatches_are_found(nvidia, capsys, name, old, new, named):
    (nvidia / "short.txt").write_text("static;move_left\n")
    _edit(nvidia / name, old, new)
    rc, _, err = _cli(capsys, str(nvidia))
    assert rc == 1 and "Traceback" not in err
    assert any(named in ln for ln in err.splitlines() if ln.startswith("error: ")), err
