"""Every random stream of a run, derived from one integer seed through ``numpy.random.SeedSequence``.

The common convention (CleanRL, Stable-Baselines3) seeds sub-env ``i`` with ``seed + i``: runs with seeds ``s`` and
``s + 1`` then share ``N − 1`` env streams, and a sweep over ``seed=range(10)`` averages correlated runs. Here each
stream has its own *spawn key* under the run's seed — ``SeedSequence(seed, spawn_key=(stream, …))`` — so two
different seeds share no stream, and one seed still reproduces every stream exactly:

=====================  ====================================  ===============================================
stream                 spawn key                             used for
=====================  ====================================  ===============================================
network                ``(0,)``                              ``torch.manual_seed``: the initial weights
sampling               ``(1,)``                              the actions sampled while collecting rollouts
minibatches            ``(2,)``                              the minibatch order of every update
training envs          ``(3, i)``                            sub-env ``i``'s reset seed (native vector envs
                                                             that take one seed get ``(3,)``)
evaluation ``k``       ``(4, k, j)`` / ``(4, k, 2**32)``     eval env ``j`` / action sampling of the
                                                             evaluation after iteration ``k``
final evaluation       ``(5, k, j)`` / ``(5, k, 2**32)``     the same for the final evaluation after
                                                             iteration ``k``
resumed envs           ``(6, k, j)``                         fresh episodes of an inexact resume (env state
                                                             not in the checkpoint) after iteration ``k``
=====================  ====================================  ===============================================

The tree is stateless: a stream is a pure function of (seed, key), so a resumed run derives the same seeds
without saving a counter, and every evaluation runs on episodes no other evaluation of the run has seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np

NETWORK, SAMPLING, MINIBATCHES, TRAIN_ENVS, EVALUATION, FINAL_EVALUATION, RESUMED_ENVS = range(7)


def int_seed(seq: np.random.SeedSequence) -> int:
    """A 63-bit integer drawn from ``seq`` (what ``torch.manual_seed`` and Gymnasium's ``reset`` take)."""
    return int(seq.generate_state(1, np.uint64)[0] >> np.uint64(1))


def child(seq: np.random.SeedSequence, *key: int) -> np.random.SeedSequence:
    """The stream ``key`` below ``seq`` (same entropy, longer spawn key)."""
    return np.random.SeedSequence(seq.entropy, spawn_key=tuple(seq.spawn_key) + key)


ACTIONS = 2**32
"""Key of an evaluation's action-sampling stream (sub-env keys are below it)."""


@dataclass(frozen=True)
class RunSeeds:
    """The seed tree of one run (see the module docstring for its layout)."""

    seed: int

    def stream(self, *key: int) -> np.random.SeedSequence:
        return np.random.SeedSequence(self.seed, spawn_key=key)

    def network(self) -> int:
        """The ``torch.manual_seed`` of the initial weights."""
        return int_seed(self.stream(NETWORK))

    def sampling_rng(self) -> np.random.Generator:
        return np.random.default_rng(self.stream(SAMPLING))

    def minibatch_rng(self) -> np.random.Generator:
        return np.random.default_rng(self.stream(MINIBATCHES))

    def train_envs(self) -> np.random.SeedSequence:
        return self.stream(TRAIN_ENVS)

    def resumed_envs(self, iteration: int) -> np.random.SeedSequence:
        """Fresh training episodes after ``iteration`` when a resume could not restore the env state."""
        return self.stream(RESUMED_ENVS, iteration)

    def evaluation(self, index: int, final: bool = False) -> np.random.SeedSequence:
        """Evaluation ``index`` (the iteration it follows); ``final`` for the run's final evaluation."""
        return self.stream(FINAL_EVALUATION if final else EVALUATION, index)


def population_reset_seed(envs, seqs: Sequence[np.random.SeedSequence]) -> Union[int, list[int]]:
    """The ``seed`` argument of ``envs.reset`` for a vector env whose sub-envs are P members' blocks of
    ``num_envs / P`` (a solo run: one block), member k on stream ``seqs[k]``. Sync/async envs get one seed per
    sub-env, ``child(seqs[k], j)`` for member k's sub-env j, as its solo run would; a native vector env (such as
    CartPole's) draws every sub-env from one generator, seeded with one integer: a solo run's own stream, or all the
    members' streams together."""
    from gymnasium.vector import AsyncVectorEnv, SyncVectorEnv

    if isinstance(envs.unwrapped, (SyncVectorEnv, AsyncVectorEnv)):
        n = envs.num_envs // len(seqs)
        return [int_seed(child(seq, j)) for seq in seqs for j in range(n)]
    if len(seqs) == 1:
        return int_seed(seqs[0])
    return int_seed(np.random.SeedSequence([int(s.entropy) for s in seqs], spawn_key=tuple(seqs[0].spawn_key)))


def action_rng(seq: np.random.SeedSequence) -> np.random.Generator:
    """The action-sampling generator of an evaluation's stream ``seq``."""
    return np.random.default_rng(child(seq, ACTIONS))
