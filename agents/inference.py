"""Acting: a policy population frozen for inference, and action selection with its log-probabilities in NumPy.

Collecting a rollout calls the policy once per env step on a handful of observations, where ``nn.Module`` call
overhead dominates; a NumPy copy of the weights (``PopulationSnapshot``) does the same arithmetic with plain
batched matmuls. ``make_inference`` picks it (or the torch population under inference mode, for activations NumPy
has no exact form of) and returns NumPy-facing functions:

- for the whole population (``member=None``): ``[P, B, obs_dim] → [P, B, …]`` (the collector);
- for one member (``member=k``): ``[B, obs_dim] → [B, …]`` (evaluation, video), optionally normalising raw
  observations with frozen statistics.

``select_actions`` samples (or takes the mode of) categorical or diagonal-Gaussian actions and returns their
log-probabilities: the NumPy side of ``agents/losses.py``'s ``categorical_log_prob`` / ``gaussian_log_prob``.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch

from agents.networks import ActorCritic, PolicyPopulation

_LOG_SQRT_2PI = 0.5 * np.log(2.0 * np.pi)

_NP_ACT = {
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0.0, out=x),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
    "gelu": None,  # no exact erf in NumPy: the torch backend is used for gelu
}


class Inference(NamedTuple):
    """NumPy-facing policy functions used while acting: distribution parameters and values of observations."""

    dist_params: Callable[[np.ndarray], np.ndarray]
    value: Callable[[np.ndarray], np.ndarray]
    log_std: Optional[np.ndarray]
    """``[P, A]`` for a population, ``[A]`` for one member; None for categorical policies."""


class PopulationSnapshot(NamedTuple):
    """A frozen NumPy copy of a population's weights: weights ``[P, in, out]``, biases ``[P, 1, out]``."""

    actor: list
    critic: list
    activation: str
    critic_activation: str
    table_logits: Optional[np.ndarray]
    table_value: Optional[np.ndarray]

    @classmethod
    def of(cls, population: PolicyPopulation, members: Optional[Sequence[int]] = None) -> "PopulationSnapshot":
        """A copy of the population's weights (of ``members`` only, in that order, if given)."""
        rows = slice(None) if members is None else list(members)

        def array(t: torch.Tensor) -> np.ndarray:
            return t.detach().cpu().numpy()[rows].copy()

        def layers(pairs):
            return [(array(w).transpose(0, 2, 1).copy(), array(b)[:, None, :]) for w, b in pairs]

        if population.tabular:
            return cls([], [], "tanh", "tanh", array(population._logits), array(population._baseline))
        return cls(layers(population.actor_layers), layers(population.critic_layers), population.activation,
                   population.critic_activation, None, None)

    def _mlp(self, layers: list, x: np.ndarray, activation: str) -> np.ndarray:
        act = _NP_ACT[activation]
        one = x.shape[0] == 1  # a population of one: 2-D products are cheaper
        if one:
            x = x[0]
        for i, (w, b) in enumerate(layers):
            x = x @ w[0] if one else np.matmul(x, w)
            x += b[0] if one else b
            if i < len(layers) - 1:
                x = act(x)
        return x[None] if one else x

    def dist_params(self, obs: np.ndarray) -> np.ndarray:
        if self.table_logits is not None:
            logits = self.table_logits
            return np.broadcast_to(logits[:, None, :], (logits.shape[0], obs.shape[1], logits.shape[1]))
        return self._mlp(self.actor, obs, self.activation)

    def value(self, obs: np.ndarray) -> np.ndarray:
        if self.table_value is not None:
            return np.broadcast_to(self.table_value[:, None], (self.table_value.shape[0], obs.shape[1]))
        return self._mlp(self.critic, obs, self.critic_activation)[..., 0]


def numpy_supported(activation: str) -> bool:
    return _NP_ACT.get(activation) is not None


