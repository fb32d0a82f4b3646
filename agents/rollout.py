"""Rollout collection from a Gymnasium 1.x vector env into preallocated storage.

Both autoreset modes are handled (``envs.metadata["autoreset_mode"]``):

- NEXT_STEP (Gymnasium's default, the only mode of the native CartPole vector env): the step *after* a done
  returns the reset observation with reward 0 and ignores the action. That step is stored but marked invalid
  and never trained on; the done step's next observation is the final one, so a truncated step bootstraps
  from V(final obs) through ``values[t + 1]``.
- SAME_STEP: the env resets inside the done step and returns the first observation of the next episode; the
  final observation is in ``info["final_obs"]``, so a truncated step's ``next_values`` is patched with
  V(final obs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from agents.config import ConfigError
from agents.gae import compute_gae, compute_group_advantages
from agents.inference import Inference, draw_noise, select_actions
from agents.normalization import ObsNormalizer, RewardScaler
from agents.spaces import SpaceSpec, check_autoreset, vector_space_spec


class Batch(NamedTuple):
    """Training samples of every member, ``[P, n, …]`` torch tensors: member k's valid samples first, in rollout
    order. Where members have different numbers of valid samples (NEXT_STEP reset steps), the rows are padded to
    the longest and ``counts`` says how many of each row are samples; None when every row is full."""

    obs: torch.Tensor
    actions: torch.Tensor
    logprobs: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    counts: Optional[np.ndarray] = None

    @property
    def members(self) -> int:
        return self.obs.shape[0]

    def sizes(self) -> np.ndarray:
        """Valid samples of each member."""
        return np.full(self.members, self.obs.shape[1]) if self.counts is None else self.counts

    def to(self, device: torch.device) -> "Batch":
        """The samples on ``device`` (itself where they already are)."""
        if self.obs.device == device:
            return self
        return Batch(*(t.to(device, non_blocking=True) for t in self[:6]), counts=self.counts)

    def take(self, idx: torch.Tensor) -> "Batch":
        """The samples ``idx[k]`` of each member k (``idx`` is ``[P, m]``): a minibatch."""
        P, m = idx.shape
        n = self.obs.shape[1]
        flat = (idx + torch.arange(0, P * n, n, device=idx.device).unsqueeze(1)).reshape(-1) if P > 1 \
            else idx.reshape(-1)
        return Batch(*(t.reshape(P * n, *t.shape[2:]).index_select(0, flat).view(P, m, *t.shape[2:])
                       for t in self[:6]))


@dataclass
class EpisodeStats:
    """Returns and lengths of the episodes that ended during a rollout, per member."""

    returns: list = field(default_factory=list)
    lengths: list = field(default_factory=list)

    @classmethod
    def empty(cls, members: int) -> "EpisodeStats":
        return cls([[] for _ in range(members)], [[] for _ in range(members)])


class RolloutBuffer:
    """``[T, P·N]`` storage allocated once (member k's N sub-envs are columns k·N … k·N+N−1); ``batch`` returns
    new per-member tensors, the storage never reshapes."""

    def __init__(self, num_steps: int, num_envs: int, obs_dim: int, action_shape: tuple, discrete: bool,
                 members: int = 1):
        T, E = num_steps, num_envs * members
        self.num_steps, self.num_envs, self.members = T, num_envs, members
        self.obs = np.zeros((T, E, obs_dim), dtype=np.float32)
        self.actions = np.zeros((T, E, *action_shape), dtype=np.int64 if discrete else np.float32)
        self.logprobs = np.zeros((T, E), dtype=np.float32)
        self.values = np.zeros((T + 1, E), dtype=np.float32)
        """values[t] = V(obs[t]); values[T] = V(observation after the last step)."""
        self.rewards = np.zeros((T, E), dtype=np.float32)
        self.terminated = np.zeros((T, E), dtype=bool)
        self.dones = np.zeros((T, E), dtype=bool)
        self.valid = np.ones((T, E), dtype=bool)
        self.truncated_next_values: list[tuple[int, np.ndarray, np.ndarray]] = []
        """SAME_STEP only: (t, env indices, V(final obs)) for truncated steps."""

    def per_env(self, values) -> np.ndarray:
        """A per-member value (scalar or ``[P]``) as a float32 ``[P·N]`` row, to broadcast over the sub-envs."""
        per_member = np.broadcast_to(np.asarray(values, dtype=np.float32), (self.members,))
        return np.repeat(per_member, self.num_envs)

    def next_values(self) -> np.ndarray:
        next_values = self.values[1:].copy()
        for t, idx, v in self.truncated_next_values:
            next_values[t, idx] = v
        return next_values

    def advantages(self, gamma, gae_lambda) -> tuple[np.ndarray, np.ndarray]:
        """GAE over the whole buffer; ``gamma`` and ``gae_lambda`` are scalars or one per member."""
        return compute_gae(self.rewards, self.values[:-1], self.next_values(), self.terminated, self.dones,
                           self.per_env(gamma), self.per_env(gae_lambda))

    def group_advantages(self, scale: bool) -> np.ndarray:
        """GRPO's advantages (``compute_group_advantages``), one group per rollout step and member: the pulls of
        step t across the member's envs. Only sound where every sample of a step comes from the same state and is
        a whole episode."""
        if not self.valid.all():
            raise ConfigError("agent.advantage='group' needs every step of a rollout to be a sample: use "
                              "env.autoreset_mode=same_step (or agent.advantage=gae)")
        P, N = self.members, self.num_envs
        for t in range(self.num_steps):
            obs = self.obs[t].reshape(P, N, -1)
            if not (self.dones[t].all() and (obs == obs[:, :1]).all()):
                raise ConfigError("agent.advantage='group' is invalid for this env: a group must be one-step "
                                  "episodes from one state (e.g. the bandit), but step "
                                  f"{t} of the rollout has different observations or an unfinished episode; "
                                  "use agent.advantage=gae")
        rewards = self.rewards.reshape(self.num_steps, P, N)
        return compute_group_advantages(rewards, scale).astype(np.float32).reshape(self.num_steps, P * N)

    def _per_member(self, x: np.ndarray) -> np.ndarray:
        """``[T, P·N, …] → [P, T·N, …]``: each member's samples in rollout order (step-major, as a solo run's)."""
        T, P, N = self.num_steps, self.members, self.num_envs
        x = x.reshape(T, P, N, *x.shape[2:]).swapaxes(0, 1)
        return x.reshape(P, T * N, *x.shape[3:])

    def batch(self, gamma, gae_lambda, advantage: str = "gae", group_scale: bool = True) -> Batch:
        """Every member's valid samples. ``advantage='group'``: GRPO's group-relative advantages replace GAE's
        (the critic still regresses on the GAE returns, but the advantages do not use it)."""
        advantages, returns = self.advantages(gamma, gae_lambda)
        if advantage == "group":
            advantages = self.group_advantages(group_scale)
        arrays = (self.obs, self.actions, self.logprobs, self.values[:-1], advantages, returns)
        if self.valid.all():
            return Batch(*(torch.from_numpy(self._per_member(x)) for x in arrays))
        valid = self._per_member(self.valid)
        counts = valid.sum(axis=1)
        width = int(counts.max())
        keep = np.zeros((self.members, width), dtype=np.int64)  # padding points at sample 0: its weight is 0
        for k in range(self.members):
            keep[k, :counts[k]] = np.flatnonzero(valid[k])
        rows = np.arange(self.members)[:, None]
        tensors = (torch.from_numpy(np.ascontiguousarray(self._per_member(x)[rows, keep])) for x in arrays)
        return Batch(*tensors, counts=None if (counts == width).all() else counts)


class Collector:
    """Steps a vector env with a frozen policy population and fills a ``RolloutBuffer``; keeps the state between
    rollouts (current observations, which envs are on a NEXT_STEP reset step) so that it can be saved and restored.

    The vector env has ``members × num_envs`` sub-envs, member k's being the k-th block of ``num_envs``. Each member
    samples its actions from its own generator (``rngs[k]``) and normalises with its own statistics."""

    def __init__(self, envs, buffer: RolloutBuffer, rngs: Union[np.random.Generator, Sequence[np.random.Generator]],
                 seed,
                 spec: Optional[SpaceSpec] = None, obs_norm: Optional[ObsNormalizer] = None,
                 reward_scaler: Optional[RewardScaler] = None):
        self.envs = envs
        self.buffer = buffer
        self.rngs = [rngs] if isinstance(rngs, np.random.Generator) else list(rngs)
        self.members, self.num_envs = buffer.members, buffer.num_envs
        self.spec = spec if spec is not None else vector_space_spec(envs)
        self.obs_norm, self.reward_scaler = obs_norm, reward_scaler
        self.mode = check_autoreset(envs)
        self.next_step = self.mode == AutoresetMode.NEXT_STEP
        self.reset(seed)

    def reset(self, seed) -> None:
        """Start fresh episodes in every sub-env (``seed``: an int, one per sub-env, or None)."""
        obs, _ = self.envs.reset(seed=seed)
        self.obs = self._policy_obs(obs)
        self.prev_done = np.zeros(self.envs.num_envs, dtype=bool)

    def _policy_obs(self, obs) -> np.ndarray:
        """What the policy sees, ``[P, N, obs_dim]``: the env's observations, normalised (learning the statistics)
        if configured. ``self.obs`` holds them in this form, so the bootstrap value and the next step see the same
        input."""
        obs = np.asarray(obs, dtype=np.float32).reshape(self.members, self.num_envs, -1)
        return obs if self.obs_norm is None else self.obs_norm(obs, update=True)

    def _final_values(self, inference: Inference, next_obs, info: dict, idx: np.ndarray) -> np.ndarray:
        """V(final observation) of the sub-envs ``idx`` that were truncated (SAME_STEP keeps it in ``info``)."""
        final = np.asarray(next_obs, dtype=np.float32).copy()
        final[idx] = np.stack([info["final_obs"][i] for i in idx])
        final = final.reshape(self.members, self.num_envs, -1)
        if self.obs_norm is not None:
            final = self.obs_norm.apply(final)
        return inference.value(final).reshape(-1)[idx]

    def collect(self, inference: Inference) -> EpisodeStats:
        buf, envs, rngs = self.buffer, self.envs, self.rngs
        E = self.members * self.num_envs
        buf.truncated_next_values.clear()
        stats = EpisodeStats.empty(self.members)
        obs, prev_done = self.obs, self.prev_done
        noise = None
        for t in range(buf.num_steps):
            params = inference.dist_params(obs)
            buf.values[t] = inference.value(obs).reshape(E)
            if noise is None:  # the rollout's noise in one draw per member (the same numbers as step by step)
                noise = draw_noise(rngs, buf.num_steps, params.shape, inference.log_std is None)
            actions, logp = select_actions(params, inference.log_std, rngs, noise=noise[t])
            actions = actions.reshape(E, *actions.shape[2:])
            buf.obs[t] = obs.reshape(E, -1)
            buf.actions[t] = actions
            buf.logprobs[t] = logp.reshape(E)
            next_obs, reward, terminated, truncated, info = envs.step(self.spec.to_env(actions))
            done = terminated | truncated
            valid = ~prev_done if self.next_step else None
            buf.rewards[t] = reward if self.reward_scaler is None else self.reward_scaler(reward, terminated, done,
                                                                                         valid)
            buf.terminated[t] = terminated
            buf.dones[t] = done
            if self.next_step:
                buf.valid[t] = valid
                prev_done = done
            elif truncated.any():
                idx = np.flatnonzero(truncated)
                buf.truncated_next_values.append((t, idx, self._final_values(inference, next_obs, info, idx)))
            if "_episode" in info:
                for i in np.flatnonzero(info["_episode"]):
                    k = i // self.num_envs
                    stats.returns[k].append(float(info["episode"]["r"][i]))
                    stats.lengths[k].append(int(info["episode"]["l"][i]))
            obs = self._policy_obs(next_obs)
        buf.values[-1] = inference.value(obs).reshape(E)
        self.obs, self.prev_done = obs, prev_done
        return stats
