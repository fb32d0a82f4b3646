"""Reliability: bad input refused in one line, signals checkpoint, resume is exact, saves are atomic,
numerical faults stop the run, checkpoints never run code."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from agents import NumericalError, PPOConfig, Trainer
from agents.checkpoint import load_checkpoint
from agents.config import ConfigError
from envs.vector import EnvConfig, make_vec_env
from helpers import read_scalars, run_main

TIMING_TAGS = {"charts/SPS", "charts/rollout_seconds", "charts/update_seconds"}


# --- envs with unsupported spaces or numerical faults, registered for these tests only -----------------------

class _ImageObsEnv(gym.Env):
    observation_space = spaces.Box(0, 255, (8, 8, 3), np.uint8)
    action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros((8, 8, 3), np.uint8), {}

    def step(self, action):
        return np.zeros((8, 8, 3), np.uint8), 0.0, True, False, {}


class _DictObsEnv(_ImageObsEnv):
    observation_space = spaces.Dict({"a": spaces.Box(-1, 1, (2,), np.float32)})


class _MultiDiscreteEnv(_ImageObsEnv):
    observation_space = spaces.Box(-1, 1, (2,), np.float32)
    action_space = spaces.MultiDiscrete([2, 3])


class _NanAfterEnv(gym.Env):
    """Observations are finite until ``nan_at`` steps have been taken, then NaN."""

    observation_space = spaces.Box(-1, 1, (2,), np.float32)
    action_space = spaces.Discrete(2)

    def __init__(self, nan_at: int = 100):
        self.nan_at, self.t = nan_at, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        obs = np.full(2, np.nan if self.t >= self.nan_at else 0.1, np.float32)
        return obs, 1.0, False, False, {}


for _name, _cls in {"ImageObs": _ImageObsEnv, "DictObs": _DictObsEnv, "MultiDiscrete": _MultiDiscreteEnv,
                    "NanAfter": _NanAfterEnv}.items():
    if f"tests/{_name}-v0" not in gym.registry:
        gym.register(f"tests/{_name}-v0", entry_point=_cls, max_episode_steps=50)


# --- helpers ---------------------------------------------------------------------------------------------------

def scalars(tb_dir: Path) -> dict[str, list[tuple[int, float]]]:
    return read_scalars(tb_dir)


@pytest.fixture(scope="module")
def cartpole_checkpoint(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("ckpt_run")
    proc = subprocess.run([sys.executable, "-m", "experiments.train", "total_timesteps=1024", "eval.episodes=0",
                           "env.num_envs=4", "agent.num_steps=128", f"hydra.run.dir={run}"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return run / "checkpoint.pt"


# --- bad input ------------------------------------------------------------------------------------------------

BAD_INPUTS = [
    (["agent.clip_rati=0.1"], "agent.clip_rati"),
    (["agent.clip_ratio=abc"], "agent.clip_ratio"),
    (["agent.clip_ratio=0"], "agent.clip_ratio"),
    (["agent.clip_ratio=-0.2"], "agent.clip_ratio"),
    (["agent.gamma=0"], "agent.gamma"),
    (["agent.gamma=1.5"], "agent.gamma"),
    (["agent.gae_lambda=1.1"], "agent.gae_lambda"),
    (["agent.entropy_coef=-0.01"], "agent.entropy_coef"),
    (["agent.vf_coef=-1"], "agent.vf_coef"),
    (["agent.learning_rate=0"], "agent.learning_rate"),
    (["agent.learning_rate=nan"], "agent.learning_rate"),
    (["agent.num_minibatches=3"], "agent.num_minibatches"),
    (["agent.ppo_epochs=0"], "agent.ppo_epochs"),
    (["agent.activation=sigmoid"], "agent.activation"),
    (["agent.hidden_sizes=[]"], "agent.hidden_sizes"),
    (["agent.target_kl=0"], "agent.target_kl"),
    (["agent.kl_target=0.01"], "agent.kl_target"),
    (["agent.policy=tabular", "env=gym", "env.id=Pendulum-v1"], "agent.policy"),
    (["total_timesteps=0"], "total_timesteps"),
    (["seed=-1"], "seed"),
    (["env.num_envs=0"], "env.num_envs"),
    (["env.id=NoSuchEnv-v0"], "env.id"),
    (["env=gym"], "env.id"),
    (["env=nope"], "env/nope"),
    (["env=bandit", "env.kwargs.rewards=[]"], "rewards"),
    (["env=bandit", "env.kwargs.noise_std=-1"], "noise_std"),
    (["env=gym", "env.id=tests/ImageObs-v0"], "env.id"),
    (["env=gym", "env.id=tests/DictObs-v0"], "env.id"),
    (["env=gym", "env.id=tests/MultiDiscrete-v0"], "env.id"),
    (["eval.episodes=-1"], "eval.episodes"),
    (["seed=18446744073709551616"], "seed"),
    (["eval.every=2", "eval.episodes=0"], "eval.episodes"),
    (["eval.stop_return=475", "eval.episodes=0"], "eval.episodes"),
    (["ref_checkpoint=/some/run"], "ref_checkpoint"),
    (["resume=/no/such/checkpoint.pt"], "resume"),
    (["ref_checkpoint=/no/such/checkpoint.pt", "agent.kl_coef=0.1"], "ref_checkpoint"),
]


@pytest.mark.parametrize("overrides,key", BAD_INPUTS, ids=[" ".join(o) for o, _ in BAD_INPUTS])
def test_bad_input_is_refused_in_one_line(monkeypatch, capsys, tmp_path, overrides, key):
    code, err = run_main(monkeypatch, capsys, *overrides, f"hydra.run.dir={tmp_path}")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code != 0
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and key in lines[0], err
    assert "Traceback" not in err
    assert not (tmp_path / "checkpoint.pt").exists()


def test_bad_input_from_the_real_command_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "experiments.train", "agent.gamma=2", f"hydra.run.dir={tmp_path}"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: agent.gamma=2.0 is invalid: must be in (0, 1]"


def test_corrupt_and_foreign_checkpoints_are_refused_and_left_alone(monkeypatch, capsys, tmp_path,
                                                                    cartpole_checkpoint):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(cartpole_checkpoint.read_bytes()[:200])
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    for path in (corrupt, foreign):
        before = path.read_bytes()
        code, err = run_main(monkeypatch, capsys, f"resume={path}", f"hydra.run.dir={tmp_path / 'x'}")
        assert code == 2 and err.count("\n") == 1 and err.startswith(f"error: resume={str(path)!r} is invalid")
        assert path.read_bytes() == before


def test_checkpoint_from_another_network_or_env_is_refused(monkeypatch, capsys, tmp_path, cartpole_checkpoint):
    before = cartpole_checkpoint.read_bytes()
    code, err = run_main(monkeypatch, capsys, f"ref_checkpoint={cartpole_checkpoint}", "agent.kl_coef=0.1",
                         "agent.hidden_sizes=[32]", f"hydra.run.dir={tmp_path / 'a'}")
    assert code == 2 and err.startswith("error: ref_checkpoint: the checkpoint's network has "
                                        "agent.hidden_sizes=[64, 64], this run agent.hidden_sizes=[32]"), err
    code, err = run_main(monkeypatch, capsys, f"ref_checkpoint={cartpole_checkpoint}", "agent.kl_coef=0.1",
                         "env=gym", "env.id=Acrobot-v1", f"hydra.run.dir={tmp_path / 'b'}")
    assert code == 2 and "env.id='CartPole-v1'" in err, err
    code, err = run_main(monkeypatch, capsys, f"ref_checkpoint={cartpole_checkpoint}", "agent.kl_coef=0.1",
                         "agent.activation=relu", f"hydra.run.dir={tmp_path / 'd'}")  # same shapes, other policy
    assert code == 2 and err.startswith("error: ref_checkpoint: the checkpoint's network has agent.activation="), err
    code, err = run_main(monkeypatch, capsys, f"resume={cartpole_checkpoint}", "agent.clip_ratio=0.3",
                         f"hydra.run.dir={tmp_path / 'c'}")
    assert code == 2 and err.startswith("error: agent.clip_ratio cannot be overridden when resuming"), err
    assert cartpole_checkpoint.read_bytes() == before


# --- security ---------------------------------------------------------------------------------------------------

class _Payload:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_checkpoint_loading_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"format": 1, "payload": _Payload(str(marker))}, evil)
    with pytest.raises(ConfigError, match="not a readable checkpoint"):
        load_checkpoint(evil)
    assert not marker.exists()
    torch.load(evil, weights_only=False)  # the same file with code execution allowed does run the payload
    assert marker.exists()


# --- atomic saves ---------------------------------------------------------------------------------------------

_SAVER = """
import sys, torch
from agents.checkpoint import save_checkpoint
path = sys.argv[1]
big = torch.arange(6_000_000, dtype=torch.float64)
i = 0
while True:
    i += 1
    save_checkpoint({"i": i, "big": big + i}, path)
    print(i, flush=True)
