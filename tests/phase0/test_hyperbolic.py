"""product_hierarchy / merchant_hierarchy: Poincaré-ball features of the product and MCC trees."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from finai_models.phase0.groups.hyperbolic import (
    MerchantHierarchy,
    ProductHierarchy,
    _sorted_within_owner,
    ancestor_pairs,
    mcc_disk,
    poincare_distance,
    product_tree,
)

GROUPS = ((ProductHierarchy, 34), (MerchantHierarchy, 27))


@pytest.fixture(scope="module")
def fitted(phase0_env):
    out = {}
    for cls, dim in GROUPS:
        group = cls(phase0_env.settings, dim)
        group.fit(phase0_env.train, None)
        out[cls.name] = (group, group.transform(phase0_env.month, None))
    return out


def _with_txns(x, days, amount, l1, l2, merchant):
    """Customer 0 of ``x`` with the given transactions (everything else kept)."""
    one = x.subset(np.array([0]))
    n = len(days)
    return dataclasses.replace(
        one, txn_offsets=np.array([0, n]), txn_days_before=np.asarray(days, np.float32),
        txn_amount=np.asarray(amount, np.float32), txn_l1=np.asarray(l1, np.int8), txn_l2=np.asarray(l2, np.int16),
        txn_merchant=np.asarray(merchant, np.int64), txn_mcc=np.zeros(n, np.int16), txn_hour=np.zeros(n, np.int8),
        txn_online=np.zeros(n, bool))


# --- product tree -------------------------------------------------------------------------------
def test_product_tree_embedding_reconstructs_the_tree(fitted, phase0_env):
    group, _ = fitted["product_hierarchy"]
    emb, parent = group.embedding, group.parent
    n_groups = len(phase0_env.settings.nba_groups)
    assert np.linalg.norm(emb, axis=1).max() < 1
    dist = poincare_distance(emb[:, None], emb[None])
    products = np.arange(1 + n_groups, len(emb))
    group_nodes = np.arange(1, 1 + n_groups)
    nearest = group_nodes[dist[np.ix_(products, group_nodes)].argmin(axis=1)]
    np.testing.assert_array_equal(nearest, parent[products])
    norm = np.linalg.norm(emb, axis=1)
    assert norm[0] < norm[group_nodes].min(), "the root is the most general node"
    assert np.all(norm[products] > norm[parent[products]]), "products lie deeper than their group"
    # mean average precision of the transitive closure from hyperbolic distances
    pairs = ancestor_pairs(parent)
    related = np.zeros(dist.shape, bool)
    related[pairs[:, 0], pairs[:, 1]] = related[pairs[:, 1], pairs[:, 0]] = True
    precisions = []
    for u in range(len(emb)):
        others = np.delete(np.arange(len(emb)), u)
        hits = related[u, others[np.argsort(dist[u, others])]]
        precisions.append((np.cumsum(hits) / np.arange(1, len(hits) + 1))[hits].mean())
    assert np.mean(precisions) == 1.0


def test_holding_one_group_sits_near_that_group(fitted, phase0_env):
    group, _ = fitted["product_hierarchy"]
    settings = phase0_env.settings
    names = list(settings.nba_groups)
    held = np.array([[p in settings.nba_groups[g] for p in settings.products] for g in names])
    features = group.embed_holdings(held).astype(np.float64)
    points = features[:, :-2]
    nodes = group.embedding[1:1 + len(names)]
    dist = poincare_distance(points[:, None], nodes[None])  # [customer of group a, node b]
    assert np.all(np.diag(dist)[:, None] < dist + np.eye(len(names)) * 1e9)
    assert np.all(np.diag(dist)[None, :] < dist + np.eye(len(names)) * 1e9)
    assert np.all(features[:, -2] < 1)
    np.testing.assert_allclose(features[:, -1], 2 * np.arctanh(features[:, -2]), rtol=1e-4)
    none = group.embed_holdings(np.zeros((1, len(settings.products)), bool))
    assert not none.any(), "no products: the origin"
    spread = group.embed_holdings(np.ones((1, len(settings.products)), bool))[0]
    assert spread[-1] < features[:, -1].min(), "holding every group is shallower than holding one"


def test_product_tree_follows_the_config(fitted, phase0_env, tmp_path):
    settings = phase0_env.settings
    merged = {"everything": tuple(settings.products)}
    other = dataclasses.replace(settings, nba_groups=merged)
    names, parent = product_tree(other)
    assert names[:2] == ["root", "group:everything"] and np.all(parent[2:] == 1)
    fitted["product_hierarchy"][0].save(tmp_path)
    with pytest.raises(ValueError, match="product tree"):
        ProductHierarchy(other, 34).load(tmp_path)


# --- merchant tree ------------------------------------------------------------------------------
def test_mcc_disk_siblings_are_distinct_and_near_their_parent(phase0_env):
    mcc = phase0_env.settings.mcc
    l1, l2 = mcc_disk(mcc)
    assert len(np.unique(l2.round(9), axis=0)) == len(l2)
    np.testing.assert_allclose(np.linalg.norm(l1, axis=1), 0.7)
    nearest = poincare_distance(l2[:, None], l1[None]).argmin(axis=1)
    np.testing.assert_array_equal(nearest, mcc.l2_to_l1)


def test_one_l1_customer_sits_on_its_ray(fitted, phase0_env):
    group, _ = fitted["merchant_hierarchy"]
    mcc = phase0_env.settings.mcc
    n1 = len(mcc.l1_names)
    for cat in (0, 3, 7):
        children = np.flatnonzero(np.asarray(mcc.l2_to_l1) == cat)
        l2 = np.resize(children, 5)
        f = group.transform(_with_txns(phase0_env.month, [5, 20, 40, 90, 150], [10, 50, 5, 200, 30],
                                       [cat] * 5, l2, [1, 2, 3, 4, 5]), None)[0].astype(np.float64)
        angle = 2 * np.pi * cat / n1
        np.testing.assert_allclose(f[:4], [0.7 * np.cos(angle), 0.7 * np.sin(angle), 0.7, np.arctan2(
            np.sin(angle), np.cos(angle)) / np.pi], atol=1e-6)
        assert f[22] > (np.cos(np.pi / n1) + 1) / 2, "L2 midpoint inside the parent's sector"
        spread = np.zeros(4)
        spread[cat * 4 // n1] = 0.7
        np.testing.assert_allclose(f[23:], spread, atol=1e-6)


def test_two_l1_midpoint_and_merchant_stats_by_hand(fitted, phase0_env):
    group, _ = fitted["merchant_hierarchy"]
    mcc = phase0_env.settings.mcc
    l2_of = [int(np.flatnonzero(np.asarray(mcc.l2_to_l1) == c)[0]) for c in (0, 1)]
    x = _with_txns(phase0_env.month, [100, 50, 20, 10], [1, 2, 3, 4], [0, 0, 1, 1], [l2_of[0]] * 2 + [l2_of[1]] * 2,
                   [5, 7, 5, 5])
    f = group.transform(x, None)[0].astype(np.float64)
    w = np.array([1, 2, 3, 4]) * np.exp(-np.array([100, 50, 20, 10]) / 90)
    angle = 2 * np.pi / len(mcc.l1_names)
    assert f[0] != 0 and f[1] / f[0] == pytest.approx(np.tan(np.arctan2(w[2:].sum() * np.sin(angle),
                                                                        w[:2].sum() + w[2:].sum() * np.cos(angle))))
    expected = [np.log1p(2) / np.log1p(500), 0.5, 1 - 10 / 180, 0.25]  # Gini of (1, 2, 3, 4) = 0.25
    np.testing.assert_allclose(f[16:20], expected, rtol=1e-5)
    np.testing.assert_allclose(f[20], 2 * np.arctanh(f[2]), rtol=1e-5)


def test_brand_svd_components(fitted, phase0_env):
    group, values = fitted["merchant_hierarchy"]
    comp = group.components
    np.testing.assert_allclose(comp @ comp.T, np.eye(MerchantHierarchy.SVD_DIM), atol=1e-10)
    hist = group.l2_histogram(phase0_env.month)
    np.testing.assert_allclose(values[:, 8:16], hist @ comp.T, atol=1e-6)
    no_txn = np.diff(phase0_env.month.txn_offsets) == 0
    assert no_txn.any() and not values[no_txn].any()


def test_sorting_within_owner_handles_wide_ids():
    """Values sorted within each owner; ids too wide to pack beside the owner become dense ranks."""
    owner = np.array([0, 0, 0, 1, 1])
    np.testing.assert_array_equal(_sorted_within_owner(owner, np.array([5, 1, 3, 2, 0])), [1, 3, 5, 0, 2])
    wide = np.array([2**62, 7, 2**61, 2**62 - 1, 3])  # dense ranks 4, 1, 2, 3, 0
    np.testing.assert_array_equal(_sorted_within_owner(owner, wide), [1, 2, 4, 0, 3])
