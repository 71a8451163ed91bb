"""Say what is wrong when ``hcml run``'s pipeline stops with GStreamer's bare stream error.

A file with no video (audio only), video too small or too large for ``hcmlaction``'s caps, and an
HTTP URI nobody answers all end in "Internal data stream error" from a demuxer or source, whose
debug string only says "streaming stopped, reason not-linked" (or "error"). :class:`Explainer`
watches the pipeline while it runs (the caps of every pad a decodebin adds, ``http-headers``
messages) and, given the error, returns one line naming the cause, or None when it has nothing
better than GStreamer's own words.
"""

from __future__ import annotations

import re
import socket
import urllib.parse
from typing import Any

DECODEBINS = ("decodebin", "uridecodebin", "decodebin3", "uridecodebin3")
HTTP_SOURCES = ("souphttpsrc", "curlhttpsrc")


def size_range(template_caps: str) -> tuple[int, int, int, int] | None:
    """(min w, max w, min h, max h) from caps text with ``width=(int)[ a, b ]`` ranges."""
    w = re.search(r"width=\(int\)\[\s*(\d+),\s*(\d+)\s*\]", template_caps)
    h = re.search(r"height=\(int\)\[\s*(\d+),\s*(\d+)\s*\]", template_caps)
    if not (w and h):
        return None
    return int(w[1]), int(w[2]), int(h[1]), int(h[2])


def describe_streams(caps: list[str]) -> str:
    """'audio/x-raw, audio/x-raw' -> 'audio/x-raw' (unique media types, in order)."""
    kinds = list(dict.fromkeys(c.split(",")[0].strip() for c in caps))
    return ", ".join(kinds) if kinds else "none"


def explain_not_linked(source: str, caps: list[str], template_caps: str | None) -> str:
    """Why nothing linked after the decoder: ``caps`` are its pads' caps (text)."""
    video = [c for c in caps if c.startswith("video/")]
    if not video:
        if not caps:
            return f"{source}: no stream could be decoded"
        return f"{source} has no video stream (it has: {describe_streams(caps)})"
    limits = size_range(template_caps or "")
    for c in video:
        w = re.search(r"\bwidth=\(int\)(\d+)", c)
        h = re.search(r"\bheight=\(int\)(\d+)", c)
        if limits and w and h:
            width, height = int(w[1]), int(h[1])
            lo_w, hi_w, lo_h, hi_h = limits
            if not (lo_w <= width <= hi_w and lo_h <= height <= hi_h):
                return (
                    f"{source}: video is {width}x{height}; hcmlaction takes {lo_w}x{lo_h} to "
                    f"{hi_w}x{hi_h} (scale it first, e.g. a pipeline file with videoscale)"
                )
    return f"{source}: its video ({video[0].split(',')[0]}) could not be linked to hcmlaction"


def probe_http(uri: str, timeout: float = 5.0) -> str:
    """Why an HTTP(S) URI gave no response: a TCP connection attempt, in words."""
    parts = urllib.parse.urlsplit(uri)
    host = parts.hostname or ""
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:
        return f"{uri}: bad port"
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except socket.gaierror as e:
        return f"cannot reach {uri}: cannot resolve host {host!r} ({e.strerror})"
    except OSError as e:
        reason = e.strerror or type(e).__name__
        return f"cannot reach {uri}: {host} port {port}: {reason}"
    return f"no HTTP response from {uri} (the server at {host} port {port} accepts connections)"


class Explainer:
    """Collects what a failed run's explanation needs; see the module doc."""

    def __init__(self, source: str):
        self.source = source
        self.caps: list[str] = []
        self.http_status: dict[str, int] = {}
        self.delayed_link_failed = False
        self.template_caps: str | None = None

    def watch(self, Gst: Any, pipeline: Any) -> None:
        """Before PLAYING: note the caps of every pad the pipeline's decodebins add."""
        factory = Gst.ElementFactory.find("hcmlaction")
        if factory is not None:
            for t in factory.get_static_pad_templates():
                if t.direction == Gst.PadDirection.SINK:
                    self.template_caps = t.get_caps().to_string()

        def pad_added(_element, pad) -> None:
            caps = pad.get_current_caps() or pad.query_caps(None)
            if caps is not None and not caps.is_empty():
                self.caps.append(caps.to_string())

        for element in pipeline.iterate_recurse():
            factory = element.get_factory()
            if factory is not None and factory.get_name() in DECODEBINS:
                element.connect("pad-added", pad_added)

    def note(self, Gst: Any, msg: Any) -> bool:
        """Record a bus message; True when it is one to keep quiet about (explained later)."""
        if msg.type == Gst.MessageType.ELEMENT and msg.has_name("http-headers"):
            s = msg.get_structure()
            ok, code = s.get_uint("http-status-code")
            if ok:
                self.http_status[s.get_string("uri") or ""] = code
        elif msg.type == Gst.MessageType.WARNING:
            err, debug = msg.parse_warning()
            if (
                "failed delayed linking" in (debug or "")
                or err.message == "Delayed linking failed."
            ):
                self.delayed_link_failed = True
                return True
        return False

    def explain(self, msg: Any, err: Any, debug: str | None) -> str | None:
        """One line for an ERROR message, or None to keep GStreamer's own words."""
        debug = debug or ""
        factory = msg.src.get_factory() if hasattr(msg.src, "get_factory") else None
        kind = factory.get_name() if factory is not None else ""
        if kind in HTTP_SOURCES and "reason error" in debug:
            uri = self.source
            if msg.src.find_property("location") is not None:
                uri = msg.src.get_property("location") or uri
            status = self.http_status.get(uri, 0)
            if status == 0:
                return probe_http(uri)
            return None  # the server answered: souphttpsrc's own error says how
        if "reason not-linked" in debug or (self.delayed_link_failed and "not-linked" in debug):
            return explain_not_linked(self.source, self.caps, self.template_caps)
        return None
