"""Actor-critic policies: MLP (discrete or Gaussian actions) and the tabular softmax policy of the bandit.

Every policy maps a batch of observations to distribution parameters (logits, or the Gaussian mean with a
state-independent ``log_std``) and to values. ``evaluate`` gives what the PPO loss needs for a minibatch;
``snapshot`` gives a NumPy copy used for fast inference while collecting rollouts (``agents/inference.py``).
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional, Sequence

import numpy as np
import torch
from torch import nn

from agents import losses
from agents.config import ConfigError

Tensor = torch.Tensor

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU, "gelu": nn.GELU}


class PolicyEval(NamedTuple):
    """What the loss needs from a policy for a minibatch of (obs, action) pairs."""

    logprobs: Tensor
    entropy: Tensor
    values: Tensor
    params: Tensor
    """Logits (discrete) or Gaussian means (continuous), for KL terms."""


def log_prob(params: Tensor, actions: Tensor, log_std: Optional[Tensor]) -> Tensor:
    if log_std is None:
        return losses.categorical_log_prob(params, actions)
    return losses.gaussian_log_prob(params, log_std, actions)


def entropy(params: Tensor, log_std: Optional[Tensor]) -> Tensor:
    if log_std is None:
        return losses.categorical_entropy(params)
    return losses.gaussian_entropy(log_std).expand(params.shape[0])


def kl_divergence(params: Tensor, ref_params: Tensor, log_std: Optional[Tensor],
                  ref_log_std: Optional[Tensor]) -> Tensor:
    """Per-sample KL(π ‖ π_ref)."""
    if log_std is None:
        return losses.categorical_kl(params, ref_params)
    return losses.gaussian_kl(params, log_std, ref_params, ref_log_std)


def _layer_init(layer: nn.Linear, gain: float) -> nn.Linear:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.zeros_(layer.bias)
    return layer


def mlp(in_dim: int, hidden_sizes: Sequence[int], out_dim: int, activation: str, out_gain: float,
        ortho_init: bool = True) -> nn.Sequential:
    """MLP; with ``ortho_init`` orthogonal weights as in the "37 implementation details of PPO" (√2 for hidden
    layers, ``out_gain`` for the output) and zero biases, else PyTorch's default initialisation."""
    def init(layer: nn.Linear, gain: float) -> nn.Linear:
        return _layer_init(layer, gain) if ortho_init else layer

    layers: list[nn.Module] = []
    last = in_dim
    for width in hidden_sizes:
        layers += [init(nn.Linear(last, width), math.sqrt(2.0)), _ACTIVATIONS[activation]()]
        last = width
    layers.append(init(nn.Linear(last, out_dim), out_gain))
    return nn.Sequential(*layers)


