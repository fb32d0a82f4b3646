"""The task words beyond CartPole: ``python -m experiments.train env=<word>`` picks ``conf/env/<word>.yaml`` and,
through the defaults entry ``optional tuned: ${env}``, ``conf/tuned/<word>.yaml``. Every word composes the way Hydra
composes it, validates, builds its real env, and carries exactly the values its tuned file states; a command-line
override still wins; one word per env family trains for two batches through the real entry point; and a Box2D or
MuJoCo word whose simulator cannot be imported is refused in one line naming the extra to install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from gymnasium import spaces
from gymnasium.error import DependencyNotInstalled
from gymnasium.vector import AutoresetMode
from omegaconf import OmegaConf

import experiments.config  # noqa: F401  (registers the schema, as the entry point does)
from agents.config import ConfigError, PPOConfig
from envs.vector import EnvConfig, _missing_simulator, env_spec, make_vec_env
from experiments.run import to_train_config
from helpers import compose_cfg, yaml_leaves

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "conf"

# word → (Gymnasium id, action space kind, SB3 minibatch size of the rl-baselines3-zoo entry it translates: its
# batch_size, capped at the batch where the entry's is larger — an independent check of num_minibatches)
SUITE = {
    "acrobot": ("Acrobot-v1", spaces.Discrete, 64),
    "mountaincar": ("MountainCar-v0", spaces.Discrete, 64),
    "pendulum": ("Pendulum-v1", spaces.Box, 64),
    "lunarlander": ("LunarLander-v3", spaces.Discrete, 64),
    "lunarlander_continuous": ("LunarLanderContinuous-v3", spaces.Box, 64),
    "bipedalwalker": ("BipedalWalker-v3", spaces.Box, 64),
    "halfcheetah": ("HalfCheetah-v5", spaces.Box, 64),
    "hopper": ("Hopper-v5", spaces.Box, 64),  # CleanRL's minibatch: the tuned file replaced the zoo's values
    "walker2d": ("Walker2d-v5", spaces.Box, 64),  # SB3's defaults: the tuned file replaced the zoo's values
    "ant": ("Ant-v5", spaces.Box, 64),
    "swimmer": ("Swimmer-v5", spaces.Box, 256),
    "invertedpendulum": ("InvertedPendulum-v5", spaces.Box, 32),
}
PPO_KEYS = set(PPOConfig.__dataclass_fields__)


def file_values(group: str, word: str) -> dict:
    """The values a config file states, read with plain YAML (not through Hydra)."""
    return yaml_leaves(CONF / group / f"{word}.yaml")


def same(a, b) -> bool:
    """Equal with the same kind of number (a tuned 3.0e-4 must not arrive as a string or an int)."""
    return a == b and (isinstance(a, bool) == isinstance(b, bool)) and (isinstance(a, float) == isinstance(b, float))


# --- composition ---------------------------------------------------------------------------------------------

def test_every_word_has_an_env_file_and_a_tuned_file():
    for word in SUITE:
        assert (CONF / "env" / f"{word}.yaml").is_file(), word
        assert (CONF / "tuned" / f"{word}.yaml").is_file(), word


@pytest.mark.parametrize("word", SUITE)
def test_tuned_file_says_where_its_values_came_from(word):
    lines = (CONF / "tuned" / f"{word}.yaml").read_text().splitlines()
    assert lines[0] == "# @package _global_"
    header = [line for line in lines if line.startswith("#")]
    text = "\n".join(header)
    assert "Source: rl-baselines3-zoo hyperparams/ppo.yml" in text and "Anchor to beat:" in text
    reached = [line for line in header if line.startswith("# Reached with this package")]  # measured or not yet
    assert len(reached) == 1 and f"--mode scores --envs {word} " in reached[0], reached
    values = file_values("tuned", word)
    assert set(values) - {"total_timesteps"} <= {f"agent.{k}" for k in PPO_KEYS}, "only agent keys and the budget"
    # none of these zoo entries uses a lin_ schedule: an annealed rate is a change, and the file says so
    changed = text.split("# Changed:", 1)[1].split("# Not expressible", 1)[0]
    assert values["agent.anneal_lr"] is False or "anneal_lr" in changed, changed


@pytest.mark.parametrize("word", SUITE)
def test_word_composes_validates_and_builds_its_env(word):
    env_id, action_kind, sb3_minibatch = SUITE[word]
    cfg = compose_cfg([f"env={word}"])
    env_file, tuned_file = file_values("env", word), file_values("tuned", word)
    for key, value in env_file.items():
        assert same(OmegaConf.select(cfg, f"env.{key}"), value), key
    for key, value in tuned_file.items():  # the tuned file wins over conf/agent/ppo.yaml and config.yaml
        assert same(OmegaConf.select(cfg, key), value), (key, OmegaConf.select(cfg, key), value)

    train_cfg = to_train_config(cfg)  # typed and validated: sizes divide, values in range
    assert train_cfg.env.id == env_id and train_cfg.env.autoreset_mode == "same_step"
    agent = train_cfg.agent
    for key, value in tuned_file.items():
        if key.startswith("agent."):
            assert same(getattr(agent, key.removeprefix("agent.")), value), key
    assert train_cfg.total_timesteps == tuned_file["total_timesteps"]
    assert agent.minibatch_size(train_cfg.env.num_envs) == sb3_minibatch
    assert train_cfg.total_timesteps >= 10 * agent.batch_size(train_cfg.env.num_envs)

    envs = make_vec_env(train_cfg.env)
    try:
        assert envs.unwrapped.spec.id == env_id
        assert envs.unwrapped.spec.kwargs["vectorization_mode"] == "sync"
        assert envs.num_envs == train_cfg.env.num_envs
        assert envs.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
        assert isinstance(envs.single_action_space, action_kind)
        assert isinstance(envs.single_observation_space, spaces.Box)
    finally:
        envs.close()


@pytest.mark.parametrize("word", ["hopper", "lunarlander", "acrobot"])
def test_the_command_line_wins_over_the_tuned_file(word):
    overrides = ["agent.learning_rate=0.00123", "agent.num_steps=64", "agent.num_minibatches=2",
                 "agent.anneal_lr=true", "env.num_envs=2", "total_timesteps=4096"]
    cfg = compose_cfg([f"env={word}", *overrides])
    train_cfg = to_train_config(cfg)
    assert train_cfg.agent.learning_rate == 0.00123 and train_cfg.agent.anneal_lr is True
    assert (train_cfg.agent.num_steps, train_cfg.agent.num_minibatches) == (64, 2)
    assert train_cfg.env.num_envs == 2 and train_cfg.total_timesteps == 4096
    tuned = file_values("tuned", word)  # what was not overridden still comes from the tuned file
    assert train_cfg.agent.gamma == tuned["agent.gamma"] and train_cfg.agent.gae_lambda == tuned["agent.gae_lambda"]
    assert train_cfg.env.id == SUITE[word][0]


def test_dropping_the_tuned_file_leaves_the_generic_defaults():
    train_cfg = to_train_config(compose_cfg(["env=hopper", "~tuned"]))
    assert train_cfg.env.id == "Hopper-v5"
    assert train_cfg.agent == PPOConfig()


# --- tiny real runs through the entry point, one per env family ------------------------------------------------

def run_module(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "experiments.train", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("word, shrink", [
    pytest.param("mountaincar", [], id="mountaincar"),  # classic control: the tuned batch (16 × 16)
    # Box2D: 16 × 32 instead of 16 × 1024 steps per batch (its 256 minibatches still divide it)
    pytest.param("lunarlander", ["agent.num_steps=32"], id="lunarlander"),
    pytest.param("hopper", [], id="hopper"),            # MuJoCo: the tuned batch (1 × 2048)
])
def test_word_trains_two_batches_through_the_entry_point(tmp_path, word, shrink):
    env_file, tuned = file_values("env", word), file_values("tuned", word)
    num_steps = int(shrink[0].split("=")[1]) if shrink else tuned["agent.num_steps"]
    batch = env_file["num_envs"] * num_steps
    run = tmp_path / "run"
    proc = run_module(tmp_path, f"env={word}", f"total_timesteps={2 * batch}", "eval.episodes=2", "progress=false",
                      f"hydra.run.dir={run}", *shrink)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert state["global_step"] == 2 * batch and state["iteration"] == 2
    saved = state["run"]["config"]
    assert saved["env"]["id"] == SUITE[word][0]
    for key, value in tuned.items():  # the run trained with the tuned values (num_steps possibly shrunk)
        if key.startswith("agent.") and key != "agent.num_steps":
            assert same(saved["agent"][key.removeprefix("agent.")], value), key
    assert saved["agent"]["num_steps"] == num_steps


# --- a simulator that is not installed ---------------------------------------------------------------------------

# Runs the real entry point in a fresh interpreter where importing one module fails, as when it is not installed:
# a meta-path finder raises ImportError for it (nothing is uninstalled).
BLOCKED_IMPORT = """
import runpy, sys

