"""Generator styles (issue 16): the style-shift set shares no photo, shape, texture or background
kind with training; styled clips are deterministic, their flow is exact (camera included) and
every label's motion, taken relative to the background, is the label's; rendering cost."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time

import numpy as np
import pytest

from hcml.data.synth import STYLES, clip_seed, get_style, h264_roundtrip, render_clip
from hcml.data.synth_stats import flow_stats, relative_flow
from hcml.data.textures import load_bank
from hcml.labels import LABELS

CLASS = {name: i for i, name in enumerate(LABELS)}


def _looks(style: str, seed: int, per_class: int) -> dict[str, set]:
    """Every clip's photo hashes, shapes, texture kinds and background kind, pooled."""
    out: dict[str, set] = {"photos": set(), "shapes": set(), "textures": set(), "bgs": set()}
    for c in range(len(LABELS)):
        for i in range(per_class):
            p = render_clip(c, clip_seed(seed, c, i), 4, 48, style=style).params
            out["photos"].update(p["photos"])
            out["shapes"].update(p["shapes"])
            out["textures"].update(p["textures"])
            out["bgs"].add(p["background"])
    return out


def test_style_shift_shares_no_photo_shape_texture_or_background_with_train():
    bank = load_bank()
    train_src = {t.source for t in bank.split("train")}
    shift_src = {t.source for t in bank.split("style_shift")}
    assert train_src and shift_src and not train_src & shift_src
    # Never the still images of opencv-doc (the independent check's textures): only these kinds.
    for src in train_src | shift_src:
        assert src.split(":")[0] in ("sklearn", "video", "wallpaper"), src
    assert {"sklearn:china.jpg", "sklearn:flower.jpg"} <= train_src
    assert any(s.startswith("video:tree_320x240.mp4") for s in shift_src)
    # Hashes recomputed from the pixels: no photo of one split is a photo of the other.
    sha = {t.source: t.sha for t in bank.textures}
    for t in bank.textures:
        assert t.sha == hashlib.sha1(np.rint(t.image).astype(np.uint8).tobytes()).hexdigest()[:12]
    assert not {sha[s] for s in train_src} & {sha[s] for s in shift_src}
    # Without the optional wallpapers, each split keeps its fixed sources.
    bare = load_bank(use_wallpapers=False)
    assert {t.source.split(":")[0] for t in bare.split("train")} == {"sklearn"}
    assert {t.source.split(":")[0] for t in bare.split("style_shift")} == {"video"}

    train, shift = _looks("train", 0, 4), _looks("style-shift", 1, 4)
    # Both sets use photos, and each only its own split's.
    assert train["photos"] and shift["photos"]
    assert train["photos"] <= {sha[s] for s in train_src}
    assert shift["photos"] <= {sha[s] for s in shift_src}
    assert not train["photos"] & shift["photos"]
    assert not train["shapes"] & shift["shapes"], train["shapes"] & shift["shapes"]
    assert not train["textures"] & shift["textures"] - {"photo"}
    assert not train["bgs"] & shift["bgs"], train["bgs"] & shift["bgs"]
    # The presets themselves are disjoint, not only the clips drawn here.
    a, b = STYLES["train"], STYLES["style_shift"]
    assert not set(a.shapes) & set(b.shapes) and not set(a.backgrounds) & set(b.backgrounds)
    assert set(a.object_textures) & set(b.object_textures) == {"photo"}


@pytest.mark.parametrize("style", ["train", "style-shift"])
def test_styled_rendering_is_deterministic_per_seed(style):
    a = render_clip(6, clip_seed(5, 6, 2), 8, 64, with_flow=True, style=style)
    b = render_clip(6, clip_seed(5, 6, 2), 8, 64, with_flow=True, style=style)
    c = render_clip(6, clip_seed(5, 6, 3), 8, 64, style=style)
    assert a.frames.tobytes() == b.frames.tobytes() and np.array_equal(a.flow, b.flow)
    assert a.params == b.params
    assert a.frames.tobytes() != c.frames.tobytes()
    assert a.frames.shape == (8, 64, 64, 3) and a.flow.shape == (7, 64, 64, 2)
    json.dumps(a.params)  # params.jsonl-serialisable


