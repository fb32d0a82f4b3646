"""Speed benchmarks: throughput, time-to-solve, peak memory and learning-curve parity (console script
``ppo-benchmark``).

Examples::

    python -m experiments.benchmark                                  # every report, CartPole-v1
    python -m experiments.benchmark --mode throughput --no-sb3
    python -m experiments.benchmark --mode solve --seeds 10 --override agent.learning_rate=2e-3
    python -m experiments.benchmark --mode parity --seeds 10 --steps 50000 --json parity.json

What each report measures:

- **throughput**: env steps/s of a training run, split into rollout (acting + env steps), update (GAE, batch,
  minibatch epochs) and other (logging, checks) time — at CleanRL's default CartPole settings, built explicitly
  through Hydra overrides (``~tuned`` drops our tuned file, then every CleanRL value is set), and at our tuned
  default. Also the wall clock of ``python -m experiments.train`` for 50k steps at CleanRL's settings,
  *including Python start-up*, as a subprocess (median of ``--wall-runs``). CleanRL's ``ppo.py`` cannot run
  here: its figure is the one measured on this machine (shared/ECOSYSTEM.md). Stable-Baselines3 PPO runs live
  with the same settings when it is installed (``pip install -e .[bench]``).
- **solve**: per seed, train with a deterministic 100-episode evaluation every ``--eval-every-steps`` env
  steps until its mean first reaches the env's reward threshold (475 for CartPole-v1); env steps and training
  wall seconds *excluding evaluation time* (measured and subtracted, for both libraries); median over seeds
  (an unsolved seed counts as infinitely slow) and how many seeds solved within ``--steps``. SB3 PPO runs with
  the rl-zoo3 tuned CartPole-v1 hyperparameters and is evaluated by the same evaluator (same envs and seeds).
- **memory**: peak RSS of a default training run (``python -m experiments.train`` as the only child of a small
  wrapper process, which reads ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``).
- **parity**: the fast path (``agent.rollout_backend=numpy``) against the plain nn.Module path (``torch``) at the
  same hyperparameters and seeds: evaluation returns at fixed steps and at the end, compared with a two-sample
  permutation test, and the largest difference between the first iteration's logged losses (same data).

Targets (issue 4) are printed as PASS/MISS. Timings depend on what else runs on the machine: the header prints
the load average, and CPU seconds are reported beside wall seconds. No test asserts a time.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch

MODES = ("throughput", "solve", "memory", "parity")

# CleanRL's ppo.py defaults for CartPole. "~tuned" removes the defaults-list entry of conf/tuned/<env>.yaml, and
# every value is then given explicitly, so this config does not depend on our agent file either.
CLEANRL_OVERRIDES = (
    "~tuned",
    "env.num_envs=4", "agent.num_steps=128", "agent.ppo_epochs=4", "agent.num_minibatches=4",
    "agent.learning_rate=2.5e-4", "agent.anneal_lr=true", "agent.clip_ratio=0.2", "agent.entropy_coef=0.01",
    "agent.vf_coef=0.5", "agent.max_grad_norm=0.5", "agent.gamma=0.99", "agent.gae_lambda=0.95",
    "agent.norm_adv=true", "agent.clip_value_loss=true", "agent.target_kl=null",
    "agent.hidden_sizes=[64,64]", "agent.activation=tanh",
)
# The same settings in Stable-Baselines3's names (batch_size = 4 × 128 / 4 minibatches).
SB3_CLEANRL = {"n_envs": 4, "n_steps": 128, "batch_size": 128, "n_epochs": 4, "learning_rate": ["lin", 2.5e-4],
               "clip_range": 0.2, "clip_range_vf": 0.2, "ent_coef": 0.01, "vf_coef": 0.5, "max_grad_norm": 0.5,
               "gamma": 0.99, "gae_lambda": 0.95}
# rl-baselines3-zoo's tuned PPO hyperparameters for CartPole-v1 (hyperparams/ppo.yml; n_timesteps 1e5).
SB3_ZOO_CARTPOLE = {"n_envs": 8, "n_steps": 32, "batch_size": 256, "gae_lambda": 0.8, "gamma": 0.98,
                    "n_epochs": 20, "ent_coef": 0.0, "learning_rate": ["lin", 1e-3], "clip_range": ["lin", 0.2]}

# CleanRL ppo.py on this machine (shared/ECOSYSTEM.md): it cannot be run or committed here.
CLEANRL_REFERENCE = {"steps": 50_000, "wall_seconds": 28.0, "steps_per_second": 1800.0,
                     "source": "shared/ECOSYSTEM.md: CleanRL ppo.py (gymnasium 0.29.1), CartPole defaults, 50k "
                               "steps ~28 s wall on this 2-core machine (~1.8k steps/s)"}
TARGET_SPEEDUP = 4.0             # ≥ 4× CleanRL's wall-clock throughput at its settings
TARGET_WALL_50K = 7.0            # ... equivalently 50k steps in ≤ 7 s wall including start-up
TARGET_SOLVE_RATIO = 0.25        # median time-to-solve ≤ ¼ of SB3 rl-zoo's
TARGET_SOLVED_SHARE = 0.9        # ≥ 9/10 seeds solve within the budget
TARGET_RSS_MB = 600.0
PARITY_ALPHA = 0.05
PARITY_LOSS_TOL = 1e-5
EVAL_SEED_OFFSET = 1_000_003     # evaluation envs are seeded seed + this, as Trainer.evaluate does


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

        def evaluate(self, episodes: int):
            start = time.perf_counter()
            result = super().evaluate(episodes)
            self.eval_seconds += time.perf_counter() - start
            self.evals.append((self.global_step, result.mean))
            return result

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


def measure_throughput(tc, steps: int, seed: int = 1) -> dict:
    """Steps/s of training (no evaluation), split into rollout, update and other time. One warm-up iteration
    first, so that one-off lazy imports are not counted (start-up is what the subprocess figure measures)."""
    train_ours(tc, tc.agent.batch_size(tc.env.num_envs), seed)
    rec = Recorder()
    run = train_ours(tc, steps, seed, logger=rec)
    seconds, done = run["wall_seconds"], run["result"].global_step
    rollout, update = rec.total("charts/rollout_seconds"), rec.total("charts/update_seconds")
    return {"config": describe(tc), "steps": done, "seconds": seconds, "cpu_seconds": run["cpu_seconds"],
            "rollout_seconds": rollout, "update_seconds": update, "other_seconds": seconds - rollout - update,
            "steps_per_second": done / seconds}


def _child_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wall(cmd: Sequence[str], runs: int, steps: int, timeout: float = 900.0) -> dict:
    """Wall (and CPU) seconds of ``cmd`` run ``runs`` times as a fresh process: Python start-up included."""
    walls, cpus = [], []
    for _ in range(runs):
        cpu0, wall0 = _child_cpu_seconds(), time.perf_counter()
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
        walls.append(time.perf_counter() - wall0)
        cpus.append(_child_cpu_seconds() - cpu0)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
    return {"command": " ".join(cmd), "steps": steps, "runs_seconds": walls, "cpu_seconds": cpus,
            "median_seconds": statistics.median(walls), "median_cpu_seconds": statistics.median(cpus)}


def train_command(overrides: Sequence[str], run_dir: str) -> list[str]:
    return [sys.executable, "-m", "experiments.train", *overrides, f"hydra.run.dir={run_dir}"]


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
    from agents.rollout import Inference

    policy = model.policy

    def dist_params(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return policy.get_distribution(torch.as_tensor(obs)).distribution.logits.numpy()

    def value(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return policy.predict_values(torch.as_tensor(obs)).numpy()[:, 0]

    return Inference(dist_params, value, None)


def sb3_throughput(env_id: str, steps: int, seed: int = 1, threads: int = 1) -> dict:
    """SB3 PPO at CleanRL's settings, in-process; rollout time from its rollout callbacks, the rest is update."""
    torch.set_num_threads(threads)
    warm = _sb3_model(env_id, SB3_CLEANRL, seed)  # first construction imports torch.optim's dependencies
    warm.learn(SB3_CLEANRL["n_envs"] * SB3_CLEANRL["n_steps"])
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
    return {"config": dict(SB3_CLEANRL), "steps": done, "seconds": seconds,
            "cpu_seconds": time.process_time() - cpu0, "rollout_seconds": marks["rollout"],
            "update_seconds": seconds - marks["rollout"], "other_seconds": 0.0, "steps_per_second": done / seconds}


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
                               seed=seed + EVAL_SEED_OFFSET).mean
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
    """Median over seeds with an unsolved seed counted as infinitely slow (so the median is honest about it)."""
    inf = float("inf")
    steps = [r["solved_step"] if r["solved"] else inf for r in rows]
    seconds = [r["train_seconds"] if r["solved"] else inf for r in rows]
    return {"budget_steps": budget, "seeds": len(rows), "solved": sum(r["solved"] for r in rows),
            "median_steps": statistics.median(steps) if rows else inf,
            "median_train_seconds": statistics.median(seconds) if rows else inf,
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

def report_throughput(args, our_overrides: list[str], sb3: bool) -> dict:
    steps = args.steps or 50_000
    cleanrl = compose_train_config(env_overrides(args.env) + list(CLEANRL_OVERRIDES))
    tuned = compose_train_config(our_overrides)
    out: dict = {"cleanrl_reference": CLEANRL_REFERENCE, "overrides_cleanrl": list(CLEANRL_OVERRIDES),
                 "ours_cleanrl": measure_throughput(cleanrl, steps),
                 "ours_tuned": measure_throughput(tuned, steps), "sb3_cleanrl": None,
                 "wall_ours_cleanrl": None, "wall_sb3_cleanrl": None}
    wall_steps = CLEANRL_REFERENCE["steps"]
    if args.wall_runs > 0:
        with tempfile.TemporaryDirectory(prefix="ppo-bench-") as tmp:
            cmd = train_command(env_overrides(args.env) + list(CLEANRL_OVERRIDES)
                                + [f"total_timesteps={wall_steps}", "eval.episodes=0"], tmp)
            out["wall_ours_cleanrl"] = run_wall(cmd, args.wall_runs, wall_steps)
    if sb3:
        out["sb3_cleanrl"] = sb3_throughput(args.env, steps, threads=cleanrl.torch_threads)
        if args.wall_runs > 0:
            cmd = [sys.executable, "-c", SB3_WALL_SCRIPT, args.env, str(wall_steps), str(cleanrl.torch_threads),
                   json.dumps(SB3_CLEANRL)]
            out["wall_sb3_cleanrl"] = run_wall(cmd, args.wall_runs, wall_steps)
    ours = out["ours_cleanrl"]
    ratios = {"steps_per_second_vs_cleanrl": ours["steps_per_second"] / CLEANRL_REFERENCE["steps_per_second"]}
    if out["wall_ours_cleanrl"]:
        ratios["wall_50k_vs_cleanrl"] = CLEANRL_REFERENCE["wall_seconds"] / out["wall_ours_cleanrl"]["median_seconds"]
    if out["sb3_cleanrl"]:
        ratios["steps_per_second_vs_sb3"] = ours["steps_per_second"] / out["sb3_cleanrl"]["steps_per_second"]
    if out["wall_ours_cleanrl"] and out["wall_sb3_cleanrl"]:
        ratios["wall_50k_vs_sb3"] = out["wall_sb3_cleanrl"]["median_seconds"] / out["wall_ours_cleanrl"]["median_seconds"]
    out["ratios"] = ratios
    return out


def _warm_up_solve(tc, env_id: str, sb3: bool) -> None:
    """One short run of each library first, so that neither pays this process's one-off imports in a seed."""
    train_ours(tc, tc.agent.batch_size(tc.env.num_envs), 0, eval_every=1, eval_episodes=1)
    if sb3:
        solve_sb3(env_id, 0, SB3_ZOO_CARTPOLE["n_envs"] * SB3_ZOO_CARTPOLE["n_steps"], 1, 1, float("inf"),
                  tc.torch_threads)


def report_solve(args, our_overrides: list[str], sb3: bool, target: float) -> dict:
    budget = args.steps or 100_000
    tc = compose_train_config(our_overrides)
    sb3 = sb3 and args.env == "CartPole-v1"  # rl-zoo settings are the CartPole-v1 ones
    _warm_up_solve(tc, args.env, sb3)
    seeds = range(args.seeds)
    ours = summarize_solve([solve_ours(tc, s, budget, args.eval_every_steps, args.eval_episodes, target)
                            for s in seeds], budget)
    out: dict = {"target_return": target, "eval_episodes": args.eval_episodes,
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
               "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
               "sys.exit(code)\n")


def report_memory(args, our_overrides: list[str]) -> dict:
    tc = compose_train_config(our_overrides)
    steps = args.steps or tc.total_timesteps
    with tempfile.TemporaryDirectory(prefix="ppo-bench-") as tmp:
        cmd = train_command(our_overrides + [f"total_timesteps={steps}"], tmp)
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", RSS_WRAPPER, *cmd], capture_output=True, text=True,
                              timeout=1800)
        wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
    kib = int(proc.stdout.split()[-1])  # Linux: ru_maxrss is in KiB
    return {"command": " ".join(cmd), "steps": steps, "peak_rss_mb": kib / 1024, "wall_seconds": wall,
            "config": describe(tc)}


