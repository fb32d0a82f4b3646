"""Stable-Baselines3 PPO as a reference (the optional ``bench`` extra): its settings, a model built and driven
through rollout hooks, its policy as our ``Inference`` for the shared evaluator, and a script timing it as a fresh
process. ``stable_baselines3`` is imported only here, and only when a function needs it."""

from __future__ import annotations

import importlib.util
from typing import Any, Callable

import numpy as np
import torch

from experiments.benchmark.cleanrl import CLEANRL_VF_COEF

# CleanRL's CartPole settings in Stable-Baselines3's names (batch_size = 4 × 128 / 4 minibatches). SB3's value loss
# is plain MSE too, so CleanRL's vf_coef 0.5 on ½·MSE is 0.25 here as well.
SB3_CLEANRL = {"n_envs": 4, "n_steps": 128, "batch_size": 128, "n_epochs": 4, "learning_rate": ["lin", 2.5e-4],
               "clip_range": 0.2, "clip_range_vf": 0.2, "ent_coef": 0.01, "vf_coef": CLEANRL_VF_COEF,
               "max_grad_norm": 0.5, "gamma": 0.99, "gae_lambda": 0.95}
# rl-baselines3-zoo's tuned PPO hyperparameters for CartPole-v1 (hyperparams/ppo.yml; n_timesteps 1e5).
SB3_ZOO_CARTPOLE = {"n_envs": 8, "n_steps": 32, "batch_size": 256, "gae_lambda": 0.8, "gamma": 0.98,
                    "n_epochs": 20, "ent_coef": 0.0, "learning_rate": ["lin", 1e-3], "clip_range": ["lin", 0.2]}

# One run of PPO with settings like the above as a whole process: argv = env id, steps, torch threads, settings.
SB3_WALL_SCRIPT = """
import json, sys, torch
torch.set_num_threads(int(sys.argv[3]))
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
s = json.loads(sys.argv[4])
kw = {k: ((lambda v: (lambda p: p * v))(float(v[1])) if isinstance(v, list) else v)
      for k, v in s.items() if k != "n_envs"}
PPO("MlpPolicy", make_vec_env(sys.argv[1], n_envs=s["n_envs"], seed=1), seed=1, device="cpu", verbose=0,
    **kw).learn(int(sys.argv[2]))
"""


def sb3_available() -> bool:
    return importlib.util.find_spec("stable_baselines3") is not None


def sb3_version() -> str:
    import stable_baselines3

    return stable_baselines3.__version__


def _sb3_kwargs(settings: dict) -> dict:
    """rl-zoo style settings → PPO keyword arguments (``["lin", v]`` is a schedule decaying linearly to 0)."""
    def value(v):
        if isinstance(v, list) and v[0] == "lin":
            start = float(v[1])
            return lambda progress_remaining: progress_remaining * start
        return v

    return {k: value(v) for k, v in settings.items() if k != "n_envs"}


def sb3_model(env_id: str, settings: dict, seed: int):
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env

    env = sb3_make_vec_env(env_id, n_envs=settings["n_envs"], seed=seed)
    return PPO("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **_sb3_kwargs(settings))


def sb3_callback(on_rollout_start: Callable[[Any], bool], on_rollout_end: Callable[[Any], None]):
    """A BaseCallback subclass made on demand: stable_baselines3 is never imported at module level.
    ``on_rollout_start(model)`` returning True stops the training."""
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
    from agents.inference import Inference

    policy = model.policy

    def dist_params(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return policy.get_distribution(torch.as_tensor(obs)).distribution.logits.numpy()

    def value(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return policy.predict_values(torch.as_tensor(obs)).numpy()[:, 0]

    return Inference(dist_params, value, None)