def _population_inference(population: PolicyPopulation, backend: str,
                          members: Optional[Sequence[int]] = None) -> Inference:
    rows = list(range(population.members)) if members is None else list(members)
    log_std = None if population.log_std is None else population.log_std.detach().cpu().numpy()[rows].copy()
    names = ("activation", "critic_activation")
    if backend == "numpy" and all(numpy_supported(getattr(population, name, "tanh")) for name in names):
        snap = PopulationSnapshot.of(population, members)
        return Inference(snap.dist_params, snap.value, log_std)
    frozen = population.select(rows)  # on the population's device: observations go there, results come back
    device = frozen.device

    def dist_params(obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return frozen.dist_params(torch.from_numpy(obs).to(device)).cpu().numpy()

    def value(obs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return frozen.value(torch.from_numpy(obs).to(device)).cpu().numpy()

    return Inference(dist_params, value, log_std)


def make_inference(policy: Union[PolicyPopulation, ActorCritic], backend: str = "numpy", obs_norm=None,
                   member: Optional[int] = None, members: Optional[Sequence[int]] = None) -> Inference:
    """Freeze ``policy`` for acting (a NumPy weight snapshot, or a torch copy under inference mode).

    A population gives functions of ``[P, B, obs_dim]`` (of the ``members`` listed, in that order, if given);
    ``member=k`` (or a single member module) gives functions of ``[B, obs_dim]`` for that one member. ``obs_norm``
    (an ``ObsNormalizer`` with the same members as ``policy``) makes the functions take raw observations and
    normalise them with a frozen copy of the statistics (evaluation, video); without it they take what the policy
    takes (the collector normalises itself).
    """
    if not isinstance(policy, PolicyPopulation):
        policy, member = PolicyPopulation([policy]), 0
    rows = [member] if member is not None else members
    inner = _population_inference(policy, backend, rows)
    frozen = None if obs_norm is None else obs_norm.select(rows)

    def prepare(obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float32)
        if member is not None:
            obs = obs[None]
        return obs if frozen is None else frozen.apply(obs)

    if member is None:
        if frozen is None:
            return inner
        return Inference(lambda obs: inner.dist_params(prepare(obs)), lambda obs: inner.value(prepare(obs)),
                         inner.log_std)
    return Inference(lambda obs: inner.dist_params(prepare(obs))[0], lambda obs: inner.value(prepare(obs))[0],
                     None if inner.log_std is None else inner.log_std[0])


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


Rngs = Union[np.random.Generator, list, tuple]


def _draw(rng: Rngs, shape: tuple, draw: Callable[[np.random.Generator, tuple], np.ndarray]) -> np.ndarray:
    """One generator draws the whole ``shape``; a sequence of P generators draws member k's ``shape[1:]`` from
    generator k (each member's noise is its own stream, as in a solo run)."""
    if isinstance(rng, (list, tuple)):
        if len(rng) == 1:
            return draw(rng[0], shape[1:]).reshape(shape)
        return np.stack([draw(g, shape[1:]) for g in rng])
    return draw(rng, shape)


def _uniforms(g: np.random.Generator, shape: tuple) -> np.ndarray:
    return g.random(shape, dtype=np.float32)


def _normals(g: np.random.Generator, shape: tuple) -> np.ndarray:
    return g.standard_normal(shape, dtype=np.float32)


def draw_noise(rng: Rngs, steps: int, shape: tuple, discrete: bool) -> np.ndarray:
    """The noise ``select_actions`` would draw in ``steps`` successive calls for ``params`` of ``shape``, drawn
    at once: ``[steps, *shape]``, and ``select_actions(…, noise=out[t])`` takes exactly the actions of its t-th
    call (NumPy's generators hand out their values one after another, however the draws are split). One call per
    rollout instead of one (per member) per step."""
    fill = _uniforms if discrete else _normals
    if isinstance(rng, (list, tuple)):  # member k's T steps from its own generator: [P, T, …] → [T, P, …]
        return np.moveaxis(_draw(rng, (len(rng), steps) + tuple(shape[1:]), fill), 0, 1)
    return _draw(rng, (steps,) + tuple(shape), fill)


def select_actions(params: np.ndarray, log_std: Optional[np.ndarray], rng: Rngs,
                   deterministic: bool = False, noise: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
    """Sample (or, deterministic, take the mode of) actions; returns (actions, log π(actions)).

    ``params`` is ``[B, A]`` (one policy) or ``[P, B, A]`` (a population, with ``log_std`` ``[P, A]`` and one
    generator per member in ``rng``). ``noise`` (shaped as ``params``: one step of ``draw_noise``) is used instead
    of drawing from ``rng``."""
    if log_std is None:
        logp_all = _log_softmax(params)
        if deterministic:
            actions = logp_all.argmax(axis=-1)
        else:  # Gumbel-max: argmax(log p + G) is a sample of the categorical distribution. A float32 uniform is
            # exactly 0 once in 2**24 draws (a few times per long run): the smallest positive float stands in
            # for it, so G stays finite and no log(0) warning is printed.
            u = _draw(rng, params.shape, _uniforms) if noise is None else noise
            u = np.maximum(u, np.finfo(np.float32).tiny)
            actions = (logp_all - np.log(-np.log(u))).argmax(axis=-1)
        return actions, np.take_along_axis(logp_all, actions[..., None], axis=-1)[..., 0]
    if params.ndim == 3:
        log_std = log_std[:, None, :]
    if deterministic:
        actions = params.astype(np.float32, copy=True)
    else:
        noise = _draw(rng, params.shape, _normals) if noise is None else noise
        actions = (params + np.exp(log_std) * noise).astype(np.float32)
    z = (actions - params) * np.exp(-log_std)
    logp = (-0.5 * z * z - log_std - _LOG_SQRT_2PI).sum(axis=-1)
    return actions, logp.astype(np.float32)
