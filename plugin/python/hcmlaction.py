"""hcmlaction: motion-aware action classification inline in a GStreamer pipeline.

A thin in-place transform: it maps each buffer, hands the frame to ``hcml.stream.StreamEngine``
and attaches what comes back, as (1) an element message ``hcml-action`` on the bus, (2) a custom
GstMeta ``HcmlActionMeta`` on the buffer, (3) a JSON line in the ``events`` file and (4) with
DeepStream, an NvDsClassifierMeta. Frames are never copied or held back.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstBase", "1.0")
gi.require_version("GstVideo", "1.0")
from gi.repository import GLib, GObject, Gst, GstBase, GstVideo  # noqa: E402

from hcml import DEFAULT_CARD  # noqa: E402
from hcml.backends.triton_backend import repeated_outage, server_outage  # noqa: E402
from hcml.gst import deepstream, floating, roi_meta  # noqa: E402
from hcml.gst.video import plane_layout  # noqa: E402
from hcml.stream.engine import StreamEngine  # noqa: E402
from hcml.stream.preprocess import Preprocessor  # noqa: E402
from hcml.stream.rois import (  # noqa: E402
    ObjectTracks,
    check_box,
    object_id_of,
    parse_rois,
    rois_for_stream,
)

META_NAME = "HcmlActionMeta"
FORMATS = "{ RGB, RGBA, RGBx, BGRx, BGRA, BGR, I420, NV12 }"
_SIZE = "width=(int)[ 16, 8192 ], height=(int)[ 16, 8192 ]"
CAPS = Gst.Caps.from_string(
    f"video/x-raw, format=(string){FORMATS}, {_SIZE}"
    # With DeepStream, batched NVMM RGBA surfaces are read on the GPU (no host copy).
    + (f"; video/x-raw(memory:NVMM), format=(string)RGBA, {_SIZE}" if deepstream.AVAILABLE else "")
)
_G_TYPE_INT, _G_TYPE_INT64, _G_TYPE_DOUBLE, _G_TYPE_STRING = 24, 40, 60, 64

if not Gst.Meta.get_info(META_NAME):
    Gst.Meta.register_custom(META_NAME, [], None, None)
_libgst = ctypes.CDLL("libgstreamer-1.0.so.0")
_libgst.gst_structure_set.restype = None
_libgst.gst_structure_get_name.restype = ctypes.c_char_p
_libgst.gst_structure_get_name.argtypes = [ctypes.c_void_p]


def _struct_pointer(meta) -> int | None:
    """The GstStructure* inside a GstCustomMeta (PyGObject returns copies of it)."""
    meta_ptr = ctypes.c_void_p.from_address(id(meta) + 16).value  # PyGPointer's C pointer
    if not meta_ptr:
        return None
    struct_ptr = ctypes.c_void_p.from_address(meta_ptr + 16).value  # GstCustomMeta.structure
    if not struct_ptr or _libgst.gst_structure_get_name(struct_ptr) != META_NAME.encode():
        return None
    return struct_ptr


def attach_meta(buf: Gst.Buffer, pred) -> bool:
    """Write a prediction into a ``HcmlActionMeta`` on ``buf``; False if it cannot.

    A per-object prediction also gets ``object-id`` (string) and ``box`` ("x,y,w,h" pixels).
    """
    meta = buf.add_custom_meta(META_NAME)
    ptr = _struct_pointer(meta) if meta is not None else None
    if ptr is None:
        return False
    if pred.object_id is not None:
        _libgst.gst_structure_set(
            ctypes.c_void_p(ptr),
            b"object-id", ctypes.c_size_t(_G_TYPE_STRING), str(pred.object_id).encode(),
            b"box", ctypes.c_size_t(_G_TYPE_STRING), ",".join(map(str, pred.box or [])).encode(),
            None,
        )  # fmt: skip
    topk = ";".join(f"{label}:{score:.6f}" for label, score in pred.topk)
    _libgst.gst_structure_set(
        ctypes.c_void_p(ptr),
        b"stream", ctypes.c_size_t(_G_TYPE_STRING), pred.stream.encode(),
        b"pts", ctypes.c_size_t(_G_TYPE_INT64), ctypes.c_int64(pred.pts),
        b"window-start-pts", ctypes.c_size_t(_G_TYPE_INT64), ctypes.c_int64(pred.window_start_pts),
        b"window-end-pts", ctypes.c_size_t(_G_TYPE_INT64), ctypes.c_int64(pred.window_end_pts),
        b"label", ctypes.c_size_t(_G_TYPE_STRING), pred.label.encode(),
        b"class-id", ctypes.c_size_t(_G_TYPE_INT), ctypes.c_int(pred.class_id),
        b"score", ctypes.c_size_t(_G_TYPE_DOUBLE), ctypes.c_double(pred.score),
        b"topk", ctypes.c_size_t(_G_TYPE_STRING), topk.encode(),
        None,
    )  # fmt: skip
    return True


def _prop(kind, nick, blurb, *rest):
    return (kind, nick, blurb, *rest, GObject.ParamFlags.READWRITE)


class HcmlAction(GstBase.BaseTransform):
    __gstmetadata__ = (
        "HCML action recognition",
        "Filter/Analyzer/Video",
        "Classifies motion over a sliding window of frames (HCML) and attaches the result as "
        "bus messages, buffer meta and JSON-lines events; frames pass through untouched",
        "hcml developers",
    )
    __gsttemplates__ = (
        Gst.PadTemplate.new("src", Gst.PadDirection.SRC, Gst.PadPresence.ALWAYS, CAPS),
        Gst.PadTemplate.new("sink", Gst.PadDirection.SINK, Gst.PadPresence.ALWAYS, CAPS),
    )
    __gproperties__ = PROPERTIES = {
        "model": _prop(str, "Model", "Model card (.json), ONNX file with its card, or a "
                       "checkpoint (.pt, torch backend); unset: the shipped default, "
                       "engines/hcml_tiny_motion.json", None),
        "backend": _prop(str, "Backend", "Inference engine: auto, onnxruntime, torch, tensorrt "
                         "or triton", "auto"),
        "device": _prop(str, "Device", "cpu, cuda or cuda:N", "cpu"),
        "server": _prop(str, "Server", "Triton gRPC endpoint HOST:PORT for backend=triton "
                        "(hcml serve)", None),
        "triton-state": _prop(str, "Triton state", "backend=triton: where each stream's step "
                              "state lives: server (sequence batcher, frame-only requests, "
                              "sticky routing) or client (stateless server, any replica)",
                              "server"),
        "window": _prop(int, "Window", "Frames per prediction (0 = the model card's window)",
                        0, 1024, 0),
        "stride": _prop(int, "Stride", "Emit a prediction every N frames once a window is full",
                        1, 100000, 1),
        "frame-step": _prop(int, "Frame step", "Sample every N-th frame (0 = the model card's)",
                            0, 1000, 0),
        "top-k": _prop(int, "Top-k", "How many (label, score) pairs each prediction lists",
                       1, 1000, 5),
        "threshold": _prop(float, "Threshold", "Predictions whose score is below this are not "
                           "emitted", 0.0, 1.0, 0.0),
        "smoothing": _prop(float, "Smoothing", "EMA weight of past probabilities (0 = off)",
                           0.0, 0.99, 0.0),
        "hysteresis": _prop(int, "Hysteresis", "A new label must win this many predictions in a "
                            "row before it replaces the current one (1 = off)", 1, 1000, 1),
        "mode": _prop(str, "Mode", "sync: inference on the streaming thread (deterministic); "
                      "async: on a worker thread, same results, frames never wait; a stream "
                      "that falls behind drops whole windows of its own", "sync"),
        "max-batch": _prop(int, "Max batch", "async: most streams served by one backend call",
                           1, 1024, 8),
        "batch-timeout": _prop(float, "Batch timeout", "async: seconds to wait for more "
                               "streams to fill a batch (0 = take what is ready)", 0.0, 10.0,
                               0.0),
        "max-backlog": _prop(int, "Max backlog", "async: sampled frames a stream may have "
                             "queued before its backlog is dropped (0 = the window)", 0, 100000,
                             0),
        "max-gap": _prop(float, "Max gap", "Restart a stream's window when its PTS jumps "
                         "forward by more than this many seconds (0 = never); backwards PTS "
                         "always restarts it", 0.0, 1e6, 2.0),
        "max-errors": _prop(int, "Max errors", "Post an error after this many inference "
                            "failures in a row, even with on-error=warn (0 = never)", 0, 1000000,
                            10),
        "incremental": _prop(bool, "Incremental", "Use the exact step graph (cost flat in the "
                             "window) when the model has one", True),
        "events": _prop(str, "Events", "Append one JSON line per prediction to this file "
                        "(or fd:N)", None),
        "labels": _prop(str, "Labels", "Override label names: a labels file or a "
                        "';'-separated list (must match the model's class count)", None),
        "silent": _prop(bool, "Silent", "Do not post hcml-action bus messages", False),
        "on-error": _prop(str, "On error", "warn: post a warning and keep passing frames; "
                          "fail: post an error", "warn"),
        "roi-mode": _prop(str, "ROI mode", "Per-object classification: off (whole frames), "
                          "meta (GstVideoRegionOfInterestMeta from upstream, e.g. hcmldetect), "
                          "property (the rois property), auto (rois when it names the stream, "
                          "else meta once a buffer of the stream carried one)", "auto"),
        "rois": _prop(str, "ROIs", "Fixed ROIs per source, frame pixels: "
                      "'src0:x,y,w,h;x,y,w,h|src1:x,y,w,h' (srcN: the N-th stream, or a stream "
                      "id; no name: every stream)", None),
        "object-timeout": _prop(float, "Object timeout", "Forget an object (its window and "
                                "state) not seen for this many seconds of PTS; an id that comes "
                                "back starts afresh (0 = not in the newest frame)", 0.0, 1e6,
                                1.0),
        "max-objects": _prop(int, "Max objects", "Most objects classified per stream; more "
                             "are ignored with a warning", 1, 4096, 16),
        "roi-smoothing": _prop(float, "ROI smoothing", "EMA weight of an object's past box "
                               "(tracker jitter; 0 = raw boxes)", 0.0, 0.99, 0.5),
        "stream-timeout": _prop(float, "Stream timeout", "Forget a stream whose newest frame is "
                                "this many seconds (PTS) behind another stream's, e.g. a source "
                                "that left a funnel without EOS (0 = never)", 0.0, 1e6, 30.0),
    }  # fmt: skip

    def __init__(self):
        super().__init__()
        self.set_in_place(True)
        self.set_passthrough(False)
        self.props_ = {name.replace("-", "_"): spec[-2] for name, spec in self.PROPERTIES.items()}
        self.engine: StreamEngine | None = None
        self.preprocess: Preprocessor | None = None
        self.info: GstVideo.VideoInfo | None = None
        self.stream_id = "0"
        self.stream_caps: dict[str, tuple] = {}
        self.nvmm = False
        self.events = None
        self.events_lock = threading.Lock()
        self.failures = 0  # inference failures in a row
        self.delivered = 0  # the engine's predictions count when failures last restarted
        self.held_flow = Gst.FlowReturn.OK  # a failure found while announcing a result
        self.stream_events: dict[str, int] = {}  # stream id -> its stream-start event's seqnum
        self.segments: dict[str, int] = {}  # stream id -> its segment event's seqnum
        self.missing_pts = 0
        self.pts_base: dict[str, int] = {}
        self.roi_table: dict[str, list] = {}  # the rois property, parsed
        self.tracks: ObjectTracks | None = None
        self.meta_streams: set[str] = set()  # streams whose buffers carried ROI meta
        self.warned: set[tuple] = set()  # (stream, object id, problem kind) warned once
        floating.restore(self)  # no "created element should be floating" CRITICAL

    # ------------------------------------------------------------------ properties
    def do_get_property(self, prop):
        return self.props_[prop.name.replace("-", "_")]

    #: properties read once at start: changing them while running would be silently ignored
    START_ONLY = ("model", "backend", "device", "server", "triton_state", "window",
                  "frame_step", "mode", "incremental", "labels", "events", "max_batch",
                  "batch_timeout", "max_backlog", "rois", "roi_mode", "object_timeout",
                  "max_objects", "roi_smoothing")  # fmt: skip

    def do_set_property(self, prop, value):
        name = prop.name.replace("-", "_")
        if name in self.START_ONLY and self.engine is not None and value != self.props_[name]:
            # refuse, and keep get_property truthful: the running engine still uses the old value
            Gst.warning(
                f"hcmlaction: {prop.name} cannot change while running; still "
                f"{self.props_[name]!r} (set it before PLAYING or restart the element)"
            )
            msg = (
                f"hcmlaction: {prop.name} cannot change while running (ignored, still "
                f"{self.props_[name]!r}); set it in the READY or NULL state"
            )
            gerr = GLib.Error.new_literal(Gst.CoreError.quark(), msg, Gst.CoreError.STATE_CHANGE)
            self.post_message(Gst.Message.new_warning(self, gerr, msg))
            return
        self.props_[name] = value  # values are checked in do_start: one error, not a traceback

    # ------------------------------------------------------------------ lifecycle
    def _fail(self, message: str, debug: str = "") -> bool:
        err = GLib.Error.new_literal(Gst.ResourceError.quark(), message, Gst.ResourceError.SETTINGS)
        self.post_message(Gst.Message.new_error(self, err, debug or message))
        return False

    def do_start(self) -> bool:
        from hcml.backends import load_backend

        p = self.props_
        bad = _check_props(p)
        if bad:
            return self._fail(f"hcmlaction: {bad}")
        try:
            self.roi_table = parse_rois(p["rois"])
        except ValueError as err:
            return self._fail(f"hcmlaction: {err}")
        if p["roi_mode"] == "property" and not self.roi_table:
            return self._fail("hcmlaction: roi-mode=property but the rois property is empty")
        self.tracks = ObjectTracks(p["object_timeout"], p["max_objects"], p["roi_smoothing"])
        self.meta_streams.clear()
        self.warned.clear()
        model = p["model"] or str(DEFAULT_CARD)
        if not p["model"] and not DEFAULT_CARD.is_file():
            return self._fail(
                f"hcmlaction: no model set and no shipped model at {DEFAULT_CARD}; "
                "set model=<card.json>"
            )
        try:
            extra = {}
            if p["backend"] == "triton":
                extra = {"server": p["server"], "state": p["triton_state"]}
            backend = load_backend(model, backend=p["backend"], device=p["device"], **extra)
            if hasattr(backend, "on_notice"):  # outage summaries (one line each)
                backend.on_notice = self._notice
            labels = _read_labels(p["labels"]) if p["labels"] else None
            fixed = _fixed_window(backend.card)
            if p["window"] and fixed and p["window"] != fixed:
                return self._fail(
                    f"hcmlaction: window={p['window']} but the model {backend.card.name} takes "
                    f"exactly T={fixed} frames; unset window (0) or export a model for it"
                )
            self.engine = StreamEngine(
                backend,
                window=p["window"] or None,
                stride=p["stride"],
                frame_step=p["frame_step"] or None,
                incremental=None if p["incremental"] else False,
                top_k=p["top_k"],
                threshold=p["threshold"],
                smoothing=p["smoothing"],
                hysteresis=p["hysteresis"],
                mode=p["mode"],
                labels=labels,
                device=p["device"],
                idle_timeout=p["stream_timeout"],
                max_batch=p["max_batch"],
                batch_timeout=p["batch_timeout"],
                max_backlog=p["max_backlog"] or None,
                max_gap=p["max_gap"],
                on_result=self._announce,
            )
            self.engine.on_evict = self._on_evicted
            card = backend.card
            self.preprocess = Preprocessor(card.input_size, card.mean, card.std, p["device"])
        except Exception as err:  # noqa: BLE001 - every cause becomes a named bus error
            return self._fail(f"hcmlaction: cannot load model {model}: {err}", repr(err))
        try:
            self.events = _open_events(p["events"]) if p["events"] else None
        except (OSError, ValueError) as err:
            self.engine.close()
            self.engine = None
            return self._fail(
                f"hcmlaction: cannot open events file {p['events']}: {err}", repr(err)
            )
        self.failures, self.delivered = 0, 0
        Gst.info(f"hcmlaction: {backend.describe()}")
        return True

    def do_stop(self) -> bool:
        if self.engine is not None:
            self.engine.close()
            getattr(self.engine.backend, "close", lambda: None)()
        if self.events is not None:
            with contextlib.suppress(OSError):  # disk full: reported when a write failed
                self.events.close()
        self.engine = self.preprocess = self.events = None
        self.stream_events.clear()
        self.segments.clear()
        return True

    def do_set_caps(self, incaps: Gst.Caps, outcaps: Gst.Caps) -> bool:
        info = GstVideo.VideoInfo.new_from_caps(incaps)
        if info is None:
            return False
        self.info = info
        features = incaps.get_features(0)
        self.nvmm = features is not None and features.contains("memory:NVMM")
        shape = (info.width, info.height, info.finfo.name, info.fps_n, info.fps_d)
        previous = self.stream_caps.get(self.stream_id)
        self.stream_caps[self.stream_id] = shape
        if previous is not None and previous != shape and self.engine is not None:
            self._reset(self.stream_id)  # never mix two resolutions or rates in a window
        return True

    def do_sink_event(self, event: Gst.Event) -> bool:
        if self.engine is not None:
            kind = event.type
            if kind == Gst.EventType.STREAM_START:  # funnel re-sends it on every switch
                self.stream_id = self._stream_key(event)
            elif kind == Gst.EventType.SEGMENT:  # a new segment (non-flushing seek): restart
                seq, old = event.get_seqnum(), self.segments.get(self.stream_id)
                if old is not None and old != seq:  # funnel re-sends the same one on a switch
                    self._reset(self.stream_id)
                self.segments[self.stream_id] = seq
            elif kind == Gst.EventType.FLUSH_STOP:  # a flush cuts every stream's window
                for sid in list(self.engine.streams):
                    self.engine.reset(sid)
            elif kind == Gst.EventType.EOS:
                try:
                    self.engine.drain()  # results went out from on_result as they came
                except Exception as err:  # noqa: BLE001 - the EOS must still go downstream
                    self._report(err)
                    self.engine.drain()  # the windows done before the failure
                for sid in list(self.engine.streams):
                    self.engine.remove(sid)
                getattr(self.engine.backend, "end_of_streams", lambda: None)()
                if self.tracks is not None:
                    self.tracks.tracks.clear()
                self.stream_caps.clear()
                self.stream_events.clear()
                self.segments.clear()
        return GstBase.BaseTransform.do_sink_event(self, event)

    # ------------------------------------------------------------------ the hot path
    def do_transform_ip(self, buf: Gst.Buffer) -> Gst.FlowReturn:
        if self.engine is None or self.info is None:
            return Gst.FlowReturn.OK
        if self.nvmm:
            return self._transform_batch(buf)
        if buf.has_flags(Gst.BufferFlags.DISCONT):  # a gap: the window would not be contiguous
            self._reset(self.stream_id)
        pts = self._pts(buf)
        rois = self._rois(buf)
        if rois is not None:
            return self._transform_objects(buf, rois, pts)
        try:
            ok, mapinfo = buf.map(Gst.MapFlags.READ)
            if not ok:
                return Gst.FlowReturn.OK
            try:
                info = self.info
                strides, offsets = plane_layout(buf, info)
                preds = self.engine.push(
                    self.stream_id,
                    lambda: self.preprocess.frame(
                        mapinfo.data, info.finfo.name, info.width, info.height, strides, offsets
                    ),
                    pts,
                )
            finally:
                buf.unmap(mapinfo)
        except Exception as err:  # noqa: BLE001 - reported on the bus, frames keep flowing
            return self._report(err)
        self._succeeded()
        for pred in preds:
            attach_meta(buf, pred)
        flow, self.held_flow = self.held_flow, Gst.FlowReturn.OK
        return flow

    # ------------------------------------------------------------------ per-object ROIs
    def _reset(self, stream: str) -> None:
        """Restart a stream's window and those of its objects."""
        self.engine.reset(stream)
        for key in self.tracks.keys_of(stream) if self.tracks is not None else []:
            self.engine.reset(key)

    def _rois(self, buf: Gst.Buffer) -> list[tuple[str, tuple, int | None]] | None:
        """This buffer's ROIs as (object id, box, meta pointer); None: classify the frame."""
        mode, sid = self.props_["roi_mode"], self.stream_id
        if mode == "off":
            return None
        if mode in ("property", "auto"):
            index = list(self.stream_events).index(sid) if sid in self.stream_events else 0
            boxes = rois_for_stream(self.roi_table, sid, index)
            if boxes:
                return [(str(i), b, None) for i, b in enumerate(boxes)]
            if mode == "property":
                return []  # this stream has no fixed ROI: nothing to classify
        metas = roi_meta.read_rois(buf)
        if metas:
            self.meta_streams.add(sid)
        elif mode == "auto" and sid not in self.meta_streams:
            return None
        return [(object_id_of(m.id, m.params), (m.x, m.y, m.w, m.h), m.ptr) for m in metas]

    def _warn_once(self, kind: str, object_id: str, text: str) -> None:
        key = (self.stream_id, object_id, kind)
        if key in self.warned:
            return
        self.warned.add(key)
        msg = f"hcmlaction: stream {self.stream_id!r} object {object_id}: {text}"
        Gst.warning(msg)
        gerr = GLib.Error.new_literal(Gst.StreamError.quark(), msg, Gst.StreamError.FAILED)
        self.post_message(Gst.Message.new_warning(self, gerr, msg))

    def _transform_objects(self, buf: Gst.Buffer, rois: list, pts: int) -> Gst.FlowReturn:
        """Crop and classify every ROI of the frame in one backend call; results on the ROIs."""
        info, sid, tracks = self.info, self.stream_id, self.tracks
        seen: dict[str, int | None] = {}  # engine key -> its ROI meta on this buffer
        boxes: dict[str, tuple] = {}
        for object_id, raw, ptr in rois:
            box, problem = check_box(raw, info.width, info.height)
            if problem:
                self._warn_once("clipped" if box else "refused", object_id, problem)
            if box is None or ObjectTracks.key(sid, object_id) in seen:
                continue
            key = tracks.update(sid, object_id, box, pts)
            if key is None:
                cap = f"more than max-objects={tracks.max_objects} objects; not classified"
                self._warn_once("cap", object_id, cap)
                continue
            if ptr is None:  # a fixed ROI: put it on the buffer, so downstream sees it too
                x, y, w, h = (int(round(v)) for v in box)
                ptr = roi_meta.add_roi(buf, "hcml-roi", x, y, w, h, int(object_id))
            seen[key], boxes[key] = ptr, tracks.box(key)
        for key in tracks.expire(sid, pts):
            self.engine.remove(key)
            self._post_object_event(key, "evicted")
        preds: dict[str, list] = {}
        try:
            ok, mapinfo = buf.map(Gst.MapFlags.READ)
            if not ok:
                return Gst.FlowReturn.OK
            try:
                strides, offsets = plane_layout(buf, info)

                def crop(box):
                    return lambda: self.preprocess.crop(
                        mapinfo.data, info.finfo.name, info.width, info.height, box, strides,
                        offsets,
                    )  # fmt: skip

                preds = self.engine.push_many([(k, crop(boxes[k]), pts) for k in seen])
            finally:
                buf.unmap(mapinfo)
        except Exception as err:  # noqa: BLE001 - reported on the bus, frames keep flowing
            return self._report(err)
        self._succeeded()
        for key, plist in preds.items():
            for pred in plist:
                self._describe(pred)
                attach_meta(buf, pred)
                if seen.get(key):
                    roi_meta.add_param(seen[key], _result_structure(pred))
        flow, self.held_flow = self.held_flow, Gst.FlowReturn.OK
        return flow

    def _describe(self, pred) -> None:
        """A per-object prediction: its stream, object id and box (once; idempotent)."""
        if pred.object_id is not None or self.tracks is None:
            return
        found = self.tracks.describe(pred.stream)
        if found is not None:
            pred.stream, pred.object_id, pred.box = found

    def _post_object_event(self, key: str, event: str) -> None:
        stream, _, object_id = key.rpartition("/")
        s = Gst.Structure.new_empty("hcml-object")
        s.set_value("stream", stream)
        s.set_value("object-id", object_id)
        s.set_value("event", event)
        self.post_message(Gst.Message.new_element(self, s))

    def _stream_key(self, event: Gst.Event) -> str:
        """The stream a stream-start event opens: its stream id, made unique per source.

        Two sources with the same id (one file twice through a funnel) send two different
        events; funnel re-sends each source's own event when it switches, and an event keeps its
        sequence number (copies too), so the seqnum tells the sources apart: the second gets
        ``<id>#2``.
        """
        sid, ptr = event.parse_stream_start() or "0", event.get_seqnum()
        key, n = sid, 1
        while key in self.stream_events and self.stream_events[key] != ptr:
            n += 1
            key = f"{sid}#{n}"
        if key != sid and key not in self.stream_events:
            Gst.warning(f"hcmlaction: two sources share stream id {sid!r}; the new one is {key!r}")
        self.stream_events[key] = ptr
        return key

    def _pts(self, buf: Gst.Buffer) -> int:
        """The buffer's PTS; without one, its DTS, else the previous PTS plus a frame duration."""
        if buf.pts != Gst.CLOCK_TIME_NONE:
            self.pts_base[self.stream_id] = int(buf.pts)
            return int(buf.pts)
        if buf.dts != Gst.CLOCK_TIME_NONE:
            self.pts_base[self.stream_id] = int(buf.dts)
            return int(buf.dts)
        info = self.info
        step = Gst.util_uint64_scale(Gst.SECOND, info.fps_d, info.fps_n) if info.fps_n else 0
        if buf.duration != Gst.CLOCK_TIME_NONE:
            step = int(buf.duration)
        step = step or Gst.SECOND // 30
        if self.missing_pts == 0:
            Gst.warning("hcmlaction: buffers without PTS; timestamps are counted from the frame "
                        "rate")  # fmt: skip
        self.missing_pts += 1
        base = self.pts_base.get(self.stream_id, -step) + step
        self.pts_base[self.stream_id] = base
        return base

    def _on_evicted(self, stream: str, last_pts: int) -> None:
        """An idle stream was forgotten (``stream-timeout``): drop its caps, tell the app."""
        self.stream_caps.pop(stream, None)
        s = Gst.Structure.new_empty("hcml-stream")
        s.set_value("stream", stream)
        s.set_value("event", "evicted")
        s.set_value("last-pts", GObject.Value(GObject.TYPE_UINT64, last_pts))
        self.post_message(Gst.Message.new_element(self, s))

    def _transform_batch(self, buf: Gst.Buffer) -> Gst.FlowReturn:
        """DeepStream: one stream per source id, frames read on the GPU, classifier meta out."""
        try:
            for batch_meta, frame_meta, rgba in deepstream.batch_frames(hash(buf)):
                stream = f"source-{frame_meta.source_id}"
                pts = int(frame_meta.buf_pts)
                if self.props_["roi_mode"] in ("meta", "auto"):
                    objects = list(deepstream.frame_objects(frame_meta))
                    if objects or stream in self.meta_streams:  # per-object (nvtracker ids)
                        self.meta_streams.add(stream)
                        self._batch_objects(buf, batch_meta, stream, objects, rgba, pts)
                        continue
                frame = self.preprocess(rgba[..., :3])
                preds = self.engine.push(stream, frame, pts)
                for pred in preds:
                    deepstream.attach_classifier_meta(
                        batch_meta, frame_meta, pred.label, pred.class_id, pred.score
                    )
                    attach_meta(buf, pred)
        except Exception as err:  # noqa: BLE001 - reported on the bus, frames keep flowing
            return self._report(err)
        self._succeeded()
        return Gst.FlowReturn.OK

    def _batch_objects(self, buf, batch_meta, stream, objects, rgba, pts) -> None:
        """DeepStream: one window per NvDsObjectMeta (nvtracker's object_id), crops read on the
        GPU, an NvDsClassifierMeta on each object. Written against pyds' documented API; not
        run yet (no DeepStream machine)."""
        tracks, height, width = self.tracks, rgba.shape[0], rgba.shape[1]
        owners, items = {}, []
        for obj, object_id, raw in objects:
            box, _ = check_box(raw, width, height)  # clipped, or None: skipped
            if box is None:
                continue
            key = tracks.update(stream, str(object_id), box, pts)
            if key is None or key in owners:
                continue
            owners[key] = obj
            sbox = tracks.box(key)
            items.append((key, lambda b=sbox: self.preprocess.crop_rgb(rgba[..., :3], b), pts))
        for key in tracks.expire(stream, pts):
            self.engine.remove(key)
        for key, preds in self.engine.push_many(items).items():
            for pred in preds:
                self._describe(pred)
                if key in owners:
                    deepstream.attach_object_classifier_meta(
                        batch_meta, owners[key], pred.label, pred.class_id, pred.score
                    )
                attach_meta(buf, pred)

    def _succeeded(self) -> None:
        """A push went through: the failure count restarts only if a result was delivered
        since the last check (a frame the model skips, or a window still filling, is no
        success: with frame_step 2 every other frame would otherwise reset the count)."""
        delivered = self.engine.predictions
        if delivered != self.delivered:
            self.delivered, self.failures = delivered, 0

    def _report(self, err: Exception, what: str = "inference failed") -> Gst.FlowReturn:
        text = f"hcmlaction: {what}: {err}"
        if server_outage(err):  # not the model's fault: reconnects with backoff, never counted
            return self._outage(err, text)
        self.failures += 1
        limit = self.props_["max_errors"]
        if limit and self.failures > limit:
            return Gst.FlowReturn.ERROR  # the error is posted already
        if limit and self.failures == limit:
            self._fail(f"{text} ({self.failures} failures in a row; max-errors={limit})",
                       repr(err))  # fmt: skip
            return Gst.FlowReturn.ERROR
        if self.props_["on_error"] == "fail":
            self._fail(text, repr(err))
            return Gst.FlowReturn.ERROR
        gerr = GLib.Error.new_literal(Gst.StreamError.quark(), text, Gst.StreamError.FAILED)
        self.post_message(Gst.Message.new_warning(self, gerr, repr(err)))
        return Gst.FlowReturn.OK

    def _outage(self, err: Exception, text: str) -> Gst.FlowReturn:
        """Inference server lost: one warning when it goes (on-error=fail: an error); repeats
        are summed up by the backend when it answers again."""
        if self.props_["on_error"] == "fail":
            self._fail(text, repr(err))
            return Gst.FlowReturn.ERROR
        if not repeated_outage(err):
            gerr = GLib.Error.new_literal(Gst.StreamError.quark(), text, Gst.StreamError.FAILED)
            self.post_message(Gst.Message.new_warning(self, gerr, repr(err)))
        return Gst.FlowReturn.OK

    def _notice(self, text: str) -> None:
        """A backend's one-line notice (e.g. a Triton outage summary): a bus warning."""
        msg = f"hcmlaction: {text}"
        gerr = GLib.Error.new_literal(Gst.StreamError.quark(), msg, Gst.StreamError.FAILED)
        self.post_message(Gst.Message.new_warning(self, gerr, msg))

    def _announce(self, pred) -> None:
        """A result exists (streaming thread in sync mode, the worker in async): post it now.

        Bus message and events line; the buffer meta goes on the stream's next buffer.
        """
        self._describe(pred)
        if not self.props_["silent"]:
            s = Gst.Structure.new_empty("hcml-action")
            s.set_value("stream", pred.stream)
            if pred.object_id is not None:
                s.set_value("object-id", pred.object_id)
                s.set_value("box", ",".join(map(str, pred.box)))
            s.set_value("pts", GObject.Value(GObject.TYPE_UINT64, pred.pts))
            s.set_value(
                "window-start-pts", GObject.Value(GObject.TYPE_UINT64, pred.window_start_pts)
            )
            s.set_value("window-end-pts", GObject.Value(GObject.TYPE_UINT64, pred.window_end_pts))
            s.set_value("label", pred.label)
            s.set_value("class-id", pred.class_id)
            s.set_value("score", pred.score)
            s.set_value("topk", ";".join(f"{lb}:{sc:.6f}" for lb, sc in pred.topk))
            self.post_message(Gst.Message.new_element(self, s))
        if self.events is not None:
            try:
                with self.events_lock:
                    self.events.write(pred.to_json() + "\n")
                    self.events.flush()
            except OSError as err:  # disk full, file gone: like an inference failure
                flow = self._report(err, f"cannot write events to {self.props_['events']}")
                if flow != Gst.FlowReturn.OK:
                    self.held_flow = flow  # returned for the stream's current/next buffer