"""


def test_kill_9_during_save_never_damages_the_previous_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pt"
    rng = np.random.default_rng(0)
    for _ in range(5):
        proc = subprocess.Popen([sys.executable, "-c", _SAVER, str(path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip().isdigit()  # at least one save of this process completed
        time.sleep(float(rng.uniform(0.0, 0.3)))  # land somewhere inside a ~50 MB write
        proc.kill()
        proc.wait()
        proc.stdout.close()
        state = load_checkpoint(path)
        assert torch.equal(state["big"], torch.arange(6_000_000, dtype=torch.float64) + state["i"])
    assert not [p for p in tmp_path.iterdir() if p.name != "checkpoint.pt" and not p.name.endswith(".tmp")]


# --- numerical faults ------------------------------------------------------------------------------------------

def test_nan_observation_stops_with_the_iteration_and_keeps_the_last_good_checkpoint(tmp_path):
    env_cfg = EnvConfig(id="tests/NanAfter-v0", num_envs=2, kwargs={"nan_at": 300}, max_episode_steps=1000)
    cfg = PPOConfig(num_steps=32, num_minibatches=2)
    ckpt = tmp_path / "checkpoint.pt"
    trainer = Trainer(cfg, make_vec_env(env_cfg), 64 * 20, seed=0, checkpoint_path=ckpt, checkpoint_every=1,
                      eval_episodes=0, progress=False)
    with pytest.raises(NumericalError, match=r"^iteration 10: non-finite value in env observations"):
        trainer.run()
    state = load_checkpoint(ckpt)
    assert state["iteration"] == 9 and state["global_step"] == 9 * 64
    assert all(torch.isfinite(p).all() for p in state["agent"]["policy"].values())


def test_nonfinite_members_names_each_members_first_nonfinite_value():
    """Per member (row k of each value reshaped to [P, …]): NaN, +inf and -inf are found in tensors and arrays, the
    first named value wins, and finite values however large are not."""
    from agents.train import nonfinite_members

    params = torch.zeros(5, 3, 4)
    params[1, 2, 3] = float("nan")
    params[2, 0, 0] = float("inf")
    params[3, 1, 1] = -float("inf")
    params[4] = torch.finfo(torch.float32).max
    loss = torch.tensor([0.0, 1.0, float("nan"), 0.0, 0.0])
    rewards = np.zeros((7, 5))  # [steps, P], transposed as the trainer passes it
    rewards[6, 4] = np.inf
    bad = nonfinite_members({"loss": loss, "parameter": params, "rewards": rewards.T}, 5)
    assert bad == {1: "parameter", 2: "loss", 3: "parameter", 4: "rewards"}
    assert nonfinite_members({"parameter": params[[0, 4]]}, 2) == {}


def test_nan_from_the_command_line_is_one_line_exit_3(monkeypatch, capsys, tmp_path):
    code, err = run_main(monkeypatch, capsys, "env=gym", "env.id=tests/NanAfter-v0", "+env.kwargs.nan_at=300",
                         "env.max_episode_steps=1000", "env.num_envs=2", "agent.num_steps=32",
                         "agent.num_minibatches=2", "total_timesteps=1280", "checkpoint_every=1",
                         f"hydra.run.dir={tmp_path}")
    assert code == 3
    assert err.strip().splitlines() == [
        "error: iteration 10: non-finite value in env observations; the run stopped and its last good "
        "checkpoint is kept"]
    assert load_checkpoint(tmp_path / "checkpoint.pt")["iteration"] == 9


# --- determinism, signals and exact resume ---------------------------------------------------------------------

def _metrics(tb_dir: Path) -> dict:
    return {tag: values for tag, values in scalars(tb_dir).items() if tag not in TIMING_TAGS}


def test_same_seed_same_metrics(tmp_path):
    def run(path):
        proc = subprocess.run([sys.executable, "-m", "experiments.train", "total_timesteps=4096",
                               "eval.episodes=5", f"hydra.run.dir={path}"], capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr
        return _metrics(path / "tb")

    a, b = run(tmp_path / "a"), run(tmp_path / "b")
    assert a == b and len(a["losses/policy_loss"]) == 8


def _start(args, path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "experiments.train", *args, f"hydra.run.dir={path}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)


@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_checkpoints_and_resume_equals_uninterrupted_run(tmp_path, sig, code):
    args = ["total_timesteps=20480", "checkpoint_every=4", "eval.episodes=10"]
    full = subprocess.run([sys.executable, "-m", "experiments.train", *args, f"hydra.run.dir={tmp_path / 'full'}"],
                          capture_output=True, text=True, timeout=300)
    assert full.returncode == 0, full.stderr

    run = tmp_path / "cut"
    proc = _start(args, run)
    _wait_for(run / "checkpoint.pt", proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    state = load_checkpoint(run / "checkpoint.pt")
    assert 0 < state["global_step"] < 20480, "the signal must land mid-run"
    logged = _metrics(run / "tb")
    assert logged["losses/policy_loss"][-1][0] == state["global_step"]  # flushed up to the checkpoint

    resumed = subprocess.run([sys.executable, "-m", "experiments.train", f"resume={run}",
                              f"hydra.run.dir={tmp_path / 'resume_invocation'}"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert _metrics(run / "tb") == _metrics(tmp_path / "full" / "tb")
    assert load_checkpoint(run / "checkpoint.pt")["global_step"] == 20480


def test_resume_after_kill_9_equals_uninterrupted_run(tmp_path):
    """kill -9 can land after a periodic checkpoint: TensorBoard then holds events past it (the logger is flushed
    at every checkpoint, so nothing before it is missing); the resumed run drops those and continues."""
    args = ["total_timesteps=20480", "checkpoint_every=3", "eval.episodes=0"]
    full = subprocess.run([sys.executable, "-m", "experiments.train", *args, f"hydra.run.dir={tmp_path / 'full'}"],
                          capture_output=True, text=True, timeout=300)
    assert full.returncode == 0, full.stderr
    run = tmp_path / "killed"
    proc = _start(args, run)
    _wait_for(run / "checkpoint.pt", proc)
    time.sleep(0.3)
    proc.kill()
    proc.communicate()
    state = load_checkpoint(run / "checkpoint.pt")
    assert 0 < state["global_step"] < 20480
    resumed = subprocess.run([sys.executable, "-m", "experiments.train", f"resume={run / 'checkpoint.pt'}",
                              f"hydra.run.dir={tmp_path / 'again'}"], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert _metrics(run / "tb") == _metrics(tmp_path / "full" / "tb")


class _Recorder:
    """Collects what the trainer logs (timing tags aside), in place of TensorBoard, for exact comparisons."""

    def __init__(self) -> None:
        self.rows: list = []

    def scalars(self, values, step) -> None:
        self.rows.append((step, {k: v for k, v in values.items() if k not in TIMING_TAGS}))

    def flush(self) -> None:
        pass


RESUME_CASES = {
    "cartpole-native-next-step": (EnvConfig(id="CartPole-v1", num_envs=4), PPOConfig(num_steps=64)),
    "cartpole-sync-same-step-truncating": (
        EnvConfig(id="CartPole-v1", num_envs=4, vectorization_mode="sync", autoreset_mode="same_step",
                  max_episode_steps=40), PPOConfig(num_steps=64)),
    "bandit-noisy-adaptive-kl": (
        EnvConfig(id="SoftmaxBandit-v0", num_envs=4, kwargs={"noise_std": 0.5}, autoreset_mode="same_step"),
        PPOConfig(num_steps=16, policy="tabular", kl_coef=0.1, kl_target=0.01)),
    "pendulum-box-actions-kl": (EnvConfig(id="Pendulum-v1", num_envs=2), PPOConfig(num_steps=64, kl_coef=0.05)),
    "pendulum-normalized-obs-and-reward": (EnvConfig(id="Pendulum-v1", num_envs=2),
                                           PPOConfig(num_steps=64, normalize_obs=True, normalize_reward=True)),
    "cartpole-same-step-truncating-normalized": (
        EnvConfig(id="CartPole-v1", num_envs=4, vectorization_mode="sync", autoreset_mode="same_step",
                  max_episode_steps=40), PPOConfig(num_steps=64, normalize_obs=True, normalize_reward=True)),
}


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_resume_in_process_equals_uninterrupted_for_every_autoreset_mode_and_space(tmp_path, case):
    """Stop after 8 of 16 iterations, load the checkpoint into a fresh trainer (fresh env, re-seeded torch) and
    continue: every logged metric equals the uninterrupted run's — env state, RNGs, optimizer, β and π_ref."""
    env_cfg, cfg = RESUME_CASES[case]
    total = 16 * cfg.batch_size(env_cfg.num_envs)

    def trainer(logger, path):
        return Trainer(cfg, make_vec_env(env_cfg), total, seed=3, logger=logger, checkpoint_path=path,
                       eval_episodes=0, progress=False)

    full = _Recorder()
    trainer(full, tmp_path / "full.pt").run()
    cut = _Recorder()
    calls = iter(range(100))
    assert trainer(cut, tmp_path / "cut.pt").run(should_stop=lambda: next(calls) >= 8).interrupted
    resumed = trainer(cut, tmp_path / "cut.pt")
    resumed.load_state_dict(load_checkpoint(tmp_path / "cut.pt"))
    resumed.run()
    assert len(full.rows) == 16 and cut.rows == full.rows


