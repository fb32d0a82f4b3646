"""``python -m experiments.evaluate checkpoint=PATH``: its config as Hydra composes it, its result against an
independent in-process evaluation of the same checkpoint, its one-line errors, and the opt-in video."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import experiments.config  # noqa: F401  (registers the schemas)
from agents.checkpoint import save_checkpoint
from agents.config import ConfigError
from agents.evaluation import evaluate_policy
from agents.networks import MLPActorCritic, TabularActorCritic
from agents.inference import make_inference
from envs.vector import EnvConfig, make_vec_env
from experiments.config import EvaluateConfig
from experiments.evaluate import run_evaluation

REPO = Path(__file__).resolve().parent.parent
CONF = REPO / "conf"


def compose_eval(overrides=(), return_hydra_config: bool = False):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("evaluate", overrides=list(overrides), return_hydra_config=return_hydra_config)


def run_module(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=180)


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def cartpole_ckpt(tmp_path_factory) -> Path:
    """A real two-iteration CartPole run (8 envs × 64 steps) through the train entry point."""
    run_dir = tmp_path_factory.mktemp("eval") / "run"
    proc = run_module("experiments.train", f"hydra.run.dir={run_dir}", "progress=false", "total_timesteps=1024",
                      "env.num_envs=8", "agent.num_steps=64", "agent.num_minibatches=2", "eval.episodes=0",
                      cwd=run_dir.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def independent_result(run_dir: Path, episodes: int, seed: int, deterministic: bool, backend: str):
    """Evaluate the checkpoint without experiments.evaluate: the network rebuilt by hand from the saved config."""
    state = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    cfg = state["run"]["config"]
    policy = MLPActorCritic(4, 2, True, cfg["agent"]["hidden_sizes"], cfg["agent"]["activation"])
    policy.load_state_dict(state["agent"]["policy"])
    env_cfg = EnvConfig(**cfg["env"])
    return evaluate_policy(make_inference(policy, backend), lambda n: make_vec_env(env_cfg, n), episodes,
                           seed=seed, deterministic=deterministic)


def test_evaluate_config_composes_with_its_schema_and_writes_no_outputs():
    cfg = compose_eval(["checkpoint=run"], return_hydra_config=True)
    assert OmegaConf.get_type(cfg) is EvaluateConfig
    assert (cfg.checkpoint, cfg.episodes, cfg.deterministic, cfg.seed, cfg.video, cfg.video_dir) == \
        ("run", 100, True, 0, False, None)
    assert cfg.hydra.output_subdir is None and cfg.hydra.run.dir == "."
    assert cfg.hydra.runtime.choices["hydra/job_logging"] == "disabled"
    assert cfg.hydra.runtime.choices["hydra/hydra_logging"] == "disabled"
    assert OmegaConf.is_missing(compose_eval(), "checkpoint")


def test_evaluate_matches_an_independent_evaluation(cartpole_ckpt, tmp_path):
    proc = run_module("experiments.evaluate", f"checkpoint={cartpole_ckpt}", "episodes=7", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = last_json(proc.stdout)
    assert result["episodes"] == 7 and result["deterministic"] is True and result["seed"] == 0
    assert result["checkpoint"] == str((cartpole_ckpt / "checkpoint.pt").resolve())
    assert result["env_id"] == "CartPole-v1" and result["global_step"] == 1024

    ref = independent_result(cartpole_ckpt, 7, seed=0, deterministic=True, backend="torch")
    assert len(ref.returns) == 7
    assert result["mean_return"] == pytest.approx(ref.mean, abs=1e-9)
    assert result["std_return"] == pytest.approx(ref.std, abs=1e-9)
    assert f"{ref.mean:.2f} ± {ref.std:.2f} over 7 episodes" in proc.stdout
    assert list(tmp_path.iterdir()) == [], "evaluate must not create outputs/, .hydra/ or log files"


def test_evaluate_samples_when_not_deterministic(cartpole_ckpt, tmp_path):
    proc = run_module("experiments.evaluate", f"checkpoint={cartpole_ckpt / 'checkpoint.pt'}", "episodes=6",
                      "deterministic=false", "seed=3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = last_json(proc.stdout)
    assert result["deterministic"] is False and result["seed"] == 3
    sampled = independent_result(cartpole_ckpt, 6, seed=3, deterministic=False, backend="numpy")
    assert result["mean_return"] == pytest.approx(sampled.mean, abs=1e-9)
    greedy = independent_result(cartpole_ckpt, 6, seed=3, deterministic=True, backend="numpy")
    assert not np.array_equal(sampled.returns, greedy.returns)


@pytest.mark.parametrize("args, expected", [
    ([], "error: checkpoint is mandatory"),
    (["checkpoint={corrupt}"], "error: checkpoint="),
    (["checkpoint={ckpt}", "episodes=abc"], "error: episodes"),
])
def test_cli_errors_are_one_line_with_exit_code_2(cartpole_ckpt, tmp_path, args, expected):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"this is not a checkpoint")
    args = [a.format(corrupt=corrupt, ckpt=cartpole_ckpt) for a in args]
    proc = run_module("experiments.evaluate", *args, cwd=tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert proc.stderr.startswith(expected), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def bandit_checkpoint(path: Path, logits: list[float], rewards: list[float]) -> Path:
    """A hand-made checkpoint of the tabular bandit policy, in the layout the trainer writes."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["env=bandit", f"env.kwargs.rewards={rewards}"])
    policy = TabularActorCritic(len(logits))
    with torch.no_grad():
        policy.logits.copy_(torch.tensor(logits))
    state = {"agent": {"policy": policy.state_dict()}, "global_step": 0,
             "space": {"obs_dim": 1, "action_dim": len(logits), "discrete": True},
             "run": {"config": OmegaConf.to_container(cfg, resolve=True)}}
    return save_checkpoint(state, path)


