"""Training as a user runs it: every config composes the way Hydra composes it, and tiny real runs of
``python -m experiments.train`` write the TensorBoard tags, config text, HParams and checkpoint that the README
describes, read back with TensorBoard's own reader (``EventAccumulator``), not by trusting the writer."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2

import experiments.config  # noqa: F401  (registers the schema, as the entry point does)
from agents.config import ConfigError, PPOConfig
from agents.ppo import adapt_kl_coef
from envs.vector import EnvConfig, make_vec_env
from experiments.config import TrainConfig
from experiments.run import to_train_config
from helpers import compose_cfg, yaml_leaves

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "conf"

REQUIRED_TAGS = (
    "losses/policy_loss", "losses/value_loss", "losses/entropy", "losses/clip_fraction", "losses/approx_kl",
    "losses/explained_variance", "losses/total_loss", "charts/episodic_return", "charts/episodic_length",
    "charts/learning_rate", "charts/SPS",
)
PER_ITERATION_TAGS = tuple(t for t in REQUIRED_TAGS if "episodic" not in t and "explained_variance" not in t)
"""Logged at every iteration. (Explained variance is undefined, so not logged, when all returns are equal.)"""
KL_TAGS = ("losses/kl_ref", "charts/kl_coef")


# --- Hydra composition ---------------------------------------------------------------------------------------

def get(cfg, dotted: str):
    return OmegaConf.select(cfg, dotted, throw_on_missing=False)


ENV_OPTIONS = sorted(p.stem for p in (CONF / "env").glob("*.yaml"))
TUNED_OPTIONS = sorted(p.stem for p in (CONF / "tuned").glob("*.yaml"))


def test_config_groups_are_the_expected_ones():
    assert {"cartpole", "bandit", "gym"} <= set(ENV_OPTIONS)
    assert set(TUNED_OPTIONS) <= set(ENV_OPTIONS), "a tuned file must be named after an env option"


@pytest.mark.parametrize("env", ENV_OPTIONS)
def test_every_env_option_composes_validates_and_builds(env):
    overrides = [f"env={env}"] + (["env.id=Acrobot-v1"] if env == "gym" else [])
    cfg = compose_cfg(overrides)
    assert OmegaConf.get_type(cfg) is TrainConfig
    assert OmegaConf.get_type(cfg.env) is EnvConfig and OmegaConf.get_type(cfg.agent) is PPOConfig

    env_file = yaml_leaves(CONF / "env" / f"{env}.yaml")
    tuned_file = yaml_leaves(CONF / "tuned" / f"{env}.yaml") if env in TUNED_OPTIONS else {}
    for key, value in env_file.items():
        if value == "???":
            continue
        expected = tuned_file.get(f"env.{key}", value)
        assert get(cfg, f"env.{key}") == expected, key
    for key, value in tuned_file.items():  # the tuned file wins over the group defaults and _self_
        assert get(cfg, key) == value, key
    if env == "gym":
        assert cfg.env.id == "Acrobot-v1"

    train_cfg = to_train_config(cfg)  # validated: sizes divide, values in range
    assert isinstance(train_cfg, TrainConfig)
    assert isinstance(train_cfg.env, EnvConfig) and isinstance(train_cfg.agent, PPOConfig)
    assert isinstance(train_cfg.agent.learning_rate, float) and isinstance(train_cfg.agent.num_steps, int)
    assert isinstance(train_cfg.agent.anneal_lr, bool) and isinstance(train_cfg.total_timesteps, int)
    assert all(isinstance(h, int) for h in train_cfg.agent.hidden_sizes)
    envs = make_vec_env(train_cfg.env)
    try:
        assert envs.num_envs == train_cfg.env.num_envs
    finally:
        envs.close()


def test_default_is_cartpole_with_its_tuned_values():
    cfg = compose_cfg()
    assert cfg.env.id == "CartPole-v1"
    for key, value in yaml_leaves(CONF / "tuned" / "cartpole.yaml").items():
        assert get(cfg, key) == value, key


def test_bandit_option_is_the_tabular_softmax_bandit():
    train_cfg = to_train_config(compose_cfg(["env=bandit"]))
    assert train_cfg.env.id == "SoftmaxBandit-v0"
    assert train_cfg.agent.policy == "tabular"
    assert train_cfg.env.autoreset_mode == "same_step"
    assert list(train_cfg.env.kwargs["rewards"]) == [1.0, 0.0, -1.0]
    overridden = to_train_config(compose_cfg(["env=bandit", "env.kwargs.rewards=[0,1,0,0]"]))
    assert list(overridden.env.kwargs["rewards"]) == [0, 1, 0, 0]


def test_agent_file_matches_the_schema_defaults():
    """conf/agent/ppo.yaml spells out PPOConfig's defaults: one value per name in both places."""
    file_values = yaml.safe_load((CONF / "agent" / "ppo.yaml").read_text())
    assert file_values == OmegaConf.to_container(OmegaConf.structured(PPOConfig))


