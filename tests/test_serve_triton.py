"""backend=triton against a REAL Triton Inference Server (the tritonserver binary of the
nvidia-pytriton wheel) on 127.0.0.1 at free ports: remote equals local ONNX Runtime with the
step state held by the server (sequence batcher) and by the client, restarts after a failed
call start a new sequence, the element with backend=triton equals backend=onnxruntime, a server
killed mid-stream (one warning, one recovery summary, no buffer lost), a server down at start,
a missing model, a shape mismatch, the sequence idle timeout, and a stop with sequences still
open (dropped: exit 0 at once instead of Triton waiting for them). The module's server must
exit 0 at the end."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from gst_helpers import run_pipeline

from hcml.backends import load_backend
from hcml.backends.base import BackendUnavailable

pytestmark = pytest.mark.slow  # a real server start is seconds; the whole file ~1-3 min

ROOT = Path(__file__).resolve().parents[1]
CARD = ROOT / "engines" / "hcml_tiny_motion.json"
START_TIMEOUT = 180.0  # the python backend imports ORT per model; 2 shared cores can be slow
IDLE_S = 1.5  # sequence idle timeout of the module repository's hcml_idle_step_seq

try:
    import tritonclient.grpc  # noqa: F401

    from hcml.serve.server import (
        DROP_PARAMETER,
        ServeError,
        TritonServer,
        free_port,
        tritonserver_root,
    )

    tritonserver_root()
except (ImportError, RuntimeError) as _e:  # the serve extra / wheel is not installed
    pytest.skip(f"Triton not installed ({_e}); make setup installs it", allow_module_level=True)


def _card_copy(tmp: Path, name: str) -> Path:
    """The shipped card's files under another model name (same graphs)."""
    for f in CARD.parent.glob("hcml_tiny_motion*"):
        if f.suffix != ".pt":
            shutil.copy(f, tmp / f.name)
    data = json.loads(CARD.read_text())
    data["name"] = name
    data["files"].pop("checkpoint", None)
    data.get("sha256", {}).pop("hcml_tiny_motion.pt", None)
    out = tmp / f"{name}.json"
    out.write_text(json.dumps(data))
    return out


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> dict:
    """A repository with the shipped card, plus 'hcml_mismatch' whose served input is 32x32,
    plus the sequence model alone of 'hcml_idle' whose sequences expire after IDLE_S."""
    from hcml.export.triton_repo import write_triton_repo

    tmp = tmp_path_factory.mktemp("triton")
    root = tmp / "repo"
    write_triton_repo(CARD, root, max_batch=16, queue_delay_us=200)
    mismatch = _card_copy(tmp, "hcml_mismatch")
    write_triton_repo(mismatch, root, max_batch=16)
    cfg = root / "hcml_mismatch" / "config.pbtxt"
    cfg.write_text(cfg.read_text().replace("dims: [ 3, 8, 64, 64 ]", "dims: [ 3, 8, 32, 32 ]"))
    assert "32, 32" in cfg.read_text()
    idle = tmp / "idle"
    write_triton_repo(_card_copy(tmp, "hcml_idle"), idle, max_batch=16, sequence_idle_s=IDLE_S)
    shutil.copytree(idle / "hcml_idle_step_seq", root / "hcml_idle_step_seq")
    return {"root": root, "tmp": tmp, "mismatch": mismatch}


def _server(root: Path, grpc_port: int | None = None) -> TritonServer:
    return TritonServer(root, grpc_port or free_port(), free_port(), free_port())


@pytest.fixture(scope="module")
def server(repo):
    s = _server(repo["root"]).start(timeout=START_TIMEOUT)
    yield s
    left = sum(len(m["ids"]) for m in s.open_sequences().values())
    assert s.stop() == 0, s.stop_error  # SIGTERM: a clean exit, open sequences dropped
    assert s.dropped <= left


def _clips(card, n_streams: int = 2, frames: int = 11) -> np.ndarray:
    """Normalized synthetic motion clips [B, 3, N, H, W] (classes 1 and 5: move_left, rotate_cw)."""
    from hcml.data.synth import render_clip

    h, _ = card.input_size
    out = []
    for i, cls in enumerate((1, 5, 7, 9)[:n_streams]):
        x = render_clip(cls, 100 + i, frames=frames, size=h).frames.astype(np.float32) / 255.0
        x = (x - np.array(card.mean, np.float32)) / np.array(card.std, np.float32)
        out.append(x.transpose(3, 0, 1, 2))
    return np.ascontiguousarray(np.stack(out))


