"""PPO for Gymnasium: the PPO loss functions, GAE, actor-critic policies and the training loop (solo or a
population of members trained together).

Nothing here knows about Hydra: ``experiments/`` builds these objects from composed configs, and ``PPO``
(``agents/api.py``) is the Python front door on the same trainer, validation and checkpoint format.
"""

from agents.config import ConfigError, PPOConfig
from agents.gae import compute_gae
from agents.losses import (
    approx_kl,
    categorical_entropy,
    categorical_kl,
    categorical_log_prob,
    clip_fraction,
    compute_entropy,
    compute_ppo_loss,
    compute_ppo_total_loss,
    compute_value_loss,
    gaussian_entropy,
    gaussian_kl,
    gaussian_log_prob,
    probability_ratio,
)
from agents.networks import MLPActorCritic, PolicyPopulation, TabularActorCritic, build_policy, build_population
from agents.ppo import PPOAgent, adapt_kl_coef, explained_variance
from agents.train import Callback, IterationInfo, Member, NumericalError, Trainer, TrainResult

__all__ = [
    "ConfigError", "PPOConfig", "compute_gae", "approx_kl", "categorical_entropy", "categorical_kl",
    "categorical_log_prob", "clip_fraction", "compute_entropy", "compute_ppo_loss", "compute_ppo_total_loss",
    "compute_value_loss", "gaussian_entropy", "gaussian_kl", "gaussian_log_prob", "probability_ratio",
    "MLPActorCritic", "PolicyPopulation", "TabularActorCritic", "build_policy", "build_population", "PPOAgent",
    "adapt_kl_coef", "explained_variance", "Member", "NumericalError", "Trainer", "TrainResult", "Callback",
    "IterationInfo", "PPO",
]


def __getattr__(name: str):
    """``agents.PPO`` on first use: the front door imports ``envs``, which imports ``agents`` (no import cycle)."""
    if name == "PPO":
        from agents.api import PPO

        return PPO
    raise AttributeError(f"module 'agents' has no attribute {name!r}")
