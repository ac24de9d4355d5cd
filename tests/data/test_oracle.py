"""The oracle: the generic Monte Carlo estimator on toy processes with known answers, signal_share,
and the generator oracle's realised labels against the pipeline's own labels of simulate()'s output."""

import duckdb
import numpy as np
import pytest

from finai_models import metrics
from finai_models import months as M
from finai_models.config import Task, load_settings
from finai_models.data.oracle import (
    NEAR_CHANCE_AUC,
    generator_oracle,
    monte_carlo_oracle,
    score_oracle,
    signal_share,
)
from finai_models.data.synthetic import simulate
from finai_models.data.synthetic_params import build_params
from finai_models.errors import DataError, FinAIError
from finai_models.phase0.labels import compute_labels

BINARY = Task("b", "binary", "bce", "auc", (1, 1))
MULTI = Task("m", "multiclass", "ce", "macro_f1", (1, 1), classes=4)
REGRESSION = Task("r", "regression", "huber", "mae", (1, 1))


def test_estimator_recovers_known_probabilities_and_means():
    n, replicates = 2000, 200
    setup = np.random.default_rng(0)
    p = setup.uniform(0.1, 0.9, n)
    probs = 0.1 + 0.6 * setup.dirichlet(np.ones(4), size=n)   # every class >= 0.1
    mu = setup.normal(size=n)

    def draw(rng):
        u = rng.random(n)
        return {"b": (rng.random(n) < p).astype(float), "m": (np.cumsum(probs, axis=1) < u[:, None]).sum(axis=1),
                "r": mu + rng.normal(size=n)}

    est = monte_carlo_oracle(draw, replicates, seed=3, tasks=(BINARY, MULTI, REGRESSION))
    assert est["b"].shape == (n,) and est["m"].shape == (n, 4) and est["r"].shape == (n,)
    # 4.5 binomial / normal standard errors (np >= 20, so the normal approximation holds): no row of
    # 2000 should miss by chance.
    assert (np.abs(est["b"] - p) <= 4.5 * np.sqrt(p * (1 - p) / replicates) + 1e-12).all()
    assert (np.abs(est["m"] - probs) <= 4.5 * np.sqrt(probs * (1 - probs) / replicates) + 1e-12).all()
    assert np.allclose(est["m"].sum(axis=1), 1)
    assert (np.abs(est["r"] - mu) <= 4.5 / np.sqrt(replicates)).all()

    realised = np.random.default_rng(99).random(n) < p
    assert metrics.auc(realised, est["b"]) == pytest.approx(metrics.auc(realised, p), abs=0.01)
    assert metrics.auc(realised, p) > 0.7

    again = monte_carlo_oracle(draw, replicates, seed=3, tasks=(BINARY, MULTI, REGRESSION))
    assert all(np.array_equal(est[k], again[k]) for k in est), "same seed, same estimate"


def test_estimator_averages_over_defined_replicates_only():
    calls = []

    def draw(rng):
        r = len(calls)
        calls.append(r)
        b = np.array([np.nan if r % 2 else r % 4 == 0, np.nan, 1.0])
        m = np.array([np.nan if r % 2 else 3, np.nan, r % 2])
        reg = np.array([np.nan if r % 2 else float(r), np.nan, 1.0])
        return {"b": b, "m": m, "r": reg}

    est = monte_carlo_oracle(draw, 8, seed=0, tasks=(BINARY, MULTI, REGRESSION))
    assert est["b"][0] == pytest.approx(0.5)        # r = 0, 2, 4, 6: labels 1, 0, 1, 0
    assert est["r"][0] == pytest.approx(3.0)        # mean of 0, 2, 4, 6
    assert np.array_equal(est["m"][0], [0, 0, 0, 1])
    assert np.array_equal(est["m"][2], [0.5, 0.5, 0, 0])
    assert np.isnan(est["b"][1]) and np.isnan(est["r"][1]) and np.isnan(est["m"][1]).all()
    assert est["b"][2] == 1.0


