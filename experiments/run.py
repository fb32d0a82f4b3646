"""One training run from a composed config: the glue between Hydra and ``agents``/``envs``."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from agents import Trainer
from agents.api import make_trainer
from agents.checkpoint import CHECKPOINT_NAME, FORMAT_VERSION, load_checkpoint, resolve_checkpoint
from agents.config import ConfigError, first_line
from agents.envstate import IncompleteEnvState
from agents.logger import TensorBoardLogger
from agents.train import Member, TrainResult
from envs.vector import make_vec_env
from agents.run_config import require_device
from agents.run_config import TrainConfig, final_metrics, hparams_of, to_train_config  # noqa: F401  (re-exported)
from experiments.entry import (EXIT_CODES, SIGNAL_EXIT_CODES, freeze_long_lived,  # noqa: F401  (re-exported)
                               hydra_one_line_errors, user_errors)

log = logging.getLogger(__name__)

# Overrides a resumed run accepts; anything else would make it a different run (restating a key's saved value is
# accepted too). eval.* only changes when and how the policy is evaluated, never the training trajectory.
RESUME_OVERRIDES = ("resume", "total_timesteps", "progress", "checkpoint_every", "torch_threads", "device",
                    "eval.stop_return", "eval.every", "eval.episodes", "allow_inexact_resume")


class StopFlag:
    """SIGINT/SIGTERM → finish the current iteration, checkpoint, flush, exit with 128 + signal number.
    A second signal interrupts at once."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._previous: dict = {}

    def __enter__(self) -> "StopFlag":
        for sig in SIGNAL_EXIT_CODES:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (some launchers): no graceful stop there
                pass
        return self

    def _handle(self, signum, frame) -> None:
        self.signum = signum
        signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def __call__(self) -> bool:
        return self.signum is not None


def _override_key(item: str) -> str:
    return item.lstrip("+~").split("=", 1)[0]


def _plain_value(cfg: DictConfig, key: str):
    value = OmegaConf.select(cfg, key, default=None)
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


_ABSENT = object()


def _original_overrides(run_dir: Path) -> list[str]:
    """The overrides the run was started with (Hydra's ``.hydra/overrides.yaml``), if that file is there."""
    path = run_dir / ".hydra" / "overrides.yaml"
    try:
        return [str(o) for o in OmegaConf.load(path)] if path.is_file() else []
    except Exception:  # noqa: BLE001 - an unreadable record only means fewer restatements are recognised
        return []


def _check_resume_overrides(overrides: Sequence[str], cfg: DictConfig, saved: DictConfig,
                            original: Sequence[str] = ()) -> None:
    """Refuse an override that would make the resumed run a different run. Restating the run's own command (the
    same command again with ``resume=`` added) is accepted: an override the run was started with, or a key whose
    value equals the saved one (null included)."""
    for item in overrides:
        key = _override_key(item)
        if key in RESUME_OVERRIDES or item in original:
            continue
        theirs = OmegaConf.select(saved, key, default=_ABSENT)
        ours = _plain_value(cfg, key)
        if item.startswith("~") or theirs is _ABSENT or ours != _plain_value(saved, key):
            shown = "no such key" if theirs is _ABSENT else f"{key}={_plain_value(saved, key)!r}"
            raise ConfigError(f"{key} cannot be overridden when resuming (the run has {shown}; a resumed run "
                              f"keeps its saved config): allowed overrides are {', '.join(RESUME_OVERRIDES)}")


NETWORK_KEYS = ("policy", "actor_hidden_sizes", "critic_hidden_sizes", "actor_activation", "critic_activation")


def _check_compatible(state: dict, cfg: TrainConfig, key: str) -> None:
    """Refuse a checkpoint trained on another env or with another network (same shapes are not enough: a relu
    network's weights in a tanh network would be a different policy)."""
    saved = state.get("run", {}).get("config", {})
    saved_env = saved.get("env", {}).get("id")
    if saved_env is not None and saved_env != cfg.env.id:
        raise ConfigError(f"{key}: the checkpoint was trained on env.id={saved_env!r}, not {cfg.env.id!r}")
    try:
        theirs_net = to_train_config(saved).agent.network() if saved else {}
    except ConfigError:
        theirs_net = {}
    ours_net = cfg.agent.network()
    theirs_norm = saved.get("agent", {}).get("normalize_obs", False)
    if theirs_norm != cfg.agent.normalize_obs:
        raise ConfigError(f"{key}: the checkpoint's policy was trained with agent.normalize_obs={theirs_norm}, this "
                          f"run has agent.normalize_obs={cfg.agent.normalize_obs}: its weights expect "
                          f"{'normalised' if theirs_norm else 'raw'} observations")
    for name in NETWORK_KEYS:
        theirs, ours = theirs_net.get(name), ours_net[name]
        if theirs is not None and theirs != ours:
            shown = _shared_key(name, theirs_net, ours_net)
            raise ConfigError(f"{key}: the checkpoint's network has agent.{shown}={theirs!r}, this run "
                              f"agent.{shown}={ours!r}: use the same network")


