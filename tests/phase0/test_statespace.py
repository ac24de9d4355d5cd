"""hmm_states: Gaussian HMMs over each customer's own monthly sequence (journey, lifecycle, behaviour)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from finai_models.phase0.groups.statespace import MODES, GaussianHmm, HmmStates, fit_hmm, time_major


@pytest.fixture(scope="module")
def fitted(phase0_env):
    group = HmmStates(phase0_env.settings, 25)
    with phase0_env.connect() as con:
        group.fit(phase0_env.train, con)
    return group, group.transform(phase0_env.month, None)     # con=None: transform reads only MonthInputs


def test_outputs_are_consistent(fitted, phase0_env):
    group, values = fitted
    names = group.column_names()
    months = phase0_env.month.present.sum(1)
    for mode, k in MODES.items():
        first = names.index(f"hmm_{mode}_prob_0")
        post = values[:, first:first + k]
        np.testing.assert_allclose(post.sum(1), 1.0, atol=1e-5)
        state = values[:, names.index(f"hmm_{mode}_state")]
        np.testing.assert_array_equal(state, post.argmax(1))
        dwell = values[:, names.index(f"hmm_{mode}_dwell")]
        assert (dwell >= 1).all() and (dwell <= months).all()
        trans = group.models[mode].trans
        expected = -(trans * np.log(trans)).sum(1)[state.astype(int)]
        np.testing.assert_allclose(values[:, names.index(f"hmm_{mode}_trans_entropy")], expected, rtol=1e-5)
        assert len(np.unique(state)) == k, f"{mode}: a state never decoded at t"


def test_rejects_a_wrong_dim(phase0_env):
    with pytest.raises(ValueError):
        HmmStates(phase0_env.settings, 24)


def _planted(n=600, steps=12, seed=0):
    """Sticky 3-state chains with 2-D Gaussian emissions; a third of them start late (recent joiners)."""
    rng = np.random.default_rng(seed)
    trans = np.array([[0.85, 0.1, 0.05], [0.05, 0.85, 0.1], [0.1, 0.05, 0.85]])
    means = np.array([[-2.0, 0.0], [0.0, 2.0], [2.0, -1.0]])
    states = np.zeros((n, steps), int)
    states[:, 0] = rng.integers(3, size=n)
    for t in range(1, steps):
        states[:, t] = (rng.random(n)[:, None] > trans[states[:, t - 1]].cumsum(1)).sum(1)
    obs = means[states] + rng.normal(0, 0.6, (n, steps, 2))
    first = np.where(rng.random(n) < 1 / 3, rng.integers(1, steps - 1, size=n), 0)
    mask = np.arange(steps)[None, :] >= first[:, None]
    return obs, mask, states


def test_recovers_planted_states_and_em_never_decreases():
    obs, mask, states = _planted()
    model, history = fit_hmm(obs, mask, 3, np.random.default_rng(7))
    assert len(history) > 2
    assert (np.diff(history) >= -1e-9 * abs(history[0])).all(), "EM log-likelihood decreased"
    gamma, _ = model.posteriors(*time_major(obs, mask))
    decoded = gamma.argmax(1).T[mask]
    truth = states[mask]
    accuracy = max((np.array(p)[decoded] == truth).mean() for p in itertools.permutations(range(3)))
    assert accuracy > 0.9
    np.testing.assert_allclose(np.sort(model.mean[:, 0]), [-2.0, 0.0, 2.0], atol=0.15)


def test_absent_months_before_joining_are_ignored():
    """A customer present for the last m months gets the same posteriors as the bare m-month sequence."""
    obs, mask, _ = _planted(n=300)
    model, _ = fit_hmm(obs, mask, 3, np.random.default_rng(7))
    late = np.flatnonzero(mask[:, 0] == 0)
    row = late[0]
    m = int(mask[row].sum())
    padded = obs[row:row + 1].copy()
    padded[:, :-m] = 99.0                                      # garbage in absent months must not matter
    full, _ = model.posteriors(*time_major(padded, mask[row:row + 1]))
    bare, _ = model.posteriors(*time_major(obs[row:row + 1, -m:], np.ones((1, m), bool)))
    np.testing.assert_allclose(full[-m:], bare, atol=1e-10)
    assert (full[:-m] == 0).all()


def test_likelihood_and_posteriors_match_brute_force():
    """Forward-backward against enumerating every state path of a tiny HMM (first month absent)."""
    rng = np.random.default_rng(3)
    model = GaussianHmm(np.array([0.6, 0.4]), np.array([[0.7, 0.3], [0.2, 0.8]]), rng.normal(size=(2, 2)),
                        rng.uniform(0.5, 2.0, (2, 2)))
    obs = rng.normal(size=(1, 4, 2))
    mask = np.array([[False, True, True, True]])
    log_b = model.log_emission(*time_major(obs, mask))[:, :, 0]               # [T, K]
    joint = {}
    for path in itertools.product(range(2), repeat=3):                        # months 1..3
        p = model.start[path[0]] * np.prod([model.trans[a, b] for a, b in itertools.pairwise(path)])
        joint[path] = p * np.exp(log_b[1:][np.arange(3), list(path)].sum())
    total = sum(joint.values())
    _, _, log_lik, _ = model.forward_backward(model.log_emission(*time_major(obs, mask)), time_major(obs, mask)[1])
    np.testing.assert_allclose(log_lik[0], np.log(total), rtol=1e-12)
    gamma, _ = model.posteriors(*time_major(obs, mask))
    for t in range(3):
        expected = [sum(v for path, v in joint.items() if path[t] == s) / total for s in range(2)]
        np.testing.assert_allclose(gamma[t + 1, :, 0], expected, rtol=1e-10)
