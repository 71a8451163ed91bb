"""Several streams through one hcmlaction in real pipelines (issue 17): async equals sync.

Sources are ``videotestsrc`` with different patterns and lengths into a ``funnel``; the sync run
of the same pipeline is the reference. Each source has its own stream id; one that ends early
(its EOS stays inside the funnel) must not disturb the others.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gst_helpers import run_pipelines

ROOT = Path(__file__).resolve().parents[1]
CARD = ROOT / "engines/hcml_tiny_motion.json"
SOURCES = [("ball", 48), ("smpte", 64), ("snow", 80), ("pinwheel", 96)]  # lengths tell them apart


def _description(mode: str, n: int) -> str:
    srcs = " ".join(
        f"videotestsrc pattern={p} num-buffers={k} ! "
        f"video/x-raw,format=I420,width=160,height=120,framerate=30/1 ! f."
        for p, k in SOURCES[:n]
    )
    return (
        f"funnel name=f ! hcmlaction model={CARD} mode={mode} stride=2 top-k=12 "
        f"max-backlog=1000 max-batch=4 ! fakesink name=sink sync=false " + srcs
    )


@pytest.mark.parametrize("n", [2, 4])
def test_async_equals_sync_per_stream_through_a_funnel(n):
    jobs = [{"description": _description(m, n), "events": None, "timeout": 120, "seek_ns": None}
            for m in ("sync", "async")]  # fmt: skip
    sync, asyn = run_pipelines(jobs, timeout=400)
    for r in (sync, asyn):
        assert r.eos and not r.errors and not r.warnings, (r.errors, r.warnings)
        assert r.buffers == sum(k for _, k in SOURCES[:n])  # every frame went through

    def by_stream(run):
        out: dict[str, dict] = {}
        for m in run.messages:
            out.setdefault(m["stream"], {})[m["window-end-pts"]] = m
        return out

    # stream ids are random per run: name each stream by its length (its window count)
    s = {len(v): v for v in by_stream(sync).values()}
    a = {len(v): v for v in by_stream(asyn).values()}
    assert len(s) == n and sorted(s) == sorted(a)
    counts = sorted(s)
    # each stream's windows: frames since its start, frame step 2, window 8, stride 2
    expected = sorted((k - 15 + 1) // 2 for _, k in SOURCES[:n])
    assert counts == expected
    for stream, windows in s.items():
        assert sorted(windows) == sorted(a[stream])  # the same windows in async
        for end, m in windows.items():
            q = a[stream][end]
            assert q["label"] == m["label"] and q["window-start-pts"] == m["window-start-pts"]
            scores = {kv.split(":")[0]: float(kv.split(":")[1]) for kv in m["topk"].split(";")}
            qscores = {kv.split(":")[0]: float(kv.split(":")[1]) for kv in q["topk"].split(";")}
            np.testing.assert_allclose([qscores[k] for k in scores], list(scores.values()),
                                       atol=1e-4)  # fmt: skip
