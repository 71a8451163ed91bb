"""Triton python-backend model: one ONNX graph (clip or step) run by ONNX Runtime inside Triton.

``hcml.export.triton_repo`` copies this file to ``REPO/MODEL/1/model.py`` beside
``1/model.onnx``. It depends on numpy and onnxruntime only (never on ``hcml``), so the same
repository works in any Triton whose python backend can import those two (under numpy 2
outputs go through DLPack: see ``_out``). The python backend's
embedded interpreter ignores ``PYTHONPATH``; ``hcml serve`` passes the client's site-packages in
``HCML_SERVE_PATH`` (os.pathsep-separated) and they are put first on ``sys.path``.

``execute`` gets every request the dynamic batcher grouped: their inputs are concatenated along
the batch axis, ONE session call runs them all, and the outputs are split back per request
(tensor names and order from config.pbtxt; config parameter ``threads`` = ORT intra-op threads,
0 = ORT's default; ``spinning`` = "1" lets idle ORT threads spin, off by default). A request
that fails gets its own error response; the others still run.

Server-held state (config parameter ``state`` = ``IN=OUT=shape;...``, the sequence batcher's
``oldest`` strategy): each request is one stream's frame [1, 3, H, W] plus the controls
``START``, ``END`` (fp32 0/1) and ``CORRID`` (uint64). The model keeps each sequence's state
tensors in memory keyed by correlation id: zeros on START, advanced by every request, dropped
on END or when unused for ``idle_us`` (the batcher's ``max_sequence_idle_microseconds``, after
which Triton itself refuses a request without START; a background thread sweeps idle sequences
even when no request comes). A request of an unknown sequence (not started here, or expired)
gets an error: the client restarts the stream with START. Responses carry the logits only. A
sequence whose request failed stays listed without state (Triton still holds its slot) until
END or the idle timeout; its next request without START gets the same error.

Live sequences are published for ``hcml serve``'s supervisor: when ``HCML_SERVE_SEQUENCES``
names a folder, each instance keeps ``FOLDER/MODEL.INSTANCE.json`` (model, frame input name and
shape, correlation ids) up to date whenever its set of sequences changes. Triton counts live
sequences as in-flight work and would wait for them on SIGTERM; the supervisor reads these files
and ends each sequence with a *drop* request (END plus the request parameter ``hcml_drop``),
which this model answers with zero logits without running the graph.
"""

import json
import os
import sys
import threading
import time

for _p in reversed([p for p in os.environ.get("HCML_SERVE_PATH", "").split(os.pathsep) if p]):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

if int(np.__version__.split(".")[0]) >= 2:
    # The stub's pybind11 reads a numpy-1 dtype layout: with numpy 2 an output made by
    # pb_utils.Tensor(name, array) arrives with 0 bytes. DLPack carries the same memory without
    # that bug; the stub renames numpy's capsule in a way numpy's capsule destructor does not
    # expect, which only prints an unraisable "PyCapsule_GetPointer called with incorrect name"
    # (the stub itself releases the tensor). That one message is silenced, nothing else.
    _default_hook = sys.unraisablehook

    def _hook(u):
        if not (u.exc_type is ValueError and "PyCapsule_GetPointer" in str(u.exc_value)):
            _default_hook(u)

    sys.unraisablehook = _hook

    def _out(name, array):
        return pb_utils.Tensor.from_dlpack(name, array)

else:

    def _out(name, array):
        return pb_utils.Tensor(name, array)


DROP_PARAMETER = "hcml_drop"  # request parameter: END this sequence, skip the graph
SEQUENCES_ENV = "HCML_SERVE_SEQUENCES"  # folder where live sequence ids are published