@pytest.mark.parametrize("state", ["server", "client"])
def test_remote_equals_local_ort(server, state):
    remote = load_backend(CARD, backend="triton", server=server.grpc_url, state=state)
    local = load_backend(CARD, backend="onnxruntime", threads=1)
    assert remote.name == "triton" and server.grpc_url in remote.describe()
    assert f"held by the {state}" in remote.describe()
    x = _clips(remote.card)  # 2 streams: server state sends 2 concurrent sequence requests
    t = remote.window
    streamed = remote.stream(x)
    np.testing.assert_allclose(streamed, local.stream(x), atol=1e-4, rtol=0)
    clip = x[:, :, -t:]
    np.testing.assert_allclose(remote.run_clip(clip), local.run_clip(clip), atol=1e-4, rtol=0)
    # the served step graph is exact: its last window equals the local clip graph's
    np.testing.assert_allclose(streamed[:, -1], local.run_clip(clip), atol=1e-4, rtol=0)
    remote.close()


def test_server_state_restarts_with_a_new_sequence(server):
    """After a failed call, or when the server has no state for a sequence, the stream restarts
    and its next request carries sequence_start: from then on it equals a FRESH local stream
    (a server that continued the old sequence would give other logits); END frees a sequence."""
    from hcml.backends.triton_backend import SEQ_KEY

    remote = load_backend(CARD, backend="triton", server=server.grpc_url, state="server")
    local = load_backend(CARD, backend="onnxruntime", threads=1)
    x = _clips(remote.card, n_streams=1, frames=14)
    state = remote.init_state(1)
    for i in range(5):
        _, state = remote.run_step(x[:, :, i], state)
    first = int(state[SEQ_KEY][0])
    with pytest.raises(RuntimeError, match="unexpected shape"):  # a failed call: new epoch
        remote.run_step(np.zeros((1, 3, 32, 32), np.float32), state)
    out = remote.stream(x[:, :, 5:], state)  # the old state: restarted on use
    np.testing.assert_allclose(out, local.stream(x[:, :, 5:]), atol=1e-4, rtol=0)
    # a sequence the server never saw (a restarted server, an expired one): Triton refuses it
    state = remote.init_state(1)
    _, state = remote.run_step(x[:, :, 0], state)
    assert int(state[SEQ_KEY][0]) not in (0, first)
    state[SEQ_KEY][:] = 12345
    with pytest.raises(RuntimeError, match="START"):
        remote.run_step(x[:, :, 1], state)
    out = remote.stream(x[:, :, 1:], state)
    np.testing.assert_allclose(out, local.stream(x[:, :, 1:]), atol=1e-4, rtol=0)
    # END: the sequences this backend started are gone from the server
    _, state = remote.run_step(x[:, :, 0], state)
    assert remote.end_sequences() >= 2
    with pytest.raises(RuntimeError, match="START"):
        remote.run_step(x[:, :, 1], state)
    remote.close()


