"""hcml eval-flow: end-point error of the P^0 flow net against the generator's flow."""

from __future__ import annotations

import json

import torch

from hcml.labels import LABELS
from hcml.training.flow_eval import endpoint_errors


def test_endpoint_errors_scale_and_resample():
    gt = torch.zeros(2, 8, 8, 2)
    gt[..., 0] = 4.0  # 4 render px right = 2 px on a 4x4 grid
    exact = torch.zeros(2, 2, 4, 4)
    exact[:, 0] = 2.0
    err, mag = endpoint_errors(exact, gt)
    assert err.shape == (2, 4, 4) and torch.allclose(err, torch.zeros(()))
    assert torch.allclose(mag, torch.full((2, 4, 4), 2.0))
    off = exact.clone()
    off[:, 1] += 1.0  # one grid pixel off in y
    assert torch.allclose(endpoint_errors(off, gt)[0], torch.ones(2, 4, 4))


def test_eval_flow_cli_on_a_training_checkpoint(tmp_path):
    from hcml.cli import main
    from hcml.model.checkpoint import save_checkpoint
    from hcml.training.recipe import load_recipe
    from hcml.training.run import build_module

    recipe = load_recipe("training/tiny.yaml")
    wrapper = build_module(recipe)
    ckpt = save_checkpoint(
        tmp_path / "m.pt",
        wrapper.deployable(),
        wrapper_state=wrapper.state_dict(),
        recipe=json.loads(json.dumps(recipe, default=str)),
        labels=list(LABELS),
    )
    out = tmp_path / "flow.json"
    rc = main(
        ["eval-flow", str(ckpt), "--clips-per-class", "1", "--json", str(out), "--no-progress"]
    )
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["n_clips"] == 12 and r["grid"] == [16, 16]
    # The untrained flow net's last conv starts at zero: it predicts zero flow exactly.
    assert r["epe"] == r["epe_zero_flow"] > 0
    assert 0 < r["moving_fraction"] < 1

    bare = save_checkpoint(tmp_path / "bare.pt", wrapper.deployable())
    assert main(["eval-flow", str(bare), "--no-progress"]) == 2
