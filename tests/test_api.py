"""The Python API (``agents.PPO``) against the Hydra entry point: same trainer, same checkpoints, same errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import compose_cfg, read_scalars, run_main

from agents import PPO, ConfigError, IterationInfo, Member, PPOConfig, Trainer
from agents.checkpoint import load_checkpoint
from agents.run_config import to_train_config
from envs.vector import EnvConfig, make_vec_env

ROOT = Path(__file__).resolve().parent.parent
# A small CartPole run written both ways: 3 iterations of 4 envs × 32 steps, 5 evaluation episodes.
SMALL = dict(num_envs=4, num_steps=32, num_minibatches=2, ppo_epochs=2)
HYDRA_SMALL = ["env=gym", "env.id=CartPole-v1", "env.num_envs=4", "agent.num_steps=32", "agent.num_minibatches=2",
               "agent.ppo_epochs=2", "total_timesteps=384", "eval.episodes=5", "seed=3", "progress=false"]


def hydra_run(monkeypatch, capsys, run_dir: Path, *extra: str) -> dict:
    code, err = run_main(monkeypatch, capsys, *HYDRA_SMALL, *extra, f"hydra.run.dir={run_dir}")
    assert code == 0, err
    return load_checkpoint(run_dir)


def test_api_run_equals_hydra_run(tmp_path, monkeypatch, capsys):
    """The same settings and seed give the same run through either front door: bit-identical weights, the same
    final evaluation and the same TensorBoard tags and values."""
    hydra_state = hydra_run(monkeypatch, capsys, tmp_path / "hydra")
    model = PPO("CartPole-v1", seed=3, eval_episodes=5, **SMALL)
    result = model.learn(384, logdir=tmp_path / "api")
    api_state = load_checkpoint(tmp_path / "api")
    assert result.global_step == hydra_state["global_step"] == 384
    for name, tensor in hydra_state["agent"]["policy"].items():
        assert torch.equal(api_state["agent"]["policy"][name], tensor), name
    assert torch.equal(api_state["final_eval"]["returns"], hydra_state["final_eval"]["returns"])
    assert result.eval.mean == pytest.approx(float(hydra_state["final_eval"]["returns"].mean()))
    theirs, ours = read_scalars(tmp_path / "hydra" / "tb"), read_scalars(tmp_path / "api" / "tb")
    training = {tag for tag in theirs if tag.startswith("losses/")}
    assert training and training <= set(ours)
    for tag in training:
        assert [v for _, v in ours[tag]] == pytest.approx([v for _, v in theirs[tag]], rel=1e-6), tag
    # the API's checkpoint holds a full run config: the Hydra side validates it as its own
    assert to_train_config(api_state["run"]["config"]).agent == to_train_config(hydra_state["run"]["config"]).agent


def test_checkpoints_cross_load_and_evaluate_alike(tmp_path, monkeypatch, capsys):
    """PPO.load reads a Hydra run's checkpoint; experiments.evaluate reads the API's; the same seed evaluates the
    same episodes either way."""
    hydra_run(monkeypatch, capsys, tmp_path / "hydra")
    loaded = PPO.load(tmp_path / "hydra")
    assert loaded.num_timesteps == 384 and loaded.exact
    ours = loaded.evaluate(episodes=7, seed=11)
    model = PPO("CartPole-v1", seed=5, eval_episodes=0, **SMALL)
    model.learn(256)
    model.save(tmp_path / "api.pt")
    for checkpoint, expected in ((tmp_path / "hydra", ours.mean),
                                 (tmp_path / "api.pt", model.evaluate(episodes=7, seed=11).mean)):
        out = subprocess.run([sys.executable, "-m", "experiments.evaluate", f"checkpoint={checkpoint}", "episodes=7",
                              "seed=11"], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout.strip().splitlines()[-1])["mean_return"] == pytest.approx(expected)


def test_hydra_resumes_an_api_run_exactly(tmp_path, monkeypatch, capsys):
    """A run folder written by learn(logdir=...) is a Hydra run folder: `resume=` continues it, and the result equals
    one uninterrupted API run of the whole budget (constant learning rate, so the schedule is the same)."""
    whole = PPO("CartPole-v1", seed=2, eval_episodes=0, anneal_lr=False, **SMALL)
    whole.learn(512)
    first = PPO("CartPole-v1", seed=2, eval_episodes=0, anneal_lr=False, **SMALL)
    first.learn(256, logdir=tmp_path / "run")
    code, err = run_main(monkeypatch, capsys, f"resume={tmp_path / 'run'}", "total_timesteps=512", "progress=false",
                         f"hydra.run.dir={tmp_path / 'run'}")
    assert code == 0, err
    resumed = load_checkpoint(tmp_path / "run")
    assert resumed["global_step"] == 512
    for name, tensor in whole.trainer.agent.member_state_dict(0)["policy"].items():
        assert torch.equal(resumed["agent"]["policy"][name], tensor), name


def test_learn_twice_equals_learn_once_and_load_continues():
    """learn(a) + learn(b) = learn(a + b) (constant learning rate); save → load → learn continues the same run."""
    once = PPO("CartPole-v1", seed=4, eval_episodes=0, anneal_lr=False, **SMALL)
    once.learn(3 * 128)
    twice = PPO("CartPole-v1", seed=4, eval_episodes=0, anneal_lr=False, **SMALL)
    twice.learn(128)
    twice.learn(2 * 128)
    assert twice.num_timesteps == once.num_timesteps == 384
    split = PPO("CartPole-v1", seed=4, eval_episodes=0, anneal_lr=False, **SMALL)
    split.learn(2 * 128)
    state = split.trainer.state_dict()
    again = PPO.from_config(split.config)
    again.trainer.load_state_dict(state)
    again.learn(128)
    for other in (twice, again):
        for a, b in zip(once.trainer.agent.policy.parameters(), other.trainer.agent.policy.parameters()):
            assert torch.equal(a, b)


def test_callbacks_see_the_logged_metrics_and_can_stop(tmp_path):
    """A callback gets each iteration's scalars, equal to what TensorBoard holds; returning False stops the run,
    which still writes its checkpoint and final evaluation."""
    seen: list[IterationInfo] = []

    def stop_at_three(info: IterationInfo):
        seen.append(info)
        return info.iteration < 3

    model = PPO("CartPole-v1", seed=1, eval_episodes=4, **SMALL)
    result = model.learn(10 * 128, logdir=tmp_path, callbacks=[stop_at_three], eval_every=2)
    assert [i.iteration for i in seen] == [1, 2, 3] and result.stopped_by_callback
    assert result.global_step == 3 * 128 and result.eval is not None and len(result.eval.returns) == 4
    assert load_checkpoint(tmp_path)["iteration"] == 3
    logged = read_scalars(tmp_path / "tb")
    for info in seen:
        for tag, value in info.metrics.items():
            assert (info.global_step, pytest.approx(value, rel=1e-6)) in logged[tag], tag
    assert "eval/mean_return" in seen[1].metrics and "eval/mean_return" not in seen[0].metrics
    model.learn(128)  # a stopped run trains on with the next learn
    assert model.num_timesteps == 4 * 128


def test_a_callback_stops_one_member_of_a_population():
    cfg = PPOConfig(num_steps=32, num_minibatches=2, ppo_epochs=1)
    envs = make_vec_env(EnvConfig(id="CartPole-v1", num_envs=2 * 2))
    trainer = Trainer.population([Member(cfg, 0), Member(cfg, 1)], envs, 4 * 64, eval_episodes=0)
    calls: list[tuple[int, int]] = []

    def stop_member_1(info: IterationInfo):
        calls.append((info.member, info.iteration))
        return not (info.member == 1 and info.iteration == 2)

    results = trainer.run_population(callbacks=[stop_member_1])
    envs.close()
    assert [r.global_step for r in results] == [4 * 64, 2 * 64]
    assert [r.stopped_by_callback for r in results] == [False, True]
    assert calls == [(0, 1), (1, 1), (0, 2), (1, 2), (0, 3), (0, 4)]


def test_predict_matches_the_evaluation_policy():
    """predict() takes the deterministic action of the policy the evaluation runs, single and batched, and an
    env-side Box action clipped to the bounds."""
    model = PPO("Pendulum-v1", seed=0, eval_episodes=0, num_envs=2, num_steps=64, normalize_obs=True)
    model.learn(256)
    obs = np.random.default_rng(0).uniform(-1, 1, (16, 3)).astype(np.float32) * [1, 1, 8]
    inference = model.inference()
    expected = np.clip(inference.dist_params(obs), -2.0, 2.0)
    assert np.allclose(model.predict(obs), expected, atol=1e-6)
    assert np.allclose(model.predict(obs[0]), expected[0], atol=1e-6)
    big = PPO("Pendulum-v1", seed=0, eval_episodes=0, init_log_std=0.0)
    with torch.no_grad():  # a mean far outside the bounds: the action is clipped to them
        big.trainer.agent.policy.actor_layers[-1][1].fill_(50.0)
    assert np.all(big.predict(obs) == 2.0)


def test_tuned_agent_equals_the_hydra_composition():
    model = PPO.tuned("cartpole", seed=7)
    composed = to_train_config(compose_cfg(["env=cartpole", "seed=7"]))
    assert model.config.agent == composed.agent and model.config.env == composed.env
    assert model.budget == composed.total_timesteps
    assert PPO.tuned("cartpole", clip_ratio=0.3, num_envs=2).config.agent.clip_ratio == 0.3


@pytest.mark.parametrize("make, message", [
    (lambda: PPO("CartPole-v1", clip_rato=0.1), "clip_rato is not a setting of PPO"),
    (lambda: PPO("CartPole-v1", clip_ratio=-1), "agent.clip_ratio=-1.0 is invalid"),
    (lambda: PPO("CartPole-v1", clip_ratio="abc"), "agent.clip_ratio: Value 'abc'"),
    (lambda: PPO("CartPole-v1", num_envs=0), "env.num_envs=0 is invalid"),
    (lambda: PPO("NoSuchEnv-v0"), "env.id='NoSuchEnv-v0' is invalid"),
    (lambda: PPO.tuned("cartpol"), "task='cartpol' is invalid"),
    (lambda: PPO("CartPole-v1").learn(-5), "total_timesteps=-5 is invalid"),
    (lambda: PPO("CartPole-v1").learn(), "total_timesteps is required"),
    (lambda: PPO("CartPole-v1").learn(128, eval_every=-1), "eval.every=-1 is invalid"),
    (lambda: PPO("CartPole-v1").predict(np.zeros(5)), "obs has shape (5,)"),
    (lambda: PPO("CartPole-v1").evaluate(episodes=0), "episodes=0 is invalid"),
    (lambda: PPO.load("/no/such/run"), "path='/no/such/run' is invalid"),
])
def test_bad_arguments_get_the_one_line_errors(make, message):
    with pytest.raises(ConfigError) as err:
        make()
    assert message in str(err.value) and "\n" not in str(err.value)


def test_loading_a_foreign_file_loses_nothing(tmp_path):
    bad = tmp_path / "notes.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="not a readable checkpoint"):
        PPO.load(bad)
    assert bad.read_bytes() == b"not a checkpoint"


def test_the_example_script_runs(tmp_path):
    """examples/quickstart.py as a user runs it (a short budget): it trains, evaluates, saves, loads, predicts and
    exports."""
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py"), "4096"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(": ", 1) for line in out.stdout.strip().splitlines())
    assert 9.0 <= float(lines["evaluation"]) <= 500.0 and 9.0 <= float(lines["one episode with predict"]) <= 500.0
    assert (tmp_path / "runs" / "quickstart.pt").is_file() and (tmp_path / "runs" / "quickstart" / "tb").is_dir()
    exported = torch.export.load(str(tmp_path / lines["exported"])).module()
    model = PPO.load(tmp_path / "runs" / "quickstart.pt")
    obs = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    assert np.array_equal(exported(torch.from_numpy(obs)).numpy(), model.predict(obs))


def test_the_python_api_imports_no_hydra(tmp_path):
    """Training, saving and loading from Python never import Hydra (nor the Hydra entry points)."""
    script = ("import sys\nfrom agents import PPO\nm = PPO('CartPole-v1', num_envs=2, num_steps=16, eval_episodes=2)\n"
              "m.learn(64)\nm.save('m.pt')\nPPO.load('m.pt').predict([0.0, 0.0, 0.0, 0.0])\n"
              "print(sorted({k.split('.')[0] for k in sys.modules} & {'hydra', 'experiments'}))")
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_learn_edge_budgets_and_a_reached_stop_return(tmp_path):
    """learn(0) and a budget under one batch leave a valid run config (save → load works); a stop_return reached by
    one learn does not keep the next from training; a single callable is accepted as the callbacks."""
    model = PPO("CartPole-v1", seed=0, num_envs=2, num_steps=16, eval_episodes=2)
    model.learn(0)
    model.learn(5)
    assert model.num_timesteps == 0
    PPO.load(model.save(tmp_path / "m.pt"))
    first = model.learn(160, stop_return=0.0, eval_every=1)
    assert first.global_step == 32
    calls = []
    again = model.learn(64, stop_return=0.0, eval_every=1, callbacks=calls.append)
    assert again.global_step == 64 and [i.global_step for i in calls] == [64]


# --- device ------------------------------------------------------------------------------------------------------
HAS_CUDA = torch.cuda.is_available()


@pytest.mark.parametrize("device, message", [
    ("gpu", "device='gpu' is invalid: must be cpu, cuda or cuda:N"),
    ("cuda:x", "device='cuda:x' is invalid"),
    ("cuda:99", "device='cuda:99' is not available"),
] + ([] if HAS_CUDA else [("cuda", "device='cuda' is not available: this torch sees no CUDA GPU")]))
def test_a_device_this_machine_cannot_train_on_is_one_line(tmp_path, monkeypatch, capsys, device, message):
    """From Python and from Hydra: the key, what is allowed, exit code 2, nothing written."""
    with pytest.raises(ConfigError) as err:
        PPO("CartPole-v1", device=device, **SMALL)
    assert message in str(err.value) and "\n" not in str(err.value)
    code, err_text = run_main(monkeypatch, capsys, *HYDRA_SMALL, f"device={device}", f"hydra.run.dir={tmp_path}")
    assert code == 2 and message in err_text and "Traceback" not in err_text
    assert not (tmp_path / "checkpoint.pt").exists() and not (tmp_path / "tb").exists()
    sweep = tmp_path / "sweep"  # a population multirun refuses each job when it is collected: nothing trains
    code, err_text = run_main(monkeypatch, capsys, "-m", *HYDRA_SMALL, "seed=3,4", "hydra/launcher=population",
                              f"device={device}", f"hydra.sweep.dir={sweep}")
    assert code == 2 and message in err_text and "Traceback" not in err_text
    assert not list(sweep.glob("*/tb")) and not list(sweep.glob("*/checkpoint.pt"))


def test_a_run_trained_on_a_gpu_loads_evaluates_and_resumes_on_the_cpu(tmp_path, monkeypatch, capsys):
    """A checkpoint holds host tensors whatever the device it trained on, and its config says the device: here a
    CPU run's checkpoint relabelled device=cuda, as a GPU run writes it. experiments.evaluate reads it anywhere;
    PPO.load and resume train it on the machine's own device when told to (device="cpu" / device=cpu), exactly
    as the run would have gone on."""
    whole = PPO("CartPole-v1", seed=6, eval_episodes=0, anneal_lr=False, **SMALL)
    whole.learn(512)
    first = PPO("CartPole-v1", seed=6, eval_episodes=0, anneal_lr=False, **SMALL)
    first.learn(256, logdir=tmp_path / "run")
    path = tmp_path / "run" / "checkpoint.pt"
    state = torch.load(path, weights_only=True)
    state["run"]["config"]["device"] = "cuda"
    torch.save(state, path)
    out = subprocess.run([sys.executable, "-m", "experiments.evaluate", f"checkpoint={path}", "episodes=3"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    if not HAS_CUDA:
        with pytest.raises(ConfigError, match="device='cuda' is not available"):
            PPO.load(path)
    loaded = PPO.load(path, device="cpu")
    loaded.learn(256)
    for a, b in zip(whole.trainer.agent.policy.parameters(), loaded.trainer.agent.policy.parameters()):
        assert torch.equal(a, b)
    code, err = run_main(monkeypatch, capsys, f"resume={tmp_path / 'run'}", "total_timesteps=512", "device=cpu",
                         "progress=false", f"hydra.run.dir={tmp_path / 'run'}")
    assert code == 0, err
    resumed = load_checkpoint(tmp_path / "run")
    for name, tensor in whole.trainer.agent.member_state_dict(0)["policy"].items():
        assert torch.equal(resumed["agent"]["policy"][name], tensor), name
