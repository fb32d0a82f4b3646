"""agents.compute_gae on [T, N] arrays: hand tables, the λ = 0 / λ = 1 limits, and an explicit-sum reference."""

import numpy as np
import pytest
import torch

from agents import compute_gae

GAMMA, LAM = 0.9, 0.8  # γλ = 0.72

# Three envs side by side (columns), T = 3 steps (rows); the same rewards and values in every column.
REWARDS = [[1.0, 1.0, 1.0], [2.0, 2.0, 2.0], [3.0, 3.0, 3.0]]
VALUES = [[0.5, 0.5, 0.5], [1.0, 1.0, 1.0], [1.5, 1.5, 1.5]]
# Column 0: no episode end. Column 1: terminated at t = 1 (next_values[1] = 7.0 is V of the next episode's first
# observation and must be ignored). Column 2: truncated at t = 1, next_values[1] = 4.0 is V(final observation).
NEXT_VALUES = [[1.0, 1.0, 1.0], [1.5, 7.0, 4.0], [2.0, 2.0, 2.0]]
TERMINATED = [[0, 0, 0], [0, 1, 0], [0, 0, 0]]
DONES = [[0, 0, 0], [0, 1, 1], [0, 0, 0]]
# By hand. δ_t = r_t + γ(1 − term_t)·V'_t − V_t;  A_t = δ_t + γλ(1 − done_t)·A_{t+1}
#   (a) no done:     δ = [1 + 0.9·1.0 − 0.5, 2 + 0.9·1.5 − 1, 3 + 0.9·2 − 1.5] = [1.4, 2.35, 3.3]
#                    A2 = 3.3, A1 = 2.35 + 0.72·3.3 = 4.726, A0 = 1.4 + 0.72·4.726 = 4.80272
#   (b) terminated:  δ1 = 2 + 0 − 1 = 1.0; A2 = 3.3, A1 = 1.0 (trace cut), A0 = 1.4 + 0.72·1.0 = 2.12
#   (c) truncated:   δ1 = 2 + 0.9·4.0 − 1 = 4.6; A2 = 3.3, A1 = 4.6 (trace cut), A0 = 1.4 + 0.72·4.6 = 4.712
EXPECTED_ADV = [[4.80272, 2.12, 4.712], [4.726, 1.0, 4.6], [3.3, 3.3, 3.3]]


def _inputs(backend, flag_dtype=None):
    if backend == "torch":
        f = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731
        flags = lambda x: torch.tensor(x, dtype=flag_dtype or torch.float64)  # noqa: E731
    else:
        f = lambda x: np.array(x, dtype=np.float64)  # noqa: E731
        flags = lambda x: np.array(x, dtype=flag_dtype or np.float64)  # noqa: E731
    return f(REWARDS), f(VALUES), f(NEXT_VALUES), flags(TERMINATED), flags(DONES)


def _np(x):
    return x.numpy() if isinstance(x, torch.Tensor) else x


@pytest.mark.parametrize("backend,flag_dtype", [("torch", None), ("torch", torch.bool), ("numpy", None),
                                                ("numpy", bool)])
def test_hand_table(backend, flag_dtype):
    rewards, values, next_values, terminated, dones = _inputs(backend, flag_dtype)
    adv, ret = compute_gae(rewards, values, next_values, terminated, dones, GAMMA, LAM)
    assert type(adv) is type(values) and adv.shape == (3, 3)
    np.testing.assert_allclose(_np(adv), EXPECTED_ADV, atol=1e-12)
    np.testing.assert_allclose(_np(ret), np.array(EXPECTED_ADV) + np.array(VALUES), atol=1e-12)


@pytest.mark.parametrize("column", [0, 1, 2])
def test_each_case_alone_as_n_equals_1(column):
    rewards, values, next_values, terminated, dones = (x[:, column:column + 1] for x in _inputs("numpy"))
    adv, _ = compute_gae(rewards, values, next_values, terminated, dones, GAMMA, LAM)
    np.testing.assert_allclose(adv[:, 0], np.array(EXPECTED_ADV)[:, column], atol=1e-12)


