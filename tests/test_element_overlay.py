"""hcmloverlay: draws the label box and motion picture, reading hcmlaction's meta."""

from __future__ import annotations

import numpy as np
from gst_helpers import run_pipeline

from hcml.data.video import read_video
from hcml.stream.overlay import OverlayPainter


def test_painter_draws_label_box_and_motion_picture():
    painter = OverlayPainter(thumb=16)  # 96 px wide: a step of 6, a 16 x 11 thumbnail
    a = np.full((64, 96, 3), 100, np.uint8)
    painter.paint(a.copy(), None, 0.0)  # first frame: no motion yet
    b = a.copy()
    b[20:40, 70:90] = 250  # something moved in the top-right area
    out = b.copy()
    painter.paint(out, "move_left", 0.8)
    assert not np.array_equal(out[:30, :60], b[:30, :60])  # the label box was drawn
    thumb = out[:11, 96 - 16 :, 0]
    assert thumb.max() > 200 and thumb.min() < 50  # bright where it moved, dark elsewhere
    assert np.array_equal(out[40:, :60], b[40:, :60])  # nothing else touched


def test_annotated_output_file_has_the_overlay(synth_clips, tiny_card, tmp_path):
    src = synth_clips / "move_up" / "move_up_0000.mp4"
    out = tmp_path / "annotated.mp4"
    desc = (f"filesrc location={src} ! decodebin ! videoconvert ! hcmlaction model={tiny_card} "
            f"stride=4 ! videoconvert ! video/x-raw,format=RGB ! hcmloverlay ! videoconvert ! "
            f"video/x-raw,format=I420 ! x264enc qp-max=10 speed-preset=ultrafast ! mp4mux ! "
            f"filesink location={out}")  # fmt: skip
    run = run_pipeline(desc)
    assert run.eos and not run.errors and len(run.messages) == 3
    original, annotated = read_video(src), read_video(out)
    assert annotated.shape == original.shape
    box = (slice(0, 20), slice(0, 40))
    diff = np.abs(annotated.astype(int) - original.astype(int))
    # Before the first prediction (frame 7) only the motion picture is drawn, not the label.
    assert diff[0][box].mean() < 12
    assert diff[-1][box].mean() > 25
