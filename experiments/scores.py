"""Scores a user can rerun: ``python -m experiments.benchmark --mode scores --envs halfcheetah,hopper --seeds 3``.

Each task (a config name of ``conf/env/``: cartpole, acrobot, …, halfcheetah, hopper, …) is trained with its tuned
config for its own budget (the composed config's ``total_timesteps``; ``--steps`` overrides it for short runs) by
the real entry point, ``python -m experiments.train env=<word> seed=<seed> …``, one fresh process per run and
``--jobs`` runs at a time (default 2), each with ``torch_threads=1`` and ``progress=false``, into
``<--out>/<word>/seed=<seed>/`` (default ``outputs/scores/``).

- **Seeds** are fresh: ``--seeds`` of them from ``--first-seed`` (default 1000). The tuned configs were tuned on
  seeds 0–39; seeds that overlap them are refused.
- **Score** of a run: its final deterministic evaluation, as ``experiments.train`` logs it
  (``hparams/final_eval_return``, also the last ``eval/mean_return``), over ``eval.episodes`` episodes: 100 for
  CPU-cheap tasks (classic control, Box2D, the bandit), 10 for MuJoCo ones (``--eval-episodes`` to change). Per
  task: mean ± std over seeds (std with ddof=0, as the sweep report), the per-seed values, and beside them the mean
  return of the last 100 training episodes (CleanRL's measure), read from ``hparams/final_train_return``: the
  trainer's mean of those episodes' own returns, not of the per-iteration ``charts/episodic_return`` means.
- **Anchors**: published figures of CleanRL and rl-baselines3-zoo PPO (``ANCHORS``, with their sources). PASS when
  the mean final evaluation is ≥ the best anchor trained for the same budget, MISS when below it; without a
  same-budget anchor, PASS when it is ≥ the best anchor trained for a larger budget (fewer steps did as well),
  else n/a.
- **Resumable**: run it again with the same arguments after it was stopped (Ctrl-C, SIGTERM, a crash, a reboot) and
  it continues: finished runs (final evaluation logged) are skipped, interrupted runs continue from their
  checkpoint (``resume=<run folder>``; with ``allow_inexact_resume=true`` where the checkpoint could not hold the
  env state — Box2D, MuJoCo — which the table then reports as an inexact resume), runs never started are started.
  On SIGINT/SIGTERM the benchmark passes SIGTERM on to its runs (each finishes its iteration and checkpoints),
  waits for them, writes the table so far and exits 130/143. Runs also get SIGTERM if the benchmark dies.
- **Output**: a table printed and written as ``<out>/scores.json`` (or ``--json``) and ``<out>/scores.md``, and
  per task ``<out>/<word>/learning_curves.png`` (training return, mean ± std over seeds, against env steps; the
  final evaluation and the anchors drawn on it). A task with runs still to finish shows "curve so far, N/M
  steps" instead of a final figure. Each run's own output is in ``<run>/console.log``, its attempts (command,
  wall time, exit code, resumed or not) in ``<run>/scores_run.json``.

Exit code: 0 when every run finished; 1 when a run failed (the table shows it); 130/143 when stopped by a signal;
2 for a mistake in the arguments (one ``error:`` line, before any work).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import json
import math
import os
import platform
import re
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from agents.config import ConfigError, first_line
from experiments.sweep_report import common_grid, interpolate, read_scalars

# --- anchors ---------------------------------------------------------------------------------------------------

CLEANRL_PPO_URL = "https://docs.cleanrl.dev/rl-algorithms/ppo/#ppopy"
CLEANRL_CONTINUOUS_URL = "https://docs.cleanrl.dev/rl-algorithms/ppo/#ppo_continuous_actionpy"
ZOO_URL = "https://github.com/DLR-RM/rl-baselines3-zoo/blob/master/benchmark.md"


@dataclass(frozen=True)
class Anchor:
    """A published PPO score of a task (higher is better)."""

    value: float
    """The figure compared with ours: the published mean (the top of a published range)."""
    budget: int
    """Env steps it was trained for."""
    source: str
    """Who published it (and which script)."""
    env: str
    """The env version it was measured on."""
    runs: str
    """How many runs it summarises."""
    url: str
    """Where it is published."""
    low: Optional[float] = None
    """The bottom of a published range (None: a single figure)."""
    note: str = ""
    """What else differs (e.g. the zoo's gSDE)."""

    def figure(self) -> str:
        return f"{self.low:,g}–{self.value:,g}" if self.low is not None else f"{self.value:,g}"

    def label(self) -> str:
        """``CleanRL ppo.py 490 @ 500k (CartPole-v1, 3 seeds)``."""
        extra = f"; {self.note}" if self.note else ""
        return f"{self.source} {self.figure()} @ {_steps(self.budget)} ({self.env}, {self.runs}{extra})"


def _cleanrl(value: float, budget: int, env: str, low: Optional[float] = None) -> Anchor:
    continuous = env.split("-")[0] in MUJOCO_TASKS
    return Anchor(value, budget, "CleanRL ppo_continuous_action.py" if continuous else "CleanRL ppo.py", env,
                  "3 seeds", CLEANRL_CONTINUOUS_URL if continuous else CLEANRL_PPO_URL, low)


def _zoo(value: float, budget: int, env: str, note: str = "") -> Anchor:
    return Anchor(value, budget, "rl-zoo PPO", env, "1 run", ZOO_URL, note=note)


MUJOCO_TASKS = ("HalfCheetah", "Hopper", "Walker2d", "Ant", "Swimmer", "InvertedPendulum")

# Keyed by task: the Gymnasium id without its version (LunarLander with continuous=True is LunarLanderContinuous),
# since the anchors were measured on older versions of the same tasks. rl-zoo's figures are one trained agent each
# (its benchmark.md says so), on the env versions of its time (MuJoCo v3, LunarLander v2); CleanRL's are 3 seeds,
# its MuJoCo ones on v4. Ranges are kept as published; the top of a range is what PASS/MISS compares with.
ANCHORS: dict[str, tuple[Anchor, ...]] = {
    "CartPole": (_cleanrl(490, 500_000, "CartPole-v1"),),
    "Acrobot": (_cleanrl(-86, 500_000, "Acrobot-v1"), _zoo(-73.5, 1_000_000, "Acrobot-v1")),
    "MountainCar": (_cleanrl(-200, 500_000, "MountainCar-v0"), _zoo(-110, 1_000_000, "MountainCar-v0")),
    "Pendulum": (_zoo(-172, 100_000, "Pendulum-v1", note="the zoo uses gSDE"),),
    "LunarLander": (_zoo(242, 1_000_000, "LunarLander-v2"),),
    "LunarLanderContinuous": (_zoo(271, 1_000_000, "LunarLanderContinuous-v2"),),
    "BipedalWalker": (_zoo(288, 5_000_000, "BipedalWalker-v3"),),
    "HalfCheetah": (_cleanrl(2906, 1_000_000, "HalfCheetah-v4", low=1443), _zoo(5819, 1_000_000, "HalfCheetah-v3")),
    "Hopper": (_cleanrl(2383, 1_000_000, "Hopper-v4"), _zoo(2410, 1_000_000, "Hopper-v3")),
    "Walker2d": (_cleanrl(2891, 1_000_000, "Walker2d-v4", low=2288), _zoo(3479, 1_000_000, "Walker2d-v3")),
    "Ant": (_zoo(1327, 1_000_000, "Ant-v3"),),
    "Swimmer": (_zoo(282, 1_000_000, "Swimmer-v3"),),
    "InvertedPendulum": (_cleanrl(963, 1_000_000, "InvertedPendulum-v4"),),
}
ANCHOR_CAVEAT = ("anchors: higher is better; rl-zoo figures are one run each on older env versions (MuJoCo v3, "
                 "LunarLander v2), CleanRL's are 3 seeds (MuJoCo on v4); ours run on today's versions")


def task_key(env_id: str, kwargs: Optional[dict] = None) -> str:
    """The anchors' name of a task: ``HalfCheetah-v5`` → ``HalfCheetah``; LunarLander with ``continuous=True`` →
    ``LunarLanderContinuous``; BipedalWalker with ``hardcore=True`` → ``BipedalWalkerHardcore``."""
    kwargs = kwargs or {}
    name = re.sub(r"-v\d+$", "", env_id.rsplit(":", 1)[-1].rsplit("/", 1)[-1])
    if name == "LunarLander" and kwargs.get("continuous"):
        name = "LunarLanderContinuous"
    if kwargs.get("hardcore"):
        name += "Hardcore"
    return name


def judge(mean: float, budget: int, anchors: Sequence[Anchor]) -> tuple[str, Optional[Anchor], str]:
    """(status, the anchor compared with, why): PASS/MISS against the best anchor of the same budget; without
    one, PASS when ``mean`` reaches the best anchor of a larger budget (fewer steps did as well), else n/a."""
    same = [a for a in anchors if a.budget == budget]
    larger = [a for a in anchors if a.budget > budget]
    if same:
        best = max(same, key=lambda a: a.value)
        return ("PASS" if mean >= best.value else "MISS"), best, "best anchor at the same budget"
    if larger:
        best = max(larger, key=lambda a: a.value)
        if mean >= best.value:
            return "PASS", best, f"reached with fewer steps than the anchor's {_steps(best.budget)}"
        return "n/a", best, f"no anchor at {_steps(budget)}; the anchor had {_steps(best.budget)} steps"
    if anchors:
        return "n/a", None, f"anchors only at smaller budgets than {_steps(budget)}"
    return "n/a", None, "no published anchor"


# --- tasks -----------------------------------------------------------------------------------------------------

MUJOCO_EVAL_EPISODES = 10
CHEAP_EVAL_EPISODES = 100
RECORD = "scores_run.json"
CONSOLE = "console.log"
LOCK = ".scores.lock"
SCORE_TAGS = ("hparams/final_eval_return", "hparams/final_train_return", "eval/mean_return",
              "charts/episodic_return", "charts/learning_rate")
STD_NOTE = "std over seeds with ddof=0"
FINAL_NOTE = ("final = deterministic evaluation of the final policy, logged by experiments.train as "
              "hparams/final_eval_return (= the run's last eval/mean_return)")
TRAIN_NOTE = ("last 100 = mean return of the last 100 training episodes (CleanRL's measure), from "
              "hparams/final_train_return: the returns of those episodes themselves")


@dataclass
class Task:
    """One env word of ``conf/env/`` with what its tuned config composes to."""

    word: str
    env_id: str
    kwargs: dict
    budget: int
    family: str
    eval_episodes: int
    key: str
    anchors: tuple[Anchor, ...]


def env_words() -> list[str]:
    """The config names of ``conf/env/`` (the words ``--envs`` takes)."""
    from conf import CONF_DIR

    return sorted(p.stem for p in (Path(CONF_DIR) / "env").glob("*.yaml"))


def env_family(env_id: str) -> str:
    """mujoco, box2d, classic_control, toy_text or other, from the registered entry point."""
    import gymnasium as gym

    module, _, name = env_id.rpartition(":")
    try:
        if module:
            importlib.import_module(module)
        entry = gym.spec(name).entry_point
    except Exception:  # noqa: BLE001 - not registered (yet): a user's env, cheap unless known otherwise
        return "other"
    entry = entry if isinstance(entry, str) else f"{getattr(entry, '__module__', '')}:"
    for family in ("mujoco", "box2d", "classic_control", "toy_text"):
        if f".{family}" in entry.split(":")[0]:
            return family
    return "other"


def compose_task(word: str, steps: Optional[int], overrides: Sequence[str], eval_episodes: Optional[int]) -> Task:
    """Compose ``env=<word>`` (its tuned file included) as ``experiments.train`` would; ``ConfigError`` names the
    word. Also builds one env, so that a missing extra (box2d, mujoco) or an unsupported space is refused here."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from conf import CONF_DIR
    from envs.vector import make_vec_env
    from experiments import config as _schema  # noqa: F401  (registers the schema)
    from experiments.run import to_train_config

    extra = [f"total_timesteps={steps}"] if steps is not None else []
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose("config", overrides=[f"env={word}", *extra, *overrides])
        tc = to_train_config(cfg)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(f"--envs {word}: {first_line(exc)}") from None
    except ConfigError as exc:
        message = str(exc).replace("total_timesteps=", "--steps=") if steps is not None else str(exc)
        raise ConfigError(f"--envs {word}: {message}") from None
    try:
        make_vec_env(tc.env, 1).close()
    except Exception as exc:  # noqa: BLE001 - gymnasium's own refusals (a missing extra, an unknown id)
        raise ConfigError(f"--envs {word}: {tc.env.id}: {first_line(exc)}") from None
    family = env_family(tc.env.id)
    episodes = eval_episodes or (MUJOCO_EVAL_EPISODES if family == "mujoco" else CHEAP_EVAL_EPISODES)
    key = task_key(tc.env.id, dict(tc.env.kwargs))
    return Task(word, tc.env.id, dict(tc.env.kwargs), tc.total_timesteps, family, episodes, key,
                ANCHORS.get(key, ()))


# --- runs ------------------------------------------------------------------------------------------------------

@dataclass
class RunState:
    """What a run folder holds: done (final evaluation logged), interrupted (a checkpoint to resume), new."""

    task: Task
    seed: int
    path: Path
    record: dict
    state: str = "new"
    final: Optional[float] = None
    final_from: Optional[str] = None
    last_eval: Optional[float] = None
    train_return: Optional[float] = None
    steps: int = 0
    curve: tuple[np.ndarray, np.ndarray] = field(default_factory=lambda: (np.zeros(0), np.zeros(0)))
    last_event_time: Optional[float] = None
    failed: Optional[str] = None

    @property
    def name(self) -> str:
        return f"{self.task.word} seed={self.seed}"


def run_dir(out: Path, word: str, seed: int) -> Path:
    return out / word / f"seed={seed}"


def _settings(task: Task, seed: int, overrides: Sequence[str]) -> dict:
    """What makes a run folder this benchmark's run: another budget, evaluation or override is another run."""
    return {"word": task.word, "env_id": task.env_id, "seed": seed, "budget": task.budget,
            "eval_episodes": task.eval_episodes, "overrides": list(overrides)}


def read_record(path: Path) -> Optional[dict]:
    try:
        return json.loads((path / RECORD).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path / RECORD}: unreadable ({first_line(exc)}): remove that run folder") from None


def write_record(run: RunState) -> None:
    tmp = run.path / f".{RECORD}.tmp"
    tmp.write_text(json.dumps(run.record, indent=2))
    os.replace(tmp, run.path / RECORD)


def inspect_run(task: Task, seed: int, out: Path, overrides: Sequence[str]) -> RunState:
    """Read a run folder: its record (refusing one made with other settings) and its TensorBoard events."""
    path = run_dir(out, task.word, seed)
    wanted = _settings(task, seed, overrides)
    record = read_record(path) if path.is_dir() else None
    if record is None:
        if path.is_dir() and ((path / "tb").exists() or (path / "checkpoint.pt").exists()):
            raise ConfigError(f"{path} holds a run this benchmark did not start (no {RECORD}): give another --out "
                              "or remove that folder")
        record = {**wanted, "attempts": []}
    else:
        differ = [f"{k}={record.get(k)!r} (asked: {v!r})" for k, v in wanted.items() if record.get(k) != v]
        if differ:
            raise ConfigError(f"{path} holds a run with {', '.join(differ)}: that is another run; give another "
                              "--out, or remove that folder to start it again")
    run = RunState(task, seed, path, record)
    refresh(run)
    return run


def refresh(run: RunState) -> None:
    """Update a run's state and figures from its folder (the record and the TensorBoard events)."""
    tb = run.path / "tb"
    scalars = read_scalars(tb, SCORE_TAGS) if tb.is_dir() else {tag: [] for tag in SCORE_TAGS}
    value = {tag: (events[-1][2] if events else None) for tag, events in scalars.items()}
    run.last_eval = value["eval/mean_return"]
    run.train_return = value["hparams/final_train_return"]
    run.steps = max((e[1] for e in scalars["charts/learning_rate"]), default=0)
    run.last_event_time = max((e[0] for events in scalars.values() for e in events), default=None)
    curve = scalars["charts/episodic_return"]
    if curve:
        steps = np.array([e[1] for e in curve], dtype=float)
        order = np.argsort(steps, kind="stable")
        run.curve = steps[order], np.array([e[2] for e in curve], dtype=float)[order]
    attempts = run.record["attempts"]
    last_ok = bool(attempts) and attempts[-1].get("returncode") == 0
    if value["hparams/final_eval_return"] is not None:
        run.state, run.final, run.final_from = "done", value["hparams/final_eval_return"], "hparams/final_eval_return"
    elif last_ok and run.last_eval is not None:
        # the run ended normally but logged no hparams: a resume after its last checkpoint had nothing left to
        # train; its final evaluation is the last eval/mean_return
        run.state, run.final, run.final_from = "done", run.last_eval, "eval/mean_return"
    elif (run.path / "checkpoint.pt").is_file():
        run.state = "interrupted"
    else:
        run.state = "new"


def _quote(path: Path) -> str:
    """A path as a quoted Hydra override value (run folders contain '=')."""
    return "'" + str(path).replace("\\", "\\\\").replace("'", "\\'") + "'"


def start_command(run: RunState, steps: Optional[int], overrides: Sequence[str]) -> list[str]:
    task = run.task
    return [sys.executable, "-m", "experiments.train", f"env={task.word}", f"seed={run.seed}",
            f"eval.episodes={task.eval_episodes}", "torch_threads=1", "progress=false",
            *([f"total_timesteps={steps}"] if steps is not None else []), *overrides,
            f"hydra.run.dir={_quote(run.path)}"]


def resume_command(run: RunState, inexact: bool) -> list[str]:
    """``resume=<run folder>`` with only what a resume may change; Hydra writes no second ``.hydra/`` there (the
    run's own config stays the one it started with)."""
    return [sys.executable, "-m", "experiments.train", f"resume={_quote(run.path)}", "torch_threads=1",
            "progress=false", f"eval.episodes={run.task.eval_episodes}",
            *(["allow_inexact_resume=true"] if inexact else []),
            f"hydra.run.dir={_quote(run.path)}", "hydra.output_subdir=null"]


def checkpoint_facts(path: Path) -> tuple[int, Optional[bool]]:
    """(global step, whether the checkpoint holds the whole env state: None when it does not say)."""
    from agents.checkpoint import load_checkpoint

    state = load_checkpoint(path / "checkpoint.pt", key="resume")
    env_state = state.get("collector", {}).get("env")
    complete = bool(env_state.get("complete", True)) if isinstance(env_state, dict) else None
    return int(state.get("global_step", 0)), complete


def clear_run(path: Path) -> None:
    """Remove what a run that never reached its first checkpoint left (its record and console log stay)."""
    for name in ("tb", ".hydra"):
        shutil.rmtree(path / name, ignore_errors=True)
    for item in path.glob("*"):
        if item.is_file() and item.name not in (RECORD, CONSOLE):
            item.unlink()


def wall_seconds(run: RunState) -> tuple[Optional[float], bool]:
    """(seconds of the attempts since the run last started from scratch, whether one of them is an estimate).
    An attempt the benchmark could not time to its end (it was killed) counts until the run's last event."""
    attempts = run.record["attempts"]
    starts = [i for i, a in enumerate(attempts) if a["kind"] == "start"]
    if not starts:
        return None, False
    close_attempts(run)
    return (sum(a["seconds"] for a in attempts[starts[-1]:]),
            any(a.get("estimated") for a in attempts[starts[-1]:]))


def close_attempts(run: RunState) -> None:
    """Give an attempt the benchmark could not time to its end (it was killed with it) the time until the run's
    last TensorBoard event, marked as estimated. Call before a new attempt's events exist."""
    for a in run.record["attempts"]:
        if a.get("seconds") is None:
            end = run.last_event_time
            a.update(seconds=max(0.0, end - a["started"]) if end is not None else 0.0, estimated=True)


# --- the scheduler ---------------------------------------------------------------------------------------------

def say(text: str = "") -> None:
    """Print and flush; if the reader of stdout went away (``| head``), go on quietly: the runs and the files
    matter more than the lines."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the unflushed rest goes nowhere, also at exit
        os.close(devnull)


def _die_with_parent():
    """A ``preexec_fn`` (None where unsupported): on Linux, the run gets SIGTERM — it checkpoints and exits — when
    the benchmark dies, even by SIGKILL. ``prctl`` is looked up here, before the fork."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def setup() -> None:
        prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the benchmark died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return setup


@contextlib.contextmanager
def out_lock(out: Path, wait_s: float = 120.0):
    """Exclusive use of ``out``: a flock the runs inherit, so that it stays held while a run of a benchmark that
    died is still checkpointing. Yields the lock's file descriptor."""
    fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait_s
    told = False
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ConfigError(f"--out {out} is in use by another scores benchmark or its runs: wait for "
                                      "it to finish, or give another --out") from None
                if not told:
                    say(f"waiting for another scores benchmark (or its runs) to release {out} …")
                    told = True
                time.sleep(0.5)
        yield fd
    finally:
        os.close(fd)


class Scheduler:
    """Runs at most ``jobs`` training processes at a time; on SIGINT/SIGTERM passes SIGTERM on and waits."""

    def __init__(self, jobs: int, lock_fd: int, steps: Optional[int], overrides: Sequence[str]):
        self.jobs, self.lock_fd, self.steps, self.overrides = jobs, lock_fd, steps, list(overrides)
        self.running: dict[Any, tuple[RunState, float, Any]] = {}
        self.signum: Optional[int] = None
        self.received = self.forwarded = 0
        self.preexec = _die_with_parent()
        from experiments.benchmark import machine

        self.cpu = f"{machine()['cpu_model']} ({os.cpu_count()} CPUs)"

    def _on_signal(self, signum, frame) -> None:  # only notes it: the loop passes it on (no I/O in a handler)
        self.signum = signum
        self.received += 1

    def _forward(self) -> None:
        """SIGTERM to every running run, once per signal received: the first makes them checkpoint and exit,
        a second stops them at once."""
        if self.forwarded == 0:
            say(f"\n{signal.Signals(self.signum).name}: stopping the runs (each checkpoints; rerun the same command "
                "to continue) …")
        self.forwarded = self.received
        for proc in list(self.running):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)

    def launch(self, run: RunState) -> None:
        import subprocess

        close_attempts(run)
        inexact = False
        if run.state == "interrupted":
            step, complete = checkpoint_facts(run.path)
            inexact = complete is not True
            cmd = resume_command(run, inexact)
            how = {True: "exact",
                   False: "INEXACT: the checkpoint cannot hold this env's state, so the envs restart from fresh "
                          "episodes (allow_inexact_resume=true)",
                   None: "exactness unknown: the checkpoint does not say whether it holds the env state; "
                         "allow_inexact_resume=true"}[complete]
            say(f"  resume {run.name} from step {step:,} of {run.task.budget:,} ({how})")
            attempt = {"kind": "resume", "from_step": step, "exact": complete}
        else:
            clear_run(run.path)
            cmd = start_command(run, self.steps, self.overrides)
            say(f"  start  {run.name}")
            attempt = {"kind": "start", "from_step": 0, "exact": True}
        attempt.update(command=cmd, started=time.time(), seconds=None, returncode=None, cpu=self.cpu)
        run.record["attempts"].append(attempt)
        write_record(run)
        log = open(run.path / CONSOLE, "a")
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {attempt['kind']}: {' '.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, pass_fds=(self.lock_fd,), preexec_fn=self.preexec)
        self.running[proc] = (run, time.monotonic(), log)

    def finish(self, proc, code: int) -> None:
        run, t0, log = self.running.pop(proc)
        log.close()
        attempt = run.record["attempts"][-1]
        attempt.update(seconds=time.monotonic() - t0, returncode=code)
        write_record(run)
        refresh(run)
        if code == 0 and run.state == "done":
            say(f"  done   {run.name} in {attempt['seconds']:.1f} s: final eval {run.final:,.2f}")
        elif self.signum is not None and code != 0:  # stopped by us: not a failure
            then = ("checkpointed at step {:,}; rerun to resume".format(run.steps) if run.state == "interrupted"
                    else "before its first checkpoint; rerun to start it")
            say(f"  stopped {run.name} (exit {code}: {then})")
        else:
            run.failed = f"exit {code}: {last_error(run.path / CONSOLE)}"
            say(f"  FAILED {run.name} ({run.failed}); its output: {run.path / CONSOLE}")

    def run_all(self, todo: list[RunState]) -> None:
        pending = list(todo)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while (pending and self.signum is None) or self.running:
                if self.received > self.forwarded:
                    self._forward()
                while pending and self.signum is None and len(self.running) < self.jobs:
                    run = pending.pop(0)
                    try:
                        self.launch(run)
                    except ConfigError as exc:  # an unreadable checkpoint: that run fails, the others go on
                        run.failed = str(exc)
                        say(f"  FAILED {run.name}: {exc}")
                for proc in list(self.running):
                    code = proc.poll()
                    if code is not None:
                        self.finish(proc, code)
                time.sleep(0.05)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def last_error(log: Path) -> str:
    """The last ``error:`` line of a run's output, else its last line."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no output)"
    errors = [line for line in lines if line.startswith("error:")]
    return (errors or lines or ["(no output)"])[-1][:300]


# --- the report ------------------------------------------------------------------------------------------------

def _num(x: Optional[float], digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:,.{digits}f}"


def _steps(n: int) -> str:
    """500000 → 500k, 1000000 → 1M, 4096 → 4,096."""
    if n >= 1_000_000 and n % 100_000 == 0:
        return f"{n / 1e6:g}M"
    if n >= 10_000 and n % 1_000 == 0:
        return f"{n // 1000}k"
    return f"{n:,}"


def _stats(values: Sequence[float]) -> dict:
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()), "std": float(arr.std()), "values": [float(v) for v in values]}


def task_result(task: Task, runs: Sequence[RunState]) -> dict:
    """One row of the table: the task's scores over seeds (or its progress), anchors and status."""
    per_seed = []
    for r in runs:
        seconds, estimated = wall_seconds(r)
        attempts = r.record["attempts"]
        starts = [i for i, a in enumerate(attempts) if a["kind"] == "start"]
        resumes = [a for a in attempts[starts[-1] if starts else 0:] if a["kind"] == "resume"]
        per_seed.append({
            "seed": r.seed, "dir": str(r.path), "state": "failed" if r.failed else r.state,
            "final_eval_return": r.final, "final_from": r.final_from, "last_eval_mean_return": r.last_eval,
            "final_train_return": r.train_return, "steps": r.steps, "wall_seconds": seconds,
            "wall_estimated": estimated, "attempts": len(attempts), "resumed": bool(resumes),
            "resumed_inexactly": any(a["exact"] is not True for a in resumes), "error": r.failed})
    done = [r for r in runs if r.state == "done"]
    complete = len(done) == len(runs) and not any(r.failed for r in runs)
    out: dict = {
        "task": task.word, "env_id": task.env_id, "env_kwargs": task.kwargs, "family": task.family,
        "anchor_task": task.key, "budget": task.budget, "eval_episodes": task.eval_episodes,
        "seeds": [r.seed for r in runs], "n_seeds": len(runs), "n_done": len(done), "complete": complete,
        "steps_done": sum(r.steps for r in runs), "steps_total": task.budget * len(runs),
        "final_eval": None, "last100_train": None, "wall_seconds": None,
        "anchors": [{**vars(a), "label": a.label()} for a in task.anchors],
        "status": "incomplete", "compared_with": None, "status_note": "", "runs": per_seed,
        "resumed_inexactly": any(p["resumed_inexactly"] for p in per_seed)}
    if complete:
        out["final_eval"] = {**_stats([r.final for r in runs]), "source": FINAL_NOTE}
        trains = [r.train_return for r in runs]
        if all(t is not None for t in trains):
            out["last100_train"] = {**_stats(trains), "source": TRAIN_NOTE}
        walls = [p["wall_seconds"] for p in per_seed if p["wall_seconds"] is not None]
        if walls:
            out["wall_seconds"] = {"median": float(np.median(walls)), "min": min(walls), "max": max(walls),
                                   "values": walls, "estimated": any(p["wall_estimated"] for p in per_seed)}
        status, anchor, why = judge(out["final_eval"]["mean"], task.budget, task.anchors)
        out.update(status=status, compared_with=anchor.label() if anchor else None, status_note=why)
    else:
        failed = [p for p in per_seed if p["state"] == "failed"]
        out["status_note"] = (f"curve so far, {out['steps_done']:,}/{out['steps_total']:,} steps"
                              + (f"; {len(failed)} run(s) failed" if failed else ""))
    return out