def _panning(style: str):
    """The style with the camera always panning and no appearance knobs (for exact checks)."""
    return dataclasses.replace(get_style(style), pan_prob=1.0)


@pytest.mark.parametrize("style", ["train", "style-shift"])
@pytest.mark.parametrize("seed", range(2))
def test_every_class_moves_the_right_way_relative_to_the_background(style, seed):
    st = _panning(style)
    s = {}
    for name in LABELS:
        clip = render_clip(
            CLASS[name], seed, with_flow=True, noise=False, distractor=False, style=st
        )
        cam = np.asarray(clip.params["camera_px"])
        if name != "static":  # the camera did pan: the screen flow is not the label's
            assert np.linalg.norm(cam[-1] - cam[0]) > 1.0
        s[name] = flow_stats(relative_flow(clip.flow, cam))
    assert s["move_left"]["dx"] < -0.9 and abs(s["move_left"]["dy"]) < 0.1
    assert s["move_right"]["dx"] > 0.9 and abs(s["move_right"]["dy"]) < 0.1
    assert s["move_up"]["dy"] < -0.9 and abs(s["move_up"]["dx"]) < 0.1
    assert s["move_down"]["dy"] > 0.9 and abs(s["move_down"]["dx"]) < 0.1
    assert s["rotate_cw"]["curl"] > 0.05 and s["rotate_ccw"]["curl"] < -0.05
    assert s["zoom_in"]["div"] > 0.03 and s["zoom_out"]["div"] < -0.03


@pytest.mark.parametrize("style", ["train", "style-shift"])
def test_static_stays_within_the_jitter_bound_with_camera_shake(style):
    for seed in range(4):
        clip = render_clip(CLASS["static"], seed, 16, 64, with_flow=True, style=style)
        assert "pan_px" not in clip.params and "distractor_px" not in clip.params
        assert np.linalg.norm(clip.flow, axis=-1).max() < 0.5


@pytest.mark.parametrize("style", ["train", "style-shift"])
def _warp_error(f0: np.ndarray, f1: np.ndarray, flow: np.ndarray) -> float:
    """Mean |frame t+1 sampled at x + flow(x) - frame t| over every pixel that stays inside."""
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].reshape(2, -1)
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
    return float(np.abs(warped - f0[ys[ok], xs[ok]]).mean())


@pytest.mark.parametrize("style", ["train", "style-shift"])
def test_flow_with_a_panning_camera_warps_frame_t_plus_1_onto_frame_t(style):
    # Rings: a textured background that bilinear warping reproduces well (photos and per-pixel
    # noise lose detail to the interpolation itself, whatever the flow).
    st = dataclasses.replace(get_style(style), pan_prob=1.0, backgrounds=("rings",))
    err, err_zero, err_objects = 0.0, 0.0, 0.0
    for seed in (11, 12):
        clip = render_clip(CLASS["rotate_cw"], seed, with_flow=True, noise=False, style=st)
        f0, f1 = clip.frames[3].astype(np.float32), clip.frames[4].astype(np.float32)
        flow = clip.flow[3]
        assert np.abs(flow[0, 0]).sum() > 0.05  # the background itself moves
        err += _warp_error(f0, f1, flow)
        err_zero += _warp_error(f0, f1, np.zeros_like(flow))
        # The objects' motion alone (the camera's step taken out) explains much less.
        err_objects += _warp_error(f0, f1, relative_flow(clip.flow, clip.params["camera_px"])[3])
    assert err < 0.4 * err_zero and err < 0.4 * err_objects, (err, err_zero, err_objects)


