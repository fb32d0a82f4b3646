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

import copy
from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional

import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from agents.config import ConfigError
from agents.gae import compute_gae, compute_group_advantages
from agents.networks import ActorCritic, PolicySnapshot, numpy_supported
from agents.normalization import ObsNormalizer, RewardScaler
from agents.spaces import SpaceSpec, check_autoreset, vector_space_spec

_LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)


class Inference(NamedTuple):
    """NumPy-facing policy functions used while acting: distribution parameters and values of observations."""

    dist_params: Callable[[np.ndarray], np.ndarray]
    value: Callable[[np.ndarray], np.ndarray]
    log_std: Optional[np.ndarray]


def make_inference(policy: ActorCritic, backend: str = "numpy",
                   obs_norm: Optional[ObsNormalizer] = None) -> Inference:
    """Freeze ``policy`` for acting: a NumPy weight snapshot (fast path) or the module under inference mode.

    With ``obs_norm`` the functions take raw observations and normalise them with a frozen copy of its statistics
    (evaluation, video); without it they take what the policy takes (the collector normalises itself).
    """
    if obs_norm is not None:
        frozen = copy.deepcopy(obs_norm)
        inner = make_inference(policy, backend)
        return Inference(lambda obs: inner.dist_params(frozen.apply(obs)),
                         lambda obs: inner.value(frozen.apply(obs)), inner.log_std)
    log_std = None if policy.log_std is None else policy.log_std.detach().numpy().copy()
    if backend == "numpy" and all(numpy_supported(getattr(policy, name, "tanh"))
                                  for name in ("activation", "critic_activation")):
        snap: PolicySnapshot = policy.snapshot()
        return Inference(snap.dist_params, snap.value, log_std)

    def dist_params(obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return policy.dist_params(torch.from_numpy(obs)).numpy()

    def value(obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return policy.value(torch.from_numpy(obs)).numpy()

    return Inference(dist_params, value, log_std)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def select_actions(params: np.ndarray, log_std: Optional[np.ndarray], rng: np.random.Generator,
                   deterministic: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Sample (or, deterministic, take the mode of) actions; returns (actions, log π(actions))."""
    if log_std is None:
        logp_all = _log_softmax(params)
        if deterministic:
            actions = logp_all.argmax(axis=-1)
        else:  # Gumbel-max: argmax(log p + G) is a sample of the categorical distribution. A float32 uniform is
            # exactly 0 once in 2**24 draws (a few times per long run): the smallest positive float stands in
            # for it, so G stays finite and no log(0) warning is printed.
            u = np.maximum(rng.random(params.shape, dtype=np.float32), np.finfo(np.float32).tiny)
            actions = (logp_all - np.log(-np.log(u))).argmax(axis=-1)
        return actions, np.take_along_axis(logp_all, actions[:, None], axis=-1)[:, 0]
    if deterministic:
        actions = params.astype(np.float32, copy=True)
    else:
        actions = (params + np.exp(log_std) * rng.standard_normal(params.shape, dtype=np.float32)).astype(np.float32)
    z = (actions - params) * np.exp(-log_std)
    logp = (-0.5 * z * z - log_std - _LOG_SQRT_2PI).sum(axis=-1)
    return actions, logp.astype(np.float32)


class Batch(NamedTuple):
    """Flattened training samples (valid steps only) as torch tensors; indexing gives a minibatch."""

    obs: torch.Tensor
    actions: torch.Tensor
    logprobs: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor

    def __getitem__(self, idx):  # type: ignore[override]
        if isinstance(idx, int):
            return tuple.__getitem__(self, idx)
        return Batch(*(t[idx] for t in self))

    def __len__(self) -> int:  # type: ignore[override]
        return self.obs.shape[0]


@dataclass
class EpisodeStats:
    returns: list
    lengths: list


class RolloutBuffer:
    """``[T, N]`` storage allocated once; ``batch`` returns new flattened tensors, the storage never reshapes."""

    def __init__(self, num_steps: int, num_envs: int, obs_dim: int, action_shape: tuple, discrete: bool):
        T, N = num_steps, num_envs
        self.num_steps, self.num_envs = T, N
        self.obs = np.zeros((T, N, obs_dim), dtype=np.float32)
        self.actions = np.zeros((T, N, *action_shape), dtype=np.int64 if discrete else np.float32)
        self.logprobs = np.zeros((T, N), dtype=np.float32)
        self.values = np.zeros((T + 1, N), dtype=np.float32)
        """values[t] = V(obs[t]); values[T] = V(observation after the last step)."""
        self.rewards = np.zeros((T, N), dtype=np.float32)
        self.terminated = np.zeros((T, N), dtype=bool)
        self.dones = np.zeros((T, N), dtype=bool)
        self.valid = np.ones((T, N), dtype=bool)
        self.truncated_next_values: list[tuple[int, np.ndarray, np.ndarray]] = []
        """SAME_STEP only: (t, env indices, V(final obs)) for truncated steps."""

    def next_values(self) -> np.ndarray:
        next_values = self.values[1:].copy()
        for t, idx, v in self.truncated_next_values:
            next_values[t, idx] = v
        return next_values

    def advantages(self, gamma: float, gae_lambda: float) -> tuple[np.ndarray, np.ndarray]:
        return compute_gae(self.rewards, self.values[:-1], self.next_values(), self.terminated, self.dones,
                           gamma, gae_lambda)

    def group_advantages(self, scale: bool) -> np.ndarray:
        """GRPO's advantages (``compute_group_advantages``), one group per rollout step: the pulls of step t across
        the envs. Only sound where every sample of a step comes from the same state and is a whole episode."""
        if not self.valid.all():
            raise ConfigError("agent.advantage='group' needs every step of a rollout to be a sample: use "
                              "env.autoreset_mode=same_step (or agent.advantage=gae)")
        for t in range(self.num_steps):
            obs = self.obs[t]
            if not (self.dones[t].all() and (obs == obs[:1]).all()):
                raise ConfigError("agent.advantage='group' is invalid for this env: a group must be one-step "
                                  "episodes from one state (e.g. the bandit), but step "
                                  f"{t} of the rollout has different observations or an unfinished episode; "
                                  "use agent.advantage=gae")
        return compute_group_advantages(self.rewards, scale).astype(np.float32)

    def batch(self, gamma: float, gae_lambda: float, advantage: str = "gae", group_scale: bool = True) -> Batch:
        """Flattened valid samples. ``advantage='group'``: GRPO's group-relative advantages replace GAE's (the
        critic still regresses on the GAE returns, but the advantages do not use it)."""
        advantages, returns = self.advantages(gamma, gae_lambda)
        if advantage == "group":
            advantages = self.group_advantages(group_scale)
        keep = np.flatnonzero(self.valid.reshape(-1))
        T, N = self.num_steps, self.num_envs

        def flat(x: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(x.reshape(T * N, *x.shape[2:])[keep])

        return Batch(flat(self.obs), flat(self.actions), flat(self.logprobs), flat(self.values[:-1]),
                     flat(advantages), flat(returns))


class Collector:
    """Steps a vector env with a frozen policy and fills a ``RolloutBuffer``; keeps the state between rollouts
    (current observations, which envs are on a NEXT_STEP reset step) so that it can be saved and restored."""

    def __init__(self, envs, buffer: RolloutBuffer, rng: np.random.Generator, seed,
                 spec: Optional[SpaceSpec] = None, obs_norm: Optional[ObsNormalizer] = None,
                 reward_scaler: Optional[RewardScaler] = None):
        self.envs = envs
        self.buffer = buffer
        self.rng = rng
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
        """What the policy sees: the env's observations, normalised (learning the statistics) if configured.
        ``self.obs`` holds them in this form, so the bootstrap value and the next step see the same input."""
        obs = np.asarray(obs, dtype=np.float32)
        return obs if self.obs_norm is None else self.obs_norm(obs, update=True)

    def collect(self, inference: Inference) -> EpisodeStats:
        buf, envs, rng = self.buffer, self.envs, self.rng
        buf.truncated_next_values.clear()
        stats = EpisodeStats([], [])
        obs, prev_done = self.obs, self.prev_done
        for t in range(buf.num_steps):
            params = inference.dist_params(obs)
            buf.values[t] = inference.value(obs)
            actions, logp = select_actions(params, inference.log_std, rng)
            buf.obs[t] = obs
            buf.actions[t] = actions
            buf.logprobs[t] = logp
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
                final = np.stack([info["final_obs"][i] for i in idx]).astype(np.float32)
                if self.obs_norm is not None:
                    final = self.obs_norm.apply(final)
                buf.truncated_next_values.append((t, idx, inference.value(final)))
            if "_episode" in info:
                mask = info["_episode"]
                stats.returns.extend(info["episode"]["r"][mask].tolist())
                stats.lengths.extend(info["episode"]["l"][mask].tolist())
            obs = self._policy_obs(next_obs)
        buf.values[-1] = inference.value(obs)
        self.obs, self.prev_done = obs, prev_done
        return stats
