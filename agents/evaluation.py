"""Policy evaluation over a fixed number of episodes."""

from __future__ import annotations

from typing import Callable, NamedTuple, Union

import numpy as np

from agents.rollout import Inference, select_actions
from agents.seeding import action_rng, reset_seed
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
    """Run exactly ``episodes`` episodes and return their returns and lengths.

    The episodes are spread over ``min(episodes, max_envs)`` parallel envs, each assigned a fixed number of
    episodes up front: taking "the first N episodes to finish" would over-sample short episodes.
    ``make_envs(n)`` must build a vector env of ``n`` envs with episode statistics (``make_vec_env``); both
    autoreset modes report a finished episode through ``info["episode"]`` the same way.

    ``seed`` is the evaluation's stream (``agents.seeding``): eval env ``j`` is reset with ``child(seed, j)`` and
    sampled actions (``deterministic=False``) come from its action stream; an int stands for
    ``SeedSequence(int)``; None draws fresh OS entropy.
    """
    n = max(1, min(episodes, max_envs))
    quota = np.full(n, episodes // n)
    quota[: episodes % n] += 1
    envs = make_envs(n)
    seq = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    rng = action_rng(seq)
    returns: list[float] = []
    lengths: list[int] = []
    try:
        spec = vector_space_spec(envs)
        obs, _ = envs.reset(seed=reset_seed(envs, seq))
        done_count = np.zeros(n, dtype=int)
        while (done_count < quota).any():
            params = inference.dist_params(np.asarray(obs, dtype=np.float32))
            actions, _ = select_actions(params, inference.log_std, rng, deterministic)
            obs, _, terminated, truncated, info = envs.step(spec.to_env(actions))
            if "_episode" in info:
                for i in np.flatnonzero(info["_episode"]):
                    if done_count[i] < quota[i]:
                        returns.append(float(info["episode"]["r"][i]))
                        lengths.append(int(info["episode"]["l"][i]))
                    done_count[i] += 1
    finally:
        envs.close()
    return EvalResult(np.asarray(returns, dtype=np.float64), np.asarray(lengths))
