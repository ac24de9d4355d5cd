"""The numpy tree evaluator against LightGBM itself: the same raw scores, to 1e-9, on real trained students.

The models are small and seeded but real, and their inputs hold NaN, exact zeros, values below
LightGBM's kZeroThreshold and infinities, so every missing-value rule and default direction is used.
"""

from __future__ import annotations

import re

import lightgbm as lgb
import numpy as np
import pytest

from finai_serving.trees import K_ZERO_THRESHOLD, MISSING_TYPES, TreeEnsemble, pack_booster

N_TRAIN, N_FEATURES, TOLERANCE = 600, 8, 1e-9
BASE = {"verbose": -1, "num_leaves": 15, "min_data_in_leaf": 5, "learning_rate": 0.3, "num_threads": 1, "seed": 7}


def _features(n: int, seed: int) -> np.ndarray:
    """float32 rows: NaN in columns 0-3, exact zeros in columns 2-5, the rest plain normal."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
    x[:, :4][rng.random((n, 4)) < 0.15] = np.nan
    x[:, 2:6][rng.random((n, 4)) < 0.2] = 0.0
    return x


def _signal(x: np.ndarray) -> np.ndarray:
    """A target that depends on values, on NaN and on zeros, so the trees split on all three."""
    v = np.nan_to_num(x.astype(np.float64), nan=0.0)
    return v[:, 0] + np.isnan(x[:, 1]) * 1.5 - (x[:, 2] == 0) * 1.2 + v[:, 3] * v[:, 4] + (x[:, 5] == 0) * 0.8


def _score_inputs(n: int, seed: int) -> np.ndarray:
    """Fresh rows for scoring, plus the edge values LightGBM reads specially: tiny (|x| <= 1e-35), -0.0, +-inf."""
    x = _features(n, seed)
    rng = np.random.default_rng(seed + 1)
    for value in (1e-36, -1e-36, K_ZERO_THRESHOLD, -0.0, np.inf, -np.inf):
        x[rng.random(x.shape) < 0.02] = value
    return x


def _train(params: dict, target: str = "binary", rounds: int = 40, early_stopping: bool = False) -> lgb.Booster:
    x = _features(N_TRAIN, seed=1)
    s = _signal(x) + np.random.default_rng(2).normal(scale=0.5, size=N_TRAIN)
    y = {"binary": (s > np.median(s)).astype(float),
         "multiclass": np.digitize(s, np.quantile(s, [0.2, 0.4, 0.6, 0.8])).astype(float),
         "regression": s, "constant": np.full(N_TRAIN, 2.5)}[target]
    objective = {"constant": "regression"}.get(target, target)
    params = {**BASE, "objective": objective, **({"num_class": 5} if target == "multiclass" else {}), **params}
    if not early_stopping:
        return lgb.train(params, lgb.Dataset(x, y), rounds)
    train = lgb.Dataset(x[:450], y[:450])
    valid = lgb.Dataset(x[450:], y[450:], reference=train)
    return lgb.train(params, train, rounds, valid_sets=[valid], callbacks=[lgb.early_stopping(5, verbose=False)],
                     keep_training_booster=True)     # else the booster is cut to its best iteration


MODELS = {
    "binary": lambda: _train({}),
    "binary_zero_as_missing": lambda: _train({"zero_as_missing": True}),
    "binary_no_missing": lambda: _train({"use_missing": False}),
    "multiclass": lambda: _train({}, "multiclass", rounds=25),
    "regression": lambda: _train({}, "regression"),
    "multiclass_early_stopped": lambda: _train({}, "multiclass", rounds=60, early_stopping=True),
    "constant": lambda: _train({}, "constant"),
}


@pytest.fixture(scope="module")
def boosters() -> dict[str, lgb.Booster]:
    return {name: make() for name, make in MODELS.items()}


def _iterations(booster: lgb.Booster) -> int | None:
    return booster.best_iteration or None


def _reference(booster: lgb.Booster, x: np.ndarray) -> np.ndarray:
    return np.asarray(booster.predict(x, raw_score=True, num_iteration=_iterations(booster)))


def _missing_types(arrays: dict[str, np.ndarray]) -> set[str]:
    return {MISSING_TYPES[int(t)] for t in np.unique(arrays["missing_type"])}


def test_every_missing_type_and_default_direction_occurs(boosters):
    """The comparisons below are only worth something if the models use every rule."""
    packed = {name: pack_booster(b.dump_model()) for name, b in boosters.items()}
    assert "Zero" in _missing_types(packed["binary_zero_as_missing"])
    assert {"None", "NaN"} <= _missing_types(packed["binary"])
    assert _missing_types(packed["binary_no_missing"]) == {"None"}
    nan_nodes = packed["binary"]["missing_type"] == MISSING_TYPES.index("NaN")
    assert set(packed["binary"]["default_left"][nan_nodes].tolist()) == {True, False}
    assert (packed["constant"]["left_child"].size == 0 and packed["constant"]["leaf_value"].size >= 1
            and int(packed["constant"]["max_depth"]) == 0)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_raw_equals_booster_for_a_batch(boosters, name, dtype):
    booster = boosters[name]
    ensemble = TreeEnsemble.from_arrays(pack_booster(booster.dump_model(), _iterations(booster)))
    x = _score_inputs(1000, seed=11).astype(dtype)
    expected, got = _reference(booster, x), ensemble.raw(x)
    assert got.shape == expected.shape == ((1000, 5) if "multiclass" in name else (1000,))
    assert np.abs(got - expected).max() <= TOLERANCE


@pytest.mark.parametrize("name", list(MODELS))
def test_raw_equals_booster_one_row_at_a_time(boosters, name):
    booster = boosters[name]
    ensemble = TreeEnsemble.from_arrays(pack_booster(booster.dump_model(), _iterations(booster)))
    x = _score_inputs(40, seed=12)
    for row in x:
        expected, got = _reference(booster, row[None, :]), ensemble.raw(row[None, :])
        assert got.shape == expected.shape == ((1, 5) if "multiclass" in name else (1,))
        assert np.abs(got - expected).max() <= TOLERANCE


def test_early_stopped_iterations_are_cut_from_the_full_dump(boosters):
    """pack_booster(num_iteration=best) on every tree scores like predict(num_iteration=best), not like all trees."""
    booster = boosters["multiclass_early_stopped"]
    best, total = booster.best_iteration, booster.num_trees() // 5
    assert 0 < best < total
    full = booster.dump_model(num_iteration=-1)
    assert len(full["tree_info"]) == total * 5
    x = _score_inputs(1000, seed=13)
    cut = TreeEnsemble.from_arrays(pack_booster(full, num_iteration=best)).raw(x)
    assert np.abs(cut - booster.predict(x, raw_score=True, num_iteration=best)).max() <= TOLERANCE
    every = TreeEnsemble.from_arrays(pack_booster(full)).raw(x)
    assert np.abs(every - booster.predict(x, raw_score=True, num_iteration=total)).max() <= TOLERANCE
    assert np.abs(every - cut).max() > 1e-3


def test_single_leaf_trees_score_their_constant(boosters):
    booster = boosters["constant"]
    assert all(t["num_leaves"] == 1 for t in booster.dump_model()["tree_info"])
    x = _score_inputs(1000, seed=14)
    got = TreeEnsemble.from_arrays(pack_booster(booster.dump_model())).raw(x)
    np.testing.assert_allclose(got, 2.5, atol=TOLERANCE)
    assert np.abs(got - _reference(booster, x)).max() <= TOLERANCE


@pytest.mark.parametrize("name", ["binary", "multiclass_early_stopped", "constant"])
def test_savez_round_trip_scores_the_same(boosters, name, tmp_path):
    booster = boosters[name]
    arrays = pack_booster(booster.dump_model(), _iterations(booster))
    assert all(isinstance(v, np.ndarray) for v in arrays.values())
    np.savez(tmp_path / "trees.npz", **arrays)
    loaded = TreeEnsemble.load(tmp_path / "trees.npz")
    x = _score_inputs(1000, seed=15)
    assert np.abs(loaded.raw(x) - _reference(booster, x)).max() <= TOLERANCE
    assert np.abs(loaded.raw(x[:1]) - _reference(booster, x[:1])).max() <= TOLERANCE


EDGE_VALUES = [np.nan, 0.0, -0.0, 1e-36, -1e-36, K_ZERO_THRESHOLD, -K_ZERO_THRESHOLD, 2e-35, -2e-35, 4e-37, -4e-37,
               0.5, -0.5, 1.0, np.inf, -np.inf]


def _one_split_booster(decision_type: int, threshold: str) -> lgb.Booster:
    """A real one-split LightGBM model whose split is then edited in its model text.

    Training alone never puts a threshold at exactly 0.0 or inside (-kZeroThreshold, kZeroThreshold); editing
    does, and LightGBM's own predict is still the reference. decision_type: bit 1 default left, bits 2-3 the
    missing type (0 None, 1 Zero, 2 NaN).
    """
    rng = np.random.default_rng(4)
    x = rng.normal(size=(200, 1))
    booster = lgb.train({**BASE, "objective": "regression", "num_leaves": 2}, lgb.Dataset(x, x[:, 0] > 0.3), 1)
    text = re.sub(r"tree_sizes=.*\n", "", booster.model_to_string())      # the sizes no longer hold after the edit
    text = re.sub(r"threshold=.*\n", f"threshold={threshold}\n", text)
    return lgb.Booster(model_str=re.sub(r"decision_type=.*\n", f"decision_type={decision_type}\n", text))


@pytest.mark.parametrize("decision_type", [0, 2, 4, 6, 8, 10])
@pytest.mark.parametrize("threshold", ["0", "5e-37", "-5e-37", "1.0000000180025095e-35", "-1.0000000180025095e-35",
                                       "0.75", "inf", "-inf"])
def test_edge_values_against_every_missing_type_and_threshold(decision_type, threshold):
    """NaN, zeros, values LightGBM reads as zero (|x| <= 1e-35f) and infinities, at the thresholds where they matter."""
    booster = _one_split_booster(decision_type, threshold)
    dump = booster.dump_model()
    split = dump["tree_info"][0]["tree_structure"]
    assert (split["missing_type"], split["default_left"]) == (MISSING_TYPES[decision_type >> 2],
                                                              bool(decision_type & 2))
    leaves = {split["left_child"]["leaf_value"], split["right_child"]["leaf_value"]}
    x = np.array(EDGE_VALUES)[:, None]
    expected = booster.predict(x, raw_score=True)
    assert set(expected.tolist()) <= leaves
    got = TreeEnsemble.from_arrays(pack_booster(dump)).raw(x)
    np.testing.assert_array_equal(got, expected)


def test_wrong_number_of_columns_is_refused(boosters):
    ensemble = TreeEnsemble.from_arrays(pack_booster(boosters["binary"].dump_model()))
    with pytest.raises(ValueError, match=rf"\[rows, {N_FEATURES}\]"):
        ensemble.raw(np.zeros((1, N_FEATURES - 1)))


def test_categorical_splits_are_refused():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(400, 3))
    x[:, 0] = rng.integers(0, 6, 400)
    y = np.isin(x[:, 0], [1, 4]).astype(float)
    booster = lgb.train({**BASE, "objective": "binary", "min_data_per_group": 5, "cat_smooth": 1.0},
                        lgb.Dataset(x, y, categorical_feature=[0]), 5)
    dump = booster.dump_model()
    assert any(t["tree_structure"].get("decision_type") == "==" for t in dump["tree_info"])
    with pytest.raises(ValueError, match="categorical splits are not supported"):
        pack_booster(dump)
