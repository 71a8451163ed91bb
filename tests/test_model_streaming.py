"""The streaming property: Z^l_t depends only on frames t .. t + p_l (p_l = motion blocks at
levels <= l), never on earlier frames or on where the window starts."""

from __future__ import annotations

import pytest
import torch

from hcml.export.reference import randomize_
from hcml.model import create_model

T, SIZE = 7, 32


def _model(name: str = "hcml_tiny", **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return randomize_(create_model(name, frames=T, **kw))  # BN statistics that matter; eval


def _depths(model) -> list[int]:
    """p_l for each level: the frames after t that Z^l_t looks at."""
    extra = 1 if model.input_mode == "diff" else 0
    return [extra + sum(lv <= level for lv in model.levels) for level in range(model.num_levels)]


@pytest.mark.parametrize(
    ("name", "kw"),
    [
        ("hcml_tiny", {}),
        ("hcml_tiny", {"levels": [0, 2]}),
        ("hcml_tiny", {"moments_window": 8}),
        ("fdiff_tiny", {}),
        ("mscv_tiny", {}),
    ],
)
def test_features_depend_only_on_the_next_p_frames(name, kw):
    model = _model(name, **kw)
    depths = _depths(model)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 3, T, SIZE, SIZE, generator=g)
    # one batch: for every (t, p), the clip with every frame outside t..t+p replaced by noise
    cases = sorted({(t, p) for t in range(T) for p in depths if t > 0 or t + p < T - 1})
    y = x.repeat(len(cases), 1, 1, 1, 1)
    for i, (t, p) in enumerate(cases):
        for s in range(T):
            if s < t or s > t + p:
                y[i, :, s] = torch.randn(3, SIZE, SIZE, generator=g)
    with torch.no_grad():
        base = model.forward_features(x)
        pert = model.forward_features(y)
    for i, (t, p) in enumerate(cases):
        for level, depth in enumerate(depths):
            if depth == p:
                torch.testing.assert_close(
                    pert[level][i, :, t], base[level][0, :, t], rtol=0, atol=1e-5
                )
    # ...and the first pairing is real: Z^l_0 at the first motion level l changes with frame 1
    first = depths.index(1)
    y = x.clone()
    y[:, :, 1] = torch.randn(3, SIZE, SIZE, generator=g)
    with torch.no_grad():
        z = model.forward_features(y)[first]
    assert (z[:, :, 0] - base[first][:, :, 0]).abs().max() > 1e-3


def test_features_do_not_depend_on_the_window_start():
    model = _model()
    p = _depths(model)[-1]
    x = torch.randn(1, 3, T + 3, SIZE, SIZE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        a = model.forward_features(x[:, :, 0:T])
        b = model.forward_features(x[:, :, 3 : T + 3])
    for za, zb in zip(a, b, strict=True):
        # frame s of the clip is final when s + p <= T - 1 in both windows
        for s in range(3, T - p):
            torch.testing.assert_close(za[:, :, s], zb[:, :, s - 3], rtol=0, atol=1e-5)


def test_forward_is_head_of_features():
    model = _model()
    x = torch.randn(2, 3, T, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.forward_head(model.forward_features(x)[-1]))


def test_tsm_is_not_streamable():
    model = _model("tsm_tiny")
    assert not model.streamable()
    with pytest.raises(TypeError, match="not streamable"):
        model.stream_plan()


@pytest.mark.parametrize(
    ("name", "kw"), [("hcml_tiny", {}), ("hcml_tiny", {"moments_window": 8}), ("fdiff_tiny", {})]
)
def test_stream_plan_reproduces_the_clip(name, kw):
    model = _model(name, **kw)
    plan = model.stream_plan()
    assert plan.depth == model.streaming_depth()
    x = torch.randn(2, 3, T, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(plan.clip_forward(x), model(x), rtol=1e-5, atol=1e-5)