def test_sequence_idle_timeout_drops_an_abandoned_sequence_keeps_an_active_one(server):
    """hcml_idle_step_seq expires sequences after IDLE_S. Sequence A is abandoned after one
    frame (a client gone without END) while B sends a frame every 0.25 s: within the idle time
    (plus the sweep period) A leaves the model's state store (the ids model.py publishes) and
    Triton refuses A's next request without START; B is kept throughout (its logits equal a
    local ORT stream's over every frame); START on A's id again is a fresh sequence."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    model = "hcml_idle_step_seq"
    local = load_backend(CARD, backend="onnxruntime", threads=1)
    x = _clips(local.card, n_streams=2, frames=24)
    client = grpcclient.InferenceServerClient(server.grpc_url)

    def step(cid, frame, start=False, end=False, **kw):
        inp = grpcclient.InferInput("frame", list(frame.shape), "FP32")
        inp.set_data_from_numpy(np.ascontiguousarray(frame))
        res = client.infer(
            model, [inp], sequence_id=cid, sequence_start=start, sequence_end=end, **kw
        )
        return res.as_numpy("logits")

    def held() -> set:
        return server.open_sequences().get(model, {}).get("ids", set())

    a, b = 7001, 7002
    step(a, x[:1, :, 0], start=True)
    abandoned = time.monotonic()
    out_b = [step(b, x[1:2, :, 0], start=True)]
    assert {a, b} <= held()
    while a in held():
        assert len(out_b) < x.shape[2] - 2, f"sequence A still held after {len(out_b)} frames"
        time.sleep(0.25)
        out_b.append(step(b, x[1:2, :, len(out_b)]))
    gone_after = time.monotonic() - abandoned
    assert IDLE_S - 0.2 <= gone_after <= IDLE_S + 3.0, gone_after
    assert b in held()
    with pytest.raises(InferenceServerException, match="START"):
        step(a, x[:1, :, 1])  # Triton released it too: the client must restart it
    out_b.append(step(b, x[1:2, :, len(out_b)], end=True))
    n = len(out_b)
    np.testing.assert_allclose(
        np.concatenate(out_b)[None], local.stream(x[1:2, :, :n]), atol=1e-4, rtol=0
    )
    fresh = step(a, x[:1, :, 5], start=True)  # restarted: a new sequence on the same id
    np.testing.assert_allclose(fresh, local.stream(x[:1, :, 5:6])[:, 0], atol=1e-4, rtol=0)
    # what stop() sends for a sequence left open: END + hcml_drop, answered without the graph
    dropped = step(a, x[:1, :, 6], end=True, parameters={DROP_PARAMETER: True})
    assert dropped.shape == (1, 12) and not dropped.any()
    assert not held() & {a, b}
    client.close()


def test_health_and_metrics_endpoints(server):
    import urllib.request

    assert server.ready()
    load_backend(CARD, backend="triton", server=server.grpc_url).run_clip(
        np.zeros((3, 3, 8, 64, 64), np.float32)
    )
    with urllib.request.urlopen(server.metrics_url, timeout=5) as r:
        text = r.read().decode()
    line = [ln for ln in text.splitlines() if ln.startswith('nv_inference_count{model="hcml_tiny')]
    assert any(float(ln.split()[-1]) >= 3 for ln in line), line  # 3 rows counted


def test_model_missing_and_shape_mismatch(server, repo, tmp_path):
    absent = _card_copy(tmp_path, "absent_model")
    with pytest.raises(BackendUnavailable) as e:
        load_backend(absent, backend="triton", server=server.grpc_url)
    msg = str(e.value)
    assert "no ready model 'absent_model'" in msg and "hcml_tiny_motion" in msg and "\n" not in msg
    with pytest.raises(BackendUnavailable, match=r"hcml_mismatch tensor frames .*shape mismatch"):
        load_backend(repo["mismatch"], backend="triton", server=server.grpc_url)
    # a wrongly shaped request on a good model: an error about the request, not "server lost"
    b = load_backend(CARD, backend="triton", server=server.grpc_url)
    with pytest.raises(RuntimeError, match="unexpected shape") as e:
        b.run_clip(np.zeros((1, 3, 8, 32, 32), np.float32))
    assert type(e.value) is RuntimeError
    assert b.run_clip(np.zeros((1, 3, 8, 64, 64), np.float32)).shape == (1, 12)


SRC = (
    "videotestsrc pattern=ball num-buffers={n} {live} ! "
    "video/x-raw,width=64,height=64,framerate={fps}/1"
)


@pytest.fixture(scope="module")
def pipeline_runs(server, tmp_path_factory) -> dict:
    """One child process runs: backend=triton (both step-state modes), backend=onnxruntime (same
    stream), backend=triton against a port where no server listens, and two streams through a
    funnel in async mode (batched: one sequence request per stream) with triton and ORT."""
    from gst_helpers import run_pipelines

    tmp = tmp_path_factory.mktemp("pipelines")
    jobs, names = [], []
    for name, props in (
        ("triton", f"backend=triton server={server.grpc_url}"),
        ("triton-client", f"backend=triton server={server.grpc_url} triton-state=client"),
        ("onnxruntime", "backend=onnxruntime"),
        ("down", f"backend=triton server=127.0.0.1:{free_port()}"),
    ):
        events = tmp / f"{name}.jsonl"
        n = 4 if name == "down" else 40
        desc = SRC.format(n=n, live="", fps=30)
        desc += f" ! hcmlaction {props} events={events} ! fakesink name=sink"
        jobs.append({"description": desc, "events": str(events), "timeout": 120, "seek_ns": None})
        names.append(name)
    for name, props in (
        ("triton-async2", f"backend=triton server={server.grpc_url}"),
        ("onnxruntime-async2", "backend=onnxruntime"),
    ):
        events = tmp / f"{name}.jsonl"
        desc = f"funnel name=f ! hcmlaction {props} mode=async max-backlog=1000 events={events}"
        desc += " ! fakesink name=sink"
        for pattern in ("ball", "snow"):
            desc += (
                " " + SRC.format(n=40, live="", fps=30).replace("ball", pattern) + " ! queue ! f."
            )
        jobs.append({"description": desc, "events": str(events), "timeout": 120, "seek_ns": None})
        names.append(name)
    return dict(zip(names, run_pipelines(jobs, timeout=300), strict=True))


def test_server_down_at_start_is_one_line_error(pipeline_runs):
    port = free_port()
    with pytest.raises(BackendUnavailable) as e:
        load_backend(CARD, backend="triton", server=f"127.0.0.1:{port}", timeout=3)
    assert f"triton server 127.0.0.1:{port} is not reachable" in str(e.value)
    assert "\n" not in str(e.value)
    with pytest.raises(BackendUnavailable, match="needs server=HOST:PORT"):
        load_backend(CARD, backend="triton")
    run = pipeline_runs["down"]
    assert run.errors and "is not reachable" in run.errors[0][1], run.errors


@pytest.mark.parametrize("name", ["triton", "triton-client"])
def test_pipeline_triton_equals_onnxruntime(pipeline_runs, name):
    tri, ort = pipeline_runs[name], pipeline_runs["onnxruntime"]
    assert tri.eos and not tri.errors and not tri.warnings, (tri.errors, tri.warnings)
    assert tri.buffers == ort.buffers == 40
    assert len(tri.events) == len(ort.events) == 13  # frames 14, 16, ..., 38 (step 2, window 8)
    for a, b in zip(tri.events, ort.events, strict=True):
        assert (a["pts"], a["label"]) == (b["pts"], b["label"])
        np.testing.assert_allclose(
            [s for _, s in a["topk"]], [s for _, s in b["topk"]], atol=1e-4, rtol=0
        )


def test_pipeline_two_streams_async_server_state_equals_onnxruntime(pipeline_runs):
    """Two streams batched by the async engine: each step call is two concurrent sequence
    requests; no backlog drop (max-backlog), so every window equals ORT's."""
    tri, ort = pipeline_runs["triton-async2"], pipeline_runs["onnxruntime-async2"]
    assert tri.eos and not tri.errors and not tri.warnings, (tri.errors, tri.warnings)
    assert tri.buffers == ort.buffers == 80

    def by_window(run):  # stream ids are random per run: pair windows by PTS and label
        return sorted(run.events, key=lambda e: (e["pts"], e["label"], -e["score"]))

    a, b = by_window(tri), by_window(ort)
    assert len(a) == len(b) == 26 and len({e["stream"] for e in a}) == 2
    for x, y in zip(a, b, strict=True):
        assert (x["pts"], x["label"]) == (y["pts"], y["label"])
        np.testing.assert_allclose(
            [s for _, s in x["topk"]], [s for _, s in y["topk"]], atol=1e-4, rtol=0
        )


