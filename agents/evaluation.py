"""Policy evaluation over a fixed number of episodes."""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence, Union

import numpy as np

from agents.inference import Inference, select_actions
from agents.seeding import action_rng, population_reset_seed
from agents.spaces import vector_space_spec


class EvalResult(NamedTuple):
    returns: np.ndarray
    lengths: np.ndarray

    @property
    def mean(self) -> float:
        return float(self.returns.mean())

    @property
    def std(self) -> float:
        return float(self.returns.std())


def evaluate_policy(inference: Inference, make_envs: Callable[[int], object], episodes: int = 100,
                    seed: Union[np.random.SeedSequence, int, None] = None, deterministic: bool = True,
                    max_envs: int = 100) -> EvalResult:
    """Run exactly ``episodes`` episodes of one policy (``inference`` of ``[B, obs_dim]`` observations) and return
    their returns and lengths: ``evaluate_population`` for a population of one.

    The episodes are spread over ``min(episodes, max_envs)`` parallel envs, each assigned a fixed number of
    episodes up front: taking "the first N episodes to finish" would over-sample short episodes.
    ``make_envs(n)`` must build a vector env of ``n`` envs with episode statistics (``make_vec_env``); both
    autoreset modes report a finished episode through ``info["episode"]`` the same way.

    ``seed`` is the evaluation's stream (``agents.seeding``): eval env ``j`` is reset with ``child(seed, j)`` and
    sampled actions (``deterministic=False``) come from its action stream; an int stands for
    ``SeedSequence(int)``; None draws fresh OS entropy.
    """
    one = Inference(lambda obs: inference.dist_params(obs[0])[None], lambda obs: inference.value(obs[0])[None],
                    None if inference.log_std is None else inference.log_std[None])
    return evaluate_population(one, make_envs, episodes, [seed], deterministic, max_envs)[0]


def evaluate_population(inference: Inference, make_envs: Callable[[int], object], episodes: int,
                        seeds: Sequence[Union[np.random.SeedSequence, int, None]], deterministic: bool = True,
                        max_envs: int = 100) -> list[EvalResult]:
    """``evaluate_policy`` for P policies at once (``inference`` of ``[P, B, obs_dim]``, one seed stream per
    member): one vector env of P blocks of ``min(episodes, max_envs)`` envs, every step one batched call. With
    sync/async envs member k's envs are seeded exactly as its own evaluation's would be."""
    P = len(seeds)
    n = max(1, min(episodes, max_envs))
    quota = np.full(n, episodes // n)
    quota[: episodes % n] += 1
    envs = make_envs(P * n)
    seqs = [s if isinstance(s, np.random.SeedSequence) else np.random.SeedSequence(s) for s in seeds]
    rngs = [action_rng(seq) for seq in seqs]
    returns: list[list[float]] = [[] for _ in range(P)]
    lengths: list[list[int]] = [[] for _ in range(P)]
    try:
        spec = vector_space_spec(envs)
        obs, _ = envs.reset(seed=population_reset_seed(envs, seqs))
        done_count = np.zeros((P, n), dtype=int)
        while (done_count < quota).any():
            params = inference.dist_params(np.asarray(obs, dtype=np.float32).reshape(P, n, -1))
            actions, _ = select_actions(params, inference.log_std, rngs, deterministic)
            obs, _, terminated, truncated, info = envs.step(spec.to_env(actions.reshape(P * n, *actions.shape[2:])))
            if "_episode" in info:
                for i in np.flatnonzero(info["_episode"]):
                    k, j = divmod(int(i), n)
                    if done_count[k, j] < quota[j]:
                        returns[k].append(float(info["episode"]["r"][i]))
                        lengths[k].append(int(info["episode"]["l"][i]))
                    done_count[k, j] += 1
    finally:
        envs.close()
    return [EvalResult(np.asarray(r, dtype=np.float64), np.asarray(n)) for r, n in zip(returns, lengths)]
