"""Population training: P members trained in lockstep by one ``Trainer`` equal P solo runs, member by member.

With sync vector envs every member's sub-envs are seeded from its own seed tree exactly as its solo run's are, its
actions and minibatch orders come from its own generators, and its update touches only its own rows of the
batched tensors: so member k's logged metrics equal the solo run with its seed and config up to float rounding
(batched matrix products sum in another order), as long as no sampled action flips on such a rounding (short runs).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from agents import NumericalError, PPOConfig, Trainer
from agents.train import Member
from envs.vector import EnvConfig, make_vec_env

CARTPOLE = EnvConfig(id="CartPole-v1", num_envs=4, vectorization_mode="sync")
PENDULUM = EnvConfig(id="Pendulum-v1", num_envs=2, vectorization_mode="sync")
BANDIT = EnvConfig(id="SoftmaxBandit-v0", num_envs=8, vectorization_mode="sync",
                   autoreset_mode="same_step")


class Recorder:
    """Keeps every scalar the trainer logs for one member, in memory."""

    def __init__(self) -> None:
        self.rows: dict[str, list[tuple[int, float]]] = {}

    def scalars(self, values: dict, step: int) -> None:
        for tag, value in values.items():
            self.rows.setdefault(tag, []).append((step, float(value)))

    def flush(self) -> None:
        pass


TIMING_TAGS = {"charts/SPS", "charts/rollout_seconds", "charts/update_seconds"}


def solo(env: EnvConfig, cfg: PPOConfig, seed: int, steps: int, **kwargs) -> tuple[Trainer, Recorder]:
    envs = make_vec_env(env)
    rec = Recorder()
    trainer = Trainer(cfg, envs, steps, seed, logger=rec, make_eval_envs=lambda n: make_vec_env(env, n), **kwargs)
    trainer.run()
    envs.close()
    return trainer, rec


def population(env: EnvConfig, members: list[tuple[PPOConfig, int]], steps: int,
               **kwargs) -> tuple[Trainer, list[Recorder]]:
    envs = make_vec_env(env, env.num_envs * len(members))
    recs = [Recorder() for _ in members]
    trainer = Trainer.population([Member(cfg, seed, logger=rec) for (cfg, seed), rec in zip(members, recs)], envs,
                                 steps, make_eval_envs=lambda n: make_vec_env(env, n), **kwargs)
    trainer.run_population()
    envs.close()
    return trainer, recs


def assert_same_metrics(member: Recorder, alone: Recorder, rtol: float = 2e-4, atol: float = 2e-5) -> None:
    assert member.rows.keys() == alone.rows.keys()
    for tag in member.rows.keys() - TIMING_TAGS:
        steps_m, values_m = zip(*member.rows[tag])
        steps_a, values_a = zip(*alone.rows[tag])
        assert steps_m == steps_a, tag
        np.testing.assert_allclose(values_m, values_a, rtol=rtol, atol=atol, err_msg=tag)


def test_member_k_starts_from_the_solo_runs_initial_weights():
    cfgs = [PPOConfig(hidden_sizes=[16, 16]), PPOConfig(hidden_sizes=[16, 16], clip_ratio=0.3)]
    envs = make_vec_env(CARTPOLE, 8)
    pop = Trainer.population([Member(cfg, seed) for cfg, seed in zip(cfgs, (7, 3))], envs, 1024)
    envs.close()
    for k, seed in enumerate((7, 3)):
        envs = make_vec_env(CARTPOLE)
        alone = Trainer(cfgs[k], envs, 1024, seed)
        envs.close()
        theirs, ours = alone.agent.policy.member_state(0), pop.agent.policy.member_state(k)
        assert theirs.keys() == ours.keys()
        for name in theirs:
            assert torch.equal(theirs[name], ours[name]), name
        np.testing.assert_array_equal(pop.collector.obs[k], alone.collector.obs[0])  # the same first episodes
    # and the two members differ from each other
    assert not torch.equal(pop.agent.policy.member_state(0)["actor.0.weight"],
                           pop.agent.policy.member_state(1)["actor.0.weight"])


def test_members_with_their_own_hyperparameters_equal_their_solo_runs():
    base = PPOConfig(num_steps=32, num_minibatches=4, ppo_epochs=3)
    members = [(dataclasses.replace(base, clip_ratio=0.1, entropy_coef=0.0), 0),
               (dataclasses.replace(base, clip_ratio=0.3, entropy_coef=0.05, learning_rate=1e-3, gamma=0.9,
                                    gae_lambda=0.8, vf_coef=1.0, max_grad_norm=0.0, norm_adv=False), 1),
               (dataclasses.replace(base, target_kl=1e-4), 2)]
    steps = 4 * 32 * 5
    pop, recs = population(CARTPOLE, members, steps, eval_every=2, eval_episodes=3)
    minibatch_updates = []
    for (cfg, seed), rec in zip(members, recs):
        _, alone = solo(CARTPOLE, cfg, seed, steps, eval_every=2, eval_episodes=3)
        assert_same_metrics(rec, alone)
        minibatch_updates.append([v for _, v in rec.rows["charts/minibatch_updates"]])
    # the target-KL member stopped some updates early on its own; the others always did every minibatch step
    assert minibatch_updates[0] == minibatch_updates[1] == [12.0] * 5
    assert min(minibatch_updates[2]) < 12


def test_box_actions_normalisation_and_the_kl_penalty_per_member():
    base = PPOConfig(num_steps=64, num_minibatches=2, ppo_epochs=2, normalize_obs=True, normalize_reward=True,
                     kl_coef=0.1, anneal_lr=True)
    members = [(base, 4), (dataclasses.replace(base, kl_coef=1.0, gamma=0.95, learning_rate=1e-3), 5)]
    steps = 2 * 64 * 4
    pop, recs = population(PENDULUM, members, steps)
    for k, ((cfg, seed), rec) in enumerate(zip(members, recs)):
        alone_trainer, alone = solo(PENDULUM, cfg, seed, steps)
        assert_same_metrics(rec, alone)
        ours, theirs = pop.agent.obs_norm.member_state(k), alone_trainer.agent.obs_norm.member_state(0)
        np.testing.assert_allclose(ours["mean"].numpy(), theirs["mean"].numpy(), rtol=1e-6)
        ours = pop.collector.reward_scaler.member_state(k)
        theirs = alone_trainer.collector.reward_scaler.member_state(0)
        assert ours["var"].item() == pytest.approx(theirs["var"].item(), rel=1e-6)
    assert "losses/kl_ref" in recs[0].rows and "charts/action_std" in recs[0].rows


def test_bandit_members_with_group_advantages_learn_their_own_best_arm():
    base = PPOConfig(policy="tabular", num_steps=4, num_minibatches=1, ppo_epochs=4, learning_rate=0.05,
                     advantage="group", anneal_lr=False, entropy_coef=0.0)
    members = [(base, 0), (dataclasses.replace(base, clip_ratio=0.1), 1)]
    pop, recs = population(BANDIT, members, 8 * 4 * 30)
    for k, ((cfg, seed), rec) in enumerate(zip(members, recs)):
        probs = pop.agent.policy.member(k).logits.detach().softmax(-1)
        assert probs.argmax().item() == 0 and probs[0] > 0.9  # arm 0 pays +1 (the default bandit)
        _, alone = solo(BANDIT, cfg, seed, 8 * 4 * 30)
        assert_same_metrics(rec, alone)


def test_a_member_that_diverges_stops_alone_with_its_last_good_checkpoint(tmp_path):
    from agents.checkpoint import load_checkpoint

    base = PPOConfig(num_steps=32, num_minibatches=2, ppo_epochs=2)
    members = [Member(base, 0, checkpoint_path=tmp_path / "a.pt", checkpoint_every=1),
               Member(base, 1, checkpoint_path=tmp_path / "b.pt", checkpoint_every=1)]
    envs = make_vec_env(CARTPOLE, 8)
    trainer = Trainer.population(members, envs, 4 * 32 * 6)

    def poison_member_1() -> bool:  # called before every iteration: after iteration 3, member 1's weights break
        if trainer.iteration == 3:
            with torch.no_grad():
                trainer.agent.optimizer.flat[1, 5] = float("nan")
        return False

    results = trainer.run_population(should_stop=poison_member_1)
    envs.close()
    assert trainer.state[0].error is None and results[0].iterations == 6
    assert isinstance(trainer.state[1].error, NumericalError)
    assert str(trainer.state[1].error).startswith("iteration 4: non-finite value in")
    saved = load_checkpoint(tmp_path / "b.pt")
    assert saved["iteration"] == 3 and results[1].iterations == 3
    assert all(torch.isfinite(t).all() for t in saved["agent"]["policy"].values())
    assert load_checkpoint(tmp_path / "a.pt")["iteration"] == 6


def test_members_must_share_the_shape_keys():
    from agents.config import ConfigError

    envs = make_vec_env(CARTPOLE, 8)
    with pytest.raises(ConfigError, match="agent.num_steps differs between members"):
        Trainer.population([Member(PPOConfig(), 0), Member(PPOConfig(num_steps=64), 1)], envs, 1024)
    envs.close()


def test_members_resumed_together_equal_their_solo_resumes(tmp_path):
    """An interrupted population's members, resumed as one population (``load_state_dicts``), train on as each one
    resumed alone does: the same fresh episodes (its own seed tree's ``resumed_envs`` stream), the same restored
    weights, Adam state, observation and reward statistics and generators — so the same logged metrics, up to
    float rounding."""
    from agents.checkpoint import load_checkpoint
    from agents.envstate import IncompleteEnvState

    base = PPOConfig(num_steps=32, num_minibatches=4, ppo_epochs=2, normalize_obs=True, normalize_reward=True)
    cfgs = [dataclasses.replace(base, clip_ratio=0.1), dataclasses.replace(base, clip_ratio=0.3, learning_rate=1e-3)]
    seeds, first, total = (5, 9), 4 * 32 * 3, 4 * 32 * 6
    paths = [tmp_path / "a.pt", tmp_path / "b.pt"]
    envs = make_vec_env(CARTPOLE, 8)
    Trainer.population([Member(c, s, checkpoint_path=p) for c, s, p in zip(cfgs, seeds, paths)], envs,
                       first).run_population()
    envs.close()
    states = [load_checkpoint(p) for p in paths]
    assert [s["iteration"] for s in states] == [3, 3]

    envs = make_vec_env(CARTPOLE, 8)
    recs = [Recorder() for _ in cfgs]
    together = Trainer.population([Member(c, s, logger=r) for c, s, r in zip(cfgs, seeds, recs)], envs, total,
                                  make_eval_envs=lambda n: make_vec_env(CARTPOLE, n), eval_episodes=3)
    with pytest.raises(IncompleteEnvState):  # fresh episodes only when asked for
        together.load_state_dicts(states)
    assert together.load_state_dicts(states, allow_inexact=True) is False
    assert together.iteration == 3 and together.global_step == first
    results = together.run_population()
    envs.close()
    for k, (cfg, seed) in enumerate(zip(cfgs, seeds)):
        envs = make_vec_env(CARTPOLE)
        alone_rec = Recorder()
        alone = Trainer(cfg, envs, total, seed, logger=alone_rec, make_eval_envs=lambda n: make_vec_env(CARTPOLE, n),
                        eval_episodes=3)
        assert alone.load_state_dict(states[k], allow_inexact=True) is False
        result = alone.run()
        envs.close()
        assert recs[k].rows["charts/learning_rate"][0][0] == first + 4 * 32  # continued at iteration 4
        assert_same_metrics(recs[k], alone_rec)
        np.testing.assert_allclose(results[k].eval.returns, result.eval.returns)
    # members at different iterations cannot train in lockstep
    envs = make_vec_env(CARTPOLE, 8)
    mixed = Trainer.population([Member(c, s) for c, s in zip(cfgs, seeds)], envs, total)
    states[1]["iteration"] = 2
    with pytest.raises(ValueError, match="different iterations"):
        mixed.load_state_dicts(states, allow_inexact=True)
    envs.close()


def test_a_member_that_had_stopped_ends_at_once_when_resumed_in_a_population(tmp_path):
    """Member A stopped on its ``stop_return`` in the iteration the population was interrupted, so both checkpoints
    are at iteration 2. Resumed together, A trains nothing and saves what its solo resume saves: its observation
    statistics and generators do not move while B trains on."""
    from agents.checkpoint import load_checkpoint

    base = PPOConfig(num_steps=32, num_minibatches=2, ppo_epochs=2, normalize_obs=True)
    paths = [tmp_path / "a.pt", tmp_path / "b.pt"]
    steps = 4 * 32 * 6
    kwargs = dict(eval_every=2, eval_episodes=2, make_eval_envs=lambda n: make_vec_env(CARTPOLE, n))

    def population_trainer() -> Trainer:
        return Trainer.population([Member(base, 0, checkpoint_path=paths[0], stop_return=0.0),
                                   Member(base, 1, checkpoint_path=paths[1])], make_vec_env(CARTPOLE, 8), steps,
                                  **kwargs)

    first = population_trainer()
    results = first.run_population(should_stop=lambda: first.iteration == 2)
    assert results[0].eval is not None and results[1].interrupted
    before = [load_checkpoint(p) for p in paths]
    assert [s["iteration"] for s in before] == [2, 2] and before[0]["stopped_under"] is not None

    together = population_trainer()
    together.load_state_dicts(before, allow_inexact=True)
    together.run_population()
    alone = Trainer(base, make_vec_env(CARTPOLE), steps, 0, checkpoint_path=tmp_path / "alone.pt", stop_return=0.0,
                    **kwargs)
    alone.load_state_dict(before[0], allow_inexact=True)
    alone.run()
    ours, theirs = load_checkpoint(paths[0]), load_checkpoint(tmp_path / "alone.pt")
    assert load_checkpoint(paths[1])["iteration"] == 6 and ours["iteration"] == theirs["iteration"] == 2
    assert ours["final_eval"]["returns"].tolist() == before[0]["final_eval"]["returns"].tolist()
    assert ours["rng"] == theirs["rng"]
    stats = ours["agent"]["obs_norm"]
    assert stats.keys() == theirs["agent"]["obs_norm"].keys() and stats
    for name, value in stats.items():
        assert torch.equal(torch.as_tensor(value), torch.as_tensor(theirs["agent"]["obs_norm"][name])), name