def report_parity(args, our_overrides: list[str]) -> dict:
    tc = compose_train_config(our_overrides)
    return parity(tc, range(args.seeds), args.steps or 100_000, args.eval_episodes)


# --- targets and printing --------------------------------------------------------------------------------------

COMPARE = {"<=": lambda v, t: v <= t, "<": lambda v, t: v < t, ">=": lambda v, t: v >= t}


def targets(results: dict) -> list[dict]:
    """PASS/MISS of each target of issue 4 the run measured ("n/a" when its reference was not run)."""
    rows = []

    def add(name: str, value: Optional[float], compare: str, threshold: float, note: str = "") -> None:
        known = value is not None and not (isinstance(value, float) and math.isnan(value))
        ok = COMPARE[compare](value, threshold) if known else None
        rows.append({"target": name, "value": value, "compare": compare, "threshold": threshold,
                     "status": "n/a" if ok is None else ("PASS" if ok else "MISS"), "note": note})

    tp = results.get("throughput")
    if tp:
        if tp.get("wall_ours_cleanrl"):
            add("50k steps @ CleanRL settings, wall incl. start-up (s)", tp["wall_ours_cleanrl"]["median_seconds"],
                "<=", TARGET_WALL_50K, f"= {TARGET_SPEEDUP:g}× CleanRL's {CLEANRL_REFERENCE['wall_seconds']:g} s")
        add("steps/s @ CleanRL settings vs CleanRL's (×)", tp["ratios"]["steps_per_second_vs_cleanrl"], ">=",
            TARGET_SPEEDUP, "in-process, start-up excluded")
    sv = results.get("solve")
    if sv:
        ours = sv["ours"]
        add("median time-to-solve vs SB3 rl-zoo (×)", sv.get("median_seconds_ratio"), "<=", TARGET_SOLVE_RATIO,
            "" if sv["sb3"] else "SB3 not run")
        add("seeds solved", ours["solved"], ">=", math.ceil(TARGET_SOLVED_SHARE * ours["seeds"] - 1e-9),
            f"of {ours['seeds']}")
    mem = results.get("memory")
    if mem:
        add("peak RSS of a training run (MB)", mem["peak_rss_mb"], "<", TARGET_RSS_MB)
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


