"""The state and SQL groups: contract, and each computed value checked against a plain reference."""

import numpy as np
import pytest

from finai_models.phase0.groups import group_class
from finai_models.phase0.groups.tabular import _distinct_per_customer, _median_per_customer

NAMES = ["demographics", "product_holdings", "txn_behavior", "derived_temporal", "txn_lag_tensor",
         "txn_rolling_stats", "mcc_top30_multihot", "recent_acquisition_multihot"]


def _group(env, name, con):
    spec = next(g for g in env.settings.feature_groups if g.name == name)
    group = group_class(name)(env.settings, spec.dim)
    group.fit(env.train, con)
    return group


def test_per_customer_median_and_distinct_match_numpy():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 9, size=300)
    offsets = np.concatenate([[0], np.cumsum(counts)])
    amounts = np.round(rng.lognormal(3, 1, offsets[-1]), 2)
    codes = rng.integers(0, 12, offsets[-1])
    median, distinct = _median_per_customer(amounts, offsets), _distinct_per_customer(codes, offsets)
    for i in range(300):
        part = slice(offsets[i], offsets[i + 1])
        assert median[i] == pytest.approx(np.median(amounts[part]) if counts[i] else 0.0, abs=0.006)
        assert distinct[i] == len(np.unique(codes[part]))


def test_lag_tensor_is_the_newest_transactions_and_chunking_changes_nothing(phase0_env, monkeypatch):
    x = phase0_env.month
    with phase0_env.connect() as con:
        group = _group(phase0_env, "txn_lag_tensor", con)
        whole = group.transform(x, con).reshape(x.n, group.k, 4)
        monkeypatch.setattr(type(group), "CHUNK_CUSTOMERS", 97)
        assert np.array_equal(group.transform(x, con).reshape(x.n, group.k, 4), whole)
    for i in (0, 7, x.n // 2):
        part = slice(x.txn_offsets[i], x.txn_offsets[i + 1])
        newest_first = x.txn_amount[part][::-1][: group.k]
        assert np.allclose(whole[i, : len(newest_first), 0], newest_first)
        assert np.all(np.diff(whole[i, : len(newest_first), 2]) >= 0), "days ago grow with the lag"


def test_rolling_counts_and_recent_acquisitions_match_month_inputs(phase0_env):
    x = phase0_env.month
    with phase0_env.connect() as con:
        rolling = _group(phase0_env, "txn_rolling_stats", con)
        roll = rolling.transform(x, con)
        acquired = _group(phase0_env, "recent_acquisition_multihot", con).transform(x, con)
    names = rolling.column_names()
    count_30 = roll[:, names.index("roll_30d_count")]
    expected = np.add.reduceat((x.txn_days_before <= 30).astype(float), x.txn_offsets[:-1]) \
        if x.txn_offsets[-1] else np.zeros(x.n)
    has = np.diff(x.txn_offsets) > 0
    assert np.array_equal(count_30[has], expected[has])
    held = x.holdings
    both = x.present[:, -4:-1] & x.present[:, -3:]
    recent = ((held[:, -3:] & ~held[:, -4:-1]) & both[..., None]).any(axis=1)
    assert np.array_equal(acquired.astype(bool), recent)


def test_unseen_categories_get_code_zero(phase0_env):
    x = phase0_env.month
    with phase0_env.connect() as con:
        demo = _group(phase0_env, "demographics", con)
    demo.vocab["region"] = demo.vocab["region"][:1]
    codes = demo.transform(x, con=None)[:, demo.column_names().index("region_code")]
    assert set(np.unique(codes)) <= {0.0, 1.0} and (codes == 0).any()
