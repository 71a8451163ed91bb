"""hcmldetect: a CPU detector + IoU tracker that attaches GstVideoRegionOfInterestMeta.

For demos and tests of ``hcmlaction``'s per-object mode (``hcml run SRC --detect hog|motion``):
``method=hog``: OpenCV's bundled HOG people detector (ROI type ``person``); ``method=motion``:
what moves, by frame differencing over a history of frames (ROI type ``motion``; it sees every
frame, its boxes are read every ``interval``-th). Detection runs every ``interval``-th frame;
between detections the last tracked boxes are attached again. Boxes shorter than ``min-size``
are handed on grown to it around their centre, inside the frame (``grow_box``; the tracker
matches the boxes as found). Each ROI meta has its ``id`` set to the track id (ids are never
reused) and a ``detection`` param (``id``, ``weight``: the SVM weight, or the share of moving
pixels in the box as found). Frames pass through untouched. The logic lives in
``hcml.stream.detect``.
"""

from __future__ import annotations

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstBase", "1.0")
gi.require_version("GstVideo", "1.0")
from gi.repository import GLib, GObject, Gst, GstBase, GstVideo  # noqa: E402

from hcml.gst import floating, roi_meta  # noqa: E402
from hcml.gst.video import plane_layout  # noqa: E402

_SIZE = "width=(int)[ 16, 8192 ], height=(int)[ 16, 8192 ]"
CAPS = Gst.Caps.from_string(
    f"video/x-raw, format=(string){{ RGB, RGBA, RGBx, BGRx, BGRA, BGR, I420, NV12 }}, {_SIZE}"
)
_PACKED = {
    "RGB": (3, 0, 2),
    "RGBA": (4, 0, 2),
    "RGBx": (4, 0, 2),
    "BGR": (3, 2, 0),
    "BGRx": (4, 2, 0),
    "BGRA": (4, 2, 0),
}  # fmt: skip  bytes per pixel, R index, B index


def _prop(kind, nick, blurb, *rest):
    return (kind, nick, blurb, *rest, GObject.ParamFlags.READWRITE)


