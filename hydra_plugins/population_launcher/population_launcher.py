"""``hydra/launcher=population``: train the jobs of a multirun batch together, as populations.

    python -m experiments.train -m hydra/launcher=population agent.clip_ratio=0.1,0.2 seed=0,1
    python -m experiments.train -m sweep=clip_entropy hydra/launcher=population hydra.launcher.max_members=8

Every job gets from Hydra what a job of the basic launcher gets (its composed config, ``hydra.job.id``/``num``,
run folder, ``.hydra/`` files, job logging, callbacks, a ``JobReturn``), in three phases:

1. collect: each job runs through Hydra's ``run_job`` inside ``experiments.population.collecting()``; the entry
   point validates the job's config and registers it instead of training (a bad value fails that job alone).
   ``on_job_end`` callbacks are held back: the job has not finished. With ``n_jobs`` > 1, many jobs and no Hydra
   callbacks, the jobs after the first are collected in up to ``n_jobs`` forked processes
   (``_collect_in_workers``).
2. train: ``experiments.population.train_population`` trains the registered jobs, grouped into populations of at
   most ``max_members``, and returns one outcome per job.
3. settle: each job's ``JobReturn`` gets its outcome (a return value, or the exception with a failed status, as
   Hydra records a failing job), then the held-back ``on_job_end`` callbacks fire in job order.

A task function that does not register (any other Hydra app) simply runs in phase 1, as with the basic launcher.
"""


import copy
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.errors import HydraException
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

log = logging.getLogger(__name__)

DEFAULT_MAX_MEMBERS = 64  # experiments.population.DEFAULT_MAX_MEMBERS (not imported: Hydra imports every plugin)
COLLECT_SHARE = 8
"""Fewest jobs per process for collecting in ``n_jobs`` processes (below it a fork and the pickling cost more)."""


@dataclass
class PopulationLauncherConf:
    """``hydra.launcher.*`` of ``hydra/launcher=population``."""

    _target_: str = "hydra_plugins.population_launcher.population_launcher.PopulationLauncher"
    max_members: int = DEFAULT_MAX_MEMBERS
    """Most jobs trained together in one population (the memory cap); a larger group is split."""
    n_jobs: int = 1
    """Worker processes training populations at once (1: all in this process). With n_jobs > 1 a population is
    split so that every worker has one; on a CPU, n_jobs = cores with torch_threads=1 is fastest."""


ConfigStore.instance().store(group="hydra/launcher", name="population", node=PopulationLauncherConf,
                             provider="population_launcher")


class _HeldJobEnd:
    """Hydra's callbacks with ``on_job_end`` held back until ``release``: a collected job ends after training."""

    def __init__(self, callbacks: Any) -> None:
        self._callbacks = callbacks
        self._held: list[tuple[DictConfig, JobReturn, dict]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._callbacks, name)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        self._held.append((config, job_return, kwargs))

    def release(self) -> None:
        """Fire the held ``on_job_end`` calls in job order, each with its job's ``HydraConfig`` set (as
        ``run_job`` fires it)."""
        held, self._held = self._held, []
        if not getattr(self._callbacks, "callbacks", True):  # Hydra's Callbacks with none configured: no one
            return                                          # to call (setting each job's HydraConfig copies it)
        for config, job_return, kwargs in held:
            previous = HydraConfig.instance().cfg
            HydraConfig.instance().set_config(config)
            try:
                self._callbacks.on_job_end(config=config, job_return=job_return, **kwargs)
            finally:
                HydraConfig.instance().cfg = previous


