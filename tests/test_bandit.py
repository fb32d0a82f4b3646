"""The softmax bandit (envs.SoftmaxBanditEnv, 'SoftmaxBandit-v0') and the tabular policy that plays it."""

import math
import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode

import envs
from agents import TabularActorCritic
from envs import SoftmaxBanditEnv


@pytest.fixture
def strict_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


@pytest.mark.parametrize("kwargs", [{}, {"rewards": [0.5, 2.0, -1.0, 3.0], "noise_std": 0.3}])
def test_passes_gymnasium_env_checker_with_warnings_as_errors(strict_warnings, kwargs):
    env = gym.make("SoftmaxBandit-v0", **kwargs)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


def test_registered_ids():
    assert envs.SoftmaxBanditEnv is SoftmaxBanditEnv
    env = gym.make("SoftmaxBandit-v0")
    assert isinstance(env.unwrapped, SoftmaxBanditEnv)
    env = gym.make("envs:SoftmaxBandit-v0", rewards=[2.0, 3.0])
    assert isinstance(env.unwrapped, SoftmaxBanditEnv)
    assert env.unwrapped.rewards.tolist() == [2.0, 3.0]


def test_module_prefixed_id_imports_the_package_in_a_fresh_interpreter():
    code = ("import gymnasium as gym; env = gym.make('envs:SoftmaxBandit-v0', rewards=[4.0, 5.0]); "
            "env.reset(seed=0); print(env.step(1)[1], env.action_space)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["5.0", "Discrete(2)"]


@pytest.mark.parametrize("rewards", [[1.0, 0.0, -1.0], [0.25, -3.5], [7.0], np.array([1, 2, 3, 4, 5])])
def test_spaces_and_one_step_episodes(rewards):
    env = SoftmaxBanditEnv(rewards=rewards)
    k = len(rewards)
    assert env.action_space == spaces.Discrete(k)
    assert isinstance(env.observation_space, spaces.Box) and env.observation_space.shape == (1,)
    for action in range(k):
        obs, info = env.reset(seed=action)
        assert obs in env.observation_space and info == {}
        obs, reward, terminated, truncated, info = env.step(action)
        assert obs in env.observation_space
        assert reward == float(rewards[action]) and isinstance(reward, float)
        assert terminated is True and truncated is False
    assert env.best_arm == int(np.argmax(rewards))


def test_default_rewards_are_the_seed_advantages():
    env = SoftmaxBanditEnv()
    env.reset(seed=0)
    assert [env.step(a)[1] for a in range(3)] == [1.0, 0.0, -1.0]
    assert env.best_arm == 0


def test_invalid_action_is_refused():
    env = SoftmaxBanditEnv()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(3)


def _pull_many(seed, n, arm=0, rewards=(0.5, -2.0), noise_std=0.5):
    env = SoftmaxBanditEnv(rewards=list(rewards), noise_std=noise_std)
    env.reset(seed=seed)
    out = []
    for _ in range(n):
        out.append(env.step(arm)[1])
        env.reset()
    return np.array(out)


def test_noise_is_seeded_and_has_the_right_moments():
    n = 4000
    a = _pull_many(123, n)
    b = _pull_many(123, n)
    c = _pull_many(124, n)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # mean 0.5 ± 5 standard errors (σ/√n ≈ 0.008); std 0.5 within 5 % (its standard error is ≈ 1.1 %)
    assert abs(a.mean() - 0.5) < 5 * 0.5 / math.sqrt(n)
    assert abs(a.std(ddof=1) - 0.5) < 0.025
    assert len(np.unique(a)) == n  # actually noisy
    # arm 1 pays −2 on average
    assert abs(_pull_many(5, n, arm=1).mean() + 2.0) < 5 * 0.5 / math.sqrt(n)


def test_zero_noise_is_exact():
    np.testing.assert_array_equal(_pull_many(0, 50, noise_std=0.0), np.full(50, 0.5))


def test_sync_vector_env_next_step_autoreset():
    vec = gym.make_vec("SoftmaxBandit-v0", num_envs=4, vectorization_mode="sync", rewards=[1.0, 0.0, -1.0])
    assert vec.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    assert vec.single_action_space == spaces.Discrete(3)
    obs, _ = vec.reset(seed=0)
    assert obs.shape == (4, 1)
    _, rewards, terminated, truncated, _ = vec.step(np.array([0, 1, 2, 0]))
    np.testing.assert_array_equal(rewards, [1.0, 0.0, -1.0, 1.0])
    assert terminated.all() and not truncated.any()
    # NEXT_STEP: this step only resets every env; its action is ignored and it is no transition
    _, rewards, terminated, truncated, _ = vec.step(np.array([2, 2, 2, 2]))
    np.testing.assert_array_equal(rewards, [0.0, 0.0, 0.0, 0.0])
    assert not terminated.any() and not truncated.any()
    _, rewards, terminated, _, _ = vec.step(np.array([2, 1, 0, 2]))
    np.testing.assert_array_equal(rewards, [-1.0, 0.0, 1.0, -1.0])
    assert terminated.all()
    vec.close()


def test_sync_vector_env_same_step_autoreset():
    vec = gym.make_vec("SoftmaxBandit-v0", num_envs=3, vectorization_mode="sync",
                       vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})
    assert vec.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    vec.reset(seed=0)
    for actions in ([0, 1, 2], [2, 2, 0]):
        obs, rewards, terminated, truncated, info = vec.step(np.array(actions))
        # every step is a real pull: the reset happens within the same step, the final obs goes to info
        np.testing.assert_array_equal(rewards, [[1.0, 0.0, -1.0][a] for a in actions])
        assert terminated.all() and not truncated.any()
        assert info["_final_obs"].all()
        np.testing.assert_array_equal(np.stack(info["final_obs"]), np.ones((3, 1), dtype=np.float32))
        np.testing.assert_array_equal(obs, np.ones((3, 1), dtype=np.float32))
    vec.close()