def format_report(results: dict) -> str:
    meta = results["meta"]
    lines = [f"PPO benchmark — {meta['env']} — torch {meta['torch']}, gymnasium {meta['gymnasium']}, "
             f"SB3 {meta['stable_baselines3'] or 'not run'}, {meta['cpus']} CPUs, torch threads {meta['torch_threads']}",
             *([f"our config with overrides: {' '.join(meta['overrides'])}"] if meta["overrides"] else []),
             f"load average at start {meta['load_start']:.2f}, at end {meta['load_end']:.2f}"
             + ("  (machine busy: other processes competed for the CPUs; wall times are inflated, see CPU s)"
                if meta["busy"] else "")]
    tp = results.get("throughput")
    if tp:
        lines += ["", "THROUGHPUT (training loop in-process, evaluation off)",
                  f"  {'run':<40}{'steps':>8}{'wall s':>9}{'rollout':>9}{'update':>9}{'other':>8}{'steps/s':>10}"
                  f"{'CPU s':>8}"]
        for key, label in (("ours_cleanrl", "ours @ CleanRL settings"), ("ours_tuned", "ours @ tuned default"),
                           ("sb3_cleanrl", "SB3 PPO @ CleanRL settings")):
            r = tp.get(key)
            if r:
                lines.append(f"  {label:<40}{r['steps']:>8,}{r['seconds']:>9.2f}{r['rollout_seconds']:>9.2f}"
                             f"{r['update_seconds']:>9.2f}{r['other_seconds']:>8.2f}{r['steps_per_second']:>10,.0f}"
                             f"{r['cpu_seconds']:>8.2f}")
        ref = tp["cleanrl_reference"]
        lines.append(f"  {'CleanRL ppo.py (ECOSYSTEM.md, not run)':<40}{ref['steps']:>8,}{ref['wall_seconds']:>9.1f}"
                     f"{'':>34}{ref['steps_per_second']:>10,.0f}   (wall incl. start-up)")
        for key, label in (("wall_ours_cleanrl", "ours"), ("wall_sb3_cleanrl", "SB3")):
            w = tp.get(key)
            if w:
                runs = ", ".join(f"{s:.2f}" for s in w["runs_seconds"])
                lines.append(f"  {label}: {w['steps']:,} steps @ CleanRL settings incl. Python start-up, median of "
                             f"{len(w['runs_seconds'])}: {w['median_seconds']:.2f} s wall (runs {runs}; "
                             f"CPU {w['median_cpu_seconds']:.2f} s)")
        ratio_labels = {"steps_per_second_vs_cleanrl": "steps/s vs CleanRL's ~1.8k",
                        "wall_50k_vs_cleanrl": "50k wall vs CleanRL's 28 s",
                        "steps_per_second_vs_sb3": "steps/s vs SB3 (live)", "wall_50k_vs_sb3": "50k wall vs SB3 (live)"}
        lines.append("  ratios (ours faster by): " + "; ".join(f"{ratio_labels[k]} {v:.1f}×"
                                                                for k, v in tp["ratios"].items()))
    sv = results.get("solve")
    if sv:
        lines += ["", f"TIME-TO-SOLVE (deterministic {sv['eval_episodes']}-episode eval ≥ {sv['target_return']:g}, "
                      f"budget {sv['ours']['budget_steps']:,} steps; evaluation time excluded for both libraries)"]
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
            median = (f"{_fmt(s['median_steps'], 0)} steps, {_fmt(s['median_train_seconds'])} s"
                      if math.isfinite(s["median_steps"]) else "not solved (half the seeds or more did not solve)")
            lines.append(f"    median: {median}; solved {s['solved']}/{s['seeds']}")
        if sv.get("median_seconds_ratio") is not None:
            lines.append(f"  median time-to-solve, ours / SB3: {_fmt(sv['median_seconds_ratio'], 3)}")
    mem = results.get("memory")
    if mem:
        lines += ["", "MEMORY", f"  peak RSS of `{mem['command'].split(' ', 1)[1]}`: {mem['peak_rss_mb']:.0f} MB "
                              f"({mem['steps']:,} steps, {mem['wall_seconds']:.1f} s wall)"]
    par = results.get("parity")
    if par:
        lines += ["", f"PARITY rollout_backend numpy (fast path) vs torch (nn.Module), seeds {par['seeds'][0]}.."
                      f"{par['seeds'][-1]}, {par['eval_episodes']}-episode deterministic eval",
                  f"  {'step':>8}{'numpy mean':>12}{'torch mean':>12}{'perm. p':>9}{'Welch t':>9}"]
        for c in par["comparisons"]:
            lines.append(f"  {c['step']:>8,}{c['numpy_mean']:>12.1f}{c['torch_mean']:>12.1f}{c['p_value']:>9.3f}"
                         f"{_fmt(c['welch_t']):>9}")
        lines.append(f"  first iteration's logged losses, max |numpy − torch|: "
                     f"{par['first_iteration_loss_max_abs_diff']:.2e}")
    rows = results.get("targets", [])
    if rows:
        lines += ["", "TARGETS (issue 4)"]
        for t in rows:
            value = _fmt(t["value"], 3) if isinstance(t["value"], float) else _fmt(t["value"])
            note = f"  ({t['note']})" if t["note"] else ""
            goal = f"{t['compare'].replace('<=', '≤').replace('>=', '≥')} {t['threshold']:g}"
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


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="ppo-benchmark", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=MODES + ("all",), default="all")
    p.add_argument("--env", default="CartPole-v1", help="Gymnasium id (default CartPole-v1)")
    p.add_argument("--steps", type=int, default=None,
                   help="env steps per run (default: 50k throughput, 100k solve budget and parity, "
                        "the config's total_timesteps for memory)")
    p.add_argument("--seeds", type=int, default=10, help="seeds for solve and parity (default 10)")
    p.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                   help="Hydra override of our config (repeatable), e.g. --override agent.learning_rate=2e-3; "
                        "not applied to the CleanRL reference settings")
    p.add_argument("--no-sb3", action="store_true", help="do not run Stable-Baselines3 even if it is installed")
    p.add_argument("--json", type=Path, default=None,
                   help="where to write the JSON results (default outputs/benchmark/<time>.json)")
    p.add_argument("--wall-runs", type=int, default=3,
                   help="subprocess runs for the 50k-steps-including-start-up figure (0 = skip)")
    p.add_argument("--eval-every-steps", type=int, default=2048,
                   help="time-to-solve: evaluate every this many env steps, both libraries (default 2048)")
    p.add_argument("--eval-episodes", type=int, default=100, help="episodes per evaluation (default 100)")
    p.add_argument("--solve-return", type=float, default=None,
                   help="time-to-solve threshold (default: the env's reward_threshold, 475 for CartPole-v1)")
    args = p.parse_args(argv)
    for name in ("steps", "seeds", "eval_every_steps", "eval_episodes"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be ≥ 1")
    if args.wall_runs < 0:
        p.error("--wall-runs must be ≥ 0")
    return args


def run_benchmark(argv: Optional[Sequence[str]] = None) -> dict:
    """Parse ``argv``, run the reports, print the table, write the JSON; returns the results."""
    import gymnasium as gym

    from agents.config import ConfigError
    from envs.vector import make_vec_env

    args = parse_args(argv)
    modes = MODES if args.mode == "all" else (args.mode,)
    sb3 = sb3_available() and not args.no_sb3
    our_overrides = env_overrides(args.env) + list(args.override)
    try:
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
    except (ConfigError, gym.error.Error) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    torch.set_num_threads(tc.torch_threads)
    load_start = os.getloadavg()[0]
    results: dict = {"meta": {
        "env": args.env, "argv": list(sys.argv[1:] if argv is None else argv), "overrides": list(args.override),
        "python": platform.python_version(), "torch": torch.__version__, "gymnasium": gym.__version__,
        "stable_baselines3": None, "cpus": os.cpu_count(), "torch_threads": tc.torch_threads,
        "load_start": load_start, "time": time.strftime("%Y-%m-%d %H:%M:%S")}}
    if sb3:
        import stable_baselines3

        results["meta"]["stable_baselines3"] = stable_baselines3.__version__
    if "throughput" in modes:
        results["throughput"] = report_throughput(args, our_overrides, sb3)
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
    load_end = os.getloadavg()[0]
    cpus = os.cpu_count() or 1
    # The benchmark itself keeps about one CPU busy: more than that (plus a margin) means other processes ran.
    results["meta"].update(load_end=load_end, busy=max(load_start, load_end) > 1.0 + 0.25 * cpus)
    results["targets"] = targets(results)
    print(format_report(results))
    path = args.json or Path("outputs") / "benchmark" / f"{time.strftime('%Y-%m-%d_%H-%M-%S')}.json"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_jsonable(results), indent=2))
    except OSError as exc:
        print(f"error: cannot write --json {str(path)!r}: {exc.strerror or exc}", file=sys.stderr)
        sys.exit(2)
    print(f"\nJSON: {path}")
    return results


def main(argv: Optional[Sequence[str]] = None) -> None:
    run_benchmark(argv)


if __name__ == "__main__":
    main()
