"""PPO for Gymnasium: the PPO loss functions, GAE, actor-critic policies and the training loop (solo or a
population of members trained together).

Nothing here knows about Hydra: ``experiments/`` builds these objects from composed configs, and ``PPO``
(``agents/api.py``) is the Python front door on the same trainer, validation and checkpoint format.

The names below are imported on first use (PEP 562): ``import agents.config`` does not import PyTorch, so a
process that only composes and checks configs (the population launcher's, while its training process imports the
trainer) starts without it.
"""

from __future__ import annotations

import importlib

_HOMES = {
    "agents.config": ("ConfigError", "NumericalError", "PPOConfig"),
    "agents.gae": ("compute_gae",),
    "agents.losses": ("approx_kl", "categorical_entropy", "categorical_kl", "categorical_log_prob", "clip_fraction",
                      "compute_entropy", "compute_ppo_loss", "compute_ppo_total_loss", "compute_value_loss",
                      "gaussian_entropy", "gaussian_kl", "gaussian_log_prob", "probability_ratio"),
    "agents.networks": ("MLPActorCritic", "PolicyPopulation", "TabularActorCritic", "build_policy",
                        "build_population"),
    "agents.ppo": ("PPOAgent", "adapt_kl_coef", "explained_variance"),
    "agents.train": ("Callback", "IterationInfo", "Member", "Trainer", "TrainResult"),
    "agents.api": ("PPO",),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = list(_HOME_OF)


def __getattr__(name: str):
    """``agents.<name>`` from its module, imported now (the front door ``PPO`` imports ``envs``, which imports
    ``agents``: no import cycle either)."""
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'agents' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
