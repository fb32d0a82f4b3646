"""A K-armed bandit with one pull per episode: the single-state problem of the 3-action softmax exercise
(``experiments/clip_exercises.py``, exercise 2)."""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces


def _check_rewards(rewards: Any) -> np.ndarray:
    if isinstance(rewards, (str, bytes)) or not isinstance(rewards, Sequence) and not isinstance(rewards, np.ndarray):
        raise ValueError(f"rewards={rewards!r} is invalid: must be a non-empty list of finite numbers, one per arm")
    values = list(rewards)
    if not values:
        raise ValueError("rewards=[] is invalid: must be a non-empty list of finite numbers, one per arm")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or not math.isfinite(value):
            raise ValueError(f"rewards={values!r} is invalid: every arm's mean reward must be a finite number")
    return np.asarray(values, dtype=np.float64)


class SoftmaxBanditEnv(gym.Env):
    """K arms (``Discrete(K)``); each episode is one pull and ends (terminated) right after it.

    The observation is a constant ``[1.0]`` (there is only one state). Pulling arm ``a`` pays
    ``rewards[a] + noise_std · N(0, 1)``. With the default ``rewards=[1, 0, -1]`` the advantages under the
    uniform policy (mean reward 0) are ``[+1, 0, -1]``, the advantages of that exercise.
    """

    metadata = {"render_modes": []}

    def __init__(self, rewards: Sequence[float] = (1.0, 0.0, -1.0), noise_std: float = 0.0):
        self.rewards = _check_rewards(rewards)
        if isinstance(noise_std, bool) or not isinstance(noise_std, (int, float, np.integer, np.floating)) \
                or not math.isfinite(noise_std) or noise_std < 0:
            raise ValueError(f"noise_std={noise_std!r} is invalid: must be a finite number ≥ 0")
        self.noise_std = float(noise_std)
        self.action_space = spaces.Discrete(len(self.rewards))
        self.observation_space = spaces.Box(low=0.0, high=1.0, shape=(1,), dtype=np.float32)
        self._obs = np.ones(1, dtype=np.float32)

    @property
    def best_arm(self) -> int:
        return int(np.argmax(self.rewards))

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        super().reset(seed=seed)
        return self._obs.copy(), {}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action={action!r} is invalid: must be an integer arm in [0, {len(self.rewards)})")
        reward = float(self.rewards[int(action)])
        if self.noise_std > 0:
            reward += self.noise_std * float(self.np_random.standard_normal())
        return self._obs.copy(), reward, True, False, {}