@pytest.mark.parametrize(("labels", "message"), [
    ({"b": np.zeros(3), "m": np.zeros(3)}, "no labels for task 'r'"),
    ({"b": np.zeros(3), "m": np.array([0, 4, 1]), "r": np.zeros(3)}, "outside classes 0..3"),
    ({"b": np.array([0, 2, 1]), "m": np.zeros(3), "r": np.zeros(3)}, "other than 0/1"),
])
def test_estimator_refuses_malformed_draws(labels, message):
    with pytest.raises(DataError, match=message):
        monte_carlo_oracle(lambda rng: labels, 2, seed=0, tasks=(BINARY, MULTI, REGRESSION))
    sizes = iter([3, 4])
    with pytest.raises(DataError, match="has 4 rows, earlier draws had 3"):
        monte_carlo_oracle(lambda rng: {"b": np.zeros(next(sizes))}, 2, seed=0, tasks=(BINARY,))
    with pytest.raises(FinAIError, match="replicates must be a positive integer, got 0"):
        monte_carlo_oracle(lambda rng: {}, 0, seed=0, tasks=(BINARY,))


def test_signal_share():
    assert signal_share("binary", 0.65, 0.80) == pytest.approx(0.5)
    assert signal_share("binary", 0.50, 0.80) == pytest.approx(0.0)
    assert signal_share("binary", 0.45, 0.60) == pytest.approx(-0.5)
    assert signal_share("multiclass", 0.40, 0.60, chance_metric=0.20) == pytest.approx(0.5)
    assert signal_share("regression", 0.10, 0.40) == pytest.approx(0.25)
    # No signal to share: the oracle at or below chance, or an undefined metric.
    assert np.isnan(signal_share("binary", 0.6, 0.5))
    assert np.isnan(signal_share("binary", 0.6, 0.45))
    assert np.isnan(signal_share("multiclass", 0.3, 0.2, chance_metric=0.2))
    assert np.isnan(signal_share("regression", 0.1, -0.05))
    assert np.isnan(signal_share("binary", float("nan"), 0.8))
    with pytest.raises(FinAIError, match="needs chance_metric"):
        signal_share("multiclass", 0.4, 0.6)
    with pytest.raises(FinAIError, match="unknown task kind 'ranking'"):
        signal_share("ranking", 0.4, 0.6)


def test_score_oracle_on_hand_cases():
    y = np.array([0, 0, 1, 1, np.nan])
    perfect = score_oracle(BINARY, y, np.array([0.1, 0.2, 0.8, 0.9, 0.5]))
    assert perfect.value == 1.0 and perfect.extra == {"prevalence": 0.5, "rows": 4} and perfect.near_chance is False
    flat = score_oracle(BINARY, y, np.full(5, 0.3))
    assert flat.value == 0.5 and flat.near_chance
    freq = np.array([[0.6, 0.4, 0, 0], [0.6, 0.4, 0, 0], [0.2, 0.7, 0.1, 0], [np.nan] * 4, [0.9, 0, 0, 0.1]])
    multi = score_oracle(MULTI, np.array([0, 1, 1, 2, 0]), freq)
    assert multi.extra["rows"] == 4 and multi.extra["accuracy"] == 0.75
    assert multi.value == pytest.approx((0.8 + 2 / 3) / 2)      # argmax 0, 0, 1, 0 against 0, 1, 1, 0
    assert multi.chance == pytest.approx((2 / 3 + 0) / 2)       # the prior's majority, class 0, for all
    reg = score_oracle(REGRESSION, np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0]))
    assert reg.value == pytest.approx(0.5) and reg.extra["mae"] == pytest.approx(1 / 3) and reg.near_chance is None


MONTH, CUSTOMERS, SEED = "2023-06", 500, 11


@pytest.fixture(scope="module")
def oracle(settings):
    return generator_oracle(settings, CUSTOMERS, MONTH, replicates=4, seed=SEED)


