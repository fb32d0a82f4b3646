"""Env state in checkpoints: exact where it is captured in full, refused (or restored knowingly inexact) where not.

Every case uses real Gymnasium envs built as the package builds them (``envs.vector.make_vec_env``): capture one
mid-run, round-trip the state through ``torch.save`` / ``torch.load(weights_only=True)``, restore it into a
freshly made env with another seed, and the next steps under the same actions must match exactly.
"""

from __future__ import annotations

import io
from collections import deque

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from agents.envstate import IncompleteEnvState, capture, restore
from envs.vector import EnvConfig, make_vec_env

WARMUP, STEPS = 40, 60  # every case ends episodes both before and after the capture (time limits of 25 below)


# --- custom envs whose state is a Python list / a deque -------------------------------------------------------

class ListStateEnv(gym.Env):
    """A noisy 2-D walk whose position is a Python list of floats."""

    observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float64)
    action_space = spaces.Discrete(3)

    def __init__(self):
        self.position = [0.0, 0.0]

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.position = [float(x) for x in self.np_random.uniform(-1.0, 1.0, size=2)]
        return np.array(self.position), {}

    def step(self, action):
        x, y = self.position
        self.position = [x + 0.1 * (int(action) - 1) + float(self.np_random.normal(0.0, 0.05)), 0.9 * y]
        return np.array(self.position), -abs(self.position[0]), abs(self.position[0]) > 1.5, False, {}


class DequeStateEnv(gym.Env):
    """Observes the mean and length of its last three noisy pushes, kept in a ``deque(maxlen=3)``."""

    observation_space = spaces.Box(-np.inf, np.inf, (2,), np.float64)
    action_space = spaces.Discrete(2)

    def __init__(self):
        self.recent: deque = deque(maxlen=3)

    def _obs(self):
        return np.array([np.mean(self.recent), len(self.recent)])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.recent = deque([float(self.np_random.normal())], maxlen=3)
        return self._obs(), {}

    def step(self, action):
        self.recent.append(float(action) + float(self.np_random.normal(0.0, 0.1)))
        return self._obs(), float(self.recent[-1]), False, False, {}


for _name, _cls in {"ListState": ListStateEnv, "DequeState": DequeStateEnv}.items():
    if f"tests/envstate-{_name}-v0" not in gym.registry:
        gym.register(f"tests/envstate-{_name}-v0", entry_point=_cls, max_episode_steps=25)

EXACT_CASES = {
    "cartpole-native": EnvConfig(id="CartPole-v1", num_envs=3, vectorization_mode="vector_entry_point"),
    "cartpole-sync": EnvConfig(id="CartPole-v1", num_envs=3, vectorization_mode="sync"),
    "cartpole-sync-same-step": EnvConfig(id="CartPole-v1", num_envs=3, vectorization_mode="sync",
                                         autoreset_mode="same_step", max_episode_steps=25),
    "acrobot": EnvConfig(id="Acrobot-v1", num_envs=2, max_episode_steps=25),
    "mountaincar": EnvConfig(id="MountainCar-v0", num_envs=2, max_episode_steps=25),
    "mountaincar-continuous": EnvConfig(id="MountainCarContinuous-v0", num_envs=2, max_episode_steps=25),
    "pendulum": EnvConfig(id="Pendulum-v1", num_envs=2, max_episode_steps=25),
    "bandit-noisy": EnvConfig(id="SoftmaxBandit-v0", num_envs=3, kwargs={"noise_std": 0.5}),
    "custom-list-state": EnvConfig(id="tests/envstate-ListState-v0", num_envs=2),
    "custom-deque-state": EnvConfig(id="tests/envstate-DequeState-v0", num_envs=2),
}
INEXACT_CASES = {
    "lunarlander-box2d": (EnvConfig(id="LunarLander-v3", num_envs=2), "LunarLander.world (Box2D.b2World)"),
    "hopper-mujoco": (EnvConfig(id="Hopper-v5", num_envs=2), "HopperEnv.data (mujoco.MjData)"),
}


def _actions(envs, n: int, seed: int) -> list:
    space = envs.action_space  # unbounded after ClipAction for Box actions: clipping is exercised too
    space.seed(seed)
    return [space.sample() for _ in range(n)]


def _steps(envs, actions) -> list:
    """Observations, rewards, terminations, truncations and finished episodes' returns/lengths, step by step."""
    out = []
    for action in actions:
        obs, reward, terminated, truncated, info = envs.step(action)
        episode = info.get("episode", {})
        out.append([np.array(obs), np.array(reward), terminated.copy(), truncated.copy(),
                    np.array(info.get("_episode", [])), np.array(episode.get("r", [])),
                    np.array(episode.get("l", []))])
    return out


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(len(x) == len(y) and all(np.array_equal(u, v) for u, v in zip(x, y))
                                    for x, y in zip(a, b))