def test_vector_env_noise_is_seeded():
    def run(seed):
        vec = gym.make_vec("SoftmaxBandit-v0", num_envs=2, vectorization_mode="sync", noise_std=1.0,
                           vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})
        vec.reset(seed=seed)
        out = np.array([vec.step(np.array([0, 0]))[1] for _ in range(5)])
        vec.close()
        return out

    a, b = run(3), run(3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[:, 0], a[:, 1])  # the two sub-envs are seeded differently
    assert not np.array_equal(a, run(4))


@pytest.mark.parametrize("kwargs,argument", [
    ({"rewards": []}, "rewards"),
    ({"rewards": None}, "rewards"),
    ({"rewards": "abc"}, "rewards"),
    ({"rewards": ["a", 1.0]}, "rewards"),
    ({"rewards": [1.0, float("nan")]}, "rewards"),
    ({"rewards": [float("inf")]}, "rewards"),
    ({"noise_std": -0.1}, "noise_std"),
    ({"noise_std": "x"}, "noise_std"),
    ({"noise_std": float("nan")}, "noise_std"),
    ({"noise_std": None}, "noise_std"),
])
def test_bad_kwargs_raise_value_error_naming_the_argument(kwargs, argument):
    with pytest.raises(ValueError, match=rf"^{argument}="):
        SoftmaxBanditEnv(**kwargs)
    with pytest.raises(ValueError, match=rf"^{argument}="):
        gym.make("SoftmaxBandit-v0", **kwargs)


def test_tabular_policy_starts_uniform():
    policy = TabularActorCritic(3)
    assert torch.equal(policy.logits.detach(), torch.zeros(3))
    obs = torch.ones(4, 1)
    probs = torch.softmax(policy.dist_params(obs), dim=-1)
    assert probs.shape == (4, 3)
    assert torch.allclose(probs, torch.full((4, 3), 1 / 3))
    ev = policy.evaluate(torch.ones(3, 1), torch.tensor([0, 1, 2]))
    assert torch.allclose(ev.logprobs, torch.full((3,), math.log(1 / 3)))
    assert torch.allclose(ev.entropy, torch.full((3,), math.log(3)))
    assert torch.equal(ev.values, torch.zeros(3))
