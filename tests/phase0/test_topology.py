"""tda_global / tda_local: per-customer persistent homology, checked against gudhi's public API."""

from __future__ import annotations

import gudhi
import numpy as np
import pytest

from finai_models.phase0.groups.topology import TOP_PAIRS, TdaGlobal, TdaLocal, bar_stats, rips_bars

GROUPS = (TdaGlobal, TdaLocal)


@pytest.fixture(scope="module")
def fitted(phase0_env):
    out = {}
    for cls in GROUPS:
        group = cls(phase0_env.settings, 16)
        group.fit(phase0_env.train, None)
        out[cls.name] = (group, group.transform(phase0_env.month, None))
    return out


def _gudhi_bars(points: np.ndarray, dim: int) -> np.ndarray:
    """Finite bars of positive persistence, sorted, from gudhi's RipsComplex + SimplexTree."""
    tree = gudhi.RipsComplex(points=points).create_simplex_tree(max_dimension=2)
    tree.compute_persistence(homology_coeff_field=2)
    bars = tree.persistence_intervals_in_dimension(dim).reshape(-1, 2)
    bars = bars[np.isfinite(bars[:, 1]) & (bars[:, 1] - bars[:, 0] > 1e-12)]
    return bars[np.lexsort((bars[:, 1], bars[:, 0]))]


def _ours(bars, owner: int) -> np.ndarray:
    rows = (bars.owner == owner) & (bars.life > 1e-12)
    pairs = np.column_stack([bars.birth[rows], bars.death[rows]])
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def _one_cloud(points: np.ndarray):
    return lambda lo, hi: (points[None], np.array([len(points)]))


@pytest.mark.parametrize("cls", GROUPS)
def test_values_are_per_customer(fitted, phase0_env, cls):
    _, values = fitted[cls.name]
    assert len(np.unique(values, axis=0)) > phase0_env.month.n // 2, "not per-customer"


@pytest.mark.parametrize("cls", GROUPS)
def test_fast_path_equals_gudhi(fitted, phase0_env, cls):
    """Our chunked Ripser path gives exactly gudhi's RipsComplex diagrams on real customers' clouds."""
    group, _ = fitted[cls.name]
    x = phase0_env.month
    clouds, sizes = group._clouds(x)(0, 200)
    h0, h1 = rips_bars(200, group._clouds(x), workers=2)
    checked = 0
    for i in np.flatnonzero(sizes >= 2)[:60]:
        points = clouds[i, :sizes[i]]
        np.testing.assert_allclose(_ours(h0, i), _gudhi_bars(points, 0), atol=1e-9)
        np.testing.assert_allclose(_ours(h1, i), _gudhi_bars(points, 1), atol=1e-9)
        checked += len(_gudhi_bars(points, 1)) > 0
    assert checked >= 5, "the sample should contain clouds with H1"


def test_threads_do_not_change_the_output(fitted, phase0_env):
    group, _ = fitted["tda_local"]
    cloud_fn = group._clouds(phase0_env.month)
    one, two = rips_bars(phase0_env.month.n, cloud_fn, workers=1), rips_bars(phase0_env.month.n, cloud_fn, workers=2)
    for a, b in zip(one, two, strict=True):
        for field in ("owner", "birth", "death"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_fast_path_equals_gudhi_random_clouds():
    rng = np.random.default_rng(0)
    clouds = rng.normal(size=(30, 20, 3))
    h0, h1 = rips_bars(30, lambda lo, hi: (clouds[lo:hi], np.full(hi - lo, 20)), workers=2)
    for i in range(30):
        np.testing.assert_allclose(_ours(h0, i), _gudhi_bars(clouds[i], 0), atol=1e-9)
        np.testing.assert_allclose(_ours(h1, i), _gudhi_bars(clouds[i], 1), atol=1e-9)


def test_circle_has_one_long_loop():
    angle = np.arange(24) * 2 * np.pi / 24
    circle = np.column_stack([np.cos(angle), np.sin(angle)])
    h0, h1 = rips_bars(1, _one_cloud(circle))
    side = 2 * np.sin(np.pi / 24)
    assert len(h1.life) == 1
    assert h1.birth[0] == pytest.approx(side) and h1.death[0] == pytest.approx(np.sqrt(3))
    assert len(h0.life) == 23 and np.allclose(h0.death, side) and np.all(h0.birth == 0)  # essential bar dropped


def test_stats_by_hand():
    """Two clusters of two points: H0 bars at 1, 1 and 10 (the essential one dropped), no H1."""
    points = np.array([[0.0, 0], [1, 0], [10, 0], [11, 0]])
    h0, h1 = rips_bars(1, _one_cloud(points))
    s0, s1 = bar_stats(h0, 1, 0)[0], bar_stats(h1, 1, 1)[0]
    life = np.array([1.0, 1, 9])
    p = life / life.sum()
    expected = [3, life.mean(), 9, life.std(), -(p * np.log(p)).sum(), 11, 1, 1]
    np.testing.assert_allclose(s0, expected)
    np.testing.assert_array_equal(s1, np.zeros(8))


def test_short_histories_are_zero_not_constant(fitted, phase0_env):
    """Customers present < 4 months have at most one delay point: all 16 stats are zero. Longer
    histories have H0 bars unless every month looks the same (duplicate points merge at 0)."""
    _, values = fitted["tda_global"]
    short = phase0_env.month.present.sum(axis=1) < 4
    assert short.any() and not values[short].any()
    assert (values[~short, 0] > 0).mean() > 0.95


def test_local_uses_only_the_last_90_days(fitted, phase0_env):
    group, values = fitted["tda_local"]
    x = phase0_env.month
    owner = np.repeat(np.arange(x.n), np.diff(x.txn_offsets))
    recent = np.bincount(owner[x.txn_days_before <= 90], minlength=x.n)
    points = np.minimum(recent, TdaLocal.MAX_POINTS)
    assert np.all(values[:, 0] <= np.maximum(points - 1, 0))
    assert not values[points <= 1].any()


def test_diagrams(fitted, phase0_env):
    group, values = fitted["tda_local"]
    dgm = group.diagrams(phase0_env.month)
    assert dgm.shape == (phase0_env.month.n, 2, TOP_PAIRS, 2) and dgm.dtype == np.float32
    life = dgm[..., 1] - dgm[..., 0]
    assert np.all(np.diff(life, axis=-1) <= 1e-6), "pairs sorted by persistence"
    assert np.all(dgm[:, 0, :, 0] == 0), "H0 is born at 0"
    np.testing.assert_allclose(life[:, 0, 0], values[:, 2], atol=1e-6)  # h0 max lifetime
    np.testing.assert_allclose(life[:, 1, 0], values[:, 10], atol=1e-6)  # h1 max lifetime
    np.testing.assert_array_equal((life > 0).sum(axis=-1), np.minimum(values[:, [0, 8]], TOP_PAIRS))
