"""The feature schema: how a training set's columns are laid out, as one validated, versioned type.

Phase 0 writes it next to the training set (``feature_schema.json``); the teacher, the students,
the monitoring and the monthly serving batch read it; the Lambda bundle carries it as
``model/schema.json`` (with the MCC vocabulary of the lag tensor added), so training and serving
agree on column order, feature groups and normalization by construction rather than by convention.

It lives in ``finai_serving`` because the Lambda reads it and may not import ``finai_models``;
it needs only dataclasses, json and numpy. There is one writer (``save``/``to_json``) and one
reader (``load``/``from_json``); every construction goes through ``__post_init__``, so a schema
that exists is consistent: the groups tile the raw columns exactly, the ``_log`` copies follow
them, routing indices and code columns point at real columns. ``build`` is the one constructor
from column lists (Phase 0, the tests and the benchmarks use it through
``finai_models.phase0.schema.schema_for``).

Layout of ``columns``: the raw Phase-0 columns in group order, then one ``<c>_log`` copy per
``log_columns`` entry. Group ranges index the raw columns; routing indices index ``columns``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = 1           # the schema's own format; 0 is Phase 0's unversioned file, read and upgraded
KNOWN_FORMATS = (0, FORMAT)
LAG_SLOT = re.compile(r"^lag_\d+_")
NORMALIZER_KEYS = ("columns", "kinds", "mean", "std", "log_columns")


class SchemaError(ValueError):
    """A feature schema is inconsistent or of an unknown format; the message is one line."""


@dataclass(frozen=True)
class Group:
    """A feature group's raw columns ``[start, end)``."""

    name: str
    start: int
    end: int


@dataclass(frozen=True)
class Task:
    """A task the training set carries labels for, in the label column ``column``."""

    name: str
    type: str
    column: str
    classes: int | None = None


@dataclass(frozen=True)
class Side:
    """Shapes and training moments of the row-aligned side tensors (monthly sequence, diagrams)."""

    sequence_features: tuple[str, ...] = ()
    sequence_shape: tuple[int, ...] | None = None     # (months, features)
    diagram_shape: tuple[int, ...] | None = None      # (diagrams, points)
    sequence_mean: tuple[float, ...] = ()             # per sequence feature, training months only
    sequence_std: tuple[float, ...] = ()


