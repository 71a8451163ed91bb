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
which Triton itself refuses a request without START). A request of an unknown sequence (not
started here, or expired) gets an error: the client restarts the stream with START. Responses
carry the logits only.
"""

import os
import sys
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


class TritonPythonModel:
    def initialize(self, args):
        import json

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
        self.seqs = {}  # correlation id -> ([state arrays [1, ...]], last use, monotonic s)
        self._swept = time.monotonic()

    def execute(self, requests):
        if self.state:
            return self._execute_sequences(requests)
        return self._execute_stateless(requests)

    def _sweep(self, now):
        """Drop sequences unused for ``idle_s`` (Triton has released them already)."""
        if self.idle_s > 0 and now - self._swept > min(1.0, self.idle_s):
            self._swept = now
            for cid in [c for c, (_, t) in self.seqs.items() if now - t > self.idle_s]:
                del self.seqs[cid]

    def _execute_sequences(self, requests):
        now = time.monotonic()
        self._sweep(now)
        frames, states, rows, responses = [], [], [], [None] * len(requests)
        for i, req in enumerate(requests):
            try:

                def get(name, req=req):
                    return np.from_dlpack(pb_utils.get_input_tensor_by_name(req, name))

                frame, start, end = get(self.inputs[0]), get("START"), get("END")
                cid = int(get("CORRID").reshape(-1)[0])
                if len(frame) != 1:
                    raise ValueError(f"one frame per sequence request, got {len(frame)}")
                if start.reshape(-1)[0]:
                    state = [np.zeros(shape, np.float32) for _, _, shape in self.state]
                elif cid in self.seqs:
                    state = self.seqs[cid][0]
                else:
                    raise KeyError(
                        f"sequence {cid} has no state on this server (never started here, or "
                        "expired): restart it with sequence_start"
                    )
            except Exception as err:  # noqa: BLE001 - answered as this request's error
                responses[i] = pb_utils.InferenceResponse(error=pb_utils.TritonError(str(err)))
                continue
            frames.append(frame)
            states.append(state)
            rows.append((i, cid, bool(end.reshape(-1)[0])))
        if not rows:
            return responses
        feeds = {self.inputs[0]: np.concatenate(frames, 0) if len(frames) > 1 else frames[0]}
        for j, (name, _, _) in enumerate(self.state):
            parts = [s[j] for s in states]
            feeds[name] = np.concatenate(parts, 0) if len(parts) > 1 else parts[0]
        try:
            outs = self.session.run(self.outputs + [o for _, o, _ in self.state], feeds)
        except Exception as err:  # noqa: BLE001 - every request of the batch gets it
            for i, cid, _ in rows:
                self.seqs.pop(cid, None)  # its state did not advance: the client restarts it
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
        self.session = None
        self.seqs.clear()