def test_gym_option_without_an_id_is_refused():
    cfg = compose_cfg(["env=gym"])
    with pytest.raises(ConfigError, match="env.id"):
        to_train_config(cfg)


@pytest.mark.parametrize("override", [
    "agent.clip_ration=0.1",      # typo'd key
    "env.num_env=4",              # typo'd key in a group
    "agent.num_steps=abc",        # wrong type
    "env.num_envs=four",
    "seed=1.5",
    "agent.norm_adv=maybe",
    "agent.hidden_sizes=64",
    "env=cartpol",                # a group option that does not exist
])
def test_compose_rejects_typos_and_wrong_types(override):
    with pytest.raises((HydraException, OmegaConfBaseException)):
        compose_cfg([override])


@pytest.mark.parametrize("override, key", [("+agent.clip_coef=0.2", "clip_coef"), ("+foo=1", "foo")])
def test_an_added_key_is_refused_before_training(override, key):
    """Hydra lets '+key=value' add a key to a structured config; the run's typed config refuses it (a user
    who writes +agent.clip_coef=0.2 must not train with the default clip_ratio believing otherwise)."""
    cfg = compose_cfg([override])
    with pytest.raises(ConfigError, match=key):
        to_train_config(cfg)


@pytest.mark.parametrize("content, key", [("num_env: 4\n", "num_env"), ("num_envs: four\n", "num_envs")])
def test_compose_rejects_a_config_file_with_a_typo_or_wrong_type(tmp_path, content, key):
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    (conf / "env" / "broken.yaml").write_text("id: CartPole-v1\n" + content)
    with pytest.raises((HydraException, OmegaConfBaseException), match=key):
        compose_cfg(["env=broken"], config_dir=conf)


# --- tiny real runs ------------------------------------------------------------------------------------------

