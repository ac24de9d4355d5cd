import duckdb
import numpy as np
import pyarrow.parquet as pq
import pytest

from finai_models.data import store
from finai_models.data.generate import generate_synthetic
from finai_models.data.raw_schema import TABLES, schemas
from finai_models.duck import fetch_one
from finai_models.errors import DataError, FinAIError


def _files(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*.parquet"))


def test_same_seed_same_bytes_other_seed_other_content(settings, tmp_path):
    a, b, c = (tmp_path / n for n in "abc")
    generate_synthetic(settings, a, 400, 4, seed=1, progress=False)
    generate_synthetic(settings, b, 400, 4, seed=1, progress=False)
    generate_synthetic(settings, c, 400, 4, seed=2, progress=False)
    assert _files(a) == _files(b) == _files(c) and len(_files(a)) == 12
    for rel in _files(a):
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    differing = [rel for rel in _files(a) if not pq.read_table(a / rel).equals(pq.read_table(c / rel))]
    assert len(differing) == 12


def test_files_follow_the_raw_schema(settings, panel_dir):
    manifest = store.require_manifest(panel_dir)
    assert len(manifest["months"]) == 12 and manifest["has_card_transactions"]
    expected = schemas(settings.products)
    for table in TABLES:
        for month in manifest["months"]:
            path = store.month_file(panel_dir, table, month)
            assert pq.read_schema(path).equals(expected[table]), (table, month)
            assert pq.read_metadata(path).num_rows == manifest["rows"][table][month]


@pytest.fixture(scope="module")
def con(panel_dir):
    con = duckdb.connect()
    for table in TABLES:
        con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{panel_dir}/{table}/*.parquet')")
    yield con
    con.close()


def test_panel_has_time_structure(settings, con):
    months_per_customer, new_customers = fetch_one(con, """
        SELECT avg(n), count(*) FILTER (WHERE first > DATE '2023-01-01') FROM (
            SELECT customer_id, count(*) n, min(month) first FROM monthly_snapshots GROUP BY 1)""")
    assert months_per_customer > 10
    assert new_customers > 100, "customers join during the window (cold start)"
    outside = fetch_one(con, "SELECT count(*) FROM card_transactions WHERE date_trunc('month', ts) <> month")[0]
    assert outside == 0
    codes = {r[0] for r in con.sql("SELECT DISTINCT mcc FROM card_transactions").fetchall()}
    assert codes <= set(settings.mcc.codes) and len(codes) > 60
    per_active = fetch_one(con, """
        SELECT avg(coalesce(n, 0)) FROM monthly_snapshots s
        LEFT JOIN (SELECT customer_id, month, count(*) n FROM card_transactions GROUP BY ALL) t
            USING (customer_id, month)
        WHERE s.is_active""")[0]
    assert 12 <= per_active <= 18, per_active


def _count_products(alias):
    from finai_models.config import load_settings
    from finai_models.data.raw_schema import product_column

    return " + ".join(f"{alias}.{product_column(p)}::INT" for p in load_settings().products)


def test_products_and_segments_evolve(con):
    acquisitions, closures, seg_changed = fetch_one(con, f"""
        SELECT avg((({_count_products('b')}) > ({_count_products('a')}))::INT),
               avg((({_count_products('b')}) < ({_count_products('a')}))::INT),
               avg((a.segment <> c.segment)::INT)
        FROM monthly_snapshots a
        JOIN monthly_snapshots b ON b.customer_id = a.customer_id AND b.month = a.month + INTERVAL 1 MONTH
        LEFT JOIN monthly_snapshots c ON c.customer_id = a.customer_id AND c.month = a.month + INTERVAL 6 MONTH
        """)
    assert 0.01 < acquisitions < 0.10
    assert 0.005 < closures < 0.06
    assert 0.05 < seg_changed < 0.5, "segment at t+6 is neither a copy of today's nor noise"


def _spend_by_month(con):
    return con.sql("""
        SELECT s.customer_id, s.month, coalesce(sum(t.amount), 0) AS spend
        FROM monthly_snapshots s LEFT JOIN card_transactions t USING (customer_id, month)
        GROUP BY ALL""")


def test_acquisitions_are_announced_in_past_spending(settings, con):
    """The intent to buy shows in the MCC mix before the purchase: a sequence-only signal."""
    gen = settings.dataset.generator.model_dump()
    l2_index = {n: i for i, n in enumerate(settings.mcc.l2_names)}
    deltas = {True: [], False: []}
    for group, signal in gen["intent_signals"].items():
        boosted = {l2_index[n] for n in signal["mcc_boost"]}
        codes = [c for c, j in zip(settings.mcc.codes, settings.mcc.code_l2, strict=True) if j in boosted]
        held = " OR ".join(f"prod_{p}" for p in settings.acquire_groups[group])
        rows = con.sql(f"""
            WITH share AS (
                SELECT customer_id, month, avg((mcc IN ({', '.join(map(str, codes))}))::INT) AS s
                FROM card_transactions GROUP BY ALL),
            acq AS (
                SELECT a.customer_id, a.month, bool_or(NOT ({held.replace('prod_', 'a.prod_')})
                                                        AND ({held.replace('prod_', 'b.prod_')})) AS bought
                FROM monthly_snapshots a JOIN monthly_snapshots b ON b.customer_id = a.customer_id
                     AND b.month BETWEEN a.month + INTERVAL 1 MONTH AND a.month + INTERVAL 2 MONTH
                GROUP BY ALL)
            SELECT acq.bought, now.s - past.s
            FROM acq JOIN share now USING (customer_id, month)
            JOIN share past ON past.customer_id = acq.customer_id AND past.month = acq.month - INTERVAL 4 MONTH
            """).fetchall()
        for bought, delta in rows:
            deltas[bool(bought)].append(delta)
    buyers, others = np.array(deltas[True]), np.array(deltas[False])
    assert len(buyers) > 100
    assert buyers.mean() - others.mean() > 0.02, (buyers.mean(), others.mean())
    assert buyers.mean() < 0.5, "a signal, not a give-away"


def test_product_loss_is_preceded_by_fading_spend(settings, con):
    rows = con.sql(f"""
        WITH spend AS ({_spend_by_month(con).sql_query()})
        SELECT ({_count_products('later')}) < ({_count_products('now')}) AS lost,
               ln((1 + s_now.spend) / (1 + s_past.spend)) AS trend
        FROM monthly_snapshots now
        JOIN monthly_snapshots later
            ON later.customer_id = now.customer_id AND later.month = now.month + INTERVAL 3 MONTH
        JOIN spend s_now ON s_now.customer_id = now.customer_id AND s_now.month = now.month
        JOIN spend s_past ON s_past.customer_id = now.customer_id AND s_past.month = now.month - INTERVAL 2 MONTH
        """).fetchall()
    lost = np.array([t for lost, t in rows if lost])
    kept = np.array([t for lost, t in rows if not lost])
    assert len(lost) > 100
    assert lost.mean() < kept.mean() - 0.05, (lost.mean(), kept.mean())


def test_bad_sizes_are_refused(settings, tmp_path):
    for customers, months, what in [(0, 3, "--customers"), (-5, 3, "--customers"), (10, -1, "--months"),
                                    (10, 0, "--months")]:
        with pytest.raises(FinAIError, match=what):
            generate_synthetic(settings, tmp_path / "x", customers, months, seed=1, progress=False)
    assert not (tmp_path / "x").exists()


def test_existing_folder_rules(settings, tmp_path):
    out = tmp_path / "out"
    first = generate_synthetic(settings, out, 50, 2, seed=1, progress=False)
    again = generate_synthetic(settings, out, 50, 2, seed=1, progress=False)
    assert again == first, "the same dataset is reused, not rewritten"
    with pytest.raises(DataError, match="holds a different dataset .*seed=1"):
        generate_synthetic(settings, out, 50, 2, seed=2, progress=False)
    generate_synthetic(settings, out, 50, 2, seed=2, overwrite=True, progress=False)
    assert store.require_manifest(out)["identity"]["seed"] == 2

    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not empty and holds no FinAI dataset"):
        generate_synthetic(settings, foreign, 50, 2, seed=1, progress=False)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_interrupted_run_never_looks_complete(settings, tmp_path, monkeypatch):
    out = tmp_path / "out"
    real_write = store.DatasetWriter.write
    calls = []

    def failing_write(self, *args):
        calls.append(args[0])
        if len(calls) == 4:
            raise KeyboardInterrupt
        real_write(self, *args)

    monkeypatch.setattr(store.DatasetWriter, "write", failing_write)
    with pytest.raises(KeyboardInterrupt):
        generate_synthetic(settings, out, 50, 3, seed=1, progress=False)
    assert not (out / store.MANIFEST).exists()
    with pytest.raises(DataError, match="is incomplete"):
        store.require_manifest(out)
    monkeypatch.setattr(store.DatasetWriter, "write", real_write)
    manifest = generate_synthetic(settings, out, 50, 3, seed=1, progress=False)
    assert len(manifest["months"]) == 3 and not (out / store.INCOMPLETE).exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--customers", "0", "--months", "3"], "error: --customers must be a positive integer, got 0"),
        (["--customers", "10", "--months", "-2"], "error: --months must be a positive integer, got -2"),
        (["--customers", "10", "--months", "2", "--seed", "9"], "holds a different dataset"),
    ],
)
def test_cli_bad_input_is_one_line_and_non_zero(tmp_path, args, message):
    import subprocess
    import sys

    out = tmp_path / "out"
    cli = [sys.executable, "-m", "finai_models.cli", "generate", "--out", str(out), "--quiet"]
    assert subprocess.run([*cli, "--customers", "10", "--months", "2", "--seed", "1"]).returncode == 0
    before = sorted(p.name for p in out.rglob("*"))
    proc = subprocess.run([*cli, *args], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr
    assert sorted(p.name for p in out.rglob("*")) == before, "a refused run writes nothing"
