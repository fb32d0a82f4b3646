"""Speed benchmarks: throughput, time-to-solve, peak memory and learning-curve parity (console script
``ppo-benchmark``).

Examples::

    python -m experiments.benchmark                                  # every report, CartPole-v1
    python -m experiments.benchmark --mode throughput --no-sb3
    python -m experiments.benchmark --mode throughput --cleanrl-script ~/cleanrl/ppo.py \\
        --cleanrl-python ~/cleanrl/.venv/bin/python                 # CleanRL's ppo.py run live, side by side
    python -m experiments.benchmark --mode solve --seeds 10 --override agent.learning_rate=2e-3
    python -m experiments.benchmark --mode parity --seeds 10 --steps 50000 --json parity.json
    python -m experiments.benchmark --mode scores --envs halfcheetah,hopper --seeds 3   # hours: not in --mode all

What each report measures (every figure comes with its spread: min / median / max over repeats, or per seed):

- **throughput**: env steps/s of a training run, split into rollout (acting + env steps), update (GAE, batch,
  minibatch epochs) and other (logging, checks) time — at CleanRL's default CartPole settings, built explicitly
  through Hydra overrides (``~tuned`` drops our tuned file, then every CleanRL value is set), and at our tuned
  default; ``--repeats`` runs each (default 3). Also the wall clock of ``python -m experiments.train`` for 50k
  steps at CleanRL's settings, *including Python start-up*, as a fresh process (``--wall-runs``, default 3).
  With ``--cleanrl-script PATH`` (CleanRL's own ``cleanrl/ppo.py``, kept outside this repository) CleanRL runs
  live the same way: whole-process wall time of ``ppo.py --total-timesteps 50000`` at its CartPole defaults, no
  tracking or video, its ``runs/`` written to a temporary folder, interleaved with our runs, under
  ``--cleanrl-python`` (an interpreter of an environment where it runs: it pins gymnasium 0.29.1). Without it, the
  CleanRL column is the documented figure of shared/ECOSYSTEM.md, labelled as such: not a live run.
  Stable-Baselines3 PPO runs live with the same settings when it is installed (``pip install -e .[bench]``).
- **solve**: per seed, train with a deterministic 100-episode evaluation every ``--eval-every-steps`` env
  steps until its mean first reaches the env's reward threshold (475 for CartPole-v1); env steps and training
  wall seconds *excluding evaluation time* (measured and subtracted, for both libraries); median over seeds
  (an unsolved seed counts as infinitely slow) and how many seeds solved within ``--steps``. The seeds start at
  ``--first-seed`` (default 1000): the tuned CartPole config was tuned on seeds 0–39, so scores on those would
  flatter it. SB3 PPO runs with the rl-zoo3 tuned CartPole-v1 hyperparameters and is evaluated by the same
  evaluator (same envs and seeds).
- **memory**: peak RSS of a default training run (``python -m experiments.train`` as the only child of a small
  wrapper process, which reads ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``), ``--repeats`` times.
- **parity**: the fast path (``agent.rollout_backend=numpy``) against the plain nn.Module path (``torch``) at the
  same hyperparameters and seeds (the same fresh seeds as solve): evaluation returns at fixed steps and at the
  end, compared with a two-sample permutation test, and the largest difference between the first iteration's
  logged losses (same data).

- **scores** (``experiments/scores.py``; not part of ``--mode all``, it takes hours): each task of ``--envs`` (config
  names of ``conf/env/``) trained with its tuned config for its own budget, ``--seeds`` fresh seeds, ``--jobs`` runs
  at a time as fresh ``python -m experiments.train`` processes into ``--out``; the final deterministic evaluations
  (mean ± std over seeds, per seed), the last-100-training-episode mean, wall time per run and published anchors
  with PASS/MISS, as a table, JSON, Markdown and learning-curve PNGs. Stopped, it continues where it was when rerun.

Targets (issue 4) are printed as PASS/MISS. Timings depend on the machine, its load and the library versions:
the header prints when and where they were measured (date, CPU model and count, torch threads, versions, load
average), and CPU seconds are reported beside wall seconds. No test asserts a time.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

MODES = ("throughput", "solve", "memory", "parity")  # --mode all
SCORES_MODE = "scores"  # experiments/scores.py; hours long, so never part of --mode all
SWEEP_MODE = "sweep"  # experiments/sweep_bench.py: a 48-run sweep, population vs joblib (tens of minutes)

# CleanRL's value loss is v_loss = 0.5 · mean((V − R)²) weighed by vf_coef = 0.5 (cleanrl/ppo.py); ours is the plain
# mean of squared errors, no ½ (agents/losses.py: compute_value_loss). The same gradient therefore needs
# vf_coef = 0.5 × ½ = 0.25 here. (Stable-Baselines3's value loss is F.mse_loss, plain MSE as ours: 0.25 there too.)
CLEANRL_VF_COEF = 0.25

# CleanRL's ppo.py defaults for CartPole. "~tuned" removes the defaults-list entry of conf/tuned/<env>.yaml, and
# every value is then given explicitly, so this config does not depend on our agent file either.
CLEANRL_OVERRIDES = (
    "~tuned",
    "env.num_envs=4", "agent.num_steps=128", "agent.ppo_epochs=4", "agent.num_minibatches=4",
    "agent.learning_rate=2.5e-4", "agent.anneal_lr=true", "agent.clip_ratio=0.2", "agent.entropy_coef=0.01",
    f"agent.vf_coef={CLEANRL_VF_COEF}",  # CleanRL's 0.5 on ½·MSE (see CLEANRL_VF_COEF)
    "agent.max_grad_norm=0.5", "agent.gamma=0.99", "agent.gae_lambda=0.95",
    "agent.norm_adv=true", "agent.clip_value_loss=true", "agent.target_kl=null",
    "agent.hidden_sizes=[64,64]", "agent.activation=tanh",
)
# The same settings in Stable-Baselines3's names (batch_size = 4 × 128 / 4 minibatches). SB3's value loss is plain
# MSE too, so CleanRL's vf_coef 0.5 on ½·MSE is 0.25 here as well.
SB3_CLEANRL = {"n_envs": 4, "n_steps": 128, "batch_size": 128, "n_epochs": 4, "learning_rate": ["lin", 2.5e-4],
               "clip_range": 0.2, "clip_range_vf": 0.2, "ent_coef": 0.01, "vf_coef": CLEANRL_VF_COEF,
               "max_grad_norm": 0.5, "gamma": 0.99, "gae_lambda": 0.95}
# rl-baselines3-zoo's tuned PPO hyperparameters for CartPole-v1 (hyperparams/ppo.yml; n_timesteps 1e5).
SB3_ZOO_CARTPOLE = {"n_envs": 8, "n_steps": 32, "batch_size": 256, "gae_lambda": 0.8, "gamma": 0.98,
                    "n_epochs": 20, "ent_coef": 0.0, "learning_rate": ["lin", 1e-3], "clip_range": ["lin", 0.2]}

# CleanRL ppo.py's wall time as documented for this project's machines (shared/ECOSYSTEM.md), used only when
# --cleanrl-script is not given. One figure: its spread is not known.
CLEANRL_DOCUMENTED = {"steps": 50_000, "wall_seconds": 17.0,
                      "source": "shared/ECOSYSTEM.md: CleanRL ppo.py (gymnasium 0.29.1), its CartPole defaults, 50k "
                                "steps ~17 s wall incl. start-up on this project's 2-core machines (both cores)"}
CLEANRL_DOCUMENTED_LABEL = "CleanRL ppo.py: DOCUMENTED figure (ECOSYSTEM.md), not a live run"
# CleanRL's ppo.py, run live: its CartPole defaults, nothing tracked or recorded, on the CPU as ours.
CLEANRL_FLAGS = ("--no-track", "--no-capture-video", "--no-cuda")
CLEANRL_SPS = re.compile(r"^SPS:\s*([0-9.]+)\s*$", re.MULTILINE)  # its per-iteration "SPS: N" print
WALL_STEPS = 50_000

# conf/tuned/cartpole.yaml was tuned on seeds 0-39: scores must come from seeds it has not seen.
TUNED_SEEDS = range(0, 40)
FIRST_SEED = 1000

TARGET_SPEEDUP = 4.0             # ≥ 4× CleanRL's throughput at its settings (wall incl. start-up and steps/s)
TARGET_SOLVE_RATIO = 0.25        # median time-to-solve ≤ ¼ of SB3 rl-zoo's
TARGET_SOLVED_SHARE = 0.9        # ≥ 9/10 seeds solve within the budget
TARGET_RSS_MB = 600.0
PARITY_ALPHA = 0.05
PARITY_LOSS_TOL = 1e-5


class BenchmarkError(RuntimeError):
    """A measurement that could not be taken (a subprocess failed): reported as one ``error:`` line."""


# --- spread ----------------------------------------------------------------------------------------------------

def spread(values: Sequence[float]) -> dict:
    """min / median / max of ``values``, and the values themselves (in the order measured)."""
    vals = [float(v) for v in values]
    if not vals:
        return {"min": None, "median": None, "max": None, "values": []}
    return {"min": min(vals), "median": statistics.median(vals), "max": max(vals), "values": vals}


def ratio_spread(num: dict, den: dict) -> dict:
    """num / den as the ratio of the medians, and its range from the least to the most favourable pairing
    (min / max and max / min). A side with no known spread (a documented figure) contributes its median."""
    def lo(s):
        return s["min"] if s["min"] is not None else s["median"]

    def hi(s):
        return s["max"] if s["max"] is not None else s["median"]

    return {"median": num["median"] / den["median"], "min": lo(num) / hi(den), "max": hi(num) / lo(den)}


# --- configs ---------------------------------------------------------------------------------------------------

def env_overrides(env_id: str) -> list[str]:
    """CartPole-v1 is the default config (env=cartpole, with its tuned file); any other id goes through env=gym."""
    return [] if env_id == "CartPole-v1" else ["env=gym", f"env.id={env_id}"]


def compose_train_config(overrides: Sequence[str] = ()):
    """``conf/config.yaml`` composed with ``overrides`` as Hydra does it, validated into a ``TrainConfig``."""
    from hydra import compose, initialize_config_dir

    from conf import CONF_DIR
    from experiments import config as _schema  # noqa: F401  (registers the schema)
    from experiments.run import to_train_config

    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from agents.config import ConfigError

    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose("config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(f"--override {' '.join(overrides)}: {str(exc).strip().splitlines()[0]}") from None
    return to_train_config(cfg)


def describe(tc) -> dict:
    """The settings that decide speed, for the report."""
    agent = tc.agent
    return {"env.id": tc.env.id, "env.num_envs": tc.env.num_envs, "num_steps": agent.num_steps,
            "ppo_epochs": agent.ppo_epochs, "num_minibatches": agent.num_minibatches,
            "batch_size": agent.batch_size(tc.env.num_envs),
            "minibatch_size": agent.minibatch_size(tc.env.num_envs), "learning_rate": agent.learning_rate,
            "anneal_lr": agent.anneal_lr, "rollout_backend": agent.rollout_backend,
            "torch_threads": tc.torch_threads}


# --- our trainer, instrumented ---------------------------------------------------------------------------------

class Recorder:
    """Stands in for the TensorBoard logger: keeps every scalar the Trainer logs, in memory."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, dict]] = []

    def scalars(self, values: dict, step: int) -> None:
        self.rows.append((step, dict(values)))

    def flush(self) -> None:
        pass

    def total(self, tag: str) -> float:
        return float(sum(values[tag] for _, values in self.rows if tag in values))

    def first(self, prefix: str) -> dict:
        for _, values in self.rows:
            found = {k: v for k, v in values.items() if k.startswith(prefix)}
            if found:
                return found
        return {}