def _remember_compositions(loader: Any, store: dict) -> None:
    """Keep what ``loader.load_sweep_config`` composes, by the job's overrides, for this launcher to take.

    Hydra's basic sweeper composes every job of a batch once to validate it, then the launcher composes it again to
    run it; composing our config is most of a population's start-up per job. The loader is shared with the
    sweeper, so its own ``load_sweep_config`` is wrapped on this instance, and ``_collect`` takes what it kept. The
    caller gets the kept config itself, not a copy (a copy costs a fifth of composing one, in the launching process,
    one job after another): the sweepers' ``validate_batch_is_legal`` only checks that each job composes and drops
    the result. A config is taken once: a sweeper that does not validate (Optuna's), or the same overrides twice,
    make ``_collect`` compose the job again.
    """
    if getattr(loader, "_population_store", None) is store:
        return
    compose = getattr(loader, "_population_compose", loader.load_sweep_config)
    _reuse_repositories(loader)
    _reuse_compositions(loader)
    _reuse_defaults_lists()

    def load_sweep_config(master_config: DictConfig, sweep_overrides: List[str]) -> DictConfig:
        cfg = compose(master_config, sweep_overrides)
        store[tuple(sweep_overrides)] = cfg
        return cfg

    loader._population_compose = compose
    loader._population_store = store
    loader.load_sweep_config = load_sweep_config


def _reuse_repositories(loader: Any) -> None:
    """Initialise each job's config sources once per distinct search path. For every job Hydra's loader deep-copies
    its config repository, loads the primary config file again to read ``hydra.searchpath`` from it, and
    re-initialises the copy's sources with that search path (hydra-core 1.3's internal
    ``_parse_overrides_and_create_caching_repo``). The sources only read config files and the ``ConfigStore``, and
    depend on nothing but the primary config and a ``hydra.searchpath`` override, so jobs that agree on those share
    one initialised copy; each job still gets a cache of its own (a config loaded for one job is never handed to
    another). Wraps that function on this loader instance; without it, nothing changes."""
    make_repo = getattr(loader, "_parse_overrides_and_create_caching_repo", None)
    if make_repo is None or getattr(loader, "_population_repositories", None) is not None:
        return
    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser
    except ImportError:
        return
    shared: dict = {}

    def parse_and_share(config_name: Optional[str], overrides: List[str]) -> Any:
        parsed = OverridesParser.create().parse_overrides(overrides=overrides)
        key = (config_name, tuple(o.input_line for o in parsed if o.key_or_group == "hydra.searchpath"))
        if key not in shared:
            shared[key] = make_repo(config_name, overrides)[1]
        repo = copy.copy(shared[key])  # the initialised sources, shared
        repo.cache = {}
        return parsed, repo

    loader._population_repositories = shared
    loader._parse_overrides_and_create_caching_repo = parse_and_share


def _reuse_compositions(loader: Any) -> None:
    """Compose each distinct defaults list once. The jobs of a sweep mostly differ in values (``seed=3``), not in
    which config files they are made of; Hydra's loader composes the files of every job anew (most of the cost of
    composing a job here). The composition of a defaults list is a pure function of that list (the config files do
    not change during a sweep), so a copy of the first composition stands in for the others; Hydra's own code then
    applies each job's value overrides and its ``hydra`` fields as usual. Wraps the loader's (internal, hydra-core
    1.3) ``_compose_config_from_defaults_list`` on this instance; without it, nothing changes."""
    compose_defaults = getattr(loader, "_compose_config_from_defaults_list", None)
    if compose_defaults is None or getattr(loader, "_population_defaults_cache", None) is not None:
        return
    cache: dict = {}

    def compose_once(defaults: List[Any], repo: Any) -> DictConfig:
        key = tuple((d.config_path, d.package, d.parent, d.is_self, d.primary) for d in defaults)
        if key not in cache:
            cache[key] = compose_defaults(defaults=defaults, repo=repo)
        return copy.deepcopy(cache[key])

    loader._population_defaults_cache = cache
    loader._compose_config_from_defaults_list = compose_once