def run_module(module: str, *args: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def train(run_dir: Path, *overrides: str) -> Path:
    proc = run_module("experiments.train", f"hydra.run.dir={run_dir}", "progress=false", *overrides,
                      cwd=run_dir.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def events(run_dir: Path) -> EventAccumulator:
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc


def scalars(acc: EventAccumulator, tag: str) -> tuple[list[int], np.ndarray]:
    points = acc.Scalars(tag)
    return [p.step for p in points], np.array([p.value for p in points], dtype=np.float64)


def saved_config(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)["run"]["config"]


def check_common(run_dir: Path, discrete_actions: int | None) -> tuple[EventAccumulator, int, int]:
    """Checks every run must pass; returns the reader, the batch (env steps per iteration) and iterations."""
    cfg = saved_config(run_dir)
    batch = cfg["env"]["num_envs"] * cfg["agent"]["num_steps"]
    iterations = cfg["total_timesteps"] // batch
    acc = events(run_dir)
    tags = set(acc.Tags()["scalars"])
    assert set(REQUIRED_TAGS) <= tags, sorted(set(REQUIRED_TAGS) - tags)

    for tag in tags:
        steps, values = scalars(acc, tag)
        assert np.isfinite(values).all(), tag
        if tag.startswith("hparams/"):
            continue
        assert all(s % batch == 0 and 0 < s <= iterations * batch for s in steps), (tag, steps)
    expected_steps = [batch * i for i in range(1, iterations + 1)]
    for tag in PER_ITERATION_TAGS:
        assert scalars(acc, tag)[0] == expected_steps, tag

    _, entropy = scalars(acc, "losses/entropy")
    if discrete_actions is not None:
        assert (entropy > 0).all() and (entropy <= math.log(discrete_actions) + 1e-6).all(), entropy
    _, clip = scalars(acc, "losses/clip_fraction")
    assert ((clip >= 0) & (clip <= 1)).all()
    _, kl = scalars(acc, "losses/approx_kl")
    assert (kl >= -1e-6).all()  # ≥ 0 in exact arithmetic; float32 (r − 1) − log r rounds to ±1e-9 near r = 1
    _, value_loss = scalars(acc, "losses/value_loss")
    assert (value_loss >= 0).all()
    _, ev = scalars(acc, "losses/explained_variance")
    assert (ev <= 1.0 + 1e-6).all()
    _, sps = scalars(acc, "charts/SPS")
    assert (sps > 0).all()

    # total = policy + vf_coef·value − entropy_coef·entropy (+ β·kl_ref), minibatch means of a linear formula
    _, policy_loss = scalars(acc, "losses/policy_loss")
    _, total = scalars(acc, "losses/total_loss")
    agent = cfg["agent"]
    expected_total = policy_loss + agent["vf_coef"] * value_loss - agent["entropy_coef"] * entropy
    if agent["kl_coef"] > 0:
        assert KL_TAGS[0] in tags and KL_TAGS[1] in tags
        expected_total = expected_total + scalars(acc, "charts/kl_coef")[1] * scalars(acc, "losses/kl_ref")[1]
    else:
        assert not tags & set(KL_TAGS), "no KL penalty, no KL tags"
    np.testing.assert_allclose(total, expected_total, rtol=1e-4, atol=1e-4)

    # learning rate: linear decay to 0 over the run (lr·(1 − (i−1)/iterations)), or constant
    _, lr = scalars(acc, "charts/learning_rate")
    if agent["anneal_lr"]:
        expected_lr = agent["learning_rate"] * (1 - np.arange(iterations) / iterations)
        assert (np.diff(lr) < 0).all()
    else:
        expected_lr = np.full(iterations, agent["learning_rate"])
    np.testing.assert_allclose(lr, expected_lr, rtol=1e-6)
    return acc, batch, iterations


def check_config_text_and_hparams(run_dir: Path, acc: EventAccumulator) -> None:
    cfg = saved_config(run_dir)
    (text_event,) = acc.Tensors("config/text_summary")
    text = text_event.tensor_proto.string_val[0].decode()
    assert text.startswith("```yaml\n") and text.rstrip().endswith("```")
    assert yaml.safe_load(text.strip().strip("`").removeprefix("yaml\n")) == cfg

    content = acc.PluginTagToContent("hparams")
    assert {"_hparams_/experiment", "_hparams_/session_start_info", "_hparams_/session_end_info"} <= set(content)
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = start.session_start_info.hparams
    assert hparams["env.id"].string_value == cfg["env"]["id"]
    assert hparams["seed"].number_value == cfg["seed"]
    assert hparams["agent.clip_ratio"].number_value == pytest.approx(cfg["agent"]["clip_ratio"])
    assert hparams["agent.num_steps"].number_value == cfg["agent"]["num_steps"]
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    metric_tags = {m.name.tag for m in experiment.metric_infos}
    assert "hparams/final_eval_return" in metric_tags
    end = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_end_info"])
    assert end.session_end_info.status == 1  # STATUS_SUCCESS
    if cfg["eval"]["episodes"]:
        final = scalars(acc, "hparams/final_eval_return")[1][-1]
        steps, eval_mean = scalars(acc, "eval/mean_return")
        assert steps[-1] == cfg["total_timesteps"] and final == pytest.approx(eval_mean[-1])


def load_checkpoint_plain(run_dir: Path) -> dict:
    state = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert state["global_step"] == saved_config(run_dir)["total_timesteps"]
    return state


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory) -> Path:
    return train(tmp_path_factory.mktemp("runs") / "cartpole", "total_timesteps=2048", "eval.episodes=5",
                 "env.num_envs=8", "agent.num_steps=64", "agent.num_minibatches=2", "agent.learning_rate=0.001",
                 "agent.anneal_lr=true", "agent.entropy_coef=0.01")


@pytest.fixture(scope="module")
def bandit_run(tmp_path_factory) -> Path:
    return train(tmp_path_factory.mktemp("runs") / "bandit", "env=bandit", "env.kwargs.rewards=[0,1,0,0]",
                 "eval.episodes=10")


@pytest.fixture(scope="module")
def box_run(tmp_path_factory) -> Path:
    return train(tmp_path_factory.mktemp("runs") / "pendulum", "env=gym", "env.id=Pendulum-v1", "env.num_envs=2",
                 "agent.num_steps=128", "total_timesteps=768", "eval.episodes=2", "agent.kl_coef=0.1",
                 "agent.kl_target=0.01")


def test_cartpole_run_logs_every_tag_against_the_global_step(cartpole_run):
    acc, batch, iterations = check_common(cartpole_run, discrete_actions=2)
    assert (batch, iterations) == (512, 4)
    assert scalars(acc, "charts/learning_rate")[1] == pytest.approx([1e-3, 7.5e-4, 5e-4, 2.5e-4], rel=1e-6)
    assert "charts/action_std" not in acc.Tags()["scalars"]  # Discrete actions
    # CartPole pays 1 per step: an episode's return is its length
    np.testing.assert_allclose(scalars(acc, "charts/episodic_return")[1], scalars(acc, "charts/episodic_length")[1])
    assert (scalars(acc, "charts/episodic_length")[1] >= 8).all()
    check_config_text_and_hparams(cartpole_run, acc)


def test_cartpole_run_leaves_a_loadable_checkpoint(cartpole_run):
    state = load_checkpoint_plain(cartpole_run)
    assert state["iteration"] == 4
    assert state["space"] == {"obs_dim": 4, "action_dim": 2, "discrete": True}
    policy = state["agent"]["policy"]
    assert policy["actor.0.weight"].shape == (64, 4) and policy["critic.4.weight"].shape == (1, 64)
    assert state["run"]["config"]["env"]["id"] == "CartPole-v1"
    assert (cartpole_run / ".hydra" / "config.yaml").is_file()


def test_bandit_run_converges_to_the_best_arm(bandit_run, tmp_path):
    acc, batch, _ = check_common(bandit_run, discrete_actions=4)
    assert batch == 8 * 16
    state = load_checkpoint_plain(bandit_run)
    logits = state["agent"]["policy"]["logits"]
    probs = torch.softmax(logits, dim=0)
    assert int(logits.argmax()) == 1 and float(probs[1]) > 0.9, probs
    _, entropy = scalars(acc, "losses/entropy")
    assert entropy[-1] < entropy[0] < math.log(4) + 1e-6  # from uniform towards one arm
    assert scalars(acc, "eval/mean_return")[1][-1] == 1.0

    proc = run_module("experiments.evaluate", f"checkpoint={bandit_run}", "episodes=20", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["mean_return"] == 1.0 and result["std_return"] == 0.0 and result["episodes"] == 20
    assert "1.00 ± 0.00" in proc.stdout


def test_box_action_run_logs_action_std_and_the_kl_penalty(box_run):
    acc, batch, iterations = check_common(box_run, discrete_actions=None)
    assert (batch, iterations) == (256, 3)
    tags = set(acc.Tags()["scalars"])
    assert "charts/action_std" in tags and set(KL_TAGS) <= tags
    _, action_std = scalars(acc, "charts/action_std")
    assert ((action_std > 0.5) & (action_std < 2.0)).all()  # starts at exp(init_log_std=0) = 1
    # Gaussian entropy per action dim: ½·log(2πe) + log σ; σ moves a little within an update
    _, entropy = scalars(acc, "losses/entropy")
    np.testing.assert_allclose(entropy, 0.5 * math.log(2 * math.pi * math.e) + np.log(action_std), atol=0.02)
    # adaptive β: the next iteration's β follows the PPO paper's rule applied to this iteration's KL
    _, kl_ref = scalars(acc, "losses/kl_ref")
    _, kl_coef = scalars(acc, "charts/kl_coef")
    assert (kl_ref >= 0).all() and kl_coef[0] == pytest.approx(0.1)
    for i in range(iterations - 1):
        assert kl_coef[i + 1] == pytest.approx(adapt_kl_coef(kl_coef[i], kl_ref[i], 0.01), rel=1e-6)
    state = load_checkpoint_plain(box_run)
    assert state["space"] == {"obs_dim": 3, "action_dim": 1, "discrete": False}
    assert state["agent"]["policy"]["log_std"].exp().item() == pytest.approx(action_std[-1], rel=1e-5)
    assert "ref_policy" in state["agent"]
    check_config_text_and_hparams(box_run, acc)


def test_a_refused_value_stops_before_any_output(tmp_path):
    proc = run_module("experiments.train", f"hydra.run.dir={tmp_path / 'run'}", "agent.num_minibatches=3",
                      cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith("error: agent.num_minibatches=3") and "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "checkpoint.pt").exists() and not (tmp_path / "run" / "tb").exists()


def test_normalize_hand_table_per_member_weighted_and_single_sample():
    """x = [1, 2, 3, 6]: mean 3, population std √3.5; a member's weight-0 padding is left out; one sample gives 0."""
    from agents.ppo import normalize

    x = torch.tensor([[1.0, 2.0, 3.0, 6.0], [2.0, 4.0, 9.0, 100.0]], dtype=torch.float64)
    expected = (torch.tensor([1.0, 2.0, 3.0, 6.0], dtype=torch.float64) - 3.0) / 3.5 ** 0.5
    out = normalize(x)
    torch.testing.assert_close(out[0], expected, rtol=0, atol=1e-7)
    weights = torch.tensor([[0.25] * 4, [1 / 3, 1 / 3, 1 / 3, 0.0]], dtype=torch.float64)  # member 1: 3 samples
    out = normalize(x, weights=weights)
    torch.testing.assert_close(out[0], expected, rtol=0, atol=1e-7)
    std = (((torch.tensor([2.0, 4.0, 9.0]) - 5.0) ** 2).mean() ** 0.5).item()  # mean 5
    torch.testing.assert_close(out[1, :3], (torch.tensor([2.0, 4.0, 9.0], dtype=torch.float64) - 5.0) / std,
                               rtol=0, atol=1e-7)
    assert normalize(torch.tensor([[7.0]])).item() == 0.0