def _load_error_detail(exc: BaseException) -> str:
    """The informative line of a ``load_state_dict`` error (its first line is only a header)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    detail = next((line for line in lines[1:] if "size mismatch" in line or "Missing key" in line), None)
    return detail or first_line(exc)


def _shared_key(name: str, theirs: dict, ours: dict) -> str:
    """The key a user wrote: ``hidden_sizes`` / ``activation`` when actor and critic agree on both sides, else the
    actor's or critic's own key."""
    if not name.startswith("actor_"):
        return name
    critic = name.replace("actor_", "critic_")
    return name[len("actor_"):] if theirs[critic] == theirs[name] and ours[critic] == ours[name] else name


@dataclass
class RunPlan:
    """One run, ready to build: its validated config, its folder and the checkpoints it starts from."""

    cfg: DictConfig
    """The config the run keeps (on resume: the saved one, with the allowed overrides applied)."""
    train_cfg: TrainConfig
    run_dir: Path
    state: Optional[dict] = None
    """The checkpoint a resumed run continues from."""
    init_state: Optional[dict] = None
    ref_state: Optional[dict] = None

    @property
    def checkpoint_key(self) -> str:
        """The key to name when a checkpoint does not fit this run's env or network."""
        return "resume" if self.state is not None else "init_checkpoint" if self.init_state is not None \
            else "ref_checkpoint"

    def member(self) -> Member:
        """The run as a member of a population (a solo run is the population of one)."""
        tc = self.train_cfg
        return Member(tc.agent, tc.seed, checkpoint_path=self.run_dir / CHECKPOINT_NAME,
                      stop_return=tc.eval.stop_return, checkpoint_every=tc.checkpoint_every,
                      run_info={"config": OmegaConf.to_container(self.cfg, resolve=True)},
                      init_agent=self.init_state["agent"] if self.init_state is not None else None)


def plan_run(cfg: DictConfig, output_dir: str | Path, overrides: Sequence[str] = (),
             train_cfg: Optional[TrainConfig] = None) -> RunPlan:
    """Validate a run's config (a resumed run: with its saved config; ``train_cfg``: already validated) and load
    the checkpoints it starts from; raises ``ConfigError`` naming the key."""
    resume = OmegaConf.select(cfg, "resume", default=None) if OmegaConf.is_config(cfg) else cfg.get("resume")
    if resume is None:
        plan = RunPlan(cfg, train_cfg if train_cfg is not None else to_train_config(cfg), Path(output_dir))
        tc = plan.train_cfg
        require_device(tc.device)
        if tc.ref_checkpoint is not None:
            plan.ref_state = load_checkpoint(tc.ref_checkpoint, key="ref_checkpoint")
            _check_compatible(plan.ref_state, tc, "ref_checkpoint")
        if tc.init_checkpoint is not None:
            plan.init_state = load_checkpoint(tc.init_checkpoint, key="init_checkpoint")
            _check_compatible(plan.init_state, tc, "init_checkpoint")
        return plan
    if not isinstance(resume, str):
        raise ConfigError(f"resume={resume!r} is invalid: give a checkpoint file or run folder")
    ckpt = resolve_checkpoint(resume, key="resume")
    state = load_checkpoint(ckpt, key="resume")
    if state["format"] != FORMAT_VERSION:
        raise ConfigError(f"resume={resume!r} is invalid: the checkpoint was written by an older version of this "
                          f"package (format {state['format']}, now {FORMAT_VERSION}), whose training state cannot "
                          "continue exactly; it can still be evaluated or used as init_checkpoint")
    saved = OmegaConf.create(state["run"]["config"])
    user_overrides = [o for o in overrides if not o.startswith("hydra")]
    _check_resume_overrides(user_overrides, cfg, saved, _original_overrides(ckpt.parent))
    for item in user_overrides:  # only what the user gave on this command line replaces the saved values
        name = _override_key(item)
        if name in RESUME_OVERRIDES[1:]:
            OmegaConf.update(saved, name, OmegaConf.select(cfg, name), force_add=True)
    # an opt-in for this resume only: the saved config keeps false, so the next resume asks again
    allow_inexact = bool(OmegaConf.select(saved, "allow_inexact_resume", default=False))
    saved.allow_inexact_resume = False
    saved.resume = resume
    train_cfg = to_train_config(saved)
    require_device(train_cfg.device)
    train_cfg.allow_inexact_resume = allow_inexact
    _check_compatible(state, train_cfg, "resume")
    return RunPlan(saved, train_cfg, ckpt.parent, state=state)


