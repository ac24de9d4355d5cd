"""The ceiling: an oracle score per customer-month from the synthetic generator's own code.

A model's AUC of 0.62 means little on its own: the synthetic labels arise from simulated future
behaviour (SPEC §3-§4), so part of every label is noise that nobody can predict from month t.
The generator, though, holds the whole hidden state of every customer at t (persona, latent
vector, situations, intents, attrition). Restarting the simulation from that state many times with
fresh random streams and averaging the labels of those alternative futures gives, per customer,
the best prediction any model knowing everything at t could make: P(label | state at t) for binary
tasks, the class frequencies for multiclass ones, the conditional mean for regression. Scored on
the realised future (the one ``simulate()`` writes, same seeding), it is the ceiling a model's
metric should be read against; ``signal_share`` turns a model's metric into the share of that
achievable signal, and an oracle near chance says a task has no signal in the data to learn.

Two things make the estimate a slightly low ceiling, so shares computed against it read a little
high. (1) Finitely many futures: the score is a noisy estimate of the true conditional mean, and noise
only costs AUC and R^2; rare binary tasks suffer most, since with few futures most customers tie at 0
(in one run at 3,000 customers, lending's AUC was 0.84 with 16 futures, 0.90 with 256). Use a few hundred
futures for numbers you publish; they are cheap. (2) Macro-F1: the argmax of the class frequencies
maximises accuracy, not macro-F1, so a model that favours rare classes can beat it; ``macro_f1_tuned``
(argmax of frequency / prior^a, a picked on the realised labels) is the better multiclass ceiling.

Labels come from the real label SQL (``label_sql``) in an in-memory DuckDB, so the oracle and the
pipeline cannot disagree on a definition. Only what that SQL reads is written per future: snapshot
holdings and segments of the customers present at t, and card transactions (customer, month, MCC,
amount) of the months the transaction tasks read.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

from finai_models import metrics
from finai_models import months as M
from finai_models.config import Settings, Task
from finai_models.data.raw_schema import SEGMENTS, product_column
from finai_models.data.synthetic import Panel
from finai_models.data.synthetic_params import build_params
from finai_models.errors import DataError, FinAIError
from finai_models.phase0.labels import ARROW_TYPES, label_sql
from finai_models.progress import progress_bar

NEAR_CHANCE_AUC = 0.02      # an oracle AUC within this of 0.5 says the task has (almost) no signal
PRIOR_POWERS = (0.0, 0.25, 0.5, 0.75, 1.0)   # multiclass decisions argmax(freq / prior^a) tried for macro-F1
PAST_MONTHS = 2             # the label SQL reads t-2..t for the "before" side of some labels
# Tasks whose label SQL reads card transactions (labels.py); transactions are simulated for their windows only.
TRANSACTION_TASKS = ("churn_signal", "next_mcc", "mcc_diversity_trend", "top_mcc_shift")
_TX_COLUMNS = ("customer_id", "month", "mcc", "amount")

Draw = Callable[[np.random.Generator], dict[str, np.ndarray]]


def monte_carlo_oracle(draw: Draw, replicates: int, seed: int, tasks: Sequence[Task],
                       progress: bool = False) -> dict[str, np.ndarray]:
    """Average ``replicates`` independent draws of every task's label vector.

    ``draw(rng)`` returns one label vector [n] per task name (NaN where undefined), the same rows in
    the same order every time. Returns per task the mean over the draws where the label is defined:
    [n] for binary and regression tasks (for binary, the estimated probability), [n, classes] class
    frequencies for multiclass ones; NaN where a row's label is never defined. Replicate r gets its
    own child stream of ``SeedSequence(seed)``, so the result depends only on ``seed``.
    """
    if isinstance(replicates, bool) or not isinstance(replicates, int | np.integer) or replicates < 1:
        raise FinAIError(f"monte_carlo_oracle: replicates must be a positive integer, got {replicates!r}")
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    streams = np.random.SeedSequence(seed).spawn(int(replicates))
    with progress_bar(total=int(replicates), desc="oracle futures", unit="future", enabled=progress) as bar:
        for stream in streams:
            labels = draw(np.random.default_rng(stream))
            for task in tasks:
                _accumulate(task, labels, sums, counts)
            bar.update(1)
    out = {}
    for task in tasks:
        n = counts[task.name]
        with np.errstate(invalid="ignore", divide="ignore"):
            denom = n[:, None] if task.type == "multiclass" else n
            out[task.name] = np.where(denom > 0, sums[task.name] / np.maximum(denom, 1), np.nan)
    return out


def _accumulate(task: Task, labels: dict[str, np.ndarray], sums: dict[str, np.ndarray],
                counts: dict[str, np.ndarray]) -> None:
    if task.name not in labels:
        raise DataError(f"oracle draw returned no labels for task {task.name!r}")
    y = np.asarray(labels[task.name], np.float64)
    if y.ndim != 1:
        raise DataError(f"oracle draw: labels of {task.name!r} must be a vector, got shape {y.shape}")
    if task.name not in sums:
        shape = (len(y), int(task.classes)) if task.type == "multiclass" else (len(y),)
        sums[task.name], counts[task.name] = np.zeros(shape), np.zeros(len(y))
    if len(y) != len(counts[task.name]):
        raise DataError(f"oracle draw: {task.name!r} has {len(y)} rows, earlier draws had {len(counts[task.name])}")
    defined = ~np.isnan(y)
    values = y[defined]
    if task.type == "multiclass":
        if ((values != np.round(values)) | (values < 0) | (values >= task.classes)).any():
            raise DataError(f"oracle draw: {task.name!r} has labels outside classes 0..{task.classes - 1}")
        sums[task.name][np.flatnonzero(defined), values.astype(np.int64)] += 1
    else:
        if task.type == "binary" and not np.isin(values, (0.0, 1.0)).all():
            raise DataError(f"oracle draw: binary task {task.name!r} has labels other than 0/1")
        sums[task.name][defined] += values
    counts[task.name] += defined


def signal_share(task_kind: str, model_metric: float, oracle_metric: float,
                 chance_metric: float | None = None) -> float:
    """The share of the achievable signal a model captures: (model - chance) / (oracle - chance).

    Binary: (AUC - 0.5) / (oracle AUC - 0.5). Regression: R^2 / oracle R^2 (chance = 0, predicting the
    mean). Multiclass: (F1 - chance F1) / (oracle F1 - chance F1), where chance F1 is what predicting the
    training majority / prior scores; it depends on the class mix, so the caller must pass it. A
    ``chance_metric`` given for the other kinds replaces their default. NaN when the oracle is at or
    below chance (there is no signal to share) or any input is NaN; can exceed 1 by sampling noise, or
    be negative for a model worse than chance.
    """
    defaults = {"binary": 0.5, "regression": 0.0, "multiclass": None}
    if task_kind not in defaults:
        raise FinAIError(f"signal_share: unknown task kind {task_kind!r} (binary, multiclass or regression)")
    chance = defaults[task_kind] if chance_metric is None else chance_metric
    if chance is None:
        raise FinAIError("signal_share: a multiclass task needs chance_metric (the F1 of predicting the prior)")
    model, oracle, chance = float(model_metric), float(oracle_metric), float(chance)
    if not (np.isfinite(model) and np.isfinite(oracle) and np.isfinite(chance)) or oracle <= chance:
        return float("nan")
    return (model - chance) / (oracle - chance)


@dataclass(frozen=True)
class TaskOracle:
    """One task's realised labels, oracle scores and the oracle's metrics on the realised labels."""

    task: str
    kind: str
    realised: np.ndarray            # [n] label of the realised future, NaN where undefined
    score: np.ndarray               # [n] mean label (binary: probability), or [n, classes] frequencies
    metric: str                     # auc | macro_f1 | r2
    value: float                    # the oracle's metric on the realised labels
    chance: float                   # the same metric for a no-information predictor
    extra: dict[str, float]         # prevalence (binary); accuracy, macro_f1_tuned (multiclass); mae; rows

    @property
    def near_chance(self) -> bool | None:
        """Binary only: oracle AUC - 0.5 below NEAR_CHANCE_AUC (or undefined): nothing to learn."""
        if self.kind != "binary":
            return None
        return not (self.value - 0.5 >= NEAR_CHANCE_AUC)


@dataclass(frozen=True)
class OracleResult:
    """Every task's oracle for one snapshot month, with what produced it (for a report or a benchmark)."""

    month: str
    customer_ids: np.ndarray        # [n] customers present at ``month``, ascending
    replicates: int
    seed: int
    vocab: list[int]                # next_mcc classes: these codes, then "other"
    tasks: dict[str, TaskOracle]
    seconds: float

    def report(self) -> str:
        """A plain-text table, one task a line."""
        lines = [f"oracle of {self.month}: {len(self.customer_ids):,} customers, {self.replicates} futures, "
                 f"seed {self.seed}, {self.seconds:.1f} s",
                 f"{'task':26s} {'metric':9s} {'oracle':>7s} {'chance':>7s}  details"]
        for t in self.tasks.values():
            details = ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in t.extra.items())
            if t.near_chance:
                details += ", NEAR CHANCE"
            lines.append(f"{t.task:26s} {t.metric:9s} {t.value:7.3f} {t.chance:7.3f}  {details}")
        return "\n".join(lines)