def test_server_killed_mid_stream_warns_recovers_loses_no_buffer(server, tmp_path):
    """A live 10 fps stream; the server is SIGKILLed after a few predictions and restarted on
    the same port: the element posts ONE warning when it goes and ONE summary when it answers
    again, keeps passing every buffer, and predicts again once the server answers (the
    stream's step state restarted with a new sequence on the first answer). Meanwhile a
    backend opened before the kill sees the same outage: the first failure is not a repeat,
    the later ones are, and end_of_streams sums it up."""
    from hcml.backends.triton_backend import TritonServerLost

    port, n = server.grpc_port, 240
    direct = load_backend(CARD, backend="triton", server=server.grpc_url, backoff=0.05)
    notices = []
    direct.on_notice = notices.append
    frame = np.zeros((1, 3, 64, 64), np.float32)
    dstate = direct.init_state(1)
    _, dstate = direct.run_step(frame, dstate)
    events = tmp_path / "events.jsonl"
    result = {}
    pipeline = (
        SRC.format(n=n, live="is-live=true", fps=10)
        + f" ! hcmlaction backend=triton server=127.0.0.1:{port} events={events}"
        " ! fakesink name=sink sync=false"
    )
    runner = threading.Thread(
        target=lambda: result.update(run=run_pipeline(pipeline, events=events, timeout=120))
    )
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while not (events.exists() and len(events.read_text().splitlines()) >= 3):
            assert time.monotonic() < deadline and runner.is_alive(), "no predictions at all"
            time.sleep(0.1)
        server.kill()
        killed_at = len(events.read_text().splitlines())
        repeats = []
        for _ in range(4):
            with pytest.raises(TritonServerLost) as e:
                direct.run_step(frame, dstate)
            repeats.append(e.value.repeat)
            time.sleep(0.1)
        assert repeats == [False, True, True, True] and not notices
        direct.end_of_streams()
        assert (
            len(notices) == 1 and "still down at end of stream after 4 failed calls" in (notices[0])
        ), notices
        time.sleep(0.5)
        server.start(timeout=START_TIMEOUT)  # same ports; the module fixture stops it
        restarted_at = len(events.read_text().splitlines())
        assert runner.is_alive(), "the stream ended before the server came back: raise n"
    finally:
        runner.join(timeout=150)
    run = result["run"]
    assert run.eos and not run.errors, run.errors
    assert run.buffers == n  # every buffer went downstream, outage or not
    assert all("hcmlaction" in src for src, _ in run.warnings), run.warnings
    texts = [w for _, w in run.warnings]
    assert sum("lost triton server" in w for w in texts) == 1, texts  # once, not per frame
    assert not any("is down" in w for w in texts), texts
    # the stream's first request to the restarted server started a new sequence (a request
    # without START for a sequence the new server never saw would be refused: a warning)
    assert not any("START" in w for w in texts), texts
    back = [w for w in texts if "answers again after" in w]
    assert len(back) == 1 and int(back[0].split("after ")[1].split()[0]) >= 2, texts
    assert restarted_at - killed_at <= 1  # nothing predicted while the server was down
    after = run.events[restarted_at:]
    assert len(after) >= 5, f"no recovery: {len(after)} predictions after the restart"
    frames = [e["frame"] for e in run.events]
    assert frames == sorted(frames) and len(set(frames)) == len(frames)


