"""gmm_clustering: a full-covariance Gaussian mixture over the customer's standardized state at t."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from finai_models.phase0.groups.clustering import (
    INPUTS,
    GaussianMixture,
    GmmClustering,
    customer_state,
    fit_gmm,
    kmeans_plus_plus,
    run_em,
)


@pytest.fixture(scope="module")
def fitted(phase0_env):
    group = GmmClustering(phase0_env.settings, 22)
    with phase0_env.connect() as con:
        group.fit(phase0_env.train, con)
    return group, group.transform(phase0_env.month, None)     # con=None: transform reads only MonthInputs


def test_outputs_are_consistent(fitted):
    _, values = fitted
    post = values[:, 1:-1]
    np.testing.assert_allclose(post.sum(1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(values[:, 0], post.argmax(1))
    entropy = -(post * np.log(np.maximum(post, 1e-30))).sum(1)
    np.testing.assert_allclose(values[:, -1], entropy, atol=1e-4)
    assert (values[:, -1] >= 0).all() and (values[:, -1] <= np.log(20) + 1e-5).all()


def test_no_dead_cluster_at_k20(fitted, phase0_env):
    group, values = fitted
    ids = np.concatenate([group.transform(x, None)[:, 0] for x in phase0_env.train]).astype(int)
    counts = np.bincount(ids, minlength=20)
    assert (counts >= len(INPUTS) + 1).all(), f"cluster sizes on the fitted customers: {counts}"
    assert (np.bincount(values[:, 0].astype(int), minlength=20) > 0).all()
    assert group.model.weights.min() > 1e-3


def test_clusters_are_numbered_by_spend(fitted):
    group, _ = fitted
    assert (np.diff(group.model.means[:, INPUTS.index("log_spend_12m")]) >= 0).all()


def test_k_follows_dim(phase0_env):
    group = GmmClustering(phase0_env.settings, 8)
    group.fit(phase0_env.train, None)
    values = group.transform(phase0_env.month, None)
    assert values.shape[1] == 8 and len(group.column_names()) == 8 and group.model.k == 6


def test_unknown_age_and_income_take_the_training_mean(fitted, phase0_env):
    group, _ = fitted
    x = phase0_env.month.subset(np.arange(5))
    unknown = dataclasses.replace(x, age=np.full(5, np.nan, np.float32), series=x.series.copy())
    unknown.series[:, -1, x.series_index("income_known")] = 0
    raw = customer_state(unknown)
    assert np.isnan(raw[:, INPUTS.index("age")]).all() and np.isnan(raw[:, INPUTS.index("log_income")]).all()
    points = group._standardize(raw)
    assert (points[:, INPUTS.index("age")] == 0).all() and (points[:, INPUTS.index("log_income")] == 0).all()
    assert np.isfinite(group.transform(unknown, None)).all()


def test_recovers_well_separated_blobs():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0, 0], [8, 0, 0], [0, 8, 0], [0, 0, 8], [8, 8, 8]], float)
    truth = rng.integers(len(centres), size=3000)
    scales = rng.uniform(0.3, 1.0, (len(centres), 3))
    points = centres[truth] + rng.normal(size=(3000, 3)) * scales[truth]
    model, _ = fit_gmm(points, len(centres), np.random.default_rng(1))
    labels = model.posteriors(points)[0].argmax(1)
    for blob in range(len(centres)):
        assert np.bincount(labels[truth == blob]).max() == (truth == blob).sum(), "a blob was split"
    assert len(np.unique(labels)) == len(centres), "two blobs merged"
    for blob in range(len(centres)):
        fitted_mean = model.means[np.bincount(labels[truth == blob]).argmax()]
        np.testing.assert_allclose(fitted_mean, centres[blob], atol=0.1)


def test_an_empty_component_is_reseeded():
    """A component that wins no point is moved onto half of the heaviest one and ends up populated."""
    rng = np.random.default_rng(0)
    points = rng.normal(size=(2000, 2)) + np.repeat([[0.0, 0.0], [6.0, 0.0]], 1000, axis=0)
    stranded = GaussianMixture(np.array([0.5, 0.49, 0.01]), np.array([[0.0, 0.0], [6.0, 0.0], [100.0, 100.0]]),
                               np.stack([np.eye(2)] * 3))
    assert (stranded.posteriors(points)[0].argmax(1) != 2).all()
    model, _, dead = run_em(points, stranded, 100, 50)
    assert dead == 0
    assert (np.bincount(model.posteriors(points)[0].argmax(1), minlength=3) >= 50).all()


def test_kmeans_plus_plus_is_seeded():
    points = np.random.default_rng(0).normal(size=(500, 4))
    a = kmeans_plus_plus(points, 6, np.random.default_rng(3))
    b = kmeans_plus_plus(points, 6, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