def _timed_trainer_class():
    from agents.train import Trainer

    class TimedTrainer(Trainer):
        """A Trainer that times its evaluations (so that they can be subtracted) and keeps their results."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.eval_seconds = 0.0
            self.evals: list[tuple[int, float]] = []

        def evaluate_members(self, members, episodes: int, final: bool = False):
            start = time.perf_counter()
            results = super().evaluate_members(members, episodes, final)
            self.eval_seconds += time.perf_counter() - start
            self.evals.extend((self.global_step, result.mean) for result in results)
            return results

    return TimedTrainer


def train_ours(tc, total_timesteps: int, seed: int, *, eval_every: int = 0, eval_episodes: int = 0,
               stop_return: Optional[float] = None, logger: Optional[Recorder] = None) -> dict:
    """One in-process training run; wall and CPU seconds include building the envs and the agent."""
    from envs.vector import make_vec_env

    torch.set_num_threads(tc.torch_threads)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    envs = make_vec_env(tc.env)
    try:
        trainer = _timed_trainer_class()(
            tc.agent, envs, total_timesteps, seed, make_eval_envs=lambda n: make_vec_env(tc.env, n),
            eval_every=eval_every, eval_episodes=eval_episodes, stop_return=stop_return, progress=False)
        trainer.logger = logger
        result = trainer.run()
    finally:
        envs.close()
    return {"result": result, "trainer": trainer, "wall_seconds": time.perf_counter() - wall0,
            "cpu_seconds": time.process_time() - cpu0}


TIMES = ("seconds", "cpu_seconds", "rollout_seconds", "update_seconds", "other_seconds", "steps_per_second")


def summarize_runs(config: dict, seed: int, runs: list[dict]) -> dict:
    """Repeated runs of one setting: each run as measured, and every figure's spread over the runs."""
    return {"config": config, "seed": seed, "repeats": len(runs), "steps": runs[0]["steps"], "runs": runs,
            **{key: spread([r[key] for r in runs]) for key in TIMES}}


def measure_throughput(tc, steps: int, seed: int = FIRST_SEED, repeats: int = 1) -> dict:
    """Steps/s of training (no evaluation), split into rollout, update and other time, ``repeats`` times with the
    same seed (so the spread is timing noise, not a different trajectory). One warm-up iteration first, so that
    one-off lazy imports are not counted (start-up is what the subprocess figure measures)."""
    train_ours(tc, tc.agent.batch_size(tc.env.num_envs), seed)
    runs = []
    for _ in range(repeats):
        rec = Recorder()
        run = train_ours(tc, steps, seed, logger=rec)
        seconds, done = run["wall_seconds"], run["result"].global_step
        rollout, update = rec.total("charts/rollout_seconds"), rec.total("charts/update_seconds")
        runs.append({"steps": done, "seconds": seconds, "cpu_seconds": run["cpu_seconds"],
                     "rollout_seconds": rollout, "update_seconds": update,
                     "other_seconds": seconds - rollout - update, "steps_per_second": done / seconds})
    return summarize_runs(describe(tc), seed, runs)


def _child_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run_once(cmd: Sequence[str], cwd: Optional[str], timeout: float,
              label: Optional[str] = None) -> tuple[float, float, str]:
    """One fresh process: (wall seconds, CPU seconds of it and its children, stdout). ``label`` names it in an
    error (default: the command)."""
    label = label or " ".join(cmd)
    cpu0, wall0 = _child_cpu_seconds(), time.perf_counter()
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired:
        raise BenchmarkError(f"{label} ran past {timeout:g} s") from None
    except OSError as exc:
        raise BenchmarkError(f"cannot run {label}: {exc.strerror or exc}") from None
    wall = time.perf_counter() - wall0
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-1:] or ["(no output)"]
        raise BenchmarkError(f"{label} failed (exit {proc.returncode}): {tail[0][-300:]}")
    return wall, _child_cpu_seconds() - cpu0, proc.stdout