def _round_trip(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def _mid_run(cfg: EnvConfig, seed: int = 0):
    envs = make_vec_env(cfg)
    envs.reset(seed=seed)
    _steps(envs, _actions(envs, WARMUP, seed + 100))
    return envs


@pytest.mark.parametrize("case", list(EXACT_CASES))
def test_restored_env_continues_exactly(case):
    cfg = EXACT_CASES[case]
    original = _mid_run(cfg, seed=0)
    state = _round_trip(capture(original))
    assert state["complete"] is True and state["uncaptured"] == []
    actions = _actions(original, STEPS, seed=7)
    expected = _steps(original, actions)
    assert any(step[2].any() or step[3].any() for step in expected), "episodes must end after the capture"
    assert any(step[4].any() for step in expected), "episode statistics must be reported after the capture"

    fresh = _mid_run(cfg, seed=1)
    untouched = _mid_run(cfg, seed=1)
    restore(fresh, state)
    assert _same(_steps(fresh, actions), expected)
    assert not _same(_steps(untouched, actions), expected), "the fresh env alone must not already match"
    queues = [(list(env.return_queue), list(env.length_queue), env.return_queue.maxlen) for env in (fresh, original)]
    assert queues[0] == queues[1]
    for envs in (original, fresh, untouched):
        envs.close()


def test_state_ignores_what_cannot_change_the_future():
    envs = _mid_run(EXACT_CASES["cartpole-sync"])
    state = capture(envs)
    sync_layer, env_layers = state["layers"][-1], state["sub_envs"][0]
    for name in ("env_fns", "envs", "metadata", "spec", "observation_space", "single_action_space"):
        assert name not in sync_layer
    assert not any(name in layer for layer in env_layers for name in ("env", "spec", "action_space",
                                                                      "_saved_kwargs", "_previous_data"))
    assert state["layers"][0]["return_queue"]["maxlen"] == 100  # RecordEpisodeStatistics' deques: kept
    envs.close()


@pytest.mark.filterwarnings("ignore:builtin type:DeprecationWarning")  # Box2D's SWIG bindings, on import
@pytest.mark.parametrize("case", list(INEXACT_CASES))
def test_simulator_state_is_reported_uncaptured_and_restore_refuses(case):
    cfg, simulator = INEXACT_CASES[case]
    original = _mid_run(cfg, seed=0)
    state = _round_trip(capture(original))
    assert state["complete"] is False and simulator in state["uncaptured"]
    assert len(state["uncaptured"]) == len(set(state["uncaptured"]))  # once, not once per sub-env

    fresh = make_vec_env(cfg)
    fresh.reset(seed=1)
    with pytest.raises(IncompleteEnvState) as exc:
        restore(fresh, state)
    message = str(exc.value)
    assert "\n" not in message and simulator in message and "cannot continue exactly" in message
    assert exc.value.uncaptured == state["uncaptured"]
    assert [sub._elapsed_steps for sub in _sync(fresh).envs] == [0, 0]  # refused before changing anything

    restore(fresh, state, allow_inexact=True)  # what was captured comes back; the caller resets the envs
    elapsed = [sub._elapsed_steps for sub in _sync(original).envs]
    assert elapsed != [0, 0] and [sub._elapsed_steps for sub in _sync(fresh).envs] == elapsed
    fresh.reset(seed=2)
    fresh.step(fresh.action_space.sample())
    for envs in (original, fresh):
        envs.close()


def _sync(envs):
    while not isinstance(envs, gym.vector.SyncVectorEnv):
        envs = envs.env
    return envs


def test_async_vector_env_is_incomplete_and_refused():
    cfg = EnvConfig(id="CartPole-v1", num_envs=2, vectorization_mode="async")
    original, fresh = make_vec_env(cfg), make_vec_env(cfg)
    try:
        original.reset(seed=0)
        original.step(original.action_space.sample())
        state = _round_trip(capture(original))
        assert state["complete"] is False and state["uncaptured"] == ["AsyncVectorEnv workers"]
        with pytest.raises(IncompleteEnvState, match="^the run used an async vector env") as exc:
            restore(fresh, state)
        assert "\n" not in str(exc.value)
        restore(fresh, state, allow_inexact=True)
        assert fresh.episode_returns.tolist() == original.episode_returns.tolist()
    finally:
        original.close()
        fresh.close()


def test_checkpoints_written_before_uncaptured_existed_still_restore():
    cfg = EXACT_CASES["cartpole-native"]
    original = _mid_run(cfg)
    state = _round_trip(capture(original))
    old_complete = {key: value for key, value in state.items() if key not in ("uncaptured",)}
    old_async = {"layers": state["layers"], "sub_envs": [], "complete": False}
    actions = _actions(original, STEPS, seed=7)
    expected = _steps(original, actions)

    fresh = _mid_run(cfg, seed=1)
    restore(fresh, old_complete)
    assert _same(_steps(fresh, actions), expected)
    with pytest.raises(IncompleteEnvState, match="^the run used an async vector env"):
        restore(fresh, old_async)


def test_restore_refuses_an_env_wrapped_differently():
    state = capture(_mid_run(EXACT_CASES["pendulum"]))  # ClipAction + RecordEpisodeStatistics
    with pytest.raises(ValueError, match="wrapped differently"):
        restore(_mid_run(EXACT_CASES["cartpole-sync"]), state)