def test_serve_cli_rejects_bad_input(tmp_path, capsys):
    from hcml.cli import main

    assert main(["serve", str(tmp_path / "nope.json")]) == 2
    assert "model card not found" in capsys.readouterr().err
    assert main(["serve", str(CARD), "--grpc-port", "9", "--http-port", "9"]) == 2
    assert "must differ" in capsys.readouterr().err
    for cmd in (["serve", str(CARD)], ["export", str(tmp_path / "m.pt"), "--name", "m"]):
        assert main([*cmd, "--sequence-idle-s", "0"]) == 2
        err = capsys.readouterr().err
        assert "--sequence-idle-s must be a positive number of seconds" in err, err
        assert err.count("\n") == 1


def test_server_exits_cleanly_with_bad_repository(tmp_path):
    bad = tmp_path / "repo" / "broken" / "1"
    bad.mkdir(parents=True)
    (bad.parent / "config.pbtxt").write_text('name: "broken"\nbackend: "python"\n')
    (bad / "model.py").write_text("raise ImportError('no such thing')\n")
    with pytest.raises(ServeError, match="tritonserver exited"):
        _server(tmp_path / "repo").start(timeout=START_TIMEOUT)


def test_hcml_serve_command_ready_then_sigterm_exits_cleanly(tmp_path):
    """`hcml serve` stopped by SIGTERM while a client still holds two open sequences (never
    ended) and a large clip request is in flight: the request is answered, the sequences are
    dropped (one line says 2), exit status 0, and no Triton exit timeout is waited out (it
    would exit 1). The client stepping those streams meanwhile sees only outages
    (TritonServerLost), never a request error. --sequence-idle-s reaches the written config."""
    import os
    import signal
    import subprocess
    import sys
    import urllib.request

    from hcml.backends.triton_backend import TritonServerLost

    ports = [free_port() for _ in range(3)]
    log = tmp_path / "serve.out"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hcml.cli", "serve", str(CARD), "--repository",
             str(tmp_path / "repo"), "--grpc-port", str(ports[0]), "--http-port",
             str(ports[1]), "--metrics-port", str(ports[2]), "--instances", "1",
             "--sequence-idle-s", "20"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while "Triton ready" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        url = f"http://127.0.0.1:{ports[1]}/v2/health/ready"
        with urllib.request.urlopen(url, timeout=5) as r:
            assert r.status == 200
        assert f"server=127.0.0.1:{ports[0]}" in log.read_text()
        assert (tmp_path / "repo" / "hcml_tiny_motion_step" / "1" / "model.onnx").is_file()
        seq_cfg = (tmp_path / "repo" / "hcml_tiny_motion_step_seq" / "config.pbtxt").read_text()
        assert "max_sequence_idle_microseconds: 20000000" in seq_cfg
        url_grpc = f"127.0.0.1:{ports[0]}"
        held = load_backend(
            CARD, backend="triton", server=url_grpc, state="server", backoff=0.05, max_backoff=0.2
        )
        state = held.init_state(2)
        for _ in range(2):
            _, state = held.run_step(np.zeros((2, 3, 64, 64), np.float32), state)
        clip = load_backend(CARD, backend="triton", server=url_grpc)
        clip.run_clip(np.zeros((1, 3, 8, 64, 64), np.float32))  # connected
        answer = {}

        def big_request():
            try:
                answer["logits"] = clip.run_clip(np.zeros((16, 3, 8, 64, 64), np.float32))
            except Exception as e:  # noqa: BLE001 - reported by the assertion below
                answer["error"] = e
            answer["at"] = time.monotonic()

        worker = threading.Thread(target=big_request)
        worker.start()
        time.sleep(0.25)  # the request reached the server (loopback, connection warm)
        sent = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        # the client keeps stepping its streams while the server stops: every failure is an
        # outage (its sequences dropped, models unloading, then gone), never a request error
        # that hcmlaction would count towards max-errors
        failures = []
        while proc.poll() is None and time.monotonic() - sent < 60:
            try:
                _, state = held.run_step(np.zeros((2, 3, 64, 64), np.float32), state)
            except Exception as e:  # noqa: BLE001 - classified below
                failures.append(e)
            time.sleep(0.05)
        assert proc.wait(timeout=60) == 0, log.read_text()
        stopped_s = time.monotonic() - sent
        worker.join(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "error" not in answer and answer["logits"].shape == (16, 12), answer
    assert "stopped (tritonserver exit 0), dropped 2 open sequences" in text, text
    assert failures and all(isinstance(e, TritonServerLost) for e in failures), failures
    assert sum(not e.repeat for e in failures) <= 2, failures  # not one warning per call
    print(f"stop took {stopped_s:.1f} s; big request answered {answer['at'] - sent:+.2f} s")
    with pytest.raises(OSError):  # nothing listens any more
        urllib.request.urlopen(url, timeout=2)


def test_wire_bytes_are_the_tensors_plus_small_framing():
    """The per-frame sizes in docs/SERVING.md: exact protobuf sizes, checked against the raw
    tensor bytes computed from the card (framing is names, shapes and types only)."""
    import onnx

    from hcml.bench.serve import wire_bytes
    from hcml.card import ModelCard

    card = ModelCard.load(CARD)
    w = wire_bytes(CARD)
    # Reference: the float32 state inputs as the ONNX step graph itself declares them.
    graph = onnx.load(str(CARD.with_name(CARD.stem + ".step.onnx"))).graph
    state = sum(
        4 * int(np.prod([d.dim_value for d in i.type.tensor_type.shape.dim[1:]]))
        for i in graph.input
        if i.name.startswith("state.")
    )
    frame, logits = 4 * 3 * 64 * 64, 4 * len(card.labels)
    assert state > 0
    assert (w["state_bytes"], w["frame_bytes"]) == (state, frame)
    for key, raw in (
        ("client_state_request", frame + state),
        ("client_state_response", logits + state),
        ("server_state_request", frame),
        ("server_state_response", logits),
        ("clip_request", frame * card.window),
    ):
        assert raw < w[key] < raw + 400, (key, w[key], raw)
