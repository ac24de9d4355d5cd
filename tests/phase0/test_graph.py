"""graph_collaborative: an inductive LightGCN embedding of the customer-item graph."""

from __future__ import annotations

import numpy as np
import pytest

from finai_models.phase0.groups.graph import GraphCollaborative, customer_items

N_L2 = 30


@pytest.fixture(scope="module")
def fitted(phase0_env):
    group = GraphCollaborative(phase0_env.settings, 66)
    group.fit(phase0_env.train, None)
    return group, group.transform(phase0_env.month, None)


def test_items_are_products_at_t_and_recent_categories(phase0_env):
    x = phase0_env.month
    items = customer_items(x, N_L2)
    np.testing.assert_array_equal(items[:, :24], x.holdings[:, -1])
    i = int(np.argmax(items[:, 24:].sum(axis=1)))
    own = slice(x.txn_offsets[i], x.txn_offsets[i + 1])
    recent = x.txn_l2[own][x.txn_days_before[own] <= 90]
    np.testing.assert_array_equal(items[i, 24:], np.bincount(recent, minlength=N_L2) >= 2)


def test_customers_unseen_in_training_are_embedded(fitted, phase0_env):
    _, values = fitted
    seen = np.concatenate([x.customer_id for x in phase0_env.train])
    unseen = ~np.isin(phase0_env.month.customer_id, seen)
    has_items = customer_items(phase0_env.month, N_L2).any(axis=1)
    assert (unseen & has_items).sum() >= 10
    assert (np.abs(values[unseen & has_items, :64]).sum(axis=1) > 0).all()


def test_identical_items_give_identical_rows_and_no_items_give_zeros(fitted, phase0_env):
    _, values = fitted
    items = customer_items(phase0_env.month, N_L2)
    _, first, group_of = np.unique(items, axis=0, return_index=True, return_inverse=True)
    representative = first[group_of.ravel()]
    twins = np.flatnonzero(representative != np.arange(len(items)))
    assert items[twins].any(axis=1).sum() > 10
    np.testing.assert_array_equal(values[twins], values[representative[twins]])
    none = ~items.any(axis=1)
    assert none.any()
    assert (values[none] == 0).all(), "no items: zero embedding, norm 0 and log1p(0) = 0"


def test_bpr_loss_decreases(fitted):
    group, _ = fitted
    assert group.fit_losses[-1] < group.fit_losses[0] - 0.02


def test_items_that_co_occur_are_closer_than_random_pairs(fitted, phase0_env):
    group, _ = fitted
    held = np.concatenate([customer_items(x, N_L2) for x in phase0_env.train]).astype(float)
    together = held.T @ held
    rate = held.mean(axis=0)
    lift = together / len(held) / np.maximum(np.outer(rate, rate), 1e-12)
    i, j = np.triu_indices(held.shape[1], 1)
    supported = together[i, j] >= 20
    v = group.item_vectors / np.linalg.norm(group.item_vectors, axis=1, keepdims=True)
    cosine = (v[i] * v[j]).sum(axis=1)[supported]
    top = np.argsort(-lift[i, j][supported])[:20]
    assert cosine[top].mean() > cosine.mean() + 0.1
