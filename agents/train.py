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
from tqdm.auto import tqdm

from agents import envstate
from agents.checkpoint import save_checkpoint
from agents.config import PPOConfig
from agents.evaluation import EvalResult, evaluate_policy
from agents.logger import TensorBoardLogger
from agents.networks import space_dims
from agents.ppo import UPDATE_METRICS, PPOAgent
from agents.rollout import Collector, RolloutBuffer, make_inference


class NumericalError(RuntimeError):
    """A NaN or inf in observations, rewards, losses or parameters; the last good checkpoint is kept."""


@dataclass
class TrainResult:
    global_step: int
    iterations: int
    episodic_returns: list = field(default_factory=list)
    """Returns of the most recent training episodes (up to 100)."""
    eval: Optional[EvalResult] = None
    """Final deterministic evaluation (None if ``eval_episodes`` is 0)."""
    interrupted: bool = False
    solved_step: Optional[int] = None
    """Global step at which a periodic evaluation first reached ``stop_return``."""
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
    ``run_info`` is stored in every checkpoint (the run's config, env id, …).
    """

    def __init__(self, cfg: PPOConfig, envs, total_timesteps: int, seed: int, *,
                 make_eval_envs: Optional[Callable[[int], Any]] = None,
                 logger: Optional[TensorBoardLogger] = None,
                 checkpoint_path: Optional[Path] = None, checkpoint_every: int = 0,
                 eval_every: int = 0, eval_episodes: int = 100, stop_return: Optional[float] = None,
                 progress: Optional[bool] = None, run_info: Optional[dict] = None):
        cfg.validate(envs.num_envs)
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

        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        obs_dim, action_dim, discrete = space_dims(envs)
        self.agent = PPOAgent(cfg, obs_dim, action_dim, discrete, self.rng)
        action_shape = () if discrete else (action_dim,)
        self.buffer = RolloutBuffer(cfg.num_steps, envs.num_envs, obs_dim, action_shape, discrete)
        self.collector = Collector(envs, self.buffer, self.rng, seed)
        self.space = {"obs_dim": obs_dim, "action_dim": action_dim, "discrete": discrete}
        self.iteration = 0
        self.global_step = 0
        self.solved_step: Optional[int] = None
        self.recent_returns: deque = deque(maxlen=100)

    # --- state -------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "agent": self.agent.state_dict(),
            "iteration": self.iteration,
            "global_step": self.global_step,
            "solved_step": self.solved_step,
            "recent_returns": list(self.recent_returns),
            "rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
            "collector": {"obs": torch.from_numpy(self.collector.obs.copy()),
                          "prev_done": torch.from_numpy(self.collector.prev_done.copy()),
                          "env": envstate.capture(self.envs)},
            "space": self.space,
            "run": self.run_info,
        }

    def load_state_dict(self, state: dict) -> None:
        self.agent.load_state_dict(state["agent"])
        self.iteration = int(state["iteration"])
        self.global_step = int(state["global_step"])
        self.solved_step = state["solved_step"]
        self.recent_returns.extend(state["recent_returns"])
        self.rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        self.collector.obs = state["collector"]["obs"].numpy().copy()
        self.collector.prev_done = state["collector"]["prev_done"].numpy().copy()
        envstate.restore(self.envs, state["collector"]["env"])

    def save(self) -> Optional[Path]:
        if self.checkpoint_path is None:
            return None
        if self.logger is not None:  # events up to the checkpoint are on disk before it is: no gap on resume
            self.logger.flush()
        return save_checkpoint(self.state_dict(), self.checkpoint_path)

    # --- loop --------------------------------------------------------------------------------------------------
    def evaluate(self, episodes: int) -> EvalResult:
        inference = make_inference(self.agent.policy, self.cfg.rollout_backend)
        return evaluate_policy(inference, self.make_eval_envs, episodes, seed=self.seed + 1_000_003)

    def learning_rate(self, iteration: int) -> float:
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
        try:
            while self.iteration < self.num_iterations and self.solved_step is None:
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
                metrics = agent.update(self.buffer.batch(cfg.gamma, cfg.gae_lambda))
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
                        result.eval = ev
                if self.checkpoint_every and iteration % self.checkpoint_every == 0:
                    self.save()
                bar.update(self.batch_size)
                if self.recent_returns:
                    bar.set_postfix(SPS=int((self.global_step - steps_at_start) / (time.perf_counter() - start)),
                                    ret=f"{np.mean(list(self.recent_returns)[-20:]):.1f}", refresh=False)
        finally:
            bar.close()
        result.checkpoint = self.save()
        if not result.interrupted and result.eval is None and self.eval_episodes > 0 and self.make_eval_envs:
            result.eval = self.evaluate(self.eval_episodes)
            if self.stop_return is not None and self.solved_step is None and result.eval.mean >= self.stop_return:
                self.solved_step = self.global_step
        if result.eval is not None:
            self._scalars({"eval/mean_return": result.eval.mean, "eval/std_return": result.eval.std})
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
