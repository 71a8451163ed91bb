"""DeepStream configs from a model card (hcml deepstream-configs) and `hcml check-config`.

Fast and CPU-only: no DeepStream. A random tiny model's card (the `tiny_card` fixture) gives the
configs; `check-config` passes on them and fails, naming the file, group and key, on copies
broken one key at a time. Copies sit beside the original folder so relative paths still resolve.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest
from gi.repository import GLib

from hcml.card import ModelCard
from hcml.cli import main
from hcml.export.deepstream import (
    APP,
    APP_TRITON,
    INFER,
    PREPROCESS,
    TRITON_INFER,
    DeepStreamSettings,
    default_deepstream_dir,
    render_deepstream_configs,
    write_deepstream_configs,
)
from hcml.export.deepstream_check import ConfigSyntaxError, check_configs, parse_pbtxt

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_CARD = ROOT / "engines" / "hcml_tiny_motion.json"


@pytest.fixture
def configs(tiny_card, tmp_path) -> Path:
    """Fresh configs for the tiny card in tmp_path/ds."""
    write_deepstream_configs(tiny_card, tmp_path / "ds")
    return tmp_path / "ds"


def _keyfile(path: Path) -> GLib.KeyFile:
    kf = GLib.KeyFile()
    kf.load_from_file(str(path), GLib.KeyFileFlags.NONE)
    return kf


def _set_key(path: Path, key: str, value: str) -> None:
    """Replace ``key=...`` in a key file (the key must be there)."""
    text, n = re.subn(rf"^{re.escape(key)}=.*$", f"{key}={value}", path.read_text(), flags=re.M)
    assert n == 1, f"{key} not in {path}"
    path.write_text(text)


def _broken_copy(configs: Path, name: str) -> Path:
    """A copy of the configs folder beside it (same depth: relative paths still resolve)."""
    dst = configs.parent / name
    shutil.copytree(configs, dst, symlinks=True)
    return dst


def _check_cli(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(["check-config", *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


# ---------------------------------------------------------------------- generated configs
def test_generated_configs_pass(configs, tiny_card, capsys):
    report = check_configs([configs])
    assert report.ok, "\n".join(map(str, report.issues))
    assert len(report.files) == 6 and report.keys > 60
    assert report.cards == [Path(tiny_card).resolve()]

    rc, out, err = _check_cli(capsys, str(configs / APP))
    assert rc == 0 and err == ""
    assert re.match(r"ok: \d+ keys checked in 3 file\(s\)", out)
    rc, out, _ = _check_cli(capsys, str(configs / APP_TRITON))
    assert rc == 0 and "in 4 file(s)" in out  # app, preprocess, nvinferserver, config.pbtxt


def test_generated_values_follow_the_card(configs, tiny_card):
    card = ModelCard.load(tiny_card)
    h, w = card.input_size
    pre = _keyfile(configs / PREPROCESS)
    assert pre.get_integer_list("property", "network-input-shape") == [4, 3, card.window, h, w]
    assert pre.get_integer("property", "network-input-order") == 2
    assert pre.get_string("property", "tensor-name") == card.tensors["clip"]["input"]
    scales = pre.get_double_list("user-configs", "channel-scale-factors")
    means = pre.get_double_list("user-configs", "channel-mean-offsets")
    for s, m, cs, cm in zip(scales, means, card.std, card.mean, strict=True):
        assert math.isclose(s, 1 / (255 * cs), rel_tol=1e-6)
        assert math.isclose(m, 255 * cm, rel_tol=1e-6)
    assert pre.get_integer("user-configs", "subsample") == card.frame_step - 1
    assert pre.get_integer("user-configs", "stride") == 1

    inf = _keyfile(configs / INFER)
    onnx = inf.get_string("property", "onnx-file")
    assert not Path(onnx).is_absolute() and (configs / onnx).resolve() == card.file("clip")
    assert (configs / inf.get_string("property", "labelfile-path")).resolve() == card.file("labels")
    assert inf.get_integer("property", "input-tensor-from-meta") == 1
    assert inf.get_integer("property", "network-type") == 1
    assert inf.get_integer("property", "network-mode") == 2
    assert inf.get_string("property", "output-blob-names") == card.tensors["clip"]["output"]
    assert inf.get_string("property", "model-engine-file") == f"{onnx}_b4_gpu0_fp16.engine"
    assert "infer-dims" not in inf.get_keys("property")[0]  # nvinfer takes 3 values only

    app = _keyfile(configs / APP)
    assert app.get_string("action-recognition", "preprocess-config") == PREPROCESS
    assert app.get_string("action-recognition", "infer-config") == INFER

    model_dir = configs / "triton_model_repo" / card.name
    pb = parse_pbtxt((model_dir / "config.pbtxt").read_text())
    assert pb["platform"] == ["onnxruntime_onnx"] and pb["name"] == [card.name]
    assert pb["input"][0]["dims"] == [3, card.window, h, w]
    assert pb["output"][0]["dims"] == [len(card.labels)]
    assert (model_dir / "1" / "model.onnx").resolve() == card.file("clip")
    server = parse_pbtxt((configs / TRITON_INFER).read_text())
    assert server["infer_config"][0]["backend"][0]["triton"][0]["model_name"] == [card.name]


def test_settings_change_batch_stride_precision(tiny_card, tmp_path):
    s = DeepStreamSettings(batch_size=2, stride=4, precision="fp32", uris=("file:///a.mp4",))
    write_deepstream_configs(tiny_card, tmp_path / "ds", s)
    pre = _keyfile(tmp_path / "ds" / PREPROCESS)
    assert pre.get_integer_list("property", "network-input-shape")[0] == 2
    assert pre.get_integer("user-configs", "stride") == 4
    inf = _keyfile(tmp_path / "ds" / INFER)
    assert inf.get_integer("property", "network-mode") == 0
    assert inf.get_string("property", "model-engine-file").endswith("_b2_gpu0_fp32.engine")
    assert check_configs([tmp_path / "ds"]).ok


# ---------------------------------------------------------------------- broken copies
BROKEN = [
    # (file, key, bad value, "[group] key" the error must name)
    (PREPROCESS, "network-input-shape", "4;3;16;112;112", "[property] network-input-shape"),
    (PREPROCESS, "tensor-name", "input_rgb", "[property] tensor-name"),
    (
        PREPROCESS,
        "channel-mean-offsets",
        "127.5;127.5;127.5",
        "[user-configs] channel-mean-offsets",
    ),
    (PREPROCESS, "offsets", "0;0;0", "[user-configs] offsets"),
    (PREPROCESS, "channel-scale-factors", "0.0039215686", "[user-configs] channel-scale-factors"),
    (PREPROCESS, "subsample", "3", "[user-configs] subsample"),
    (PREPROCESS, "processing-width", "224", "[property] processing-width"),
    (INFER, "onnx-file", "missing.onnx", "[property] onnx-file"),
    (INFER, "output-blob-names", "fc_pred", "[property] output-blob-names"),
    (INFER, "input-tensor-from-meta", "0", "[property] input-tensor-from-meta"),
    (APP, "preprocess-config", "nope.txt", "[action-recognition] preprocess-config"),
]


@pytest.mark.parametrize(("name", "key", "value", "named"), BROKEN, ids=[b[1] for b in BROKEN])
def test_broken_key_fails_naming_it(configs, capsys, name, key, value, named):
    bad = _broken_copy(configs, "bad")
    _set_key(bad / name, key, value)
    rc, out, err = _check_cli(capsys, str(bad / APP))
    assert rc == 1 and all(ln.startswith("info: ") for ln in out.splitlines())
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert any(named in ln and ln.split(":")[1].strip().endswith(name) for ln in lines), err
    assert "error(s)" in err.splitlines()[-1]


def test_wrong_labels_count(configs, tiny_card, capsys):
    card = ModelCard.load(tiny_card)
    bad = _broken_copy(configs, "bad")
    (bad / "short.labels.txt").write_text(";".join(card.labels[:-1]) + "\n")
    _set_key(bad / INFER, "labelfile-path", "short.labels.txt")
    rc, _, err = _check_cli(capsys, str(bad / INFER))
    assert rc == 1
    n = len(card.labels)
    assert f"[property] labelfile-path: expected {n} labels (the card's), found {n - 1}" in err

    # one label a line: nvinfer would read each line as another output layer
    (bad / "short.labels.txt").write_text("\n".join(card.labels) + "\n")
    rc, _, err = _check_cli(capsys, str(bad / INFER))
    assert rc == 1 and f"has {n} non-empty lines" in err

    # a renamed label
    (bad / "short.labels.txt").write_text(";".join(["jump", *card.labels[1:]]) + "\n")
    rc, _, err = _check_cli(capsys, str(bad / INFER))
    assert rc == 1 and f"expected {card.labels[0]!r} (the card's), found 'jump'" in err


def test_missing_onnx_still_checks_the_rest(configs, capsys):
    bad = _broken_copy(configs, "bad")
    _set_key(bad / INFER, "onnx-file", "../gone/model.onnx")
    _set_key(bad / INFER, "output-blob-names", "fc_pred")
    rc, _, err = _check_cli(capsys, str(bad / INFER))
    assert rc == 1
    assert "[property] onnx-file: file not found: ../gone/model.onnx" in err
    assert "[property] output-blob-names: expected logits" in err  # card found by its mark line


def test_other_onnx_is_not_the_cards(configs, tiny_card, capsys):
    bad = _broken_copy(configs, "bad")
    other = bad / "other.onnx"
    other.write_bytes(b"not the card's graph")
    _set_key(bad / INFER, "onnx-file", "other.onnx")
    rc, _, err = _check_cli(capsys, str(bad / INFER), "--card", str(tiny_card))
    assert rc == 1 and "[property] onnx-file: expected the card's clip graph" in err


def test_broken_triton_configs(configs, tiny_card, capsys):
    card = ModelCard.load(tiny_card)
    bad = _broken_copy(configs, "bad")
    model_cfg = bad / "triton_model_repo" / card.name / "config.pbtxt"
    model_cfg.write_text(model_cfg.read_text().replace('name: "frames"', 'name: "input_rgb"'))
    server = bad / TRITON_INFER
    server.write_text(server.read_text().replace("dims: [3, 8,", "dims: [3, 16,"))
    rc, _, err = _check_cli(capsys, str(bad / APP_TRITON))
    assert rc == 1
    assert "config.pbtxt: [input] name: expected frames" in err
    assert "[infer_config.backend.inputs] dims: expected [3, 8, 112, 112]" in err

    (bad / "triton_model_repo" / card.name / "1" / "model.onnx").unlink()
    rc, _, err = _check_cli(capsys, str(model_cfg))
    assert rc == 1 and "[version] model.onnx: file not found:" in err and "Traceback" not in err


def test_app_cross_checks(configs, capsys):
    bad = _broken_copy(configs, "bad")
    _set_key(bad / APP, "uri-list", ";".join(f"file:///{i}.mp4" for i in range(5)))
    _set_key(bad / PREPROCESS, "target-unique-ids", "7")
    rc, _, err = _check_cli(capsys, str(bad / APP))
    assert rc == 1
    assert "[action-recognition] uri-list: 5 sources but the preprocess tensor holds 4" in err
    assert "[action-recognition] uri-list: sources 4 are not in the preprocess" in err
    assert "does not include nvinfer's gie-unique-id 1" in err


def _card_with_stds(tiny_card, folder: Path) -> Path:
    """A copy of the tiny card (and its files) in ``folder`` with per-channel stds."""
    shutil.copytree(Path(tiny_card).parent, folder)
    card_path = folder / Path(tiny_card).name
    data = json.loads(card_path.read_text())
    data["std"] = [0.229, 0.224, 0.225]
    card_path.write_text(json.dumps(data))
    return card_path


def test_unequal_stds_one_factor_with_tolerance(tiny_card, tmp_path, capsys):
    """Per-channel std: the sequence library's per-channel keys are exact; the single
    pixel-normalization-factor is the mean std's and is compared within the stds' spread."""
    card_path = _card_with_stds(tiny_card, tmp_path / "engines")
    ds = tmp_path / "ds"
    write_deepstream_configs(card_path, ds)
    text = (ds / PREPROCESS).read_text()
    assert "stds differ per channel" in text
    assert check_configs([ds / PREPROCESS]).ok
    factor = 1 / (255 * 0.229)  # one channel's exact factor: inside the spread
    _set_key(ds / PREPROCESS, "pixel-normalization-factor", f"{factor:.9g}")
    assert check_configs([ds / PREPROCESS]).ok
    _set_key(ds / PREPROCESS, "pixel-normalization-factor", "0.00392156863")  # 1/255
    rc, _, err = _check_cli(capsys, str(ds / PREPROCESS))
    assert rc == 1 and "[user-configs] pixel-normalization-factor" in err
    _set_key(ds / PREPROCESS, "pixel-normalization-factor", f"{factor:.9g}")
    _set_key(ds / PREPROCESS, "channel-scale-factors", ";".join([f"{factor:.9g}"] * 3))
    rc, _, err = _check_cli(capsys, str(ds / PREPROCESS))
    assert rc == 1 and "[user-configs] channel-scale-factors" in err


def test_preprocess_from_another_card(configs, tiny_card, capsys):
    """A preprocess config is checked against the model its app / neighbouring nvinfer runs."""
    other = _card_with_stds(tiny_card, configs.parent / "engines")
    write_deepstream_configs(other, configs.parent / "other")
    bad = _broken_copy(configs, "bad")
    shutil.copy(configs.parent / "other" / PREPROCESS, bad / PREPROCESS)
    for target in (bad, bad / APP, bad / PREPROCESS):  # the nvinfer config beside it wins
        rc, _, err = _check_cli(capsys, str(target))  # over its own hcml-card line
        assert rc == 1 and f"{PREPROCESS}: [user-configs] channel-scale-factors" in err
    (bad / INFER).unlink()  # no nvinfer beside it: checked against its own card
    assert _check_cli(capsys, str(bad / PREPROCESS))[0] == 0


# ---------------------------------------------------------------------- parsing and usage
def test_key_file_syntax_error_is_a_failure(configs, capsys):
    bad = _broken_copy(configs, "bad")
    (bad / INFER).write_text((bad / INFER).read_text() + "this line has no equals sign\n")
    rc, _, err = _check_cli(capsys, str(bad / INFER))
    assert rc == 1 and "not a valid key file" in err


def test_bad_usage_exits_2(configs, tmp_path, capsys):
    assert _check_cli(capsys, str(tmp_path / "nope.txt"))[0] == 2
    (tmp_path / "notes.txt").write_text("[notes]\nhello=world\n")
    rc, _, err = _check_cli(capsys, str(tmp_path / "notes.txt"))
    assert rc == 2 and "not a DeepStream config" in err
    assert _check_cli(capsys, str(configs / APP), "--card", str(tmp_path / "no.json"))[0] == 2
    with pytest.raises(SystemExit) as e:
        main(["check-config"])
    assert e.value.code == 2
    capsys.readouterr()


def test_parse_pbtxt():
    msg = parse_pbtxt(
        """
        # comment
        name: "m" max_batch_size: 4
        input [ { name: "frames", dims: [ 3, 8, -1 ] }, { name: 'b' } ]
        infer_config { backend { triton { version: -1 } } threshold: 0.5 flag: true }
        ctl < mode: PROCESS_MODE_FULL_FRAME >
        """
    )
    assert msg["name"] == ["m"] and msg["max_batch_size"] == [4]
    assert [i["name"] for i in msg["input"]] == [["frames"], ["b"]]
    assert msg["input"][0]["dims"] == [3, 8, -1]
    ic = msg["infer_config"][0]
    assert ic["backend"][0]["triton"][0]["version"] == [-1]
    assert ic["threshold"] == [0.5] and ic["flag"] == ["true"]
    assert msg["ctl"][0]["mode"] == ["PROCESS_MODE_FULL_FRAME"]
    for bad in ('name "x"', "a { b: 1", "a: [1, 2", "a: @"):
        with pytest.raises(ConfigSyntaxError, match="line"):
            parse_pbtxt(bad)


# ---------------------------------------------------------------------- commands
def test_deepstream_configs_command_default_folder(tiny_card, tmp_path, capsys):
    eng = tmp_path / "engines"
    shutil.copytree(Path(tiny_card).parent, eng)
    card = eng / Path(tiny_card).name
    assert default_deepstream_dir(eng) == tmp_path / "pipelines" / "deepstream"
    assert main(["deepstream-configs", str(card), "--ds-batch-size", "2", "--no-triton"]) == 0
    out = capsys.readouterr().out
    ds = tmp_path / "pipelines" / "deepstream"
    assert f"wrote DeepStream configs in {ds}" in out
    assert sorted(p.name for p in ds.iterdir()) == sorted([APP, INFER, PREPROCESS])
    onnx = _keyfile(ds / INFER).get_string("property", "onnx-file")
    assert onnx == f"../../engines/{Path(tiny_card).stem}.onnx"
    assert main(["check-config", str(ds)]) == 0
    assert main(["deepstream-configs", str(tmp_path / "none.json")]) == 2
    capsys.readouterr()


@pytest.mark.slow
def test_export_writes_deepstream_configs(tmp_path, capsys):
    import torch

    from hcml.export.reference import randomize_
    from hcml.model import create_model
    from hcml.model.checkpoint import save_checkpoint

    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, randomize_(create_model("hcml_tiny", frames=8), 0))
    fast = ["--size", "64", "64", "--no-check", "--no-checkpoint"]
    assert (
        main(["export", str(ckpt), "--name", "t", "--out", str(tmp_path / "a/engines"), *fast]) == 0
    )
    out = capsys.readouterr().out
    ds = tmp_path / "a/engines/t.deepstream"  # next to the card, never pipelines/deepstream
    assert "wrote DeepStream configs" in out and (ds / APP).is_file()
    assert not (tmp_path / "a/pipelines").exists()
    assert check_configs([ds]).ok
    pre = _keyfile(ds / PREPROCESS)
    assert pre.get_integer_list("property", "network-input-shape") == [4, 3, 8, 64, 64]

    argv = ["export", str(ckpt), "--name", "t", "--out", str(tmp_path / "b/engines"), *fast]
    assert main([*argv, "--no-deepstream"]) == 0
    assert not (tmp_path / "b/pipelines").exists()
    assert not (tmp_path / "b/engines/t.deepstream").exists()
    assert main(["export", str(ckpt), "--name", "t", "--out", str(tmp_path / "c"), *fast]) == 0
    assert (tmp_path / "c/t.deepstream" / APP).is_file()


# ---------------------------------------------------------------------- the shipped configs
def test_shipped_configs_match_the_shipped_card(capsys):
    assert SHIPPED_CARD.is_file(), f"the committed card {SHIPPED_CARD} is missing"
    ds = ROOT / "pipelines" / "deepstream"
    rc, out, err = _check_cli(capsys, str(ds))
    assert rc == 0, err
    assert out.startswith("ok: ")
    # and they are exactly what the card generates today (regenerate after re-exporting)
    for rel, text in render_deepstream_configs(SHIPPED_CARD, ds).items():
        assert (ds / rel).read_text() == text, f"{rel} is stale: hcml deepstream-configs"
