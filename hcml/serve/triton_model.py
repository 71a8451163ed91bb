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
0 = ORT's default; ``spinning`` = "1" lets idle ORT threads spin, off by default). A request that fails gets its own error response; the others still run.
"""

import os
import sys

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

    def execute(self, requests):
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