class ActorCritic(nn.Module):
    """Base of the policies: subclasses define ``dist_params`` and ``value``; ``log_std`` is the Gaussian
    policy's state-independent log σ, None for categorical policies."""

    def __init__(self) -> None:
        super().__init__()
        self.register_parameter("log_std", None)

    @property
    def discrete(self) -> bool:
        return self.log_std is None

    def dist_params(self, obs: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def value(self, obs: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def evaluate(self, obs: Tensor, actions: Tensor) -> PolicyEval:
        params = self.dist_params(obs)
        return PolicyEval(
            logprobs=log_prob(params, actions, self.log_std),
            entropy=entropy(params, self.log_std),
            values=self.value(obs),
            params=params,
        )


class MLPActorCritic(ActorCritic):
    """Separate actor and critic MLPs; categorical logits or a diagonal Gaussian with learned log σ."""

    def __init__(self, obs_dim: int, action_dim: int, discrete: bool, hidden_sizes: Sequence[int] = (64, 64),
                 activation: str = "tanh", init_log_std: float = 0.0, *,
                 critic_hidden_sizes: Optional[Sequence[int]] = None, critic_activation: Optional[str] = None,
                 ortho_init: bool = True):
        super().__init__()
        critic_hidden_sizes = hidden_sizes if critic_hidden_sizes is None else critic_hidden_sizes
        self.activation = activation
        self.critic_activation = activation if critic_activation is None else critic_activation
        self.actor = mlp(obs_dim, hidden_sizes, action_dim, activation, out_gain=0.01, ortho_init=ortho_init)
        self.critic = mlp(obs_dim, critic_hidden_sizes, 1, self.critic_activation, out_gain=1.0,
                          ortho_init=ortho_init)
        if not discrete:
            self.log_std = nn.Parameter(torch.full((action_dim,), float(init_log_std)))

    def dist_params(self, obs: Tensor) -> Tensor:
        return self.actor(obs)

    def value(self, obs: Tensor) -> Tensor:
        return self.critic(obs).squeeze(-1)

    def snapshot(self) -> "PolicySnapshot":
        def layers(seq: nn.Sequential):
            return [(m.weight.detach().numpy().T.copy(), m.bias.detach().numpy().copy())
                    for m in seq if isinstance(m, nn.Linear)]

        log_std = None if self.log_std is None else self.log_std.detach().numpy().copy()
        return PolicySnapshot(layers(self.actor), layers(self.critic), self.activation, log_std, None, None,
                              self.critic_activation)


class TabularActorCritic(ActorCritic):
    """The tabular softmax policy: one logit per action (zero at start = uniform π_old), one scalar baseline.

    It ignores the observation, which is what a single-state problem like the softmax bandit has.
    """

    def __init__(self, n_actions: int):
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(n_actions))
        self.baseline = nn.Parameter(torch.zeros(()))

    def dist_params(self, obs: Tensor) -> Tensor:
        return self.logits.expand(obs.shape[0], -1)

    def value(self, obs: Tensor) -> Tensor:
        return self.baseline.expand(obs.shape[0])

    def snapshot(self) -> "PolicySnapshot":
        return PolicySnapshot([], [], "tanh", None, self.logits.detach().numpy().copy(),
                              self.baseline.detach().numpy().copy(), "tanh")


_NP_ACT = {
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0.0, out=x),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
    "gelu": None,  # no exact erf in NumPy: the torch backend is used for gelu
}


class PolicySnapshot(NamedTuple):
    """A frozen NumPy copy of a policy's weights: plain matmuls, ~10× cheaper than nn.Module for tiny nets."""

    actor: list
    critic: list
    activation: str
    log_std: Optional[np.ndarray]
    table_logits: Optional[np.ndarray]
    table_value: Optional[np.ndarray]
    critic_activation: str

    def _mlp(self, layers: list, x: np.ndarray, activation: str) -> np.ndarray:
        act = _NP_ACT[activation]
        for i, (w, b) in enumerate(layers):
            x = x @ w
            x += b
            if i < len(layers) - 1:
                x = act(x)
        return x

    def dist_params(self, obs: np.ndarray) -> np.ndarray:
        if self.table_logits is not None:
            return np.broadcast_to(self.table_logits, (obs.shape[0], self.table_logits.shape[0]))
        return self._mlp(self.actor, obs, self.activation)

    def value(self, obs: np.ndarray) -> np.ndarray:
        if self.table_value is not None:
            return np.broadcast_to(self.table_value, (obs.shape[0],))
        return self._mlp(self.critic, obs, self.critic_activation)[:, 0]


def numpy_supported(activation: str) -> bool:
    return _NP_ACT.get(activation) is not None


def build_policy(obs_dim: int, action_dim: int, discrete: bool, policy: str = "mlp", *,
                 actor_hidden_sizes: Sequence[int] = (64, 64), critic_hidden_sizes: Sequence[int] = (64, 64),
                 actor_activation: str = "tanh", critic_activation: str = "tanh", ortho_init: bool = True,
                 init_log_std: float = 0.0) -> ActorCritic:
    """Build the policy named by ``policy`` ('mlp' or 'tabular') for the given space sizes; the keywords are
    ``PPOConfig.network()``."""
    if policy == "tabular":
        if not discrete:
            raise ConfigError("agent.policy='tabular' is invalid for this env: it needs a Discrete action space "
                              "(use agent.policy=mlp)")
        return TabularActorCritic(action_dim)
    return MLPActorCritic(obs_dim, action_dim, discrete, actor_hidden_sizes, actor_activation, init_log_std,
                          critic_hidden_sizes=critic_hidden_sizes, critic_activation=critic_activation,
                          ortho_init=ortho_init)


def space_dims(envs_: object) -> tuple[int, int, bool]:
    """(obs_dim, action_dim, discrete) of a vector env's single spaces (refuses unsupported ones)."""
    from agents.spaces import vector_space_spec

    return vector_space_spec(envs_).dims()
