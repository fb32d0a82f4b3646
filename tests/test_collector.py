"""The rollout collector under both Gymnasium autoreset modes, with a fixed policy and real CartPole envs.

- NEXT_STEP: the step after a done is the env's reset step (reward 0, action ignored); it is stored but marked
  invalid and left out of the training batch.
- SAME_STEP: a truncated step's next value is V(final observation from ``info``), not V(first obs of the next
  episode).
- Both modes see the same episodes from the same seeds, so the advantages of the real transitions must match.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

from agents.gae import compute_gae
from agents.inference import Inference
from agents.rollout import Collector, RolloutBuffer

SEED = 5
VALUE_W = np.array([0.3, -0.2, 1.0, 0.5], dtype=np.float32)


def angle_controller(gain: tuple[float, float] = (1.0, 0.0)) -> Inference:
    """A fixed policy: push towards the side the pole leans to (logits ±1e4, so Gumbel sampling cannot flip it),
    with a linear critic. Angle only (the default) fails after 25–55 steps: a mix of terminations and, with a
    60-step limit, truncations."""

    def dist_params(obs: np.ndarray) -> np.ndarray:  # [P, N, 4] → [P, N, 2] (the collector's population axis)
        s = gain[0] * obs[..., 2] + gain[1] * obs[..., 3]
        return np.stack([-1e4 * s, 1e4 * s], axis=-1).astype(np.float32)

    def value(obs: np.ndarray) -> np.ndarray:
        return (10.0 + obs @ VALUE_W).astype(np.float32)

    return Inference(dist_params, value, None)


def sync_cartpoles(n: int, mode: AutoresetMode, max_episode_steps: int):
    envs = gym.vector.SyncVectorEnv(
        [lambda: gym.make("CartPole-v1", max_episode_steps=max_episode_steps) for _ in range(n)],
        autoreset_mode=mode)
    return gym.wrappers.vector.RecordEpisodeStatistics(envs)


def collect(envs, num_steps: int, inference: Inference, rollouts: int = 1) -> list[RolloutBuffer]:
    """``rollouts`` consecutive rollouts of one collector; returns a copy of the buffer after each."""
    import copy

    buf = RolloutBuffer(num_steps, envs.num_envs, 4, (), discrete=True)
    collector = Collector(envs, buf, np.random.default_rng(0), seed=SEED)
    out = []
    for _ in range(rollouts):
        collector.collect(inference)
        out.append(copy.deepcopy(buf))
    envs.close()
    return out


@pytest.mark.parametrize("kind", ["native", "sync"])
def test_next_step_reset_steps_are_invalid_and_left_out_of_the_batch(kind):
    def make():
        if kind == "native":  # Gymnasium's own CartPole vector env: NEXT_STEP is its only mode
            return gym.wrappers.vector.RecordEpisodeStatistics(
                gym.make_vec("CartPole-v1", num_envs=3, vectorization_mode="vector_entry_point"))
        return sync_cartpoles(3, AutoresetMode.NEXT_STEP, max_episode_steps=60)

    assert make().metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    # Choose the rollout length so that env 0 is done at the last step: the reset step then opens rollout 2.
    (probe,) = collect(make(), 200, angle_controller())
    first_done = int(np.flatnonzero(probe.dones[:, 0])[0])
    bufs = collect(make(), first_done + 1, angle_controller(), rollouts=3)
    first, second = bufs[:2]

    for buf, prev_last_done in zip(bufs, [np.zeros(3, bool)] + [b.dones[-1] for b in bufs[:-1]]):
        expected_valid = np.vstack([~prev_last_done[None], ~buf.dones[:-1]])
        np.testing.assert_array_equal(buf.valid, expected_valid)
        # The invalid steps are the reset steps (CartPole pays 1 per real step, the reset step pays 0).
        np.testing.assert_array_equal(buf.rewards[~buf.valid], 0.0)
        np.testing.assert_array_equal(buf.rewards[buf.valid], 1.0)
        batch = buf.batch(gamma=0.99, gae_lambda=0.95)
        assert batch.sizes().tolist() == [int(buf.valid.sum())]  # a population of one: its valid samples
        advantages, returns = buf.advantages(0.99, 0.95)
        np.testing.assert_array_equal(batch.obs[0].numpy(), buf.obs[buf.valid])
        np.testing.assert_array_equal(batch.actions[0].numpy(), buf.actions[buf.valid])
        np.testing.assert_array_equal(batch.advantages[0].numpy(), advantages[buf.valid])
        np.testing.assert_array_equal(batch.returns[0].numpy(), returns[buf.valid])
    assert first.dones[-1, 0] and not second.valid[0, 0]  # env 0 finished at the end of rollout 1
    assert sum(int((~b.valid).sum()) for b in bufs) >= 3


def test_next_step_and_same_step_give_the_same_advantages():
    """Same seeds, same fixed policy: the valid NEXT_STEP transitions are the SAME_STEP transitions, and every
    step of an episode that ended inside the rollout has the same advantage (truncated ones included, which
    needs V(final obs) in both modes)."""
    gamma, lam, T, N = 0.99, 0.95, 200, 3
    (nxt,) = collect(sync_cartpoles(N, AutoresetMode.NEXT_STEP, 60), T, angle_controller())
    (same,) = collect(sync_cartpoles(N, AutoresetMode.SAME_STEP, 60), T, angle_controller())
    assert same.valid.all()
    adv_n, ret_n = nxt.advantages(gamma, lam)
    adv_s, ret_s = same.advantages(gamma, lam)
    compared = {"terminated": 0, "truncated": 0}
    for i in range(N):
        v = np.flatnonzero(nxt.valid[:, i])
        k = len(v)
        for name in ("obs", "actions", "rewards", "terminated", "dones"):
            np.testing.assert_array_equal(getattr(nxt, name)[v, i], getattr(same, name)[:k, i], err_msg=name)
        last_done = int(np.flatnonzero(nxt.dones[v, i])[-1])  # episodes after it are cut by the rollout's end
        np.testing.assert_allclose(adv_n[v[:last_done + 1], i], adv_s[:last_done + 1, i], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(ret_n[v[:last_done + 1], i], ret_s[:last_done + 1, i], rtol=1e-5, atol=1e-5)
        ends = same.dones[:last_done + 1, i]
        compared["terminated"] += int(same.terminated[:last_done + 1, i].sum())
        compared["truncated"] += int((ends & ~same.terminated[:last_done + 1, i]).sum())
    assert compared["terminated"] > 0 and compared["truncated"] > 0, compared

    # The SAME_STEP patch is what makes them agree: without it, truncated steps bootstrap from the next
    # episode's first observation and their advantages differ.
    truncated = same.dones & ~same.terminated
    unpatched, _ = compute_gae(same.rewards, same.values[:-1], same.values[1:], same.terminated, same.dones,
                               gamma, lam)
    assert not np.allclose(unpatched[truncated], adv_s[truncated], atol=1e-3)
    assert not np.allclose(same.next_values()[truncated], same.values[1:][truncated], atol=1e-3)


def test_same_step_truncation_bootstraps_from_the_final_observation_by_hand():
    """A 5-step time limit and a policy that never drops the pole within 5 steps: every 5th step is truncated.
    Replay each env by hand with single envs, then check the next values and the GAE against plain loops."""
    gamma, lam, T, N, limit = 0.9, 0.8, 12, 2, 5
    inference = angle_controller(gain=(1.0, 0.3))
    (buf,) = collect(sync_cartpoles(N, AutoresetMode.SAME_STEP, limit), T, inference)
    np.testing.assert_array_equal(buf.terminated, False)
    np.testing.assert_array_equal(np.flatnonzero(buf.dones[:, 0]), [4, 9])

    next_values = buf.next_values()
    advantages, returns = buf.advantages(gamma, lam)
    for i in range(N):
        env = gym.make("CartPole-v1", max_episode_steps=limit)
        obs, _ = env.reset(seed=SEED + i)  # SyncVectorEnv.reset(seed=s) seeds env i with s + i
        expected_next_v = []
        for t in range(T):
            np.testing.assert_allclose(buf.obs[t, i], obs, rtol=0, atol=1e-7)
            obs, reward, terminated, truncated, _ = env.step(int(buf.actions[t, i]))
            assert (reward, terminated, truncated) == (1.0, False, t % limit == limit - 1)
            # V of the state after step t: the final observation at a truncation, whatever comes next
            expected_next_v.append(float(inference.value(np.asarray(obs, np.float32)[None])[0]))
            if truncated:
                obs, _ = env.reset()
        np.testing.assert_allclose(next_values[:, i], expected_next_v, rtol=1e-6)

        # GAE by hand: δ_t = r + γ·V(next) − V(s_t) (nothing terminates here); the trace is cut at the dones.
        values = [float(x) for x in buf.values[:T, i]]
        adv = [0.0] * T
        running = 0.0
        for t in reversed(range(T)):
            if buf.dones[t, i]:
                running = 0.0
            delta = 1.0 + gamma * expected_next_v[t] - values[t]
            running = delta + gamma * lam * running
            adv[t] = running
        np.testing.assert_allclose(advantages[:, i], adv, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(returns[:, i], np.add(adv, values), rtol=1e-5, atol=1e-5)
        env.close()
