"""``PLETeacher``, the public estimator: fit/predict/gate_weights on synthetic data, missing values,
early stopping, ``random_state``, the input encoder, and its error messages."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from finai_models import metrics as M
from finai_models.errors import ConfigError, DataError
from finai_models.teacher.api import PLETeacher
from finai_models.teacher.data import InputEncoder
from finai_models.teacher.evaluate import evaluate
from finai_models.teacher.spec import EXPERTS

TASKS = {"a": "binary", "m": "multiclass:4", "r": "regression"}
N_FEATURES = 20
WILD = N_FEATURES - 1        # a code-like column (~5000): the input encoder must put it on a unit scale


def make_xy(n: int, seed: int, missing: float = 0.0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, N_FEATURES))
    z = 1.5 * x[:, 0] - 1.2 * x[:, 1] + x[:, 2] * x[:, 3] + 0.3 * rng.standard_normal(n)
    a = (z > 0).astype(np.float64)
    s = x[:, 4] - x[:, 5]
    m = np.digitize(s, np.quantile(s, [0.25, 0.5, 0.75])).astype(np.float64)
    r = x[:, 6] + 0.5 * x[:, 7] + 0.1 * rng.standard_normal(n)
    x[:, WILD] = 5000 + 100 * x[:, WILD]
    y = {"a": a, "m": m, "r": r}
    if missing:
        for k in ("a", "r"):
            y[k][rng.random(n) < missing] = np.nan
    return x, y


def _teacher(**kw) -> PLETeacher:
    teacher = PLETeacher(tasks=TASKS, **{"epochs": 1, "batch_size": 128, "width": 16, "random_state": 0, **kw})
    # one intra-op thread: two threads on a busy 2-core machine are several times slower, not faster
    teacher.train_config = dataclasses.replace(teacher.train_config, threads=1)
    return teacher


@pytest.fixture(scope="module")
def fitted():
    x, y = make_xy(1000, seed=0)
    teacher = _teacher(epochs=2, lr=3e-3).fit(x, y)
    x_test, y_test = make_xy(400, seed=1)
    return teacher, x_test, y_test


# ---------------------------------------------------------------- fit / predict / gates


def test_fit_predict(fitted):
    teacher, x_test, y_test = fitted
    x_before = x_test.copy()
    scores = teacher.predict(x_test)
    np.testing.assert_array_equal(x_test, x_before)      # predict scales a copy, not the caller's X
    assert set(scores) == set(TASKS)
    assert scores["a"].shape == (400,) and ((scores["a"] >= 0) & (scores["a"] <= 1)).all()
    assert M.auc(y_test["a"], scores["a"]) > 0.7
    assert scores["m"].shape == (400, 4) and (scores["m"] >= 0).all()
    np.testing.assert_allclose(scores["m"].sum(axis=1), 1.0, atol=1e-5)
    assert scores["r"].shape == (400,) and np.isfinite(scores["r"]).all()
    assert len(teacher.history_) == 2


def test_input_encoder_puts_wild_columns_on_one_scale(fitted):
    teacher, x_test, _ = fitted
    encoded = teacher.encoder_.transform_(x_test.astype(np.float32))
    assert abs(encoded[:, WILD].mean()) < 0.3 and 0.7 < encoded[:, WILD].std() < 1.3   # not ~5000 +- 100
    assert np.abs(encoded).max() < 4


def test_input_encoder_heavy_tails_codes_and_missing_values():
    rng = np.random.default_rng(12)
    x = np.stack([rng.standard_cauchy(2000), rng.integers(0, 6, 2000)], axis=1).astype(np.float32)
    x[::10, 0] = np.nan
    encoder = InputEncoder.fit(x, code_columns=np.array([1]))
    out = encoder.transform_(x.copy())
    heavy = out[~np.isnan(x[:, 0]), 0]
    assert np.abs(x[:, 0][~np.isnan(x[:, 0])]).max() > 100 and np.abs(heavy).max() < 3.5   # Cauchy tails tamed
    assert 0.8 < heavy.std() < 1.2 and abs(np.median(heavy)) < 0.1
    np.testing.assert_array_equal(out[::10, 0], 0.0)                       # NaN -> the median's score
    np.testing.assert_array_equal(out[:, 1], x[:, 1])                      # codes pass through as indices
    unseen = encoder.transform_(np.array([[0.0, 2.4], [0.0, 9.0], [0.0, -1.0], [np.nan, np.nan]], np.float32))
    assert unseen[:, 1].tolist() == [2.0, 0.0, 0.0, 0.0]                   # rounded; larger / negative / NaN -> 0


def test_gate_weights(fitted):
    teacher, x_test, _ = fitted
    gates = teacher.gate_weights(x_test)
    assert teacher.expert_names_ == ("task", *EXPERTS)
    assert set(gates) == set(TASKS)
    for g in gates.values():
        assert g.shape == (400, 8)
        assert (g >= 0).all()
        np.testing.assert_allclose(g.sum(axis=1), 1.0, atol=1e-5)
    means = {k: g.mean(axis=0) for k, g in gates.items()}
    assert np.abs(means["a"] - means["m"]).mean() > 1e-4
    assert np.abs(means["a"] - means["r"]).mean() > 1e-4


def test_predict_is_deterministic_and_row_independent(fitted):
    teacher, x_test, _ = fitted
    full = teacher.predict(x_test)
    part = teacher.predict(x_test[:10])
    np.testing.assert_allclose(part["a"], full["a"][:10], atol=1e-5)
    np.testing.assert_allclose(part["m"], full["m"][:10], atol=1e-5)


def test_validation_set_and_missing_labels(tmp_path):
    x, y = make_xy(500, seed=2, missing=0.3)
    x_val, y_val = make_xy(150, seed=3, missing=0.3)
    teacher = _teacher(run_dir=tmp_path).fit(x, y, x_val, y_val)
    assert (tmp_path / "last.pt").is_file() and (tmp_path / "best.pt").is_file()
    assert len(teacher.history_) == 1 and np.isfinite(teacher.history_[0]["train_loss"])
    scores = teacher.predict(x_val)
    assert all(np.isfinite(v).all() for v in scores.values())


def test_mmoe_through_the_api():
    x, y = make_xy(400, seed=4)
    teacher = _teacher(architecture="mmoe").fit(x, y)
    assert teacher.expert_names_ == tuple(f"mlp_{i}" for i in range(8))
    gates = teacher.gate_weights(x[:50])
    assert set(gates) == set(TASKS)
    for g in gates.values():
        assert g.shape == (50, 8)
        np.testing.assert_allclose(g.sum(axis=1), 1.0, atol=1e-5)
    again = _teacher(architecture="mmoe").fit(x, y)      # same random_state, same data: same model
    np.testing.assert_array_equal(teacher.predict(x[:50])["a"], again.predict(x[:50])["a"])


def test_shared_bottom_has_no_gates():
    x, y = make_xy(300, seed=5)
    teacher = _teacher(architecture="shared_bottom").fit(x, y)
    assert teacher.predict(x[:20])["m"].shape == (20, 4)
    assert teacher.expert_names_ == ()
    with pytest.raises(DataError, match="no gates"):
        teacher.gate_weights(x[:20])


# ---------------------------------------------------------------- errors


def test_predict_before_fit():
    with pytest.raises(DataError, match="not fitted"):
        _teacher().predict(np.zeros((3, N_FEATURES)))
    with pytest.raises(DataError, match="not fitted"):
        _teacher().gate_weights(np.zeros((3, N_FEATURES)))


@pytest.mark.parametrize("bad", ["column", "short"])
def test_labels_of_wrong_shape(bad):
    x, y = make_xy(100, seed=6)
    y["m"] = y["m"][:, None] if bad == "column" else y["m"][:-1]
    with pytest.raises(DataError, match="'m'"):
        _teacher().fit(x, y)


def test_unknown_task_type():
    with pytest.raises(ConfigError, match="ordinal"):
        PLETeacher(tasks={"a": "binary", "o": "ordinal"})


def test_labels_for_an_undeclared_task():
    x, y = make_xy(100, seed=6)
    y["zzz"] = y["a"].copy()
    with pytest.raises(DataError, match="zzz"):
        _teacher().fit(x, y)


def test_labels_missing_for_a_declared_task():
    x, y = make_xy(100, seed=6)
    del y["r"]
    with pytest.raises(DataError, match="'r'"):
        _teacher().fit(x, y)


def test_invalid_label_values():
    x, y = make_xy(100, seed=6)
    bad_binary = {**y, "a": np.where(y["a"] == 1, 2.0, 0.0)}
    with pytest.raises(DataError, match="'a'"):
        _teacher().fit(x, bad_binary)
    bad_class = {**y, "m": y["m"] + 1}          # class 4 of a 4-class task
    with pytest.raises(DataError, match="'m'"):
        _teacher().fit(x, bad_class)


def test_infinite_x():
    x, y = make_xy(100, seed=6)
    x[5, 3] = np.inf
    with pytest.raises(DataError, match=r"infinite.*\[3\]"):
        _teacher().fit(x, y)
    x[5, 3] = 0.0
    x_val = x.copy()
    x_val[0, 7] = -np.inf
    with pytest.raises(DataError, match=r"X_val.*infinite.*\[7\]"):
        _teacher().fit(x, y, x_val, y)


def test_validation_set_with_other_columns():
    x, y = make_xy(100, seed=6)
    with pytest.raises(DataError, match="X_val"):
        _teacher().fit(x, y, x[:, :-1], y)


def test_predict_errors_after_fit(fitted):
    teacher, x_test, _ = fitted
    with pytest.raises(DataError, match="columns"):
        teacher.predict(x_test[:, :-1])
    with pytest.raises(DataError, match="columns"):
        teacher.gate_weights(np.hstack([x_test, x_test[:, :1]]))
    bad = x_test[:5].copy()
    bad[0, 0] = np.inf
    with pytest.raises(DataError, match=r"infinite.*\[0\]"):
        teacher.predict(bad)


def test_one_dimensional_x():
    x, y = make_xy(100, seed=6)
    with pytest.raises(DataError, match="2-D"):
        _teacher().fit(x[:, 0], y)


# ---------------------------------------------------------------- missing values


def test_nan_columns_get_missing_indicators():
    x, y = make_xy(300, seed=9)
    x[::7, 3] = np.nan
    x[::5, 11] = np.nan
    x[:, 8] = np.nan                                      # all missing in training: must not crash
    teacher = _teacher(experts=("deepfm", "temporal")).fit(x, y)
    np.testing.assert_array_equal(teacher.missing_columns_, [3, 8, 11])
    assert teacher.n_features_in_ == N_FEATURES and teacher.spec_.n_features == N_FEATURES + 3
    x_test, _ = make_xy(50, seed=10)
    x_test[:10, 3] = np.nan
    x_test[:10, 0] = np.nan                               # no NaN in training: read as the median, no indicator
    x_before = x_test.copy()
    scores = teacher.predict(x_test)
    np.testing.assert_array_equal(x_test, x_before)
    assert all(np.isfinite(v).all() for v in scores.values())
    assert all(np.isfinite(g).all() for g in teacher.gate_weights(x_test).values())


def test_missingness_is_informative():
    """The label is "x_0 was missing": only the indicator can tell a NaN from a median value."""
    rng = np.random.default_rng(13)
    x, y = make_xy(600, seed=13)
    missing = rng.random(600) < 0.5
    x[missing, 0] = np.nan
    y["a"] = missing.astype(np.float64)
    teacher = _teacher(epochs=3, lr=3e-3).fit(x, y)
    imputed = x.copy()
    imputed[missing, 0] = np.nanmedian(x[:, 0])
    with_nan, with_median = teacher.predict(x)["a"], teacher.predict(imputed)["a"]
    assert M.auc(y["a"], with_nan) > 0.95
    assert with_nan[missing].mean() - with_median[missing].mean() > 0.3
    np.testing.assert_array_equal(with_nan[~missing], with_median[~missing])


# ---------------------------------------------------------------- random_state and early stopping


def test_random_state_reproduces_the_model():
    x, y = make_xy(300, seed=14)
    x[::9, 2] = np.nan
    first, again = (_teacher(random_state=5).fit(x, y).predict(x[:40]) for _ in range(2))
    other = _teacher(random_state=6).fit(x, y).predict(x[:40])
    for task in TASKS:
        np.testing.assert_array_equal(first[task], again[task])
    assert not np.array_equal(first["a"], other["a"])


def test_early_stopping_restores_the_best_epoch():
    """A small training set at a high learning rate overfits: with patience 1 training stops at the
    first epoch that is not better, and the model that remains is the best epoch's, not the last."""
    x, y = make_xy(300, seed=7)
    x_val, y_val = make_xy(200, seed=8)
    teacher = _teacher(epochs=30, patience=1, batch_size=64, lr=1e-2).fit(x, y, x_val, y_val)
    scores = [h["primary_score"] for h in teacher.history_]
    assert len(scores) < 30 and teacher.best_epoch_ == len(scores) - 1
    best = scores[teacher.best_epoch_ - 1]
    assert best == max(scores) and scores[-1] < best
    restored = evaluate(teacher.tasks, {k: v.astype(np.float32) for k, v in y_val.items()}, teacher.predict(x_val))
    assert restored["primary_score"] == pytest.approx(best, abs=1e-6)
