"""DeepStream configs checked key by key against the model card (``hcml check-config``).

``check_configs(paths, card=None) -> CheckReport``. Key files (nvdspreprocess, nvinfer and the
3D action app's ``[action-recognition]``) are read with ``GLib.KeyFile``, as DeepStream reads
them; nvinferserver and Triton ``config.pbtxt`` files with a small protobuf-text parser (the
``.proto`` schemas ship with DeepStream and Triton only). The card is ``--card``, else the one
whose ``files.clip`` is the config's ONNX (nvinfer ``onnx-file``, Triton ``1/model.onnx``; for a
preprocess config, the ONNX that its app's or a neighbouring nvinfer config runs), else the
``# hcml-card:`` line hcml writes into every generated file. An app config is followed into the
configs it names.
Relative paths are resolved against the folder of the config that holds them.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hcml.card import ModelCard, ModelCardError, sha256_file
from hcml.export.deepstream import (
    CARD_MARK,
    PRECISIONS,
    SEQUENCE_FUNC,
    SEQUENCE_LIB,
    deepstream_values,
)

__all__ = [
    "CheckReport",
    "ConfigSyntaxError",
    "Issue",
    "check_configs",
    "config_kind",
    "parse_pbtxt",
]

SCALE_RTOL = 1e-4  # channel-scale-factors, relative
OFFSET_ATOL = 1e-3  # channel-mean-offsets / offsets on the 0..255 scale
APP_GROUP = "action-recognition"
# Triton platforms hcml can serve the clip graph with, and each one's default model file name
TRITON_MODEL_FILES = {"onnxruntime_onnx": "model.onnx", "tensorrt_plan": "model.plan"}
TRITON_BACKENDS = {"onnxruntime": "onnxruntime_onnx", "tensorrt": "tensorrt_plan"}
APP_REQUIRED = (  # keys the app's parser reads unconditionally (deepstream_action_config_parse)
    "uri-list",
    "preprocess-config",
    "muxer-height",
    "muxer-width",
    "muxer-batch-timeout",
    "tiler-height",
    "tiler-width",
    "display-sync",
    "enable-fps",
    "fakesink",
    "debug",
)


class ConfigSyntaxError(ValueError):
    """A config file that its format's parser rejects."""


@dataclass
class Issue:
    """One disagreement: file, group (key-file group or protobuf message path), key, what."""

    file: Path
    group: str
    key: str
    message: str

    def __str__(self) -> str:
        return f"{_show(self.file)}: [{self.group}] {self.key}: {self.message}"


@dataclass
class CheckReport:
    """What ``check_configs`` found: issues (errors), notes (information that is no mismatch
    with the card: what the app or plugin will do, what cannot be checked from here), number of
    keys compared, files and cards seen."""

    issues: list[Issue] = field(default_factory=list)
    notes: list[Issue] = field(default_factory=list)
    keys: int = 0
    files: list[Path] = field(default_factory=list)
    cards: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.issues


def _show(p: Path) -> str:
    try:
        return os.path.relpath(p)
    except ValueError:
        return str(p)


# ---------------------------------------------------------------------- key files
class _KeyFile:
    """A parsed GLib key file: groups of raw string values (``GLib.KeyFile`` when available)."""

    def __init__(self, path: Path):
        self.path = path
        self.groups: dict[str, dict[str, str]] = {}
        try:
            from gi.repository import GLib
        except ImportError:  # pragma: no cover - gi is a project dependency
            self._parse_fallback(path)
            return
        kf = GLib.KeyFile()
        try:
            kf.load_from_file(str(path), GLib.KeyFileFlags.NONE)
        except GLib.Error as e:
            raise ConfigSyntaxError(f"not a valid key file ({e.message})") from None
        for g in kf.get_groups()[0]:
            self.groups[g] = {k: kf.get_value(g, k).strip() for k in kf.get_keys(g)[0]}

    def _parse_fallback(self, path: Path) -> None:
        import configparser

        cp = configparser.RawConfigParser(delimiters=("=",), comment_prefixes=("#",), strict=False)
        cp.optionxform = str  # type: ignore[assignment,method-assign]
        try:
            cp.read(path)
        except configparser.Error as e:
            raise ConfigSyntaxError(f"not a valid key file ({e})") from None
        self.groups = {g: {k: v.strip() for k, v in cp.items(g)} for g in cp.sections()}

    def get(self, group: str, key: str) -> str | None:
        return self.groups.get(group, {}).get(key)


# ---------------------------------------------------------------------- protobuf text
_PB_TOKEN = re.compile(
    r"""(?P<ws>\s+)|(?P<comment>\#[^\n]*)
    |(?P<str>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
    |(?P<punct>[{}\[\]:,;<>])
    |(?P<word>[A-Za-z0-9_.+\-]+)""",
    re.X,
)


def _pb_scalar(kind: str, text: str) -> Any:
    if kind == "str":
        return text[1:-1].encode("utf-8").decode("unicode_escape")
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text  # enum value or bool identifier


