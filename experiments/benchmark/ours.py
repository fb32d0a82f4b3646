"""Our trainer, run in-process and instrumented through its callback protocol (``agents.train.Callback``): every
iteration's scalars are kept in memory, and the evaluations' time is the trainer's own ``seconds["evaluation"]``."""

from __future__ import annotations

import time
from typing import Optional

import torch


class Recorder:
    """A training callback that keeps every iteration's scalars, named as the TensorBoard tags, in memory."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, dict]] = []

    def __call__(self, info) -> None:
        self.rows.append((info.global_step, dict(info.metrics)))

    def total(self, tag: str) -> float:
        return float(sum(values[tag] for _, values in self.rows if tag in values))

    def first(self, prefix: str) -> dict:
        for _, values in self.rows:
            found = {k: v for k, v in values.items() if k.startswith(prefix)}
            if found:
                return found
        return {}

    def evaluations(self) -> list[tuple[int, float]]:
        """(global step, mean return) of each periodic evaluation (the final one is not passed to callbacks)."""
        return [(step, values["eval/mean_return"]) for step, values in self.rows if "eval/mean_return" in values]


def train_ours(tc, total_timesteps: int, seed: int, *, eval_every: int = 0, eval_episodes: int = 0,
               stop_return: Optional[float] = None) -> dict:
    """One in-process training run; wall and CPU seconds include building the envs and the agent. Besides the
    ``TrainResult``: the ``Recorder`` of its scalars, ``evals`` — (global step, mean return) of every evaluation,
    the periodic ones and the final one — and ``eval_seconds``, the time all of them took."""
    from agents.train import Trainer
    from envs.vector import make_vec_env

    torch.set_num_threads(tc.torch_threads)
    recorder = Recorder()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    envs = make_vec_env(tc.env)
    try:
        trainer = Trainer(tc.agent, envs, total_timesteps, seed, make_eval_envs=lambda n: make_vec_env(tc.env, n),
                          eval_every=eval_every, eval_episodes=eval_episodes, stop_return=stop_return,
                          progress=False)
        result = trainer.run(callbacks=[recorder])
    finally:
        envs.close()
    final = [(result.global_step, result.eval.mean)] if result.eval is not None else []
    return {"result": result, "recorder": recorder, "evals": recorder.evaluations() + final,
            "eval_seconds": trainer.seconds["evaluation"], "wall_seconds": time.perf_counter() - wall0,
            "cpu_seconds": time.process_time() - cpu0}