def score_oracle(task: Task, realised: np.ndarray, score: np.ndarray) -> TaskOracle:
    """The oracle's metric on the realised labels, over rows where both are defined."""
    realised, score = np.asarray(realised, np.float64), np.asarray(score, np.float64)
    keep = ~np.isnan(realised) & (~np.isnan(score).any(axis=1) if score.ndim == 2 else ~np.isnan(score))
    y, s = realised[keep], score[keep]
    rows = int(keep.sum())
    if task.type == "binary":
        value = metrics.auc(y, s) if rows else float("nan")
        extra = {"prevalence": float(y.mean()) if rows else float("nan"), "rows": rows}
        return TaskOracle(task.name, task.type, realised, score, "auc", value, 0.5, extra)
    if task.type == "multiclass":
        k = int(task.classes)
        if not rows:
            nan = float("nan")
            return TaskOracle(task.name, task.type, realised, score, "macro_f1", nan, nan, {"accuracy": nan, "rows": 0})
        pred, prior = s.argmax(axis=1), s.mean(axis=0)
        tuned = max((metrics.macro_f1(y, (s / np.maximum(prior, 1e-12) ** a).argmax(axis=1), k), a)
                    for a in PRIOR_POWERS)
        extra = {"accuracy": float((pred == y).mean()), "macro_f1_tuned": tuned[0], "tuned_power": tuned[1],
                 "rows": rows}
        return TaskOracle(task.name, task.type, realised, score, "macro_f1", metrics.macro_f1(y, pred, k),
                          metrics.macro_f1(y, np.full(rows, prior.argmax()), k), extra)
    value = metrics.r2(y, s) if rows else float("nan")
    extra = {"mae": float(np.abs(y - s).mean()) if rows else float("nan"), "rows": rows}
    return TaskOracle(task.name, task.type, realised, score, "r2", value, 0.0, extra)


