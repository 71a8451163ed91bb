"""pipelines/*.pipeline: each parses after placeholder substitution; file, URI, annotated-output
and RTP/H.264 (loopback sender made here) pipelines run to the end on 127.0.0.1."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pytest
from gst_helpers import (
    free_udp_port,
    parse_pipelines,
    run_pipeline,
    run_pipelines,
    start_client,
    stop_client,
)

from hcml.gst.run_cli import PIPELINES, add_arguments, build_pipeline, source_description

pytestmark = pytest.mark.gst
TOUR = Path(__file__).parent / "data" / "motion_tour_112.mp4"  # 384 frames, 112x112, 25 fps
FILES = sorted(PIPELINES.glob("*.pipeline"))
# ${SRC} for a parse check, by file; anything else gets the tour clip's path.
EXAMPLE_SRC = {
    "camera.pipeline": "/dev/video0",
    "screen.pipeline": ":0",
    "rtsp-h264.pipeline": "rtsp://127.0.0.1:8554/none",
    "rtp-h264.pipeline": "udp://127.0.0.1:5004",
    "deepstream-rtp.pipeline": "udp://127.0.0.1:5004",
}


def _description(path: Path, card: Path, tmp: Path, src: str | None = None, *extra: str) -> str:
    """What ``hcml run PATH --input SRC --events ... --output ...`` would play."""
    if src is None:
        uri = "uri=${SRC}" in path.read_text()
        src = EXAMPLE_SRC.get(path.name, TOUR.as_uri() if uri else str(TOUR))
    p = argparse.ArgumentParser()
    add_arguments(p)
    argv = [str(path), "--model", str(card), "--input", src, "--events", str(tmp / "ev.jsonl")]
    return build_pipeline(p.parse_args([*argv, "--output", str(tmp / "out.mp4"), *extra]))


def test_there_is_a_pipeline_for_every_source_kind():
    names = {p.name for p in FILES}
    for kind in ("file", "uri", "camera", "rtsp-h264", "screen", "rtp-h264", "annotated"):
        assert f"{kind}.pipeline" in names
    assert any(n.startswith("deepstream-") for n in names)
    for path in FILES:  # a header that says what it needs and how to run it
        header = [ln for ln in path.read_text().splitlines() if ln.startswith("#")]
        assert any("Needs:" in ln for ln in header) and any("Run:" in ln for ln in header), path


def test_hcml_run_sources_come_from_the_files():
    rtp = source_description("rtp://127.0.0.1:5004")
    assert rtp.startswith('udpsrc uri="udp://127.0.0.1:5004" caps=') and "rtph264depay" in rtp
    text = " ".join((PIPELINES / "rtp-h264.pipeline").read_text().split())
    assert rtp.split(" caps=")[1] in text.replace("${SRC}", "")
    assert source_description("camera:1").startswith('v4l2src device="/dev/video1"')


@pytest.fixture(scope="module")
def parsed(tiny_card, tmp_path_factory) -> dict[str, dict]:
    """Every file parsed in one child process, by file name."""
    tmp = tmp_path_factory.mktemp("parse")
    results = parse_pipelines([_description(path, tiny_card, tmp) for path in FILES])
    return {path.name: result for path, result in zip(FILES, results, strict=True)}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_pipeline_parses(path, parsed):
    result = parsed[path.name]
    if result["missing"]:
        assert result["standin_error"] is None, result["standin_error"]  # the rest is valid
        pytest.skip(f"no GStreamer element {', '.join(result['missing'])} here "
                    "(the rest parsed, with identity standing in)")  # fmt: skip
    assert result["ok"], f"{result['code']}: {result['error']}"


def test_file_uri_and_annotated_pipelines_run(tiny_card, tmp_path):
    jobs = []
    for name in ("file.pipeline", "uri.pipeline", "annotated.pipeline"):
        out = tmp_path / name
        out.mkdir()
        desc = _description(PIPELINES / name, tiny_card, out, None, "--set", "stride=16")
        jobs.append({"description": desc, "events": str(out / "ev.jsonl"), "timeout": 120})
    runs = run_pipelines(jobs, timeout=400)
    for job, run in zip(jobs, runs, strict=True):
        assert run.eos and not run.errors, (job["description"], run.errors)
        # 384 frames, the first window full at frame 7 or 14, then one every 16 frames
        assert len(run.messages) == len(run.events) == 24, job["description"]
    from hcml.data.video import read_video

    assert read_video(tmp_path / "annotated.pipeline" / "out.mp4").shape == (384, 112, 112, 3)


def test_rtp_h264_loopback_runs(tiny_card, tmp_path):
    port = free_udp_port()
    path = str(PIPELINES / "rtp-h264.pipeline")
    client = start_client(
        [path, "--model", str(tiny_card), "--input", f"udp://127.0.0.1:{port}"], tmp_path
    )
    try:
        sender = run_pipeline(
            "videotestsrc is-live=true pattern=ball num-buffers=60 ! "
            "video/x-raw,width=112,height=112,framerate=30/1 ! videoconvert ! "
            "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 ! "
            f"rtph264pay config-interval=1 ! udpsink host=127.0.0.1 port={port}",
            timeout=60,
        )
        assert sender.eos and not sender.errors, sender.errors
        time.sleep(1.0)  # the last packets through the jitter buffer, decoder and element
    finally:
        err = stop_client(client, tmp_path)
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    # 60 frames: every frame from the first full window on gives one prediction
    assert len(lines) >= 40, err
    assert f"{len(lines)} predictions" in err
