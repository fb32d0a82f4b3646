"""What the agent accepts from a Gymnasium vector env, checked by the library itself (not only by the Hydra path).

Observations: a flat ``Box``. Actions: ``Discrete(n, start=k)`` (the policy picks an index in ``0..n−1``; the env
receives ``index + k``) or a flat ``Box``. Autoreset: NEXT_STEP or SAME_STEP (``agents/rollout.py`` handles both;
DISABLED would need the trainer to reset finished sub-envs itself, which it does not).
Anything else is refused with a one-line ``ConfigError``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

from agents.config import ConfigError


@dataclass(frozen=True)
class SpaceSpec:
    """Sizes of a vector env's single spaces, as the policy sees them."""

    obs_dim: int
    action_dim: int
    """Number of discrete actions, or the Box action's size."""
    discrete: bool
    action_start: int = 0
    """``Discrete.start``: added to the policy's action index before it goes to the env."""

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        """The policy's actions as the env takes them."""
        return actions + self.action_start if self.action_start else actions

    def dims(self) -> tuple[int, int, bool]:
        return self.obs_dim, self.action_dim, self.discrete


def space_spec(observation_space: spaces.Space, action_space: spaces.Space, env_id: str = "the env") -> SpaceSpec:
    """Check the spaces and size them; ``ConfigError`` (one line, naming ``env_id``) if unsupported."""
    if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 1:
        raise ConfigError(f"env.id={env_id!r} is unsupported: observations must be a flat Box vector, "
                          f"got {observation_space}")
    obs_dim = int(observation_space.shape[0])
    if isinstance(action_space, spaces.Discrete):
        return SpaceSpec(obs_dim, int(action_space.n), True, int(action_space.start))
    if isinstance(action_space, spaces.Box) and len(action_space.shape) == 1:
        return SpaceSpec(obs_dim, int(math.prod(action_space.shape)), False)
    raise ConfigError(f"env.id={env_id!r} is unsupported: actions must be Discrete or a flat Box, got {action_space}")


def vector_space_spec(envs, env_id: str = "the env") -> SpaceSpec:
    """``space_spec`` of a vector env's single spaces."""
    return space_spec(envs.single_observation_space, envs.single_action_space, env_id)


def space_dims(envs) -> tuple[int, int, bool]:
    """(obs_dim, action_dim, discrete) of a vector env's single spaces (refuses unsupported ones)."""
    return vector_space_spec(envs).dims()


def declared_action_space(envs) -> spaces.Space:
    """The action space the env itself declares: its bounds, which the vector env's action-clipping wrapper
    (``envs/vector.py``) widens to ±inf on the outside."""
    return envs.unwrapped.single_action_space


def check_autoreset(envs, env_id: str = "the env") -> AutoresetMode:
    """The vector env's autoreset mode (NEXT_STEP when it does not say, Gymnasium's default); DISABLED refused."""
    mode = envs.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
    if mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
        raise ConfigError(f"env.id={env_id!r} is unsupported: its vector env has autoreset_mode={mode}; the "
                          "trainer handles NextStep and SameStep (make it with autoreset_mode=NEXT_STEP or "
                          "SAME_STEP)")
    return mode
