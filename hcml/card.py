"""The model card: one JSON file that says everything a runtime needs to use an exported model.

A card sits beside the files it describes (``engines/NAME.json`` next to ``NAME.onnx``,
``NAME.step.onnx``, ``NAME.labels.txt`` and any TensorRT plans). Paths in it are relative to the
card's folder. ``ModelCard.load`` checks the card against those files (existence, sha256, the
ONNX input/output shapes versus the window, input size and label count) and raises
``ModelCardError`` naming the field and the file when anything disagrees, so a mismatched model
fails loudly at start-up instead of producing wrong labels later.

Schema (version 1)::

    {
      "schema": 1,
      "name": "hcml_tiny_synth",            # file stem
      "model": "hcml_tiny",                 # registry name (hcml.model.create_model)
      "labels": ["static", ...],            # K names, class-id order
      "window": 16,                         # T frames per prediction
      "frame_step": 1,                      # feed every k-th decoded frame
      "input_size": [112, 112],             # H, W
      "mean": [0.45, 0.45, 0.45], "std": [0.225, 0.225, 0.225],   # on [0, 1] pixel values
      "color_order": "RGB",
      "layout": "NCDHW",                    # clip input [B, 3, T, H, W]
      "files": {"clip": "NAME.onnx", "step": "NAME.step.onnx", "labels": "NAME.labels.txt",
                "checkpoint": "NAME.pt",
                "plans": {"<gpu>.<trt>": {"clip": "...plan", "step": "...plan", ...}}},
      "tensors": {"clip": {...}, "step": {...}},     # names and shapes (-1 = dynamic batch)
      "sha256": {"NAME.onnx": "...", ...},  # keyed by file path as written in "files"
      "levels": [0, 1, 2, 3], "recipe": {...}, "metrics": {...}, "cfg": {...}, "created": "...",
      "temperature": 1.0                    # scores = softmax(logits / T); absent = 1.0, > 0
    }                                       # (fitted by `hcml calibrate`)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1

__all__ = ["SCHEMA_VERSION", "ModelCard", "ModelCardError", "card_from_cfg", "sha256_file"]


class ModelCardError(ValueError):
    """A model card that does not match itself or its files.

    ``field`` is the card key at fault (``"input_size"``, ``"files.clip"``, ``"sha256"``, ...);
    the message names the field and the card file.
    """

    def __init__(self, field: str, message: str, path: str | os.PathLike | None = None):
        self.field = field
        self.path = Path(path) if path is not None else None
        where = f" in {self.path}" if self.path is not None else ""
        super().__init__(f"model card field '{field}'{where}: {message}")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass
class ModelCard:
    """What a runtime needs to know about an exported model (see the module docstring)."""

    name: str
    labels: list[str]
    window: int
    input_size: tuple[int, int]
    mean: tuple[float, float, float] = (0.45, 0.45, 0.45)
    std: tuple[float, float, float] = (0.225, 0.225, 0.225)
    frame_step: int = 1
    color_order: str = "RGB"
    layout: str = "NCDHW"
    model: str = ""
    files: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, Any] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)
    levels: list[int] = field(default_factory=list)
    recipe: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    cfg: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    temperature: float = 1.0  # scores = softmax(logits / temperature) (hcml.training.calibration)
    schema: int = SCHEMA_VERSION
    path: Path | None = None  # where the card was loaded from / saved to (not serialized)

    # ------------------------------------------------------------------ derived
    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def root(self) -> Path:
        """The folder that relative paths in ``files`` are resolved against."""
        return self.path.parent if self.path is not None else Path.cwd()

    def file(self, role: str) -> Path | None:
        """Absolute path of ``files[role]`` (``clip``, ``step``, ``checkpoint``...), or None."""
        rel = self.files.get(role)
        if not isinstance(rel, str) or not rel:
            return None
        return (self.root / rel).resolve()

    def plans(self) -> dict[str, dict[str, Any]]:
        """Built TensorRT plans keyed ``"<gpu>.<trt-version>"`` (may be empty)."""
        plans = self.files.get("plans") or {}
        return dict(plans)

    def labels_txt(self) -> str:
        """DeepStream's classifier label-file format: one line, labels separated by ';'."""
        return ";".join(self.labels) + "\n"

    def normalize(self):
        """(mean, std) as float lists, for callers that normalize [0, 1] RGB pixels."""
        return list(self.mean), list(self.std)

    # ------------------------------------------------------------------ (de)serialization
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("path")
        d["input_size"] = list(self.input_size)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write the card as JSON (to ``path`` or where it came from); returns the path."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise ValueError("ModelCard.save: no path given and the card has none")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(target.suffix + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n")
        os.replace(tmp, target)
        self.path = target.resolve()
        return target

    def refresh_sha256(self) -> None:
        """Recompute ``sha256`` for every file the card references that exists."""
        self.sha256 = {rel: sha256_file(self.root / rel) for rel in self._referenced_files()}

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: str | os.PathLike | None = None) -> ModelCard:
        """Build a card from parsed JSON, checking keys and types (not the files)."""
        where = Path(path) if path is not None else None
        if not isinstance(data, dict):
            raise ModelCardError("<root>", "expected a JSON object", where)
        known = {f.name for f in dataclasses.fields(cls)} - {"path"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelCardError(unknown[0], f"unknown key (known: {sorted(known)})", where)
        for req in ("name", "labels", "window", "input_size"):
            if req not in data:
                raise ModelCardError(req, "missing required key", where)
        kw: dict[str, Any] = {}
        kw["name"] = _typed(data, "name", str, where)
        labels = _typed(data, "labels", list, where)
        if not labels or not all(isinstance(x, str) and x for x in labels):
            raise ModelCardError("labels", "must be a non-empty list of non-empty strings", where)
        kw["labels"] = list(labels)
        kw["window"] = _positive_int(data, "window", where)
        if "frame_step" in data:
            kw["frame_step"] = _positive_int(data, "frame_step", where)
        kw["input_size"] = _int_tuple(data, "input_size", 2, where)
        for key in ("mean", "std"):
            if key in data:
                kw[key] = _float_tuple(data, key, 3, where)
        if "std" in kw and any(s <= 0 for s in kw["std"]):
            raise ModelCardError("std", f"must be positive, got {kw['std']}", where)
        for key in ("color_order", "layout", "model", "created"):
            if key in data:
                kw[key] = _typed(data, key, str, where)
        if kw.get("color_order", "RGB") not in ("RGB", "BGR"):
            raise ModelCardError(
                "color_order", f"must be RGB or BGR, got {kw['color_order']}", where
            )
        for key in ("files", "tensors", "sha256", "recipe", "metrics", "cfg"):
            if key in data:
                kw[key] = dict(_typed(data, key, dict, where))
        for role, rel in kw.get("files", {}).items():
            if role == "plans":
                if not isinstance(rel, dict):
                    raise ModelCardError("files.plans", "must be an object", where)
            elif not isinstance(rel, str):
                raise ModelCardError(f"files.{role}", "must be a path string", where)
        if "temperature" in data:
            t = data["temperature"]
            if isinstance(t, bool) or not isinstance(t, int | float) or not 0 < t < float("inf"):
                raise ModelCardError("temperature", f"expected a number > 0, got {t!r}", where)
            kw["temperature"] = float(t)
        if "levels" in data:
            levels = _typed(data, "levels", list, where)
            if not all(isinstance(x, int) for x in levels):
                raise ModelCardError("levels", "must be a list of integers", where)
            kw["levels"] = list(levels)
        if "schema" in data:
            kw["schema"] = _typed(data, "schema", int, where)
            if kw["schema"] > SCHEMA_VERSION:
                raise ModelCardError(
                    "schema", f"version {kw['schema']} is newer than {SCHEMA_VERSION}", where
                )
        card = cls(**kw)
        card.path = where.resolve() if where is not None else None
        return card

    @classmethod
    def load(
        cls, path: str | os.PathLike, *, verify: bool = True, check_hashes: bool = True
    ) -> ModelCard:
        """Read and validate a card.

        ``verify`` checks that the referenced files exist and agree with the card (ONNX tensor
        shapes versus ``window``/``input_size``/``labels``); ``check_hashes`` compares sha256.
        Raises ``ModelCardError`` (a ``ValueError``) naming the field and the card file.
        """
        path = Path(path)
        if not path.is_file():
            raise ModelCardError("<file>", "card file not found", path)
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ModelCardError("<json>", f"not valid JSON ({e})", path) from None
        card = cls.from_dict(data, path)
        if verify:
            card.validate(check_hashes=check_hashes)
        return card

    # ------------------------------------------------------------------ validation
    def _referenced_files(self) -> list[str]:
        rels = [v for k, v in self.files.items() if k != "plans" and isinstance(v, str) and v]
        for plan in self.plans().values():
            rels += [plan[k] for k in ("clip", "step") if isinstance(plan.get(k), str)]
        return rels

    def validate(self, check_hashes: bool = True) -> None:
        """Check the card against its files; raise ``ModelCardError`` on the first problem."""
        if "clip" not in self.files:
            raise ModelCardError(
                "files.clip", "missing (every card names its clip graph)", self.path
            )
        for role, rel in self.files.items():
            if role == "plans":
                continue
            if not (self.root / rel).is_file():
                raise ModelCardError(
                    f"files.{role}", f"file not found: {self.root / rel}", self.path
                )
        if check_hashes:
            for rel in self._referenced_files():
                if not (self.root / rel).is_file():
                    continue  # plans may be absent on a machine that did not build them
                want = self.sha256.get(rel)
                if want is None:
                    raise ModelCardError("sha256", f"no sha256 recorded for {rel}", self.path)
                got = sha256_file(self.root / rel)
                if got != want:
                    raise ModelCardError(
                        "sha256",
                        f"{rel} has sha256 {got[:12]}..., the card says {want[:12]}... "
                        "(file changed after export: re-export or fix the card)",
                        self.path,
                    )
        self._check_onnx()

    def _check_onnx(self) -> None:
        import onnx

        def shapes(p: Path) -> tuple[dict[str, list], dict[str, list]]:
            m = onnx.load(str(p), load_external_data=False)

            def dims(vi) -> list:
                return [
                    d.dim_value if d.HasField("dim_value") else -1
                    for d in vi.type.tensor_type.shape.dim
                ]

            inits = {i.name for i in m.graph.initializer}
            ins = {vi.name: dims(vi) for vi in m.graph.input if vi.name not in inits}
            outs = {vi.name: dims(vi) for vi in m.graph.output}
            return ins, outs

        h, w = self.input_size
        clip = self.file("clip")
        ins, outs = shapes(clip)
        names = self.tensors.get("clip", {})
        in_name = names.get("input", "frames")
        out_name = names.get("output", "logits")
        if in_name not in ins:
            raise ModelCardError(
                "tensors.clip", f"{clip.name} has no input '{in_name}' ({list(ins)})", self.path
            )
        if out_name not in outs:
            raise ModelCardError(
                "tensors.clip", f"{clip.name} has no output '{out_name}' ({list(outs)})", self.path
            )
        shape = ins[in_name]
        if len(shape) != 5 or shape[1] not in (3, -1):
            raise ModelCardError(
                "layout", f"{clip.name} input {in_name} is {shape}, want [B,3,T,H,W]", self.path
            )
        if shape[2] not in (-1, self.window):
            raise ModelCardError(
                "window", f"card says {self.window}, {clip.name} takes T={shape[2]}", self.path
            )
        if tuple(shape[3:]) != (h, w) and -1 not in shape[3:]:
            raise ModelCardError(
                "input_size",
                f"card says {h}x{w}, {clip.name} takes {shape[3]}x{shape[4]}",
                self.path,
            )
        k = outs[out_name][-1]
        if k != -1 and k != len(self.labels):
            raise ModelCardError(
                "labels",
                f"{len(self.labels)} labels but {clip.name} outputs {k} classes",
                self.path,
            )
        step = self.file("step")
        if step is None:  # a network that cannot stream (e.g. TSM): clip graph only
            return
        s_ins, s_outs = shapes(step)
        snames = self.tensors.get("step", {})
        f_name = snames.get("input", "frame")
        if f_name not in s_ins:
            raise ModelCardError(
                "tensors.step", f"{step.name} has no input '{f_name}' ({list(s_ins)})", self.path
            )
        fshape = s_ins[f_name]
        if len(fshape) != 4 or (tuple(fshape[2:]) != (h, w) and -1 not in fshape[2:]):
            raise ModelCardError(
                "input_size", f"card says {h}x{w}, {step.name} frame input is {fshape}", self.path
            )
        sk = s_outs.get(snames.get("output", "logits"), [-1])[-1]
        if sk != -1 and sk != len(self.labels):
            raise ModelCardError(
                "labels",
                f"{len(self.labels)} labels but {step.name} outputs {sk} classes",
                self.path,
            )
        for st in snames.get("state", []):
            if not isinstance(st, dict) or not {"key", "name", "out", "shape"} <= set(st):
                raise ModelCardError(
                    "tensors.step", f"state entry {st!r} needs key, name, out, shape", self.path
                )
            if st["name"] not in s_ins or st["out"] not in s_outs:
                raise ModelCardError(
                    "tensors.step",
                    f"state tensor {st['name']}/{st['out']} not in {step.name}",
                    self.path,
                )
            if st.get("window", self.window) != self.window:
                raise ModelCardError(
                    "window",
                    f"card says {self.window}, {step.name} was exported for {st['window']}",
                    self.path,
                )


# ---------------------------------------------------------------------- field checks
def _typed(data: dict, key: str, typ: type, where: Path | None) -> Any:
    v = data[key]
    if typ is int and isinstance(v, bool) or not isinstance(v, typ):
        raise ModelCardError(key, f"expected {typ.__name__}, got {type(v).__name__} ({v!r})", where)
    return v


def _positive_int(data: dict, key: str, where: Path | None) -> int:
    v = data[key]
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ModelCardError(key, f"expected a positive integer, got {v!r}", where)
    return v


def _int_tuple(data: dict, key: str, n: int, where: Path | None) -> tuple[int, ...]:
    v = data[key]
    if (
        not isinstance(v, list | tuple)
        or len(v) != n
        or not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in v)
    ):
        raise ModelCardError(key, f"expected {n} positive integers, got {v!r}", where)
    return tuple(v)


