"""DeepStream paths: NVMM input and NvDsClassifierMeta output need pyds and a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from hcml.gst import deepstream
from hcml.labels import LABELS

pytestmark = pytest.mark.gpu

# Runs a pipeline to EOS in a child (as hcml.gst.runner does) and prints, as one JSON
# list, every NvDsLabelInfo found on the buffers that reach the sink: batch meta -> frame meta
# -> object meta -> classifier meta -> label info, read with pyds as NVIDIA's samples do.
_READ_META = r"""
import json, sys
import gi
gi.require_version("Gst", "1.0")
from gi.repository import Gst
import pyds

Gst.init(None)
pipeline = Gst.parse_launch(sys.argv[1])
found = []

def walk(item, cast):
    while item is not None:
        yield cast(item.data)
        item = item.next

def probe(pad, info):
    batch = pyds.gst_buffer_get_nvds_batch_meta(hash(info.get_buffer()))
    if batch is None:
        return Gst.PadProbeReturn.OK
    for frame in walk(batch.frame_meta_list, pyds.NvDsFrameMeta.cast):
        for obj in walk(frame.obj_meta_list, pyds.NvDsObjectMeta.cast):
            for cls in walk(obj.classifier_meta_list, pyds.NvDsClassifierMeta.cast):
                for label in walk(cls.label_info_list, pyds.NvDsLabelInfo.cast):
                    found.append({
                        "frame": frame.frame_num, "source": frame.source_id,
                        "component": cls.unique_component_id, "label": label.result_label,
                        "class_id": label.result_class_id, "prob": label.result_prob,
                        "object_label": obj.obj_label,
                    })
    return Gst.PadProbeReturn.OK

pipeline.get_by_name("sink").get_static_pad("sink").add_probe(Gst.PadProbeType.BUFFER, probe)
pipeline.set_state(Gst.State.PLAYING)
msg = pipeline.get_bus().timed_pop_filtered(
    120 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR
)
pipeline.set_state(Gst.State.NULL)
ok = msg is not None and msg.type == Gst.MessageType.EOS
print(json.dumps({"eos": ok, "labels": found}))
"""


def test_deepstream_glue_reports_availability_honestly():
    try:
        import pyds  # noqa: F401
    except ImportError:
        assert deepstream.AVAILABLE is False
        pytest.skip("pyds not importable (DeepStream SDK's Python bindings are not installed)")
    assert deepstream.AVAILABLE


def _nvmm_pipeline(card) -> str:
    return (f"videotestsrc num-buffers=20 ! nvvideoconvert ! "
            f"video/x-raw(memory:NVMM),format=NV12 ! m.sink_0 nvstreammux name=m batch-size=1 "
            f"width=320 height=240 ! nvvideoconvert ! video/x-raw(memory:NVMM),format=RGBA ! "
            f"hcmlaction model={card} device=cuda ! fakesink name=sink")  # fmt: skip


def test_nvstreammux_pipeline_attaches_classifier_meta(tiny_card):
    """One NvDsClassifierMeta a window (read from the buffers with pyds, not inferred from the
    bus), with the label the element posts on the bus for that window."""
    if not deepstream.AVAILABLE:
        pytest.skip("pyds not importable (DeepStream SDK's Python bindings are not installed)")
    from gst_helpers import run_pipeline

    run = run_pipeline(_nvmm_pipeline(tiny_card))
    assert run.eos and not run.errors
    assert len(run.messages) == 20 - 8 + 1
    assert {m["stream"] for m in run.messages} == {"source-0"}

    child = subprocess.run(
        [sys.executable, "-c", _READ_META, _nvmm_pipeline(tiny_card)],
        capture_output=True,
        text=True,
        timeout=180,
        env=dict(os.environ),
    )
    assert child.returncode == 0, child.stderr[-2000:]
    result = json.loads(child.stdout.strip().splitlines()[-1])
    assert result["eos"], child.stderr[-2000:]
    metas = result["labels"]
    assert len(metas) == 20 - 8 + 1  # windows end at frames 7 .. 19, one meta each
    frames = [m["frame"] for m in metas]
    assert frames == sorted(set(frames)) and frames[0] >= 7  # none before the first full window
    for m in metas:
        assert m["component"] == deepstream.COMPONENT_ID and m["source"] == 0
        assert m["label"] in LABELS and m["class_id"] == LABELS.index(m["label"])
        assert m["object_label"] == m["label"] and 0.0 <= m["prob"] <= 1.0
    # the same windows as the bus messages of the first run (a deterministic source)
    assert [m["label"] for m in metas] == [msg["label"] for msg in run.messages]
