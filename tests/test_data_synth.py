"""The synthetic generator: determinism, motion direction per class, ranges, reversal twins."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hcml.data.synth import SyntheticMotionDataset, clip_seed, render_batch, render_clip
from hcml.data.synth_stats import flow_stats
from hcml.labels import LABELS, REVERSAL_TWIN

CLASS = {name: i for i, name in enumerate(LABELS)}


def _main_flow(name: str, seed: int) -> dict[str, float]:
    """Flow stats of the main objects (no distractor, no sensor noise)."""
    clip = render_clip(CLASS[name], seed, with_flow=True, noise=False, distractor=False)
    return flow_stats(clip.flow)


def test_same_seed_same_bytes_different_seed_differs():
    a = render_clip(5, 123, with_flow=True)
    b = render_clip(5, 123, with_flow=True)
    c = render_clip(5, 124)
    assert a.frames.tobytes() == b.frames.tobytes()
    assert np.array_equal(a.flow, b.flow)
    assert a.frames.tobytes() != c.frames.tobytes()
    assert a.frames.shape == (16, 112, 112, 3) and a.frames.dtype == np.uint8
    assert a.flow.shape == (15, 112, 112, 2) and a.flow.dtype == np.float32


@pytest.mark.parametrize("seed", range(4))
def test_every_class_moves_the_right_way(seed):
    s = {name: _main_flow(name, seed) for name in LABELS}
    assert s["move_left"]["dx"] < -0.9 and abs(s["move_left"]["dy"]) < 0.1
    assert s["move_right"]["dx"] > 0.9 and abs(s["move_right"]["dy"]) < 0.1
    assert s["move_up"]["dy"] < -0.9 and abs(s["move_up"]["dx"]) < 0.1
    assert s["move_down"]["dy"] > 0.9 and abs(s["move_down"]["dx"]) < 0.1
    assert s["rotate_cw"]["curl"] > 0.05 and s["rotate_ccw"]["curl"] < -0.05
    assert s["zoom_in"]["div"] > 0.03 and s["zoom_out"]["div"] < -0.03


@pytest.mark.parametrize("seed", range(4))
def test_static_has_no_motion_beyond_jitter(seed):
    clip = render_clip(CLASS["static"], seed, with_flow=True)
    assert np.linalg.norm(clip.flow, axis=-1).max() < 0.5
    assert "distractor_px" not in clip.params


@pytest.mark.parametrize("seed", range(4))
def test_approach_and_separate_change_the_distance(seed):
    for name, sign in (("approach", -1), ("separate", 1)):
        clip = render_clip(CLASS[name], seed, with_flow=True, noise=False, distractor=False)
        # Moving pixels split by the motion axis: the two objects move in opposite directions.
        flow = clip.flow[0]
        moving = np.linalg.norm(flow, axis=-1) > 0.95
        axis = np.deg2rad(clip.params["axis_deg"])
        u = np.array([np.cos(axis), np.sin(axis)])
        along = flow[moving] @ u
        ys, xs = np.nonzero(moving)
        pos = np.stack([xs, ys], -1) @ u
        # separate: the pixels moving toward +u lie on the +u side; approach: on the -u side.
        plus, minus = pos[along > 0.5], pos[along < -0.5]
        assert len(plus) > 20 and len(minus) > 20
        assert sign * (plus.mean() - minus.mean()) > 10


@pytest.mark.parametrize("seed", range(3))
def test_flip_turns_the_object_upside_down(seed):
    clip = render_clip(CLASS["flip_upside_down"], seed, with_flow=True, noise=False)
    # Pixels of the object move vertically toward its centre line, then away: net vertical
    # extent goes through a squash. The flow's vertical divergence is negative in the first half.
    dvy = np.gradient(clip.flow[..., 1], axis=1)
    moving = np.abs(clip.flow[..., 1]) > 0.05
    per_frame = [dvy[t][moving[t]].mean() for t in range(len(dvy)) if moving[t].sum() > 20]
    assert per_frame and min(per_frame) < -0.05 and max(per_frame) > 0.05


@pytest.mark.parametrize("name", ["move_right", "rotate_cw", "zoom_in", "separate", "approach"])
def test_speeds_within_the_spec_ranges(name):
    for seed in range(10):
        p = render_clip(CLASS[name], seed).params
        if name == "move_right":
            assert 1.0 <= p["speed_px"] <= 4.0
        elif name == "rotate_cw":
            assert 3.0 <= p["deg_per_frame"] <= 12.0
        elif name == "zoom_in":
            assert 0.02 <= p["scale_per_frame"] <= 0.06
        else:
            assert all(1.0 <= v <= 3.0 for v in p["speeds_px"])
        assert p.get("distractor_px", 0.0) < 1.0


def test_ground_truth_flow_warps_frame_t_plus_1_onto_frame_t():
    clip = render_clip(CLASS["rotate_cw"], 11, with_flow=True, noise=False)
    f0, f1 = clip.frames[3].astype(np.float32), clip.frames[4].astype(np.float32)
    flow = clip.flow[3]
    h, w = flow.shape[:2]
    ys, xs = np.nonzero(np.linalg.norm(flow, axis=-1) > 0.5)
    tx, ty = xs + flow[ys, xs, 0], ys + flow[ys, xs, 1]
    ok = (tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)
    x0, y0 = np.floor(tx[ok]).astype(int), np.floor(ty[ok]).astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (tx[ok] - x0)[:, None], (ty[ok] - y0)[:, None]
    warped = (
        f1[y0, x0] * (1 - fx) * (1 - fy)
        + f1[y0, x1] * fx * (1 - fy)
        + f1[y1, x0] * (1 - fx) * fy
        + f1[y1, x1] * fx * fy
    )
    err_warp = np.abs(warped - f0[ys[ok], xs[ok]]).mean()
    err_static = np.abs(f1[ys[ok], xs[ok]] - f0[ys[ok], xs[ok]]).mean()
    assert err_warp < 0.5 * err_static  # the flow explains most of the change


def test_reversal_twins_are_time_reversals_in_distribution():
    # Reversing a clip of a class's twin gives the class's statistics, clip for clip seeds apart.
    for name in ("move_left", "rotate_cw", "zoom_in", "approach"):
        twin = REVERSAL_TWIN[name]
        a = np.array([_main_flow(name, s)["dx" if "move" in name else "speed"] for s in range(12)])
        b = np.array([_main_flow(twin, s)["dx" if "move" in name else "speed"] for s in range(12)])
        if "move" in name:  # time reversal flips the sign of the velocity
            np.testing.assert_allclose(np.sort(a), np.sort(-b), rtol=0.15, atol=0.3)
        else:  # speeds match in distribution
            assert abs(np.median(a) - np.median(b)) < 0.35 * max(np.median(a), 0.1)
    # Exactly: the twin with the same seed plays the same trajectory backwards.
    fwd = render_clip(CLASS["zoom_in"], 5, noise=False).params["scale_per_frame"]
    back = render_clip(CLASS["zoom_out"], 5, noise=False).params["scale_per_frame"]
    assert fwd == back


def test_dataset_stream_is_deterministic_balanced_and_worker_independent():
    ds = SyntheticMotionDataset(seed=3, frames=4, size=32, length=24)
    one = list(ds)
    two = list(torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2))
    assert [c for _, c in one] == [i % 12 for i in range(24)]
    assert sorted((c, x.numpy().tobytes()) for x, c in one) == sorted(
        (c, x.numpy().tobytes()) for x, c in two
    )
    assert one[0][0].shape == (4, 32, 32, 3) and one[0][0].dtype == torch.uint8
    frames, labels = render_batch(3, seed=3, frames=4, size=32)
    assert frames.shape == (3, 4, 32, 32, 3) and list(labels) == [0, 1, 2]
    assert np.array_equal(frames[1], render_clip(1, clip_seed(3, 1, 1), 4, 32).frames)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="class_id"):
        render_clip(12, 0)
    with pytest.raises(ValueError, match="frames"):
        render_clip(0, 0, frames=1)