def test_crf_and_encoding_follow_the_style():
    raw = render_clip(3, clip_seed(0, 3, 0), 8, 64, style="train")
    assert STYLES["train"].crf[0] <= raw.params["crf"] <= STYLES["train"].crf[1]
    enc = render_clip(3, clip_seed(0, 3, 0), 8, 64, style="train", encode=True)
    assert enc.frames.shape == raw.frames.shape and enc.frames.dtype == np.uint8

    def psnr(a, b):
        mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
        return 10 * np.log10(255**2 / max(mse, 1e-9))

    assert np.array_equal(enc.frames, h264_roundtrip(raw.frames, raw.params["crf"]))
    assert (
        psnr(h264_roundtrip(raw.frames, 12), raw.frames)
        > psnr(h264_roundtrip(raw.frames, 36), raw.frames) + 3
    )
    assert render_clip(3, 0, 4, 32).params["crf"] == 12  # classic: write_video's CRF


def test_unknown_style_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="classic, train, style-shift"):
        render_clip(0, 0, style="fancy")


def test_synth_spec_and_datasets_render_the_style():
    from hcml.data.datasets import DatasetError, open_dataset

    src = open_dataset("synth:seed=2,clips=1,frames=4,size=32,style=style-shift")
    x, y = src.load(7)
    ref = render_clip(7, clip_seed(2, 7, 7), 4, 32, style="style_shift", encode=True).frames
    assert y == 7 and np.array_equal(x.numpy(), ref)
    with pytest.raises(DatasetError, match="style"):
        open_dataset("synth:style=fancy")


def test_hcml_synth_writes_styled_clips_at_their_crf(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "shift"
    cmd = [sys.executable, "-m", "hcml.cli", "synth", str(out), "--style", "style-shift"]
    cmd += ["--clips-per-class", "1", "--frames", "4", "--size", "32", "--seed", "3", "--quiet"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in (out / "params.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and {p["style"] for p in rows} == {"style_shift"}
    assert all(
        STYLES["style_shift"].crf[0] <= p["crf"] <= STYLES["style_shift"].crf[1] for p in rows
    )
    assert len({p["crf"] for p in rows}) > 1  # drawn per clip
    bad = subprocess.run(cmd[:6] + ["bogus"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_styled_clips_render_fast_enough_for_training():
    """ms a 16x112x112 clip, styled vs classic in the same process (the machine's load cancels)."""
    times = {}
    for style in ("classic", "train", "style-shift"):
        render_clip(0, 0, style=style)  # warm: the texture bank
        start = time.perf_counter()
        for c in range(6):
            render_clip(c, clip_seed(9, c, 0), style=style, encode=style != "classic")
        times[style] = (time.perf_counter() - start) / 6 * 1000
    print("ms per 16x112x112 clip:", {k: round(v, 1) for k, v in times.items()})
    # Styled clips (H.264 round trip included) cost at most twice a classic one.
    assert times["train"] < 2.0 * times["classic"] and times["style-shift"] < 2.0 * times["classic"]


def test_a_recipe_trains_on_a_cached_styled_set(tmp_path, monkeypatch):
    """data.train as a synth: spec with style= and cache= (the recipe key) renders once."""
    import yaml

    from hcml.data.datasets import RenderedClips, open_dataset
    from hcml.training.recipe import validate_recipe

    monkeypatch.setenv("HCML_CACHE", str(tmp_path))
    spec = "synth:seed=1,clips=1,frames=4,size=32,style=train,cache=32"
    with open("training/default.yaml") as f:
        raw = yaml.safe_load(f)
    raw["data"]["train"] = spec
    assert validate_recipe(raw)["data"]["train"] == spec
    src = open_dataset(spec)
    assert isinstance(src, RenderedClips) and len(src) == 12
    assert src.path.name.endswith(f"-train-{load_bank().fingerprint}.npy")  # bank in the name
    x, y = src.load(4)
    ref = render_clip(4, clip_seed(1, 4, 4), 4, 32, style="train", encode=True).frames
    assert y == 4 and np.array_equal(x.numpy(), ref)


@pytest.mark.parametrize("seed", [3, 7, 22])
def test_styled_moves_render_at_64_px(seed):
    """At 64 px the speed cap makes the start range one point, which rounding put below its
    lower end ("high - low < 0" for these seeds before the fix)."""
    for class_id in (1, 2, 3, 4):  # move left/right/up/down
        clip = render_clip(class_id, seed, frames=16, size=64, style="train")
        assert clip.frames.shape == (16, 64, 64, 3)
