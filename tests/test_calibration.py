"""Temperature scaling (issue 16 item 7): the fit, ECE, the card's field, and the runtime scores."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from hcml.card import ModelCard, ModelCardError
from hcml.training.calibration import ece, fit_temperature, nll


def _sampled(t0: float, n: int = 20000, k: int = 12, seed: int = 0):
    """Logits z ~ N(0, 3) [n, k] and labels drawn from softmax(z / t0) (inverse CDF)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 3.0, (n, k))
    p = np.exp(z / t0 - (z / t0).max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    labels = (p.cumsum(1) > rng.random((n, 1))).argmax(1)
    return z, labels


@pytest.mark.parametrize("t0", [0.5, 1.0, 2.5])
def test_fit_recovers_the_temperature_the_labels_were_drawn_with(t0):
    z, y = _sampled(t0)
    t = fit_temperature(z, y)
    assert abs(t - t0) / t0 < 0.05, (t, t0)
    assert nll(z, y, t) <= nll(z, y, t0) + 1e-9  # the fit is the NLL minimum on this sample
    assert ece(z, y, t) < 0.02  # calibrated scores: confidence ~ accuracy


def test_fit_rejects_bad_inputs():
    with pytest.raises(ValueError, match="NaN or inf"):
        fit_temperature(np.array([[0.0, np.nan]]), np.array([0]))
    with pytest.raises(ValueError, match="logits"):
        fit_temperature(np.zeros((0, 3)), np.zeros(0))


def test_ece_on_a_hand_computed_example():
    # top-1 confidences 0.9 (right), 0.9 (wrong), 0.65 (right), 0.85 (right); 15 bins of 1/15:
    # 0.9 -> bin 13 (acc 0.5), 0.65 -> bin 9 (acc 1), 0.85 -> bin 12 (acc 1).
    p = np.array([[0.9, 0.1], [0.9, 0.1], [0.65, 0.35], [0.15, 0.85]])
    y = np.array([0, 1, 0, 1])
    want = 2 / 4 * abs(0.5 - 0.9) + 1 / 4 * abs(1 - 0.65) + 1 / 4 * abs(1 - 0.85)  # 0.325
    assert ece(np.log(p), y) == pytest.approx(want, abs=1e-12)
    # the same scores from logits twice as large at T = 2
    assert ece(2 * np.log(p), y, temperature=2.0) == pytest.approx(want, abs=1e-12)
    # all in one bin when bins=1: |accuracy - mean confidence|
    assert ece(np.log(p), y, bins=1) == pytest.approx(abs(0.75 - (0.9 + 0.9 + 0.65 + 0.85) / 4))


def test_card_round_trips_the_temperature(tiny_card, tmp_path):
    folder = tmp_path / "card"
    shutil.copytree(Path(tiny_card).parent, folder)
    path = folder / Path(tiny_card).name
    card = ModelCard.load(path)
    assert card.temperature == 1.0  # absent in an older card = 1.0
    raw = json.loads(path.read_text())
    raw.pop("temperature", None)
    path.write_text(json.dumps(raw))
    assert ModelCard.load(path).temperature == 1.0
    card.temperature = 1.7
    card.save(path)
    assert json.loads(path.read_text())["temperature"] == 1.7
    assert ModelCard.load(path).temperature == 1.7
    for bad in (0, -1.0, "2", True, None, float("nan"), float("inf")):
        raw["temperature"] = bad
        with pytest.raises(ModelCardError, match="temperature"):
            ModelCard.from_dict(json.loads(json.dumps(raw, allow_nan=True)), path)


def _scores(pred) -> np.ndarray:
    return np.array([s for _, s in sorted(pred.topk, key=lambda ls: ls[0])])


def _reference(backend, frames: list[torch.Tensor], end: int, t: float, labels) -> np.ndarray:
    """softmax(z / t) over the backend's raw clip logits z of the window ending at ``end``."""
    window = torch.stack(frames[end - backend.card.window + 1 : end + 1], dim=1)[None]
    z = np.asarray(backend.run_clip(window.numpy()), dtype=np.float64)[0] / t
    p = np.exp(z - z.max())
    p /= p.sum()
    order = sorted(range(len(labels)), key=lambda i: labels[i])
    return p[order]


def test_engine_scores_are_softmax_of_logits_over_t_on_every_path(tiny_card):
    """Sync step/clip, async and push_many (per-object) predictions of the real ORT backend."""
    from hcml.backends import load_backend
    from hcml.stream.engine import StreamEngine

    backend = load_backend(tiny_card, backend="onnxruntime")
    t = 0.05  # the random model's logits are close together: a small T makes scores peaked
    backend.card.temperature = t
    labels = backend.card.labels
    k = len(labels)
    rng = np.random.default_rng(1)
    frames = [
        torch.from_numpy(rng.normal(size=(3, 112, 112)).astype(np.float32)) for _ in range(11)
    ]
    ends = [7, 10]  # stride 3 from the first full window
    plain = [_reference(backend, frames, e, 1.0, labels) for e in ends]
    want = [_reference(backend, frames, e, t, labels) for e in ends]
    assert max(p.max() for p in plain) < 0.5 < min(w.max() for w in want)  # T matters here
    got = {}
    for mode, incremental in (("sync", True), ("sync", False), ("async", True)):
        engine = StreamEngine(
            backend, stride=3, incremental=incremental, top_k=k, mode=mode, max_backlog=64
        )
        preds = [p for i, f in enumerate(frames) for p in engine.push("s", f, 40 * i)]
        preds += engine.drain() if mode == "async" else []
        engine.close()
        got[mode, incremental] = preds
    engine = StreamEngine(backend, stride=3, top_k=k)
    many = [engine.push_many([("a", f, 40 * i), ("b", f, 40 * i)]) for i, f in enumerate(frames)]
    got["many", True] = [p for out in many for p in out.get("a", [])]
    for key, preds in got.items():
        assert [p.frame for p in preds] == ends, key
        for p, w in zip(preds, want, strict=True):
            np.testing.assert_allclose(_scores(p), w, atol=2e-3, err_msg=str(key))
            assert p.score == pytest.approx(w.max(), abs=2e-3)
    assert math.isclose(sum(_scores(got["sync", True][0])), 1.0, abs_tol=1e-6)


def test_hcml_calibrate_writes_the_fitted_temperature_and_eval_reports_its_ece(
    tiny_card, synth_clips, tmp_path, capsys
):
    from hcml.cli import main

    folder = tmp_path / "card"
    shutil.copytree(Path(tiny_card).parent, folder)
    card = folder / Path(tiny_card).name
    raw = tmp_path / "raw.npz"
    assert main(["eval", str(card), str(synth_clips), "--logits", str(raw), "--no-progress"]) == 0
    saved = np.load(raw)
    z, y = saved["logits"], saved["labels"]
    assert z.shape == (12, 12) and sorted(y.tolist()) == list(range(12))
    fit = tmp_path / "fit.json"
    assert (
        main(["calibrate", str(card), str(synth_clips), "--json", str(fit), "--no-progress"]) == 0
    )
    t = ModelCard.load(card).temperature
    assert t == pytest.approx(fit_temperature(z, y), rel=1e-6)
    report = json.loads(fit.read_text())
    assert report["before"]["ece"] == pytest.approx(ece(z, y, 1.0))
    assert report["after"]["nll"] <= report["before"]["nll"] + 1e-12
    assert json.loads(card.read_text())["metrics"]["calibration"]["temperature"] == t
    out = tmp_path / "eval.json"
    capsys.readouterr()
    assert main(["eval", str(card), str(synth_clips), "--json", str(out), "--no-progress"]) == 0
    assert f"T {t:.3f}" in capsys.readouterr().out
    got = json.loads(out.read_text())
    assert got["temperature"] == t and got["ece"] == pytest.approx(ece(z, y, t), abs=1e-9)


def test_hcml_calibrate_refuses_bad_input_in_one_line(tiny_card, tmp_path, capsys):
    from hcml.cli import main

    assert main(["calibrate", str(tmp_path / "model.pt"), "synth:clips=1"]) == 2
    assert main(["calibrate", str(tiny_card), str(tmp_path / "nothing")]) == 2
    assert main(["eval", str(tiny_card), str(tmp_path / "nothing"), "--temperature", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "needs a model card" in err[0] and "not found" in err[1]
    assert "--temperature must be > 0" in err[2]