class BlockImport:
    def find_spec(self, name, path=None, target=None):
        if name == {module!r} or name.startswith({module!r} + "."):
            raise {error}
        return None

sys.meta_path.insert(0, BlockImport())
sys.argv = ["ppo-train", *{args!r}]
runpy.run_module("experiments.train", run_name="__main__", alter_sys=True)
"""


@pytest.mark.parametrize("word, module, error, extra", [
    # as a missing package fails: ModuleNotFoundError naming the module
    pytest.param("hopper", "mujoco", "ModuleNotFoundError(f'No module named {name!r}', name=name)", "mujoco",
                 id="mujoco"),
    # an ImportError that names no module: the env's family (gymnasium.envs.box2d) says which extra
    pytest.param("lunarlander", "Box2D", "ImportError('Box2D could not be loaded')", "box2d", id="box2d"),
])
def test_a_missing_simulator_names_the_extra_to_install(tmp_path, word, module, error, extra):
    run = tmp_path / "run"
    code = BLOCKED_IMPORT.format(module=module, error=error,
                                 args=[f"env={word}", f"hydra.run.dir={run}", "progress=false"])
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    err = proc.stderr.strip()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert err.splitlines() == [err], err  # one line
    assert err.startswith(f"error: env.id='{SUITE[word][0]}' needs the {module} simulator"), err
    assert f'pip install -e ".[{extra}]"' in err and "gymnasium[" not in err and "Traceback" not in err
    assert not (run / "checkpoint.pt").exists() and not (run / "tb").exists()


def test_an_unknown_id_keeps_its_one_line_error():
    with pytest.raises(ConfigError, match="not a registered Gymnasium id") as info:
        make_vec_env(EnvConfig(id="NoSuchEnv-v0"))
    assert "\n" not in str(info.value) and "pip install" not in str(info.value)


def test_only_a_simulator_import_is_mapped_to_an_extra():
    """A missing pygame (CarRacing's other dependency) is not the box2d extra's to fix; a missing mujoco is."""
    def not_installed(name: str) -> DependencyNotInstalled:
        exc = DependencyNotInstalled(f"{name} is not installed")
        exc.__cause__ = ModuleNotFoundError(f"No module named {name!r}", name=name)
        return exc

    assert _missing_simulator(env_spec("CarRacing-v3"), not_installed("pygame")) is None
    assert _missing_simulator(env_spec("CarRacing-v3"), not_installed("Box2D")) == "Box2D"
    assert _missing_simulator(env_spec("Hopper-v5"), not_installed("mujoco")) == "mujoco"
    assert _missing_simulator(env_spec("Hopper-v5"), ImportError("no name")) == "mujoco"  # by the env's family
    assert _missing_simulator(env_spec("Acrobot-v1"), ImportError("no name")) is None
    assert _missing_simulator(env_spec("Hopper-v5"), ValueError("not an import")) is None


def test_env_gym_gets_the_generic_defaults_from_hydra_and_from_python():
    """env=gym (any id nobody tuned for) composes conf/env/gym.yaml and conf/tuned/gym.yaml, not PPOConfig's own
    defaults; PPO(env_id) starts from the same settings."""
    from agents import PPO

    cfg = compose_cfg(["env=gym", "env.id=Acrobot-v1"])
    generic = file_values("tuned", "gym")
    assert set(generic) <= {f"agent.{k}" for k in PPO_KEYS}
    for key, value in generic.items():
        assert same(OmegaConf.select(cfg, key), value), key
    assert cfg.env.num_envs == file_values("env", "gym")["num_envs"]
    train_cfg = to_train_config(cfg)
    assert train_cfg.agent != PPOConfig() and train_cfg.agent.normalize_obs
    model = PPO("Acrobot-v1")
    try:
        assert model.config.agent == train_cfg.agent and model.config.env == train_cfg.env
    finally:
        model.close()
    tuned = PPO.tuned("acrobot")  # a tuned task starts from PPOConfig's defaults, as env=acrobot does
    try:
        assert tuned.config.agent == to_train_config(compose_cfg(["env=acrobot"])).agent
    finally:
        tuned.close()