def run_walls(commands: dict, runs: int, steps: int, timeout: float = 900.0) -> dict:
    """Wall (and CPU) seconds of each command run ``runs`` times as a fresh process, Python start-up included.
    ``commands`` maps a name to ``{"cmd": [...], "cwd": folder or None}``. The runs are interleaved (round ``i``
    runs every command once), so that a change of load during the benchmark falls on every command alike."""
    walls: dict = {name: [] for name in commands}
    cpus: dict = {name: [] for name in commands}
    outs: dict = {name: [] for name in commands}
    for _ in range(runs):
        for name, spec in commands.items():
            wall, cpu, out = _run_once(spec["cmd"], spec.get("cwd"), timeout)
            walls[name].append(wall)
            cpus[name].append(cpu)
            outs[name].append(out)
    return {name: {"command": " ".join(spec["cmd"]), "steps": steps, "runs": runs,
                   "wall_seconds": spread(walls[name]), "cpu_seconds": spread(cpus[name]), "stdout": outs[name]}
            for name, spec in commands.items()}


def train_command(overrides: Sequence[str], run_dir: str) -> list[str]:
    return [sys.executable, "-m", "experiments.train", *overrides, f"hydra.run.dir={run_dir}"]


# --- CleanRL (its own ppo.py, outside this repository) ---------------------------------------------------------

def cleanrl_command(python: str, script: str, steps: int) -> list[str]:
    """CleanRL's ppo.py at its CartPole defaults for ``steps`` env steps: no W&B tracking, no video, CPU."""
    return [python, script, "--total-timesteps", str(steps), *CLEANRL_FLAGS]


VERSIONS_PROBE = ("import importlib.metadata as m, json, platform\n"
                  "def v(name):\n"
                  "    try:\n"
                  "        return m.version(name)\n"
                  "    except m.PackageNotFoundError:\n"
                  "        return None\n"
                  "print(json.dumps({'python': platform.python_version(), "
                  "**{n: v(n) for n in ('torch', 'gymnasium', 'numpy', 'tyro')}}))\n")


