"""Registry, default configs, baselines, and the torchvision-faithful ResNets."""

from __future__ import annotations

import json

import pytest
import torch

from hcml.model import HCMLNet, create_model, default_cfg, list_models
from hcml.model.motion import TemporalShift
from hcml.model.resnet import resnet18, resnet50

REQUIRED_KEYS = {
    "name", "num_classes", "frames", "input_size", "mean", "std", "levels", "beta",
    "max_displacement", "stride",
}  # fmt: skip


def test_names_and_default_cfg():
    names = list_models()
    for bb in ("tiny", "resnet18", "resnet50"):
        for v in ("hcml", "tsn", "tsm", "fdiff", "mscv", "hcml_nocl"):
            assert f"{v}_{bb}" in names
    m = create_model("hcml_tiny")
    cfg = m.default_cfg
    assert set(cfg) >= REQUIRED_KEYS and m.pretrained_cfg is cfg
    assert cfg["name"] == "hcml_tiny" and cfg["num_classes"] == 12 and cfg["frames"] == 16
    assert cfg["input_size"] == (3, 112, 112) and cfg["levels"] == [1, 2, 3]
    assert (cfg["max_displacement"], cfg["stride"]) == (6, 2)
    json.dumps(cfg)  # plain data: travels into the model card as is
    assert default_cfg("hcml_tiny")["frames"] == 16


def test_overrides_and_errors():
    m = create_model("hcml_tiny", num_classes=5, frames=8, levels=[2], beta=2, input_size=(64, 64))
    cfg = m.default_cfg
    assert (cfg["num_classes"], cfg["frames"], cfg["levels"], cfg["input_size"]) == (
        5, 8, [2], (3, 64, 64),
    )  # fmt: skip
    assert list(m.motion) == ["2"] and m.motion["2"].motion_channels == 32
    assert create_model("hcml_tiny", train={"tau": 0.2}).default_cfg["train"]["tau"] == 0.2
    with pytest.raises(TypeError, match="unknown option 'bogus'"):
        create_model("hcml_tiny", bogus=1)
    with pytest.raises(KeyError, match="unknown model"):
        create_model("hcml_huge")
    with pytest.raises(ValueError, match="out of range"):
        create_model("hcml_tiny", levels=[4])


@pytest.mark.parametrize("name", ["hcml_tiny", "tsn_tiny", "tsm_tiny", "fdiff_tiny", "mscv_tiny"])
def test_tiny_variants_forward(name):
    torch.manual_seed(0)
    m = create_model(name, num_classes=7, frames=4).eval()
    x = torch.randn(2, 3, 4, 48, 48)
    with torch.no_grad():
        y = m(x)
        feats = m.forward_features(x)
    assert y.shape == (2, 7) and torch.isfinite(y).all()
    assert [f.shape[1:3] for f in feats] == [(16, 4), (32, 4), (64, 4), (128, 4)]
    assert [f.shape[-1] for f in feats] == [24, 12, 6, 3]


def test_baseline_structure():
    params = lambda m: {k: v.shape for k, v in m.state_dict().items()}
    assert len(create_model("tsn_tiny").motion) == 0
    assert list(create_model("mscv_tiny").motion) == ["1"]
    assert params(create_model("hcml_nocl_tiny")) == params(create_model("hcml_tiny"))
    assert create_model("hcml_nocl_tiny").default_cfg["train"]["contrastive"] is False
    tsm = create_model("tsm_tiny")
    assert sum(isinstance(m, TemporalShift) for m in tsm.modules()) == 7
    assert params(create_model("tsn_tiny")).keys() != params(tsm).keys()
    assert sum(v.numel() for v in create_model("tsn_tiny").parameters()) == sum(
        v.numel() for v in tsm.parameters()
    )
    assert create_model("fdiff_tiny").streaming_depth() == 1


def test_temporal_shift():
    x = torch.arange(2 * 3 * 8, dtype=torch.float32).view(2 * 3, 8, 1, 1)  # B=2, T=3, C=8
    y = TemporalShift.shift(x, 3, fold_div=4).view(2, 3, 8)
    v = x.view(2, 3, 8)
    assert torch.equal(y[:, :2, :2], v[:, 1:, :2]) and (y[:, 2, :2] == 0).all()
    assert torch.equal(y[:, 1:, 2:4], v[:, :2, 2:4]) and (y[:, 0, 2:4] == 0).all()
    assert torch.equal(y[:, :, 4:], v[:, :, 4:])


def test_resnets_match_torchvision_layout():
    r18 = resnet18()
    assert sum(p.numel() for p in r18.parameters()) == 11_689_512  # torchvision's resnet18
    keys = list(r18.state_dict())
    assert keys[:6] == [
        "conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
        "bn1.num_batches_tracked",
    ]  # fmt: skip
    assert "layer2.0.downsample.0.weight" in keys and "layer4.1.bn2.running_var" in keys
    assert keys[-2:] == ["fc.weight", "fc.bias"]
    r50 = resnet50()
    assert sum(p.numel() for p in r50.parameters()) == 25_557_032  # torchvision's resnet50
    assert r50.layer1[0].conv2.stride == (1, 1) and r50.layer2[0].conv2.stride == (2, 2)  # v1.5
    assert r18.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 1000)


@pytest.mark.parametrize("name", ["hcml_resnet18", "hcml_resnet50"])
def test_resnet_hcml_forward(name):
    torch.manual_seed(0)
    m = create_model(name, frames=2).eval()
    assert isinstance(m, HCMLNet) and m.default_cfg["input_size"] == (3, 224, 224)
    assert not isinstance(m.backbone.fc, torch.nn.Linear)  # the HCML head replaces it
    with torch.no_grad():
        assert m(torch.randn(1, 3, 2, 64, 64)).shape == (1, 12)