def plot_task(path: Path, task: Task, runs: Sequence[RunState], row: dict) -> None:
    """Training return against env steps: each seed thin, mean ± std over seeds as a band, the final evaluation
    (mean ± std over seeds) as a point at the budget, anchors as horizontal lines."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.5, 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    curves = [r.curve for r in runs if r.curve[0].size]
    for steps, values in curves:
        ax.plot(steps, values, color="tab:blue", lw=0.6, alpha=0.3)
    if curves:
        grid = common_grid([c[0] for c in curves])
        ys = np.stack([interpolate(s, v, grid) for s, v in curves])
        mean, std = ys.mean(axis=0), ys.std(axis=0)
        plural = "s" * (len(curves) != 1)
        ax.plot(grid, mean, color="tab:blue", lw=1.8, label=f"training return, mean over {len(curves)} seed{plural}")
        ax.fill_between(grid, mean - std, mean + std, color="tab:blue", alpha=0.2, lw=0, label="± std over seeds")
    final = row["final_eval"]
    if final is not None:
        x = max(r.steps for r in runs)
        ax.errorbar([x], [final["mean"]], yerr=[final["std"]], fmt="o", color="black", capsize=4, zorder=5,
                    label=f"final deterministic eval ({task.eval_episodes} ep.): "
                          f"{_num(final['mean'])} ± {_num(final['std'])}")
    styles = ["--", ":", "-."]
    colors = ["tab:red", "tab:green", "tab:purple", "tab:orange"]
    for i, a in enumerate(task.anchors):
        color = colors[i % len(colors)]
        if a.low is not None:
            ax.axhspan(a.low, a.value, color=color, alpha=0.08, lw=0)
        ax.axhline(a.value, color=color, ls=styles[i % len(styles)], lw=1.2, label=a.label())
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(
        lambda x, _: f"{x / 1e6:g}M" if x >= 1e6 else f"{x / 1e3:g}k" if x >= 1e3 else f"{x:,.0f}"))
    ax.set_xlabel("env steps")
    ax.set_ylabel("episodic return (training: charts/episodic_return)")
    status = row["status"] if row["complete"] else row["status_note"]
    seeds = f"{len(runs)} seed{'s' * (len(runs) != 1)}"
    ax.set_title(f"{task.word} ({task.env_id}): {seeds}, budget {task.budget:,} steps — {status}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.set_xlim(left=0)
    ax.legend(fontsize=7, loc="best")
    fig.savefig(path, dpi=110)


def format_table(results: dict) -> str:
    meta = results["meta"]
    lines = [f"PPO scores — runs trained {meta['trained']} on {meta['trained_on']}, {meta['jobs']} run(s) at a time, "
             f"torch_threads=1 (table of {meta['time']})",
             f"  Python {meta['python']}, torch {meta['torch']}, gymnasium {meta['gymnasium']}"
             + "".join(f", {k} {v}" for k, v in meta["extras"].items() if v),
             f"  seeds {meta['seed_range']} ({meta['freshness']})",
             f"  {FINAL_NOTE}; {STD_NOTE}", f"  {TRAIN_NOTE}", f"  {ANCHOR_CAVEAT}",
             *([f"  NOT the tuned configs alone: overrides {' '.join(meta['overrides'])}"]
               if meta["overrides"] else []),
             *([f"  budgets overridden: --steps {meta['steps_override']:,} (anchors are for full budgets)"]
               if meta["steps_override"] else []),
             ""]
    header = f"{'task':<30}{'budget':>11}{'seeds':>7}{'final eval (mean ± std)':>27}{'last 100 train':>20}" \
             f"{'wall s/run':>20}  status"
    lines += [header, "-" * len(header)]
    for row in results["tasks"]:
        task = f"{row['task']} ({row['env_id']})"
        seeds = f"{row['n_done']}/{row['n_seeds']}"
        if row["complete"]:
            f, t, w = row["final_eval"], row["last100_train"], row["wall_seconds"]
            final = f"{_num(f['mean'], 2)} ± {_num(f['std'], 2)}"
            train = f"{_num(t['mean'], 2)} ± {_num(t['std'], 2)}" if t else "—"
            wall = (f"{w['median']:,.1f} ({w['min']:,.1f}–{w['max']:,.1f})" + ("~" if w["estimated"] else "")
                    if w else "—")
            status = f"{row['status']}  ({row['status_note']})"
        else:
            final, train, wall, status = row["status_note"], "", "", "—"
        if len(task) > 29:
            lines.append(task)
            task = ""
        if len(final) > 26:
            lines.append(f"{task:<30}{row['budget']:>11,}{seeds:>7}  {final}")
            lines.append(f"{'':<48}{'':>27}{train:>20}{wall:>20}  {status}")
        else:
            lines.append(f"{task:<30}{row['budget']:>11,}{seeds:>7}{final:>27}{train:>20}{wall:>20}  {status}")
    lines += ["", "per seed (final eval; last 100 train; wall s; resumed?):"]
    for row in results["tasks"]:
        parts = []
        for p in row["runs"]:
            if p["state"] == "done":
                how = ""
                if p["resumed"]:
                    how = ", resumed INEXACTLY" if p["resumed_inexactly"] else ", resumed exactly"
                wall = f"{p['wall_seconds']:.1f}{'~' if p['wall_estimated'] else ''} s" \
                    if p["wall_seconds"] is not None else "— s"
                parts.append(f"{p['seed']}: {_num(p['final_eval_return'], 2)}; {_num(p['final_train_return'], 2)}; "
                             f"{wall}{how}")
            else:
                parts.append(f"{p['seed']}: {p['state']} at {p['steps']:,}/{row['budget']:,} steps"
                             + (f" ({p['error']})" if p["error"] else ""))
        lines.append(f"  {row['task']}: " + " | ".join(parts))
    lines += ["", "anchors (higher is better; the one compared with is marked *):"]
    for row in results["tasks"]:
        if not row["anchors"]:
            lines.append(f"  {row['task']}: none published ({row['anchor_task']})")
            continue
        marked = [("* " if a["label"] == row["compared_with"] else "  ") + a["label"] for a in row["anchors"]]
        lines.append(f"  {row['task']}: " + "; ".join(marked))
    sources = sorted({f"{a['source']}: {a['url']}" for row in results["tasks"] for a in row["anchors"]})
    if sources:
        lines += ["sources:", *(f"  {s}" for s in sources)]
    if any(row["wall_seconds"] and row["wall_seconds"]["estimated"] for row in results["tasks"]):
        lines.append("~ = includes an attempt the benchmark could not time to its end (timed to its last event)")
    return "\n".join(line for line in lines).rstrip()


def format_markdown(results: dict) -> str:
    meta = results["meta"]
    lines = [f"Runs trained {meta['trained']} on {meta['trained_on']} ({meta['jobs']} runs at a time, one torch "
             f"thread each), Python {meta['python']}, torch {meta['torch']}, gymnasium "
             f"{meta['gymnasium']}; seeds {meta['seed_range']} ({meta['freshness']}). Command: "
             f"`python -m experiments.benchmark {' '.join(meta['argv'])}`.", "",
             f"Final eval: the deterministic evaluation of the final policy (`hparams/final_eval_return`), mean ± "
             f"std over seeds ({STD_NOTE}). Last 100 train: the mean return of the last 100 training episodes, "
             f"CleanRL's measure (`hparams/final_train_return`, the episodes' own returns). Wall: per run, median "
             f"(min–max), Python start-up included. Status: PASS when the mean final eval is ≥ the best anchor at "
             f"the same budget (or at a larger one), MISS when below the best same-budget anchor. "
             f"{ANCHOR_CAVEAT[0].upper() + ANCHOR_CAVEAT[1:]}.", "",
             "| task | budget | final eval (mean ± std) | per seed | last 100 train | wall per run | anchors | "
             "status |", "|---|---:|---:|---|---:|---:|---|---|"]
    for row in results["tasks"]:
        anchors = "<br>".join(("**" + a["label"] + "**") if a["label"] == row["compared_with"] else a["label"]
                              for a in row["anchors"]) or "none published"
        task = f"{row['task']} ({row['env_id']})"
        if row["complete"]:
            f, t, w = row["final_eval"], row["last100_train"], row["wall_seconds"]
            cells = [task, f"{row['budget']:,}",
                     f"{_num(f['mean'])} ± {_num(f['std'])} ({row['n_seeds']} seed{'s' * (row['n_seeds'] != 1)}, "
                     f"{row['eval_episodes']} ep.)",
                     ", ".join(_num(v) for v in f["values"]),
                     f"{_num(t['mean'])} ± {_num(t['std'])}" if t else "—",
                     _wall(w), anchors,
                     f"{row['status']} ({row['status_note']})"
                     + ("; resumed inexactly" if row["resumed_inexactly"] else "")]
        else:
            cells = [task, f"{row['budget']:,}", row["status_note"], "", "", "", anchors, "—"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    sources = sorted({(a["source"], a["url"]) for row in results["tasks"] for a in row["anchors"]})
    if sources:
        lines += ["Sources: " + "; ".join(f"[{name}]({url})" for name, url in sources) + ".", ""]
    lines += [f"![{row['task']}]({row['task']}/learning_curves.png)" for row in results["tasks"]]
    return "\n".join(lines) + "\n"


def _wall(w: Optional[dict]) -> str:
    if not w:
        return "—"
    digits = 0 if w["max"] >= 100 else 1
    return (f"{w['median']:,.{digits}f} s ({w['min']:,.{digits}f}–{w['max']:,.{digits}f})"
            + (" ~" if w["estimated"] else ""))


def trained_when(runs: dict) -> dict:
    """When and on what the runs of the table were trained (from their records: a rerun that only reports
    does not change it)."""
    attempts = [a for rs in runs.values() for r in rs for a in r.record["attempts"]]
    if not attempts:
        return {"trained": "— (nothing trained yet)", "trained_on": "—"}
    fmt = "%Y-%m-%d %H:%M"
    start = min(a["started"] for a in attempts)
    end = max(a["started"] + (a.get("seconds") or 0.0) for a in attempts)
    cpus = sorted({a.get("cpu") or "unknown CPU" for a in attempts})
    first, last = time.strftime(fmt, time.localtime(start)), time.strftime(fmt + " %Z", time.localtime(end))
    return {"trained": f"{first}–{last}",
            "trained_on": " and ".join(cpus)}


def versions() -> dict:
    import importlib.metadata as md

    out = {}
    for name in ("mujoco", "box2d"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


# --- entry -----------------------------------------------------------------------------------------------------

def _fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def parse_words(spec: Optional[str]) -> list[str]:
    words = env_words()
    if not spec:
        raise ConfigError(f"--mode scores needs --envs WORD[,WORD…] (configs of conf/env/: {', '.join(words)}; "
                          "or 'all': every one with a published anchor)")
    asked = [w.strip() for w in spec.split(",") if w.strip()]
    if asked == ["all"]:
        return [w for w in words if w != "gym"]  # filtered to anchored tasks once composed
    unknown = [w for w in asked if w not in words]
    if unknown:
        raise ConfigError(f"--envs: unknown env {', '.join(map(repr, unknown))} (the words are the configs of "
                          f"conf/env/: {', '.join(words)})")
    return list(dict.fromkeys(asked))


def run_scores(args) -> dict:
    """``--mode scores``: train what is missing, then print and write the table; exits non-zero as documented."""
    import gymnasium as gym
    import torch

    from experiments.benchmark import TUNED_SEEDS, _jsonable, _seed_range, machine

    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    freshness = f"fresh: the tuned configs were tuned on seeds {TUNED_SEEDS.start}–{TUNED_SEEDS.stop - 1}"
    out = Path(args.out).expanduser().resolve()
    try:
        if args.jobs < 1:
            raise ConfigError(f"--jobs={args.jobs} is invalid: must be ≥ 1")
        overlap = sorted(set(seeds) & set(TUNED_SEEDS))
        if overlap:
            raise ConfigError(f"--first-seed {args.first_seed} with --seeds {args.seeds} gives seeds "
                              f"{_seed_range(seeds)}, which overlap the seeds {TUNED_SEEDS.start}–"
                              f"{TUNED_SEEDS.stop - 1} the tuned configs were tuned on: use --first-seed ≥ "
                              f"{TUNED_SEEDS.stop} (default 1000)")
        words = parse_words(args.envs)
        tasks = [compose_task(w, args.steps, args.override, args.eval_episodes) for w in words]
        if args.envs.strip() == "all":
            tasks = [t for t in tasks if t.anchors]
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {str(out)!r} is a file: give a folder")
        if args.json is not None and args.json.is_dir():
            raise ConfigError(f"--json={str(args.json)!r} is invalid: it is a folder, give a file path")
        out.mkdir(parents=True, exist_ok=True)
    except ConfigError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"--out {str(out)!r}: {exc.strerror or exc}")

    say(f"scores: {len(tasks)} task(s) × {len(seeds)} seed(s), {args.jobs} run(s) at a time, torch_threads=1, "
          f"into {out}")
    say(f"  seeds {_seed_range(seeds)} ({freshness})")
    for t in tasks:
        budget = f"--steps {t.budget:,}" if args.steps is not None else f"the config's total_timesteps {t.budget:,}"
        say(f"  {t.word}: {t.env_id}, budget {budget}, final eval {t.eval_episodes} episodes ({t.family})")
    load_start = os.getloadavg()[0]
    code = 0
    try:
        with out_lock(out) as lock_fd:
            runs = {t.word: [inspect_run(t, s, out, args.override) for s in seeds] for t in tasks}
            todo = []
            for t in tasks:
                for r in runs[t.word]:
                    if r.state == "done":
                        say(f"  skip   {r.name}: finished (final eval {r.final:,.2f})")
                    else:
                        r.path.mkdir(parents=True, exist_ok=True)
                        todo.append(r)
            scheduler = Scheduler(args.jobs, lock_fd, args.steps, args.override)
            scheduler.run_all(todo)
            if scheduler.signum is not None:
                code = 128 + scheduler.signum
            elif any(r.failed for rs in runs.values() for r in rs):
                code = 1
    except ConfigError as exc:
        _fail(str(exc))
    results: dict = {"meta": {
        "mode": "scores", "argv": list(args.argv), "time": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
        "torch": torch.__version__, "gymnasium": gym.__version__, "extras": versions(), "jobs": args.jobs,
        "torch_threads": 1, "seeds": seeds, "seed_range": _seed_range(seeds), "freshness": freshness,
        "seeds_fresh": True, "out": str(out), "steps_override": args.steps, "overrides": list(args.override),
        "load_start": load_start, "load_end": os.getloadavg()[0], "std": STD_NOTE, "final": FINAL_NOTE,
        "last100_train": TRAIN_NOTE, "anchor_caveat": ANCHOR_CAVEAT, **trained_when(runs)},
        "tasks": []}
    for t in tasks:
        row = task_result(t, runs[t.word])
        png = out / t.word / "learning_curves.png"
        png.parent.mkdir(parents=True, exist_ok=True)
        plot_task(png, t, runs[t.word], row)
        row["learning_curves"] = str(png)
        results["tasks"].append(row)
    json_path = args.json or out / "scores.json"
    try:  # the files first: a closed stdout (| head) must not lose them
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(_jsonable(results), indent=2))
        (out / "scores.md").write_text(format_markdown(results))
    except OSError as exc:
        _fail(f"cannot write {json_path}: {exc.strerror or exc}")
    say()
    say(format_table(results))
    say(f"\nJSON: {json_path}\nMarkdown: {out / 'scores.md'}\nlearning curves: {out}/<task>/learning_curves.png")
    if code:
        sys.exit(code)
    return results
