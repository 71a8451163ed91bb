"""hcmloverlay: draws hcmlaction's label, score bar and a motion picture on the video, in place.

Put it after ``hcmlaction`` (and after ``videoconvert`` if upstream is YUV); it reads the
``HcmlActionMeta`` that hcmlaction attaches and keeps the last label until the next one.
Per-object results: every ``GstVideoRegionOfInterestMeta`` on the buffer gets a box with its
object id and the last ``hcml-action`` label that object received (``videoconvert`` keeps
the ROI meta).
"""

from __future__ import annotations

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstBase", "1.0")
gi.require_version("GstVideo", "1.0")
from gi.repository import GObject, Gst, GstBase, GstVideo  # noqa: E402

from hcml.gst import floating, roi_meta  # noqa: E402
from hcml.gst.video import plane_layout  # noqa: E402
from hcml.stream.overlay import OverlayPainter  # noqa: E402
from hcml.stream.rois import object_id_of  # noqa: E402

_CHANNELS = {"RGB": (3, (0, 1, 2)), "RGBA": (4, (0, 1, 2)), "RGBx": (4, (0, 1, 2)),
             "BGR": (3, (2, 1, 0)), "BGRx": (4, (2, 1, 0)), "BGRA": (4, (2, 1, 0))}  # fmt: skip
CAPS = Gst.Caps.from_string(
    "video/x-raw, format=(string){ RGB, RGBA, RGBx, BGR, BGRx, BGRA }, "
    "width=(int)[ 16, 8192 ], height=(int)[ 16, 8192 ]"
)


class HcmlOverlay(GstBase.BaseTransform):
    __gstmetadata__ = (
        "HCML action overlay",
        "Filter/Effect/Video",
        "Draws hcmlaction's label, a score bar and a motion-energy picture on the frame",
        "hcml developers",
    )
    __gsttemplates__ = (
        Gst.PadTemplate.new("src", Gst.PadDirection.SRC, Gst.PadPresence.ALWAYS, CAPS),
        Gst.PadTemplate.new("sink", Gst.PadDirection.SINK, Gst.PadPresence.ALWAYS, CAPS),
    )
    __gproperties__ = {
        "motion": (bool, "Motion picture", "Draw the motion-energy thumbnail (top right)", True,
                   GObject.ParamFlags.READWRITE),
    }  # fmt: skip

    def __init__(self):
        super().__init__()
        self.set_in_place(True)
        self.set_passthrough(False)
        self.motion = True
        self.info = None
        self.painter: OverlayPainter | None = None
        self.label: str | None = None
        self.score = 0.0
        self.object_labels: dict[str, tuple[str, float]] = {}  # object id -> last label, score
        floating.restore(self)  # no "created element should be floating" CRITICAL

    def do_get_property(self, prop):
        return self.motion

    def do_set_property(self, prop, value):
        self.motion = value

    def do_set_caps(self, incaps, outcaps):
        self.info = GstVideo.VideoInfo.new_from_caps(incaps)
        _, rgb = _CHANNELS[self.info.finfo.name]
        self.painter = OverlayPainter(channels_rgb=rgb)
        return True

    def do_transform_ip(self, buf: Gst.Buffer) -> Gst.FlowReturn:
        import numpy as np

        for s in roi_meta.read_custom_metas(buf, "HcmlActionMeta"):
            if "object-id" in s:  # a per-object result: drawn on its box
                self.object_labels[s["object-id"]] = (s["label"], float(s["score"]))
            else:
                self.label, self.score = s["label"], s["score"]
        objects = []
        for roi in roi_meta.read_rois(buf):
            oid = object_id_of(roi.id, roi.params)
            result = roi.params.get("hcml-action")
            if result is not None:
                self.object_labels[oid] = (result.get("label"), float(result.get("score", 0)))
            label, score = self.object_labels.get(oid, (None, 0.0))
            objects.append(((roi.x, roi.y, roi.w, roi.h), oid, label, score))
        info = self.info
        bpp, _ = _CHANNELS[info.finfo.name]
        ok, mapinfo = buf.map(Gst.MapFlags.READ | Gst.MapFlags.WRITE)
        if not ok:
            return Gst.FlowReturn.OK
        try:
            data = np.frombuffer(mapinfo.data, dtype=np.uint8)
            strides, offsets = plane_layout(buf, info)
            frame = np.lib.stride_tricks.as_strided(
                data[offsets[0] :],
                shape=(info.height, info.width, bpp),
                strides=(strides[0], bpp, 1),
            )
            self.painter.paint(frame, self.label, self.score, motion=self.motion)
            if objects:
                self.painter.paint_objects(frame, objects)
        finally:
            buf.unmap(mapinfo)
        return Gst.FlowReturn.OK


GObject.type_register(HcmlOverlay)
__gstelementfactory__ = ("hcmloverlay", Gst.Rank.NONE, HcmlOverlay)
