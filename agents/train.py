"""The training loop: collect → GAE → PPO update, with logging, evaluation, checkpoints and clean stops."""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from tqdm.auto import tqdm

from agents import envstate
from agents.checkpoint import save_checkpoint
from agents.config import ConfigError, PPOConfig
from agents.evaluation import EvalResult, evaluate_policy
from agents.logger import TensorBoardLogger
from agents.normalization import RewardScaler
from agents.ppo import UPDATE_METRICS, PPOAgent
from agents.rollout import Collector, RolloutBuffer, make_inference
from agents.seeding import RunSeeds, reset_seed
from agents.spaces import vector_space_spec


class NumericalError(RuntimeError):
    """A NaN or inf in observations, rewards, losses or parameters; the last good checkpoint is kept."""


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


def check_finite(values: dict[str, Any], iteration: int, what: str) -> None:
    for name, value in values.items():
        arr = value.detach().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        if not np.isfinite(arr).all():
            raise NumericalError(f"iteration {iteration}: non-finite value in {what} {name}; "
                                 "the run stopped and its last good checkpoint is kept")


class Trainer:
    """Trains a ``PPOAgent`` on a vector env for ``total_timesteps`` env steps.

    ``make_eval_envs(n)`` builds evaluation envs (for periodic and final deterministic evaluation);
    ``run_info`` is stored in every checkpoint (the run's config, env id, …); ``init_agent`` (a checkpoint's
    ``agent`` state) is where π_θ, the critic and the observation statistics start, and with a KL penalty also the
    default reference π_ref (fine-tuning). Every random stream comes from ``RunSeeds(seed)``
    (``agents/seeding.py``), so runs with different seeds share none.
    """

    def __init__(self, cfg: PPOConfig, envs, total_timesteps: int, seed: int, *,
                 make_eval_envs: Optional[Callable[[int], Any]] = None,
                 logger: Optional[TensorBoardLogger] = None,
                 checkpoint_path: Optional[Path] = None, checkpoint_every: int = 0,
                 eval_every: int = 0, eval_episodes: int = 100, stop_return: Optional[float] = None,
                 progress: Optional[bool] = None, run_info: Optional[dict] = None,
                 init_agent: Optional[dict] = None):
        cfg.validate(envs.num_envs)
        self.spec = vector_space_spec(envs)
        self.cfg, self.envs = cfg, envs
        self.seed = seed
        self.total_timesteps = total_timesteps
        self.batch_size = cfg.batch_size(envs.num_envs)
        self.num_iterations = total_timesteps // self.batch_size
        self.make_eval_envs = make_eval_envs
        self.logger = logger
        self.checkpoint_path = checkpoint_path
        self.checkpoint_every = checkpoint_every
        self.eval_every, self.eval_episodes, self.stop_return = eval_every, eval_episodes, stop_return
        self.progress = progress
        self.run_info = run_info or {}

        self.seeds = RunSeeds(seed)
        torch.manual_seed(self.seeds.network())
        obs_dim, action_dim, discrete = self.spec.dims()
        self.agent = PPOAgent(cfg, obs_dim, action_dim, discrete, self.seeds.minibatch_rng())
        if init_agent is not None:
            self.agent.start_from(init_agent)
        action_shape = () if discrete else (action_dim,)
        self.buffer = RolloutBuffer(cfg.num_steps, envs.num_envs, obs_dim, action_shape, discrete)
        reward_scaler = RewardScaler(envs.num_envs, cfg.gamma, cfg.clip_reward) if cfg.normalize_reward else None
        self.collector = Collector(envs, self.buffer, self.seeds.sampling_rng(),
                                   reset_seed(envs, self.seeds.train_envs()), self.spec,
                                   obs_norm=self.agent.obs_norm, reward_scaler=reward_scaler)
        if cfg.advantage == "group" and self.collector.mode != AutoresetMode.SAME_STEP:
            raise ConfigError("agent.advantage='group' needs every step of a rollout to be a sample: use a vector "
                              "env with SameStep autoreset (env.autoreset_mode=same_step), or agent.advantage=gae")
        self.space = {"obs_dim": obs_dim, "action_dim": action_dim, "discrete": discrete}
        self.iteration = 0
        self.global_step = 0
        self.solved_step: Optional[int] = None
        self.final_eval: Optional[tuple[int, EvalResult]] = None
        """(iteration, result) of the last final evaluation: a resume with nothing to train reports it again."""
        self.stopped_under: Optional[tuple[int, float]] = None
        """(total_timesteps, stop_return) when ``stop_return`` stopped the run. A resumed run trains further when
        either changed: a larger budget, or another (or no) threshold."""
        self.recent_returns: deque = deque(maxlen=100)

    # --- state -------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "agent": self.agent.state_dict(),
            "iteration": self.iteration,
            "global_step": self.global_step,
            "solved_step": self.solved_step,
            "stopped_under": None if self.stopped_under is None else list(self.stopped_under),
            "final_eval": None if self.final_eval is None else {
                "iteration": self.final_eval[0], "returns": torch.from_numpy(self.final_eval[1].returns.copy()),
                "lengths": torch.from_numpy(np.asarray(self.final_eval[1].lengths).copy())},
            "recent_returns": list(self.recent_returns),
            "rng": self.collector.rng.bit_generator.state,
            "minibatch_rng": self.agent.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "collector": {"obs": torch.from_numpy(self.collector.obs.copy()),
                          "prev_done": torch.from_numpy(self.collector.prev_done.copy()),
                          "env": envstate.capture(self.envs),
                          "reward_scaler": (None if self.collector.reward_scaler is None
                                            else self.collector.reward_scaler.state_dict())},
            "space": self.space,
            "run": self.run_info,
        }

    def load_state_dict(self, state: dict, allow_inexact: bool = False) -> bool:
        """Restore a checkpoint's state; True if the run continues exactly. When the checkpoint could not capture
        the env state (``envstate``), ``IncompleteEnvState`` is raised unless ``allow_inexact``, in which case the
        envs restart from fresh episodes (stream ``resumed_envs(iteration)`` of the seed tree) and False is
        returned."""
        self.agent.load_state_dict(state["agent"])
        self.iteration = int(state["iteration"])
        self.global_step = int(state["global_step"])
        self.solved_step = state["solved_step"]
        final = state.get("final_eval")
        self.final_eval = None if final is None else (
            int(final["iteration"]), EvalResult(final["returns"].numpy().copy(), final["lengths"].numpy().copy()))
        stopped_under = state.get("stopped_under")
        self.stopped_under = None if stopped_under is None else (int(stopped_under[0]), float(stopped_under[1]))
        self.recent_returns.extend(state["recent_returns"])
        self.collector.rng.bit_generator.state = state["rng"]
        self.agent.rng.bit_generator.state = state["minibatch_rng"]
        torch.set_rng_state(state["torch_rng"])
        self.collector.obs = state["collector"]["obs"].numpy().copy()
        self.collector.prev_done = state["collector"]["prev_done"].numpy().copy()
        if self.collector.reward_scaler is not None:
            self.collector.reward_scaler.load_state_dict(state["collector"]["reward_scaler"])
        env_state = state["collector"]["env"]
        envstate.restore(self.envs, env_state, allow_inexact=allow_inexact)
        if env_state.get("complete", True):
            return True
        self.collector.reset(reset_seed(self.envs, self.seeds.resumed_envs(self.iteration)))
        return False

    def save(self) -> Optional[Path]:
        if self.checkpoint_path is None:
            return None
        if self.logger is not None:  # events up to the checkpoint are on disk before it is: no gap on resume
            self.logger.flush()
        return save_checkpoint(self.state_dict(), self.checkpoint_path)

    # --- loop --------------------------------------------------------------------------------------------------
    def evaluate(self, episodes: int, final: bool = False) -> EvalResult:
        """A deterministic evaluation on episodes of its own: stream ``(iteration, final)`` of the seed tree."""
        inference = make_inference(self.agent.policy, self.cfg.rollout_backend, self.agent.obs_norm)
        return evaluate_policy(inference, self.make_eval_envs, episodes,
                               seed=self.seeds.evaluation(self.iteration, final))

    def learning_rate(self, iteration: int) -> float:
        """Linear annealing over N = ``num_iterations``: ``learning_rate · (1 − (i − 1)/N)`` at iteration i = 1…N,
        i.e. the full rate at the first iteration and ``learning_rate / N`` at the last (CleanRL's schedule; it
        would reach 0 one iteration after the end). On resume with a new ``total_timesteps``, N changes and the
        remaining iterations follow the new line from where the run is (a step in the rate, not a restart)."""
        if not self.cfg.anneal_lr:
            return self.cfg.learning_rate
        return self.cfg.learning_rate * (1.0 - (iteration - 1) / self.num_iterations)

    def run(self, should_stop: Callable[[], bool] = lambda: False) -> TrainResult:
        cfg, agent = self.cfg, self.agent
        start = time.perf_counter()
        steps_at_start = self.global_step
        bar = tqdm(total=self.num_iterations * self.batch_size, initial=self.global_step, unit="step",
                   disable=None if self.progress is None else not self.progress, dynamic_ncols=True,
                   leave=False)
        result = TrainResult(self.global_step, self.iteration)
        stopped = self.stopped_under is not None and self.stop_return == self.stopped_under[1] \
            and self.total_timesteps <= self.stopped_under[0]
        try:
            while self.iteration < self.num_iterations and not stopped:
                if should_stop():
                    result.interrupted = True
                    break
                iteration = self.iteration + 1
                lr = self.learning_rate(iteration)
                agent.set_learning_rate(lr)
                t0 = time.perf_counter()
                stats = self.collector.collect(make_inference(agent.policy, cfg.rollout_backend))
                t1 = time.perf_counter()
                check_finite({"observations": self.buffer.obs, "rewards": self.buffer.rewards}, iteration, "env")
                metrics = agent.update(self.buffer.batch(cfg.gamma, cfg.gae_lambda, cfg.advantage, cfg.group_scale))
                t2 = time.perf_counter()
                check_finite({k: metrics[k] for k in UPDATE_METRICS}, iteration, "loss")
                check_finite(dict(agent.policy.named_parameters()), iteration, "parameter")
                self.iteration = iteration
                self.global_step += self.batch_size
                self.recent_returns.extend(stats.returns)
                self._log(metrics, stats, lr, t1 - t0, t2 - t1, start, steps_at_start)
                if self.eval_every and iteration % self.eval_every == 0 and iteration < self.num_iterations:
                    ev = self.evaluate(self.eval_episodes)
                    self._scalars({"eval/mean_return": ev.mean, "eval/std_return": ev.std})
                    if self.stop_return is not None and ev.mean >= self.stop_return:
                        self.solved_step = self.global_step
                        self.stopped_under = (self.total_timesteps, float(self.stop_return))
                        stopped = True
                if self.checkpoint_every and iteration % self.checkpoint_every == 0:
                    self.save()
                bar.update(self.batch_size)
                if self.recent_returns:
                    bar.set_postfix(SPS=int((self.global_step - steps_at_start) / (time.perf_counter() - start)),
                                    ret=f"{np.mean(list(self.recent_returns)[-20:]):.1f}", refresh=False)
        finally:
            bar.close()
        result.checkpoint = self.save()
        if not result.interrupted and self.eval_episodes > 0 and self.make_eval_envs:
            if self.final_eval is not None and self.final_eval[0] == self.iteration:
                result.eval = self.final_eval[1]  # nothing trained since: the run's final evaluation stands
            else:
                result.eval = self.evaluate(self.eval_episodes, final=True)
                if self.stop_return is not None and not stopped and result.eval.mean >= self.stop_return:
                    self.solved_step = self.global_step
                self._scalars({"eval/mean_return": result.eval.mean, "eval/std_return": result.eval.std})
                self.final_eval = (self.iteration, result.eval)
                result.checkpoint = self.save()  # the final evaluation is part of the run's state
        if self.logger is not None:
            self.logger.flush()
        result.global_step, result.iterations = self.global_step, self.iteration
        result.episodic_returns = list(self.recent_returns)
        result.solved_step = self.solved_step
        result.wall_seconds = time.perf_counter() - start
        return result

    def _scalars(self, values: dict[str, float]) -> None:
        if self.logger is not None:
            self.logger.scalars(values, self.global_step)

    def _log(self, metrics: dict, stats, lr: float, rollout_s: float, update_s: float, start: float,
             steps_at_start: int) -> None:
        if self.logger is None:
            return
        values = {f"losses/{k}": metrics[k] for k in UPDATE_METRICS}
        values["losses/explained_variance"] = metrics["explained_variance"]
        values["charts/learning_rate"] = lr
        values["charts/SPS"] = (self.global_step - steps_at_start) / max(time.perf_counter() - start, 1e-9)
        values["charts/rollout_seconds"] = rollout_s
        values["charts/update_seconds"] = update_s
        values["charts/minibatch_updates"] = metrics["minibatch_updates"]
        if stats.returns:
            values["charts/episodic_return"] = float(np.mean(stats.returns))
            values["charts/episodic_length"] = float(np.mean(stats.lengths))
        if "kl_ref" in metrics:
            values["losses/kl_ref"] = metrics["kl_ref"]
            values["charts/kl_coef"] = metrics["kl_coef"]
        if self.agent.policy.log_std is not None:
            values["charts/action_std"] = float(self.agent.policy.log_std.detach().exp().mean())
        values = {k: v for k, v in values.items() if not (isinstance(v, float) and math.isnan(v))}
        self.logger.scalars(values, self.global_step)
