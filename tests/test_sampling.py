"""Action sampling of the NumPy acting path (``agents.inference.select_actions``) at the edges of its uniforms."""

from __future__ import annotations

import warnings

import numpy as np

from agents.inference import select_actions


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
