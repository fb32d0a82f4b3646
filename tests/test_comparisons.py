"""Trustworthy comparisons: independent seed streams, fresh and unbiased evaluations, fine-tuning from a
checkpoint, group-relative advantages, spaces and resume that never silently do the wrong thing."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

from agents import PPOConfig, Trainer
from agents.config import ConfigError
from agents.gae import compute_group_advantages
from agents.logger import TensorBoardLogger
from agents.rollout import RolloutBuffer
from envs.vector import EnvConfig, make_vec_env

import helpers

CARTPOLE_SYNC = EnvConfig(id="CartPole-v1", num_envs=4, vectorization_mode="sync")
BANDIT = EnvConfig(id="SoftmaxBandit-v0", num_envs=8, vectorization_mode="sync", autoreset_mode="same_step")


def bandit_cfg(**overrides) -> PPOConfig:
    """The tuned bandit settings (conf/tuned/bandit.yaml)."""
    values = dict(policy="tabular", learning_rate=0.05, anneal_lr=False, num_steps=16, num_minibatches=2,
                  gamma=1.0, gae_lambda=1.0, vf_coef=0.5)
    values.update(overrides)
    return PPOConfig(**values)


class RecordResets(gym.vector.VectorWrapper):
    """Keeps the observations every ``reset`` returned (one row per sub-env)."""

    def __init__(self, env, log: list):
        super().__init__(env)
        self.log = log

    def reset(self, **kwargs):
        obs, info = super().reset(**kwargs)
        self.log.append(np.array(obs, copy=True))
        return obs, info


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    return helpers.run_main(monkeypatch, capsys, "progress=false", *args)


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    return helpers.read_scalars(run_dir / "tb")


def checkpoint(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)


def shared_rows(a: np.ndarray, b: np.ndarray) -> int:
    return sum(bool((row == b).all(axis=1).any()) for row in a)


# --- seeds that share nothing ---------------------------------------------------------------------------------

def first_observations(env_cfg: EnvConfig, seed: int) -> np.ndarray:
    envs = make_vec_env(env_cfg)
    try:
        return Trainer(PPOConfig(), envs, 1024, seed).collector.obs[0].copy()  # member 0 of a population of one
    finally:
        envs.close()


@pytest.mark.parametrize("env_cfg", [CARTPOLE_SYNC, EnvConfig(id="CartPole-v1", num_envs=4)],
                         ids=["sync", "native"])
def test_two_seeds_share_no_training_env_stream_and_one_seed_reproduces(env_cfg):
    obs0, obs1 = first_observations(env_cfg, 0), first_observations(env_cfg, 1)
    # seed + i seeding gave run 0's sub-env 1 the stream of run 1's sub-env 0
    assert shared_rows(obs0, obs1) == 0
    assert len({row.tobytes() for row in obs0}) == env_cfg.num_envs  # sub-envs of one run differ too
    np.testing.assert_array_equal(first_observations(env_cfg, 0), obs0)


def episode_starts(seed: int, steps: int = 300) -> list[set]:
    """Per sub-env, the first observation of every episode it starts in ``steps`` steps of random actions."""
    envs = make_vec_env(CARTPOLE_SYNC)
    trainer = Trainer(PPOConfig(), envs, 1024, seed)
    starts = [{row.tobytes()} for row in trainer.collector.obs[0]]  # member 0 of a population of one
    rng = np.random.default_rng(123)  # the same actions for both runs
    prev_done = np.zeros(4, bool)
    for _ in range(steps):
        obs, _, term, trunc, _ = envs.step(rng.integers(0, 2, 4))
        for i in np.flatnonzero(prev_done):  # NEXT_STEP: the step after a done returns the new episode's start
            starts[i].add(obs[i].tobytes())
        prev_done = term | trunc
    envs.close()
    return starts


def test_no_sub_env_of_one_seed_starts_an_episode_of_another_seed():
    a, b = episode_starts(0), episode_starts(1)
    assert all(len(s) > 5 for s in a)  # several episodes per sub-env
    assert all(not (sa & sb) for sa in a for sb in b)


def trainer_with_recorded_evals(seed: int, log: list, **kw) -> Trainer:
    envs = make_vec_env(CARTPOLE_SYNC)
    cfg = PPOConfig(num_steps=32, num_minibatches=2, ppo_epochs=1)
    return Trainer(cfg, envs, 3 * 128, seed, make_eval_envs=lambda n: RecordResets(make_vec_env(CARTPOLE_SYNC, n),
                                                                                     log), **kw)


def test_every_evaluation_runs_fresh_episodes_and_seeds_share_no_evaluation_episode():
    logs = {0: [], 1: []}
    for seed, log in logs.items():
        trainer = trainer_with_recorded_evals(seed, log, eval_every=1, eval_episodes=6)
        result = trainer.run()
        trainer.envs.close()
        assert result.iterations == 3
        assert len(log) == 3  # periodic after iterations 1 and 2, final after 3
    for log in logs.values():
        for i in range(len(log)):
            for j in range(i + 1, len(log)):
                assert shared_rows(log[i], log[j]) == 0, (i, j)
    assert shared_rows(np.concatenate(logs[0]), np.concatenate(logs[1])) == 0


# --- evaluation not biased by the stop rule --------------------------------------------------------------------

def test_stop_rule_reports_a_new_evaluation_logged_once_each(tmp_path):
    log: list = []
    trainer = trainer_with_recorded_evals(0, log, eval_every=1, eval_episodes=5, stop_return=1.0)
    trainer.logger = TensorBoardLogger(tmp_path / "tb")
    result = trainer.run()
    trainer.logger.close()
    trainer.envs.close()
    assert result.solved_step == 128 and result.iterations == 1  # any policy reaches 1 on CartPole
    assert len(log) == 2 and shared_rows(log[0], log[1]) == 0  # the trigger, then an independent final one
    evals = scalars(tmp_path)["eval/mean_return"]
    assert [step for step, _ in evals] == [128, 128]
    assert evals[-1][1] == pytest.approx(result.eval.mean)


def test_stopped_run_returns_the_new_evaluation_and_resumes_when_the_budget_grows(monkeypatch, capsys, tmp_path):
    run = tmp_path / "run"
    args = ["env=bandit", "eval.every=1", "eval.episodes=8", "eval.stop_return=-1", "total_timesteps=1024",
            "env.kwargs.noise_std=1.0", f"hydra.run.dir={run}"]
    code, err = run_main(monkeypatch, capsys, *args)
    assert code == 0, err
    values = scalars(run)
    batch = 8 * 16
    assert values["eval/mean_return"][0][0] == batch and len(values["eval/mean_return"]) == 2
    trigger, final = (v for _, v in values["eval/mean_return"])
    assert trigger != final  # noisy rewards: two evaluations on different episodes differ
    assert values["hparams/final_eval_return"][-1][1] == pytest.approx(final)
    assert checkpoint(run)["global_step"] == batch

    # the same budget: nothing left to train, and the final evaluation is neither repeated nor logged again
    code, err = run_main(monkeypatch, capsys, f"resume={run}")
    assert code == 0, err
    assert checkpoint(run)["global_step"] == batch
    assert scalars(run)["eval/mean_return"] == values["eval/mean_return"]
    # a larger budget without the stop rule trains to it
    code, err = run_main(monkeypatch, capsys, f"resume={run}", "total_timesteps=768", "eval.stop_return=null")
    assert code == 0, err
    assert checkpoint(run)["global_step"] == 768
    # a larger budget with the stop rule trains until the next evaluation reaches it again
    code, err = run_main(monkeypatch, capsys, f"resume={run}", "total_timesteps=2048", "eval.stop_return=-1")
    assert code == 0, err
    assert checkpoint(run)["global_step"] == 768 + batch


def test_resume_accepts_restating_a_saved_value_and_refuses_a_different_one(monkeypatch, capsys, tmp_path):
    run = tmp_path / "run"
    code, err = run_main(monkeypatch, capsys, "env=bandit", "seed=4", "total_timesteps=256", "eval.episodes=0",
                         f"hydra.run.dir={run}")
    assert code == 0, err
    code, err = run_main(monkeypatch, capsys, "env=bandit", "seed=4", f"resume={run}", "total_timesteps=512")
    assert code == 0, err
    assert checkpoint(run)["global_step"] == 512
    # null values and the run's own group choice restate too
    code, err = run_main(monkeypatch, capsys, "env=bandit", "agent.target_kl=null", "seed=4", f"resume={run}",
                         "total_timesteps=640")
    assert code == 0, err
    code, err = run_main(monkeypatch, capsys, "env=cartpole", f"resume={run}", "total_timesteps=1024")
    assert code == 2 and err.startswith("error: env cannot be overridden when resuming"), err
    code, err = run_main(monkeypatch, capsys, "~tuned", f"resume={run}", "total_timesteps=1024")
    assert code == 2 and err.startswith("error: tuned cannot be overridden when resuming"), err
    code, err = run_main(monkeypatch, capsys, "seed=5", f"resume={run}", "total_timesteps=1024")
    assert code == 2 and err.startswith("error: seed cannot be overridden when resuming (the run has seed=4"), err
    assert err.count("\n") == 1
    assert checkpoint(run)["global_step"] == 640  # nothing lost


# --- fine-tuning from a checkpoint ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bandit_base(tmp_path_factory) -> Path:
    """A bandit policy trained on the default arms [1, 0, -1] (best arm 0)."""
    run = tmp_path_factory.mktemp("base") / "run"
    proc = subprocess.run([sys.executable, "-m", "experiments.train", "env=bandit", "eval.episodes=0",
                           "progress=false", f"hydra.run.dir={run}"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run


def policy_probs(state: dict) -> np.ndarray:
    logits = state["agent"]["policy"]["logits"].double().numpy()
    return np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()


def kl(p: np.ndarray, q: np.ndarray) -> float:
    return float((p * (np.log(p) - np.log(q))).sum())


def test_init_checkpoint_starts_policy_critic_and_reference_from_it(bandit_base):
    base = checkpoint(bandit_base)
    envs = make_vec_env(BANDIT)
    trainer = Trainer(bandit_cfg(kl_coef=0.1), envs, 1024, 7, init_agent=base["agent"])
    envs.close()
    for name, tensor in base["agent"]["policy"].items():
        assert torch.equal(trainer.agent.policy.member_state(0)[name], tensor)
        assert torch.equal(trainer.agent.ref_policy.member_state(0)[name], tensor)


def test_fine_tuning_with_kl_keeps_the_policy_near_its_start_monotonically_in_beta(monkeypatch, capsys, tmp_path,
                                                                                   bandit_base):
    start = policy_probs(checkpoint(bandit_base))
    assert start.argmax() == 0 and start[0] > 0.9
    kls, first_kl, max_kl = [], [], []
    for beta in (0.01, 0.3, 3.0):
        run = tmp_path / f"beta{beta}"
        code, err = run_main(monkeypatch, capsys, "env=bandit", f"init_checkpoint={bandit_base}",
                             f"agent.kl_coef={beta}", "env.kwargs.rewards=[-1,0,1]", "total_timesteps=2048",
                             "eval.episodes=0", f"hydra.run.dir={run}")
        assert code == 0, err
        logged = scalars(run)["losses/kl_ref"]
        first_kl.append(logged[0][1])
        max_kl.append(max(v for _, v in logged))
        kls.append(kl(policy_probs(checkpoint(run)), start))
    assert max(first_kl) < 1e-3  # the first update starts at the reference: KL ≈ 0
    assert max_kl[0] > max_kl[1] > max_kl[2] and max_kl[2] < 0.01, max_kl  # bounded, tighter as β grows
    assert kls[0] > kls[1] > kls[2], kls  # a larger β keeps the policy closer to the reference
    assert kls[0] > 10 * kls[2]


def test_init_checkpoint_from_another_env_or_network_is_refused(monkeypatch, capsys, tmp_path, bandit_base):
    code, err = run_main(monkeypatch, capsys, f"init_checkpoint={bandit_base}", f"hydra.run.dir={tmp_path / 'a'}")
    assert code == 2 and err.startswith("error: init_checkpoint: the checkpoint was trained on "
                                        "env.id='SoftmaxBandit-v0', not 'CartPole-v1'"), err
    code, err = run_main(monkeypatch, capsys, "env=bandit", "agent.policy=mlp", f"init_checkpoint={bandit_base}",
                         f"hydra.run.dir={tmp_path / 'b'}")
    assert code == 2 and err.startswith("error: init_checkpoint: the checkpoint's network has agent.policy="), err
    code, err = run_main(monkeypatch, capsys, "env=bandit", "env.kwargs.rewards=[1,0,-1,0]",
                         f"init_checkpoint={bandit_base}", f"hydra.run.dir={tmp_path / 'c'}")
    assert code == 2 and err.startswith("error: init_checkpoint: the checkpoint does not fit this env/network"), err
    assert all(err.count("\n") == 1 for err in [err])
    assert not (tmp_path / "c" / "checkpoint.pt").exists()


# --- group-relative advantages ---------------------------------------------------------------------------------

def test_group_advantages_match_hand_computed_values():
    rewards = np.array([[1.0, 0.0, -1.0, 0.0], [2.0, 2.0, 2.0, 2.0], [3.0, 1.0, 1.0, 3.0]])
    # row 0: mean 0, sample std sqrt(2/3); row 1: all equal; row 2: mean 2, sample std sqrt(4/3)
    s0, s2 = np.sqrt(2 / 3), np.sqrt(4 / 3)
    expected = np.array([[1 / s0, 0, -1 / s0, 0], [0, 0, 0, 0], [1 / s2, -1 / s2, -1 / s2, 1 / s2]])
    np.testing.assert_allclose(compute_group_advantages(rewards), expected, rtol=1e-6)
    np.testing.assert_allclose(compute_group_advantages(rewards, scale=False),
                               [[1, 0, -1, 0], [0, 0, 0, 0], [1, -1, -1, 1]])


def test_rollout_batch_uses_group_advantages_per_step():
    buf = RolloutBuffer(2, 4, 1, (), True)
    buf.obs[:] = 1.0
    buf.rewards[:] = [[1.0, 0.0, -1.0, 0.0], [5.0, 3.0, 3.0, 5.0]]
    buf.terminated[:] = buf.dones[:] = True
    batch = buf.batch(1.0, 1.0, advantage="group", group_scale=False)
    np.testing.assert_allclose(batch.advantages[0].numpy(), [1, 0, -1, 0, 1, -1, -1, 1])
    np.testing.assert_allclose(batch.returns[0].numpy(), buf.rewards.reshape(-1))  # the critic's target is unchanged
    buf.obs[1, 2] = 0.5  # two states in one group
    with pytest.raises(ConfigError, match="agent.advantage='group' is invalid for this env"):
        buf.batch(1.0, 1.0, advantage="group")


@pytest.mark.parametrize("scale", [True, False])
def test_bandit_converges_with_group_advantages(scale):
    envs = make_vec_env(EnvConfig(id="SoftmaxBandit-v0", num_envs=8, vectorization_mode="sync",
                                  autoreset_mode="same_step", kwargs={"rewards": [0.0, 1.0, 0.0, 0.5],
                                                                      "noise_std": 0.5}))
    trainer = Trainer(bandit_cfg(advantage="group", group_scale=scale), envs, 4096, 3)
    trainer.run()
    envs.close()
    logits = trainer.agent.policy.member(0).logits.detach().double()
    assert torch.softmax(logits, 0)[1] > 0.9


def test_group_advantages_need_same_step_autoreset_before_any_work():
    envs = make_vec_env(EnvConfig(id="SoftmaxBandit-v0", num_envs=4, vectorization_mode="sync",
                                  autoreset_mode="next_step"))
    with pytest.raises(ConfigError, match="agent.advantage='group' needs every step of a rollout to be a sample"):
        Trainer(bandit_cfg(advantage="group"), envs, 1024, 0)
    envs.close()


def test_group_advantages_are_refused_where_states_differ(monkeypatch, capsys, tmp_path):
    code, err = run_main(monkeypatch, capsys, "agent.advantage=group", "total_timesteps=1024",
                         f"hydra.run.dir={tmp_path}")
    assert code == 2 and err.startswith("error: agent.advantage='group' "), err
    assert err.count("\n") == 1


# --- spaces, autoreset and users' own envs ---------------------------------------------------------------------

OFFSET_ENV = '''
import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.registration import register


class OffsetBandit(gym.Env):
    """Three arms labelled -1, 0, 1 (Discrete(3, start=-1)); only arm -1 pays."""

    observation_space = spaces.Box(0.0, 1.0, (1,), np.float32)
    action_space = spaces.Discrete(3, start=-1)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.ones(1, np.float32), {}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        return np.ones(1, np.float32), float(action == -1), True, False, {}


register(id="OffsetBandit-v0", entry_point=OffsetBandit)
'''


def test_users_module_env_id_and_discrete_start_learn_the_best_action(tmp_path):
    pkg = tmp_path / "my_envs_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "envs.py").write_text(textwrap.dedent(OFFSET_ENV))
    run = tmp_path / "run"
    env = {**__import__("os").environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "experiments.train", "env=gym",
                           "env.id=my_envs_pkg.envs:OffsetBandit-v0",
                           "env.num_envs=8", "env.autoreset_mode=same_step", "agent.policy=tabular",
                           "agent.learning_rate=0.05", "agent.num_steps=16", "agent.num_minibatches=2",
                           "total_timesteps=2048", "eval.episodes=20", "progress=false", f"hydra.run.dir={run}"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=Path(__file__).parent.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "eval: mean_return=1.00" in proc.stderr + proc.stdout
    probs = policy_probs(checkpoint(run))
    assert probs.argmax() == 0 and probs[0] > 0.9  # index 0 is arm -1
    proc = subprocess.run([sys.executable, "-m", "experiments.evaluate", f"checkpoint={run}", "episodes=5",
                           "video=true"], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.startswith("error: video=true is unavailable: env.id='my_envs_pkg.envs:OffsetBandit-v0'")


def test_module_env_id_that_does_not_import_or_register_is_one_line(monkeypatch, capsys, tmp_path):
    code, err = run_main(monkeypatch, capsys, "env=gym", "env.id=no_such_module_xyz:Foo-v0",
                         f"hydra.run.dir={tmp_path}")
    assert code == 2 and err.startswith("error: env.id='no_such_module_xyz:Foo-v0' is invalid: module "), err
    code, err = run_main(monkeypatch, capsys, "env=gym", "env.id=envs.bandit:NotRegistered-v0",
                         f"hydra.run.dir={tmp_path}")
    assert code == 2 and "did not register 'NotRegistered-v0'" in err and err.count("\n") == 1, err


class _MultiBinaryEnv(gym.Env):
    observation_space = spaces.Box(-1, 1, (2,), np.float32)
    action_space = spaces.MultiBinary(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), 0.0, True, False, {}


class _MultiDiscreteEnv(_MultiBinaryEnv):
    action_space = spaces.MultiDiscrete([2, 3])


class _DictObsEnv(_MultiBinaryEnv):
    observation_space = spaces.Dict({"a": spaces.Box(-1, 1, (2,), np.float32)})
    action_space = spaces.Discrete(2)


class _ImageObsEnv(_MultiBinaryEnv):
    observation_space = spaces.Box(0, 255, (8, 8, 3), np.uint8)
    action_space = spaces.Discrete(2)


@pytest.mark.parametrize("env_cls, what", [(_MultiBinaryEnv, "actions"), (_MultiDiscreteEnv, "actions"),
                                           (_DictObsEnv, "observations"), (_ImageObsEnv, "observations")])
def test_trainer_itself_refuses_unsupported_spaces(env_cls, what):
    envs = gym.vector.SyncVectorEnv([env_cls, env_cls])
    with pytest.raises(ConfigError, match=f"is unsupported: {what} must be") as info:
        Trainer(PPOConfig(num_steps=8, num_minibatches=1), envs, 16, 0)
    assert "\n" not in str(info.value)


def test_trainer_itself_refuses_a_disabled_autoreset_vector_env():
    envs = gym.make_vec("CartPole-v1", 2, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": AutoresetMode.DISABLED})
    with pytest.raises(ConfigError, match="autoreset_mode=AutoresetMode.DISABLED"):
        Trainer(PPOConfig(num_steps=8, num_minibatches=1), envs, 16, 0)


# --- resume claims exactness only where it holds --------------------------------------------------------------

def test_resume_of_an_env_whose_state_is_not_captured_is_refused_or_explicitly_inexact(monkeypatch, capsys,
                                                                                       tmp_path):
    run = tmp_path / "run"
    args = ["env=gym", "env.id=LunarLander-v3", "env.num_envs=2", "agent.num_steps=64", "agent.num_minibatches=2",
            "eval.episodes=0"]
    code, err = run_main(monkeypatch, capsys, *args, "total_timesteps=128", f"hydra.run.dir={run}")
    assert code == 0, err
    before = (run / "checkpoint.pt").read_bytes()
    code, err = run_main(monkeypatch, capsys, f"resume={run}", "total_timesteps=256")
    assert code == 2 and err.startswith("error: resume: ") and "allow_inexact_resume=true" in err, err
    assert err.count("\n") == 1
    assert (run / "checkpoint.pt").read_bytes() == before
    code, err = run_main(monkeypatch, capsys, f"resume={run}", "total_timesteps=256", "allow_inexact_resume=true")
    assert code == 0, err
    assert checkpoint(run)["global_step"] == 256
    # the opt-in held for that resume only
    code, err = run_main(monkeypatch, capsys, f"resume={run}", "total_timesteps=384")
    assert code == 2 and "allow_inexact_resume=true" in err, err
    assert checkpoint(run)["global_step"] == 256


# --- learning-rate schedule and the value-loss weight ---------------------------------------------------------

def test_annealed_learning_rate_runs_from_the_full_rate_to_rate_over_n():
    envs = make_vec_env(CARTPOLE_SYNC)
    trainer = Trainer(PPOConfig(learning_rate=1e-3, num_steps=32, num_minibatches=1), envs, 10 * 128, 0)
    envs.close()
    assert trainer.num_iterations == 10
    assert trainer.learning_rate(1) == pytest.approx(1e-3)
    assert trainer.learning_rate(10) == pytest.approx(1e-4)


def test_generic_vf_coef_weighs_the_critic_as_cleanrls_half_on_half_mse(repo_root):
    from omegaconf import OmegaConf

    from agents.losses import compute_ppo_total_loss

    assert PPOConfig().vf_coef == 0.25
    assert OmegaConf.load(repo_root / "conf/agent/ppo.yaml").vf_coef == 0.25
    values, returns = torch.tensor([0.5, -1.0, 2.0]), torch.tensor([1.0, 1.0, 1.0])
    zeros = torch.zeros(3)
    out = compute_ppo_total_loss(zeros, zeros, zeros, values, returns, clip_ratio=0.2, vf_coef=0.25,
                                 entropy_coef=0.0, entropy=zeros)
    cleanrl = 0.5 * (0.5 * ((values - returns) ** 2).mean())  # CleanRL: v_loss = 0.5 * mse; loss += vf_coef * v_loss
    assert float(out["total_loss"]) == pytest.approx(float(cleanrl))


def test_init_checkpoint_with_other_observation_normalisation_is_refused(monkeypatch, capsys, tmp_path, bandit_base):
    code, err = run_main(monkeypatch, capsys, "env=bandit", "agent.normalize_obs=true",
                         f"init_checkpoint={bandit_base}", f"hydra.run.dir={tmp_path}")
    assert code == 2 and err.startswith("error: init_checkpoint: the checkpoint's policy was trained with "
                                        "agent.normalize_obs=False, this run has agent.normalize_obs=True"), err


def test_checkpoint_of_an_older_format_evaluates_but_does_not_resume(monkeypatch, capsys, tmp_path, bandit_base):
    from agents.checkpoint import save_checkpoint

    state = checkpoint(bandit_base)
    del state["minibatch_rng"]
    run = tmp_path / "old"
    save_checkpoint(state, run / "checkpoint.pt")
    raw = torch.load(run / "checkpoint.pt", weights_only=True)
    raw["format"] = 1
    torch.save(raw, run / "checkpoint.pt")
    code, err = run_main(monkeypatch, capsys, f"resume={run}", "total_timesteps=8192")
    assert code == 2 and "written by an older version of this package (format 1" in err and err.count("\n") == 1
    proc = subprocess.run([sys.executable, "-m", "experiments.evaluate", f"checkpoint={run}", "episodes=10"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and '"mean_return": 1.0' in proc.stdout, proc.stderr[-2000:]