def test_inputs_are_not_modified():
    inputs = _inputs("torch")
    copies = [x.clone() for x in inputs]
    compute_gae(*inputs, GAMMA, LAM)
    for x, c in zip(inputs, copies):
        assert torch.equal(x, c)


def test_lambda_zero_gives_td_errors():
    rewards, values, next_values, terminated, dones = _inputs("numpy")
    adv, _ = compute_gae(rewards, values, next_values, terminated, dones, GAMMA, 0.0)
    # the δ_t of the hand table
    np.testing.assert_allclose(adv, [[1.4, 1.4, 1.4], [2.35, 1.0, 4.6], [3.3, 3.3, 3.3]], atol=1e-12)


def test_lambda_one_gives_discounted_return_minus_value():
    rewards, values, next_values, terminated, dones = _inputs("numpy")
    adv, ret = compute_gae(rewards, values, next_values, terminated, dones, GAMMA, 1.0)
    g = GAMMA
    # no done: bootstrap from V'_2 = 2.0 at the end of the rollout
    col0 = [1 + g * 2 + g**2 * 3 + g**3 * 2.0, 2 + g * 3 + g**2 * 2.0, 3 + g * 2.0]
    # terminated at t = 1: the episode's return stops there, no bootstrap
    col1 = [1 + g * 2, 2.0, 3 + g * 2.0]
    # truncated at t = 1: bootstrap from V(final obs) = 4.0
    col2 = [1 + g * 2 + g**2 * 4.0, 2 + g * 4.0, 3 + g * 2.0]
    mc_returns = np.array([col0, col1, col2]).T
    np.testing.assert_allclose(ret, mc_returns, atol=1e-12)
    np.testing.assert_allclose(adv, mc_returns - np.array(VALUES), atol=1e-12)


def _reference_gae(rewards, values, next_values, terminated, dones, gamma, lam):
    """A_t = Σ_l (γλ)^l δ_{t+l}, summed explicitly over the future steps of the same episode."""
    T, N = rewards.shape
    adv = np.zeros((T, N))
    for n in range(N):
        for t in range(T):
            total, weight = 0.0, 1.0
            for k in range(t, T):
                delta = rewards[k, n] + gamma * (0.0 if terminated[k, n] else next_values[k, n]) - values[k, n]
                total += weight * delta
                if dones[k, n]:
                    break
                weight *= gamma * lam
            adv[t, n] = total
    return adv


@pytest.mark.parametrize("gamma,lam", [(0.99, 0.95), (0.9, 0.0), (1.0, 1.0), (0.5, 0.7)])
def test_matches_explicit_sum_reference(gamma, lam):
    rng = np.random.default_rng(7)
    T, N = 12, 5
    rewards = rng.normal(size=(T, N))
    values = rng.normal(size=(T, N))
    next_values = rng.normal(size=(T, N))
    terminated = rng.random((T, N)) < 0.15
    truncated = (rng.random((T, N)) < 0.15) & ~terminated
    dones = terminated | truncated
    assert terminated.any() and truncated.any()
    expected = _reference_gae(rewards, values, next_values, terminated, dones, gamma, lam)
    adv, ret = compute_gae(rewards, values, next_values, terminated, dones, gamma, lam)
    np.testing.assert_allclose(adv, expected, atol=1e-10)
    np.testing.assert_allclose(ret, expected + values, atol=1e-10)
    adv_t, ret_t = compute_gae(*(torch.as_tensor(x) for x in (rewards, values, next_values, terminated, dones)),
                               gamma, lam)
    np.testing.assert_allclose(adv_t.numpy(), expected, atol=1e-10)
    np.testing.assert_allclose(ret_t.numpy(), expected + values, atol=1e-10)
