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

from typing import Optional, Sequence

import numpy as np
import torch
from gymnasium.wrappers.utils import RunningMeanStd

EPS = 1e-8


def _rms_state(rms: RunningMeanStd, k: int) -> dict:
    """Member k's statistics (row k of a population's), in the layout of a solo run's checkpoint."""
    members = rms.mean.shape[0]
    return {"mean": torch.from_numpy(np.array(np.asarray(rms.mean, dtype=np.float64)[k])),
            "var": torch.from_numpy(np.array(np.asarray(rms.var, dtype=np.float64)[k])),
            "count": float(np.reshape(rms.count, members)[k])}


def _load_rms(rms: RunningMeanStd, k: int, state: dict) -> None:
    rms.mean[k] = state["mean"].numpy().astype(np.float64).reshape(rms.mean.shape[1:])
    rms.var[k] = state["var"].numpy().astype(np.float64).reshape(rms.var.shape[1:])
    np.reshape(rms.count, rms.mean.shape[0])[k] = float(state["count"])  # a view: counts are one per member


class ObsNormalizer:
    """Running per-dimension observation statistics of each member of a population (``members`` of them; a solo
    run has one). ``__call__`` normalises ``[P, B, obs_dim]`` observations (and, ``update``, learns first)."""

    def __init__(self, obs_dim: int, clip: float = 10.0, members: int = 1):
        self.rms = RunningMeanStd(shape=(members, obs_dim))
        self.rms.count = np.full((members, 1), float(self.rms.count))  # per member, broadcast over dimensions
        self.clip = float(clip)

    @property
    def members(self) -> int:
        return self.rms.mean.shape[0]

    def __call__(self, obs: np.ndarray, update: bool = False) -> np.ndarray:
        if update:
            x = np.asarray(obs, dtype=np.float64)
            self.rms.update_from_moments(x.mean(axis=1), x.var(axis=1), x.shape[1])
        return self.apply(obs)

    def apply(self, obs: np.ndarray) -> np.ndarray:
        """Normalise with the current (frozen) statistics: ``[P, B, obs_dim]``, or ``[B, obs_dim]`` for a
        normaliser of one member."""
        mean, var = self.rms.mean, self.rms.var
        if np.ndim(obs) == 3:
            mean, var = mean[:, None, :], var[:, None, :]
        out = (obs - mean) / np.sqrt(var + EPS)
        return np.clip(out, -self.clip, self.clip).astype(np.float32)

    def member_state(self, k: int) -> dict:
        """Member k's statistics as a solo run's checkpoint stores them."""
        return {**_rms_state(self.rms, k), "clip": self.clip}

    def load_member_state(self, k: int, state: dict) -> None:
        _load_rms(self.rms, k, state)
        self.clip = float(state["clip"])

    def load_member_statistics(self, k: int, state: dict) -> None:
        """Only the running mean/variance of ``state`` into member k (fine-tuning keeps its own ``clip``)."""
        _load_rms(self.rms, k, state)

    def select(self, members: Optional[Sequence[int]] = None) -> "ObsNormalizer":
        """A frozen copy of the statistics of ``members`` (all if None), in that order."""
        rows = list(range(self.members)) if members is None else list(members)
        out = ObsNormalizer(self.rms.mean.shape[1], self.clip, members=len(rows))
        for i, k in enumerate(rows):
            out.load_member_state(i, self.member_state(k))
        return out

    def member(self, k: int) -> "ObsNormalizer":
        """A normaliser of member k alone (a copy)."""
        return self.select([k])

    @classmethod
    def from_agent_state(cls, agent_state: dict) -> Optional["ObsNormalizer"]:
        """The statistics saved in a checkpoint's ``agent`` state; None if the agent did not normalise."""
        state = agent_state.get("obs_norm")
        if state is None:
            return None
        norm = cls(int(state["mean"].numel()))
        norm.load_member_state(0, state)
        return norm


class RewardScaler:
    """Scales each step's rewards by the running std of the discounted return: the return of every sub-env, the
    statistics of every member (a member's ``num_envs`` sub-envs are a contiguous block of the vector env)."""

    def __init__(self, num_envs: int, gamma, clip: float = 10.0, members: int = 1):
        self.rms = RunningMeanStd(shape=(members,))
        self.rms.count = np.full(members, float(self.rms.count))
        self.returns = np.zeros((members, num_envs), dtype=np.float64)
        self.gamma = np.broadcast_to(np.asarray(gamma, dtype=np.float64), (members,)).copy()
        self.clip = float(clip)

    def __call__(self, rewards: np.ndarray, terminated: np.ndarray, done: np.ndarray,
                 valid: Optional[np.ndarray] = None) -> np.ndarray:
        """Update the return statistics with this step (``valid`` masks NEXT_STEP reset steps, which are not
        transitions) and return the scaled rewards. A sub-env's running return restarts after ``done``. Arrays
        are flat over the vector env's sub-envs, as it returns them."""
        shape = self.returns.shape
        rewards, done = np.reshape(rewards, shape), np.reshape(done, shape)
        keep = np.ones(shape, dtype=bool) if valid is None else np.reshape(valid, shape)
        self.returns = np.where(keep, self.returns * self.gamma[:, None] + rewards, self.returns)
        count = keep.sum(axis=1)
        if count.any():
            n = np.maximum(count, 1)
            mean = np.where(keep, self.returns, 0.0).sum(axis=1) / n
            var = np.where(keep, (self.returns - mean[:, None]) ** 2, 0.0).sum(axis=1) / n
            self.rms.update_from_moments(np.where(count > 0, mean, self.rms.mean), var, count)
        self.returns = np.where(keep & done, 0.0, self.returns)
        scaled = rewards / np.sqrt(self.rms.var[:, None] + EPS)
        return np.clip(scaled, -self.clip, self.clip).astype(np.float32).reshape(-1)

    def member_state(self, k: int) -> dict:
        return {**_rms_state(self.rms, k), "returns": torch.from_numpy(self.returns[k].copy()),
                "gamma": float(self.gamma[k]), "clip": self.clip}

    def load_member_state(self, k: int, state: dict) -> None:
        _load_rms(self.rms, k, state)
        self.returns[k] = state["returns"].numpy().astype(np.float64)
        self.gamma[k], self.clip = float(state["gamma"]), float(state["clip"])
