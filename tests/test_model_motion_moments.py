"""MotionMoments: the local turning (L) and expansion (E) read off a cost volume."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hcml.model.cost_volume import cost_volume
from hcml.model.motion import MotionMoments

H = W = 24


def _pair(angle_deg: float = 0.0, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random smooth features a [1, 32, H, W] and b = a moved by a rotation (clockwise on
    screen for angle > 0: x right, y down) and scaling about the centre, on a disc of radius 8."""
    g = torch.Generator().manual_seed(0)
    a = F.interpolate(torch.randn(1, 32, H // 3, W // 3, generator=g), size=(H, W),
                      mode="bilinear", align_corners=False)  # fmt: skip
    c = (H - 1) / 2
    ys, xs = torch.meshgrid(torch.arange(H) - c, torch.arange(W) - c, indexing="ij")
    t = math.radians(angle_deg)
    # b(p) = a(M^-1 p): the content at p came from the rotated and scaled-back position
    src_x = (math.cos(t) * xs + math.sin(t) * ys) / scale
    src_y = (-math.sin(t) * xs + math.cos(t) * ys) / scale
    grid = torch.stack([(src_x + c) / c - 1, (src_y + c) / c - 1], -1)[None]
    b = F.grid_sample(a, grid, mode="bilinear", align_corners=True)
    inside = (xs**2 + ys**2 <= 64).float()
    return a * inside, b * inside  # a static (zero) background around the moving disc


def _centre_moments(angle_deg=0.0, scale=1.0) -> tuple[float, float]:
    a, b = _pair(angle_deg, scale)
    m = MotionMoments(max_displacement=2, stride=1, radius=6)(cost_volume(a, b, 2, 1))
    assert m.shape == (1, 2, H, W)
    return float(m[0, 0, H // 2, W // 2]), float(m[0, 1, H // 2, W // 2])


@pytest.mark.parametrize("angle", [8.0, 15.0])
def test_turning_sense_is_the_sign_of_l(angle):
    cw, _ = _centre_moments(angle)
    ccw, _ = _centre_moments(-angle)
    assert cw > 2.0 and ccw < -2.0  # cells x cells: about 4.9 at 8 degrees, 8.3 at 15
    assert abs(cw + ccw) < 0.3 * abs(cw)  # mirror-symmetric to within the resampling


def test_expansion_is_the_sign_of_e_and_leaves_l_near_zero():
    turn_in, grow = _centre_moments(scale=1.15)
    turn_out, shrink = _centre_moments(scale=1 / 1.15)
    assert grow > 2.0 and shrink < -2.0
    assert max(abs(turn_in), abs(turn_out)) < 0.3 * min(grow, -shrink)


def test_translation_gives_neither():
    a, _ = _pair()
    b = torch.roll(a, shifts=1, dims=3)  # everything one cell to the right
    m = MotionMoments(2, 1, 6)(cost_volume(a, b, 2, 1))[0, :, 6:-6, 6:-6]
    assert m.abs().max() < 0.3  # vs > 2 for the turning and zooming discs above


def test_no_parameters_and_exportable_shapes():
    mm = MotionMoments(2, 1, 2)
    assert not list(mm.parameters())
    out = mm(torch.rand(3, 25, 7, 9))
    assert out.shape == (3, 2, 7, 9) and torch.isfinite(out).all()


def test_channel_softmax_is_written_out_for_onnx_runtime(tmp_path):
    """The soft-argmax's softmax over displacements equals torch.softmax and exports without a
    Softmax node (ONNX Runtime's CPU Softmax on a non-last axis runs through a transpose; the
    rewrite took the shipped step graph from 2.66 to 2.25 ms, docs/ENGINES.md)."""
    import onnx
    import onnxruntime as ort

    from hcml.model.motion import _softmax_channels

    x = torch.randn(2, 25, 7, 9) * 20  # cv / tau reaches +-20
    assert torch.allclose(_softmax_channels(x), torch.softmax(x, 1), atol=1e-6)
    mm = MotionMoments(2, 1, 2).eval()
    path = tmp_path / "moments.onnx"
    torch.onnx.export(mm, (torch.rand(1, 25, 7, 9),), str(path), dynamo=False, opset_version=17,
                      input_names=["cv"], dynamic_axes={"cv": {0: "batch"}})  # fmt: skip
    assert "Softmax" not in {n.op_type for n in onnx.load(str(path)).graph.node}
    cv = torch.rand(3, 25, 7, 9) * 2 - 1
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"cv": cv.numpy()}
    )[0]
    assert abs(got - mm(cv).numpy()).max() < 1e-4