def _reuse_defaults_lists() -> None:
    """Build each distinct defaults list once. Which config files a job is made of (its defaults list) depends on
    the primary config, the config search path and the job's config-group overrides (``env=hopper``,
    ``hydra/launcher=…``), not on its value overrides (``seed=3``): Hydra's defaults-list interpolations may only
    name group choices. Hydra's loader nevertheless builds the list anew for every job, loading and parsing every
    config file again (the larger part of composing a job here). This wraps hydra-core 1.3's internal
    ``create_defaults_list`` (as ``config_loader_impl`` calls it) so the list is built once per distinct group
    overrides and each job still gets its own ``Overrides`` (its value overrides, classified by Hydra's code).
    Without that internal function, nothing changes."""
    try:
        from hydra._internal import config_loader_impl
        from hydra._internal.defaults_list import DefaultsList, Overrides
    except ImportError:
        return
    build = getattr(config_loader_impl, "create_defaults_list", None)
    if build is None or getattr(build, "population_cache", None) is not None:
        return
    cache: dict = {}

    def create_defaults_list(repo: Any, config_name: Optional[str], overrides_list: List[Any], prepend_hydra: bool,
                             skip_missing: bool) -> Any:
        groups = [o for o in overrides_list if not o.is_sweep_override() and not isinstance(o.value(), dict)
                  and repo.group_exists(o.key_or_group)]
        key = (tuple((s.provider, s.path) for s in repo.get_sources()), config_name, prepend_hydra, skip_missing,
               tuple(o.input_line for o in groups))
        if key not in cache:
            cache[key] = build(repo=repo, config_name=config_name, overrides_list=groups, prepend_hydra=prepend_hydra,
                               skip_missing=skip_missing)
        built = cache[key]
        overrides = Overrides(repo=repo, overrides_list=overrides_list)
        overrides.known_choices = dict(built.overrides.known_choices)
        overrides.known_choices_per_group = dict(built.overrides.known_choices_per_group)
        return DefaultsList(defaults=list(built.defaults), defaults_tree=built.defaults_tree,
                            config_overrides=overrides.config_overrides, overrides=overrides)

    create_defaults_list.population_cache = cache  # type: ignore[attr-defined]
    config_loader_impl.create_defaults_list = create_defaults_list


class _TrainingHost:
    """The process that trains the batches when ``n_jobs`` > 1 (its populations' workers are forked from it).

    Forked at the launcher's ``setup``, before the sweeper composes and checks the jobs, it imports the trainer
    (PyTorch, Gymnasium, TensorBoard: the largest part of a sweep's start-up) while this process composes and
    collects the batch, which it does without PyTorch (``agents`` imports it on first use). It then trains each
    batch sent to it with ``experiments.population.train_population`` and sends back one outcome per job.

    It is in a process group of its own: SIGINT and SIGTERM reach it only as forwarded from here, while a batch
    trains, and it forwards them to its workers (every member checkpoints; the exit code comes back here). It is
    stopped when its launcher is collected or this process exits, and stops by itself when its pipe closes (this
    process killed). Not a daemon: it forks the workers.
    """

    def __init__(self, launcher: "PopulationLauncher") -> None:
        import atexit
        import multiprocessing
        import sys
        import weakref

        ctx = multiprocessing.get_context("fork")
        self._conn, child = ctx.Pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        self._proc = ctx.Process(target=self._serve, args=(launcher, child), name="population-host")
        self._proc.start()
        child.close()
        stop = weakref.finalize(launcher, _TrainingHost._stop, self._conn, self._proc)
        stop.atexit = False  # at exit, from our own hook: registered after multiprocessing's, it runs before that
        atexit.register(stop)  # one joins the (non-daemon) host, which only ends once its pipe is closed

    def forget(self) -> None:
        """In a process forked from the launching one: drop its copy of the host's pipe, so that the host still
        sees the pipe close when the launching process ends."""
        self._conn.close()

    @staticmethod
    def _stop(conn: Any, proc: Any) -> None:
        conn.close()
        if proc.exitcode is None:
            proc.terminate()  # idle (it trains only inside ``train``): nothing of a job is lost
        proc.join()

    def _serve(self, launcher: "PopulationLauncher", conn: Any) -> None:
        import os
        import pickle
        import signal

        os.setpgid(0, 0)
        self._conn.close()  # this process's end: the host sees EOF once the launching process is gone
        from experiments import population
        from experiments.entry import SIGNAL_EXIT_CODES, freeze_long_lived
        import experiments.run  # noqa: F401  (the trainer and everything it imports, now)

        freeze_long_lived()
        while True:
            try:
                runs, max_members, n_jobs = conn.recv()
            except (EOFError, OSError):
                return
            try:
                setup_globals()
                launcher._restore_logging()
                jobs = [ret._return_value for ret in map(pickle.loads, runs) if _registered(ret)]
                outcomes = population.train_population(jobs, max_members=max_members, n_jobs=n_jobs)
                reply: tuple = ("done", [population.sendable(outcome) for outcome in outcomes])
            except SystemExit as exc:  # interrupted: every member checkpointed
                reply = ("exit", exc.code)
            except KeyboardInterrupt:  # a signal before training began
                reply = ("exit", SIGNAL_EXIT_CODES[signal.SIGINT])
            except Exception as exc:  # noqa: BLE001 - the whole batch fails with it, in the launching process
                reply = ("error", population.sendable(exc))
            conn.send(reply)
            if reply[0] == "exit":
                return

    def train(self, runs: Sequence[bytes], max_members: int, n_jobs: int,
              meanwhile: Callable[[], None] = lambda: None) -> Sequence[Any]:
        """``train_population(jobs, max_members, n_jobs)`` in the host, of the jobs registered in ``runs`` (pickled
        ``JobReturn``s: those the collecting processes sent are passed on as they came, unread); one outcome per
        registered job, in order. ``meanwhile`` runs here while the host trains. A signal received meanwhile is
        forwarded to the host, and its exit code (128 + the signal number) becomes this process's."""
        import sys

        from experiments.entry import SIGNAL_EXIT_CODES
        from experiments.population import exit_code, forwarding_signals

        with forwarding_signals([self._proc]) as received:
            try:
                self._conn.send((list(runs), max_members, n_jobs))
                try:
                    meanwhile()
                finally:  # the host's answer is read whatever happened here: the next batch must not get it
                    kind, value = self._conn.recv()
            except (EOFError, OSError):  # the host died (killed, out of memory)
                self._proc.join()
                if received:
                    sys.exit(SIGNAL_EXIT_CODES.get(received[0], 1))
                raise ChildProcessError(f"the process training the populations exited with code "
                                        f"{exit_code(self._proc)} (killed, or out of memory?); each member's last "
                                        "periodic checkpoint is kept") from None
        if kind == "exit":
            sys.exit(value)
        if kind == "error":
            raise value
        return value