def parse_pbtxt(text: str) -> dict[str, list[Any]]:
    """Protobuf text format -> {field: [values]} (nested messages are dicts of the same shape).

    Every field maps to a list, as any field may repeat; no schema, so enums stay strings.
    Raises ``ConfigSyntaxError`` with the line number on malformed input.
    """
    toks: list[tuple[str, str, int]] = []
    pos, line = 0, 1
    while pos < len(text):
        m = _PB_TOKEN.match(text, pos)
        if m is None:
            raise ConfigSyntaxError(f"line {line}: unexpected character {text[pos]!r}")
        kind = m.lastgroup or ""
        if kind not in ("ws", "comment"):
            toks.append((kind, m.group(), line))
        line += m.group().count("\n")
        pos = m.end()
    i = 0

    def fail(msg: str) -> ConfigSyntaxError:
        where = toks[i][2] if i < len(toks) else line
        return ConfigSyntaxError(f"line {where}: {msg}")

    def value() -> Any:
        nonlocal i
        if i >= len(toks):
            raise fail("value expected")
        kind, tok, _ = toks[i]
        if tok in ("{", "<"):
            i += 1
            return message("}" if tok == "{" else ">")
        if kind not in ("str", "word"):
            raise fail(f"value expected, found {tok!r}")
        i += 1
        return _pb_scalar(kind, tok)

    def message(end: str | None) -> dict[str, list[Any]]:
        nonlocal i
        msg: dict[str, list[Any]] = {}
        while True:
            if i >= len(toks):
                if end is not None:
                    raise fail(f"missing {end!r}")
                return msg
            kind, tok, _ = toks[i]
            if tok == end:
                i += 1
                return msg
            if tok in (",", ";"):
                i += 1
                continue
            if kind != "word":
                raise fail(f"field name expected, found {tok!r}")
            name = tok
            i += 1
            colon = i < len(toks) and toks[i][1] == ":"
            i += colon
            if i < len(toks) and toks[i][1] == "[":
                i += 1
                items = msg.setdefault(name, [])
                while i < len(toks) and toks[i][1] != "]":
                    if toks[i][1] == ",":
                        i += 1
                        continue
                    items.append(value())
                if i >= len(toks):
                    raise fail("missing ']'")
                i += 1
            elif i < len(toks) and toks[i][1] in ("{", "<"):
                msg.setdefault(name, []).append(value())
            elif not colon:
                raise fail(f"':' expected after {name!r}")
            else:
                msg.setdefault(name, []).append(value())

    return message(None)


def _pb(msg: dict[str, list[Any]] | None, path: str) -> Any:
    """First value at a dotted field path, or None."""
    cur: Any = msg
    for part in path.split("."):
        if not isinstance(cur, dict) or not cur.get(part):
            return None
        cur = cur[part][0]
    return cur


def _pb_list(msg: dict[str, list[Any]] | None, path: str) -> list[Any]:
    parent, _, last = path.rpartition(".")
    holder = _pb(msg, parent) if parent else msg
    return list(holder.get(last, [])) if isinstance(holder, dict) else []


# ---------------------------------------------------------------------- kinds
def config_kind(path: Path) -> tuple[str | None, Any]:
    """(kind, parsed) for a config file: kind is preprocess, infer, app, nvinferserver,
    triton-model, or None (not a DeepStream config hcml knows). Raises ``ConfigSyntaxError``
    for a key file (it has ``[group]`` lines) that does not parse."""
    text = path.read_text(errors="replace")
    try:
        kf = _KeyFile(path)
    except ConfigSyntaxError:
        kf = None
        key_error = True
    else:
        key_error = False
    if kf is not None:
        if APP_GROUP in kf.groups:
            return "app", kf
        prop = kf.groups.get("property", {})
        if "network-input-shape" in prop or "user-configs" in kf.groups:
            return "preprocess", kf
        if {"onnx-file", "model-engine-file", "input-tensor-from-meta", "network-type"} & set(prop):
            return "infer", kf
        return None, kf
    try:
        msg = parse_pbtxt(text)
    except ConfigSyntaxError:
        msg = None
    if msg is not None:
        if "infer_config" in msg:
            return "nvinferserver", msg
        if "platform" in msg or "backend" in msg or "input" in msg:
            return "triton-model", msg
    if key_error and re.search(r"^\s*\[[^\]]+\]\s*$", text, re.M):
        _KeyFile(path)  # re-raise the key file's own error
    return None, None


# ---------------------------------------------------------------------- the checker
def _ints(raw: str) -> list[int]:
    return [int(x) for x in raw.replace(",", ";").split(";") if x.strip()]


def _floats(raw: str) -> list[float]:
    return [float(x) for x in raw.replace(",", ";").split(";") if x.strip()]


def _fmt_list(xs: Sequence[Any], sep: str = ";") -> str:
    return sep.join(f"{x:.9g}" if isinstance(x, float) else str(x) for x in xs)


@dataclass
class _Facts:
    """What a checked inference/preprocess config says, for the app's cross-checks."""

    card: ModelCard | None = None
    batch: int | None = None
    unique_id: int | None = None
    targets: list[int] = field(default_factory=list)
    src_ids: list[int] = field(default_factory=list)


_READ = object()  # "read the key's value from the config"


