"""``hcml bench``: every suite runs with tiny settings and writes its JSON and its section.

Smoke tests: they check the shape of the results (keys, rows, markers), never the speed.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest

from hcml.bench import SUITE_NAMES, add_arguments
from hcml.bench.common import PLACEHOLDER, command_line, markers, percentiles, write_section
from hcml.bench.latency import soak_verdict
from hcml.cli import main

MACHINE_KEYS = {"cpu", "cores", "python", "torch", "onnxruntime", "numpy", "platform"}


@pytest.fixture(scope="module")
def toy_card() -> str:
    """An exported ToyMotionNet (T=8, 32x32, clip + step graphs): the cheapest real card."""
    from hcml.export.reference import exported_toy

    return exported_toy(8, 32)


def _bench(tmp_path: Path, suite: str, *options: str) -> tuple[dict, str]:
    """Run ``hcml bench SUITE`` into tmp_path; returns (JSON result, its markdown section)."""
    out, md = tmp_path / f"{suite}.json", tmp_path / "BENCHMARKS.md"
    if not md.exists():
        md.write_text("# Benchmarks\n\nkept text\n")
    argv = ["bench", suite, *options, "--json", str(out), "--markdown", str(md)]
    assert main([*argv, "--plots", str(tmp_path)]) == 0
    result = json.loads(out.read_text())
    assert result["suite"] == suite
    assert set(result["machine"]) >= MACHINE_KEYS
    assert result["command"].startswith(f"hcml bench {suite} ")
    assert "--json" in result["command"] and result["date"]
    text = md.read_text()
    begin, end = markers(suite)
    assert "kept text" in text and text.count(begin) == text.count(end) == 1
    section = text.split(begin, 1)[1].split(end, 1)[0]
    assert result["command"] in section and "Generated from the JSON" in section
    assert Path(result["plot"]).is_file() and f"]({suite}.png)" in section
    return result, section


def test_streaming_writes_json_and_markdown(tmp_path, capsys):
    argv = ("--model", "toy", "--windows", "8", "--seconds", "0.2")
    result, section = _bench(tmp_path, "streaming", *argv)
    assert "T=  8" in capsys.readouterr().out
    (row,) = result["rows"]
    assert row["window"] == 8 and row["full_ms"] > 0 and row["step_ms"] > 0
    assert row["flop_ratio"] > 1 and row["max_abs_diff"] < 1e-3
    assert f"**{row['ratio']:.1f}x**" in section
    # a second run replaces the section instead of appending another
    _bench(tmp_path, "streaming", *argv)


def test_model_flops_per_branch(tmp_path):
    result, section = _bench(tmp_path, "model", "--windows", "4", "--size", "32")
    report = result["reports"][0]  # then the shipped card's row
    assert report["frames"] == 4 and report["input_size"] == [32, 32]
    assert report["flops"]["total"] >= report["flops"]["backbone"] + report["flops"]["motion"]
    assert set(result["goal"]) == {"text", "worst_pct", "met"}
    assert "motion overhead" in section and "Goal:" in section


def test_model_flops_counts_the_card_at_its_own_config(tmp_path):
    """The shipped card's row: its window, input size and levels, not the registry default's."""
    from hcml import DEFAULT_CARD
    from hcml.card import ModelCard

    card = ModelCard.load(DEFAULT_CARD)
    result, section = _bench(tmp_path, "model", "--windows", "4", "--size", "32",
                             "--card", str(DEFAULT_CARD))  # fmt: skip
    registry, shipped = result["reports"]
    assert shipped["model"] == f"{card.name} (card)"
    assert shipped["frames"] == card.window and shipped["input_size"] == list(card.input_size)
    assert sorted(map(int, shipped["flops"]["motion_per_level"])) == sorted(card.levels)
    assert f"{card.name} (card)" in section


def test_backends_rows_and_skips(tmp_path, toy_card):
    argv = ("--card", toy_card, "--batches", "1", "2", "--seconds", "0.05")
    result, section = _bench(tmp_path, "backends", *argv)
    measured = [r for r in result["rows"] if "skipped" not in r]
    assert {(r["graph"], r["batch"]) for r in measured if r["backend"] == "onnxruntime"} == {
        ("clip", 1), ("clip", 2), ("step", 1), ("step", 2)
    }  # fmt: skip
    for r in measured:
        assert r["fps"] > 0 and r["streams_at_30fps"] == pytest.approx(r["fps"] / 30)
    # the toy card has no checkpoint: torch is skipped with the reason, as is any missing GPU
    skipped = {
        f"{r['backend']} {r['device']}": r["skipped"] for r in result["rows"] if "skipped" in r
    }
    assert "checkpoint" in skipped["torch cpu"]
    assert all(reason for reason in skipped.values())
    assert "onnxruntime cpu" in result["capacity"]
    assert "skipped:" in section and "streams at 30 fps" in section


@pytest.mark.slow
@pytest.mark.gst
def test_element_against_identity(tmp_path, toy_card):
    argv = ("--card", toy_card, "--frames", "16", "--rounds", "1", "--resolution", "160x120")
    result, section = _bench(tmp_path, "element", *argv)
    names = [r["variant"] for r in result["rows"]]
    assert names[0] == "identity" and len(names) == 6
    assert any(n.startswith("async") for n in names) and any(n.startswith("sync") for n in names)
    for r in result["rows"]:
        assert r["fps"] > 0 and r["cpu_ms_per_frame"] > 0 and r["frames"] >= 16
    assert result["rows"][0]["fps_vs_identity"] == 1.0
    assert result["rows"][1]["predictions"] == 0  # inference disabled
    assert result["rows"][2]["predictions"] > 0  # sync, stride 1
    assert set(result["overhead"]) == {"cpu_ms_per_buffer", "wall_ms_per_buffer", "how"}
    # the goal follows from the measured fps (not from the code's own ratio), and the section
    # states the verdict the numbers give
    identity_fps = result["rows"][0]["fps"]
    asyncs = [r for r in result["rows"] if r["variant"].startswith("async")]
    met = all(r["fps"] / identity_fps >= 0.95 for r in asyncs)
    assert result["goal"]["met"] is met
    assert f"**{'met' if met else 'not met'}**" in section


@pytest.mark.slow
@pytest.mark.gst
def test_latency_intervals(tmp_path, toy_card):
    argv = ("--card", toy_card, "--seconds", "3", "--interval", "1", "--resolution", "160x120")
    result, section = _bench(tmp_path, "latency", *argv)
    assert len(result["intervals"]) == 3
    for iv in result["intervals"]:
        assert iv["frames"] > 0 and iv["rss_mib"] > 0 and iv["fds"] > 0
        assert set(iv["latency_ms"]) == {"p50", "p95", "p99", "max"}
        assert iv["dropped"] is not None
    assert 0 < result["events"] <= result["event_lines"]  # the EOS drain may add a few
    assert 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["p99"]
    assert result["soak"]["applies"] is False
    assert "Soak verdict: not applicable" in section and "p99 ms" in section
    # a soak-length result renders into its own section and plot; the short run's stays
    md = tmp_path / "BENCHMARKS.md"
    soak = dict(result, seconds=3600.0, soak=dict(result["soak"], applies=True, passed=True))
    soak["soak"].update(rss_growth_pct=1.0, fds_growth_pct=0.0, baseline_t_s=300.0)
    saved = tmp_path / "soak.json"
    saved.write_text(json.dumps(soak))
    argv = ["bench", "latency", "--from-json", str(saved), "--markdown", str(md)]
    assert main([*argv, "--plots", str(tmp_path)]) == 0
    text = md.read_text()
    assert section in text  # untouched
    soak_section = text.split(markers("soak")[0], 1)[1].split(markers("soak")[1], 1)[0]
    assert "60 minutes" in soak_section and "**passed**" in soak_section
    assert "](soak.png)" in soak_section and (tmp_path / "soak.png").is_file()


@pytest.mark.slow
@pytest.mark.gst
def test_streams_rows(tmp_path, toy_card):
    argv = ("--card", toy_card, "--streams", "1", "2", "--seconds", "3", "--resolution",
            "160x120")  # fmt: skip
    result, section = _bench(tmp_path, "streams", *argv)
    assert [r["streams"] for r in result["rows"]] == [1, 2]
    for r in result["rows"]:
        assert "errors" not in r, r
        assert r["total_in"] == r["total_out"] >= r["frames_in"] > 0 and r["lost"] == 0
        assert 0 < r["predictions_min"] <= r["predictions_max"]
        assert 0 < r["latency_ms"]["p50"] <= r["latency_ms"]["p99"]
        assert r["mean_batch"] >= 1.0
        # async serves live frames on the step graph: no clip call unless a backlog was dropped
        assert r["live_step_ms"] > 0 and (r["clip_calls"] == 0 or r["dropped"] > 0)
        assert r["live_vs_alone"] > 0 and r["step_alone_batch"] in (1, 2, 4, 8)
    assert "Largest N with p99" in section and "| 2 |" in section and "live / alone" in section


@pytest.mark.slow
def test_train_single_and_ddp(tmp_path):
    argv = ("--steps", "1", "--windows", "4", "--size", "32", "--batch-size", "2")
    result, section = _bench(tmp_path, "train", *argv, "--world", "2")
    stages = [r["stage"] for r in result["rows"]]
    assert stages[0] == "flow" and stages[-2:] == ["joint", "supervised"]
    assert any(s.startswith("progressive") for s in stages)
    for r in result["rows"]:
        assert r["single_clips_per_s"] > 0
        assert r["ddp_error"] is None, r["ddp_error"]  # a DDP failure fails the test
        assert r["ddp_clips_per_s"] > 0
    assert result["world"] == 2 and "DDP x2" in section


def test_all_from_json_renders_every_saved_suite(tmp_path):
    """`--from-json FOLDER` measures nothing: it renders the sections from the saved results."""
    md = tmp_path / "BENCHMARKS.md"
    begin, end = markers("model")
    md.write_text(f"# Benchmarks\n\n## Model\n\nprose\n\n{begin}\n{PLACEHOLDER}\n{end}\n")
    assert main(["bench", "model", "--windows", "4", "--size", "32",
                 "--json", str(tmp_path / "model.json")]) == 0  # fmt: skip
    assert main(["bench", "model", "--from-json", str(tmp_path / "model.json"),
                 "--markdown", str(md)]) == 0  # fmt: skip
    text = md.read_text()
    assert PLACEHOLDER not in text and "prose" in text and "| hcml_tiny | 4 | 32x32 |" in text
    # `all` over a folder with only some suites: those render, the rest fail, exit status 1
    assert main(["bench", "all", "--from-json", str(tmp_path), "--markdown", str(md)]) == 1


def test_helpers():
    assert all(math.isnan(v) for v in percentiles([]).values())
    assert percentiles(list(range(1, 101))) == {"p50": 50, "p95": 95, "p99": 99}
    p = argparse.ArgumentParser()
    add_arguments(p)
    args = p.parse_args(["latency", "--minutes", "60", "--json", "out dir/latency.json"])
    assert command_line(args) == "hcml bench latency --json 'out dir/latency.json' --minutes 60"
    assert set(SUITE_NAMES) == {"streaming", "model", "element", "latency", "backends", "train",
                                "streams", "objects"}  # fmt: skip


def test_soak_verdict():
    def rows(rss_end: float, fds_end: int) -> list[dict]:
        out = [{"t_s": 60.0 * m, "rss_mib": 100.0, "fds": 20} for m in range(1, 60)]
        return out + [{"t_s": 3600.0, "rss_mib": rss_end, "fds": fds_end}]

    assert soak_verdict(rows(104.0, 20), 3600)["passed"] is True
    assert soak_verdict(rows(106.0, 20), 3600)["passed"] is False
    assert soak_verdict(rows(100.0, 22), 3600)["passed"] is False
    short = soak_verdict([{"t_s": 10.0, "rss_mib": 1.0, "fds": 1}], 120)
    assert short["applies"] is False and short["passed"] is None


def test_write_section_appends_then_replaces(tmp_path):
    md = tmp_path / "B.md"
    write_section(md, "x", "first", "Suite X")
    write_section(md, "x", "second", "Suite X")
    text = md.read_text()
    assert text.count("## Suite X") == 1 and "second" in text and "first" not in text


def test_objects_per_object_cost(tmp_path, toy_card):
    argv = ("--card", toy_card, "--objects", "1", "3", "--frames", "4", "--rounds", "1",
            "--resolution", "320x240")  # fmt: skip
    result, section = _bench(tmp_path, "objects", *argv)
    whole, one, three = result["rows"]
    assert (whole["objects"], one["objects"], three["objects"]) == (0, 1, 3)
    assert all(r["frames"] == 4 and r["ms_per_frame"] > 0 for r in result["rows"])
    assert math.isclose(three["ms_per_object"], three["ms_per_frame"] / 3)
    assert math.isclose(three["ratio"], three["ms_per_object"] / whole["ms_per_frame"])
    met = all(r["ratio"] <= 1.25 for r in (one, three))
    assert result["goal"]["met"] is met and f"**{'met' if met else 'not met'}**" in section
    assert "| 3 objects |" in section and f"{three['ratio']:.2f}x" in section
