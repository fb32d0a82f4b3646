"""Population training: the jobs of one multirun batch trained together (``hydra/launcher=population``).

The launcher (``hydra_plugins/population_launcher``) runs every job of a batch through Hydra as usual, but inside
``collecting()``: there the entry point (``experiments.train``) does not train; it validates the job's config and
registers a ``PopulationJob`` with ``register``. Once the whole batch is registered, the launcher hands the jobs to
``train_population``, which groups them into populations (``group_jobs``: members may differ only in
``MEMBER_KEYS``) and returns one outcome per job.

Each population is one ``agents.Trainer`` over a vector env of ``members × num_envs`` sub-envs: one rollout, GAE
and update code path with a member axis, the same one a solo run takes as a population of one. Every member writes
what a solo run writes into its own job folder (``tb/`` with the same tags and HParams, ``checkpoint.pt`` in a
solo run's layout), so the sweep report, ``experiments.evaluate`` and TensorBoard cannot tell them apart.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from agents.config import PER_MEMBER_KEYS, ConfigError, first_line, is_int

log = logging.getLogger(__name__)

DEFAULT_MAX_MEMBERS = 64
"""Members per population unless ``hydra.launcher.max_members`` says otherwise (the memory cap)."""

MEMBER_KEYS: tuple[str, ...] = (
    "seed",
    *(f"agent.{key}" for key in PER_MEMBER_KEYS),  # hyperparameters the trainer keeps one value of per member
    # keys that never change the training trajectory
    "eval.stop_return",
    "progress",
    "checkpoint_every",
    "torch_threads",
)
"""Dotted keys of the run config in which the members of one population may differ. Every other key (``env.*``,
``total_timesteps``, the other ``agent.*`` keys, ``eval.every``, ``eval.episodes``, ``init_checkpoint``,
``ref_checkpoint``, …) must be equal inside a population. Resumed jobs (``resume``) that continue from fresh
episodes anyway (``continues_together``) share a population when their saved configs are equal outside these keys
and their checkpoints are at the same iteration; any other resumed job is a population of its own."""

SOLO_KEYS: tuple[str, ...] = ("resume",)
"""Keys that, when not null, put a job in a population of its own (unless ``continues_together``)."""


@dataclass
class PopulationJob:
    """One job of the batch, as the entry point registered it.

    ``cfg`` is the job's composed run config (no ``hydra`` node, interpolations resolved), ``output_dir`` its run
    folder and ``overrides`` its task overrides (what ``run_training`` takes). ``hydra_cfg`` is the job's Hydra
    config (a config with a single ``hydra`` node, as ``.hydra/hydra.yaml``); ``job_scope`` uses it to restore the
    job's Hydra state.
    """

    cfg: DictConfig
    output_dir: str
    overrides: list[str] = field(default_factory=list)
    hydra_cfg: Optional[DictConfig] = None
    train_cfg: Any = None
    """The validated ``TrainConfig`` (None for a resumed job, validated later with its saved config)."""
    hydra_view: Any = field(default=None, repr=False)
    """The job's ``HydraConfig`` view, once made (``job_scope`` sets it again without another copy)."""
    plan: Any = field(default=None, repr=False)
    """A resumed job's ``experiments.run.RunPlan`` (its saved config and checkpoint), once ``plan_resumed`` read it."""

    @property
    def run_cfg(self) -> DictConfig:
        """The config the job trains with: a resumed job's saved one (once planned), else the composed one."""
        return self.plan.cfg if self.plan is not None else self.cfg


_batch: Optional[list[PopulationJob]] = None


@contextlib.contextmanager
def collecting() -> Iterator[list[PopulationJob]]:
    """While active, ``register`` records jobs in the yielded list instead of anyone training them."""
    global _batch
    if _batch is not None:
        raise RuntimeError("collecting() is already active: population batches do not nest")
    _batch = []
    try:
        yield _batch
    finally:
        _batch = None


def is_collecting() -> bool:
    """True inside ``collecting()``: the entry point should ``register`` its job instead of training it."""
    return _batch is not None