def test_generator_oracle_shapes_and_ranges(settings, oracle):
    assert list(oracle.tasks) == [t.name for t in settings.tasks] and len(oracle.tasks) == 13
    n = len(oracle.customer_ids)
    assert 0.8 * CUSTOMERS < n <= CUSTOMERS and (np.diff(oracle.customer_ids) > 0).all()
    assert len(oracle.vocab) == settings.phase0.mcc_vocab_size
    for task in settings.tasks:
        t = oracle.tasks[task.name]
        assert t.realised.shape == (n,)
        defined = ~np.isnan(t.score) if t.score.ndim == 1 else ~np.isnan(t.score).any(axis=1)
        assert defined.mean() > 0.7, task.name
        s = t.score[defined]
        if task.type == "binary":
            assert t.score.shape == (n,) and ((s >= 0) & (s <= 1)).all()
            assert t.value > 0.5, f"{task.name}: oracle AUC {t.value:.3f} is not above chance"
            assert t.near_chance == (t.value - 0.5 < NEAR_CHANCE_AUC)
            assert 0 < t.extra["prevalence"] < 1
        elif task.type == "multiclass":
            assert t.score.shape == (n, task.classes) and np.allclose(s.sum(axis=1), 1)
            assert t.value > t.chance, f"{task.name}: oracle F1 {t.value:.3f} not above chance {t.chance:.3f}"
            assert t.extra["macro_f1_tuned"] >= t.value, "the tuned decision includes the plain argmax"
        else:
            assert t.score.shape == (n,) and np.isfinite(s).all()
    assert (oracle.tasks["product_stability"].score[defined] <= 1).all()
    assert (oracle.tasks["cross_sell_count"].score >= 0).all()
    assert "will_acquire_lending" in oracle.report()


def test_realised_labels_are_the_pipelines_labels_of_simulate(settings, oracle):
    """The realised future is simulate()'s own: compute_labels over its full raw tables agrees."""
    start, end = settings.months
    index = M.diff(MONTH, start)
    schema = settings.pipeline.warehouse.raw_schema
    con = duckdb.connect()
    con.execute(f"CREATE SCHEMA {schema}")
    horizon = max(t.window[1] for t in settings.tasks)
    for k, tables in enumerate(simulate(build_params(settings), settings, CUSTOMERS, start,
                                        M.diff(end, start) + 1, SEED)):
        for name in ("customers", "monthly_snapshots", "card_transactions"):
            rows = {"customers": tables.customers, "monthly_snapshots": tables.snapshots,
                    "card_transactions": tables.transactions}[name]
            con.register("rows", rows)
            con.execute(f"CREATE TABLE {schema}.{name} AS SELECT * FROM rows" if k == 0
                        else f"INSERT INTO {schema}.{name} SELECT * FROM rows")
            con.unregister("rows")
        if k == index + horizon:
            break
    labels = compute_labels(con, settings, MONTH, oracle.vocab).table
    assert np.array_equal(labels["customer_id"].to_numpy(), oracle.customer_ids)
    for task in settings.tasks:
        expected = labels[task.name].cast("double").to_numpy(zero_copy_only=False)
        assert np.array_equal(expected, oracle.tasks[task.name].realised, equal_nan=True), task.name


def test_generator_oracle_is_deterministic(settings):
    a, b = (generator_oracle(settings, 200, "2023-04", replicates=2, seed=5) for _ in range(2))
    c = generator_oracle(settings, 200, "2023-04", replicates=2, seed=6)
    assert a.vocab == b.vocab
    for name in a.tasks:
        assert np.array_equal(a.tasks[name].realised, b.tasks[name].realised, equal_nan=True), name
        assert np.array_equal(a.tasks[name].score, b.tasks[name].score, equal_nan=True), name
    assert not np.array_equal(a.tasks["churn_signal"].score, c.tasks["churn_signal"].score, equal_nan=True)


def test_generator_oracle_refuses_bad_requests(settings):
    with pytest.raises(FinAIError, match="is before the dataset's first month 2023-01"):
        generator_oracle(settings, 50, "2022-12", replicates=1)
    with pytest.raises(FinAIError, match="customers must be a positive integer, got 0"):
        generator_oracle(settings, 0, MONTH)
    with pytest.raises(FinAIError, match="replicates must be a positive integer"):
        generator_oracle(settings, 50, MONTH, replicates=0)
    with pytest.raises(FinAIError, match="month must be YYYY-MM, got 'June'"):
        generator_oracle(settings, 50, "June")
    with pytest.raises(FinAIError, match="dataset 'santander' is not synthetic"):
        generator_oracle(load_settings(dataset="santander"), 50, "2015-06")