def test_evaluate_takes_the_policys_mode_in_process(tmp_path, capsys):
    ckpt = bandit_checkpoint(tmp_path / "checkpoint.pt", logits=[0.0, 0.5, 3.0, 0.0], rewards=[0, 1, 2, 5])
    result = run_evaluation(compose_eval([f"checkpoint={tmp_path}", "episodes=9"]))
    assert (result["mean_return"], result["std_return"], result["episodes"]) == (2.0, 0.0, 9)
    assert last_json(capsys.readouterr().out) == result
    sampled = run_evaluation(compose_eval([f"checkpoint={ckpt}", "episodes=400", "deterministic=false"]))
    probs = torch.softmax(torch.tensor([0.0, 0.5, 3.0, 0.0]), 0).numpy()
    expected = float(probs @ np.array([0, 1, 2, 5]))
    assert sampled["mean_return"] == pytest.approx(expected, abs=4 * sampled["std_return"] / np.sqrt(400))
    assert sampled["std_return"] > 0


@pytest.mark.parametrize("case, match", [
    ("missing", "checkpoint='.*' is invalid: no checkpoint file"),
    ("foreign", "not a checkpoint of this package"),
    ("no_run", "lacks its run config"),
    ("wrong_net", "do not fit"),
    ("episodes_0", "episodes=0 is invalid"),
    ("seed_negative", "seed=-1 is invalid"),
    ("video_unrenderable", "video=true is unavailable: env.id='SoftmaxBandit-v0'"),
])
def test_errors_name_the_key(tmp_path, case, match):
    good = bandit_checkpoint(tmp_path / "good" / "checkpoint.pt", logits=[0, 1], rewards=[0, 1])
    overrides = [f"checkpoint={good}"]
    if case == "missing":
        overrides = [f"checkpoint={tmp_path / 'nope'}"]
    elif case == "foreign":
        torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
        overrides = [f"checkpoint={tmp_path / 'foreign.pt'}"]
    elif case == "no_run":
        state = torch.load(good, weights_only=True)
        del state["run"]
        torch.save(state, tmp_path / "no_run.pt")
        overrides = [f"checkpoint={tmp_path / 'no_run.pt'}"]
    elif case == "wrong_net":
        state = torch.load(good, weights_only=True)
        state["run"]["config"]["agent"]["policy"] = "mlp"  # tabular weights, MLP config
        torch.save(state, tmp_path / "wrong_net.pt")
        overrides = [f"checkpoint={tmp_path / 'wrong_net.pt'}"]
    elif case == "episodes_0":
        overrides.append("episodes=0")
    elif case == "seed_negative":
        overrides.append("seed=-1")
    elif case == "video_unrenderable":
        overrides.append("video=true")
    with pytest.raises(ConfigError, match=match):
        run_evaluation(compose_eval(overrides))


def test_an_added_key_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="episode"):
        run_evaluation(compose_eval([f"checkpoint={tmp_path}", "+episode=5"]))


def test_video_of_one_episode(cartpole_ckpt, tmp_path):
    """With rendering available (pygame, the 'video' extra) one episode is written: MP4 through Gymnasium's
    RecordVideo when moviepy is there, else a GIF. Without pygame the request is refused in one line."""
    video_dir = tmp_path / "videos"
    overrides = [f"checkpoint={cartpole_ckpt}", "episodes=2", "video=true", f"video_dir={video_dir}"]
    if importlib.util.find_spec("pygame") is None:
        with pytest.raises(ConfigError, match="video=true is unavailable .*pygame"):
            run_evaluation(compose_eval(overrides))
        return
    proc = run_module("experiments.evaluate", *overrides, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = last_json(proc.stdout)
    suffix = ".mp4" if importlib.util.find_spec("moviepy") is not None else ".gif"
    video = Path(result["video"])
    assert video.parent == video_dir and video.suffix == suffix
    assert video.stat().st_size > 1000
    if suffix == ".gif":
        from PIL import Image

        assert Image.open(video).n_frames >= 9  # CartPole episodes last at least ~9 steps