class TritonPythonModel:
    def initialize(self, args):
        cfg = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in cfg.get("parameters", {}).items()}
        here = os.path.join(args["model_repository"], args["model_version"])
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(params.get("threads", "0") or 0)
        so.inter_op_num_threads = 1
        if params.get("spinning", "0") != "1":
            # Spinning intra-op threads burn a core between requests, which the clients on the
            # same host (and the other instances) need: off unless the config asks for it.
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(
            os.path.join(here, params.get("onnx_file", "model.onnx")),
            so,
            providers=["CPUExecutionProvider"],
        )
        self.inputs = [t["name"] for t in cfg["input"]]
        self.outputs = [t["name"] for t in cfg["output"]]
        # server-held state: [(input name, output name, row shape)], sequences by correlation id
        self.state = []
        for item in filter(None, params.get("state", "").split(";")):
            name, out, shape = item.split("=")
            self.state.append((name, out, [1, *[int(d) for d in shape.split(",")[1:]]]))
        self.idle_s = int(params.get("idle_us", "0") or 0) / 1e6
        # correlation id -> ([state arrays [1, ...]] or None after a failed request, last use)
        self.seqs = {}
        self._lock = threading.Lock()  # self.seqs: execute vs the sweeper thread
        self._swept = time.monotonic()
        self._stop = threading.Event()
        self._sweeper = None
        self._published = None
        self._out_shapes = [[1, *t["dims"]] for t in cfg["output"]]
        folder = os.environ.get(SEQUENCES_ENV, "")
        self._file = None
        if self.state and folder and os.path.isdir(folder):
            name = f"{args['model_name']}.{args['model_instance_name']}.json"
            self._file = os.path.join(folder, name)
            self._info = {
                "model": args["model_name"],
                "instance": args["model_instance_name"],
                "input": self.inputs[0],
                "shape": [1, *cfg["input"][0]["dims"]],
            }
            self._publish()
        if self.state and self.idle_s > 0:
            self._sweeper = threading.Thread(target=self._sweep_loop, daemon=True)
            self._sweeper.start()

    def execute(self, requests):
        if self.state:
            return self._execute_sequences(requests)
        return self._execute_stateless(requests)

    def _publish(self):
        """Write this instance's live correlation ids (only when the set changed)."""
        if self._file is None:
            return
        if self._published is not None and self.seqs.keys() == self._published:
            return
        ids = set(self.seqs)
        tmp = self._file + ".tmp"
        try:
            with open(tmp, "w") as f:
                json.dump(dict(self._info, ids=sorted(ids)), f)
            os.replace(tmp, self._file)
            self._published = ids
        except OSError:  # the supervisor's folder is gone (server stopping): nothing to tell
            pass

    def _sweep(self, now):
        """Drop sequences unused for ``idle_s`` (Triton has released them already)."""
        if self.idle_s > 0 and now - self._swept >= min(1.0, self.idle_s / 4):
            self._swept = now
            for cid in [c for c, (_, t) in self.seqs.items() if now - t > self.idle_s]:
                del self.seqs[cid]
            self._publish()

    def _sweep_loop(self):
        while not self._stop.wait(min(1.0, self.idle_s / 4)):
            with self._lock:
                self._sweep(time.monotonic())

    def _execute_sequences(self, requests):
        with self._lock:
            try:
                return self._execute_sequences_locked(requests)
            finally:
                self._publish()

    def _execute_sequences_locked(self, requests):
        now = time.monotonic()
        self._sweep(now)
        frames, states, rows, responses = [], [], [], [None] * len(requests)
        for i, req in enumerate(requests):
            cid, end = None, False
            try:

                def get(name, req=req):
                    return np.from_dlpack(pb_utils.get_input_tensor_by_name(req, name))

                cid = int(get("CORRID").reshape(-1)[0])
                start, end = bool(get("START").reshape(-1)[0]), bool(get("END").reshape(-1)[0])
                if end and DROP_PARAMETER in json.loads(req.parameters() or "{}"):
                    # the supervisor ends a sequence left open at shutdown: no graph run
                    self.seqs.pop(cid, None)
                    tensors = [
                        _out(n, np.zeros(shape, np.float32))
                        for n, shape in zip(self.outputs, self._out_shapes, strict=True)
                    ]
                    responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
                    continue
                frame = get(self.inputs[0])
                if len(frame) != 1:
                    raise ValueError(f"one frame per sequence request, got {len(frame)}")
                if start:
                    state = [np.zeros(shape, np.float32) for _, _, shape in self.state]
                elif self.seqs.get(cid, (None,))[0] is not None:
                    state = self.seqs[cid][0]
                else:
                    raise KeyError(
                        f"sequence {cid} has no state on this server (never started here, "
                        "expired, or a request of it failed): restart it with sequence_start"
                    )
            except Exception as err:  # noqa: BLE001 - answered as this request's error
                responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(err)))
                self._failed(cid, end, now)
                continue
            frames.append(frame)
            states.append(state)
            rows.append((i, cid, end))
        if not rows:
            return responses
        feeds = {self.inputs[0]: np.concatenate(frames, 0) if len(frames) > 1 else frames[0]}
        for j, (name, _, _) in enumerate(self.state):
            parts = [s[j] for s in states]
            feeds[name] = np.concatenate(parts, 0) if len(parts) > 1 else parts[0]
        try:
            outs = self.session.run(self.outputs + [o for _, o, _ in self.state], feeds)
        except Exception as err:  # noqa: BLE001 - every request of the batch gets it
            for i, cid, end in rows:
                self._failed(cid, end, now)  # its state did not advance: the client restarts it
                responses[i] = pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(f"onnxruntime: {err}")
                )
            return responses
        n_out = len(self.outputs)
        for r, (i, cid, end) in enumerate(rows):
            if end:
                self.seqs.pop(cid, None)
            else:
                self.seqs[cid] = ([o[r : r + 1] for o in outs[n_out:]], now)
            tensors = [
                _out(name, np.ascontiguousarray(o[r : r + 1]))
                for name, o in zip(self.outputs, outs[:n_out], strict=True)
            ]
            responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
        return responses

    def _failed(self, cid, end, now):
        """A request of sequence ``cid`` failed: Triton still holds the sequence (unless END),
        so it stays listed, without state: its next request must START again."""
        if cid is None:
            return
        if end:
            self.seqs.pop(cid, None)
        else:
            self.seqs[cid] = (None, now)

    def _execute_stateless(self, requests):
        feeds, rows, responses = {n: [] for n in self.inputs}, [], [None] * len(requests)
        ok = []
        for i, req in enumerate(requests):
            try:
                arrays = [
                    np.from_dlpack(pb_utils.get_input_tensor_by_name(req, n)) for n in self.inputs
                ]
            except Exception as err:  # noqa: BLE001 - answered as this request's error
                responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(err)))
                continue
            for n, a in zip(self.inputs, arrays, strict=True):
                feeds[n].append(a)
            rows.append(len(arrays[0]))
            ok.append(i)
        if ok:
            batch = {n: np.concatenate(v, 0) if len(v) > 1 else v[0] for n, v in feeds.items()}
            try:
                outs = self.session.run(self.outputs, batch)
            except Exception as err:  # noqa: BLE001 - every request of the batch gets it
                for i in ok:
                    responses[i] = pb_utils.InferenceResponse(
                        error=pb_utils.TritonError(f"onnxruntime: {err}")
                    )
                return responses
            start = 0
            for i, n_rows in zip(ok, rows, strict=True):
                tensors = [
                    _out(name, np.ascontiguousarray(o[start : start + n_rows]))
                    for name, o in zip(self.outputs, outs, strict=True)
                ]
                responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
                start += n_rows
        return responses

    def finalize(self):
        self._stop.set()
        if self._sweeper is not None:
            self._sweeper.join(timeout=5)
        with self._lock:
            self.session = None
            self.seqs.clear()
            self._publish()
