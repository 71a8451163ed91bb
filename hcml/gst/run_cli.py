"""``hcml run SRC``: run ``hcmlaction`` on a file, URI, camera, RTP/H.264 port or pipeline file.

SRC forms (first match wins):

* a pipeline file (``pipelines/*.pipeline``): its gst-launch text, ``#`` comment lines dropped,
  with ``${MODEL}``, ``${EVENTS}``, ``${SRC}`` (``--input``) and ``${OUT}`` (``--output``) filled
  in and the ``--set`` properties added to its ``hcmlaction``;
* ``camera`` or ``camera:N``: the source of ``pipelines/camera.pipeline`` on ``/dev/videoN``;
* ``rtp://HOST:PORT``: the source of ``pipelines/rtp-h264.pipeline`` (``udpsrc`` +
  ``rtpjitterbuffer`` + ``rtph264depay`` + ``avdec_h264``) listening on HOST:PORT (HOST empty:
  all addresses); the URL is checked, the host resolved and the port bound once before the
  pipeline starts, so a bad one is a one-line error (exit 2), not a wait for packets forever;
* ``SCHEME://...`` (file, rtsp, http(s), ...): the source of ``pipelines/uri.pipeline``
  (``uridecodebin``);
* anything else: a local file through the source of ``pipelines/file.pipeline``
  (``filesrc ! decodebin``).

A source is everything before ``hcmlaction`` in its pipeline file; ``--overlay`` adds the sink
part of ``pipelines/annotated.pipeline`` (everything after ``hcmlaction``). ``--detect hog``
(OpenCV's HOG people detector) or ``--detect motion`` (what moves) puts ``hcmldetect`` (the
detector + an IoU tracker) in front of ``hcmlaction``, also in a pipeline file, which then
classifies each tracked object (per-object predictions carry
``object-id`` and ``box`` [x, y, w, h] frame pixels). So each pipeline
string lives in one place, the files in ``pipelines/`` (see docs/PIPELINES.md).

Predictions are printed as they arrive (``--json``: the bus message fields as JSON, plus
``wall_time``, the Unix time in seconds at which ``hcml run`` received the prediction). Once
every element has started (model loaded, sockets open) "hcml run: started" goes to stderr. Ctrl-C
sends EOS, so muxers finish their files, and exits once the EOS has gone through (or after 5 s).
Exit status: 0 at EOS, 1 on a GStreamer error (printed in words; a source with no video, video
too small for ``hcmlaction``'s caps or an HTTP server nobody answers get one line saying so,
``run_errors.py``), 2 on a bad command line.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import json
import os
import re
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from hcml import DEFAULT_CARD
from hcml.gst.environment import REPO_ROOT, gst_environment
from hcml.gst.run_errors import Explainer
from hcml.gst.runner import structure_dict

PIPELINES = REPO_ROOT / "pipelines"


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
    p.add_argument("--output", help="fills ${OUT} in a pipeline file")
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
    p.add_argument(
        "--detect",
        choices=["hog", "motion"],
        help="run a CPU detector in front of hcmlaction and classify each tracked object "
        "(hog: OpenCV's bundled people detector; motion: what moves)",
    )
    p.add_argument(
        "--detect-interval",
        type=int,
        default=5,
        metavar="N",
        help="--detect: detect every N-th frame, track in between (default: %(default)s)",
    )
    p.add_argument("--realtime", action="store_true", help="play at the stream's pace (sink sync)")
    p.add_argument(
        "--json",
        action="store_true",
        help="print each prediction (its hcml-action bus message, plus wall_time: Unix "
        "seconds at which it arrived here) as one JSON line",
    )
    p.add_argument("--quiet", action="store_true", help="print nothing but errors and the summary")
    p.add_argument("--print-pipeline", action="store_true", help="print the pipeline and exit")


def _quote(value: str) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def read_pipeline(path: str | os.PathLike) -> str:
    """A pipeline file's gst-launch text: comment lines dropped, lines joined by spaces."""
    lines = Path(path).read_text().splitlines()
    return " ".join(ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#"))


def fill(text: str, values: dict[str, str], where: str = "pipeline") -> str:
    """Replace every ``${NAME}`` by ``values[NAME]`` (quoted); a missing value is a ValueError."""
    missing = sorted(set(re.findall(r"\$\{(\w+)\}", text)) - set(values))
    if missing:
        flag = {"SRC": " (pass --input)", "OUT": " (pass --output)"}.get(missing[0], "")
        raise ValueError(f"{where}: no value for ${{{missing[0]}}}{flag}")
    return re.sub(r"\$\{(\w+)\}", lambda m: _quote(values[m.group(1)]), text)


def split_pipeline(text: str, where: str = "pipeline") -> tuple[str, str, str]:
    """``(source, hcmlaction element, sink)``: the text before, of and after ``hcmlaction``."""
    parts = re.split(r"\s*!\s*(hcmlaction\b[^!]*?)\s*!\s*", text)
    if len(parts) != 3:
        raise ValueError(f"{where}: expected one '! hcmlaction ... !' in the pipeline")
    return parts[0], parts[1], parts[2]


def _part(name: str, index: int, values: dict[str, str]) -> str:
    text = split_pipeline(read_pipeline(PIPELINES / name), name)[index]
    return fill(text, values, str(PIPELINES / name))


def parse_rtp(source: str) -> tuple[str, int]:
    """``rtp://HOST:PORT`` -> (host, port); HOST may be empty (all addresses, ``0.0.0.0``), a
    name, an IPv4 address or a bracketed IPv6 one. A malformed URL is a one-line ValueError."""
    m = re.fullmatch(r"rtp://(\[[^\]]*\]|[^:/\[\]]*)(?::([^/]*))?/?", source, re.IGNORECASE)
    if m is None:
        raise ValueError(f"{source}: expected rtp://HOST:PORT (e.g. rtp://127.0.0.1:5004)")
    host, port = m.group(1), m.group(2)
    if port is None or port == "":
        raise ValueError(f"{source}: no port; expected rtp://HOST:PORT (e.g. rtp://:5004)")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{source}: port {port!r} is not a number from 1 to 65535")
    if host.startswith("["):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{source}: [{host}] is not an IPv6 address") from None
    elif re.fullmatch(r"[\d.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"{source}: {host} is not an IPv4 address") from None
    return host or "0.0.0.0", int(port)


def check_rtp_source(source: str, timeout: float = 10.0) -> None:
    """Resolve the host of ``rtp://HOST:PORT`` and try to bind its UDP port, as ``udpsrc``
    will; a one-line ValueError says what fails (udpsrc itself would wait forever)."""
    host, port = parse_rtp(source)
    result: list = []

    def resolve() -> None:
        try:
            result.append(socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM))
        except OSError as e:
            result.append(e)

    worker = threading.Thread(target=resolve, daemon=True)
    worker.start()
    worker.join(timeout)
    if not result:
        raise ValueError(f"{source}: cannot resolve host {host!r} (no answer in {timeout:g} s)")
    if isinstance(result[0], OSError):
        raise ValueError(f"{source}: cannot resolve host {host!r} ({result[0].strerror})")
    family, _, _, _, address = result[0][0]
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as e:
            hint = (
                " (not an address of this machine: rtp:// listens on a local address or a "
                "multicast group; rtp://:PORT listens on all)"
                if e.errno == errno.EADDRNOTAVAIL
                else ""
            )
            raise ValueError(
                f"{source}: cannot listen on {address[0]} port {port}: {e.strerror}{hint}"
            ) from None


def source_description(source: str) -> str:
    """The gst-launch text that decodes ``source`` to raw video (see the module doc)."""
    cam = re.fullmatch(r"camera(?::(\d+))?", source)
    if cam:
        return _part("camera.pipeline", 0, {"SRC": f"/dev/video{cam.group(1) or 0}"})
    if source.lower().startswith("rtp://"):
        host, port = parse_rtp(source)
        host = f"[{host}]" if ":" in host else host
        return _part("rtp-h264.pipeline", 0, {"SRC": f"udp://{host}:{port}"})
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", source):
        return _part("uri.pipeline", 0, {"SRC": source})
    return _part("file.pipeline", 0, {"SRC": source})


def property_assignments(props: list[str]) -> list[str]:
    """``--set PROP=VALUE`` items as gst-launch ``prop="value"`` (a bad item: ValueError)."""
    out = []
    for prop in props:
        key, eq, value = prop.partition("=")
        if not eq or not re.fullmatch(r"[a-z][a-z0-9-]*", key):
            raise ValueError(f"--set {prop!r}: expected PROP=VALUE, e.g. stride=8")
        out.append(f"{key}={_quote(value)}")
    return out


def element_description(model: Path, events: str | None, props: list[str]) -> str:
    """``hcmlaction name=action model=... [events=...] [PROP=VALUE ...]``."""
    parts = ["hcmlaction name=action", f"model={_quote(str(model))}"]
    if events:
        parts.append(f"events={_quote(events)}")
    return " ".join([*parts, *property_assignments(props)])


def build_pipeline(args: argparse.Namespace) -> str:
    """The whole gst-launch description that ``hcml run`` plays."""
    src = Path(args.source)
    detect = ""
    if getattr(args, "detect", None):
        if getattr(args, "detect_interval", 5) < 1:
            raise ValueError(f"--detect-interval must be >= 1, got {args.detect_interval}")
        detect = f"hcmldetect method={args.detect} interval={args.detect_interval} ! "
    if src.suffix == ".pipeline" and src.is_file():
        text = read_pipeline(src)
        if args.set or detect:  # the properties / detector go to the file's (one) hcmlaction
            head, action, tail = split_pipeline(text, str(src))
            if detect and ("hcmldetect" in text or "memory:NVMM" in text):
                why = "has its own hcmldetect" if "hcmldetect" in text else "feeds NVMM buffers"
                raise ValueError(
                    f"{src}: --detect cannot be added, the pipeline {why}; "
                    "set the detector in the file instead"
                )
            action = " ".join([action, *property_assignments(args.set)])
            text = " ! ".join([head, detect + action, tail])
        values = {"MODEL": str(args.model), "EVENTS": args.events or ""}
        values.update({k: v for k, v in (("SRC", args.input), ("OUT", args.output)) if v})
        return fill(text, values, str(src))
    action = element_description(args.model, args.events, args.set)
    if args.overlay:
        tail = _part("annotated.pipeline", 2, {"OUT": str(args.overlay)})
    else:
        tail = "fakesink"
    sync = " sync=true" if args.realtime else ""
    return f"{source_description(args.source)} ! {detect}{action} ! {tail}{sync}"


def format_prediction(s: dict) -> str:
    """One line for a ``hcml-action`` message: time, stream, label, score, window."""
    sec = s["pts"] / 1e9 if s.get("pts", -1) >= 0 else float("nan")
    start, end = s.get("window-start-pts", -1) / 1e9, s.get("window-end-pts", -1) / 1e9
    who = s.get("stream", "")[:12]
    if "object-id" in s:  # a per-object prediction
        box = s.get("box")
        box = ",".join(map(str, box)) if isinstance(box, list) else box
        who = f"{who[:6]}/#{s['object-id']} [{box}]"
    return (
        f"{sec:8.2f} s  {who:12s}  {s['label']:18s} {s['score']:.3f}  "
        f"window {start:.2f}-{end:.2f} s"
    )


def _fields(structure) -> dict:
    out = structure_dict(structure)
    if isinstance(out.get("box"), str):  # per-object: "x,y,w,h" -> [x, y, w, h]
        out["box"] = [int(v) for v in out["box"].split(",") if v]
    return out


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
    if args.source.lower().startswith("rtp://"):
        try:
            check_rtp_source(args.source)
        except ValueError as e:
            print(f"hcml run: {e}", file=sys.stderr)
            return 2
    gst_environment()
    import gi

    gi.require_version("Gst", "1.0")
    from gi.repository import GLib, Gst

    Gst.init(None)
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
    explainer = Explainer(args.input or args.source)
    explainer.watch(Gst, pipeline)
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
            if msg is None or explainer.note(Gst, msg):
                continue
            if msg.type == Gst.MessageType.ELEMENT and msg.has_name("hcml-action"):
                count += 1
                fields = _fields(msg.get_structure())
                if args.json:
                    print(json.dumps({**fields, "wall_time": time.time()}), flush=True)
                elif not args.quiet:
                    print(format_prediction(fields), flush=True)
            elif msg.type == Gst.MessageType.ERROR:
                err, debug = msg.parse_error()
                why = explainer.explain(msg, err, debug)
                if why:
                    print(f"hcml run: error: {why}", file=sys.stderr)
                else:
                    src = msg.src.get_name()
                    print(f"hcml run: error from {src}: {err.message}", file=sys.stderr)
                    if debug:
                        print(f"  ({debug.splitlines()[0]})", file=sys.stderr)
                status = 1
                break
            elif msg.type == Gst.MessageType.WARNING:
                err, _ = msg.parse_warning()
                print(
                    f"hcml run: warning from {msg.src.get_name()}: {err.message}", file=sys.stderr
                )
            elif msg.type == Gst.MessageType.STATE_CHANGED and msg.src == pipeline:
                if msg.parse_state_changed()[:2] == (Gst.State.READY, Gst.State.PAUSED):
                    print("hcml run: started", file=sys.stderr, flush=True)
            elif msg.type == Gst.MessageType.EOS:
                break
    finally:
        pipeline.set_state(Gst.State.NULL)
        signal.signal(signal.SIGINT, previous)
    print(f"hcml run: {count} predictions", file=sys.stderr)
    return status