def _result_structure(pred) -> Gst.Structure:
    """The ``hcml-action`` param put on an object's ROI meta."""
    s = Gst.Structure.new_empty("hcml-action")
    s.set_value("object-id", pred.object_id or "")
    s.set_value("label", pred.label)
    s.set_value("class-id", pred.class_id)
    s.set_value("score", pred.score)
    s.set_value("window-start-pts", GObject.Value(GObject.TYPE_UINT64, pred.window_start_pts))
    s.set_value("window-end-pts", GObject.Value(GObject.TYPE_UINT64, pred.window_end_pts))
    return s


def _read_labels(value: str) -> list[str]:
    if os.path.isfile(value):
        text = Path(value).read_text().strip()
        return [x.strip() for x in (text.split(";") if ";" in text else text.splitlines())]
    return [x.strip() for x in value.split(";") if x.strip()]


def _open_events(target: str):
    # /dev/stdout reopened is a second file description with its own offset: when stdout is a
    # file, the launcher's buffered output overwrote our first lines. Share fd 1/2 instead.
    target = {"/dev/stdout": "fd:1", "/dev/stderr": "fd:2"}.get(target, target)
    if target.startswith("fd:"):
        return os.fdopen(int(target[3:]), "a", buffering=1, closefd=False)
    return open(target, "a", buffering=1)


def _check_props(p: dict) -> str:
    """What is wrong with the properties, in one line ('' when nothing)."""
    if p["mode"] not in ("sync", "async"):
        return f"mode must be sync or async, got {p['mode']!r}"
    if p["on_error"] not in ("warn", "fail"):
        return f"on-error must be warn or fail, got {p['on_error']!r}"
    if p["triton_state"] not in ("server", "client"):
        return f"triton-state must be server or client, got {p['triton_state']!r}"
    if p["roi_mode"] not in ("off", "meta", "property", "auto"):
        return f"roi-mode must be off, meta, property or auto, got {p['roi_mode']!r}"
    return ""


def _fixed_window(card) -> int | None:
    """T when the card's clip graph takes exactly T frames (None when T is dynamic)."""
    clip = (getattr(card, "tensors", None) or {}).get("clip", {})
    shape = clip.get("inputs", {}).get(clip.get("input", "frames"))
    return int(shape[2]) if shape and len(shape) == 5 and shape[2] > 0 else None


GObject.type_register(HcmlAction)
__gstelementfactory__ = ("hcmlaction", Gst.Rank.NONE, HcmlAction)
