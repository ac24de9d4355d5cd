"""The 13 labels of SPEC §4 in DuckDB SQL, from months strictly after the snapshot month t.

Every window comes from ``tasks.yaml`` (``window: [first, last]`` month offsets), so the SQL reads
exactly the months the config says and the lineage it reports is the one the Class-A check
verifies. Product holdings are packed into a 24-bit mask per customer-month: an acquisition in
month m is ``mask_m & ~mask_(m-1)``, so the first product acquired, the distinct count and the
per-group flags are bit operations instead of a 24-way unpivot. A task whose window reaches past
the last month in the warehouse gets nulls (still scored for serving, never trained on).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa

from finai_models import months as M
from finai_models.config import Settings, Task
from finai_models.data.raw_schema import SEGMENTS, product_column
from finai_models.phase0.inputs import register_mcc_table, require_months

ARROW_TYPES = {"binary": pa.int8(), "multiclass": pa.int16(), "regression": pa.float32()}


@dataclass(frozen=True)
class LabelResult:
    table: pa.Table                      # customer_id, month, one column per task
    lineage: dict[str, tuple[int, int]]  # task -> (first, last) month offset read after t
    observable: dict[str, bool]          # task -> whether its whole window is in the warehouse


def _available_months(con: duckdb.DuckDBPyConnection, schema: str) -> set[str]:
    return {r[0] for r in con.execute(
        f"SELECT DISTINCT strftime(month, '%Y-%m') FROM {schema}.monthly_snapshots").fetchall()}


def _group_mask(settings: Settings, members: tuple[str, ...]) -> int:
    return sum(1 << settings.products.index(p) for p in members)


def _nba_case(settings: Settings, bit: str) -> str:
    """Class (1..6) of the product at bit index ``bit``, in nba_groups order."""
    whens = [f"WHEN {bit} IN ({', '.join(str(settings.products.index(p)) for p in members)}) THEN {c}"
             for c, members in enumerate(settings.nba_groups.values(), start=1)]
    return f"CASE {' '.join(whens)} ELSE 0 END"


def label_sql(settings: Settings, tasks: tuple[Task, ...], month: str, vocab: list[int]) -> str:
    """One SELECT producing every label for the customers present at ``month``."""
    schema = settings.pipeline.warehouse.raw_schema
    by_name = {t.name: t for t in tasks}
    mask = " + ".join(f"({product_column(p)}::BIGINT << {k})" for k, p in enumerate(settings.products))
    t = f"DATE '{M.first_day(month)}'"

    def at(offset: int) -> str:
        return f"DATE '{M.first_day(M.shift(month, offset))}'"

    def window(name: str) -> tuple[int, int]:
        return by_name[name].window

    acq_first, acq_last = window("cross_sell_count")
    lo = min([0, -2] + [task.window[0] - 1 for task in tasks])
    hi = max(task.window[1] for task in tasks)
    segments = " ".join(f"WHEN '{s}' THEN {i}" for i, s in enumerate(SEGMENTS))
    vocab_case = " ".join(f"WHEN {code} THEN {i}" for i, code in enumerate(vocab))
    select = {
        "churn_signal": f"""(coalesce(h{window('churn_signal')[1]}.n, 0) < h0.n
            OR (coalesce(past_spend, 0) > 0 AND future_spend < 0.3 * past_spend))::TINYINT""",
        "product_stability": "(1 - least(1, coalesce(stab.cv, 0)))::FLOAT",
        "nba_primary": f"coalesce({_nba_case(settings, 'acq.first_bit')}, 0)::SMALLINT",
        "cross_sell_count": "bit_count(coalesce(acq.any_acq, 0))::FLOAT",
        "segment_prediction": f"(CASE hs.segment {segments} END)::SMALLINT",
        "next_mcc": f"(CASE nm.mcc {vocab_case} ELSE {len(vocab)} END)::SMALLINT",
        "mcc_diversity_trend": "ln((1 + coalesce(div_f.d, 0)) / (1 + coalesce(div_p.d, 0)))::FLOAT",
        "top_mcc_shift": "(top1.mcc IS DISTINCT FROM top0.mcc)::TINYINT",
    }
    for task in tasks:
        if task.group:
            group_mask = _group_mask(settings, settings.acquire_groups[task.group])
            select[task.name] = f"((coalesce(acq.any_acq, 0) & {group_mask}) <> 0)::TINYINT"
    guards = {"next_mcc": "nm.mcc IS NOT NULL", "top_mcc_shift": "top1.mcc IS NOT NULL",
              "segment_prediction": "hs.segment IS NOT NULL"}
    columns = ",\n".join(
        f"CASE WHEN {guards.get(task.name, 'TRUE')} THEN {select[task.name]} END AS {task.name}" for task in tasks)

    joins = "\n    ".join(f"LEFT JOIN {cte} ON {cte}.customer_id = h0.customer_id" for cte in (
        "acq", "stab", "hs", "spend", "nm", "top0", "top1", "div_f", "div_p"))
    churn_last = window("churn_signal")[1]
    stab_first, stab_last = window("product_stability")
    seg_at = window("segment_prediction")[1]
    nm_at = window("next_mcc")[0]
    div_first, div_last = window("mcc_diversity_trend")
    shift_at = window("top_mcc_shift")[0]
    return f"""
    WITH hold AS (
        SELECT customer_id, datediff('month', {t}, month) AS k, ({mask}) AS mask, bit_count(({mask})) AS n, segment
        FROM {schema}.monthly_snapshots WHERE month BETWEEN {at(lo)} AND {at(hi)}),
    h0 AS (SELECT * FROM hold WHERE k = 0),
    acq_m AS (
        SELECT cur.customer_id, cur.k, cur.mask & ~prev.mask AS acq
        FROM hold cur JOIN hold prev ON prev.customer_id = cur.customer_id AND prev.k = cur.k - 1
        WHERE cur.k BETWEEN {acq_first} AND {acq_last}),
    acq AS (
        SELECT customer_id, bit_or(acq) AS any_acq,
               bit_count((arg_min(acq, k) FILTER (WHERE acq <> 0) & -arg_min(acq, k) FILTER (WHERE acq <> 0)) - 1)
                   AS first_bit
        FROM acq_m GROUP BY customer_id),
    stab AS (
        SELECT customer_id, CASE WHEN avg(n) > 0 THEN stddev_pop(n) / avg(n) END AS cv
        FROM hold WHERE k BETWEEN {stab_first} AND {stab_last} GROUP BY customer_id),
    hs AS (SELECT customer_id, segment FROM hold WHERE k = {seg_at}),
    tx AS (
        SELECT customer_id, datediff('month', {t}, month) AS k, mcc, amount
        FROM {schema}.card_transactions WHERE month BETWEEN {at(-2)} AND {at(hi)}),
    spend AS (
        SELECT customer_id,
               sum(amount) FILTER (WHERE k BETWEEN -2 AND 0) AS past_spend,
               coalesce(sum(amount) FILTER (WHERE k BETWEEN {window('churn_signal')[0]} AND {churn_last}), 0)
                   AS future_spend
        FROM tx GROUP BY customer_id),
    mcc_count AS (SELECT customer_id, k, mcc, count(*) AS c, sum(amount) AS s FROM tx GROUP BY ALL),
    nm AS (SELECT customer_id, arg_max(mcc, (c, -mcc)) AS mcc FROM mcc_count WHERE k = {nm_at} GROUP BY customer_id),
    top0 AS (SELECT customer_id, arg_max(mcc, (s, -mcc)) AS mcc FROM mcc_count WHERE k = 0 GROUP BY customer_id),
    top1 AS (SELECT customer_id, arg_max(mcc, (s, -mcc)) AS mcc FROM mcc_count WHERE k = {shift_at}
             GROUP BY customer_id),
    div_f AS (SELECT customer_id, count(DISTINCT mcc) AS d FROM tx WHERE k BETWEEN {div_first} AND {div_last}
              GROUP BY customer_id),
    div_p AS (SELECT customer_id, count(DISTINCT mcc) AS d FROM tx WHERE k BETWEEN -2 AND 0 GROUP BY customer_id)
    SELECT h0.customer_id, {t} AS month,
    {columns}
    FROM h0
    LEFT JOIN hold h{churn_last} ON h{churn_last}.customer_id = h0.customer_id AND h{churn_last}.k = {churn_last}
    {joins}
    ORDER BY h0.customer_id"""


def compute_labels(con: duckdb.DuckDBPyConnection, settings: Settings, month: str, vocab: list[int],
                   tasks: tuple[Task, ...] | None = None) -> LabelResult:
    """Labels of every customer present at ``month``; unobservable windows become nulls."""
    tasks = tasks or settings.tasks
    schema = settings.pipeline.warehouse.raw_schema
    register_mcc_table(con, settings)
    available = _available_months(con, schema)
    horizon = max(t.window[1] for t in tasks)
    latest = max(available) if available else month
    require_months(con, settings, M.month_range(M.shift(month, -2), min(M.shift(month, horizon), latest)),
                   f"the labels of {month}")
    observable = {t.name: all(M.shift(month, k) in available for k in range(t.window[0], t.window[1] + 1))
                  for t in tasks}
    table = con.sql(label_sql(settings, tasks, month, vocab)).to_arrow_table()
    fields = [pa.field("customer_id", pa.int64()), pa.field("month", pa.date32())]
    columns = [table["customer_id"], table["month"]]
    for task in tasks:
        column = table[task.name].cast(ARROW_TYPES[task.type])
        if not observable[task.name]:
            column = pa.nulls(len(table), ARROW_TYPES[task.type])
        fields.append(pa.field(task.name, ARROW_TYPES[task.type]))
        columns.append(column)
    return LabelResult(pa.Table.from_arrays(columns, schema=pa.schema(fields)),
                       {t.name: tuple(t.window) for t in tasks}, observable)