def test_unwritable_run_dir_is_one_line(monkeypatch, capsys, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code, err = run_main(monkeypatch, capsys, f"hydra.run.dir={blocker / 'run'}")
    assert code == 2 and err.strip().splitlines() == [f"error: [Errno 20] Not a directory: '{blocker / 'run'}'"]


def test_async_vector_env_run_is_refused_on_resume_not_resumed_inexactly(monkeypatch, capsys, tmp_path):
    run = tmp_path / "async"
    code, err = run_main(monkeypatch, capsys, "env.vectorization_mode=async", "env.num_envs=2",
                         "agent.num_steps=64", "total_timesteps=256", "eval.episodes=0", f"hydra.run.dir={run}")
    assert code == 0, err
    before = (run / "checkpoint.pt").read_bytes()
    code, err = run_main(monkeypatch, capsys, f"resume={run}", "total_timesteps=512",
                         f"hydra.run.dir={tmp_path / 'again'}")
    assert code == 2 and err.startswith("error: resume: the run used an async vector env"), err
    assert (run / "checkpoint.pt").read_bytes() == before


def test_ctrl_c_outside_a_training_loop_is_one_line_exit_130(monkeypatch, capsys, tmp_path):
    """Ctrl-C before training starts (here: while the envs are made) has no checkpoint to write: one line, exit
    130 as for an interrupted run, no traceback."""
    import experiments.run

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(experiments.run, "make_vec_env", interrupted)
    code, err = run_main(monkeypatch, capsys, "env=bandit", "total_timesteps=256", f"hydra.run.dir={tmp_path}")
    assert code == 130
    assert err.strip().splitlines() == ["interrupted: stopped at once; every checkpoint already written is kept"]
    assert not (tmp_path / "checkpoint.pt").exists()


def test_entry_points_take_the_start_up_heap_out_of_garbage_collection():
    """``hydra_one_line_errors`` collects the garbage there is, then freezes what is alive before the first job
    (the imported modules) once per process, so the collector's full passes skip it."""
    script = ("import gc, sys, weakref\n"
              "from experiments.run import hydra_one_line_errors\n"
              "gc.disable()  # no automatic pass: only the entry point collects\n"
              "class Node: pass\n"
              "dropped = Node(); dropped.me = dropped; ref = weakref.ref(dropped); del dropped  # a garbage cycle\n"
              "before = gc.get_freeze_count()\n"
              "counts = []\n"
              "hydra_one_line_errors(lambda: counts.append(gc.get_freeze_count()))\n"
              "kept = [[i] for i in range(20000)]  # alive at the second call: frozen only if it froze again\n"
              "hydra_one_line_errors(lambda: counts.append(gc.get_freeze_count()))\n"
              "print(before, *counts, ref() is None)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode == 0, out.stderr
    before, first, second, collected = out.stdout.split()
    before, first, second = int(before), int(first), int(second)
    assert before == 0
    assert collected == "True"     # the garbage cycle was collected before the freeze, not kept for good
    assert first > 50_000          # torch, Hydra and the package's modules, frozen at the first call
    assert abs(second - first) < 1000  # only once per process
