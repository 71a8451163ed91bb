"""``hcml run SRC``: run ``hcmlaction`` on a file, URI, camera, RTP/H.264 port or pipeline file.

SRC forms (first match wins):

* a pipeline file (``pipelines/*.pipeline``): its gst-launch text, ``#`` comment lines dropped,
  with ``${MODEL}``, ``${EVENTS}`` and ``${SRC}`` (``--input``) filled in;
* ``camera`` or ``camera:N``: ``v4l2src device=/dev/videoN``;
* ``rtp://HOST:PORT``: ``udpsrc`` + ``rtpjitterbuffer`` + ``rtph264depay`` + ``avdec_h264``;
* ``SCHEME://...`` (file, rtsp, http(s), ...): ``uridecodebin``;
* anything else: a local file through ``filesrc ! decodebin``.

Predictions are printed as they arrive (``--json``: the bus message fields as JSON). Ctrl-C
sends EOS, so muxers finish their files, and exits once the EOS has gone through (or after 5 s).
Exit status: 0 at EOS, 1 on a GStreamer error (printed in words), 2 on a bad command line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import sysconfig
import time
from pathlib import Path

from hcml import DEFAULT_CARD

REPO_ROOT = Path(__file__).resolve().parents[2]

RTP_H264_CAPS = "application/x-rtp,media=video,encoding-name=H264,clock-rate=90000,payload=96"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "source",
        help="video file, URI (file:// rtsp:// http://), camera[:N], rtp://HOST:PORT, "
        "or a pipeline file with ${MODEL} / ${EVENTS} / ${SRC} placeholders",
    )
    p.add_argument(
        "--model", type=Path, default=DEFAULT_CARD, help="model card (.json) (default: %(default)s)"
    )
    p.add_argument("--events", help="also write the element's JSON lines to this file")
    p.add_argument("--input", help="fills ${SRC} in a pipeline file")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PROP=VALUE",
        help="an hcmlaction property (stride=8, mode=async, backend=torch, ...); repeatable",
    )
    p.add_argument(
        "--overlay", type=Path, help="also write an annotated H.264 MP4 here (hcmloverlay)"
    )
    p.add_argument("--realtime", action="store_true", help="play at the stream's pace (sink sync)")
    p.add_argument(
        "--json",
        action="store_true",
        help="print each prediction (its hcml-action bus message) as JSON",
    )
    p.add_argument("--quiet", action="store_true", help="print nothing but errors and the summary")
    p.add_argument("--print-pipeline", action="store_true", help="print the pipeline and exit")


def gst_environment(registry_dir: Path | None = None) -> None:
    """Set what GStreamer needs to find ``hcmlaction`` before ``Gst.init`` (kept if already set).

    ``GST_PLUGIN_PATH`` gets the folder holding ``python/``; ``PYTHONPATH`` gets this interpreter's
    site-packages and the repository (the plugin scanner is a separate process); ``GST_REGISTRY``
    defaults to a file of our own, so a registry cached without the Python loader cannot hide it.
    """
    plugin_dir = str(REPO_ROOT / "plugin")
    paths = os.environ.get("GST_PLUGIN_PATH", "").split(os.pathsep)
    if plugin_dir not in paths:
        os.environ["GST_PLUGIN_PATH"] = os.pathsep.join(p for p in [plugin_dir, *paths] if p)
    py = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    want = [sysconfig.get_paths()["purelib"], str(REPO_ROOT)]
    os.environ["PYTHONPATH"] = os.pathsep.join([*want, *(p for p in py if p and p not in want)])
    if "GST_REGISTRY" not in os.environ:
        from hcml.data.datasets import synth_cache_dir

        folder = registry_dir or synth_cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        os.environ["GST_REGISTRY"] = str(folder / "gst-registry.bin")


def _quote(value: str) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def source_description(source: str) -> str:
    """The gst-launch text that decodes ``source`` to raw video (see the module doc)."""
    cam = re.fullmatch(r"camera(?::(\d+))?", source)
    if cam:
        return f"v4l2src device=/dev/video{cam.group(1) or 0} ! videoconvert"
    rtp = re.fullmatch(r"rtp://([^:/]*):(\d+)/?", source)
    if rtp:
        host, port = rtp.group(1) or "0.0.0.0", rtp.group(2)
        return (
            f"udpsrc address={host} port={port} caps={_quote(RTP_H264_CAPS)} ! "
            "rtpjitterbuffer latency=50 ! rtph264depay ! h264parse ! avdec_h264 ! videoconvert"
        )
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", source):
        return f"uridecodebin uri={_quote(source)} ! videoconvert"
    return f"filesrc location={_quote(source)} ! decodebin ! videoconvert"


def element_description(model: Path, events: str | None, props: list[str]) -> str:
    """``hcmlaction name=action model=... [events=...] [PROP=VALUE ...]``."""
    parts = ["hcmlaction name=action", f"model={_quote(str(model))}"]
    if events:
        parts.append(f"events={_quote(events)}")
    for prop in props:
        key, eq, value = prop.partition("=")
        if not eq or not re.fullmatch(r"[a-z][a-z0-9-]*", key):
            raise ValueError(f"--set {prop!r}: expected PROP=VALUE, e.g. stride=8")
        parts.append(f"{key}={_quote(value)}")
    return " ".join(parts)


def build_pipeline(args: argparse.Namespace) -> str:
    """The whole gst-launch description that ``hcml run`` plays."""
    action = element_description(args.model, args.events, args.set)
    src = Path(args.source)
    if src.suffix == ".pipeline" and src.is_file():
        text = " ".join(
            ln.strip()
            for ln in src.read_text().splitlines()
            if ln.strip() and not ln.lstrip().startswith("#")
        )
        values = {"MODEL": _quote(str(args.model)), "EVENTS": _quote(args.events or "")}
        if args.input:
            values["SRC"] = _quote(args.input)
        missing = sorted(set(re.findall(r"\$\{(\w+)\}", text)) - set(values))
        if missing:
            raise ValueError(f"{src}: no value for ${{{missing[0]}}} (pass --input for ${{SRC}})")
        return re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], text)
    sync = "true" if args.realtime else "false"
    head = f"{source_description(args.source)} ! {action}"
    if args.overlay:
        return (
            f"{head} ! videoconvert ! hcmloverlay ! videoconvert ! video/x-raw,format=I420 ! "
            f"x264enc tune=zerolatency speed-preset=veryfast ! mp4mux ! "
            f"filesink location={_quote(str(args.overlay))} sync={sync}"
        )
    return f"{head} ! fakesink sync={sync}"


def format_prediction(s: dict) -> str:
    """One line for a ``hcml-action`` message: time, stream, label, score, window."""
    sec = s["pts"] / 1e9 if s.get("pts", -1) >= 0 else float("nan")
    start, end = s.get("window-start-pts", -1) / 1e9, s.get("window-end-pts", -1) / 1e9
    return (
        f"{sec:8.2f} s  {s.get('stream', '')[:12]:12s}  {s['label']:18s} {s['score']:.3f}  "
        f"window {start:.2f}-{end:.2f} s"
    )


def _fields(structure) -> dict:
    out = {}
    for i in range(structure.n_fields()):
        name = structure.nth_field_name(i)
        value = structure.get_value(name)
        out[name] = value if isinstance(value, int | float | str | bool) else str(value)
    return out


def _quiet_floating_reference_warning(GLib) -> None:
    """Drop GStreamer's "should be floating" critical, which every Python-defined element
    created in a Python process triggers (PyGObject sinks the reference; harmless); pass on
    everything else."""

    def handler(domain, level, message, _data):
        if "should be floating" not in message:
            GLib.log_default_handler(domain, level, message, None)

    flags = GLib.LogLevelFlags.LEVEL_CRITICAL | GLib.LogLevelFlags.LEVEL_WARNING
    GLib.log_set_handler("GStreamer", flags, handler, None)


def run(args: argparse.Namespace) -> int:
    if args.model and not Path(args.model).is_file():
        print(
            f"hcml run: model card not found: {args.model} "
            "(train and export one, or pass --model engines/<name>.json)",
            file=sys.stderr,
        )
        return 2
    try:
        description = build_pipeline(args)
    except ValueError as e:
        print(f"hcml run: {e}", file=sys.stderr)
        return 2
    if args.print_pipeline:
        print(description)
        return 0
    gst_environment()
    import gi

    gi.require_version("Gst", "1.0")
    from gi.repository import GLib, Gst

    Gst.init(None)
    _quiet_floating_reference_warning(GLib)
    if Gst.ElementFactory.find("hcmlaction") is None:
        print(
            f"hcml run: GStreamer cannot find hcmlaction (GST_PLUGIN_PATH="
            f"{os.environ['GST_PLUGIN_PATH']}); is gstreamer1.0-python3-plugin-loader installed? "
            f"If so, delete the registry {os.environ['GST_REGISTRY']} and retry",
            file=sys.stderr,
        )
        return 1
    try:
        pipeline = Gst.parse_launch(description)
    except GLib.Error as e:
        print(f"hcml run: cannot build the pipeline: {e.message}\n  {description}", file=sys.stderr)
        return 1
    bus = pipeline.get_bus()
    interrupted: list[bool] = []
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))
    count, status, deadline = 0, 0, None
    pipeline.set_state(Gst.State.PLAYING)
    try:
        while True:
            if interrupted and deadline is None:
                print(
                    "hcml run: interrupted, sending EOS (Ctrl-C again to quit now)", file=sys.stderr
                )
                pipeline.send_event(Gst.Event.new_eos())
                deadline = time.monotonic() + 5.0
            if deadline is not None and (len(interrupted) > 1 or time.monotonic() > deadline):
                break
            msg = bus.timed_pop(100 * Gst.MSECOND)
            if msg is None:
                continue
            if msg.type == Gst.MessageType.ELEMENT and msg.has_name("hcml-action"):
                count += 1
                fields = _fields(msg.get_structure())
                if args.json:
                    print(json.dumps(fields), flush=True)
                elif not args.quiet:
                    print(format_prediction(fields), flush=True)
            elif msg.type == Gst.MessageType.ERROR:
                err, debug = msg.parse_error()
                print(f"hcml run: error from {msg.src.get_name()}: {err.message}", file=sys.stderr)
                if debug:
                    print(f"  ({debug.splitlines()[0]})", file=sys.stderr)
                status = 1
                break
            elif msg.type == Gst.MessageType.WARNING:
                err, _ = msg.parse_warning()
                print(
                    f"hcml run: warning from {msg.src.get_name()}: {err.message}", file=sys.stderr
                )
            elif msg.type == Gst.MessageType.EOS:
                break
    finally:
        pipeline.set_state(Gst.State.NULL)
        signal.signal(signal.SIGINT, previous)
    print(f"hcml run: {count} predictions", file=sys.stderr)
    return status