@contextlib.contextmanager
def checkpoint_errors(key: str) -> Iterator[None]:
    """A checkpoint that does not fit the env/network, or an env state it cannot restore: one ``ConfigError``."""
    try:
        yield
    except IncompleteEnvState as exc:
        raise ConfigError(f"resume: {first_line(exc)}; add allow_inexact_resume=true to continue from freshly "
                          "reset envs instead") from None
    except (RuntimeError, KeyError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{key}: the checkpoint does not fit this env/network "
                          f"({_load_error_detail(exc)[:200]})") from None


def build_trainer(plans: Sequence[RunPlan], envs) -> Trainer:
    """The trainer of one run, or of a population of runs (their configs equal outside the per-member keys)."""
    tc, key = plans[0].train_cfg, plans[0].checkpoint_key
    states = [plan.state for plan in plans]  # resumed runs: every member, or none
    if any(state is None for state in states) != all(state is None for state in states):
        raise ValueError("a population's members are either all resumed or all new runs")
    with checkpoint_errors(key):
        trainer = make_trainer(tc, envs, [plan.member() for plan in plans])
        if states[0] is not None and not trainer.load_state_dicts(states, tc.allow_inexact_resume):
            log.warning("resume: the checkpoint could not capture the env state; continuing from freshly reset "
                        "envs (allow_inexact_resume=true), so this run will not equal an uninterrupted one")
    with checkpoint_errors("ref_checkpoint"):
        for k, plan in enumerate(plans):
            if plan.ref_state is not None:
                trainer.agent.set_reference(k, plan.ref_state["agent"]["policy"])
    return trainer


def open_logger(plan: RunPlan, global_step: int) -> TensorBoardLogger:
    """The run's TensorBoard writer. On resume, TensorBoard drops the events an interrupted run wrote after its
    checkpoint (steps > global_step)."""
    tb_dir = plan.run_dir / "tb"
    logger = TensorBoardLogger(tb_dir, purge_step=global_step + 1 if plan.state is not None else None)
    if plan.state is None:
        logger.text("config", "```yaml\n" + OmegaConf.to_yaml(plan.cfg, resolve=True) + "\n```")
    log.info("run dir: %s", plan.run_dir)
    log.info("TensorBoard logs: %s  (view: tensorboard --logdir %s)", tb_dir, tb_dir)
    return logger


def report(plan: RunPlan, result: TrainResult, logger: TensorBoardLogger) -> float:
    """Log the end of a finished run (HParams once per finished run) and return its final evaluation's mean."""
    state, train_cfg = plan.state, plan.train_cfg
    if state is not None and result.iterations == int(state["iteration"]):
        log.info("nothing left to train: the checkpoint is at step %d of %d", result.global_step,
                 train_cfg.total_timesteps)
    finals = final_metrics(result)
    final = finals["hparams/final_eval_return"]
    if state is None or result.iterations > int(state["iteration"]):  # once per finished run
        logger.hparams(hparams_of(train_cfg), {k: v for k, v in finals.items() if v == v})  # NaN: not measured
    logger.close()
    log.info("checkpoint: %s", result.checkpoint)
    if result.eval is not None:
        log.info("eval: mean_return=%.2f std=%.2f episodes=%d steps=%d", final, result.eval.std,
                 len(result.eval.returns), result.global_step)
    return final


def report_interrupted(plan: RunPlan, result: TrainResult, logger: TensorBoardLogger) -> None:
    logger.close()
    log.info("interrupted at step %d: checkpoint %s (continue with resume=%s)",
             result.global_step, result.checkpoint, plan.run_dir)


def run_training(cfg: DictConfig, output_dir: str | Path, overrides: Sequence[str] = ()) -> float:
    """Train one run into ``output_dir``; returns the final evaluation's mean return (NaN if none)."""
    plan = plan_run(cfg, output_dir, overrides)
    torch.set_num_threads(plan.train_cfg.torch_threads)
    envs = make_vec_env(plan.train_cfg.env)
    freeze_long_lived()  # the trainer and the env are imported now
    try:
        trainer = build_trainer([plan], envs)
        trainer.logger = logger = open_logger(plan, trainer.global_step)
        with StopFlag() as stop:
            result = trainer.run(should_stop=stop)
    finally:
        envs.close()
    if result.interrupted:
        report_interrupted(plan, result, logger)
        sys.exit(SIGNAL_EXIT_CODES.get(stop.signum, 1))
    return report(plan, result, logger)
