"""training/label_efficiency.py (issue 16, item 4): the smoke grid runs end to end, every row is
scored on both eval sets, the pretrained rows load the pretraining run's weights, and the table
renders every cell.

One smoke grid (2 seeds x 2 label counts x 5 methods, 2 pretrainings) runs once for the module,
its renders in the usual cache (``$HCML_CACHE``): ~70 s on 2 busy cores once they are cached.
A second smoke run (``--arch fast --flow-net small --keep-models``, 1 seed, 2 rows) exports a
kept model; the whole file took 240 s at nice 15 on 2 busy cores.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "training" / "label_efficiency.py"
METHODS = ("pretrained", "scratch", "tsm", "mscv", "probe")
FEATURE_SETS = ("head", "motion", "flow")


def _module():
    spec = importlib.util.spec_from_file_location("label_efficiency", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["label_efficiency"] = mod
    spec.loader.exec_module(mod)
    return mod


def _run(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=600
    )


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("label_eff")
    env = dict(os.environ)  # the renders go to the usual cache (small sets, kept between runs)
    args = ["run", "--smoke", "--out", str(tmp / "run"), "--labels", "2,5", "--parallel", "2"]
    args += ["--workers", "2"]
    p = _run(args, env)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    rows = {f.stem: json.loads(f.read_text()) for f in (tmp / "run" / "rows").glob("*.json")}
    return {"dir": tmp / "run", "rows": rows, "env": env, "args": args, "stdout": p.stdout}


@pytest.mark.slow
def test_every_row_scored_on_both_sets(grid):
    want = {f"{m}-k{k}-s{s}" for m in METHODS for k in ("2", "5") for s in (0, 1)}
    assert set(grid["rows"]) == want
    for name, r in grid["rows"].items():
        for key in ("heldout", "style_shift"):
            e = r[key]
            assert e["n"] == 12, name  # 1 clip a class in the smoke size
            assert 0.0 <= e["top1"] <= 1.0 and e["top1"] == e["correct"] / e["n"], name
        # k a class, capped by the smoke pool (1 classic + 2 train clips a class)
        assert r["n_train"] == 12 * min(int(r["labels"]), 3), name
        assert sum(r["n_train_by_style"].values()) == r["n_train"]
        assert r["steps"] == 2 and r["batch"] == 2, name  # one budget for every row


@pytest.mark.slow
def test_pretrained_rows_load_the_pretraining_run(grid):
    import torch

    mod = _module()
    for seed in (0, 1):
        state = torch.load(
            grid["dir"] / f"pretrain-s{seed}" / "model.pt", map_location="cpu", weights_only=True
        )["wrapper_state"]
        heads = [k for k in state if k.startswith("model.head.")]
        for k in ("2", "5"):
            pre = grid["rows"][f"pretrained-k{k}-s{seed}"]
            probe = grid["rows"][f"probe-k{k}-s{seed}"]
            scratch = grid["rows"][f"scratch-k{k}-s{seed}"]
            names = sorted(pre["init"]["sha"])
            assert any(n.startswith("flow_net.") for n in names)
            assert any(n.startswith("model.motion.") for n in names)
            for n in names:
                ref = mod.tensor_sha(state[n])
                assert pre["init"]["sha"][n] == ref and probe["init"]["sha"][n] == ref
                # scratch starts where pretraining started, so pretraining changed the tensor
                assert scratch["init"]["sha"][n] != ref
                assert pre["final_sha"][n] != ref  # fine-tuning trains it
                assert probe["final_sha"][n] == ref  # the probe trains the classifier only
            assert pre["init"]["loaded"] == len(state) - len(heads)
            assert sorted(pre["init"]["kept"]) == sorted(heads)
            assert scratch["init"]["from"] is None


def test_subsets_are_per_class_nested_and_per_seed():
    mod = _module()
    size = mod.SIZES["full"]
    per = size.pool  # classic then train, item i of a look is class i % 12
    n_classic = 12 * per["classic"]

    def cls(i):
        return (i if i < n_classic else i - n_classic) % 12

    sets = {k: mod.subset_indices(size, 0, k) for k in ("2", "5", "20", "all")}
    for k, idx in sets.items():
        want = sum(per.values()) if k == "all" else int(k)
        assert len(set(idx)) == len(idx) == 12 * want
        assert all(sum(cls(i) == c for i in idx) == want for c in range(12))
    assert set(sets["2"]) < set(sets["5"]) < set(sets["20"]) < set(sets["all"])
    assert set(mod.subset_indices(size, 1, "5")) != set(sets["5"])
    assert max(sets["all"]) == 12 * sum(per.values()) - 1


@pytest.mark.slow
def test_table_renders_every_cell(grid, tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text(
        "# r\n\n<!-- label-efficiency:begin -->\nold\n<!-- label-efficiency:end -->\ntail\n"
    )
    p = _run(["table", "--out", str(grid["dir"]), "--results", str(results)], grid["env"])
    assert p.returncode == 0, p.stderr
    text = results.read_text()
    assert "old" not in text and text.endswith("<!-- label-efficiency:end -->\ntail\n")
    tables = [ln for ln in text.splitlines() if ln.startswith("| ") and "clips)" not in ln]
    assert len(tables) == 2 * len(METHODS)
    for ln in tables:
        cells = [c.strip() for c in ln.strip("|").split("|")][1:]
        assert len(cells) == 2 and all("±" in c for c in cells), ln
    assert text.count("| 2 a class (24 clips) | 5 a class (36 clips) |") == 2
    rows = grid["rows"]
    shift = {n: r["style_shift"]["top1"] for n, r in rows.items()}
    d = [100 * (shift[f"pretrained-k5-s{s}"] - shift[f"scratch-k5-s{s}"]) for s in (0, 1)]
    assert f"style-shift: {sum(d) / 2:+.1f} points" in text


@pytest.mark.slow
def test_rerun_skips_done_rows_and_bad_input_is_one_line(grid):
    p = _run(grid["args"], grid["env"])
    assert p.returncode == 0, p.stderr[-2000:]
    assert "20 rows done earlier, 0 to run" in p.stdout
    bad = _run(["run", "--smoke", "--out", str(grid["dir"]), "--labels", "3"], grid["env"])
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "--labels" in bad.stderr
    bad = _run(["table", "--out", str(grid["dir"] / "nothing")], grid["env"])
    assert bad.returncode == 2 and "holds no run" in bad.stderr
    # a folder pretrained with the design's heads does not take rows of another objective
    other = _run([*grid["args"], "--contrastive-input", "high"], grid["env"])
    assert other.returncode == 2 and other.stderr.strip().count("\n") == 0, other.stderr
    assert "--contrastive-input both: use another --out" in other.stderr


def test_arch_and_flow_net_are_the_recipes_networks():
    """--arch fast is training/tiny_fast.yaml's network, --arch default pretrain.yaml's;
    --flow-net big is pretrain.yaml's flow net, small default.yaml's (the registry default)."""
    import yaml

    from hcml.model.registry import TRAIN_DEFAULTS

    mod = _module()
    size = mod.SIZES["smoke"]
    fast = yaml.safe_load((REPO / "training" / "tiny_fast.yaml").read_text())["model"]
    pre = yaml.safe_load((REPO / "training" / "pretrain.yaml").read_text())["model"]
    default = yaml.safe_load((REPO / "training" / "default.yaml").read_text())["model"]
    for method in ("pretrained", "scratch", "probe"):
        r = mod._recipe(method, size, 0, "fast", "small")
        assert r["model"]["options"] == fast["options"]
        train = {k: r["model"]["train"].get(k, TRAIN_DEFAULTS[k]) for k in TRAIN_DEFAULTS}
        assert train == {**TRAIN_DEFAULTS, **default["train"]}
        r = mod._recipe(method, size, 0, "default", "big")
        assert r["model"]["options"] == pre["options"] and r["model"]["train"] == pre["train"]
        assert r["model"]["input_size"] == size.input


@pytest.mark.slow
def test_fast_arch_kept_model_exports_and_matches_torch(tmp_path):
    """A --arch fast --keep-models run: pretraining and rows train the fast network, the kept
    model.pt exports with `hcml export`, its card carries the row's accuracy, and the ONNX clip
    graph gives the torch model's logits on a random clip."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from hcml.card import ModelCard
    from hcml.cli import main as hcml_main
    from hcml.model.checkpoint import load_model

    env = dict(os.environ)
    out = tmp_path / "run"
    args = ["run", "--smoke", "--out", str(out), "--seeds", "0", "--labels", "5"]
    args += ["--methods", "pretrained,scratch", "--arch", "fast", "--flow-net", "small"]
    args += ["--keep-models", "--parallel", "2", "--workers", "2"]
    p = _run(args, env)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    meta = json.loads((out / "run.json").read_text())
    assert meta["net"]["arch"] == "fast" and meta["net"]["flow_net"] == "small"
    pre = torch.load(out / "pretrain-s0" / "model.pt", map_location="cpu", weights_only=True)
    assert pre["cfg"]["levels"] == [0, 1] and pre["cfg"]["beta"] == 2
    for name in ("pretrained-k5-s0", "scratch-k5-s0"):
        row = json.loads((out / "rows" / f"{name}.json").read_text())
        assert row["arch"] == "fast" and row["flow_net"] == "small"
        kept = torch.load(out / "models" / f"{name}.pt", map_location="cpu", weights_only=True)
        assert kept["cfg"]["levels"] == [0, 1] and kept["cfg"]["beta"] == 2
        assert set(kept["cfg"]["train"].items()) >= {("flow_growth", 8), ("flow_corr", 0)}
        assert kept["metrics"]["heldout_top1"] == row["heldout"]["top1"]
        assert kept["metrics"]["style_shift_top1"] == row["style_shift"]["top1"]
        # the weights are the row's: the hash of a fine-tuned tensor matches the row's record
        mod = _module()
        for n, sha in row["final_sha"].items():
            assert mod.tensor_sha(kept["wrapper_state"][n]) == sha, n

    ckpt = out / "models" / "pretrained-k5-s0.pt"
    engines = tmp_path / "engines"
    argv = ["export", str(ckpt), "--name", "le5", "--out", str(engines), "--no-deepstream"]
    assert hcml_main(argv) == 0
    card = ModelCard.load(engines / "le5.json")
    assert card.model == "hcml_tiny" and card.window == 8 and card.input_size == (32, 32)
    assert card.frame_step == 2 and len(card.labels) == 12
    row = json.loads((out / "rows" / "pretrained-k5-s0.json").read_text())
    assert card.metrics["style_shift_top1"] == row["style_shift"]["top1"]
    assert card.metrics["heldout"]["n"] == row["heldout"]["n"]
    net = load_model(ckpt).eval()
    clip = np.random.default_rng(0).standard_normal((1, 3, 8, 32, 32), dtype=np.float32)
    with torch.no_grad():
        want = net(torch.from_numpy(clip)).numpy()
    sess = ort.InferenceSession(
        str(engines / card.files["clip"]), providers=["CPUExecutionProvider"]
    )
    got = sess.run(None, {sess.get_inputs()[0].name: clip})[0]
    assert got.shape == (1, 12) and np.abs(got - want).max() < 1e-4

    # the table names the network; the same folder refuses another --arch in one line
    t = _run(["table", "--out", str(out), "--print"], env)
    assert t.returncode == 0 and "`--arch fast --flow-net small`" in t.stdout
    assert "levels [0, 1], beta 2" in t.stdout and "2 x 1 progressive" in t.stdout
    bad = _run(["run", "--smoke", "--out", str(out), "--seeds", "0", "--labels", "5"], env)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert "--arch fast" in bad.stderr