def _float_tuple(data: dict, key: str, n: int, where: Path | None) -> tuple[float, ...]:
    v = data[key]
    if (
        not isinstance(v, list | tuple)
        or len(v) != n
        or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)
    ):
        raise ModelCardError(key, f"expected {n} numbers, got {v!r}", where)
    return tuple(float(x) for x in v)


def card_from_cfg(
    cfg: dict[str, Any],
    name: str | None = None,
    labels: list[str] | None = None,
    window: int | None = None,
    frame_step: int = 1,
) -> ModelCard:
    """A card (no files yet) from a model's ``default_cfg`` (name, num_classes, frames, ...)."""
    from hcml.labels import LABELS

    k = int(cfg.get("num_classes", len(LABELS)))
    if labels is None:
        labels = list(LABELS) if k == len(LABELS) else [f"class_{i}" for i in range(k)]
    if len(labels) != k:
        raise ModelCardError("labels", f"{len(labels)} labels for a {k}-class model")
    size = tuple(int(v) for v in cfg.get("input_size", (3, 112, 112))[-2:])
    levels = cfg.get("levels", [])
    levels = list(range(levels)) if isinstance(levels, int) else [int(v) for v in levels]
    return ModelCard(
        name=name or str(cfg.get("name", "hcml")),
        model=str(cfg.get("name", "")),
        labels=list(labels),
        window=int(window or cfg.get("frames", 16)),
        frame_step=frame_step,
        input_size=size,  # type: ignore[arg-type]
        mean=tuple(float(v) for v in cfg.get("mean", (0.45, 0.45, 0.45))),  # type: ignore[arg-type]
        std=tuple(float(v) for v in cfg.get("std", (0.225, 0.225, 0.225))),  # type: ignore[arg-type]
        levels=levels,
        cfg=_jsonable(cfg),
    )


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, str | int | float | bool) or obj is None:
        return obj
    return str(obj)


def clip_model_name(card: ModelCard) -> str:
    """The Triton model that serves the card's clip graph (``hcml serve``, nvinferserver)."""
    return card.name


def step_model_name(card: ModelCard) -> str:
    """The Triton model that serves the card's step graph."""
    return card.name + "_step"


def sequence_model_name(card: ModelCard) -> str:
    """The Triton model of the step graph whose state the server holds (sequence batcher)."""
    return step_model_name(card) + "_seq"
