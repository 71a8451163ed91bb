"""Child process for tests/test_element_objects.py: feeds ``hcmlaction`` from our own pad.

Run as ``python tests/objects_child.py`` with a JSON job (or a list of jobs) on stdin; prints
one JSON result a job, one line each.
GStreamer never enters the test process (see tests/test_reliability.py's module doc).

Job: {"props": {hcmlaction properties}, "streams": {id: {"width", "height", "seed",
"n_objects"}}, "schedule": [[stream id, frame index, [[object id, x, y, w, h], ...] | null],
...]} -- each schedule entry pushes frame ``index`` of the stream's scene (RGB, PTS index x
40 ms) with those boxes attached as GstVideoRegionOfInterestMeta (a ``tracker`` param with
``object_id``), or none when null. Switching stream re-sends that stream's own stream-start,
caps and segment events (what ``funnel`` does).
Result: {"messages", "objects" (hcml-object messages), "warnings", "errors", "sink_rois"
(per buffer: [[id, x, y, w, h, hcml-action param or null], ...]), "sink_metas" (per buffer:
every HcmlActionMeta's fields), "out": buffers out}. A stream with ``"crop": [x, y, w, h]``
is that box of its scene as whole frames (the reference for per-object results); ``"enter":
N`` makes its objects enter at frame N. A job with ``"detect": {hcmldetect properties}`` puts
``hcmldetect`` between our pad and ``hcmlaction`` (its ROI metas then come from the detector).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FRAME_NS = 40_000_000
_SCENES: dict = {}  # (seed, objects, width, height, segments, enter) -> Scene


def main() -> None:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstVideo", "1.0")
    from gi.repository import Gst

    Gst.init(None)
    jobs = json.loads(sys.stdin.read())
    for job in jobs if isinstance(jobs, list) else [jobs]:
        print(json.dumps(run_job(job)), flush=True)


def run_job(job: dict) -> dict:
    import numpy as np
    from gi.repository import Gst, GstVideo

    from hcml.data.scenes import Scene, render_scene
    from hcml.gst import roi_meta
    from hcml.gst.runner import structure_dict

    el = Gst.ElementFactory.make("hcmlaction")
    for k, v in job.get("props", {}).items():
        el.set_property(k, v)
    bus = Gst.Bus.new()
    el.set_bus(bus)
    det = None
    if job.get("detect") is not None:
        det = Gst.ElementFactory.make("hcmldetect")
        for k, v in job["detect"].items():
            det.set_property(k, v)
        det.set_bus(bus)
    src = Gst.Pad.new("src", Gst.PadDirection.SRC)
    tmpl = Gst.PadTemplate.new("sink", Gst.PadDirection.SINK, Gst.PadPresence.ALWAYS,
                               Gst.Caps.new_any())  # fmt: skip
    sink = Gst.Pad.new_from_template(tmpl, "sink")
    result = {"messages": [], "objects": [], "warnings": [], "errors": [], "sink_rois": [],
              "sink_metas": [], "out": 0}  # fmt: skip

    def chain(_pad, _parent, buf):
        result["out"] += 1
        result["sink_rois"].append(
            [
                [r.id, r.x, r.y, r.w, r.h, r.params.get("hcml-action")]
                for r in roi_meta.read_rois(buf)
            ]
        )
        result["sink_metas"].append(roi_meta.read_custom_metas(buf, "HcmlActionMeta"))
        return Gst.FlowReturn.OK

    sink.set_chain_function_full(chain)
    sink.set_event_function_full(lambda *_: True)
    if det is not None:
        assert src.link(det.get_static_pad("sink")) == Gst.PadLinkReturn.OK
        assert det.get_static_pad("src").link(el.get_static_pad("sink")) == Gst.PadLinkReturn.OK
    else:
        assert src.link(el.get_static_pad("sink")) == Gst.PadLinkReturn.OK
    assert el.get_static_pad("src").link(sink) == Gst.PadLinkReturn.OK
    src.set_active(True)
    sink.set_active(True)
    for e in (el, det):
        if e is not None and e.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            result["start_failed"] = True
    scenes, events, current = {}, {}, None
    for sid, spec in job["streams"].items():
        n = spec.get("n_objects", 2)
        key = (spec.get("seed", 0), n, spec["width"], spec["height"], spec.get("segments", 4),
               spec.get("enter", 0))  # fmt: skip
        if key not in _SCENES:  # jobs of one child share their renders
            seed, _, w, h, segments, enter = key
            _SCENES[key] = render_scene(seed, n_objects=n, width=w, height=h, segments=segments,
                                        tile=(48, 64), enter=[enter] * n)  # fmt: skip
        scenes[sid] = _SCENES[key]
        width, height = spec["width"], spec["height"]
        if spec.get("crop"):  # the stream is one box of the scene, as whole frames
            x, y, width, height = spec["crop"]
            frames = scenes[sid].frames[:, y : y + height, x : x + width]
            scenes[sid] = Scene(frames, scenes[sid].objects)
        segment = Gst.Segment()
        segment.init(Gst.Format.TIME)
        caps = f"video/x-raw,format=RGB,width={width},height={height},framerate=25/1"
        events[sid] = [Gst.Event.new_stream_start(sid),
                       Gst.Event.new_caps(Gst.Caps.from_string(caps)),
                       Gst.Event.new_segment(segment)]  # fmt: skip
    if not result.get("start_failed"):
        for sid, index, rois in job["schedule"]:
            if sid != current:
                for ev in events[sid]:
                    src.push_event(ev)
                current = sid
            frame = scenes[sid].frames[index]
            pad = -frame.shape[1] * 3 % 4  # GStreamer's RGB rows are 4-byte aligned
            if pad:
                frame = np.pad(frame.reshape(frame.shape[0], -1), ((0, 0), (0, pad)))
            buf = Gst.Buffer.new_wrapped(frame.tobytes())
            buf.pts, buf.duration = index * FRAME_NS, FRAME_NS
            for oid, x, y, w, h in rois or []:
                m = GstVideo.buffer_add_video_region_of_interest_meta(buf, "thing", x, y, w, h)
                s = Gst.Structure.new_empty("tracker")
                s.set_value("object_id", oid)
                m.add_param(s)
            src.push(buf)
        src.push_event(Gst.Event.new_eos())
    while True:
        msg = bus.pop()
        if msg is None:
            break
        s = msg.get_structure()
        if msg.type == Gst.MessageType.ELEMENT and s.get_name() == "hcml-action":
            result["messages"].append(structure_dict(s))
        elif msg.type == Gst.MessageType.ELEMENT and s.get_name() == "hcml-object":
            result["objects"].append(structure_dict(s))
        elif msg.type == Gst.MessageType.WARNING:
            result["warnings"].append(msg.parse_warning()[0].message)
        elif msg.type == Gst.MessageType.ERROR:
            result["errors"].append(msg.parse_error()[0].message)
    for e in (el, det):
        if e is not None:
            e.set_state(Gst.State.NULL)
    return result


if __name__ == "__main__":
    main()