def test_cost_times_the_chosen_stages_and_bad_input_is_one_line(tmp_path):
    env = dict(os.environ)
    args = ["cost", "--arch", "fast", "--flow-net", "small", "--stages", "flow,joint"]
    args += ["--batch", "1", "--steps", "1", "--json", str(tmp_path / "c.json")]
    p = _run(args, env)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = json.loads((tmp_path / "c.json").read_text())["rows"]
    assert [(r["arch"], r["flow_net"], r["stage"]) for r in rows] == [
        ("fast", "small", "flow"),
        ("fast", "small", "joint"),
    ]
    assert all(r["wall_s"] > 0 and r["cpu_s"] > 0 and r["steps"] == 1 for r in rows)
    assert "| fast | small | joint |" in p.stdout
    bad = _run(["cost", "--arch", "huge", "--stages", "joint"], env)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "huge" in bad.stderr
    bad = _run(["run", "--smoke", "--size", "full", "--out", str(tmp_path / "x")], env)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0


@pytest.mark.slow
def test_a_grid_run_in_phases_keeps_every_phase(tmp_path):
    """Rows of one folder from two commands (a grid run in phases): run.json holds the union of
    labels, methods and seeds and both commands, and the table shows every phase's cells."""
    env = dict(os.environ)
    out = tmp_path / "run"
    first = ["run", "--smoke", "--out", str(out), "--seeds", "0", "--labels", "2"]
    first += ["--methods", "tsm", "--parallel", "2", "--workers", "2"]
    second = ["run", "--smoke", "--out", str(out), "--seeds", "1", "--labels", "5"]
    second += ["--methods", "mscv", "--parallel", "2", "--workers", "2"]
    for args in (first, second):
        p = _run(args, env)
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    meta = json.loads((out / "run.json").read_text())
    assert meta["labels"] == ["2", "5"] and meta["methods"] == ["tsm", "mscv"]
    assert meta["seeds"] == [0, 1]
    assert [c.split("--labels ")[1].split()[0] for c in meta["commands"]] == ["2", "5"]
    text = _run(["table", "--out", str(out), "--print"], env).stdout
    assert text.count("| 2 a class (24 clips) | 5 a class (36 clips) |") == 2
    tsm = [ln for ln in text.splitlines() if ln.startswith("| TSM")]
    mscv = [ln for ln in text.splitlines() if ln.startswith("| single-level")]
    assert len(tsm) == len(mscv) == 2
    for ln in tsm:  # TSM ran at 2 labels only, the cost-volume baseline at 5 only
        cells = [c.strip() for c in ln.strip("|").split("|")][1:]
        assert cells[0].endswith("(1 seed)") and cells[1] == "not run", ln
    for ln in mscv:
        cells = [c.strip() for c in ln.strip("|").split("|")][1:]
        assert cells[0] == "not run" and cells[1].endswith("(1 seed)"), ln
    assert text.count("label_efficiency.py run --smoke") == 2


