"""Generalised advantage estimation as a free function of ``[T, N]`` arrays."""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

Array = TypeVar("Array", np.ndarray, torch.Tensor)


def _as_float(x, like):
    if isinstance(like, torch.Tensor):
        return torch.as_tensor(x).to(like.dtype)
    return np.asarray(x, dtype=like.dtype)


def compute_gae(
    rewards: Array,
    values: Array,
    next_values: Array,
    terminated: Array,
    dones: Array,
    gamma: float,
    gae_lambda: float,
) -> tuple[Array, Array]:
    """GAE(γ, λ) advantages and λ-returns for a rollout of ``T`` steps in ``N`` envs.

    All inputs are ``[T, N]`` (torch tensors or numpy arrays; the outputs match ``values``):

    - ``rewards[t]``: reward of step t;
    - ``values[t]``: V(s_t), the critic's value of the observation the action was taken in;
    - ``next_values[t]``: V of the state *after* step t. For a truncated step (time limit) this must be
      V(final observation) — the episode did not end, it was cut, so its tail is bootstrapped from the critic;
    - ``terminated[t]``: the episode reached a terminal state at step t, whose value is zero by definition,
      so the bootstrap term γ·V(s_{t+1}) is dropped;
    - ``dones[t]``: terminated *or* truncated — the λ-trace is cut here, because step t+1 belongs to another
      episode.

    δ_t = r_t + γ·(1 − terminated_t)·next_values_t − values_t and
    A_t = δ_t + γλ·(1 − dones_t)·A_{t+1}; returns R_t = A_t + values_t (the critic's regression target).
    λ = 1 gives Monte-Carlo returns minus the baseline, λ = 0 the one-step TD error.
    """
    not_terminated = 1.0 - _as_float(terminated, values)
    not_done = 1.0 - _as_float(dones, values)
    deltas = rewards + gamma * next_values * not_terminated - values
    decay = gamma * gae_lambda * not_done
    advantages = deltas.clone() if isinstance(deltas, torch.Tensor) else deltas.copy()
    for t in range(advantages.shape[0] - 2, -1, -1):
        advantages[t] += decay[t] * advantages[t + 1]
    return advantages, advantages + values


def compute_group_advantages(rewards: np.ndarray, scale: bool = True, eps: float = 1e-8) -> np.ndarray:
    """Group-relative advantages of GRPO (Shao et al., 2024, "DeepSeekMath"), critic-free.

    ``rewards`` is ``[G, N]``: row g holds the N samples of group g, all drawn from the same state (for the bandit,
    the pulls of one rollout step across its envs), and each sample's reward is its whole (one-step) return.
    ``A = (r − mean_g r) / (std_g r + eps)`` with the sample std (n − 1, as GRPO implementations use), or with
    ``scale=False`` only ``r − mean_g r`` (Liu et al., 2025, "Dr. GRPO": dividing by the std over-weights groups
    whose rewards barely differ). A group of equal rewards gets zero advantages.
    """
    rewards = np.asarray(rewards)
    centered = rewards - rewards.mean(axis=-1, keepdims=True)
    if not scale:
        return centered
    n = rewards.shape[-1]
    std = rewards.std(axis=-1, ddof=1, keepdims=True) if n > 1 else np.zeros_like(centered[..., :1])
    return centered / (std + eps)
