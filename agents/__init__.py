"""PPO for Gymnasium: the seeds' loss functions, GAE, actor-critic policies and the training loop.

Nothing here knows about Hydra: ``experiments/`` builds these objects from configs.
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
from agents.networks import MLPActorCritic, TabularActorCritic, build_policy
from agents.ppo import PPOAgent, adapt_kl_coef, explained_variance
from agents.train import NumericalError, Trainer, TrainResult

__all__ = [
    "ConfigError", "PPOConfig", "compute_gae", "approx_kl", "categorical_entropy", "categorical_kl",
    "categorical_log_prob", "clip_fraction", "compute_entropy", "compute_ppo_loss", "compute_ppo_total_loss",
    "compute_value_loss", "gaussian_entropy", "gaussian_kl", "gaussian_log_prob", "probability_ratio",
    "MLPActorCritic", "TabularActorCritic", "build_policy", "PPOAgent", "adapt_kl_coef", "explained_variance",
    "NumericalError", "Trainer", "TrainResult",
]
