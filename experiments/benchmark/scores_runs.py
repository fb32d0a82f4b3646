"""The score benchmark's runs: one folder per task and seed (its record of attempts, its TensorBoard events, its
checkpoint), read to know whether it is done, interrupted or new; the commands that start or resume it; and the
scheduler that runs ``--jobs`` processes at a time — a run each, or with ``--population`` a task's new runs as one
population (``hydra/launcher=population``) — and passes SIGINT/SIGTERM on to them."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from agents.config import ConfigError, first_line
from experiments.benchmark.common import machine
from experiments.benchmark.scores_tasks import Task
from experiments.sweep_report import read_scalars

RECORD = "scores_run.json"
CONSOLE = "console.log"
POPULATION_CONSOLE = "population.log"  # in <out>/<word>/: the output of the task's population processes
LOCK = ".scores.lock"
SCORE_TAGS = ("hparams/final_eval_return", "hparams/final_train_return", "eval/mean_return",
              "charts/episodic_return", "charts/learning_rate")


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
    settings = {"word": task.word, "env_id": task.env_id, "seed": seed, "budget": task.budget,
                "eval_episodes": task.eval_episodes, "overrides": list(overrides)}
    if task.generic:
        settings["config"] = "generic (env=gym)"
    return settings


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
        keys = [*wanted, *(k for k in record if k not in wanted and k != "attempts")]  # e.g. a generic run's config
        differ = [f"{k}={record.get(k)!r} (asked: {wanted.get(k)!r})" for k in keys if record.get(k) != wanted.get(k)]
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


def start_command(run: RunState, overrides: Sequence[str]) -> list[str]:
    task = run.task
    return [sys.executable, "-m", "experiments.train", *task.train_args, f"seed={run.seed}",
            f"eval.episodes={task.eval_episodes}", "torch_threads=1", "progress=false", *overrides,
            f"hydra.run.dir={_quote(run.path)}"]


def _launcher(workers: int) -> list[str]:
    """The population launcher, with ``workers`` worker processes (the population split between them) if > 1."""
    return ["hydra/launcher=population", *([f"hydra.launcher.n_jobs={workers}"] if workers > 1 else [])]


def population_command(runs: Sequence[RunState], overrides: Sequence[str], workers: int = 1) -> list[str]:
    """One multirun of the population launcher over the runs' seeds (one task): every member writes into its own
    run folder what ``start_command`` would have written there."""
    task = runs[0].task
    return [sys.executable, "-m", "experiments.train", "-m", *task.train_args,
            "seed=" + ",".join(str(r.seed) for r in runs), f"eval.episodes={task.eval_episodes}", "torch_threads=1",
            "progress=false", *overrides, *_launcher(workers), f"hydra.sweep.dir={_quote(runs[0].path.parent)}",
            "hydra.sweep.subdir='seed=${seed}'"]


def resume_command(run: RunState, inexact: bool) -> list[str]:
    """``resume=<run folder>`` with only what a resume may change; Hydra writes no second ``.hydra/`` there (the
    run's own config stays the one it started with)."""
    return [sys.executable, "-m", "experiments.train", f"resume={_quote(run.path)}", "torch_threads=1",
            "progress=false", f"eval.episodes={run.task.eval_episodes}",
            *(["allow_inexact_resume=true"] if inexact else []),
            f"hydra.run.dir={_quote(run.path)}", "hydra.output_subdir=null"]


def population_resume_command(runs: Sequence[RunState], workers: int = 1) -> list[str]:
    """The runs' ``resume`` as one multirun of the population launcher (one task; checkpoints at the same step that
    cannot hold the env state, so every member continues from fresh episodes as its own resume would). No
    ``.hydra/`` is written; the jobs' Hydra folders (their logs) go to ``<task>/resumed/``."""
    return [sys.executable, "-m", "experiments.train", "-m", "resume=" + ",".join(_quote(r.path) for r in runs),
            "torch_threads=1", "progress=false", f"eval.episodes={runs[0].task.eval_episodes}",
            "allow_inexact_resume=true", *_launcher(workers),
            f"hydra.sweep.dir={_quote(runs[0].path.parent / 'resumed')}", "hydra.output_subdir=null"]


def checkpoint_facts(path: Path) -> tuple[int, Optional[bool]]:
    """(global step, whether the checkpoint holds the whole env state: None when it does not say)."""
    from agents.checkpoint import holds_env_state, load_checkpoint

    state = load_checkpoint(path / "checkpoint.pt", key="resume")
    return int(state.get("global_step", 0)), holds_env_state(state)


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
    """Runs at most ``jobs`` training processes at a time; on SIGINT/SIGTERM passes SIGTERM on and waits. With
    ``population``, the runs of a task that start from scratch are trained by one process, as one population, and
    so are its interrupted runs that continue from fresh episodes anyway (checkpoints without the env state) from
    the same step; a checkpoint that can continue exactly is resumed on its own. ``jobs`` counts worker processes:
    the last population to start gets the slots nothing else will use (``hydra.launcher.n_jobs``, at most one per
    member), so a single task's population uses every core it was given."""

    def __init__(self, jobs: int, lock_fd: int, overrides: Sequence[str], population: bool = False):
        self.jobs, self.lock_fd, self.overrides = jobs, lock_fd, list(overrides)
        self.population = population
        self.running: dict[Any, tuple[list[RunState], float, Any, Path, int]] = {}
        self.signum: Optional[int] = None
        self.received = self.forwarded = 0
        self.preexec = _die_with_parent()
        self.cpu = f"{machine()['cpu_model']} ({os.cpu_count()} CPUs)"

    def _on_signal(self, signum, frame) -> None:  # only notes it: the loop passes it on (no I/O in a handler)
        self.signum = signum
        self.received += 1

    def _forward(self) -> None:
        """SIGTERM to every running process, once per signal received: the first makes its runs checkpoint and
        exit, a second stops them at once."""
        if self.forwarded == 0:
            say(f"\n{signal.Signals(self.signum).name}: stopping the runs (each checkpoints; rerun the same command "
                "to continue) …")
        self.forwarded = self.received
        for proc in list(self.running):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)

    def units(self, todo: Sequence[RunState]) -> list[list[RunState]]:
        """What each process trains: one run, or (``population``) all of a task's new runs together."""
        if not self.population:
            return [[run] for run in todo]
        units: list[list[RunState]] = []
        together: dict[tuple, list[RunState]] = {}
        for run in todo:
            key: Optional[tuple] = (run.task.word, "new") if run.state == "new" else None
            if run.state == "interrupted":
                try:
                    step, complete = checkpoint_facts(run.path)
                except ConfigError:  # an unreadable checkpoint: its own process fails it, alone
                    step, complete = 0, True
                key = None if complete is True else (run.task.word, "resume", step)
            if key is None:
                units.append([run])
                continue
            if key not in together:
                together[key] = []
                units.append(together[key])
            together[key].append(run)
        return units

    def free_slots(self) -> int:
        return self.jobs - sum(entry[4] for entry in self.running.values())

    def launch(self, runs: list[RunState], workers: int = 1) -> None:
        """Start one process for ``runs`` (a population of them if several, in ``workers`` worker processes)."""
        import subprocess

        for run in runs:
            close_attempts(run)
        split = f" in {workers} worker processes" if workers > 1 else ""
        if len(runs) > 1 and runs[0].state == "interrupted":
            step, _ = checkpoint_facts(runs[0].path)
            cmd = population_resume_command(runs, workers)
            say(f"  resume {runs[0].task.word} seeds {', '.join(str(r.seed) for r in runs)} from step {step:,} of "
                f"{runs[0].task.budget:,} as one population{split} (INEXACT: the checkpoints cannot hold the env "
                "state, so the envs restart from fresh episodes)")
            attempt = {"kind": "resume", "from_step": step, "exact": False, "population": [r.seed for r in runs],
                       "workers": workers}
            console = runs[0].path.parent / POPULATION_CONSOLE
        elif len(runs) > 1:
            for run in runs:
                clear_run(run.path)
            cmd = population_command(runs, self.overrides, workers)
            say(f"  start  {runs[0].task.word} seeds {', '.join(str(r.seed) for r in runs)} as one population{split}")
            attempt = {"kind": "start", "from_step": 0, "exact": True, "population": [r.seed for r in runs],
                       "workers": workers}
            console = runs[0].path.parent / POPULATION_CONSOLE
        elif runs[0].state == "interrupted":
            run = runs[0]
            step, complete = checkpoint_facts(run.path)
            cmd = resume_command(run, inexact=complete is not True)
            how = {True: "exact",
                   False: "INEXACT: the checkpoint cannot hold this env's state, so the envs restart from fresh "
                          "episodes (allow_inexact_resume=true)",
                   None: "exactness unknown: the checkpoint does not say whether it holds the env state; "
                         "allow_inexact_resume=true"}[complete]
            say(f"  resume {run.name} from step {step:,} of {run.task.budget:,} ({how})")
            attempt = {"kind": "resume", "from_step": step, "exact": complete}
            console = run.path / CONSOLE
        else:
            clear_run(runs[0].path)
            cmd = start_command(runs[0], self.overrides)
            say(f"  start  {runs[0].name}")
            attempt = {"kind": "start", "from_step": 0, "exact": True}
            console = runs[0].path / CONSOLE
        attempt.update(command=cmd, started=time.time(), seconds=None, returncode=None, cpu=self.cpu)
        header = f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {attempt['kind']}: {' '.join(cmd)}\n"
        for run in runs:
            run.record["attempts"].append(dict(attempt))
            write_record(run)
            if len(runs) > 1:  # the members' shared output is in the task's population log
                with open(run.path / CONSOLE, "a") as member_log:
                    member_log.write(f"{header}(trained as one population: its output is in {console})\n")
        log = open(console, "a")
        log.write(header)
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, pass_fds=(self.lock_fd,), preexec_fn=self.preexec)
        self.running[proc] = (runs, time.monotonic(), log, console, workers if len(runs) > 1 else 1)

    def finish(self, proc, code: int) -> None:
        runs, t0, log, console, _ = self.running.pop(proc)
        log.close()
        seconds = time.monotonic() - t0
        for run in runs:
            run.record["attempts"][-1].update(seconds=seconds, returncode=code)
            write_record(run)
            refresh(run)
            if run.state == "done" and (code == 0 or len(runs) > 1):  # a member may end well as another fails
                say(f"  done   {run.name} in {seconds:.1f} s: final eval {run.final:,.2f}")
            elif self.signum is not None and code != 0:  # stopped by us: not a failure
                then = ("checkpointed at step {:,}; rerun to resume".format(run.steps) if run.state == "interrupted"
                        else "before its first checkpoint; rerun to start it")
                say(f"  stopped {run.name} (exit {code}: {then})")
            else:
                run.failed = f"exit {code}: {last_error(console)}"
                say(f"  FAILED {run.name} ({run.failed}); its output: {console}")

    def run_all(self, todo: list[RunState]) -> None:
        pending = self.units(todo)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while (pending and self.signum is None) or self.running:
                if self.received > self.forwarded:
                    self._forward()
                while pending and self.signum is None and self.free_slots() > 0:
                    unit = pending.pop(0)
                    workers = min(len(unit), self.free_slots()) if not pending else 1  # the last: the free slots
                    try:
                        self.launch(unit, workers)
                    except ConfigError as exc:  # an unreadable checkpoint: that run fails, the others go on
                        for run in unit:
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
