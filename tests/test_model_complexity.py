"""FLOPs/params report: branches add up, the cost volume is counted, tiny stays cheap."""

from __future__ import annotations

import pytest
import torch

from hcml.model import create_model
from hcml.model.complexity import complexity_report, format_table, report
from hcml.model.cost_volume import CostVolume


def test_branches_add_up():
    r = report("hcml_tiny", frames=4, size=64)
    f, p = r["flops"], r["params"]
    assert f["total"] == f["backbone"] + f["motion"] + f["head"] and f["other"] == 0
    assert f["motion"] == sum(f["motion_per_level"].values()) > 0
    assert f["side"]["flow_net"] > 0 and f["side"]["contrastive"] > 0
    assert p["total"] == p["backbone"] + p["motion"] + p["head"]
    assert p["side"]["total"] == p["side"]["flow_net"] + p["side"]["contrastive"] > 0
    assert r["motion_overhead_pct"] == pytest.approx(
        100 * f["motion"] / (f["backbone"] + f["head"])
    )
    assert "hcml_tiny" in format_table([r])


def test_cost_volume_is_counted_and_restored():
    m = create_model("hcml_tiny", levels=[3], frames=2)
    r = complexity_report(m, size=112, side_branches=False)
    cv = [mod for mod in m.modules() if isinstance(mod, CostVolume)]
    assert [c.impl for c in cv] == ["auto"]  # restored after counting
    # level 3 at 112: 7 x 7 positions, 32 reduced channels, 49 displacements, 2 frames
    assert r["flops"]["motion_per_level"][3] >= 2 * 2 * 7 * 7 * 32 * 49


def test_tiny_is_under_a_tenth_of_a_gflop_per_frame():
    r = report("hcml_tiny", frames=2)
    assert r["input_size"] == [112, 112] and r["flops"]["per_frame"] < 0.1e9
    tsn = report("tsn_tiny", frames=2)
    assert tsn["flops"]["motion"] == 0 and tsn["flops"]["backbone"] == r["flops"]["backbone"]


def test_rejects_other_modules():
    with pytest.raises(TypeError):
        complexity_report(torch.nn.Linear(2, 2), 2, 8)
