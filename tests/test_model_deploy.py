"""The deployable network: no side-branch parameters, same logits as the training network,
ONNX export (opset 17, dynamic batch) equal to PyTorch under ONNX Runtime."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from hcml.export.reference import randomize_
from hcml.model import HCMLTrainingWrapper, create_model

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


def _wrapper(name: str = "hcml_tiny", frames: int = 4) -> HCMLTrainingWrapper:
    torch.manual_seed(0)
    return HCMLTrainingWrapper(randomize_(create_model(name, frames=frames)))


def test_deployable_has_no_side_branch_parameters():
    w = _wrapper()
    net = w.deployable()
    assert net is w.model
    names = [n for n, _ in net.named_parameters()]
    assert not any("flow" in n or "head" in n and "fc" not in n for n in names)
    fresh = create_model("hcml_tiny", frames=4)
    assert {k: v.shape for k, v in net.state_dict().items()} == {
        k: v.shape for k, v in fresh.state_dict().items()
    }
    side = {n for n, _ in w.named_parameters()} - {f"model.{n}" for n in names}
    assert side and all(n.startswith(("flow_net.", "heads.")) for n in side)
    assert set(w.heads) == {"1", "2", "3"}  # each motion level predicts the level below (P^0 first)


def test_training_forward_outputs_and_same_logits():
    w = _wrapper().eval()
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        out = w(x, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(out["logits"], w.deployable()(x), rtol=0, atol=0)
    assert out["logits"].shape == (2, 12)
    assert {lv: tuple(p.shape) for lv, p in out["motion"].items()} == {
        1: (2, 8, 4, 8, 8), 2: (2, 16, 4, 4, 4), 3: (2, 32, 4, 2, 2),
    }  # fmt: skip
    assert out["flow"].shape == (2, 2, 4, 16, 16) and out["p0"].shape[2:] == (4, 16, 16)
    assert set(out["rec"]) == {"rec", "photometric", "smoothness", "mask"}
    assert set(out["contrastive"]) == {1, 2, 3}
    assert all(torch.isfinite(v) for v in out["contrastive"].values())


def test_training_backward_reaches_every_branch():
    w = _wrapper().train()
    out = w(torch.randn(2, 3, 4, 32, 32), generator=torch.Generator().manual_seed(0))
    loss = (
        torch.nn.functional.cross_entropy(out["logits"], torch.tensor([0, 1]))
        + out["rec"]["rec"]
        + sum(out["contrastive"].values())
    )
    loss.backward()
    assert w.flow_net.to_flow.weight.grad.abs().sum() > 0
    assert all(h.w1.weight.grad.abs().sum() > 0 for h in w.heads.values())
    assert w.model.motion["1"].pmb.conv[0].weight.grad.abs().sum() > 0


def test_no_contrastive_wrapper():
    w = HCMLTrainingWrapper(create_model("hcml_nocl_tiny", frames=4))
    assert len(w.heads) == 0 and w.flow_net is not None
    assert HCMLTrainingWrapper(create_model("tsn_tiny")).flow_net is None


def _export(model: torch.nn.Module, x: torch.Tensor, path) -> None:
    """The TorchScript exporter (dynamo=False): fast and reliable on these graphs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its deprecation / constant-folding notes
        _torchscript_export(model, x, path)


def _torchscript_export(model: torch.nn.Module, x: torch.Tensor, path) -> None:
    torch.onnx.export(
        model,
        (x,),
        str(path),
        dynamo=False,
        opset_version=17,
        input_names=["frames"],
        output_names=["logits"],
        dynamic_axes={"frames": {0: "batch"}, "logits": {0: "batch"}},
    )


@pytest.mark.parametrize(
    ("name", "frames", "size"),
    [("hcml_tiny", 8, 112), ("hcml_tiny", 16, 112), ("hcml_resnet18", 8, 64),
     ("hcml_resnet18", 16, 64)],
)  # fmt: skip
def test_onnx_export_matches_torch(tmp_path, name, frames, size):
    torch.manual_seed(0)
    model = randomize_(create_model(name, frames=frames))
    path = tmp_path / f"{name}.onnx"
    _export(model, torch.randn(2, 3, frames, size, size), path)
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    assert {op.domain for op in graph.graph.node} <= {"", "ai.onnx"}  # no custom ops
    assert graph.opset_import[0].version == 17
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):  # dynamic batch, neither equal to the traced 2
        x = torch.randn(
            batch, 3, frames, size, size, generator=torch.Generator().manual_seed(batch)
        )
        with torch.no_grad():
            want = model(x).numpy()
        (got,) = sess.run(None, {"frames": x.numpy()})
        assert got.shape == (batch, 12)
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
