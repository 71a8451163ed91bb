"""hcml.gst.runner, the child process that runs the pipelines of tests and ``hcml bench``: every
job kind in one child (no hcmlaction: a few seconds)."""

from __future__ import annotations

import pytest

from hcml.gst.runner import Run, run_jobs

pytestmark = pytest.mark.gst


@pytest.fixture(scope="module")
def results() -> list[dict]:
    jobs = [
        {"description": "videotestsrc num-buffers=7 ! fakesink name=sink"},
        {"description": "videotestsrc name=src is-live=true ! fakesink name=sink", "timeout": 1},
        {"description": "videotestsrc ! nosuchelement ! fakesink"},
        {"kind": "parse", "description": "videotestsrc ! nosuchelement name=x silent=1 ! fakesink"},
        {"kind": "parse", "description": "videotestsrc ! ! fakesink"},
        {"kind": "hcml.bench.gst_jobs:file",
         "description": "videotestsrc num-buffers=5 ! fakesink name=sink"},
    ]  # fmt: skip
    return run_jobs(jobs, timeout=120)


def test_run_job_counts_buffers_to_eos(results):
    run = Run(**results[0])
    assert run.eos and run.errors == [] and run.buffers == 7
    assert run.gstreamer.startswith("GStreamer 1.") and run.rss_kib > 0


def test_a_timeout_names_every_elements_state(results):
    run = Run(**results[1])
    assert not run.eos and len(run.errors) == 1
    where, text = run.errors[0]
    assert where == "timeout" and text.startswith("no EOS in 1 s;")
    assert "src=playing/" in text and "sink=playing/" in text


def test_a_pipeline_that_does_not_parse_is_an_error_not_a_dead_child(results):
    run = Run(**results[2])
    assert not run.eos and run.errors == [
        ["parse_launch", 'cannot build the pipeline: no element "nosuchelement"']
    ]


def test_parse_job_stands_in_for_missing_elements(results):
    missing, syntax = results[3], results[4]
    assert (missing["ok"], missing["code"], missing["missing"]) == (
        False, "no-such-element", ["nosuchelement"])  # fmt: skip
    assert missing["standin_error"] is None  # identity replaced it, its properties dropped
    assert (syntax["ok"], syntax["code"]) == (False, "syntax")


def test_module_function_kind_runs_the_bench_jobs(results):
    timed = results[5]
    assert timed["errors"] == [] and timed["eos"] and timed["frames"] == 5
    assert timed["wall_s"] > 0 and timed["cpu_s"] > 0


def test_a_dead_child_raises_with_its_stderr():
    with pytest.raises(RuntimeError, match="unknown job kind 'bogus'"):
        run_jobs([{"kind": "bogus", "description": "fakesrc ! fakesink"}], timeout=60)
