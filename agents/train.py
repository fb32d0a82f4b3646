"""The training loop: collect → GAE → PPO update, with logging, evaluation, checkpoints and clean stops.

One loop trains a population of P members in lockstep (``Trainer.population``); a solo run (``Trainer(...)``) is
a population of one. Everything a member has of its own — config values in ``PER_MEMBER_KEYS``, seed tree,
logger, checkpoint, evaluations, stop rule, numerical failure — is per member, and a member's checkpoint has the
layout of a solo run's.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from tqdm.auto import tqdm

from agents import envstate
from agents.checkpoint import save_checkpoint
from agents.config import ConfigError, NumericalError, PPOConfig  # noqa: F401  (NumericalError re-exported)
from agents.evaluation import EvalResult, evaluate_population
from agents.logger import TensorBoardLogger
from agents.normalization import RewardScaler
from agents.ppo import UPDATE_METRICS, PPOAgent
from agents.inference import make_inference
from agents.rollout import Collector, EpisodeStats, RolloutBuffer
from agents.seeding import RunSeeds, population_reset_seed
from agents.spaces import vector_space_spec


@dataclass
class TrainResult:
    global_step: int
    iterations: int
    episodic_returns: list = field(default_factory=list)
    """Returns of the most recent training episodes (up to 100)."""
    eval: Optional[EvalResult] = None
    """Final deterministic evaluation (None if ``eval_episodes`` is 0): always a new evaluation on episodes of its
    own, never the periodic one that triggered ``stop_return`` (which is ≥ the threshold by construction)."""
    interrupted: bool = False
    solved_step: Optional[int] = None
    """Global step at which an evaluation reached ``stop_return`` (the periodic one that stopped the run, or the
    final one)."""
    wall_seconds: float = 0.0
    checkpoint: Optional[Path] = None
    stopped_by_callback: bool = False
    """A callback returned False: the run stopped early (its checkpoint and final evaluation are written; training
    it further, e.g. another ``learn``, continues from there)."""


@dataclass
class IterationInfo:
    """What a callback is given after each iteration of each member."""

    trainer: "Trainer"
    member: int
    """The member (0 in a solo run)."""
    iteration: int
    global_step: int
    """Env steps the member has trained on."""
    metrics: dict
    """This iteration's scalars, named as the TensorBoard tags: ``losses/policy_loss``, ``losses/value_loss``,
    ``losses/entropy``, ``losses/clip_fraction``, ``losses/approx_kl``, ``losses/explained_variance``,
    ``charts/episodic_return`` (when an episode ended), ``charts/learning_rate``, ``charts/SPS``, …, and
    ``eval/mean_return`` / ``eval/std_return`` on periodic-evaluation iterations."""


Callback = Callable[[IterationInfo], Optional[bool]]
"""Called once per iteration (per member) with an ``IterationInfo``, after the iteration's scalars are logged and
before its checkpoint: return False to stop training that member (like Stable-Baselines3's ``_on_step``); None or
True go on. Early stopping, custom logging, keeping the best model (e.g. ``agents.checkpoint.save_checkpoint(
info.trainer.member_state_dict(info.member), "best.pt")``, or the Python API's ``model.save``)."""


def nonfinite_members(values: dict[str, Any], members: int) -> dict[int, str]:
    """Member → the first named value (``[P, …]`` after reshaping) that holds a NaN or inf in that member's rows."""
    bad: dict[int, str] = {}
    for name, value in values.items():
        if isinstance(value, torch.Tensor):  # reduced where it lives: one [P] read-back from a GPU. The largest
            # |value| is finite exactly when every value is (amax propagates NaN), and is one pass: isfinite().all()
            # is several, over a population's whole parameter buffer every iteration
            ok = torch.isfinite(value.detach().reshape(members, -1).abs().amax(dim=1)).cpu().numpy()
        else:
            ok = np.isfinite(np.asarray(value).reshape(members, -1)).all(axis=1)
        for k in np.flatnonzero(~ok):
            bad.setdefault(int(k), name)
    return bad


@dataclass
class Member:
    """One member of a population: its config, seed and outputs (a solo run is the one member of its population)."""

    cfg: PPOConfig
    seed: int
    logger: Optional[TensorBoardLogger] = None
    checkpoint_path: Optional[Path] = None
    stop_return: Optional[float] = None
    run_info: dict = field(default_factory=dict)
    init_agent: Optional[dict] = None
    """A checkpoint's ``agent`` state to start from (fine-tuning)."""
    checkpoint_every: int = 0
    """Save the checkpoint every this many iterations (0: only at the end)."""


@dataclass
class _Progress:
    """What the loop tracks per member."""

    seeds: RunSeeds
    recent_returns: deque = field(default_factory=lambda: deque(maxlen=100))
    solved_step: Optional[int] = None
    final_eval: Optional[tuple[int, EvalResult]] = None
    """(iteration, result) of the last final evaluation: a resume with nothing to train reports it again."""
    stopped_under: Optional[tuple[int, float]] = None
    """(total_timesteps, stop_return) when ``stop_return`` stopped the run. A resumed run trains further when
    either changed: a larger budget, or another (or no) threshold."""
    active: bool = True
    """Still training (not stopped by ``stop_return`` nor by a numerical failure)."""
    finished: bool = False
    """Its end (checkpoint, final evaluation) is written."""
    error: Optional[NumericalError] = None
    iteration: int = 0
    global_step: int = 0


class Trainer:
    """Trains a ``PPOAgent`` population on a vector env for ``total_timesteps`` env steps per member.

    ``Trainer(cfg, envs, total_timesteps, seed, …)`` is a solo run; ``Trainer.population(members, envs, …)`` trains
    P members together on a vector env of ``P × num_envs`` sub-envs (member k's are the k-th block).
    ``make_eval_envs(n)`` builds evaluation envs (for periodic and final deterministic evaluation, per member);
    ``run_info`` is stored in every checkpoint (the run's config, env id, …); ``init_agent`` (a checkpoint's
    ``agent`` state) is where π_θ, the critic and the observation statistics start, and with a KL penalty also the
    default reference π_ref (fine-tuning). Every random stream of member k comes from ``RunSeeds(seed_k)``
    (``agents/seeding.py``), so members and runs with different seeds share none. ``device`` is where the networks
    train (``PPOAgent``); envs, rollouts and checkpoints stay on the host.
    """

    def __init__(self, cfg: PPOConfig, envs, total_timesteps: int, seed: int, *,
                 make_eval_envs: Optional[Callable[[int], Any]] = None,
                 logger: Optional[TensorBoardLogger] = None,
                 checkpoint_path: Optional[Path] = None, checkpoint_every: int = 0,
                 eval_every: int = 0, eval_episodes: int = 100, stop_return: Optional[float] = None,
                 progress: Optional[bool] = None, run_info: Optional[dict] = None,
                 init_agent: Optional[dict] = None, members: Optional[Sequence[Member]] = None,
                 device: str = "cpu"):
        if members is None:
            members = [Member(cfg, seed, logger, checkpoint_path, stop_return, run_info or {}, init_agent,
                              checkpoint_every)]
        self.members = list(members)
        P = len(self.members)
        if envs.num_envs % P:
            raise ConfigError(f"a population of {P} members needs a vector env of P × num_envs sub-envs, not "
                              f"{envs.num_envs}")
        cfg = self.cfg = self.members[0].cfg
        cfgs = [m.cfg for m in self.members]
        num_envs = envs.num_envs // P
        for c in cfgs:
            c.validate(num_envs)
        self.spec = vector_space_spec(envs)
        self.envs = envs
        self.batch_size = cfg.batch_size(num_envs)
        self.set_budget(total_timesteps)
        self.make_eval_envs = make_eval_envs
        self.eval_every, self.eval_episodes = eval_every, eval_episodes
        self.progress = progress

        self.state = [_Progress(RunSeeds(m.seed)) for m in self.members]
        obs_dim, action_dim, discrete = self.spec.dims()
        self.agent = PPOAgent(cfgs, obs_dim, action_dim, discrete, [s.seeds.minibatch_rng() for s in self.state],
                              network_seeds=[s.seeds.network() for s in self.state], device=device)
        for k, m in enumerate(self.members):
            if m.init_agent is not None:
                self.agent.start_from(k, m.init_agent)
        action_shape = () if discrete else (action_dim,)
        self.buffer = RolloutBuffer(cfg.num_steps, num_envs, obs_dim, action_shape, discrete, members=P)
        reward_scaler = (RewardScaler(num_envs, [c.gamma for c in cfgs], cfg.clip_reward, members=P)
                         if cfg.normalize_reward else None)
        self.collector = Collector(envs, self.buffer, [s.seeds.sampling_rng() for s in self.state],
                                   population_reset_seed(envs, [s.seeds.train_envs() for s in self.state]),
                                   self.spec, obs_norm=self.agent.obs_norm, reward_scaler=reward_scaler)
        if cfg.advantage == "group" and self.collector.mode != AutoresetMode.SAME_STEP:
            raise ConfigError("agent.advantage='group' needs every step of a rollout to be a sample: use a vector "
                              "env with SameStep autoreset (env.autoreset_mode=same_step), or agent.advantage=gae")
        self.space = {"obs_dim": obs_dim, "action_dim": action_dim, "discrete": discrete}
        self.gammas, self.gae_lambdas = [c.gamma for c in cfgs], [c.gae_lambda for c in cfgs]
        self.iteration = 0
        self.global_step = 0
        self.seconds = {"rollout": 0.0, "update": 0.0, "evaluation": 0.0}
        """Where the loop's time went (the whole population's), summed over ``run`` calls."""

    @classmethod
    def population(cls, members: Sequence[Member], envs, total_timesteps: int, **kwargs) -> "Trainer":
        """P members trained together (``kwargs``: the shared keywords of ``Trainer``)."""
        return cls(members[0].cfg, envs, total_timesteps, members[0].seed, members=members, **kwargs)

    def set_budget(self, total_timesteps: int) -> None:
        """Train to ``total_timesteps`` env steps in all (whole iterations; the Python API's ``learn`` grows it):
        learning-rate annealing follows the new line from where the run is, as on a resume with a new budget."""
        self.total_timesteps = total_timesteps
        self.num_iterations = total_timesteps // self.batch_size

    # --- a solo run's view ---------------------------------------------------------------------------------------
    @property
    def logger(self) -> Optional[TensorBoardLogger]:
        return self.members[0].logger

    @logger.setter
    def logger(self, logger: Optional[TensorBoardLogger]) -> None:
        self.members[0].logger = logger

    # --- state -------------------------------------------------------------------------------------------------
    def _env_state(self, k: int) -> dict:
        if len(self.members) == 1:
            return envstate.capture(self.envs)
        return envstate.nothing_captured("population member (its sub-envs were part of the population's vector env)")

    def member_state_dict(self, k: int) -> dict:
        """Member k's checkpoint, in a solo run's layout."""
        st, n = self.state[k], self.buffer.num_envs
        scaler = self.collector.reward_scaler
        return {
            "agent": self.agent.member_state_dict(k),
            "iteration": st.iteration,
            "global_step": st.global_step,
            "solved_step": st.solved_step,
            "stopped_under": None if st.stopped_under is None else list(st.stopped_under),
            "final_eval": None if st.final_eval is None else {
                "iteration": st.final_eval[0], "returns": torch.from_numpy(st.final_eval[1].returns.copy()),
                "lengths": torch.from_numpy(np.asarray(st.final_eval[1].lengths).copy())},
            "recent_returns": list(st.recent_returns),
            "rng": self.collector.rngs[k].bit_generator.state,
            "minibatch_rng": self.agent.rngs[k].bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "collector": {"obs": torch.from_numpy(self.collector.obs[k].copy()),
                          "prev_done": torch.from_numpy(self.collector.prev_done[k * n:(k + 1) * n].copy()),
                          "env": self._env_state(k),
                          "reward_scaler": None if scaler is None else scaler.member_state(k)},
            "space": self.space,
            "run": self.members[k].run_info,
        }

    def state_dict(self) -> dict:
        """A solo run's checkpoint (member 0)."""
        return self.member_state_dict(0)

    def load_state_dict(self, state: dict, allow_inexact: bool = False) -> bool:
        """Restore a solo run's checkpoint; True if the run continues exactly (``load_state_dicts``)."""
        if len(self.members) != 1:
            raise ValueError("load_state_dict restores a solo run; a population restores its members with "
                             "load_state_dicts")
        return self.load_state_dicts([state], allow_inexact)

    def load_state_dicts(self, states: Sequence[dict], allow_inexact: bool = False) -> bool:
        """Restore each member from a checkpoint in a solo run's layout (member k from ``states[k]``, all at the same
        iteration); True if the run continues exactly. When the env state is not in the checkpoint (``envstate``;
        a population's sub-envs never are: a member's checkpoint cannot hold the shared vector env),
        ``IncompleteEnvState`` is raised unless ``allow_inexact``, in which case every member's sub-envs restart
        from fresh episodes (stream ``resumed_envs(iteration)`` of its seed tree: with sync/async vector envs the
        episodes its solo resume would start; a native vector env draws them from one generator seeded by all
        members) and False is returned."""
        if len(states) != len(self.members):
            raise ValueError(f"{len(states)} checkpoints for a population of {len(self.members)} members")
        iterations = sorted({int(state["iteration"]) for state in states})
        if len(iterations) > 1:
            raise ValueError(f"the checkpoints are at different iterations ({iterations}): members of one "
                             "population train in lockstep")
        n = self.buffer.num_envs
        obs = np.array(self.collector.obs)
        prev_done = np.array(self.collector.prev_done)
        for k, state in enumerate(states):
            st = self.state[k]
            self.agent.load_member_state_dict(k, state["agent"])
            st.iteration, st.global_step = int(state["iteration"]), int(state["global_step"])
            st.solved_step = state["solved_step"]
            final = state.get("final_eval")
            st.final_eval = None if final is None else (
                int(final["iteration"]), EvalResult(final["returns"].numpy().copy(), final["lengths"].numpy().copy()))
            stopped_under = state.get("stopped_under")
            st.stopped_under = None if stopped_under is None else (int(stopped_under[0]), float(stopped_under[1]))
            st.recent_returns.extend(state["recent_returns"])
            self.collector.rngs[k].bit_generator.state = state["rng"]
            self.agent.rngs[k].bit_generator.state = state["minibatch_rng"]
            obs[k] = state["collector"]["obs"].numpy()
            prev_done[k * n:(k + 1) * n] = state["collector"]["prev_done"].numpy()
            if self.collector.reward_scaler is not None:
                self.collector.reward_scaler.load_member_state(k, state["collector"]["reward_scaler"])
        self.iteration, self.global_step = self.state[0].iteration, self.state[0].global_step
        torch.set_rng_state(states[0]["torch_rng"])
        self.collector.obs, self.collector.prev_done = obs, prev_done
        env_state = states[0]["collector"]["env"] if len(states) == 1 else envstate.nothing_captured(
            "the sub-envs of a population's members are restored together")
        envstate.restore(self.envs, env_state, allow_inexact=allow_inexact)
        if env_state.get("complete", True):
            return True
        self.collector.reset(population_reset_seed(self.envs, [st.seeds.resumed_envs(self.iteration)
                                                                for st in self.state]))
        return False

    def save(self, k: int = 0) -> Optional[Path]:
        member = self.members[k]
        if member.checkpoint_path is None:
            return None
        if member.logger is not None:  # events up to the checkpoint are on disk before it is: no gap on resume
            member.logger.flush()
        return save_checkpoint(self.member_state_dict(k), member.checkpoint_path)

    # --- loop --------------------------------------------------------------------------------------------------
    def evaluate(self, episodes: int, final: bool = False, member: int = 0) -> EvalResult:
        """A deterministic evaluation of one member on episodes of its own: stream ``(iteration, final)`` of the
        member's seed tree."""
        return self.evaluate_members([member], episodes, final)[0]

    def evaluate_members(self, members: Sequence[int], episodes: int, final: bool = False) -> list[EvalResult]:
        """Deterministic evaluations of several members at once (one batched evaluation); each on its own stream,
        so member k's result is what ``evaluate(…, member=k)`` gives."""
        start = time.perf_counter()
        inference = make_inference(self.agent.policy, self.cfg.rollout_backend, self.agent.obs_norm,
                                   members=list(members))
        seeds = [self.state[k].seeds.evaluation(self.state[k].iteration, final) for k in members]
        results = evaluate_population(inference, self.make_eval_envs, episodes, seeds)
        self.seconds["evaluation"] += time.perf_counter() - start
        return results

    def learning_rate(self, iteration: int, member: int = 0) -> float:
        """Linear annealing over N = ``num_iterations``: ``learning_rate · (1 − (i − 1)/N)`` at iteration i = 1…N,
        i.e. the full rate at the first iteration and ``learning_rate / N`` at the last (CleanRL's schedule; it
        would reach 0 one iteration after the end). On resume with a new ``total_timesteps``, N changes and the
        remaining iterations follow the new line from where the run is (a step in the rate, not a restart)."""
        cfg = self.members[member].cfg
        if not cfg.anneal_lr:
            return cfg.learning_rate
        return cfg.learning_rate * (1.0 - (iteration - 1) / self.num_iterations)

    def _already_stopped(self, k: int) -> bool:
        st = self.state[k]
        return st.stopped_under is not None and self.members[k].stop_return == st.stopped_under[1] \
            and self.total_timesteps <= st.stopped_under[0]

    def run(self, should_stop: Callable[[], bool] = lambda: False,
            callbacks: Sequence[Callback] = ()) -> TrainResult:
        """Train; a solo run's result (a population's: ``run_population``). A member's numerical failure is raised
        for a solo run, as ``NumericalError``."""
        results = self.run_population(should_stop, callbacks)
        if self.state[0].error is not None:
            raise self.state[0].error
        return results[0]

    def run_population(self, should_stop: Callable[[], bool] = lambda: False,
                       callbacks: Sequence[Callback] = ()) -> list[TrainResult]:
        """Train every member; one result per member. A member stopped by ``stop_return``, by a callback or by a NaN
        stops alone (its checkpoint and, except after a NaN, its final evaluation are written then); the others go
        on. ``callbacks`` are called after every iteration of every member (``Callback``)."""
        cfg, agent = self.cfg, self.agent
        start = time.perf_counter()
        steps_at_start = self.global_step
        P = len(self.members)
        bar = tqdm(total=self.num_iterations * self.batch_size, initial=self.global_step, unit="step",
                   disable=None if self.progress is None else not self.progress, dynamic_ncols=True,
                   leave=False)
        results = [TrainResult(st.global_step, st.iteration) for st in self.state]
        callbacks = list(callbacks)
        for k, st in enumerate(self.state):
            st.active, st.finished, st.error = not self._already_stopped(k), False, None
        # a resumed member that had already stopped ends now, as it would alone: its state is saved before its
        # sub-envs step (and its statistics move) while the others train
        self._finish([k for k, st in enumerate(self.state) if not st.active], results, stopped=True)
        interrupted = False
        try:
            while self.iteration < self.num_iterations and any(st.active for st in self.state):
                if should_stop():
                    interrupted = True
                    break
                iteration = self.iteration + 1
                lrs = [self.learning_rate(iteration, k) for k in range(P)]
                agent.set_learning_rate(lrs)
                active = np.array([st.active for st in self.state])
                t0 = time.perf_counter()
                stats = self.collector.collect(make_inference(agent.policy, cfg.rollout_backend))
                t1 = time.perf_counter()
                self._fail(nonfinite_members({"observations": self.buffer.obs.swapaxes(0, 1),
                                              "rewards": self.buffer.rewards.T}, P), iteration, "env", active)
                metrics = agent.update(self.buffer.batch(self.gammas, self.gae_lambdas, cfg.advantage,
                                                         cfg.group_scale), active=active)
                t2 = time.perf_counter()
                self.seconds["rollout"] += t1 - t0
                self.seconds["update"] += t2 - t1
                self._fail(nonfinite_members({k: metrics[k] for k in UPDATE_METRICS}, P), iteration, "loss", active)
                self._fail(nonfinite_members({"parameters": agent.optimizer.flat}, P), iteration, "parameter",
                           active)
                self.iteration = iteration
                self.global_step += self.batch_size
                logged = [k for k in np.flatnonzero(active) if self.state[k].active]  # not failed just now
                scalars: dict[int, dict[str, float]] = {}  # only for members someone reads them for
                for k in logged:
                    st = self.state[k]
                    st.iteration, st.global_step = self.iteration, self.global_step
                    st.recent_returns.extend(stats.returns[k])
                    if callbacks or self.members[k].logger is not None:
                        scalars[k] = self._iteration_scalars(k, metrics, stats, lrs[k], t1 - t0, t2 - t1, start,
                                                             steps_at_start)
                ending = []  # members that stop at this iteration: by stop_return, or by a callback
                if logged and self.eval_every and iteration % self.eval_every == 0 and iteration < self.num_iterations:
                    for k, ev in zip(logged, self.evaluate_members(logged, self.eval_episodes)):
                        if k in scalars:
                            scalars[k].update({"eval/mean_return": ev.mean, "eval/std_return": ev.std})
                        stop_return = self.members[k].stop_return
                        if stop_return is not None and ev.mean >= stop_return:
                            st = self.state[k]
                            st.solved_step = st.global_step
                            st.stopped_under = (self.total_timesteps, float(stop_return))
                            st.active = False
                            ending.append(k)
                for k, values in scalars.items():
                    self._scalars(k, values)
                    info = IterationInfo(self, int(k), self.iteration, self.global_step, values)
                    if [cb(info) for cb in callbacks].count(False) and self.state[k].active:
                        self.state[k].active = False
                        results[k].stopped_by_callback = True
                        ending.append(k)
                self._finish(ending, results, stopped=True)
                for k in logged:
                    every = self.members[k].checkpoint_every
                    if self.state[k].active and every and iteration % every == 0:
                        self.save(k)
                bar.update(self.batch_size)
                recent = self.state[0].recent_returns
                if recent:
                    bar.set_postfix(SPS=int((self.global_step - steps_at_start) / (time.perf_counter() - start)),
                                    ret=f"{np.mean(list(recent)[-20:]):.1f}", refresh=False)
        finally:
            bar.close()
        ending = [k for k, st in enumerate(self.state) if st.error is None and not st.finished]
        for k in ending:
            results[k].interrupted = interrupted
        self._finish([k for k in ending if not self.state[k].active], results, stopped=True,
                     evaluate=not interrupted)
        self._finish([k for k in ending if self.state[k].active], results, stopped=False, evaluate=not interrupted)
        for k, st in enumerate(self.state):
            res = results[k]
            res.global_step, res.iterations = st.global_step, st.iteration
            res.episodic_returns = list(st.recent_returns)
            res.solved_step = st.solved_step
            res.wall_seconds = time.perf_counter() - start
        return results

    def _fail(self, bad: dict[int, str], iteration: int, what: str, active: np.ndarray) -> None:
        """Stop the members with a non-finite value; their last good checkpoint is kept."""
        for k, name in bad.items():
            st = self.state[k]
            if active[k] and st.active:
                st.active = False
                st.error = NumericalError(f"iteration {iteration}: non-finite value in {what} {name}; "
                                          "the run stopped and its last good checkpoint is kept")
                if self.members[k].logger is not None:
                    self.members[k].logger.flush()

    def _finish(self, members: Sequence[int], results: list[TrainResult], stopped: bool,
                evaluate: bool = True) -> None:
        """The end of ``members``: checkpoint, then (unless interrupted) their final evaluations, each on a stream of
        its own (evaluated together), logged and saved with the run's state."""
        if not members:
            return
        todo = []
        for k in members:
            st = self.state[k]
            st.finished = True
            results[k].checkpoint = self.save(k)
            if not (evaluate and self.eval_episodes > 0 and self.make_eval_envs):
                continue
            if st.final_eval is not None and st.final_eval[0] == st.iteration:
                results[k].eval = st.final_eval[1]  # nothing trained since: the run's final evaluation stands
            else:
                todo.append(k)
        for k, ev in zip(todo, self.evaluate_members(todo, self.eval_episodes, final=True) if todo else []):
            st, stop_return = self.state[k], self.members[k].stop_return
            results[k].eval = ev
            if stop_return is not None and not stopped and ev.mean >= stop_return:
                st.solved_step = st.global_step
            self._scalars(k, {"eval/mean_return": ev.mean, "eval/std_return": ev.std})
            st.final_eval = (st.iteration, ev)
            results[k].checkpoint = self.save(k)  # the final evaluation is part of the run's state
        for k in members:
            if self.members[k].logger is not None:
                self.members[k].logger.flush()

    def _scalars(self, k: int, values: dict[str, float]) -> None:
        logger = self.members[k].logger
        if logger is not None:
            logger.scalars(values, self.state[k].global_step)

    def _iteration_scalars(self, k: int, metrics: dict, stats: EpisodeStats, lr: float, rollout_s: float,
                           update_s: float, start: float, steps_at_start: int) -> dict[str, float]:
        """Member k's scalars of this iteration, named as its TensorBoard tags (NaNs left out)."""
        values = {f"losses/{key}": float(metrics[key][k]) for key in UPDATE_METRICS}
        values["losses/explained_variance"] = float(metrics["explained_variance"][k])
        values["charts/learning_rate"] = lr
        values["charts/SPS"] = (self.global_step - steps_at_start) / max(time.perf_counter() - start, 1e-9)
        values["charts/rollout_seconds"] = rollout_s
        values["charts/update_seconds"] = update_s
        values["charts/minibatch_updates"] = int(metrics["minibatch_updates"][k])
        if stats.returns[k]:
            values["charts/episodic_return"] = float(np.mean(stats.returns[k]))
            values["charts/episodic_length"] = float(np.mean(stats.lengths[k]))
        if "kl_ref" in metrics:
            values["losses/kl_ref"] = float(metrics["kl_ref"][k])
            values["charts/kl_coef"] = float(metrics["kl_coef"][k])
        if self.agent.policy.log_std is not None:
            values["charts/action_std"] = float(self.agent.policy.log_std[k].detach().exp().mean())
        return {key: v for key, v in values.items() if not (isinstance(v, float) and math.isnan(v))}