def _announce(idx: int, overrides: Sequence[str]) -> None:
    """The basic launcher's line for a job it launches."""
    log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")


def _registered(ret: JobReturn) -> bool:
    """Whether the job was collected for training: its entry point registered it instead of running it."""
    from experiments.population import PopulationJob

    return ret.status == JobStatus.COMPLETED and isinstance(ret._return_value, PopulationJob)


def _settle(ret: JobReturn, outcome: Any) -> None:
    """Record a trained job's outcome as ``run_job`` records a task function's result or exception."""
    ret.return_value = outcome
    ret.status = JobStatus.FAILED if isinstance(outcome, BaseException) else JobStatus.COMPLETED


class PopulationLauncher(Launcher):
    """Runs a batch of jobs as populations: see the module docstring for the three phases."""

    def __init__(self, max_members: int = DEFAULT_MAX_MEMBERS, n_jobs: int = 1) -> None:
        super().__init__()
        self.max_members = max_members
        self.n_jobs = n_jobs
        self.config: Optional[DictConfig] = None
        self.task_function: Optional[TaskFunction] = None
        self.hydra_context: Optional[HydraContext] = None
        self._host: Optional[_TrainingHost] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function
        self._composed: dict = {}
        _remember_compositions(hydra_context.config_loader, self._composed)
        from agents.config import is_int

        if self._host is None and is_int(self.n_jobs) and self.n_jobs > 1:
            self._host = _TrainingHost(self)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from agents.config import is_int
        from experiments import population

        setup_globals()
        assert self.hydra_context is not None and self.config is not None and self.task_function is not None
        if not is_int(self.max_members) or self.max_members < 1:
            raise HydraException(f"hydra.launcher.max_members={self.max_members!r} is invalid: must be an integer ≥ 1"
                                 " (the most jobs trained together in one population)")
        if not is_int(self.n_jobs) or self.n_jobs < 1:
            raise HydraException(f"hydra.launcher.n_jobs={self.n_jobs!r} is invalid: must be an integer ≥ 1 (worker "
                                 "processes training populations at once)")
        self._restore_logging()
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        log.info(f"Launching {len(job_overrides)} jobs as populations of at most {self.max_members} members")
        callbacks = _HeldJobEnd(self.hydra_context.callbacks)
        context = HydraContext(config_loader=self.hydra_context.config_loader, callbacks=callbacks)
        numbered = list(enumerate(job_overrides, start=initial_job_idx))
        pickled: List[bytes] = []  # the jobs collected in other processes, as they sent them
        with population.collecting():  # phase 1
            runs = [self._collect(context, *numbered[0])] if numbered else []
            workers = self._collecting_processes(runs, numbered, callbacks)
            if workers < 2:
                runs += [self._collect(context, idx, overrides) for idx, overrides in numbered[1:]]
            else:
                pickled = self._collect_in_workers(context, numbered[1:], workers)
        self._train(runs, pickled)  # phase 2
        callbacks.release()  # phase 3
        return runs

    def _collect(self, context: HydraContext, idx: int, overrides: Sequence[str], announce: bool = True
                 ) -> JobReturn:
        """Run one job through Hydra as the basic launcher does (copied from its ``launch`` loop)."""
        assert self.hydra_context is not None and self.config is not None and self.task_function is not None
        if announce:
            _announce(idx, overrides)
        sweep_config = self._composed.pop(tuple(overrides), None)
        if sweep_config is None:  # no check composed it (a sweeper that does not validate, or a repeated job)
            sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            self._composed.pop(tuple(overrides), None)  # this job's own config (run_job makes its hydra node
            # read-only): a later job with the same overrides composes its own
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = idx
            sweep_config.hydra.job.num = idx
        ret = run_job(hydra_context=context, task_function=self.task_function, config=sweep_config,
                      job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
        self._restore_logging()
        return ret

    def _collecting_processes(self, runs: List[JobReturn], numbered: Sequence[tuple[int, Sequence[str]]],
                              callbacks: _HeldJobEnd) -> int:
        """How many processes collect the jobs after the first one; below 2 they are collected in this process,
        as the basic launcher does. Up to ``n_jobs`` with at least ``COLLECT_SHARE`` jobs each, provided the first
        job registered (an entry point that trains where it is called stays here) and no Hydra callback is
        configured (a callback's ``on_job_start`` runs where its job is collected, and must stay in this
        process)."""
        if not (runs and _registered(runs[0])) or getattr(callbacks, "callbacks", True):
            return 1
        return min(self.n_jobs, (len(numbered) - 1) // COLLECT_SHARE)

    def _collect_in_workers(self, context: HydraContext, numbered: Sequence[tuple[int, Sequence[str]]],
                            workers: int) -> List[bytes]:
        """Collect ``numbered`` jobs in forked processes, each a contiguous share of at least ``COLLECT_SHARE``
        jobs: writing a job's folder and ``.hydra/`` records (Hydra's ``run_job``) and validating its config take a
        large population's start-up one job after another otherwise. Returns each ``JobReturn`` pickled, in job
        order (``_train`` unpickles them); one that cannot cross processes comes back as that job's failure (its
        one line)."""
        import multiprocessing
        import pickle
        import sys
        from multiprocessing.connection import wait

        from agents.config import first_line

        log.info(f"collecting {len(numbered)} more jobs in {workers} processes")
        for idx, overrides in numbered:  # announced here, in order, as the serial collect does
            _announce(idx, overrides)
        size, extra = divmod(len(numbered), workers)
        bounds = [i * size + min(i, extra) for i in range(workers + 1)]
        shares = [numbered[bounds[w]:bounds[w + 1]] for w in range(workers)]

        def work(share: Sequence[tuple[int, Sequence[str]]], send: Any, inherited: Sequence[Any]) -> None:
            for conn in inherited:  # read ends forked along (its own pipe's too): once this process is gone, a
                conn.close()        # send fails instead of blocking on a pipe only the collectors still hold
            if self._host is not None:
                self._host.forget()
            out: list[bytes] = []
            try:
                for idx, overrides in share:
                    ret = self._collect(context, idx, overrides, announce=False)
                    try:
                        out.append(pickle.dumps(ret))
                    except Exception as exc:  # noqa: BLE001 - this job fails alone, with its one line
                        error = RuntimeError(f"job #{idx} could not be sent from its collecting process: "
                                             f"{first_line(exc)}")
                        out.append(pickle.dumps(JobReturn(overrides=ret.overrides, working_dir=ret.working_dir,
                                                          task_name=ret.task_name, status=JobStatus.FAILED,
                                                          _return_value=error)))
                payload = pickle.dumps(out)
            except BaseException as exc:  # noqa: BLE001 - sent to the parent, which raises it
                payload = pickle.dumps(RuntimeError(f"collecting jobs failed: {first_line(exc)}"))
            try:
                send.send_bytes(payload)
            except OSError:  # the launching process is gone (killed): nobody is left to tell
                pass
            send.close()

        ctx = multiprocessing.get_context("fork")
        sys.stdout.flush()
        sys.stderr.flush()
        procs, conns = [], {}
        received: dict[int, Any] = {}
        try:
            for w, share in enumerate(shares):
                receive, send = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=work, args=(share, send, [receive, *conns]))
                proc.start()
                send.close()
                procs.append(proc)
                conns[receive] = w
            while conns:
                for conn in wait(list(conns)):
                    w = conns.pop(conn)
                    try:
                        received[w] = pickle.loads(conn.recv_bytes())
                    except Exception as exc:  # noqa: BLE001 - a share lost (its process died, or its answer)
                        procs[w].join()
                        received[w] = RuntimeError(f"a process collecting jobs failed (exit code "
                                                   f"{procs[w].exitcode}): {first_line(exc)}")
                    conn.close()
        finally:
            for conn in conns:  # left unread on an error here: no process stays blocked on a full pipe
                conn.close()
            for proc in procs:
                if proc.exitcode is None and conns:
                    proc.terminate()
                proc.join()
            for idx, overrides in numbered:  # compositions the sweeper's check made for the workers' jobs
                self._composed.pop(tuple(overrides), None)
        pickled: List[bytes] = []
        for w in range(len(shares)):
            if isinstance(received[w], BaseException):
                raise received[w]
            pickled += received[w]
        return pickled

    def _train(self, runs: List[JobReturn], pickled: Sequence[bytes] = ()) -> None:
        """Train the collected jobs together and record each one's outcome in its ``JobReturn``. ``pickled``: the
        ``JobReturn``s the collecting processes sent, added to ``runs``; with a training host they are passed on to it
        as they came and read here while it trains, instead of read, pickled again and sent before it can start."""
        import pickle

        from experiments import population

        pending = list(pickled)

        def read() -> None:
            while pending:
                runs.append(pickle.loads(pending[0]))
                del pending[0]

        if self._host is None:
            read()
        here = [ret for ret in runs if _registered(ret)]
        if not here and not pending:
            return
        outcomes: Any
        try:
            if self._host is not None:
                outcomes = self._host.train([pickle.dumps(ret) for ret in here] + pending, self.max_members,
                                            self.n_jobs, meanwhile=read)
            else:
                outcomes = population.train_population([ret._return_value for ret in here],
                                                       max_members=self.max_members, n_jobs=self.n_jobs)
        except Exception as exc:  # noqa: BLE001 - a failure of the whole batch is every collected job's failure
            log.error(f"population training failed: {exc}")
            outcomes = exc
        finally:
            self._restore_logging()
        read()  # read already, unless the host failed first
        collected = [ret for ret in runs if _registered(ret)]
        if not isinstance(outcomes, BaseException) and len(outcomes) != len(collected):
            outcomes = RuntimeError(f"train_population returned {len(outcomes)} outcomes for {len(collected)} jobs")
            log.error(f"population training failed: {outcomes}")
        for k, ret in enumerate(collected):
            _settle(ret, outcomes if isinstance(outcomes, BaseException) else outcomes[k])

    def _restore_logging(self) -> None:
        assert self.config is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