@pytest.mark.slow
def test_motion_probe_reads_each_part_of_the_pretrained_and_random_network(grid, tmp_path):
    """training/motion_probe.py: a probe per feature set (head, motion, flow) and init (random,
    pretrained) on the grid's pretraining; a folder without one is a one-line error."""
    probe = REPO / "training" / "motion_probe.py"
    args = [sys.executable, str(probe), "--out", str(grid["dir"]), "--seeds", "0"]
    p = subprocess.run(
        [*args, "--labels", "2,all", "--threads", "1"],
        capture_output=True,
        text=True,
        env=grid["env"],
        timeout=600,
    )
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    rows = json.loads((grid["dir"] / "motion_probe.json").read_text())["rows"]
    keys = {(r["init"], r["labels"], r["features"]) for r in rows}
    assert keys == {
        (i, k, f) for i in ("random", "pretrained") for k in ("2", "all") for f in FEATURE_SETS
    }
    for r in rows:  # 12 clips a set in the smoke size
        for key in ("heldout", "style_shift"):
            assert 0.0 <= r[key] <= 1.0 and abs(12 * r[key] - round(12 * r[key])) < 1e-9, r
    assert p.stdout.count("| flow |") == 2 and "2 a class: held-out / style-shift" in p.stdout
    (tmp_path / "run.json").write_text((grid["dir"] / "run.json").read_text())
    bad = subprocess.run(
        [sys.executable, str(probe), "--out", str(tmp_path), "--seeds", "0"],
        capture_output=True,
        text=True,
        env=grid["env"],
        timeout=300,
    )
    assert bad.returncode == 2 and "pretrain-s0/model.pt is missing" in bad.stdout, bad
    assert "Traceback" not in bad.stderr