class _Scope:
    """One group of one config file: reads its keys and records checks against them."""

    def __init__(self, checker: _Checker, f: Path, group: str, source: Any, prefix: str = ""):
        """``source``: a key file, or a protobuf message read at the dotted ``prefix``."""
        self.c, self.f, self.group, self.source, self.prefix = checker, f, group, source, prefix

    def get(self, key: str) -> Any:
        if isinstance(self.source, _KeyFile):
            return self.source.get(self.group, key)
        return _pb(self.source, f"{self.prefix}.{key}" if self.prefix else key)

    def get_list(self, key: str) -> list[Any] | None:
        """A repeated protobuf field's values, or None."""
        holder = _pb(self.source, self.prefix) if self.prefix else self.source
        return list(holder[key]) if isinstance(holder, dict) and key in holder else None

    def issue(self, key: str, message: str) -> None:
        self.c.report.issues.append(Issue(self.f, self.group or "model", key, message))

    def note(self, key: str, message: str) -> None:
        """Information, not an error (the exit status stays 0)."""
        self.c.report.notes.append(Issue(self.f, self.group or "model", key, message))

    def expect(self, key: str, expected: Any, why: str = "", found: Any = _READ) -> bool:
        """found (default: the key's value) == expected, else an issue saying both."""
        self.c.report.keys += 1
        found = self.get(key) if found is _READ else found
        if found == expected:
            return True
        self.issue(
            key, f"expected {expected}{why}, " + ("missing" if found is None else f"found {found}")
        )
        return False

    def true(self, key: str, ok: bool, message: str) -> bool:
        """A condition on the key; the issue message when it fails."""
        self.c.report.keys += 1
        if not ok:
            self.issue(key, message)
        return ok

    def positive_int(self, key: str) -> int | None:
        """The key's value when it is an integer >= 1; else None and an issue."""
        value = self.get(key)
        ok = isinstance(value, int) and value >= 1
        self.true(key, ok, f"expected an integer >= 1, found {value}")
        return value if ok else None

    def ints(self, key: str, default: str | None = None) -> list[int] | None:
        raw = self.get(key)
        raw = default if raw is None else raw
        if raw is None:
            return None
        try:
            return _ints(str(raw))
        except ValueError:
            self.true(key, False, f"expected integers, found {raw!r}")
            return None

    def close(
        self,
        key: str,
        want: Sequence[float],
        why: str = "",
        *,
        rtol: float = 0.0,
        atol: float = 0.0,
        pad: bool = False,
    ) -> None:
        """The key's ';'-separated floats equal ``want`` within rtol/atol (``pad``: a short
        list repeats its last value, as the sequence library does)."""
        raw = self.get(key)
        expected = _fmt_list(list(want)) + why
        try:
            got = _floats(raw) if raw is not None else []
        except ValueError:
            got = []
        if pad and 0 < len(got) < len(want):
            got += [got[-1]] * (len(want) - len(got))
        ok = len(got) == len(want) and all(
            math.isclose(g, w, rel_tol=rtol, abs_tol=atol) for g, w in zip(got, want, strict=True)
        )
        found = "missing" if raw is None else f"found {raw}"
        self.true(key, ok, f"expected {expected}, {found}")

    def resolve(self, raw: str) -> Path:
        """A path from the config, resolved against the config's folder."""
        return Path(raw) if os.path.isabs(raw) else (self.f.parent / raw).resolve()

    def path(self, key: str, raw: Any = _READ, why: str = "") -> Path | None:
        """The key's path, resolved against the config's folder; an issue if it is absent."""
        raw = self.get(key) if raw is _READ else raw
        if not raw:
            self.true(key, False, "missing" + why)
            return None
        p = self.resolve(raw)
        where = "" if _show(p) == raw else f" (resolved {_show(p)})"
        return p if self.true(key, p.exists(), f"file not found: {raw}{where}{why}") else None

    def same_onnx(self, key: str, onnx: Path, card: ModelCard, graph: str = "clip") -> None:
        """The ONNX a config loads is the card's ``graph`` (same file or same bytes)."""
        if not onnx.is_file():  # callers check existence; never hash what is not there
            self.true(key, False, f"file not found: {_show(onnx)}")
            return
        mine = card.file(graph)
        want = card.sha256.get(card.files.get(graph, ""))
        ok = (mine is not None and onnx.resolve() == mine) or (
            want is not None and sha256_file(onnx) == want
        )
        where = _show(mine or Path("?"))
        self.true(key, ok, f"expected the card's {graph} graph {where}, found {_show(onnx)}")

    def labels(self, key: str, path: Path | None, card: ModelCard) -> None:
        """A DeepStream classifier label file: one line, the card's labels separated by ';'."""
        if path is None:
            return
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
        k, where = len(card.labels), _show(path)
        if not self.true(
            key,
            len(lines) == 1,
            f"{where} has {len(lines)} non-empty lines: nvinfer reads one "
            f"line per output layer and the clip graph has one; expected {k} labels on one line, "
            "separated by ';'",
        ):
            return
        got = [x.strip() for x in lines[0].split(";")]
        if not self.true(
            key, len(got) == k, f"expected {k} labels (the card's), found {len(got)} in {where}"
        ):
            return
        bad = [(i, g, w) for i, (g, w) in enumerate(zip(got, card.labels, strict=True)) if g != w]
        if bad:
            i, g, w = bad[0]
            self.issue(key, f"label {i} in {where}: expected {w!r} (the card's), found {g!r}")


