"""The feature-group contract, checked once for every registered group.

Shape, dtype, finite values, one unique name per column, no constant column, a deterministic fit,
and a state that round-trips through save/load. Groups whose relational work is not SQL must
transform from ``MonthInputs`` alone, so they get ``con=None``. Algorithm-specific behaviour is
tested beside each implementation.
"""

import numpy as np
import pytest

from finai_models.phase0.groups import REGISTRY, group_class

SQL_GROUPS = {name for name, target in REGISTRY.items() if target.startswith("sql:")}
# Groups whose every column must vary on the fixture month; the sparse state/SQL groups may hold a
# column that no customer hits in one month (e.g. a product nobody acquired), but never all of them.
TABULAR = {name for name, target in REGISTRY.items() if target.startswith(("tabular:", "sql:"))}


def _fit(env, name, con):
    spec = next(g for g in env.settings.feature_groups if g.name == name)
    group = group_class(name)(env.settings, spec.dim)
    group.fit(env.train, con)
    return group


@pytest.fixture(scope="module")
def fitted(phase0_env):
    out = {}
    with phase0_env.connect() as con:
        for name in REGISTRY:
            group = _fit(phase0_env, name, con)
            out[name] = (group, group.transform(phase0_env.month, con if name in SQL_GROUPS else None))
    return out


def test_registry_covers_the_config(phase0_env):
    assert {g.name for g in phase0_env.settings.feature_groups} == set(REGISTRY)


@pytest.mark.parametrize("name", list(REGISTRY))
def test_contract(fitted, phase0_env, name):
    group, values = fitted[name]
    assert values.shape == (phase0_env.month.n, group.dim) and values.dtype == np.float32
    assert np.isfinite(values).all()
    varying = values.std(axis=0) > (0 if name in TABULAR else 1e-4)
    assert varying.any() if name in TABULAR else varying.all(), "a constant column"
    names = group.column_names()
    assert len(names) == group.dim == len(set(names))


@pytest.mark.parametrize("name", list(REGISTRY))
def test_deterministic_fit_and_state_round_trip(fitted, phase0_env, name, tmp_path):
    group, values = fitted[name]
    with phase0_env.connect() as con:
        again = _fit(phase0_env, name, con)
        use = con if name in SQL_GROUPS else None
        first, second = group.state_dict(), again.state_dict()
        assert first.keys() == second.keys()
        assert all(np.array_equal(first[k], second[k]) for k in first)
        np.testing.assert_array_equal(again.transform(phase0_env.month, use), values)
        group.save(tmp_path)
        loaded = group_class(name)(phase0_env.settings, group.dim)
        loaded.load(tmp_path)
        np.testing.assert_array_equal(loaded.transform(phase0_env.later, use), group.transform(phase0_env.later, use))
