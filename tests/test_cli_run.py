"""`hcml run`: source forms, predictions printed, overlay output, errors in words, Ctrl-C -> EOS."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hcml.gst.run_cli import add_arguments, build_pipeline, parse_rtp, source_description
from hcml.labels import LABELS

pytestmark = pytest.mark.gst
TOUR = Path(__file__).parent / "data" / "motion_tour_112.mp4"


def _hcml_run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hcml.cli", "run", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(list(argv))


def test_source_forms():
    assert source_description("camera").startswith('v4l2src device="/dev/video0" ')
    assert source_description("camera:2").startswith('v4l2src device="/dev/video2" ')
    rtp = source_description("rtp://127.0.0.1:5004")
    assert 'udpsrc uri="udp://127.0.0.1:5004"' in rtp and "rtph264depay" in rtp
    assert 'udpsrc uri="udp://0.0.0.0:5004"' in source_description("rtp://:5004")
    assert source_description("rtsp://cam/stream").startswith(
        'uridecodebin uri="rtsp://cam/stream"'
    )
    assert source_description("clip 1.mp4").startswith('filesrc location="clip 1.mp4" ! decodebin')


def test_rtp_urls_are_parsed_strictly():
    assert parse_rtp("rtp://127.0.0.1:5004") == ("127.0.0.1", 5004)
    assert parse_rtp("rtp://:5004/") == ("0.0.0.0", 5004)
    assert parse_rtp("RTP://localhost:1") == ("localhost", 1)
    assert parse_rtp("rtp://[::1]:65535") == ("::1", 65535)
    assert 'udpsrc uri="udp://[::1]:5004"' in source_description("rtp://[::1]:5004")
    for bad, why in [
        ("rtp://127.0.0.1", "no port"),
        ("rtp://127.0.0.1:", "no port"),
        ("rtp://127.0.0.1:99999", "1 to 65535"),
        ("rtp://127.0.0.1:0", "1 to 65535"),
        ("rtp://127.0.0.1:x", "1 to 65535"),
        ("rtp://999.1.1.1:5004", "not an IPv4 address"),
        ("rtp://[nope]:5004", "not an IPv6 address"),
        ("rtp://a/b:5004", "expected rtp://HOST:PORT"),
    ]:
        with pytest.raises(ValueError, match=why):
            source_description(bad)


@pytest.mark.parametrize(
    "url, why",
    [
        ("rtp://127.0.0.1", "no port"),
        ("rtp://127.0.0.1:99999", "not a number from 1 to 65535"),
        ("rtp://999.1.1.1:5004", "999.1.1.1 is not an IPv4 address"),
        ("rtp://nosuchhost.invalid:5004", "cannot resolve host 'nosuchhost.invalid'"),
        ("rtp://192.0.2.1:5004", "not an address of this machine"),  # TEST-NET-1, never local
    ],
)
def test_bad_rtp_url_is_a_one_line_error_not_a_wait(url, why):
    """These used to wait for packets forever (issue 18 item 2)."""
    proc = _hcml_run(url, timeout=60)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"hcml run: {url}: ") and why in lines[0], lines
    assert "started" not in proc.stderr


def test_pipeline_file_placeholders(tmp_path):
    f = tmp_path / "p.pipeline"
    f.write_text("# a comment\nfilesrc location=${SRC} ! decodebin ! videoconvert !\n"
                 "hcmlaction model=${MODEL} events=${EVENTS} ! fakesink\n")  # fmt: skip
    desc = build_pipeline(_args(str(f), "--model", "m.json", "--input", "a.mp4", "--events", "e"))
    assert desc == ('filesrc location="a.mp4" ! decodebin ! videoconvert ! '
                    'hcmlaction model="m.json" events="e" ! fakesink')  # fmt: skip
    with pytest.raises(ValueError, match="SRC"):
        build_pipeline(_args(str(f), "--model", "m.json"))
    with pytest.raises(ValueError, match="PROP=VALUE"):
        build_pipeline(_args("a.mp4", "--set", "stride"))


def test_run_a_file_prints_every_prediction(tiny_card):
    proc = _hcml_run(str(TOUR), "--model", str(tiny_card), "--set", "stride=16")
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    # 384 frames; the first window ends at frame 14 (8 frames, step 2), then one every 16 frames
    assert len(lines) == 24
    assert all(any(f" {name} " in ln for name in LABELS) for ln in lines)
    assert "24 predictions" in proc.stderr


def test_overlay_writes_a_playable_annotated_video(tiny_card, tmp_path):
    out = tmp_path / "annotated.mp4"
    proc = _hcml_run(str(TOUR), "--model", str(tiny_card), "--overlay", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    from hcml.data.video import read_video

    assert read_video(out).shape == (384, 112, 112, 3)


def test_bad_source_exits_nonzero_with_the_error_in_words(tiny_card, tmp_path):
    proc = _hcml_run(str(tmp_path / "missing.mp4"), "--model", str(tiny_card))
    assert proc.returncode == 1
    assert "error from filesrc" in proc.stderr and "not found" in proc.stderr.lower()
    proc = _hcml_run(str(TOUR), "--model", str(tmp_path / "nope.json"))
    assert proc.returncode == 2 and "model card not found" in proc.stderr


def test_ctrl_c_sends_eos_and_finishes_the_file(tiny_card, tmp_path):
    live = tmp_path / "live.pipeline"
    out = tmp_path / "live.mp4"
    live.write_text(
        "videotestsrc is-live=true pattern=ball ! video/x-raw,width=64,height=64,framerate=25/1 "
        "! hcmlaction model=${MODEL} ! videoconvert ! x264enc tune=zerolatency ! mp4mux ! "
        f"filesink location={out}\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "hcml.cli", "run", str(live), "--model", str(tiny_card)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    first = proc.stdout.readline()  # a prediction: the pipeline is up and running
    assert first and time.monotonic() < deadline
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "interrupted, sending EOS" in err
    from hcml.data.video import read_video

    # the frames up to the first prediction (window 8) are in the file: mp4mux finished it
    assert read_video(out).shape[0] >= 8


def _gst_make(tmp_path: Path, name: str, description: str) -> Path:
    """Write a fixture file with gst-launch-1.0 (in its own process: no PyAV here)."""
    out = tmp_path / name
    subprocess.run(
        ["gst-launch-1.0", "-q", *description.split(), "!", "filesink", f"location={out}"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert out.stat().st_size > 0
    return out


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 1, proc.stderr
    assert "Internal data stream error" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("hcml run: error")]
    assert len(errors) == 1, proc.stderr
    assert not any(ln.startswith("  (") for ln in proc.stderr.splitlines()), proc.stderr
    return errors[0]


def test_audio_only_file_says_it_has_no_video(tiny_card, tmp_path):
    audio = _gst_make(
        tmp_path, "audio.m4a", "audiotestsrc num-buffers=50 ! audioconvert ! avenc_aac ! mp4mux"
    )
    line = _one_error_line(_hcml_run(str(audio), "--model", str(tiny_card), "--quiet"))
    assert line == f"hcml run: error: {audio} has no video stream (it has: audio/x-raw)"


def test_frames_too_small_to_link_say_the_size(tiny_card, tmp_path):
    tiny = _gst_make(
        tmp_path,
        "tiny8.mkv",
        "videotestsrc num-buffers=20 ! video/x-raw,width=8,height=8,format=I420 ! matroskamux",
    )
    line = _one_error_line(_hcml_run(str(tiny), "--model", str(tiny_card), "--quiet"))
    assert f"{tiny}: video is 8x8; hcmlaction takes 16x16 to 8192x8192" in line, line


def test_unreachable_http_uri_says_why(tiny_card):
    with socket.socket() as s:  # a port nothing listens on any more
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}/x.mp4"
    line = _one_error_line(_hcml_run(uri, "--model", str(tiny_card), "--quiet"))
    assert line == f"hcml run: error: cannot reach {uri}: 127.0.0.1 port {port}: Connection refused"