class _Checker:
    def __init__(self, card: ModelCard | None):
        self.override = card
        self.report = CheckReport()
        self.cards: dict[Path, ModelCard | None] = {}
        self.done: dict[Path, _Facts] = {}
        if card is not None and card.path is not None:
            self.cards[card.path] = card
            self.report.cards.append(card.path)

    # ------------------------------------------------------------- cards
    def load_card(self, path: Path) -> ModelCard | None:
        path = path.resolve()
        if path not in self.cards:
            try:
                self.cards[path] = ModelCard.load(path)
            except ModelCardError as e:
                self.report.issues.append(Issue(path, "card", e.field, str(e)))
                self.cards[path] = None
            self.report.cards.append(path)
        return self.cards[path]

    @staticmethod
    def card_for_onnx(onnx: Path | None) -> Path | None:
        """The card beside ``onnx`` whose ``files.clip`` names it (links followed)."""
        if onnx is None or not onnx.resolve().parent.is_dir():
            return None
        onnx = onnx.resolve()
        for js in sorted(onnx.parent.glob("*.json")):
            try:
                data = json.loads(js.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(data, dict) and (data.get("files") or {}).get("clip") == onnx.name:
                return js
        return None

    @staticmethod
    def card_for_plan(plan: Path | None) -> Path | None:
        """The card beside a TensorRT plan that records it under ``files.plans``."""
        if plan is None or not plan.resolve().parent.is_dir():
            return None
        plan = plan.resolve()
        for js in sorted(plan.parent.glob("*.json")):
            try:
                data = json.loads(js.read_text())
                plans = (data.get("files") or {}).get("plans") or {}
                if any(plan.name in (e.get("clip"), e.get("step")) for e in plans.values()):
                    return js
            except (OSError, ValueError, AttributeError):
                continue
        return None

    @staticmethod
    def card_from_mark(f: Path) -> Path | None:
        for line in f.read_text(errors="replace").splitlines():
            if line.startswith(CARD_MARK):
                p = (f.parent / line[len(CARD_MARK) :].strip()).resolve()
                return p if p.is_file() else None
        return None

    def resolve_card(self, at: _Scope, *candidates: Path | None) -> ModelCard | None:
        if self.override is not None:
            return self.override
        for c in (*candidates, self.card_from_mark(at.f)):
            if c is not None and c.is_file():
                return self.load_card(c)
        mark = CARD_MARK.strip()
        at.issue(
            "-",
            f"no model card found (no ONNX with a card beside it, no '{mark}' line): pass --card",
        )
        return None

    # ------------------------------------------------------------- files
    def check(self, f: Path, hint: Path | None = None) -> _Facts | None:
        f = f.resolve()
        if f in self.done:
            return self.done[f]
        self.done[f] = _Facts()  # guards against reference loops
        self.report.files.append(f)
        try:
            kind, parsed = config_kind(f)
        except (ConfigSyntaxError, OSError) as e:
            self.report.issues.append(Issue(f, "-", "-", getattr(e, "strerror", None) or str(e)))
            return None
        check = {
            "preprocess": self.preprocess,
            "infer": self.infer,
            "app": self.app,
            "nvinferserver": self.nvinferserver,
            "triton-model": self.triton_model,
        }.get(kind or "")
        if check is None:
            self.report.issues.append(Issue(f, "-", "-", "not a DeepStream config hcml knows"))
            return None
        facts = check(f, parsed, hint)
        self.done[f] = facts
        return facts

    def preprocess(self, f: Path, kf: _KeyFile, hint: Path | None) -> _Facts:
        g, u = _Scope(self, f, "property", kf), _Scope(self, f, "user-configs", kf)
        card = self.resolve_card(g, hint, self.card_for_onnx(_sibling_onnx(f)))
        facts = _Facts(card=card, targets=g.ints("target-unique-ids") or [])
        g.expect("network-input-order", "2", " (CUSTOM: the sequence library's NCDHW)")
        g.expect("tensor-data-type", "0", " (FP32)")
        lib = g.get("custom-lib-path")
        name = os.path.basename(SEQUENCE_LIB)
        g.expect(
            "custom-lib-path",
            name,
            " (the 3D action sample's sequence library)",
            found=os.path.basename(lib or "") or None,
        )
        if lib and not os.path.isabs(lib) and not g.resolve(lib).exists():
            g.note(
                "custom-lib-path",
                f"{lib} is not built here (the 3D action sample builds it: "
                "custom_sequence_preprocess, make)",
            )
        g.expect("custom-tensor-preparation-function", SEQUENCE_FUNC)
        g.expect("process-on-frame", "1", " (full frames)", found=g.get("process-on-frame") or "1")
        shape = g.ints("network-input-shape")
        if shape and len(shape) == 5 and shape[0] >= 1:
            facts.batch = shape[0]
        groups = [k for k in kf.groups if re.fullmatch(r"group-\d+", k)]
        g0 = _Scope(self, f, "group-0", kf)
        g0.true("src-ids", bool(groups), "missing: no [group-N] names the sources")
        for name in groups:
            grp = _Scope(self, f, name, kf)
            ids = grp.ints("src-ids") or []
            facts.src_ids += ids
            if grp.get("process-on-roi") in (None, "0") and facts.batch and -1 not in ids:
                grp.true(
                    "src-ids",
                    len(ids) <= facts.batch,
                    f"{len(ids)} full-frame sources "
                    f"but the tensor holds {facts.batch} windows (network-input-shape B): "
                    "the library would drop batches",
                )
        if card is None:
            return facts
        v = deepstream_values(card)
        c, t, h, w = v["chw"]
        raw = g.get("network-input-shape")
        g.true(
            "network-input-shape",
            shape is not None and len(shape) == 5 and shape[0] >= 1 and shape[1:] == v["chw"],
            f"expected B;{c};{t};{h};{w} (B;C;T;H;W, B >= 1, "
            f"T = the card's window {t}, {h}x{w} its input_size), "
            + ("missing" if raw is None else f"found {raw}"),
        )
        g.expect("tensor-name", v["input_name"], " (the clip graph's input)")
        g.expect(
            "network-color-format",
            str(v["color_format"]),
            f" (the card's color_order {card.color_order})",
        )
        g.expect("processing-width", str(w))
        g.expect("processing-height", str(h))
        std, mean = _fmt_list(card.std, ", "), _fmt_list(card.mean, ", ")
        u.close(
            "channel-scale-factors",
            v["channel_scale_factors"],
            f" (1/(255 std), std {std})",
            rtol=SCALE_RTOL,
            pad=True,
        )
        u.close(
            "channel-mean-offsets",
            v["channel_mean_offsets"],
            f" (255 mean, mean {mean})",
            atol=OFFSET_ATOL,
            pad=True,
        )
        if u.get("pixel-normalization-factor") is not None:
            per, one = v["channel_scale_factors"], v["pixel_normalization_factor"]
            spread = (max(per) - min(per)) / one  # one factor cannot match unequal stds better
            u.close(
                "pixel-normalization-factor",
                [one],
                " (1/(255 mean std))",
                rtol=max(SCALE_RTOL, spread),
            )
        if u.get("offsets") is not None:
            u.close("offsets", v["channel_mean_offsets"], " (255 mean)", atol=OFFSET_ATOL)
        u.expect(
            "subsample",
            str(v["subsample"]),
            f" (frame step {card.frame_step} - 1)",
            found=u.get("subsample") or "0",
        )
        stride = u.ints("stride", default="1")
        u.true(
            "stride",
            bool(stride) and len(stride) == 1 and stride[0] >= 1,
            f"expected an integer >= 1, found {u.get('stride')}",
        )
        return facts

    def infer(self, f: Path, kf: _KeyFile, hint: Path | None) -> _Facts:
        g = _Scope(self, f, "property", kf)
        onnx_raw, engine_raw = g.get("onnx-file"), g.get("model-engine-file")
        # nvinfer's header lists onnx-file as the model for ONNX; a model-engine-file that
        # exists is deserialized instead, so either one is enough
        onnx = engine = None
        if onnx_raw or not engine_raw:
            onnx = g.path("onnx-file", why="" if onnx_raw else " (and no model-engine-file)")
        if engine_raw and not onnx_raw:
            engine = g.path("model-engine-file", why=" (no onnx-file to build it from)")
        elif engine_raw:
            engine = g.resolve(engine_raw)
        card = self.resolve_card(
            g,
            self.card_for_onnx(onnx),
            self.card_for_plan(engine) if not onnx else None,
            hint,
            None if onnx else self.card_for_onnx(_sibling_onnx(f)),
        )
        facts = _Facts(card=card)
        g.expect("input-tensor-from-meta", "1", " (the clip tensor comes from nvdspreprocess)")
        g.expect("network-type", "1", " (classifier)")
        g.true(
            "infer-dims",
            g.get("infer-dims") is None,
            f"found {g.get('infer-dims')}: nvinfer "
            "takes only [c;h;w] there and the clip input is 5-D [B,3,T,H,W]; remove the key, "
            "the ONNX gives the shape",
        )
        batch = g.ints("batch-size")
        if g.true(
            "batch-size",
            bool(batch) and len(batch) == 1 and batch[0] >= 1,
            f"expected an integer >= 1, found {g.get('batch-size')}",
        ):
            facts.batch = batch[0]
        uid = g.ints("gie-unique-id")  # required: target-unique-ids must name it
        if g.true(
            "gie-unique-id",
            bool(uid) and len(uid) == 1,
            "missing (nvdspreprocess's target-unique-ids must name it)",
        ):
            facts.unique_id = uid[0]
        mode = g.get("network-mode") or "0"
        g.true(
            "network-mode",
            mode in {"0", "1", "2"},
            f"expected 0 FP32, 1 INT8 or 2 FP16, found {mode}",
        )
        threshold = g.get("classifier-threshold")
        if threshold is not None:
            try:
                ok = float(threshold) >= 0
            except ValueError:
                ok = False
            g.true("classifier-threshold", ok, f"expected a number >= 0, found {threshold}")
        if engine_raw and onnx_raw and facts.batch:
            precision = {str(v): k for k, v in PRECISIONS.items()}.get(mode, "fp32")
            auto = f"{onnx_raw}_b{facts.batch}_gpu{g.get('gpu-id') or '0'}_{precision}.engine"
            if engine != (f.parent / auto).resolve() and not (engine and engine.exists()):
                g.note(
                    "model-engine-file",
                    f"{engine_raw} does not exist (yet): nvinfer builds the plan from onnx-file "
                    f"and saves it as {auto}; under the name given here it is rebuilt at every "
                    "start until that file exists",
                )
        if engine is not None and engine.exists() and not onnx_raw:
            known = card is not None and any(
                e.get("clip") and (card.root / e["clip"]).resolve() == engine.resolve()
                for e in card.plans().values()
            )
            if not known:
                g.note(
                    "model-engine-file",
                    f"{_show(engine)} is a TensorRT plan hcml cannot open without TensorRT: its "
                    "tensors are not checked, only the keys around it",
                )
        labels = g.path("labelfile-path")
        if card is None:
            return facts
        v = deepstream_values(card)
        if onnx is not None:
            g.same_onnx("onnx-file", onnx, card)
        blobs = [b.strip() for b in (g.get("output-blob-names") or "").split(";") if b.strip()]
        if blobs:  # optional for ONNX: nvinfer takes the graph's outputs
            g.expect(
                "output-blob-names",
                v["output_name"],
                " (the clip graph's output)",
                found=";".join(blobs),
            )
        g.labels("labelfile-path", labels, card)
        if g.get("num-detected-classes") is not None:
            g.expect("num-detected-classes", str(v["num_classes"]), " (the card's labels)")
        return facts

    def app(self, f: Path, kf: _KeyFile, hint: Path | None) -> _Facts:
        a = _Scope(self, f, APP_GROUP, kf)
        for key in APP_REQUIRED:
            a.true(key, a.get(key) is not None, "missing (the app's config parser requires it)")
        infer_raw, triton_raw = a.get("infer-config"), a.get("triton-infer-config")
        a.true(
            "infer-config",
            infer_raw is not None or triton_raw is not None,
            "missing (or triton-infer-config)",
        )
        if infer_raw is not None and triton_raw is not None:
            a.note(
                "triton-infer-config",
                "infer-config and triton-infer-config are both set: the app runs "
                f"nvinferserver with {triton_raw} and ignores {infer_raw} (both are checked)",
            )
        runs: list[tuple[str, Path, _Facts]] = []  # (key, config, facts) per inference config
        for key, raw in (("infer-config", infer_raw), ("triton-infer-config", triton_raw)):
            p = a.path(key) if raw is not None else None
            found = next((fa.card.path for *_, fa in runs if fa.card is not None), None)
            facts = self.check(p, found or hint) if p is not None else None
            if p is not None and facts is not None:
                runs.append((key, p, facts))
        card = next((fa.card for *_, fa in runs if fa.card is not None), None)
        pre_path = a.path("preprocess-config")
        if pre_path is None:
            return _Facts(card=card)
        pre = self.check(pre_path, card.path if card is not None else None)
        if pre is None:
            return _Facts(card=card)
        if card is not None and pre.card is not None:
            a.true(
                "preprocess-config",
                pre.card.path == card.path,
                f"checked against "
                f"{_show(pre.card.path)}, but the inference config runs {_show(card.path)}: "
                "check this app config on its own, or regenerate both from one card",
            )
        for key, p, facts in runs:
            kind, idk = (
                ("nvinferserver", "unique_id") if "triton" in key else ("nvinfer", "gie-unique-id")
            )
            if pre.batch is not None and facts.batch is not None:
                a.true(
                    key,
                    pre.batch <= facts.batch,
                    f"{_show(p)} takes batches of "
                    f"{facts.batch} but the preprocess tensor holds {pre.batch} windows "
                    "(network-input-shape B)",
                )
            if facts.unique_id is not None:
                a.true(
                    "preprocess-config",
                    facts.unique_id in pre.targets,
                    "target-unique-ids "
                    f"{_fmt_list(pre.targets)} does not include {kind}'s {idk} "
                    f"{facts.unique_id}: it would ignore the tensor",
                )
        uris = [x for x in (a.get("uri-list") or "").split(";") if x.strip()]
        if pre.batch is not None:
            a.true(
                "uri-list",
                len(uris) <= pre.batch,
                f"{len(uris)} sources but the preprocess "
                f"tensor holds {pre.batch} windows (network-input-shape B)",
            )
        ids = pre.src_ids
        missing = [i for i in range(len(uris)) if i not in ids and -1 not in ids]
        a.true(
            "uri-list",
            not missing,
            f"sources {_fmt_list(missing)} are not in the "
            "preprocess config's src-ids: they would not be classified",
        )
        return _Facts(card=card)

    def nvinferserver(self, f: Path, msg: dict, hint: Path | None) -> _Facts:
        def scope(path: str) -> _Scope:
            return _Scope(self, f, path, msg, prefix=path)

        ic, post = scope("infer_config"), scope("infer_config.postprocess")
        triton = scope("infer_config.backend.triton")
        repo = scope("infer_config.backend.triton.model_repo")
        grpc = scope("infer_config.backend.triton.grpc")
        name, root, url = triton.get("model_name"), repo.get("root"), grpc.get("url")
        repo_cfg = model_file = None
        triton.true("model_name", name is not None, "missing")
        if url is not None and root is None:
            grpc.note(
                "url",
                f"the model is served by the Triton server at {url} (gRPC): its model "
                "configuration is on the server; check that server's config.pbtxt with "
                "hcml check-config",
            )
        elif (
            repo.true("root", root is not None, "missing (nor a grpc { url } of a Triton server)")
            and name is not None
        ):
            repo_cfg = repo.path("root", f"{root}/{name}/config.pbtxt")
            if repo_cfg is not None:
                model_file = _triton_model_file(repo_cfg.parent, _pbtxt_or_none(repo_cfg))
        onnx = model_file if model_file is not None and model_file.suffix == ".onnx" else None
        card = self.resolve_card(
            ic, self.card_for_onnx(onnx), hint, self.card_for_onnx(_sibling_onnx(f))
        )
        facts = _Facts(card=card)
        facts.batch = ic.positive_int("max_batch_size")
        if repo_cfg is not None:
            model = self.check(repo_cfg, card.path if card is not None else None)
            if model is not None and model.batch is not None and facts.batch is not None:
                ic.true(
                    "max_batch_size",
                    facts.batch <= model.batch,
                    f"{facts.batch} exceeds "
                    f"the Triton model's max_batch_size {model.batch} ({_show(repo_cfg)})",
                )
        uid = ic.get("unique_id")
        facts.unique_id = uid if isinstance(uid, int) else None
        ic.true(
            "input_tensor_from_meta",
            ic.get("input_tensor_from_meta") is not None,
            "missing (the clip tensor comes from nvdspreprocess)",
        )
        control = scope("input_control")
        if control.get("process_mode") is not None:
            control.expect("process_mode", "PROCESS_MODE_FULL_FRAME")
        post.true(
            "classification",
            post.get("classification") is not None,
            "missing (a classification block)",
        )
        labels = post.path("labelfile_path")
        if card is None:
            return facts
        v = deepstream_values(card)
        post.labels("labelfile_path", labels, card)
        for what, role in (("inputs", "input"), ("outputs", "output")):
            layers = _pb_list(msg, f"infer_config.backend.{what}")
            if not layers:
                continue
            at = _Scope(self, f, f"infer_config.backend.{what}", layers[0])
            at.expect("name", v[f"{role}_name"], f" (the clip graph's {role})")
            if role == "input" and at.get_list("dims") is not None:
                at.expect("dims", v["chw"], " ([C, T, H, W] from the card)", at.get_list("dims"))
        return facts

    def triton_model(self, f: Path, msg: dict, hint: Path | None) -> _Facts:
        m = _Scope(self, f, "", msg)
        if m.get("platform") is None and m.get("backend") == "python":
            return self.triton_python_model(f, msg, hint)
        platform = m.get("platform")
        if platform is None:
            platform = TRITON_BACKENDS.get(m.get("backend"), m.get("backend"))
        m.true(
            "platform",
            platform in TRITON_MODEL_FILES,
            f"expected one of {', '.join(TRITON_MODEL_FILES)}, "
            + ("missing" if platform is None else f"found {platform}"),
        )
        default = TRITON_MODEL_FILES.get(platform, "model.onnx")
        filename = m.get("default_model_filename")
        model = _triton_model_file(f.parent, filename or default)
        version = _Scope(self, f, "version", msg)
        shown = _show(model) if model is not None else f"{_show(f.parent)}/<version>/{default}"
        why = " (default_model_filename)" if filename else ""
        if not version.true(
            filename or default,
            model is not None and model.is_file(),
            f"file not found: {shown}{why}"
            + ("" if model is not None else ": no numeric version folder"),
        ):
            model = None
        onnx = model if platform == "onnxruntime_onnx" else None
        card = self.resolve_card(m, self.card_for_onnx(onnx), hint)
        facts = _Facts(card=card)
        m.expect("name", f.parent.name, " (Triton wants the model folder's name)")
        facts.batch = m.positive_int("max_batch_size")
        if model is not None and platform == "tensorrt_plan":
            version.note(
                filename or default,
                f"{_show(model)} is a TensorRT plan: hcml cannot open it without TensorRT, so "
                "its tensors are checked through this config's input and output only",
            )
        if card is None:
            return facts
        v = deepstream_values(card)
        if onnx is not None:
            version.same_onnx(filename or default, onnx, card)
        ins, outs = _pb_list(msg, "input"), _pb_list(msg, "output")
        i = _Scope(self, f, "input", ins[0] if ins else {})
        o = _Scope(self, f, "output", outs[0] if outs else {})
        i.expect("name", v["input_name"], " (the clip graph's input)")
        i.expect("data_type", "TYPE_FP32")
        i.expect(
            "dims", v["chw"], " ([C, T, H, W] from the card, batch excluded)", i.get_list("dims")
        )
        o.expect("name", v["output_name"], " (the clip graph's output)")
        o.expect("dims", [v["num_classes"]], " ([K], K = the card's labels)", o.get_list("dims"))
        return facts

    def triton_python_model(self, f: Path, msg: dict, hint: Path | None) -> _Facts:
        """A model of the repository ``hcml export --triton-repo`` writes (what ``hcml serve``
        loads): Triton's python backend running ``1/model.py`` (hcml.serve.triton_model) on
        ``1/<onnx_file>``. Which graph it serves follows from its tensors: the clip graph, the
        step graph with client-sent state (state tensors in and out) or with server-held state
        (``sequence_batching``: the frame only)."""
        m = _Scope(self, f, "", msg)
        params = {_pb(p, "key"): _pb(p, "value.string_value") for p in _pb_list(msg, "parameters")}
        version = _Scope(self, f, "version", msg)
        onnx_name = params.get("onnx_file") or "model.onnx"
        files = {name: _triton_model_file(f.parent, name) for name in ("model.py", onnx_name)}
        for name, path in files.items():
            shown = _show(path) if path is not None else f"{_show(f.parent)}/<version>/{name}"
            version.true(name, path is not None and path.is_file(), f"file not found: {shown}")
        onnx = files[onnx_name]
        card = self.resolve_card(m, hint)
        facts = _Facts(card=card)
        m.expect("name", f.parent.name, " (Triton wants the model folder's name)")
        facts.batch = m.positive_int("max_batch_size")
        if card is None:
            return facts
        h, w = card.input_size
        k = len(card.labels)
        ins = [(_pb(t, "name"), _pb_list(t, "dims")) for t in _pb_list(msg, "input")]
        outs = [(_pb(t, "name"), _pb_list(t, "dims")) for t in _pb_list(msg, "output")]
        ct, st = card.tensors.get("clip", {}), card.tensors.get("step", {})
        c_in = ct.get("input", "frames")
        if ins and ins[0][0] == c_in:
            graph = "clip"
            want_in = [(c_in, [3, card.window, h, w])]
            want_out = [(ct.get("output", "logits"), [k])]
        else:
            graph = "step"
            state = st.get("state", [])
            frame = (st.get("input", "frame"), [3, h, w])
            logits = (st.get("output", "logits"), [k])
            if "sequence_batching" in msg:  # server-held state: the frame in, the logits out
                want_in, want_out = [frame], [logits]
                key = "sequence_batching.control_input"
                controls = sorted(_pb(c, "name") for c in _pb_list(msg, key))
                m.true(
                    key,
                    {"START", "END", "CORRID"} <= set(controls),
                    f"expected START, END and CORRID, found {', '.join(controls) or 'none'}",
                )
            else:
                want_in = [frame] + [(x["name"], list(x["shape"][1:])) for x in state]
                want_out = [logits] + [(x["out"], list(x["shape"][1:])) for x in state]
        what = f" (the card's {graph} graph, batch excluded)"
        m.expect("input", _tensors(want_in), what, _tensors(ins))
        m.expect("output", _tensors(want_out), what, _tensors(outs))
        if onnx is not None and onnx.is_file():
            version.same_onnx(onnx.name, onnx, card, graph)
        return facts


def _tensors(pairs: list[tuple[Any, Any]]) -> str:
    """[(name, dims)] -> 'frame [3, 64, 64], logits [12]' (what check-config prints)."""
    return ", ".join(f"{name} {list(dims or [])}" for name, dims in pairs)


def _pbtxt_or_none(path: Path) -> str | None:
    """``default_model_filename`` of a Triton config.pbtxt, or the platform's default name."""
    try:
        msg = parse_pbtxt(path.read_text(errors="replace"))
    except (ConfigSyntaxError, OSError):
        return None
    name = _pb(msg, "default_model_filename")
    if name:
        return str(name)
    platform = _pb(msg, "platform") or TRITON_BACKENDS.get(_pb(msg, "backend"))
    return TRITON_MODEL_FILES.get(platform)


def _sibling_onnx(f: Path) -> Path | None:
    """The onnx-file of an nvinfer config beside ``f`` (to find a preprocess config's card)."""
    for other in sorted(f.parent.glob("*.txt")):
        if other == f:
            continue
        try:
            kind, kf = config_kind(other)
        except (ConfigSyntaxError, OSError):
            continue
        if kind == "infer" and kf.get("property", "onnx-file"):
            return (other.parent / kf.get("property", "onnx-file")).resolve()
    return None


def _triton_model_file(model_dir: Path, filename: str | None) -> Path | None:
    """``<highest numeric version>/<filename or model.onnx>`` in a Triton model folder
    (None without a version folder); the file may not exist."""
    if not model_dir.is_dir():
        return None
    versions = sorted(
        (int(p.name), p) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()
    )
    if not versions:
        return None
    return versions[-1][1] / (filename or "model.onnx")


def expand_paths(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given; a folder stands for the DeepStream configs directly inside it, and for
    MODEL/config.pbtxt of each model folder in it (a Triton model repository)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            models = sorted(q for q in p.glob("*/config.pbtxt") if q.is_file())
            for q in [*sorted(p.iterdir()), *models]:
                if q.is_file() and q.suffix in (".txt", ".pbtxt"):
                    try:
                        kind, _ = config_kind(q)
                    except (ConfigSyntaxError, OSError):
                        kind = "broken"
                    if kind is not None:
                        out.append(q)
        else:
            out.append(p)
    return out


def check_configs(
    paths: Iterable[str | os.PathLike], card: ModelCard | str | os.PathLike | None = None
) -> CheckReport:
    """Check DeepStream config files (app configs with the files they name) against a card."""
    if card is not None and not isinstance(card, ModelCard):
        card = ModelCard.load(card)
    checker = _Checker(card)
    for p in expand_paths(paths):
        checker.check(p)
    return checker.report
