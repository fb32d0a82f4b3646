"""Observation and reward normalisation owned by the agent: statistics against references computed another way,
frozen statistics in evaluation, checkpoints that carry them to a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from agents import PPOConfig, Trainer
from agents.checkpoint import load_checkpoint
from agents.evaluation import evaluate_policy
from agents.normalization import ObsNormalizer, RewardScaler
from agents.inference import make_inference
from envs.vector import EnvConfig, make_vec_env


def test_observation_statistics_match_a_two_pass_reference():
    rng = np.random.default_rng(0)
    batches = [rng.normal(loc=[3.0, -2.0, 0.0], scale=[0.5, 4.0, 1e-3], size=(n, 3)) for n in (1, 7, 64, 5)]
    norm = ObsNormalizer(3, clip=5.0)  # a population of one: observations are [1, n, 3]
    for batch in batches:
        norm(batch.astype(np.float32)[None], update=True)
    data = np.concatenate([b.astype(np.float32).astype(np.float64) for b in batches])
    # two-pass reference over all the data, pooled with RunningMeanStd's prior (mean 0, var 1, weight 1e-4)
    n, prior = len(data), 1e-4
    mean = data.sum(0) / (n + prior)
    var = (prior * (1.0 + mean**2) + ((data - mean) ** 2).sum(0)) / (n + prior)
    np.testing.assert_allclose(norm.rms.mean[0], mean, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(norm.rms.var[0], var, rtol=1e-7)
    assert norm.member_state(0)["count"] == pytest.approx(n + prior)
    obs = np.array([[3.5, 10.0, 1.0]], dtype=np.float32)
    expected = np.clip((obs - mean) / np.sqrt(var + 1e-8), -5.0, 5.0)
    np.testing.assert_allclose(norm.apply(obs), expected, rtol=1e-4)
    assert norm.apply(obs)[0, 2] == 5.0  # clipped


def test_reward_scale_is_the_std_of_per_env_discounted_returns_restarted_each_episode():
    rng = np.random.default_rng(1)
    T, N, gamma = 50, 3, 0.9
    rewards = rng.normal(1.0, 2.0, (T, N))
    terminated = rng.random((T, N)) < 0.05
    truncated = rng.random((T, N)) < 0.05
    done = terminated | truncated
    valid = rng.random((T, N)) < 0.9  # NEXT_STEP reset steps are not transitions
    scaler = RewardScaler(N, gamma, clip=3.0)
    out = [scaler(rewards[t], terminated[t], done[t], valid[t]) for t in range(T)]
    # reference: walk each env's episodes by hand, one list of returns over all envs and steps
    seen, running = [], np.zeros(N)
    for t in range(T):
        for i in range(N):
            if not valid[t, i]:
                continue
            running[i] = gamma * running[i] + rewards[t, i]
            seen.append(running[i])
            if done[t, i]:
                running[i] = 0.0
    assert scaler.rms.var[0] == pytest.approx(np.var(seen), rel=1e-4)
    np.testing.assert_allclose(scaler.returns[0], running)
    np.testing.assert_allclose(out[-1], np.clip(rewards[-1] / np.sqrt(np.var(seen) + 1e-8), -3, 3), rtol=1e-4)


CARTPOLE = EnvConfig(id="CartPole-v1", num_envs=4, vectorization_mode="sync")


def test_training_stores_normalized_observations_and_raw_episode_returns():
    envs = make_vec_env(CARTPOLE)
    cfg = PPOConfig(num_steps=128, normalize_obs=True, normalize_reward=True)
    trainer = Trainer(cfg, envs, 4 * 512, 0)
    result = trainer.run()
    envs.close()
    obs = trainer.buffer.obs.reshape(-1, 4)
    assert np.abs(obs.mean(0)).max() < 0.5 and 0.5 < obs.std(0).min() and obs.std(0).max() < 1.5
    assert np.abs(trainer.buffer.rewards).max() < 1.0  # CartPole's +1 per step, scaled by the return's std
    assert min(result.episodic_returns) >= 8 and all(float(r).is_integer() for r in result.episodic_returns)


def test_checkpoint_evaluated_in_a_fresh_process_equals_the_in_process_evaluation(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "experiments.train", "env=gym", "env.id=CartPole-v1",
                           "env.vectorization_mode=sync", "agent.normalize_obs=true", "total_timesteps=16384",
                           "eval.episodes=0", "progress=false", f"hydra.run.dir={run}"],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    state = load_checkpoint(run)
    assert state["agent"]["obs_norm"]["count"] > 16384  # every collected observation
    from experiments.evaluate import load_policy

    _, policy = load_policy(state)
    obs_norm = ObsNormalizer.from_agent_state(state["agent"])

    def make_envs(n):
        return make_vec_env(CARTPOLE, n)

    inside = evaluate_policy(make_inference(policy, "numpy", obs_norm), make_envs, 20, seed=5)
    without = evaluate_policy(make_inference(policy, "numpy"), make_envs, 20, seed=5)
    proc = subprocess.run([sys.executable, "-m", "experiments.evaluate", f"checkpoint={run}", "episodes=20",
                           "seed=5"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    fresh = json.loads(proc.stdout.strip().splitlines()[-1])
    assert fresh["mean_return"] == pytest.approx(inside.mean, abs=1e-9)
    assert fresh["std_return"] == pytest.approx(inside.std, abs=1e-9)
    assert not np.array_equal(without.returns, inside.returns)  # the statistics matter: without them, other play


def test_normalization_keys_are_validated():
    from agents.config import ConfigError

    with pytest.raises(ConfigError, match="agent.clip_obs=0.0 is invalid: must be > 0"):
        PPOConfig(normalize_obs=True, clip_obs=0.0).validate(4)
    with pytest.raises(ConfigError, match="agent.normalize_reward='yes' is invalid"):
        PPOConfig(normalize_reward="yes").validate(4)


def test_fine_tuning_starts_from_the_checkpoints_statistics():
    envs = make_vec_env(CARTPOLE)
    cfg = PPOConfig(num_steps=64, num_minibatches=2, normalize_obs=True)
    first = Trainer(cfg, envs, 2 * 256, 0)
    first.run()
    envs.close()
    saved = first.agent.state_dict()
    envs = make_vec_env(CARTPOLE)
    second = Trainer(cfg, envs, 256, 1, init_agent=saved)
    envs.close()
    # the new trainer has learned from its own first reset already; its statistics continue the saved ones
    assert second.agent.obs_norm.member_state(0)["count"] == pytest.approx(saved["obs_norm"]["count"] + 4)
    for name, tensor in saved["policy"].items():
        assert torch.equal(second.agent.policy.member_state(0)[name], tensor)
