"""model_derived: dynamics of each customer's own monthly series and transaction exploration."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from finai_models.phase0.groups.dynamics import ModelDerived, series_dynamics
from finai_models.phase0.inputs import SERIES


@pytest.fixture(scope="module")
def fitted(phase0_env):
    group = ModelDerived(phase0_env.settings, 27)
    with phase0_env.connect() as con:
        group.fit(phase0_env.train, con)
    return group, group.transform(phase0_env.month, None)     # con=None: transform reads only MonthInputs


def _named(group, values):
    return dict(zip(group.column_names(), values.T, strict=True))


def test_rows_do_not_influence_each_other(fitted, phase0_env):
    """The reference ran its 'temporal' operators across customers; here a row depends on itself only."""
    group, values = fitted
    rows = np.array([3, 17, 400, 1200])
    np.testing.assert_array_equal(group.transform(phase0_env.month.subset(rows), None), values[rows])


def _with_series(x, name, series, present):
    """Customers of ``x`` with one monthly series and the presence mask replaced."""
    new = x.series.copy()
    new[:, :, SERIES.index(name)] = series
    return dataclasses.replace(x, series=new, present=np.asarray(present, bool))


def test_planted_linear_and_constant_series(fitted, phase0_env):
    group, _ = fitted
    x = phase0_env.month.subset(np.arange(3))
    months = np.arange(12, dtype=np.float32)
    line = 100 + 10 * months                                  # level = mean = 155, slope 10 per month
    present = np.ones((3, 12), bool)
    present[2, :6] = False                                     # joined 6 months ago: 40 + 10 m over its months
    series = np.stack([line, np.full(12, 50.0), 10 * months - 20]).astype(np.float32)
    out = _named(group, group.transform(_with_series(x, "spend", series, present), None))
    np.testing.assert_allclose(out["spend_trend_slope"], [10 / 155, 0, 10 / 65], rtol=1e-5)
    np.testing.assert_allclose(out["spend_velocity_1m"], [10 / 155, 0, 10 / 65], rtol=1e-5)
    np.testing.assert_allclose(out["spend_velocity_3m"], [30 / 155, 0, 30 / 65], rtol=1e-5)
    np.testing.assert_allclose(out["spend_acceleration"], [0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(out["spend_ema_050"][1], 1.0, rtol=1e-6)
    assert out["spend_time_constant"][1] == 0, "no variation: autocorrelation undefined"
    assert out["spend_regret"][1] == 0 and out["spend_regret"][0] == pytest.approx((210 - 155) / 210)


def test_series_dynamics_by_hand():
    x = np.array([[1.0, 2, 1, 2, 1, 2], [0, 0, 0, 0, 0, 0], [3, 3, 3, 6, 6, 6]])
    present = np.ones_like(x, bool)
    values = series_dynamics(x, present)
    # alternating series: lag-1 autocorrelation -5/6 -> time constant 1 / (1 - 5/6) = 6
    np.testing.assert_allclose(values[0, 5], 6.0)
    assert (values[1] == 0).all(), "an all-zero series has no level: every relative feature is 0"
    # EMA alpha 0.5 of 3,3,3,6,6,6 = 5.625; level 4.5
    np.testing.assert_allclose(values[2, 4], 5.625 / 4.5)
    assert values[2, 0] == 0 and values[2, 1] == pytest.approx(3 / 4.5)


def _with_txns(x, days, mcc, merchant):
    """Customer 0 of ``x`` with the given transactions (everything else kept)."""
    one = x.subset(np.array([0]))
    n = len(days)
    return dataclasses.replace(
        one, txn_offsets=np.array([0, n]), txn_days_before=np.asarray(days, np.float32),
        txn_amount=np.ones(n, np.float32), txn_mcc=np.asarray(mcc, np.int16), txn_l2=np.zeros(n, np.int16),
        txn_l1=np.zeros(n, np.int8), txn_hour=np.zeros(n, np.int8), txn_merchant=np.asarray(merchant, np.int64),
        txn_online=np.zeros(n, bool))


def test_exploration_and_exploitation_by_hand(fitted, phase0_env):
    group, _ = fitted
    # days 90-180: MCC 5411 at merchant 1, MCC 5812 at merchant 2; last 90 days: 5411 @1, 5411 @3, 4111 @4, 4111 @4
    x = _with_txns(phase0_env.month, [170, 120, 60, 30, 10, 5], [5411, 5812, 5411, 5411, 4111, 4111],
                   [1, 2, 1, 3, 4, 4])
    out = _named(group, group.transform(x, None))
    assert out["mcc_exploration_rate"][0] == pytest.approx(2 / 4)
    assert out["merchant_exploration_rate"][0] == pytest.approx(3 / 4)
    assert out["top_mcc_share"][0] == pytest.approx(3 / 6)
    nothing = _named(group, group.transform(_with_txns(phase0_env.month, [], [], []), None))
    assert nothing["mcc_exploration_rate"][0] == 0 and nothing["top_mcc_share"][0] == 0