# --- the generator's futures ---------------------------------------------------------------------

class _Warehouse:
    """An in-memory DuckDB with just the raw columns the label SQL reads."""

    def __init__(self, settings: Settings, vocab: list[int] | None = None):
        self.settings, self.vocab = settings, vocab
        self.schema = settings.pipeline.warehouse.raw_schema
        self.products = [product_column(p) for p in settings.products]
        self.con = duckdb.connect()
        self.con.execute("SET threads = 1")    # sums in one order: the same seed gives the same labels
        self.con.execute(f"CREATE SCHEMA {self.schema}")
        flags = ", ".join(f"{c} BOOLEAN" for c in self.products)
        self.con.execute(f"CREATE TABLE {self.schema}.monthly_snapshots "
                         f"(customer_id BIGINT, month DATE, segment VARCHAR, {flags})")
        self.con.execute(f"CREATE TABLE {self.schema}.card_transactions "
                         "(customer_id BIGINT, month DATE, mcc SMALLINT, amount DOUBLE)")

    def insert(self, table: str, rows: pa.Table) -> None:
        names = ("customer_id", "month", "segment", *self.products) if table == "monthly_snapshots" else _TX_COLUMNS
        self.con.register("_oracle_rows", rows.select(list(names)))
        self.con.execute(f"INSERT INTO {self.schema}.{table} SELECT {', '.join(names)} FROM _oracle_rows")
        self.con.unregister("_oracle_rows")

    def forget_after(self, month: str) -> None:
        for table in ("monthly_snapshots", "card_transactions"):
            self.con.execute(f"DELETE FROM {self.schema}.{table} WHERE month > ?", [M.first_day(month)])

    def fit_vocab(self, month: str, size: int) -> list[int]:
        """The ``size`` most frequent MCC codes of ``month`` (ties by code), as next_mcc's classes."""
        rows = self.con.execute(f"""SELECT mcc FROM {self.schema}.card_transactions WHERE month = ?
            GROUP BY mcc ORDER BY count(*) DESC, mcc LIMIT {int(size)}""", [M.first_day(month)]).fetchall()
        return [int(r[0]) for r in rows]

    def labels(self, month: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Customer ids and every task's labels (float, NaN for null), typed as compute_labels types them."""
        tasks = self.settings.tasks
        table = self.con.sql(label_sql(self.settings, tasks, month, self.vocab)).to_arrow_table()
        ids = table["customer_id"].to_numpy()
        return ids, {t.name: table[t.name].cast(ARROW_TYPES[t.type]).cast(pa.float64()).to_numpy(zero_copy_only=False)
                     for t in tasks}


def _snapshot_rows(panel: Panel, rows: np.ndarray, settings: Settings) -> pa.Table:
    """The label SQL's snapshot columns for ``rows`` of the panel's current month."""
    month = M.first_day(M.shift(panel.start, panel.t))
    columns = {"customer_id": pa.array(panel.customer_id[rows]),
               "month": pa.array([month] * len(rows), pa.date32()),
               "segment": pa.array(np.asarray(SEGMENTS, dtype=object)[panel.segment[rows]], pa.string())}
    columns.update({product_column(p): pa.array(panel.holdings[rows, k]) for k, p in enumerate(settings.products)})
    return pa.table(columns)


def _copy_state(panel: Panel) -> Panel:
    """An independent copy of the hidden state; the read-only parameters and settings are shared."""
    return copy.deepcopy(panel, {id(panel.p): panel.p, id(panel.settings): panel.settings})


def _check_request(settings: Settings, customers: int, month: str, replicates: int) -> tuple[str, int]:
    if settings.dataset.source != "synthetic" or settings.dataset.generator is None:
        raise FinAIError(f"generator_oracle: dataset {settings.dataset_name!r} is not synthetic; "
                         "only the synthetic generator's hidden state gives an oracle")
    if isinstance(customers, bool) or not isinstance(customers, int | np.integer) or customers < 1:
        raise FinAIError(f"generator_oracle: customers must be a positive integer, got {customers!r}")
    if isinstance(replicates, bool) or not isinstance(replicates, int | np.integer) or replicates < 1:
        raise FinAIError(f"generator_oracle: replicates must be a positive integer, got {replicates!r}")
    start = settings.months[0]
    try:
        index = M.diff(month, start)
    except (ValueError, AttributeError):
        raise FinAIError(f"generator_oracle: month must be YYYY-MM, got {month!r}") from None
    if index < 0:
        raise FinAIError(f"generator_oracle: month {month} is before the dataset's first month {start}")
    return start, index


def generator_oracle(settings: Settings, customers: int, month: str, replicates: int = 32, seed: int = 7,
                     vocab: list[int] | None = None, progress: bool = False) -> OracleResult:
    """Realised labels, oracle scores and oracle metrics of snapshot month ``month``.

    Simulates ``customers`` customers exactly as ``simulate()`` does for the dataset's months (same
    start, month count and per-month seeding), so the realised labels are those of a dataset generated
    with the same size and ``seed``. The panel's state at ``month`` is then copied and stepped
    ``replicates`` times through the label horizon with fresh independent streams; the mean label over
    those futures is the oracle score. ``vocab`` (next_mcc's codes) defaults to the
    ``mcc_vocab_size`` most common MCCs of ``month``; any code list gives a valid oracle. Months past
    the dataset's end are simulated too, so every label of ``month`` is defined.
    """
    began = time.perf_counter()
    start, index = _check_request(settings, customers, month, replicates)
    tasks = settings.tasks
    horizon = max(t.window[1] for t in tasks)
    tx_horizon = max((t.window[1] for t in tasks if t.name in TRANSACTION_TASKS), default=0)
    n_months = M.diff(settings.months[1], start) + 1
    panel = Panel(build_params(settings), settings, int(customers), start, n_months, seed)
    house = _Warehouse(settings)
    with progress_bar(total=index + 1 + horizon, desc=f"oracle {customers:,} customers to {month}", unit="month",
                      enabled=progress) as bar:
        for k in range(index + 1 + horizon):
            rng = np.random.default_rng([seed, k + 1])      # simulate()'s stream of month k
            if k:
                panel.step(rng)
            if k >= index - PAST_MONTHS:
                tables = panel.tables(rng)
                house.insert("monthly_snapshots", tables.snapshots)
                if k <= index + tx_horizon:
                    house.insert("card_transactions", tables.transactions)
            if k == index:
                state = _copy_state(panel)
                house.vocab = vocab if vocab is not None else house.fit_vocab(month, settings.phase0.mcc_vocab_size)
            bar.update(1)
    ids, realised = house.labels(month)
    house.forget_after(month)
    rows = np.flatnonzero(state.join_index <= state.t)
    if not np.array_equal(state.customer_id[rows], ids):
        raise DataError(f"generator_oracle: the label rows of {month} are not the customers present at {month}")

    def draw(rng: np.random.Generator) -> dict[str, np.ndarray]:
        future = _copy_state(state)
        for h in range(1, horizon + 1):
            future.step(rng)
            house.insert("monthly_snapshots", _snapshot_rows(future, rows, settings))
            if h <= tx_horizon:      # the generator's own transaction draw, without the customers table
                house.insert("card_transactions", future._transactions(rng, rows, M.shift(month, h)))
        got, labels = house.labels(month)
        house.forget_after(month)
        if not np.array_equal(got, ids):
            raise DataError(f"generator_oracle: a simulated future of {month} changed the label rows")
        return labels

    try:
        scores = monte_carlo_oracle(draw, int(replicates), seed, tasks, progress=progress)
    finally:
        house.con.close()
    return OracleResult(month, ids, int(replicates), seed, list(house.vocab),
                        {t.name: score_oracle(t, realised[t.name], scores[t.name]) for t in tasks},
                        time.perf_counter() - began)
