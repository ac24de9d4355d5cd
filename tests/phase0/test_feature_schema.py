"""The feature schema: one type, validated on read, and its one writer and reader agree."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finai_models.config import load_settings
from finai_models.errors import DataError
from finai_models.phase0.schema import SCHEMA_FILE, schema_for
from finai_models.teacher.data import read_schema
from finai_serving.schema import FORMAT, FeatureSchema, Group, SchemaError, Side


def _small(**fields) -> FeatureSchema:
    return FeatureSchema.build("v1", [("a", ["a0", "a1"]), ("b", ["b0", "b1_code", "b2"])], log_columns=["a1"],
                               **fields)


@pytest.fixture(scope="module")
def phase0_like() -> FeatureSchema:
    """Every field set, as Phase 0 writes it."""
    s = load_settings()
    names = {g.name: [f"{g.name}_{i}" for i in range(g.dim)] for g in s.feature_groups}
    raw = [c for group in names.values() for c in group]
    kinds = ["code" if c.startswith("demographics") else "continuous" for c in raw]
    normalizer = {"columns": raw, "kinds": kinds, "mean": [0.5] * len(raw), "std": [2.0] * len(raw),
                  "log_columns": raw[-3:]}
    return schema_for(s, names, "abc", normalizer=normalizer, state_version="st1",
                      split={"train": ("2023-01", "2023-06")}, rows={"train": 10},
                      side=Side(("spend", "count"), (12, 2), (4, 16), (0.1, 0.2), (1.0, 3.0)))


def test_round_trip_equals(tmp_path, phase0_like):
    phase0_like.save(tmp_path / SCHEMA_FILE)
    assert FeatureSchema.load(tmp_path / SCHEMA_FILE) == phase0_like
    assert read_schema(tmp_path) == phase0_like
    assert json.loads((tmp_path / SCHEMA_FILE).read_text())["format"] == FORMAT


def test_phase0_layout(phase0_like):
    s = phase0_like
    assert s.columns[-3:] == tuple(f"{c}_log" for c in s.raw_columns[-3:])
    assert s.codes and all(c.startswith("demographics") for c in s.codes)
    assert len(s.tasks) == 13 and s.tasks[0].column == f"label__{s.tasks[0].name}"
    of, readers = s.group_of(), {g.name: g.experts for g in load_settings().feature_groups}
    for expert, index in s.experts.items():         # an expert reads its groups' columns and their _log copies
        assert {s.columns[j] for j in index} == {c for c in s.columns if expert in readers[of[c]]}, expert
    assert s.group_index()[-1] == len(s.groups) - 1


def test_build_defaults():
    s = _small()
    assert s.groups == (Group("a", 0, 2), Group("b", 2, 5))
    assert s.columns == ("a0", "a1", "b0", "b1_code", "b2", "a1_log")
    assert s.raw_columns == s.columns[:5] and s.normalizer["columns"] == list(s.raw_columns)
    assert s.group_of()["a1_log"] == "a" and s.group_index().tolist() == [0, 0, 1, 1, 1, 0]


def _doc(**changes) -> dict:
    doc = _small().to_json()
    doc.update(changes)
    return doc


@pytest.mark.parametrize(("groups", "message"), [
    ([{"name": "a", "start": 0, "end": 3}, {"name": "b", "start": 2, "end": 5}],
     r"feature groups 'a' \[0, 3\) and 'b' \[2, 5\) overlap"),
    ([{"name": "a", "start": 0, "end": 2}, {"name": "b", "start": 3, "end": 5}],
     r"columns \[2, 3\) belong to no feature group \(a gap before 'b'\)"),
    ([{"name": "a", "start": 0, "end": 2}, {"name": "b", "start": 2, "end": 4}],
     r"columns \[4, 5\) belong to no feature group \(the groups end at 4\)"),
    ([{"name": "a", "start": 0, "end": 2}, {"name": "b", "start": 2, "end": 6}],
     r"feature group 'b' \[2, 6\) runs past the 5 raw columns"),
    ([{"name": "a", "start": 0, "end": 2}, {"name": "a", "start": 2, "end": 5}], "duplicate feature group names"),
])
def test_bad_group_ranges_are_named(groups, message):
    with pytest.raises(SchemaError, match=message):
        FeatureSchema.from_json(_doc(groups=groups))


@pytest.mark.parametrize(("changes", "message"), [
    ({"format": 99}, r"feature schema format 99 is unknown; this code reads formats \(0, 1\)"),
    ({"experts": {"deepfm": [0, 6]}}, r"expert 'deepfm' is routed to column\(s\) \[6\], outside the 6 columns"),
    ({"codes": {"nope": "nope"}}, r"code column\(s\) \['nope'\] are not raw columns"),
    ({"columns": ["a0", "a1", "b0", "b1_code", "b2", "b2_log"]}, "one '<c>_log' copy per log column"),
    ({"surprise": 1}, r"unknown key\(s\) \['surprise'\]"),
    ({"side": {"sequence_shape": [12, 2], "sequence_mean": [0.0]}}, "side sequence_mean has 1 entries"),
])
def test_inconsistent_schemas_are_rejected(changes, message):
    with pytest.raises(SchemaError, match=message):
        FeatureSchema.from_json(_doc(**changes))


def test_errors_are_one_line_and_name_the_file(tmp_path):
    (tmp_path / SCHEMA_FILE).write_text(json.dumps(_doc(format=7)))
    with pytest.raises(DataError) as err:
        read_schema(tmp_path)
    assert "\n" not in str(err.value) and str(tmp_path / SCHEMA_FILE) in str(err.value)
    assert "format 7 is unknown" in str(err.value)


def test_construction_validates_too():
    with pytest.raises(SchemaError, match="overlap"):
        dataclasses.replace(_small(), groups=(Group("a", 0, 3), Group("b", 2, 5)))


def test_an_unversioned_phase0_file_is_read_and_upgraded():
    """Training sets written before the typed schema: no format, codes from the normalizer's kinds."""
    doc = _doc()
    del doc["format"], doc["codes"], doc["lag_vocab"]
    doc["normalizer"]["kinds"][3] = "code"
    schema = FeatureSchema.from_json(doc)
    assert schema.format == FORMAT and schema.codes == {"b1_code": "b1_code"}


@st.composite
def _layouts(draw) -> tuple[list[tuple[str, list[str]]], list[str]]:
    widths = draw(st.lists(st.integers(0, 4), min_size=1, max_size=6))
    groups = [(f"g{i}", [f"g{i}_{j}" for j in range(w)]) for i, w in enumerate(widths)]
    raw = [c for _, names in groups for c in names]
    logs = draw(st.lists(st.sampled_from(raw), unique=True)) if raw else []
    return groups, logs


@settings(max_examples=60, deadline=None)
@given(layout=_layouts(), which=st.integers(0, 5), step=st.sampled_from([-1, 1]))
def test_any_built_schema_round_trips_and_a_moved_boundary_is_rejected(layout, which, step):
    groups, logs = layout
    schema = FeatureSchema.build("h", groups, log_columns=logs, experts={"x": tuple(range(len(logs)))})
    assert FeatureSchema.from_json(json.loads(json.dumps(schema.to_json()))) == schema
    assert [schema.group_of()[c] for c in schema.raw_columns] == [g for g, names in groups for _ in names]
    doc = schema.to_json()
    moved = [dict(g) for g in doc["groups"]]
    moved[which % len(moved)]["end"] += step
    with pytest.raises(SchemaError, match="overlap|belong to no feature group|runs past|ends before"):
        FeatureSchema.from_json({**doc, "groups": moved})
