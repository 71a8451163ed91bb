"""DeepStream paths: NVMM input and NvDsClassifierMeta output need pyds and a GPU."""

from __future__ import annotations

import pytest

from hcml.stream import deepstream

pytestmark = pytest.mark.gpu


def test_deepstream_glue_reports_availability_honestly():
    try:
        import pyds  # noqa: F401
    except ImportError:
        assert deepstream.AVAILABLE is False
        pytest.skip("pyds not importable (DeepStream SDK's Python bindings are not installed)")
    assert deepstream.AVAILABLE


def test_nvstreammux_pipeline_attaches_classifier_meta(tiny_card):
    if not deepstream.AVAILABLE:
        pytest.skip("pyds not importable (DeepStream SDK's Python bindings are not installed)")
    from gst_helpers import run_pipeline

    desc = (f"videotestsrc num-buffers=20 ! nvvideoconvert ! "
            f"video/x-raw(memory:NVMM),format=NV12 ! m.sink_0 nvstreammux name=m batch-size=1 "
            f"width=320 height=240 ! nvvideoconvert ! video/x-raw(memory:NVMM),format=RGBA ! "
            f"hcmlaction model={tiny_card} device=cuda ! fakesink name=sink")  # fmt: skip
    run = run_pipeline(desc)
    assert run.eos and not run.errors
    assert len(run.messages) == 20 - 8 + 1
    assert {m["stream"] for m in run.messages} == {"source-0"}
