"""The raw layer in Dagster: definitions, a month materialized twice, and every raw check made red."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from dagster_duckdb import DuckDBResource

from finai_assets.definitions import defs
from finai_assets.defs.raw.assets import card_transactions, customers, monthly_snapshots, raw_dataset
from finai_assets.defs.raw.checks import raw_table_checks
from finai_assets.defs.resources import FinAIConfig, RawSource
from finai_models import months as M
from finai_models.config import REPO_ROOT, load_settings
from finai_models.data import store
from finai_models.data.generate import generate_synthetic

pytestmark = pytest.mark.slow          # a Dagster run, a server or a subprocess: `make test-fast` skips it

RAW_TABLES = [customers, monthly_snapshots, card_transactions]
MONTH = "2023-03"


def test_definitions_load_and_jobs_select_something(settings):
    d = defs()
    dg.Definitions.validate_loadable(d)
    keys = {k.to_user_string() for k in d.resolve_all_asset_keys()}
    raw = {"raw_dataset", "raw/customers", "raw/monthly_snapshots", "raw/card_transactions"}
    features = {f"features/{g.name}" for g in settings.feature_groups}
    teacher = {f"teacher/{n}" for n in ("ple", "mmoe", "shared_bottom", "lightgbm", "comparison", "ablation")}
    distill = {"distill/soft_labels", "distill/student", "distill/promotion", "distill/champion"}
    served = {"serving/batch", "serving/bundle", "serving/release", "monitoring/recommendations",
              "monitoring/fairness", "monitoring/drift", "governance/model_card"}
    assert keys == raw | features | teacher | distill | served | {"phase0/month_inputs", "phase0/fitted_state",
                                                                  "labels/labels", "training/training_set"}
    for name in ("raw_month", "phase0_state", "phase0_month", "training", "teacher", "teacher_ablation",
                 "student_inputs", "students", "promote", "retrain", "monthly_refresh"):
        assert d.resolve_job_def(name).asset_layer.executable_asset_keys, f"job {name} selects nothing"
    refresh = d.resolve_job_def("monthly_refresh").asset_layer.executable_asset_keys
    assert {k.to_user_string() for k in refresh} == (raw - {"raw_dataset"}) | features | served | {
        "phase0/month_inputs", "labels/labels"}, "monthly_refresh is the whole month but training"
    job = d.resolve_job_def("raw_month")
    assert len(job.asset_layer.executable_asset_keys) == 4
    partitions = job.partitions_def.get_partition_keys()
    assert partitions[0] == settings.months[0] and partitions[-1] == settings.months[1]
    assert len(partitions) == M.diff(settings.months[1], settings.months[0]) + 1
    assert len(raw_table_checks) == 11 and all(c.blocking for c in raw_table_checks for c in c.check_specs)


def _rows(db: Path, table: str, month: str) -> int:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(f"SELECT count(*) FROM raw.{table} WHERE month = ?", [M.first_day(month)]).fetchall()[0][0]


def test_raw_month_twice_leaves_the_same_rows(settings, instance):
    job = defs().resolve_job_def("raw_month")
    for _ in range(2):
        result = job.execute_in_process(partition_key=MONTH, instance=instance)
        assert result.success
        evaluations = result.get_asset_check_evaluations()
        assert len(evaluations) == 11 and all(e.passed for e in evaluations)
    manifest = store.require_manifest(settings.raw_dir)
    for table in ("customers", "monthly_snapshots", "card_transactions"):
        assert _rows(settings.path("warehouse"), table, MONTH) == manifest["rows"][table][MONTH] > 0
    mats = instance.fetch_materializations(dg.AssetKey(["raw", "card_transactions"]), limit=5).records
    assert len(mats) == 2
    assert mats[0].asset_materialization.partition == MONTH
    assert "preview" in mats[0].asset_materialization.metadata


@pytest.fixture
def planted(tmp_path):
    """A private work directory with its own raw dataset, ready to be tampered with."""
    s = load_settings(workdir=tmp_path)
    gen = s.dataset.generator
    generate_synthetic(s, s.raw_dir, 300, 4, seed=gen.seed, progress=False)
    resources = {"finai": FinAIConfig(workdir=str(tmp_path)), "raw_source": RawSource(),
                 "warehouse": DuckDBResource(database=str(tmp_path / "warehouse.duckdb"))}
    return s, resources


def _rewrite(s, table: str, edit) -> None:
    path = s.raw_dir / table / f"{MONTH}.parquet"
    pq.write_table(edit(pq.read_table(path)), path)


def _run(resources):
    with dg.instance_for_test(overrides={"telemetry": {"enabled": False}}) as instance:
        return dg.materialize([*RAW_TABLES, *raw_table_checks], partition_key=MONTH, resources=resources,
                              instance=instance, raise_on_error=False)


def _failed_checks(result) -> set[str]:
    return {e.check_name for e in result.get_asset_check_evaluations() if not e.passed}


def test_clean_month_passes(planted):
    result = _run(planted[1])
    assert result.success and not _failed_checks(result)


def test_orphan_transaction_fails_referential_check(planted):
    s, resources = planted
    orphan = pa.array([999_999_999], pa.int64())
    _rewrite(s, "card_transactions", lambda t: t.set_column(
        0, "customer_id", pa.concat_arrays([orphan, t["customer_id"].combine_chunks()[1:]])))
    result = _run(resources)
    assert not result.success
    assert _failed_checks(result) == {"card_transactions_customers_exist"}


def test_null_in_required_column_fails(planted):
    s, resources = planted
    segment = s.raw_dir.joinpath("monthly_snapshots", f"{MONTH}.parquet")
    table = pq.read_table(segment)
    mask = pa.array([i == 0 for i in range(table.num_rows)])
    _rewrite(s, "monthly_snapshots", lambda t: t.set_column(
        t.schema.get_field_index("segment"), "segment", pc.if_else(mask, pa.scalar(None, pa.string()), t["segment"])))
    result = _run(resources)
    assert _failed_checks(result) == {"monthly_snapshots_required_columns_not_null"}


def test_duplicated_rows_fail_row_count(planted):
    s, resources = planted
    _rewrite(s, "customers", lambda t: pa.concat_tables([t, t.slice(0, 3)]))
    result = _run(resources)
    assert _failed_checks(result) == {"customers_row_count_matches_source"}


def test_changed_schema_stops_the_asset_with_a_clear_error(planted):
    s, resources = planted
    _rewrite(s, "card_transactions", lambda t: t.set_column(
        t.schema.get_field_index("mcc"), "mcc", t["mcc"].cast(pa.int32())))
    result = _run(resources)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "schema changed: column 'mcc' is int32, expected int16" in str(failure.event_specific_data.error)


def test_missing_dataset_is_named(tmp_path):
    resources = {"finai": FinAIConfig(workdir=str(tmp_path)), "raw_source": RawSource(),
                 "warehouse": DuckDBResource(database=str(tmp_path / "warehouse.duckdb"))}
    result = _run(resources)
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "no _manifest.json; run `finai generate`" in str(failure.event_specific_data.error)


def _materialize_raw_dataset(workdir: Path, customers: int):
    resources = {"finai": FinAIConfig(workdir=str(workdir))}
    with dg.instance_for_test(overrides={"telemetry": {"enabled": False}}) as instance:
        return dg.materialize([raw_dataset], resources=resources, instance=instance, raise_on_error=False,
                              run_config={"ops": {"raw_dataset": {"config": {"customers": customers}}}})


def test_raw_dataset_asset_generates_once_then_reuses(tmp_path):
    first = _materialize_raw_dataset(tmp_path, 200)
    assert first.success
    s = load_settings(workdir=tmp_path)
    files = {p: p.stat().st_mtime_ns for p in s.raw_dir.rglob("*.parquet")}
    assert len(files) == 3 * len(store.require_manifest(s.raw_dir)["months"])
    second = _materialize_raw_dataset(tmp_path, 200)
    assert second.success
    assert {p: p.stat().st_mtime_ns for p in s.raw_dir.rglob("*.parquet")} == files
    meta = second.asset_materializations_for_node("raw_dataset")[0].metadata
    assert meta["fingerprint"].value == store.require_manifest(s.raw_dir)["fingerprint"]


def test_raw_dataset_asset_refuses_another_dataset(planted):
    result = _materialize_raw_dataset(planted[0].workdir, 300)
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "holds a different dataset (customers=300, months=4" in str(failure.event_specific_data.error)


def test_dg_cli_launches_a_month(tmp_path):
    env = {**os.environ, "FINAI_WORKDIR": str(tmp_path), "DAGSTER_HOME": os.environ["DAGSTER_HOME"]}
    dg_bin = Path(sys.executable).with_name("dg")
    proc = subprocess.run([str(dg_bin), "launch", "--job", "raw_month", "--partition", MONTH],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "RUN_SUCCESS" in proc.stderr + proc.stdout
    assert _rows(tmp_path / "warehouse.duckdb", "card_transactions", MONTH) > 0


def test_pipeline_command_runs_months_and_names_bad_input(tmp_path):
    env = {**os.environ, "FINAI_WORKDIR": str(tmp_path), "DAGSTER_HOME": str(tmp_path / "home")}
    cmd = [sys.executable, "-m", "finai_assets.launch", "--quiet"]
    proc = subprocess.run([*cmd, "--months", "2023-01..2023-02", "--until", "raw"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ran raw for 2 months (2023-01..2023-02)" in proc.stdout
    assert "telemetry:\n  enabled: false" in (tmp_path / "home" / "dagster.yaml").read_text()
    assert _rows(tmp_path / "warehouse.duckdb", "monthly_snapshots", "2023-02") > 0

    bad = subprocess.run([*cmd, "--months", "2031-01..2031-02"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("error: --months 2031-01..2031-02: the dataset's months are")