class HcmlDetect(GstBase.BaseTransform):
    __gstmetadata__ = (
        "HCML CPU detector",
        "Filter/Analyzer/Video",
        "OpenCV HOG people detector or motion detector with an IoU tracker; attaches "
        "region-of-interest meta with track ids for hcmlaction's per-object mode",
        "hcml developers",
    )
    __gsttemplates__ = (
        Gst.PadTemplate.new("src", Gst.PadDirection.SRC, Gst.PadPresence.ALWAYS, CAPS),
        Gst.PadTemplate.new("sink", Gst.PadDirection.SINK, Gst.PadPresence.ALWAYS, CAPS),
    )
    __gproperties__ = PROPERTIES = {
        "method": _prop(str, "Method", "Detector: hog (OpenCV's bundled people detector) or "
                        "motion (what moves: frame differencing over a history)", "hog"),
        "interval": _prop(int, "Interval", "Detect every N-th frame; in between the last "
                          "tracked boxes are attached", 1, 1000, 5),
        "scale": _prop(float, "Scale", "Resize frames by this before detecting (people must be "
                       "about 128 px tall after it)", 0.1, 4.0, 1.0),
        "min-weight": _prop(float, "Min weight", "Drop detections whose SVM weight is below "
                            "this", -10.0, 10.0, 0.5),
        "threshold": _prop(float, "Threshold", "motion: grey-level change between two frames "
                           "that counts as moving", 0.5, 255.0, 6.0),
        "history": _prop(int, "History", "motion: frames a changed pixel keeps counting as "
                         "moving (a box is where something moved during them)", 1, 10000, 32),
        "min-area": _prop(int, "Min area", "motion: fewest moving pixels of a box", 1,
                          100000000, 64),
        "min-size": _prop(int, "Min size", "Grow each side of a box shorter than this (px) "
                          "to it around the box's centre, inside the frame: a moving part gets "
                          "context and a box that holds still while it moves (64 = the shipped "
                          "model's input; 0 = boxes as found)", 0, 8192, 64),
        "max-missed": _prop(int, "Max missed", "A track ends after this many detection rounds "
                            "without a match", 0, 1000, 2),
    }  # fmt: skip

    def __init__(self):
        super().__init__()
        self.set_in_place(True)
        self.set_passthrough(False)
        self.props_ = {n.replace("-", "_"): spec[-2] for n, spec in self.PROPERTIES.items()}
        self.info = None
        self.detector = self.tracker = None
        self.frames = 0
        self.live: list = []
        self.weights: dict = {}
        floating.restore(self)

    def do_get_property(self, prop):
        return self.props_[prop.name.replace("-", "_")]

    def do_set_property(self, prop, value):
        self.props_[prop.name.replace("-", "_")] = value

    def do_start(self) -> bool:
        p = self.props_
        if p["method"] not in ("hog", "motion"):
            return self._fail(f"hcmldetect: method must be hog or motion, got {p['method']!r}")
        try:
            from hcml.stream.detect import (
                HogPeopleDetector,
                IouTracker,
                MotionDetector,
                grow_box,
            )

            if p["method"] == "hog":
                self.detector = HogPeopleDetector(p["scale"], p["min_weight"])
            else:
                self.detector = MotionDetector(p["threshold"], p["history"], p["min_area"])
        except ImportError as err:
            return self._fail(
                f"hcmldetect: OpenCV is not installed ({err}); pip install "
                "'opencv-python-headless<5'"
            )
        self.tracker = IouTracker(max_missed=p["max_missed"])
        self.grow = grow_box
        self.frames, self.live = 0, []
        return True

    def _fail(self, message: str) -> bool:
        err = GLib.Error.new_literal(Gst.ResourceError.quark(), message, Gst.ResourceError.SETTINGS)
        self.post_message(Gst.Message.new_error(self, err, message))
        return False

    def do_set_caps(self, incaps, outcaps) -> bool:
        self.info = GstVideo.VideoInfo.new_from_caps(incaps)
        return self.info is not None

    def do_sink_event(self, event: Gst.Event) -> bool:
        restart = event.type in (Gst.EventType.STREAM_START, Gst.EventType.FLUSH_STOP)
        if restart and self.tracker is not None:
            self.tracker.tracks, self.live, self.frames = [], [], 0
            if hasattr(self.detector, "reset"):
                self.detector.reset()
        return GstBase.BaseTransform.do_sink_event(self, event)

    def _grey(self, buf):
        import numpy as np

        info = self.info
        ok, mapinfo = buf.map(Gst.MapFlags.READ)
        if not ok:
            return None
        try:
            data = np.frombuffer(mapinfo.data, dtype=np.uint8)
            strides, offsets = plane_layout(buf, info)
            h, w, fmt = info.height, info.width, info.finfo.name
            if fmt in _PACKED:
                bpp, r, b = _PACKED[fmt]
                px = np.lib.stride_tricks.as_strided(
                    data[offsets[0] :], (h, w, bpp), (strides[0], bpp, 1), writeable=False
                )
                grey = px[..., r] * 0.299 + px[..., 1] * 0.587 + px[..., b] * 0.114
                return grey.astype(np.uint8)
            y = np.lib.stride_tricks.as_strided(
                data[offsets[0] :], (h, w), (strides[0], 1), writeable=False
            )
            return y.copy()  # luma: what HOG's gradients need
        finally:
            buf.unmap(mapinfo)

    def do_transform_ip(self, buf: Gst.Buffer) -> Gst.FlowReturn:
        if self.detector is None or self.info is None:
            return Gst.FlowReturn.OK
        due = self.frames % self.props_["interval"] == 0
        motion = self.props_["method"] == "motion"
        if due or motion:  # the motion detector sees every frame, its boxes read when due
            grey = self._grey(buf)
            if motion and grey is not None:
                self.detector.update(grey)
            if due and grey is not None:
                found = self.detector.boxes() if motion else self.detector(grey)
                self.tracker.update([b for b, _ in found])
                # every live track, matched or coasting: an object's window stays contiguous
                self.live = [(t.id, t.box) for t in self.tracker.tracks]
                self.weights = {tuple(b): w for b, w in found}
        self.frames += 1
        fw, fh = self.info.width, self.info.height
        kind = "motion" if self.props_["method"] == "motion" else "person"
        min_size = self.props_["min_size"]
        for track_id, box in self.live:
            x, y, w, h = box
            x0, y0 = max(0, x), max(0, y)  # HOG's padding can reach past the frame
            w, h = min(fw, x + w) - x0, min(fh, y + h) - y0
            if w < 1 or h < 1:
                continue
            # the tracker matches the boxes as found (a part's small box is no match for its
            # object's whole box: a fresh id when the object changes as a whole); only the
            # box handed on is grown
            x0, y0, w, h = self.grow((x0, y0, w, h), min_size, fw, fh)
            ptr = roi_meta.add_roi(buf, kind, x0, y0, w, h, track_id)
            s = Gst.Structure.new_empty("detection")
            s.set_value("id", track_id)
            s.set_value("weight", float(self.weights.get(tuple(box), 0.0)))
            roi_meta.add_param(ptr, s)
        return Gst.FlowReturn.OK


GObject.type_register(HcmlDetect)
__gstelementfactory__ = ("hcmldetect", Gst.Rank.NONE, HcmlDetect)