def register(cfg: DictConfig, output_dir: str, overrides: Sequence[str] = ()) -> PopulationJob:
    """Validate a job's config (raises ``ConfigError``, as ``run_training`` would) and add it to the batch being
    collected. Returns the job: the launcher finds it as the job's provisional return value.

    A resumed job is validated later, with its saved config, when it trains (as ``run_training`` does).
    """
    from hydra.core.hydra_config import HydraConfig

    from agents.run_config import to_train_config

    if _batch is None:
        raise RuntimeError("register() outside collecting(): nothing collects population jobs")
    train_cfg = to_train_config(cfg) if OmegaConf.select(cfg, "resume", default=None) is None else None
    job_cfg = copy.deepcopy(cfg)
    OmegaConf.resolve(job_cfg)  # now, while the job's HydraConfig is set (a value may read ${hydra:...})
    # the view run_job set for this job (nothing changes it afterwards): job_scope sets it again, uncopied
    hydra_view = HydraConfig.instance().cfg if HydraConfig.initialized() else None
    job = PopulationJob(cfg=job_cfg, output_dir=str(output_dir), overrides=list(overrides), hydra_cfg=hydra_view,
                        train_cfg=train_cfg, hydra_view=hydra_view)
    _batch.append(job)
    return job


def flat_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved run config as {dotted.key: value} (``sweep_report.flatten``: lists become tuples)."""
    from experiments.sweep_report import flatten

    return flatten(OmegaConf.to_container(cfg, resolve=True))


def population_key(cfg: DictConfig) -> str:
    """What must be equal inside one population: the resolved config without ``MEMBER_KEYS``, as a string."""
    shared = {key: value for key, value in flat_config(cfg).items() if key not in MEMBER_KEYS}
    return json.dumps(shared, sort_keys=True, default=repr)


def _is_solo(cfg: DictConfig) -> bool:
    return any(OmegaConf.select(cfg, key, default=None) is not None for key in SOLO_KEYS)


def continues_together(job: PopulationJob) -> bool:
    """A resumed job may train with others when it would continue inexactly anyway: its checkpoint holds no env
    state (a population member's, or an env whose state cannot be captured) and ``allow_inexact_resume=true``.
    A checkpoint that can continue exactly stays a solo run, and does."""
    from agents.checkpoint import holds_env_state

    plan = job.plan
    return plan is not None and plan.train_cfg.allow_inexact_resume and holds_env_state(plan.state) is not True


def _alone(job: PopulationJob) -> bool:
    return _is_solo(job.cfg) and not continues_together(job)


def _group_key(index: int, job: PopulationJob) -> str:
    if not _is_solo(job.cfg):
        return population_key(job.cfg)
    if not continues_together(job):
        return f"solo:{index}"
    saved = OmegaConf.masked_copy(job.plan.cfg, [k for k in job.plan.cfg if k not in SOLO_KEYS])
    return f"resumed at iteration {int(job.plan.state['iteration'])}:{population_key(saved)}"


def plan_resumed(jobs: Sequence[PopulationJob], outcomes: list) -> None:
    """Read each resumed job's checkpoint and saved config (``experiments.run.plan_run``, in the job's scope) into
    ``job.plan``; a job that cannot resume fails here, in one line, with ``outcomes`` holding its error. So does a
    job resuming a run folder that an earlier job of the batch resumes (both would write into it)."""
    from experiments.run import plan_run

    planned: set = set()
    for index, job in enumerate(jobs):
        if _is_solo(job.cfg) and job.plan is None:
            try:
                with job_scope(job):
                    plan = plan_run(job.cfg, job.output_dir, job.overrides)
                    if plan.run_dir.resolve() in planned:
                        raise ConfigError(f"resume={job.cfg.resume!r}: another job of this multirun resumes the same "
                                          "run folder; resume each run once")
                    planned.add(plan.run_dir.resolve())
                    job.plan = plan
            except Exception as exc:  # noqa: BLE001 - this job fails alone
                outcomes[index] = _failed(exc)


def _split(members: list[int], max_members: int) -> list[list[int]]:
    """Split a group into the fewest parts of at most ``max_members``, their sizes differing by at most one."""
    parts = math.ceil(len(members) / max_members)
    size, extra = divmod(len(members), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        out.append(members[start:end])
        start = end
    return out


def group_jobs(jobs: Sequence[PopulationJob], max_members: int = DEFAULT_MAX_MEMBERS) -> list[list[int]]:
    """Indices into ``jobs``, one list per population, in order of first appearance.

    Jobs share a population when their configs are equal outside ``MEMBER_KEYS``; a group larger than
    ``max_members`` is split into near-equal parts; a resumed job is alone unless ``continues_together`` (then it
    shares a population with the resumed jobs of equal saved configs at the same iteration).
    """
    if not is_int(max_members) or max_members < 1:
        raise ValueError(f"max_members={max_members!r} is invalid: must be an integer ≥ 1")
    groups: dict[str, list[int]] = {}
    for index, job in enumerate(jobs):
        groups.setdefault(_group_key(index, job), []).append(index)
    return [part for members in groups.values() for part in _split(members, max_members)]


def differing_keys(jobs: Sequence[PopulationJob]) -> list[str]:
    """The ``MEMBER_KEYS`` whose values differ between the given jobs, sorted."""
    flats = [flat_config(job.run_cfg) for job in jobs]
    return sorted(key for key in MEMBER_KEYS if len({repr(flat.get(key)) for flat in flats}) > 1)


def describe(number: int, total: int, members: Sequence[PopulationJob]) -> str:
    """One line about a population, e.g. ``population 1/2: 24 members differing in agent.clip_ratio, seed``."""
    keys = differing_keys(members)
    noun = "member" if len(members) == 1 else "members"
    detail = f" differing in {', '.join(keys)}" if keys else ""
    return f"population {number}/{total}: {len(members)} {noun}{detail}"


@contextlib.contextmanager
def job_scope(job: PopulationJob) -> Iterator[None]:
    """Hydra's per-job state around work done for one job after the launcher's collect phase, as Hydra's
    ``run_job`` sets it up: the job's ``HydraConfig``, its job logging (its own log file), its
    ``hydra.job.env_set`` and, with ``hydra.job.chdir=true``, its run folder as working directory. On exit the
    previous ``HydraConfig`` and working directory come back and logging returns to Hydra's own.

    Without a Hydra config (a job registered outside Hydra) it does nothing.
    """
    if job.hydra_cfg is None:
        yield
        return
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import configure_log, env_override

    hydra = job.hydra_cfg.hydra
    previous_cfg = HydraConfig.instance().cfg
    previous_cwd = os.getcwd()
    if job.hydra_view is None:
        HydraConfig.instance().set_config(job.hydra_cfg)
        job.hydra_view = HydraConfig.instance().cfg
    else:
        HydraConfig.instance().cfg = job.hydra_view
    try:
        configure_log(hydra.job_logging, hydra.verbose)
        if hydra.job.chdir:
            os.chdir(job.output_dir)
        with env_override(OmegaConf.to_container(hydra.job.env_set, resolve=True)):
            yield
    finally:
        os.chdir(previous_cwd)
        configure_log(hydra.hydra_logging, hydra.verbose)
        HydraConfig.instance().cfg = previous_cfg


def spread_over_workers(groups: list[list[int]], jobs: Sequence[PopulationJob], n_jobs: int) -> list[list[int]]:
    """With ``n_jobs`` workers, split the populations into near-equal parts, each in proportion to its share of the
    members, so that every worker has one (two populations of 24 on two cores train faster than one of 48 on
    both); a resumed job that trains alone stays alone."""
    total = sum(len(g) for g in groups)
    parts: list[list[int]] = []
    for group in groups:
        share = 1 if _alone(jobs[group[0]]) else max(1, n_jobs * len(group) // total)
        parts += _split(list(group), math.ceil(len(group) / share))
    return parts


def _train_part(jobs: Sequence[PopulationJob], members: list[int]) -> list[float | BaseException]:
    group = [jobs[i] for i in members]
    if len(group) == 1 and _is_solo(group[0].cfg):  # a resumed job alone continues as a solo run
        return [_run_solo(group[0])]
    return _train_group(group)


def train_population(jobs: Sequence[PopulationJob], max_members: int = DEFAULT_MAX_MEMBERS,
                     n_jobs: int = 1) -> list[float | BaseException]:
    """Train the jobs as populations (``group_jobs``); returns one outcome per job, in the order of ``jobs``: the
    final evaluation's mean return (what ``run_training`` returns), or the exception that ended that job.
    ``max_members`` caps a population's size (the launcher passes ``hydra.launcher.max_members``); ``n_jobs`` > 1
    trains the populations in that many worker processes at once (``hydra.launcher.n_jobs``; the populations are
    split so that each worker has one, see ``spread_over_workers``).

    A failing job fails alone: the others still train. A user's error (``experiments.entry.EXIT_CODES``: a bad
    config, a diverged member, a path that cannot be written) is printed as one ``error:`` line when it happens, as
    for a job of any other launcher. Resumed jobs continue together where ``continues_together`` allows (an
    interrupted population's members do), any other resumed job as a solo run. On SIGINT/SIGTERM every member
    checkpoints and the process exits with 128 + the signal number.
    """
    if not is_int(n_jobs) or n_jobs < 1:
        raise ValueError(f"n_jobs={n_jobs!r} is invalid: must be an integer ≥ 1")
    outcomes: list[float | BaseException] = [RuntimeError("not trained")] * len(jobs)
    plan_resumed(jobs, outcomes)
    unplanned = {i for i, job in enumerate(jobs) if _is_solo(job.cfg) and job.plan is None}  # failed already
    groups = [g for g in group_jobs(jobs, max_members) if not set(g) <= unplanned]
    if n_jobs > 1:
        groups = spread_over_workers(groups, jobs, n_jobs)
    for number, members in enumerate(groups, start=1):
        log.info(describe(number, len(groups), [jobs[i] for i in members]))
    start = time.perf_counter()
    if n_jobs == 1 or len(groups) == 1:
        for members in groups:
            for index, outcome in zip(members, _train_part(jobs, members)):
                outcomes[index] = outcome
    else:
        _train_in_workers(jobs, groups, min(n_jobs, len(groups)), outcomes)
    log.info(pool_line(time.perf_counter() - start, min(n_jobs, len(groups))))
    return outcomes


@contextlib.contextmanager
def forwarding_signals(procs: Sequence[Any]) -> Iterator[list[int]]:
    """While active, SIGINT and SIGTERM received by this process are sent on to those of ``procs`` that run (in
    process groups of their own, they get a terminal's Ctrl-C only this way); yields the list of signals received."""
    import signal

    from experiments.entry import SIGNAL_EXIT_CODES

    received: list[int] = []

    def forward(sig: int, frame: Any) -> None:
        received.append(sig)
        for proc in procs:
            if proc.pid is not None and proc.exitcode is None:
                os.kill(proc.pid, sig)

    previous = {sig: signal.signal(sig, forward) for sig in SIGNAL_EXIT_CODES}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def exit_code(proc: Any) -> Optional[int]:
    """A finished process's exit code as a shell reports it (128 + the signal number for a killed one)."""
    code = proc.exitcode
    return code if code is None or code >= 0 else 128 - code


def _train_in_workers(jobs: Sequence[PopulationJob], groups: list[list[int]], workers: int,
                      outcomes: list) -> None:
    """Train ``groups`` in ``workers`` forked processes (the largest first, each to the least loaded worker) and
    fill ``outcomes``. A worker is in a process group of its own, so a terminal's Ctrl-C reaches it once, forwarded
    from here with SIGTERM alike: every member checkpoints, then this process exits as a solo run would."""
    import multiprocessing
    import signal

    loads: list[list[list[int]]] = [[] for _ in range(workers)]
    for members in sorted(groups, key=len, reverse=True):
        min(loads, key=lambda parts: sum(map(len, parts))).append(members)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.SimpleQueue()

    def work(parts: list[list[int]]) -> None:
        os.setpgid(0, 0)
        for sig in (signal.SIGINT, signal.SIGTERM):  # not the parent's forwarding handler: a signal outside a
            signal.signal(sig, signal.SIG_DFL)        # training loop ends the worker, inside it StopFlag checkpoints
        for members in parts:
            try:
                results = _train_part(jobs, members)
            except Exception as exc:  # noqa: BLE001 - this part's jobs fail with it; the worker goes on
                results = [_failed(exc)] * len(members)
            for index, outcome in zip(members, results):
                queue.put((index, sendable(outcome)))

    procs = [ctx.Process(target=work, args=(parts,)) for parts in loads]
    received: set[int] = set()
    with forwarding_signals(procs) as signum:
        try:
            for proc in procs:
                proc.start()
            while any(proc.is_alive() for proc in procs) or not queue.empty():
                while not queue.empty():
                    index, outcome = queue.get()
                    outcomes[index] = outcome
                    received.add(index)
                time.sleep(0.05)
        finally:
            for proc in procs:  # on an error here, no worker goes on training unseen
                if proc.pid is not None and proc.exitcode is None:
                    proc.terminate()
                if proc.pid is not None:
                    proc.join()
    if signum:
        from experiments.entry import SIGNAL_EXIT_CODES

        log.info("interrupted: every training member wrote its checkpoint; continue them together with -m "
                 "hydra/launcher=population resume=<folder>,<folder>,… allow_inexact_resume=true (README, "
                 "Population sweeps)")
        sys.exit(SIGNAL_EXIT_CODES.get(signum[0], 1))
    for proc in procs:
        if proc.exitcode:  # a worker that died (killed, out of memory): its jobs not yet reported fail
            lost = ChildProcessError(f"the population worker training this job exited with code {exit_code(proc)} "
                                     "(killed, or out of memory?); its last periodic checkpoint is kept")
            for members in loads[procs.index(proc)]:
                for index in members:
                    if index not in received:
                        outcomes[index] = _failed(lost)


TIMING = re.compile(r"population of (\d+) trained in ([0-9.]+) s: rollout ([0-9.]+) s, update ([0-9.]+) s, "
                    r"evaluation ([0-9.]+) s")
"""The line ``timing_line`` writes (the sweep benchmark reads it back)."""


POOL_TIMING = re.compile(r"populations trained in ([0-9.]+) s by (\d+) workers?")
"""The line ``pool_line`` writes once every population of a batch is trained."""


def pool_line(wall: float, workers: int) -> str:
    return f"populations trained in {wall:.2f} s by {workers} worker{'s' if workers > 1 else ''}"


def timing_line(members: int, wall: float, seconds: dict, device=None) -> str:
    """The population's wall and its split; on a GPU also the peak memory allocated there (for the benchmark)."""
    line = (f"population of {members} trained in {wall:.2f} s: rollout {seconds['rollout']:.2f} s, update "
            f"{seconds['update']:.2f} s, evaluation {seconds['evaluation']:.2f} s")
    if device is not None and device.type == "cuda":
        import torch

        line += f", GPU memory peak {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MB"
    return line


def sendable(outcome: float | BaseException) -> float | BaseException:
    """``outcome`` if it can be pickled to another process, else a ``RuntimeError`` with its one line."""
    import pickle

    try:
        pickle.loads(pickle.dumps(outcome))
    except Exception:  # noqa: BLE001 - an outcome that cannot cross processes: its one line does
        return RuntimeError(first_line(outcome))
    return outcome


def _failed(exc: BaseException) -> BaseException:
    """Print a user's error as its one line (as ``user_errors`` does for a job of another launcher)."""
    from experiments.entry import EXIT_CODES

    if isinstance(exc, tuple(EXIT_CODES)):
        print(f"error: {exc}", file=sys.stderr)
    return exc


def _run_solo(job: PopulationJob) -> float | BaseException:
    from experiments.run import run_training

    try:
        with job_scope(job):
            return run_training(job.cfg, job.output_dir, overrides=job.overrides)
    except Exception as exc:  # noqa: BLE001 - recorded as this job's failure; the others go on
        return _failed(exc)


def _train_group(jobs: Sequence[PopulationJob]) -> list[float | BaseException]:
    """One population: every job planned in its own scope, trained together by one ``Trainer``, reported in its
    own scope (its folder, its log file) exactly as a solo run reports."""
    import torch

    from envs.vector import make_vec_env
    from experiments.run import (SIGNAL_EXIT_CODES, StopFlag, build_trainer, open_logger, plan_run, report,
                                 report_interrupted)

    outcomes: list[float | BaseException] = [RuntimeError("not trained")] * len(jobs)
    plans, loggers = {}, {}
    for i, job in enumerate(jobs):
        try:
            with job_scope(job):
                plan = job.plan or plan_run(job.cfg, job.output_dir, job.overrides, train_cfg=job.train_cfg)
                loggers[i] = open_logger(plan, 0 if plan.state is None else int(plan.state["global_step"]))
                plans[i] = plan
        except Exception as exc:  # noqa: BLE001 - this job fails alone
            outcomes[i] = _failed(exc)
    ok = list(plans)
    if not ok:
        return outcomes
    first = plans[ok[0]].train_cfg
    torch.set_num_threads(max(plans[i].train_cfg.torch_threads for i in ok))
    built = False
    try:
        envs = make_vec_env(first.env, len(ok) * first.env.num_envs)
        try:
            trainer = build_trainer([plans[i] for i in ok], envs)
            built = True
            for k, i in enumerate(ok):
                trainer.members[k].logger = loggers[i]
            with StopFlag() as stop:
                start = time.perf_counter()
                results = trainer.run_population(should_stop=stop)
            log.info(timing_line(len(ok), time.perf_counter() - start, trainer.seconds, trainer.agent.device))
        finally:
            envs.close()
    except Exception as exc:  # noqa: BLE001 - the population could not be built: each of its jobs fails with it
        for i in ok:
            loggers[i].close()
        if not built and len(ok) > 1 and plans[ok[0]].state is not None:
            # resumed runs, one of whose checkpoints did not fit: each continues alone, so that one fails alone
            for i in ok:
                outcomes[i] = _run_solo(jobs[i])
            return outcomes
        for i in ok:
            outcomes[i] = exc
        _failed(exc)
        return outcomes
    interrupted = False
    for k, i in enumerate(ok):
        with job_scope(jobs[i]):
            error = trainer.state[k].error
            if error is not None:
                loggers[i].close()
                outcomes[i] = _failed(error)
            elif results[k].interrupted:
                interrupted = True
                report_interrupted(plans[i], results[k], loggers[i])
            else:
                outcomes[i] = report(plans[i], results[k], loggers[i])
    if interrupted:
        sys.exit(SIGNAL_EXIT_CODES.get(stop.signum, 1))
    return outcomes