def interpreter_versions(python: str) -> dict:
    """Python and package versions of an interpreter, read from its installed metadata (nothing is imported)."""
    try:
        proc = subprocess.run([python, "-c", VERSIONS_PROBE], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BenchmarkError(f"--cleanrl-python={python!r} cannot be run: {exc}") from None
    if proc.returncode != 0:
        raise BenchmarkError(f"--cleanrl-python={python!r} cannot be run (exit {proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cleanrl_live(wall: dict, script: str, python: str, versions: dict) -> dict:
    """The CleanRL column from its wall runs: whole-process wall time, and the steps/s ppo.py prints itself
    (its last ``SPS:`` line: env steps over its training loop's time, start-up and setup excluded)."""
    sps = []
    for out in wall["stdout"]:
        found = CLEANRL_SPS.findall(out)
        if found:
            sps.append(float(found[-1]))
    complete = len(sps) == wall["runs"]
    return {"live": True, "label": f"CleanRL ppo.py, run live (median of {wall['runs']})", "script": script,
            "python": python, "versions": versions, "command": wall["command"], "steps": wall["steps"],
            "runs": wall["runs"], "wall_seconds": wall["wall_seconds"], "cpu_seconds": wall["cpu_seconds"],
            "torch_threads": "its default (torch uses every CPU)",
            "steps_per_second": spread(sps) if complete else None,
            "steps_per_second_basis": "its own SPS print (training loop only, start-up excluded)" if complete
            else "not printed by the script"}


def cleanrl_documented() -> dict:
    ref = CLEANRL_DOCUMENTED
    wall = {"min": None, "median": ref["wall_seconds"], "max": None, "values": []}
    per_s = ref["steps"] / ref["wall_seconds"]
    return {"live": False, "label": CLEANRL_DOCUMENTED_LABEL, "source": ref["source"], "steps": ref["steps"],
            "runs": 0, "wall_seconds": wall, "cpu_seconds": None,
            "steps_per_second": {"min": None, "median": per_s, "max": None, "values": []},
            "steps_per_second_basis": "documented steps / whole-process wall (start-up included)"}


# --- Stable-Baselines3 (optional `bench` extra; imported only here) --------------------------------------------

def sb3_available() -> bool:
    return importlib.util.find_spec("stable_baselines3") is not None


def _sb3_kwargs(settings: dict) -> dict:
    """rl-zoo style settings → PPO keyword arguments (``["lin", v]`` is a schedule decaying linearly to 0)."""
    def value(v):
        if isinstance(v, list) and v[0] == "lin":
            start = float(v[1])
            return lambda progress_remaining: progress_remaining * start
        return v

    return {k: value(v) for k, v in settings.items() if k != "n_envs"}


def _sb3_model(env_id: str, settings: dict, seed: int):
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env

    env = sb3_make_vec_env(env_id, n_envs=settings["n_envs"], seed=seed)
    return PPO("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **_sb3_kwargs(settings))


def _sb3_callback(on_rollout_start: Callable[[Any], bool], on_rollout_end: Callable[[Any], None]):
    """A BaseCallback subclass made on demand: stable_baselines3 is never imported at module level."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Hooks(BaseCallback):
        def __init__(self):
            super().__init__()
            self.stop = False

        def _on_rollout_start(self) -> None:
            self.stop = on_rollout_start(self.model)

        def _on_rollout_end(self) -> None:
            on_rollout_end(self.model)

        def _on_step(self) -> bool:
            return not self.stop

    return Hooks()


def sb3_inference(model):
    """SB3's policy as our ``Inference`` (logits of the categorical head), for the shared evaluator."""
    from agents.inference import Inference

    policy = model.policy

    def dist_params(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return policy.get_distribution(torch.as_tensor(obs)).distribution.logits.numpy()

    def value(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return policy.predict_values(torch.as_tensor(obs)).numpy()[:, 0]

    return Inference(dist_params, value, None)


def sb3_throughput(env_id: str, steps: int, seed: int = FIRST_SEED, threads: int = 1, repeats: int = 1) -> dict:
    """SB3 PPO at CleanRL's settings, in-process, ``repeats`` times; rollout time from its rollout callbacks, the
    rest is update."""
    torch.set_num_threads(threads)
    warm = _sb3_model(env_id, SB3_CLEANRL, seed)  # first construction imports torch.optim's dependencies
    warm.learn(SB3_CLEANRL["n_envs"] * SB3_CLEANRL["n_steps"])
    runs = []
    for _ in range(repeats):
        marks: dict = {"rollout": 0.0, "t": 0.0}

        def start(model) -> bool:
            marks["t"] = time.perf_counter()
            return False

        def end(model) -> None:
            marks["rollout"] += time.perf_counter() - marks["t"]

        wall0, cpu0 = time.perf_counter(), time.process_time()
        model = _sb3_model(env_id, SB3_CLEANRL, seed)
        model.learn(steps, callback=_sb3_callback(start, end))
        seconds = time.perf_counter() - wall0
        done = int(model.num_timesteps)
        runs.append({"steps": done, "seconds": seconds, "cpu_seconds": time.process_time() - cpu0,
                     "rollout_seconds": marks["rollout"], "update_seconds": seconds - marks["rollout"],
                     "other_seconds": 0.0, "steps_per_second": done / seconds})
    return summarize_runs(dict(SB3_CLEANRL), seed, runs)


SB3_WALL_SCRIPT = """
import json, sys, torch
torch.set_num_threads(int(sys.argv[3]))
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
s = json.loads(sys.argv[4])
kw = {k: ((lambda v: (lambda p: p * v))(float(v[1])) if isinstance(v, list) else v) for k, v in s.items() if k != "n_envs"}
PPO("MlpPolicy", make_vec_env(sys.argv[1], n_envs=s["n_envs"], seed=1), seed=1, device="cpu", verbose=0,
    **kw).learn(int(sys.argv[2]))
"""


# --- time-to-solve ---------------------------------------------------------------------------------------------

def solve_ours(tc, seed: int, budget: int, eval_every_steps: int, episodes: int, target: float) -> dict:
    batch = tc.agent.batch_size(tc.env.num_envs)
    every = max(1, round(eval_every_steps / batch))
    run = train_ours(tc, budget, seed, eval_every=every, eval_episodes=episodes, stop_return=target)
    result, trainer = run["result"], run["trainer"]
    return _solve_row(seed, result.solved_step, result.global_step, run["wall_seconds"], trainer.eval_seconds,
                      trainer.evals, every * batch)


def _solve_row(seed: int, solved_step: Optional[int], steps_done: int, wall: float, eval_seconds: float,
               evals: list, interval: int) -> dict:
    return {"seed": seed, "solved": solved_step is not None, "solved_step": solved_step, "steps_done": steps_done,
            "train_seconds": wall - eval_seconds, "eval_seconds": eval_seconds, "wall_seconds": wall,
            "evaluations": len(evals), "best_eval_return": max((m for _, m in evals), default=float("nan")),
            "eval_interval_steps": interval}


def eval_seed(seed: int, index: int):
    """The evaluation stream after iteration (for SB3: rollout) ``index`` of a run with ``seed``, drawn as
    ``Trainer.evaluate`` draws its own (``agents.seeding``), so both libraries are evaluated on the same episodes."""
    from agents.seeding import RunSeeds

    return RunSeeds(seed).evaluation(index)


def solve_sb3(env_id: str, seed: int, budget: int, eval_every_steps: int, episodes: int, target: float,
              threads: int = 1) -> dict:
    """SB3 PPO (rl-zoo CartPole settings), evaluated between rollouts every ``eval_every_steps`` env steps with the
    same evaluator as ours; training stops at the first evaluation that reaches ``target``."""
    from agents.evaluation import evaluate_policy
    from envs.vector import EnvConfig, make_vec_env

    per_rollout = SB3_ZOO_CARTPOLE["n_envs"] * SB3_ZOO_CARTPOLE["n_steps"]
    every = max(1, round(eval_every_steps / per_rollout))
    eval_env = EnvConfig(id=env_id)
    state: dict = {"rollouts": 0, "eval_seconds": 0.0, "evals": [], "solved_step": None}

    def evaluate(model) -> float:
        start = time.perf_counter()
        mean = evaluate_policy(sb3_inference(model), lambda n: make_vec_env(eval_env, n), episodes,
                               seed=eval_seed(seed, state["rollouts"])).mean
        state["eval_seconds"] += time.perf_counter() - start
        state["evals"].append((int(model.num_timesteps), mean))
        return mean

    def on_start(model) -> bool:  # runs after the previous update: evaluate what has been trained so far
        if state["rollouts"] and state["rollouts"] % every == 0 and evaluate(model) >= target:
            state["solved_step"] = int(model.num_timesteps)
            return True
        return False

    def on_end(model) -> None:
        state["rollouts"] += 1

    torch.set_num_threads(threads)
    wall0 = time.perf_counter()
    model = _sb3_model(env_id, SB3_ZOO_CARTPOLE, seed)
    model.learn(budget, callback=_sb3_callback(on_start, on_end))
    if state["solved_step"] is None and episodes > 0 and evaluate(model) >= target:  # final evaluation
        state["solved_step"] = int(model.num_timesteps)
    wall = time.perf_counter() - wall0
    return _solve_row(seed, state["solved_step"], int(model.num_timesteps), wall, state["eval_seconds"],
                      state["evals"], every * per_rollout)


def summarize_solve(rows: list[dict], budget: int) -> dict:
    """Median over seeds with an unsolved seed counted as infinitely slow (so the median is honest about it), and
    the spread (min / median / max over seeds, "inf" for an unsolved one) beside it."""
    inf = float("inf")
    steps = [r["solved_step"] if r["solved"] else inf for r in rows]
    seconds = [r["train_seconds"] if r["solved"] else inf for r in rows]
    return {"budget_steps": budget, "seeds": len(rows), "seed_list": [r["seed"] for r in rows],
            "solved": sum(r["solved"] for r in rows),
            "median_steps": statistics.median(steps) if rows else inf,
            "median_train_seconds": statistics.median(seconds) if rows else inf,
            "steps_to_solve": spread(steps), "train_seconds_to_solve": spread(seconds),
            "total_eval_seconds": sum(r["eval_seconds"] for r in rows), "per_seed": rows}


# --- parity ----------------------------------------------------------------------------------------------------

def permutation_test(a: Sequence[float], b: Sequence[float], resamples: int = 20_000, seed: int = 0) -> float:
    """Two-sided p-value for "a and b come from the same distribution", with |mean(a) − mean(b)| as statistic,
    from ``resamples`` random relabellings of the pooled samples (p = (1 + #{≥ observed}) / (1 + resamples))."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    pooled = np.concatenate([a, b])
    observed = abs(a.mean() - b.mean())
    perms = np.random.default_rng(seed).permuted(np.tile(pooled, (resamples, 1)), axis=1)
    diffs = np.abs(perms[:, :len(a)].mean(axis=1) - perms[:, len(a):].mean(axis=1))
    return float((1 + np.count_nonzero(diffs >= observed - 1e-9 * max(1.0, observed))) / (resamples + 1))


def welch_t(a: Sequence[float], b: Sequence[float]) -> float:
    """Welch's t statistic (NaN when both samples are constant)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)) if len(a) > 1 and len(b) > 1 else 0.0
    return float((a.mean() - b.mean()) / se) if se > 0 else float("nan")


def parity(tc, seeds: Sequence[int], steps: int, episodes: int, points: int = 4) -> dict:
    """Both rollout backends, same seeds and hyperparameters: evaluations at ``points`` fixed steps (the last is
    the final evaluation) and the first iteration's logged losses."""
    batch = tc.agent.batch_size(tc.env.num_envs)
    every = max(1, math.ceil((steps // batch) / points))  # evaluations at ~¼, ½, ¾ and the final one
    runs: dict = {}
    for backend in ("numpy", "torch"):
        btc = dataclasses.replace(tc, agent=dataclasses.replace(tc.agent, rollout_backend=backend))
        runs[backend] = []
        for seed in seeds:
            rec = Recorder()
            run = train_ours(btc, steps, seed, eval_every=every, eval_episodes=episodes, logger=rec)
            runs[backend].append({"seed": seed, "evals": run["trainer"].evals, "losses": rec.first("losses/"),
                                  "train_seconds": run["wall_seconds"] - run["trainer"].eval_seconds})
    at_steps = [step for step, _ in runs["numpy"][0]["evals"]]
    comparisons = []
    for i, step in enumerate(at_steps):
        fast = [r["evals"][i][1] for r in runs["numpy"]]
        plain = [r["evals"][i][1] for r in runs["torch"]]
        comparisons.append({"step": step, "numpy_mean": float(np.mean(fast)), "torch_mean": float(np.mean(plain)),
                            "numpy": fast, "torch": plain, "p_value": permutation_test(fast, plain),
                            "welch_t": welch_t(fast, plain)})
    loss_diff = max((abs(a["losses"][k] - b["losses"][k]) for a, b in zip(runs["numpy"], runs["torch"])
                     for k in a["losses"]), default=float("nan"))
    return {"config": describe(tc), "seeds": list(seeds), "steps": steps, "eval_episodes": episodes,
            "comparisons": comparisons, "first_iteration_loss_max_abs_diff": loss_diff,
            "train_seconds": {b: [r["train_seconds"] for r in rs] for b, rs in runs.items()}}


# --- the reports -----------------------------------------------------------------------------------------------

def solve_seeds(args) -> list[int]:
    """The seeds of solve and parity: ``--seeds`` of them from ``--first-seed`` (default 1000..1009)."""
    return list(range(args.first_seed, args.first_seed + args.seeds))


def report_throughput(args, our_overrides: list[str], sb3: bool, cleanrl: Optional[dict] = None) -> dict:
    """In-process throughput (ours at CleanRL's settings and at our tuned default, SB3 when installed) and the
    whole-process wall clock of ours, SB3 and — when ``cleanrl`` ({"script", "python", "versions"}) is given —
    CleanRL's own ppo.py. Without it the CleanRL column is the documented figure."""
    steps = args.steps or 50_000
    cleanrl_tc = compose_train_config(env_overrides(args.env) + list(CLEANRL_OVERRIDES))
    tuned = compose_train_config(our_overrides)
    seed, wall_steps = args.first_seed, args.wall_steps
    out: dict = {"overrides_cleanrl": list(CLEANRL_OVERRIDES), "seed": seed, "repeats": args.repeats,
                 "wall_runs": args.wall_runs, "wall_steps": wall_steps, "wall_ours_cleanrl": None,
                 "wall_sb3_cleanrl": None, "sb3_cleanrl": None}
    # Whole processes first: CleanRL (the likeliest to fail) leads each round of the interleaved runs.
    walls: dict = {}
    if args.wall_runs > 0:
        with tempfile.TemporaryDirectory(prefix="ppo-bench-") as tmp:
            commands: dict = {}
            if cleanrl:
                cwd = Path(tmp) / "cleanrl"  # ppo.py writes runs/<name>/ (TensorBoard) under its working folder
                cwd.mkdir()
                commands["cleanrl"] = {"cmd": cleanrl_command(cleanrl["python"], cleanrl["script"], wall_steps),
                                       "cwd": str(cwd)}
            commands["ours"] = {"cmd": train_command(env_overrides(args.env) + list(CLEANRL_OVERRIDES)
                                                     + [f"total_timesteps={wall_steps}", "eval.episodes=0"],
                                                     str(Path(tmp) / "ours"))}
            if sb3:
                commands["sb3"] = {"cmd": [sys.executable, "-c", SB3_WALL_SCRIPT, args.env, str(wall_steps),
                                           str(cleanrl_tc.torch_threads), json.dumps(SB3_CLEANRL)]}
            walls = run_walls(commands, args.wall_runs, wall_steps)
        if "cleanrl" in walls:
            out["cleanrl"] = cleanrl_live(walls["cleanrl"], cleanrl["script"], cleanrl["python"],
                                          cleanrl["versions"])
        for name, wall in walls.items():
            wall.pop("stdout")  # CleanRL prints every episode: not for the JSON
        out["wall_ours_cleanrl"] = walls.get("ours")
        out["wall_sb3_cleanrl"] = walls.get("sb3")
    if "cleanrl" not in out:
        out["cleanrl"] = cleanrl_documented()

    out["ours_cleanrl"] = measure_throughput(cleanrl_tc, steps, seed, args.repeats)
    out["ours_tuned"] = measure_throughput(tuned, steps, seed, args.repeats)
    if sb3:
        out["sb3_cleanrl"] = sb3_throughput(args.env, steps, seed, cleanrl_tc.torch_threads, args.repeats)

    ref = out["cleanrl"]
    reference = "CleanRL live" if ref["live"] else "CleanRL documented, not run"
    ours = out["ours_cleanrl"]
    ratios: dict = {}
    if ref["steps_per_second"]:
        ratios["steps_per_second_vs_cleanrl"] = {
            **ratio_spread(ours["steps_per_second"], ref["steps_per_second"]), "reference": reference}
    wall_ours = out["wall_ours_cleanrl"]
    if wall_ours and (ref["live"] or wall_steps == ref["steps"]):  # the documented figure is for 50k steps only
        ratios["wall_vs_cleanrl"] = {**ratio_spread(ref["wall_seconds"], wall_ours["wall_seconds"]),
                                     "reference": reference}
    if out["sb3_cleanrl"]:
        ratios["steps_per_second_vs_sb3"] = {
            **ratio_spread(ours["steps_per_second"], out["sb3_cleanrl"]["steps_per_second"]), "reference": "SB3 live"}
    if wall_ours and out["wall_sb3_cleanrl"]:
        ratios["wall_vs_sb3"] = {**ratio_spread(out["wall_sb3_cleanrl"]["wall_seconds"], wall_ours["wall_seconds"]),
                                 "reference": "SB3 live"}
    out["ratios"] = ratios
    return out


def _warm_up_solve(tc, env_id: str, sb3: bool, seed: int) -> None:
    """One short run of each library first, so that neither pays this process's one-off imports in a seed."""
    train_ours(tc, tc.agent.batch_size(tc.env.num_envs), seed, eval_every=1, eval_episodes=1)
    if sb3:
        solve_sb3(env_id, seed, SB3_ZOO_CARTPOLE["n_envs"] * SB3_ZOO_CARTPOLE["n_steps"], 1, 1, float("inf"),
                  tc.torch_threads)


def report_solve(args, our_overrides: list[str], sb3: bool, target: float) -> dict:
    budget = args.steps or 100_000
    tc = compose_train_config(our_overrides)
    sb3 = sb3 and args.env == "CartPole-v1"  # rl-zoo settings are the CartPole-v1 ones
    seeds = solve_seeds(args)
    _warm_up_solve(tc, args.env, sb3, seeds[0])
    ours = summarize_solve([solve_ours(tc, s, budget, args.eval_every_steps, args.eval_episodes, target)
                            for s in seeds], budget)
    out: dict = {"target_return": target, "eval_episodes": args.eval_episodes, "seeds": seeds,
                 "eval_every_steps": args.eval_every_steps, "ours": {"config": describe(tc), **ours}, "sb3": None,
                 "evaluation_time": "excluded: every evaluation is timed and subtracted (both libraries)"}
    if sb3:
        rows = [solve_sb3(args.env, s, budget, args.eval_every_steps, args.eval_episodes, target, tc.torch_threads)
                for s in seeds]
        out["sb3"] = {"config": dict(SB3_ZOO_CARTPOLE), **summarize_solve(rows, budget)}
        theirs = out["sb3"]["median_train_seconds"]
        mine = ours["median_train_seconds"]
        out["median_seconds_ratio"] = mine / theirs if math.isfinite(theirs) and theirs > 0 else float("nan")
    return out


RSS_WRAPPER = ("import resource, subprocess, sys\n"
               "code = subprocess.run(sys.argv[1:]).returncode\n"
               "print('PEAK_RSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
               "sys.exit(code)\n")
"""Runs a command (its output passed through) and prints, last, the peak resident memory of the largest of its
waited-for processes."""


def peak_rss_mb(stdout: str) -> Optional[float]:
    """What ``RSS_WRAPPER`` printed, in MB (Linux: ``ru_maxrss`` is in KiB)."""
    found = re.findall(r"^PEAK_RSS_KB (\d+)$", stdout, re.MULTILINE)
    return int(found[-1]) / 1024 if found else None


def report_memory(args, our_overrides: list[str]) -> dict:
    tc = compose_train_config(our_overrides)
    steps = args.steps or tc.total_timesteps
    peaks, walls = [], []
    with tempfile.TemporaryDirectory(prefix="ppo-bench-") as tmp:
        cmd = train_command(our_overrides + [f"total_timesteps={steps}", f"seed={args.first_seed}"], tmp)
        for _ in range(args.repeats):
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", RSS_WRAPPER, *cmd], capture_output=True, text=True,
                                  timeout=1800)
            walls.append(time.perf_counter() - start)
            if proc.returncode != 0:
                tail = proc.stderr.strip().splitlines()[-1:] or ["(no output)"]
                raise BenchmarkError(f"{' '.join(cmd)} failed (exit {proc.returncode}): {tail[0][-300:]}")
            peaks.append(peak_rss_mb(proc.stdout))
    return {"command": " ".join(cmd), "steps": steps, "seed": args.first_seed, "runs": args.repeats,
            "peak_rss_mb": spread(peaks), "wall_seconds": spread(walls), "config": describe(tc)}


def report_parity(args, our_overrides: list[str]) -> dict:
    tc = compose_train_config(our_overrides)
    return parity(tc, solve_seeds(args), args.steps or 100_000, args.eval_episodes)


# --- targets and printing --------------------------------------------------------------------------------------

COMPARE = {"<=": lambda v, t: v <= t, "<": lambda v, t: v < t, ">=": lambda v, t: v >= t}


def targets(results: dict) -> list[dict]:
    """PASS/MISS of each target of issue 4 the run measured ("n/a" when its reference was not run). The CleanRL
    targets compare with CleanRL run live when it was, else with its documented figure, and say which."""
    rows = []

    def add(name: str, value: Optional[float], compare: str, threshold: float, note: str = "") -> None:
        known = value is not None and not (isinstance(value, float) and math.isnan(value))
        ok = COMPARE[compare](value, threshold) if known else None
        rows.append({"target": name, "value": value, "compare": compare, "threshold": threshold,
                     "status": "n/a" if ok is None else ("PASS" if ok else "MISS"), "note": note})

    tp = results.get("throughput")
    if tp:
        ref = tp["cleanrl"]
        which = (f"CleanRL run live, median of {ref['runs']}" if ref["live"]
                 else f"CleanRL's DOCUMENTED ~{ref['wall_seconds']['median']:g} s, not a live run")
        wall = tp.get("wall_ours_cleanrl")
        if wall and "wall_vs_cleanrl" in tp["ratios"]:
            theirs = ref["wall_seconds"]["median"]
            add(f"{tp['wall_steps']:,} steps @ CleanRL settings, wall incl. start-up (s)",
                wall["wall_seconds"]["median"], "<=", theirs / TARGET_SPEEDUP,
                f"= {which}: {theirs:.2f} s / {TARGET_SPEEDUP:g}")
        sps = tp["ratios"].get("steps_per_second_vs_cleanrl")
        basis = ref["steps_per_second_basis"]
        add("steps/s @ CleanRL settings vs CleanRL's (×)", sps["median"] if sps else None, ">=", TARGET_SPEEDUP,
            f"ours in-process vs {'CleanRL live' if ref['live'] else 'CleanRL documented, not run'}: {basis}")
    sv = results.get("solve")
    if sv:
        ours = sv["ours"]
        add("median time-to-solve vs SB3 rl-zoo (×)", sv.get("median_seconds_ratio"), "<=", TARGET_SOLVE_RATIO,
            "" if sv["sb3"] else "SB3 not run")
        add("seeds solved", ours["solved"], ">=", math.ceil(TARGET_SOLVED_SHARE * ours["seeds"] - 1e-9),
            f"of {ours['seeds']}, seeds {_seed_range(sv['seeds'])}")
    mem = results.get("memory")
    if mem:
        add("peak RSS of a training run (MB)", mem["peak_rss_mb"]["max"], "<", TARGET_RSS_MB,
            f"largest of {mem['runs']} runs")
    par = results.get("parity")
    if par:
        if par["comparisons"]:
            add("parity: final eval return, numpy vs torch (p)", par["comparisons"][-1]["p_value"], ">=",
                PARITY_ALPHA, "permutation test")
        add("parity: first-iteration losses, max |Δ|", par["first_iteration_loss_max_abs_diff"], "<=",
            PARITY_LOSS_TOL)
    return rows


def _fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        if math.isinf(x):
            return "not solved"
        if x != 0 and abs(x) < 10 ** -digits:
            return f"{x:.2e}"
        return f"{x:,.{digits}f}"
    return f"{x:,}" if isinstance(x, int) else str(x)


def _range(s: Optional[dict], digits: int = 2) -> str:
    """ "min–max" of a spread, or a note that it is unknown."""
    if not s or s["min"] is None:
        return "spread unknown"
    return f"{_fmt(s['min'], digits)}–{_fmt(s['max'], digits)}"


def _seed_range(seeds: Sequence[int]) -> str:
    seeds = list(seeds)
    if seeds and seeds == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}..{seeds[-1]}" if len(seeds) > 1 else str(seeds[0])
    return ", ".join(map(str, seeds))


def _freshness(seeds: Sequence[int]) -> str:
    overlap = sorted(set(seeds) & set(TUNED_SEEDS))
    if overlap:
        return (f"NOT fresh: {_seed_range(overlap)} overlap the seeds {TUNED_SEEDS.start}–{TUNED_SEEDS.stop - 1} the "
                f"tuned config was tuned on")
    return f"fresh: the tuned config was tuned on seeds {TUNED_SEEDS.start}–{TUNED_SEEDS.stop - 1}"


def format_report(results: dict) -> str:
    meta = results["meta"]
    lines = [f"PPO benchmark — {meta['env']} — measured {meta['time']} on {meta['machine']['cpu_model']} "
             f"({meta['cpus']} CPUs), {meta['machine']['platform']}",
             f"  Python {meta['python']}, torch {meta['torch']}, gymnasium {meta['gymnasium']}, "
             f"SB3 {meta['stable_baselines3'] or 'not run'}; our torch threads {meta['torch_threads']}",
             "  These figures hold for this machine, its load and these versions only: on another machine or with "
             "other versions, rerun it.",
             *([f"our config with overrides: {' '.join(meta['overrides'])}"] if meta["overrides"] else []),
             f"load average at start {meta['load_start']:.2f}, at end {meta['load_end']:.2f}"
             + ("  (machine busy: other processes competed for the CPUs; wall times are inflated, see CPU s)"
                if meta["busy"] else "")]
    tp = results.get("throughput")
    if tp:
        lines += ["", f"THROUGHPUT — training loop in-process, evaluation off, seed {tp['seed']}, each run "
                      f"{tp['repeats']}× after one uncounted warm-up iteration: median of the repeats, steps/s "
                      "also min–max",
                  f"  {'run':<32}{'steps':>8}{'wall s':>8}{'rollout':>9}{'update':>8}{'other':>7}{'steps/s':>9}"
                  f"{'(min–max)':>18}{'CPU s':>7}"]
        for key, label in (("ours_cleanrl", "ours @ CleanRL settings"), ("ours_tuned", "ours @ tuned default"),
                           ("sb3_cleanrl", "SB3 PPO @ CleanRL settings")):
            r = tp.get(key)
            if r:
                lines.append(f"  {label:<32}{r['steps']:>8,}{r['seconds']['median']:>8.2f}"
                             f"{r['rollout_seconds']['median']:>9.2f}{r['update_seconds']['median']:>8.2f}"
                             f"{r['other_seconds']['median']:>7.2f}{r['steps_per_second']['median']:>9,.0f}"
                             f"{_range(r['steps_per_second'], 0):>18}{r['cpu_seconds']['median']:>7.2f}")
        ref = tp["cleanrl"]
        if ref["live"] and ref["steps_per_second"]:
            s = ref["steps_per_second"]
            lines.append(f"  {'CleanRL ppo.py (live)':<32}{'':>40}{s['median']:>9,.0f}{_range(s, 0):>18}"
                         f"   (its own SPS print: training loop only)")
        elif ref["live"]:
            lines.append("  CleanRL ppo.py (live): printed no 'SPS:' line, so no in-loop steps/s")
        else:
            lines.append(f"  {CLEANRL_DOCUMENTED_LABEL}: ~{ref['steps_per_second']['median']:,.0f} steps/s "
                         "= 50k steps / ~17 s whole-process wall (start-up included), spread unknown")
        if tp.get("wall_ours_cleanrl"):
            lines += ["", f"WALL CLOCK — {tp['wall_steps']:,} env steps at CleanRL's settings as a fresh process, "
                          f"Python start-up included; {tp['wall_runs']} run{'s' * (tp['wall_runs'] != 1)} each, interleaved; "
                          "median (min–max)"]
            for key, label, how in (
                    ("wall_ours_cleanrl", "ours", "python -m experiments.train with CleanRL's settings as overrides, "
                                                  "final evaluation off (the full command is in the JSON)"),
                    ("wall_sb3_cleanrl", "SB3", "SB3 PPO at CleanRL's settings in a small script")):
                w = tp.get(key)
                if w:
                    lines.append(f"  {label:<8}{w['wall_seconds']['median']:>7.2f} s ({_range(w['wall_seconds'])}; "
                                 f"CPU {w['cpu_seconds']['median']:.2f} s)  {how}")
        if ref["live"]:
            v = ref["versions"]
            lines.append(f"  {'CleanRL':<8}{ref['wall_seconds']['median']:>7.2f} s ({_range(ref['wall_seconds'])}; "
                         f"CPU {ref['cpu_seconds']['median']:.2f} s)  run live: {ref['command']}")
            lines.append(f"          its environment: Python {v.get('python')}, torch {v.get('torch')}, gymnasium "
                         f"{v.get('gymnasium')}; its default torch threads (every CPU), seed 1 (its default)")
        else:
            lines.append(f"  {CLEANRL_DOCUMENTED_LABEL}: ~{ref['wall_seconds']['median']:g} s for "
                         f"{ref['steps']:,} steps, one figure (spread unknown) — {ref['source']}. Run it live with "
                         "--cleanrl-script PATH/TO/cleanrl/ppo.py --cleanrl-python PATH/TO/its/python")
        ratio_labels = {"steps_per_second_vs_cleanrl": "steps/s vs CleanRL", "wall_vs_cleanrl": "wall vs CleanRL",
                        "steps_per_second_vs_sb3": "steps/s vs SB3", "wall_vs_sb3": "wall vs SB3"}
        if tp["ratios"]:
            lines.append("  ratios, ours faster by (ratio of medians, min–max over pairings): " + "; ".join(
                f"{ratio_labels[k]} ({v['reference']}) {v['median']:.1f}× ({v['min']:.1f}–{v['max']:.1f})"
                for k, v in tp["ratios"].items()))
    sv = results.get("solve")
    if sv:
        lines += ["", f"TIME-TO-SOLVE (deterministic {sv['eval_episodes']}-episode eval ≥ {sv['target_return']:g}, "
                      f"budget {sv['ours']['budget_steps']:,} steps; evaluation time excluded for both libraries)",
                  f"  seeds {_seed_range(sv['seeds'])} ({_freshness(sv['seeds'])})"]
        for key, label in (("ours", "ours (tuned default)"), ("sb3", "SB3 PPO (rl-zoo CartPole-v1)")):
            s = sv.get(key)
            if not s:
                continue
            interval = s["per_seed"][0]["eval_interval_steps"] if s["per_seed"] else 0
            lines.append(f"  {label}: eval every {interval:,} steps")
            lines.append(f"    {'seed':>6}{'solved at step':>16}{'train s':>10}{'eval s':>9}{'best eval':>11}")
            for r in s["per_seed"]:
                lines.append(f"    {r['seed']:>6}{_fmt(r['solved_step']) if r['solved'] else 'not solved':>16}"
                             f"{r['train_seconds']:>10.2f}{r['eval_seconds']:>9.2f}{r['best_eval_return']:>11.1f}")
            if math.isfinite(s["median_steps"]):
                median = (f"{_fmt(s['median_steps'], 0)} steps ({_range(s['steps_to_solve'], 0)}), "
                          f"{_fmt(s['median_train_seconds'])} s ({_range(s['train_seconds_to_solve'])})")
            else:
                median = "not solved (half the seeds or more did not solve)"
            lines.append(f"    median (min–max over seeds): {median}; solved {s['solved']}/{s['seeds']}")
        if sv.get("median_seconds_ratio") is not None:
            lines.append(f"  median time-to-solve, ours / SB3: {_fmt(sv['median_seconds_ratio'], 3)}")
    mem = results.get("memory")
    if mem:
        p = mem["peak_rss_mb"]
        lines += ["", f"MEMORY — peak RSS of `{mem['command'].split(' ', 1)[1]}`",
                  f"  median {p['median']:.0f} MB ({_range(p, 0)} MB over {mem['runs']} runs; {mem['steps']:,} "
                  f"steps, {mem['wall_seconds']['median']:.1f} s wall each)"]
    par = results.get("parity")
    if par:
        lines += ["", f"PARITY rollout_backend numpy (fast path) vs torch (nn.Module), seeds "
                      f"{_seed_range(par['seeds'])} ({_freshness(par['seeds'])}), {par['eval_episodes']}-episode "
                      "deterministic eval",
                  f"  {'step':>8}{'numpy mean':>12}{'(min–max)':>16}{'torch mean':>12}{'(min–max)':>16}"
                  f"{'perm. p':>9}{'Welch t':>9}"]
        for c in par["comparisons"]:
            fast, plain = spread(c["numpy"]), spread(c["torch"])
            lines.append(f"  {c['step']:>8,}{c['numpy_mean']:>12.1f}{_range(fast, 1):>16}{c['torch_mean']:>12.1f}"
                         f"{_range(plain, 1):>16}{c['p_value']:>9.3f}{_fmt(c['welch_t']):>9}")
        for backend, seconds in par["train_seconds"].items():
            t = spread(seconds)
            lines.append(f"  train seconds per seed, {backend}: median {t['median']:.2f} ({_range(t)})")
        lines.append(f"  first iteration's logged losses, max |numpy − torch|: "
                     f"{par['first_iteration_loss_max_abs_diff']:.2e}")
    rows = results.get("targets", [])
    if rows:
        lines += ["", "TARGETS (issue 4)"]
        for t in rows:
            value = _fmt(t["value"], 3) if isinstance(t["value"], float) else _fmt(t["value"])
            note = f"  ({t['note']})" if t["note"] else ""
            goal = f"{t['compare'].replace('<=', '≤').replace('>=', '≥')} {t['threshold']:.3g}"
            lines.append(f"  {t['status']:<5} {t['target']:<52} {value:>10}   goal {goal}{note}")
    return "\n".join(lines)


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(x, (np.floating, np.integer)):
        return _jsonable(x.item())
    return x


class _OneLineParser(argparse.ArgumentParser):
    """Argument mistakes as one ``error:`` line (exit 2), like every other refusal of the package."""

    def error(self, message: str):
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = _OneLineParser(prog="ppo-benchmark", description=__doc__.split("\n\n")[0],
                       epilog="\n\n".join(__doc__.split("\n\n")[1:3]),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=MODES + (SCORES_MODE, SWEEP_MODE, "all"), default="all",
                   help="all = throughput, solve, memory and parity; scores (hours) and sweep (population vs "
                        "joblib on a 48-run sweep) only when asked")
    p.add_argument("--env", default="CartPole-v1", help="Gymnasium id (default CartPole-v1)")
    p.add_argument("--steps", type=int, default=None,
                   help="env steps per run (default: 50k throughput, 100k solve budget and parity, "
                        "the config's total_timesteps for memory and scores)")
    p.add_argument("--seeds", type=int, default=None, help="seeds for solve and parity (default 10) and scores "
                                                            "(default 3)")
    p.add_argument("--first-seed", type=int, default=FIRST_SEED,
                   help=f"first seed of solve, parity and scores, also the seed of the throughput and memory runs "
                        f"(default {FIRST_SEED}: the tuned CartPole config was tuned on seeds "
                        f"{TUNED_SEEDS.start}-{TUNED_SEEDS.stop - 1}, so default seeds are {FIRST_SEED}..)")
    p.add_argument("--repeats", type=int, default=3,
                   help="in-process throughput runs and memory runs per setting; the median and min-max are "
                        "reported (default 3)")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="Hydra override of our config (repeatable), e.g. --override agent.learning_rate=2e-3; "
                        "not applied to the CleanRL reference settings")
    p.add_argument("--no-sb3", action="store_true", help="do not run Stable-Baselines3 even if it is installed")
    p.add_argument("--cleanrl-script", type=Path, default=None, metavar="PATH",
                   help="CleanRL's own cleanrl/ppo.py (fetched outside this repository, never committed): run it "
                        "live at its CartPole defaults for --wall-steps, timed as whole processes like ours. "
                        "Without it, CleanRL's documented figure (~17 s for 50k steps) is shown, labelled as such")
    p.add_argument("--cleanrl-python", default=sys.executable, metavar="PATH",
                   help="Python interpreter of an environment where CleanRL's ppo.py runs (it pins gymnasium "
                        "0.29.1, e.g. ~/cleanrl/.venv/bin/python; default: this interpreter)")
    p.add_argument("--json", type=Path, default=None,
                   help="where to write the JSON results (default outputs/benchmark/<time>.json; scores: "
                        "<out>/scores.json)")
    p.add_argument("--wall-runs", type=int, default=3,
                   help="fresh-process runs of each library for the wall-clock-including-start-up figure, "
                        "interleaved; their median and min-max are reported (0 = skip; default 3)")
    p.add_argument("--wall-steps", type=int, default=WALL_STEPS,
                   help=f"env steps of each wall-clock run (default {WALL_STEPS:,}; CleanRL's documented figure "
                        "and the wall target are for 50,000)")
    p.add_argument("--eval-every-steps", type=int, default=2048,
                   help="time-to-solve: evaluate every this many env steps, both libraries (default 2048)")
    p.add_argument("--eval-episodes", type=int, default=None,
                   help="episodes per evaluation (default 100; scores: 100 for cheap tasks, 10 for MuJoCo ones)")
    p.add_argument("--envs", default=None, metavar="WORD[,WORD...]",
                   help="scores: tasks to train, config names of conf/env/ (e.g. cartpole,acrobot,halfcheetah), "
                        "or 'all' (every one with a published anchor)")
    p.add_argument("--jobs", type=int, default=2, help="scores: training runs at a time (default 2)")
    p.add_argument("--out", type=Path, default=Path("outputs") / "scores",
                   help="scores: where the runs go, as <out>/<word>/seed=<seed>/, with scores.json, scores.md and "
                        "<word>/learning_curves.png (default outputs/scores); rerun into the same --out to "
                        "continue a stopped benchmark")
    p.add_argument("--solve-return", type=float, default=None,
                   help="time-to-solve threshold (default: the env's reward_threshold, 475 for CartPole-v1)")
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    for name in ("steps", "seeds", "eval_every_steps", "eval_episodes", "repeats", "wall_steps", "jobs"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be ≥ 1")
    if args.wall_runs < 0:
        p.error("--wall-runs must be ≥ 0")
    if args.first_seed < 0:
        p.error("--first-seed must be ≥ 0")
    if args.seeds is None:
        args.seeds = {SCORES_MODE: 3, SWEEP_MODE: 20}.get(args.mode, 10)
    if args.eval_episodes is None and args.mode != SCORES_MODE:  # scores picks it per task
        args.eval_episodes = 100
    return args


def check_cleanrl(args) -> Optional[dict]:
    """The CleanRL script and interpreter, checked before any measurement (``ConfigError`` names the option);
    None when no script was given."""
    from agents.config import ConfigError

    if args.cleanrl_script is None:
        return None
    script = args.cleanrl_script.expanduser()
    if not script.is_file():
        raise ConfigError(f"--cleanrl-script={str(args.cleanrl_script)!r}: no such file (give the path of "
                          "CleanRL's cleanrl/ppo.py, fetched outside this repository)")
    python = shutil.which(os.path.expanduser(args.cleanrl_python))
    if python is None:
        raise ConfigError(f"--cleanrl-python={args.cleanrl_python!r}: not an executable (give the python of an "
                          "environment where CleanRL's ppo.py runs)")
    if args.wall_runs < 1:
        raise ConfigError("--cleanrl-script needs --wall-runs ≥ 1: CleanRL is timed as whole processes")
    return {"script": str(script.resolve()), "python": python, "versions": interpreter_versions(python)}


def machine() -> dict:
    """What the figures were measured on."""
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return {"cpu_model": model, "platform": platform.platform(terse=True)}


def run_benchmark(argv: Optional[Sequence[str]] = None) -> dict:
    """Parse ``argv``, run the reports, print the table, write the JSON; returns the results."""
    import gymnasium as gym

    from agents.config import ConfigError
    from envs.vector import make_vec_env

    args = parse_args(argv)
    if args.mode == SCORES_MODE:
        from experiments.scores import run_scores

        return run_scores(args)
    if args.mode == SWEEP_MODE:
        from experiments.sweep_bench import run_sweep

        try:
            results = run_sweep(args)
        except BenchmarkError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(1)
        results["meta"] = {"argv": args.argv, "machine": machine(), "torch": torch.__version__,
                           "time": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
        write_json(args.json or Path("outputs") / "benchmark" / f"sweep-{time.strftime('%Y-%m-%d_%H-%M-%S')}.json",
                   results)
        return results
    modes = MODES if args.mode == "all" else (args.mode,)
    sb3 = sb3_available() and not args.no_sb3
    our_overrides = env_overrides(args.env) + list(args.override)
    try:
        cleanrl = check_cleanrl(args)
        threshold = gym.spec(args.env).reward_threshold
        target = args.solve_return if args.solve_return is not None else float(threshold or "nan")
        tc = compose_train_config(our_overrides)
        make_vec_env(tc.env, 1).close()  # refuses unsupported spaces before any measurement
        batch = tc.agent.batch_size(tc.env.num_envs)
        if args.steps is not None and args.steps < batch:
            raise ConfigError(f"--steps={args.steps} is invalid: must be ≥ one batch of the config, "
                              f"env.num_envs×agent.num_steps = {batch}")
        if args.json is not None and args.json.exists() and args.json.is_dir():
            raise ConfigError(f"--json={str(args.json)!r} is invalid: it is a folder, give a file path")
    except (ConfigError, BenchmarkError, gym.error.Error) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    if cleanrl and "throughput" not in modes:
        print("note: --cleanrl-script is used by the throughput report only", file=sys.stderr)
    seeds = solve_seeds(args)
    if {"solve", "parity"} & set(modes) and set(seeds) & set(TUNED_SEEDS):
        print(f"note: seeds {_seed_range(seeds)} are {_freshness(seeds)}: their scores flatter it", file=sys.stderr)
    torch.set_num_threads(tc.torch_threads)
    load_start = os.getloadavg()[0]
    results: dict = {"meta": {
        "env": args.env, "argv": list(sys.argv[1:] if argv is None else argv), "overrides": list(args.override),
        "python": platform.python_version(), "torch": torch.__version__, "gymnasium": gym.__version__,
        "stable_baselines3": None, "cpus": os.cpu_count(), "machine": machine(), "torch_threads": tc.torch_threads,
        "seeds": seeds, "seeds_fresh": not set(seeds) & set(TUNED_SEEDS),
        "tuned_seeds": f"{TUNED_SEEDS.start}-{TUNED_SEEDS.stop - 1}",
        "load_start": load_start, "time": time.strftime("%Y-%m-%d %H:%M:%S %Z")}}
    if sb3:
        import stable_baselines3

        results["meta"]["stable_baselines3"] = stable_baselines3.__version__
    try:
        if "throughput" in modes:
            results["throughput"] = report_throughput(args, our_overrides, sb3, cleanrl)
        if "solve" in modes:
            if math.isnan(target):
                print(f"note: {args.env} has no reward_threshold and no --solve-return: time-to-solve skipped",
                      file=sys.stderr)
            else:
                results["solve"] = report_solve(args, our_overrides, sb3, target)
        if "memory" in modes:
            results["memory"] = report_memory(args, our_overrides)
        if "parity" in modes:
            results["parity"] = report_parity(args, our_overrides)
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    load_end = os.getloadavg()[0]
    cpus = os.cpu_count() or 1
    # The benchmark itself keeps about one CPU busy (CleanRL run live: every CPU, and the 1-minute load average
    # still shows it at the end): more than that, plus a margin, means other processes ran.
    own = cpus if results.get("throughput", {}).get("cleanrl", {}).get("live") else 1.0
    results["meta"].update(load_end=load_end, busy=load_start > 1.0 + 0.25 * cpus or load_end > own + 0.25 * cpus)
    results["targets"] = targets(results)
    print(format_report(results))
    write_json(args.json or Path("outputs") / "benchmark" / f"{time.strftime('%Y-%m-%d_%H-%M-%S')}.json", results)
    return results


def write_json(path: Path, results: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_jsonable(results), indent=2))
    except OSError as exc:
        print(f"error: cannot write --json {str(path)!r}: {exc.strerror or exc}", file=sys.stderr)
        sys.exit(2)
    print(f"\nJSON: {path}")


def main(argv: Optional[Sequence[str]] = None) -> None:
    run_benchmark(argv)


if __name__ == "__main__":
    main()
