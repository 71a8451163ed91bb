"""`hcml bench streaming`: runs, writes JSON and the BENCHMARKS.md section from it."""

from __future__ import annotations

import json

from hcml.bench import BEGIN, END
from hcml.cli import main


def test_bench_streaming_writes_json_and_markdown(tmp_path, capsys):
    out, md = tmp_path / "streaming.json", tmp_path / "BENCHMARKS.md"
    md.write_text("# Benchmarks\n\nkept text\n")
    argv = ["bench", "streaming", "--model", "toy", "--windows", "8", "--seconds", "0.2"]
    assert main([*argv, "--json", str(out), "--markdown", str(md)]) == 0
    assert "T=  8" in capsys.readouterr().out
    result = json.loads(out.read_text())
    (row,) = result["rows"]
    assert row["window"] == 8 and row["full_ms"] > 0 and row["step_ms"] > 0
    assert abs(row["ratio"] - row["full_ms"] / row["step_ms"]) < 1e-9
    assert row["flop_ratio"] > 1
    text = md.read_text()
    assert "kept text" in text and BEGIN in text and END in text
    assert f"**{row['ratio']:.1f}x**" in text
    # a second run replaces the section instead of appending another
    assert main([*argv, "--json", str(out), "--markdown", str(md)]) == 0
    assert md.read_text().count(BEGIN) == 1


def test_other_suites_are_not_implemented_yet(capsys):
    assert main(["bench", "element"]) == 2
    assert "not implemented yet" in capsys.readouterr().err