@dataclass(frozen=True)
class FeatureSchema:
    """A training set's column layout; immutable, and consistent once constructed (``__post_init__``).

    ``version`` is the training set's fingerprint; ``format`` the schema's own format number, so a
    reader can refuse a file it does not understand instead of misreading it.
    """

    version: str
    columns: tuple[str, ...]
    groups: tuple[Group, ...]
    normalizer: Mapping[str, Any]                     # ``finai_serving.features.Normalization``'s input
    log_columns: tuple[str, ...] = ()
    tasks: tuple[Task, ...] = ()
    experts: Mapping[str, tuple[int, ...]] = field(default_factory=dict)   # expert -> indices into columns
    codes: Mapping[str, str] = field(default_factory=dict)                # code column -> vocabulary
    split: Mapping[str, tuple[str, str]] = field(default_factory=dict)    # part -> (first, last month)
    rows: Mapping[str, int] = field(default_factory=dict)                 # part -> rows
    side: Side = Side()
    state_version: str | None = None
    lag_vocab: tuple[int, ...] = ()   # MCC code of each lag-tensor class 1..V (the serving batch adds it)
    format: int = FORMAT

    def __post_init__(self) -> None:
        _check(self)

    # --- derived views -----------------------------------------------------------------------------
    @property
    def raw_columns(self) -> tuple[str, ...]:
        """The Phase-0 columns before the ``_log`` copies (what a feature store holds)."""
        return self.columns[:len(self.columns) - len(self.log_columns)]

    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.groups)

    def group_of(self) -> dict[str, str]:
        """Column -> feature group name (a ``_log`` copy belongs to its source column's group)."""
        raw = self.raw_columns
        out = {c: g.name for g in self.groups for c in raw[g.start:g.end]}
        out.update({f"{c}_log": out[c] for c in self.log_columns})
        return out

    def group_index(self) -> np.ndarray:
        """Feature-group index of every column, int64 ``[len(columns)]``."""
        index = {g: i for i, g in enumerate(self.group_names)}
        of = self.group_of()
        return np.array([index[of[c]] for c in self.columns], np.int64)

    # --- the one builder ---------------------------------------------------------------------------
    @classmethod
    def build(cls, version: str, groups: Sequence[tuple[str, Sequence[str]]], *, log_columns: Sequence[str] = (),
              normalizer: Mapping[str, Any] | None = None, codes: Mapping[str, str] | None = None,
              **fields: Any) -> FeatureSchema:
        """From each group's raw column names in order: ranges, ``_log`` copies appended after the raw
        columns, and (when not given) an identity normalizer over the raw columns. ``codes`` defaults to
        the normalizer's ``code`` columns (``code_vocabulary``); ``fields`` are the other attributes."""
        raw: list[str] = []
        ranges = []
        for name, names in groups:
            ranges.append(Group(name, len(raw), len(raw) + len(names)))
            raw += list(names)
        if normalizer is None:
            normalizer = {"columns": raw, "kinds": ["continuous"] * len(raw), "mean": [0.0] * len(raw),
                          "std": [1.0] * len(raw), "log_columns": list(log_columns)}
        if codes is None:
            codes = _default_codes(normalizer)
        return cls(version, tuple(raw) + tuple(f"{c}_log" for c in log_columns), tuple(ranges),
                   _plain(normalizer), tuple(log_columns), codes=dict(codes), **fields)

    # --- the one writer and the one reader ---------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        s = self.side
        return {
            "format": FORMAT, "version": self.version, "state_version": self.state_version,
            "columns": list(self.columns),
            "groups": [{"name": g.name, "start": g.start, "end": g.end} for g in self.groups],
            "log_columns": list(self.log_columns), "experts": {e: list(ix) for e, ix in self.experts.items()},
            "tasks": [{"name": t.name, "type": t.type, "classes": t.classes, "column": t.column} for t in self.tasks],
            "split": {p: list(m) for p, m in self.split.items()}, "rows": dict(self.rows),
            "normalizer": _plain(self.normalizer), "codes": dict(self.codes),
            "side": {"sequence_features": list(s.sequence_features),
                     "sequence_shape": None if s.sequence_shape is None else list(s.sequence_shape),
                     "sequence_mean": list(s.sequence_mean), "sequence_std": list(s.sequence_std),
                     "diagram_shape": None if s.diagram_shape is None else list(s.diagram_shape)},
            "lag_vocab": list(self.lag_vocab),
        }

    def save(self, path: Path | str) -> None:
        """Write atomically (a reader never sees half a schema)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1))
        os.replace(tmp, path)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> FeatureSchema:
        if not isinstance(doc, Mapping):
            raise SchemaError(f"a feature schema is a JSON object, got {type(doc).__name__}")
        fmt = doc.get("format", 0)
        if fmt not in KNOWN_FORMATS:
            raise SchemaError(f"feature schema format {fmt!r} is unknown; this code reads formats {KNOWN_FORMATS}")
        unknown = sorted(set(doc) - _KEYS)
        if unknown:
            raise SchemaError(f"feature schema has unknown key(s) {unknown}")
        missing = [k for k in ("version", "columns", "groups", "normalizer") if k not in doc]
        if missing:
            raise SchemaError(f"feature schema is missing key(s) {missing}")
        try:
            side = doc.get("side") or {}
            return cls(
                str(doc["version"]), tuple(doc["columns"]),
                tuple(Group(str(g["name"]), int(g["start"]), int(g["end"])) for g in doc["groups"]),
                _plain(doc["normalizer"]), tuple(doc.get("log_columns", ())),
                tuple(Task(t["name"], t["type"], t.get("column", f"label__{t['name']}"), t.get("classes"))
                      for t in doc.get("tasks", ())),
                {e: tuple(int(i) for i in ix) for e, ix in (doc.get("experts") or {}).items()},
                dict(doc["codes"]) if "codes" in doc else _default_codes(doc["normalizer"]),
                {p: (str(m[0]), str(m[1])) for p, m in (doc.get("split") or {}).items()},
                {p: int(n) for p, n in (doc.get("rows") or {}).items()},
                Side(tuple(side.get("sequence_features", ())), _shape(side.get("sequence_shape")),
                     _shape(side.get("diagram_shape")), tuple(float(v) for v in side.get("sequence_mean", ())),
                     tuple(float(v) for v in side.get("sequence_std", ()))),
                doc.get("state_version"), tuple(int(v) for v in doc.get("lag_vocab", ())), FORMAT)
        except SchemaError:
            raise
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            raise SchemaError(f"feature schema is malformed: {type(exc).__name__} {exc}") from None

    @classmethod
    def load(cls, path: Path | str) -> FeatureSchema:
        """Read and validate; errors name the file."""
        path = Path(path)
        try:
            return cls.from_json(json.loads(path.read_text()))
        except json.JSONDecodeError as exc:
            raise SchemaError(f"{path}: not JSON ({exc})") from None
        except SchemaError as exc:
            raise SchemaError(f"{path}: {exc}") from None


_KEYS = {"format", "version", "state_version", "columns", "groups", "log_columns", "experts", "tasks", "split",
         "rows", "normalizer", "codes", "side", "lag_vocab"}


def _shape(value: Sequence[int] | None) -> tuple[int, ...] | None:
    return None if value is None or not len(value) else tuple(int(v) for v in value)


def _plain(normalizer: Mapping[str, Any]) -> dict[str, Any]:
    """The normalizer as JSON values (lists, floats), so a schema equals its own round trip."""
    missing = [k for k in NORMALIZER_KEYS if k not in normalizer]
    if missing:
        raise SchemaError(f"the normalizer is missing key(s) {missing}")
    return {"columns": [str(c) for c in normalizer["columns"]], "kinds": [str(k) for k in normalizer["kinds"]],
            "mean": [float(v) for v in normalizer["mean"]], "std": [float(v) for v in normalizer["std"]],
            "log_columns": [str(c) for c in normalizer["log_columns"]]}


def code_vocabulary(name: str) -> str:
    """The vocabulary a code column draws from: the K slots of the lag tensor share one per field
    (``lag_001_mcc`` .. ``lag_200_mcc`` are all ``lag_mcc``), so the teacher learns one MCC embedding
    instead of 200; every other code column is its own vocabulary."""
    return LAG_SLOT.sub("lag_", name)


def _default_codes(normalizer: Mapping[str, Any]) -> dict[str, str]:
    """Code column -> vocabulary for the normalizer's ``code`` columns (also how schemas written before
    ``codes`` existed are read)."""
    return {c: code_vocabulary(c) for c, k in zip(normalizer.get("columns", ()), normalizer.get("kinds", ()),
                                                  strict=False) if k == "code"}


def _check(s: FeatureSchema) -> None:
    """Every consistency rule; the first broken one raises ``SchemaError``."""
    if s.format != FORMAT:
        raise SchemaError(f"feature schema format {s.format!r} is unknown; this code writes format {FORMAT}")
    if len(set(s.columns)) != len(s.columns):
        dup = sorted({c for c in s.columns if s.columns.count(c) > 1})
        raise SchemaError(f"duplicate column(s) {dup[:5]}")
    raw = s.raw_columns
    if len(s.log_columns) > len(s.columns) or list(s.columns[len(raw):]) != [f"{c}_log" for c in s.log_columns]:
        raise SchemaError("the columns must end with one '<c>_log' copy per log column, in log_columns order")
    stray = [c for c in s.log_columns if c not in raw]
    if stray:
        raise SchemaError(f"log column(s) {stray[:5]} are not raw columns")
    _check_groups(s.groups, len(raw))
    norm = s.normalizer
    if list(norm["columns"]) != list(raw) or list(norm["log_columns"]) != list(s.log_columns):
        raise SchemaError("the normalizer's columns and log columns differ from the schema's raw and log columns")
    if not len(norm["kinds"]) == len(norm["mean"]) == len(norm["std"]) == len(raw):
        raise SchemaError(f"the normalizer's kinds, mean and std need {len(raw)} entries each")
    for expert, index in s.experts.items():
        bad = [i for i in index if not 0 <= i < len(s.columns)]
        if bad:
            raise SchemaError(f"expert {expert!r} is routed to column(s) {bad[:5]}, outside the "
                              f"{len(s.columns)} columns")
    stray = sorted(c for c in s.codes if c not in raw)
    if stray:
        raise SchemaError(f"code column(s) {stray[:5]} are not raw columns")
    names = [t.name for t in s.tasks]
    if len(set(names)) != len(names):
        raise SchemaError(f"duplicate task names in {names}")
    side = s.side
    width = side.sequence_shape[-1] if side.sequence_shape else None
    for name, moments in (("sequence_mean", side.sequence_mean), ("sequence_std", side.sequence_std)):
        if moments and len(moments) != width:
            raise SchemaError(f"side {name} has {len(moments)} entries, the sequence has {width} features")


def _check_groups(groups: Sequence[Group], n_raw: int) -> None:
    """The groups must tile ``[0, n_raw)``: in order, no overlap, no gap, nothing past the end."""
    names = [g.name for g in groups]
    if len(set(names)) != len(names):
        raise SchemaError(f"duplicate feature group names in {names}")
    at = 0
    previous: Group | None = None
    for g in groups:
        if g.start > g.end:
            raise SchemaError(f"feature group {g.name!r} has range [{g.start}, {g.end}), which ends before it starts")
        if g.start < at:
            raise SchemaError(f"feature groups {previous.name!r} [{previous.start}, {previous.end}) and "
                              f"{g.name!r} [{g.start}, {g.end}) overlap" if previous else
                              f"feature group {g.name!r} starts at {g.start}, before column 0")
        if g.start > at:
            raise SchemaError(f"columns [{at}, {g.start}) belong to no feature group (a gap before {g.name!r})")
        if g.end > n_raw:
            raise SchemaError(f"feature group {g.name!r} [{g.start}, {g.end}) runs past the {n_raw} raw columns")
        at, previous = g.end, g
    if at < n_raw:
        raise SchemaError(f"columns [{at}, {n_raw}) belong to no feature group (the groups end at {at})")
