"""Observation and reward normalisation owned by the agent, not by an env wrapper.

CleanRL's MuJoCo script and SB3's ``VecNormalize`` normalise in wrappers around the env; the statistics then live
outside the agent, and an evaluation or a reloaded policy that forgets them sees other inputs than the policy was
trained on. Here the statistics are part of the agent's state: every checkpoint carries them, a resumed run
restores them exactly, and evaluation applies them frozen.

Both use Gymnasium's ``RunningMeanStd`` (the parallel mean/variance update of Chan et al.), as its
``NormalizeObservation`` and ``NormalizeReward`` wrappers do:

- observations: ``clip((obs − mean) / sqrt(var + 1e-8), ±clip_obs)``, statistics per dimension, updated with each
  step's observations while collecting (never during evaluation);
- rewards: divided by the running std of the discounted return ``G ← γ·G + r`` of each sub-env (restarted with
  every episode; not by its mean: shifting rewards would change the task), then clipped to ±``clip_reward``.
  Logged episodic returns stay the env's raw returns.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from gymnasium.wrappers.utils import RunningMeanStd

EPS = 1e-8


def _rms_state(rms: RunningMeanStd) -> dict:
    return {"mean": torch.from_numpy(np.asarray(rms.mean, dtype=np.float64).copy()),
            "var": torch.from_numpy(np.asarray(rms.var, dtype=np.float64).copy()),
            "count": float(rms.count)}


def _load_rms(rms: RunningMeanStd, state: dict) -> None:
    rms.mean = state["mean"].numpy().astype(np.float64).reshape(np.shape(rms.mean))
    rms.var = state["var"].numpy().astype(np.float64).reshape(np.shape(rms.var))
    rms.count = float(state["count"])


class ObsNormalizer:
    """Running per-dimension observation statistics; ``__call__`` normalises (and, ``update``, learns first)."""

    def __init__(self, obs_dim: int, clip: float = 10.0):
        self.rms = RunningMeanStd(shape=(obs_dim,))
        self.clip = float(clip)

    def __call__(self, obs: np.ndarray, update: bool = False) -> np.ndarray:
        if update:
            self.rms.update(np.asarray(obs, dtype=np.float64))
        return self.apply(obs)

    def apply(self, obs: np.ndarray) -> np.ndarray:
        """Normalise with the current (frozen) statistics."""
        out = (obs - self.rms.mean) / np.sqrt(self.rms.var + EPS)
        return np.clip(out, -self.clip, self.clip).astype(np.float32)

    def state_dict(self) -> dict:
        return {**_rms_state(self.rms), "clip": self.clip}

    def load_state_dict(self, state: dict) -> None:
        _load_rms(self.rms, state)
        self.clip = float(state["clip"])

    def load_statistics(self, state: dict) -> None:
        """Only the running mean/variance of ``state`` (fine-tuning keeps its own ``clip``)."""
        _load_rms(self.rms, state)

    @classmethod
    def from_agent_state(cls, agent_state: dict) -> Optional["ObsNormalizer"]:
        """The statistics saved in a checkpoint's ``agent`` state; None if the agent did not normalise."""
        state = agent_state.get("obs_norm")
        if state is None:
            return None
        norm = cls(int(state["mean"].numel()))
        norm.load_state_dict(state)
        return norm


class RewardScaler:
    """Scales each step's rewards by the running std of the discounted return of every sub-env."""

    def __init__(self, num_envs: int, gamma: float, clip: float = 10.0):
        self.rms = RunningMeanStd(shape=())
        self.returns = np.zeros(num_envs, dtype=np.float64)
        self.gamma, self.clip = float(gamma), float(clip)

    def __call__(self, rewards: np.ndarray, terminated: np.ndarray, done: np.ndarray,
                 valid: Optional[np.ndarray] = None) -> np.ndarray:
        """Update the return statistics with this step (``valid`` masks NEXT_STEP reset steps, which are not
        transitions) and return the scaled rewards. A sub-env's running return restarts after ``done``."""
        keep = np.ones_like(done, dtype=bool) if valid is None else valid
        self.returns = np.where(keep, self.returns * self.gamma + rewards, self.returns)
        if keep.any():
            self.rms.update(self.returns[keep])
        self.returns = np.where(keep & done, 0.0, self.returns)
        scaled = rewards / np.sqrt(self.rms.var + EPS)
        return np.clip(scaled, -self.clip, self.clip).astype(np.float32)

    def state_dict(self) -> dict:
        return {**_rms_state(self.rms), "returns": torch.from_numpy(self.returns.copy()), "gamma": self.gamma,
                "clip": self.clip}

    def load_state_dict(self, state: dict) -> None:
        _load_rms(self.rms, state)
        self.returns = state["returns"].numpy().astype(np.float64).copy()
        self.gamma, self.clip = float(state["gamma"]), float(state["clip"])
