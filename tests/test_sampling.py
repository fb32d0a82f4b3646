"""Action sampling of the NumPy acting path (``agents.inference.select_actions``): the edges of its uniforms, and
noise drawn for a whole rollout at once (``draw_noise``)."""

from __future__ import annotations

import warnings

import numpy as np

import pytest

from agents.inference import draw_noise, select_actions


class ConstantUniforms:
    """A generator whose uniforms are all ``value`` (0.0 is a legal draw of ``Generator.random``)."""

    def __init__(self, value: float):
        self.value = value

    def random(self, shape, dtype=np.float64):
        return np.full(shape, self.value, dtype=dtype)


def test_a_zero_uniform_gives_a_valid_action_without_a_warning():
    logits = np.array([[0.0, 0.0], [2.0, -1.0], [-3.0, 1.0]], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # log(0) would raise here as a RuntimeWarning
        actions, logp = select_actions(logits, None, ConstantUniforms(0.0))
    assert actions.shape == (3,) and set(actions.tolist()) <= {0, 1}
    assert np.isfinite(logp).all() and (logp <= 0).all()


def test_sampling_frequencies_follow_the_softmax():
    logits = np.tile(np.array([[1.0, 0.0, -1.0]], dtype=np.float32), (200_000, 1))
    actions, logp = select_actions(logits, None, np.random.default_rng(0))
    p = np.exp(logits[0]) / np.exp(logits[0]).sum()
    assert np.allclose(np.bincount(actions, minlength=3) / len(actions), p, atol=0.005)
    assert np.allclose(logp, np.log(p)[actions], atol=1e-6)


@pytest.mark.parametrize("discrete", [True, False])
@pytest.mark.parametrize("members", [None, 1, 3])
def test_noise_drawn_for_a_rollout_gives_the_actions_of_drawing_step_by_step(discrete, members):
    """A rollout draws its T steps' noise in one call per member; the actions and log-probs must be those of T
    calls that each draw their own step, from generators in the same state (one generator, or one per member)."""
    T, shape = 6, ((4, 3) if members is None else (members, 4, 3))

    def rngs(seed):
        if members is None:
            return np.random.default_rng(seed)
        return [np.random.default_rng(seed + k) for k in range(members)]

    params = np.random.default_rng(99).normal(size=(T,) + shape).astype(np.float32)
    log_std = None if discrete else np.full(shape[:-2] + (3,) if members else (3,), -0.5, dtype=np.float32)
    step_rngs, whole_rngs = rngs(7), rngs(7)
    noise = draw_noise(whole_rngs, T, shape, discrete)
    assert noise.shape == (T,) + shape
    for t in range(T):
        a_step, logp_step = select_actions(params[t], log_std, step_rngs)
        a_whole, logp_whole = select_actions(params[t], log_std, whole_rngs, noise=noise[t])
        np.testing.assert_array_equal(a_whole, a_step)
        np.testing.assert_array_equal(logp_whole, logp_step)
    after_steps = step_rngs if isinstance(step_rngs, list) else [step_rngs]
    after_whole = whole_rngs if isinstance(whole_rngs, list) else [whole_rngs]
    for g_step, g_whole in zip(after_steps, after_whole):  # the generators end in the same state too
        assert g_step.random() == g_whole.random()
