"""Actor-critic policies: MLP (discrete or Gaussian actions) and the tabular softmax policy of the bandit.

Every policy maps a batch of observations to distribution parameters (logits, or the Gaussian mean with a
state-independent ``log_std``) and to values. ``evaluate`` gives what the PPO loss needs for a minibatch.

Two forms of the same policies:

- a **member** (``MLPActorCritic``, ``TabularActorCritic``): one policy as an ``nn.Module``, built and initialised
  by ``build_policy``. Its ``state_dict`` is what checkpoints store, and what evaluation, fine-tuning and export
  load.
- a **population** (``PolicyPopulation``): P members of one architecture with every parameter stacked on a leading
  member axis (weights ``[P, out, in]``, biases ``[P, out]``), evaluated with batched matrix products
  (``torch.bmm``, with a backward written out: ``_BatchedMLP``) on ``[P, B, …]`` inputs. Training always runs on a
  population; a solo run is a population of one (``nn.Linear``'s kernels). Member k's ``state_dict`` is exactly
  the member module's, so checkpoints cannot tell the two apart.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from typing import NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

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
    """Logits (discrete) or Gaussian means (continuous), for KL terms. A population's are ``[P, B, …]``."""


def log_prob_and_entropy(params: Tensor, actions: Tensor, log_std: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    """log π(actions) and the per-sample entropy, each shaped as ``params`` without its last axis (``log_std``
    broadcasts against ``params``); a categorical policy's both from one log-softmax."""
    if log_std is None:
        return losses.categorical_log_prob_and_entropy(params, actions)
    return (losses.gaussian_log_prob(params, log_std, actions),
            losses.gaussian_entropy(log_std).expand(params.shape[:-1]))


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
        logprobs, ent = log_prob_and_entropy(params, actions, self.log_std)
        return PolicyEval(logprobs=logprobs, entropy=ent, values=self.value(obs), params=params)


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


# Applied in place where autograd allows it (tanh, ReLU and ELU save their result, not their input, so writing
# over the layer's pre-activation is allowed; GELU's backward needs its input): one buffer per layer, not two.
_TORCH_ACT = {"tanh": torch.tanh_, "relu": torch.relu_, "elu": lambda x: F.elu(x, inplace=True), "gelu": F.gelu}


def _act_backward_(grad: Tensor, result: Tensor, activation: str) -> Tensor:
    """The activation's backward from its result, written over ``grad``: the ATen kernels autograd runs for
    ``tanh``, ``relu`` and ``elu`` (α = 1) given their saved result."""
    if activation == "tanh":
        return torch.ops.aten.tanh_backward.grad_input(grad, result, grad_input=grad)
    if activation == "relu":
        return grad.masked_fill_(result <= 0, 0.0)
    return torch.ops.aten.elu_backward.grad_input(grad, 1.0, 1, 1, True, result, grad_input=grad)


# MKL's batched products of these shapes (B ~ 100s of samples, one side 1-8 wide, the other 64) run several times
# faster with the narrow side as the rows of the product than as its columns; same products, other float rounding.
def _product(x: Tensor, weight: Tensor) -> Tensor:
    """``x @ weightᵀ`` (``[P, B, in] → [P, B, out]``). An output layer's (out < in) is a transposed view of
    ``[P, out, B]`` memory, the layout its product comes in: the policy's few logits per sample are then reduced
    (log-softmax, entropy) along a strided axis, which PyTorch vectorises over the samples (``losses.log_softmax``)."""
    if weight.shape[1] < weight.shape[2]:  # out < in (an output layer)
        return torch.bmm(weight, x.transpose(1, 2)).transpose(1, 2)
    return torch.bmm(x, weight.transpose(1, 2))


def _weight_grad(grad: Tensor, x: Tensor, out: Tensor) -> None:
    """``gradᵀ @ x`` (``[P, out, in]``), the weight gradient of ``x @ weightᵀ``, written into ``out``."""
    if x.shape[2] < grad.shape[2]:  # in < out (a first layer on a few observation features)
        out.copy_(torch.bmm(x.transpose(1, 2), grad).transpose(1, 2))
    else:
        torch.bmm(grad.transpose(1, 2), x, out=out)


def _layers_forward(layers: Sequence[tuple[Tensor, Tensor]], x: Tensor, activation: str,
                    kept: Optional[list] = None) -> Tensor:
    """P MLPs' forward, ``[P, B, in] → [P, B, out]``: product, bias and activation written into one buffer per layer
    (a fresh ``[P, B, hidden]`` tensor per op costs more than its element-wise work); each hidden layer's output is
    appended to ``kept``, if given."""
    act = _TORCH_ACT[activation]
    last = len(layers) - 1
    for i, (weight, bias) in enumerate(layers):
        x = _product(x, weight).add_(bias.unsqueeze(1))
        if i < last:
            x = act(x)
            if kept is not None:
                kept.append(x)
    return x


_CHUNK_ELEMENTS = 12 * 256 * 64
"""Elements of one hidden activation (``[members, B, hidden]``) that ``_BatchedMLP`` computes at a time on the CPU:
~0.75 MB of float32, so that a layer's product, bias, activation and their backward stay in a core's L2 cache
instead of streaming a whole population's activations through memory (a 24-member update step at batch 256 is
several percent faster in two halves than at once)."""


def _member_chunks(x: Tensor, hidden: int) -> list[slice]:
    """Member ranges of about equal size whose hidden activations hold at most ``_CHUNK_ELEMENTS`` elements (one
    range on a GPU: there a population is a few kernel launches, whatever its size)."""
    members, batch = x.shape[0], x.shape[1]
    if x.device.type != "cpu":
        return [slice(0, members)]
    count = math.ceil(members * batch * hidden / _CHUNK_ELEMENTS)
    size = math.ceil(members / max(1, count))
    return [slice(lo, min(lo + size, members)) for lo in range(0, members, size)]


class _BatchedMLP(torch.autograd.Function):
    """P MLPs at once (``batched_mlp``'s arithmetic) with a backward written out: the kernels autograd would run
    for the same graph (a ``bmm`` per weight and input gradient, a sum per bias gradient, the activation's backward
    from its saved result), but each layer's gradient is written over the buffer it came in, and the ~10 graph
    nodes per layer (transpose, unsqueeze, in-place add and activation, their version checks) are one node. The
    activations of a population's update are MBs: reusing buffers, skipping the bookkeeping and computing the
    members in cache-sized ranges (``_member_chunks``) is a few percent each of an update. Not for GELU (its backward
    needs the pre-activation)."""

    @staticmethod
    def forward(ctx, activation: str, x: Tensor, *params: Tensor) -> Tensor:  # params: w0, b0, w1, b1, …
        weights, biases = params[0::2], params[1::2]
        chunks = _member_chunks(x, max(w.shape[1] for w in weights))
        outputs, kept = [], []
        for c in chunks:
            inputs = [x[c]]
            outputs.append(_layers_forward([(w[c], b[c]) for w, b in zip(weights, biases)], x[c], activation,
                                           kept=inputs))
            kept += inputs
        ctx.activation, ctx.chunks, ctx.layers = activation, chunks, len(weights)
        ctx.save_for_backward(*kept, *weights)
        if len(outputs) == 1:
            return outputs[0]
        # [P, out, B] memory, transposed: an output layer's layout (_product)
        out = outputs[0].new_empty((x.shape[0], outputs[0].shape[2], x.shape[1])).transpose(1, 2)
        for c, o in zip(chunks, outputs):
            out[c] = o
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        saved, n = ctx.saved_tensors, ctx.layers  # each chunk's n layer inputs, then the n weights
        weights = saved[-n:]
        grads: list = [None] * (2 * n)
        for i, w in enumerate(weights):
            grads[2 * i], grads[2 * i + 1] = torch.empty_like(w), w.new_empty(w.shape[:2])
        grad = grad.contiguous()
        grad_x = grad.new_empty((grad.shape[0], *saved[0].shape[1:])) if ctx.needs_input_grad[1] else None
        for j, c in enumerate(ctx.chunks):
            inputs = saved[j * n:(j + 1) * n]
            g = grad[c]
            for i in range(n - 1, -1, -1):
                _weight_grad(g, inputs[i], out=grads[2 * i][c])
                torch.sum(g, 1, out=grads[2 * i + 1][c])
                if i > 0:
                    g = _act_backward_(torch.bmm(g, weights[i][c]), inputs[i], ctx.activation)
                elif grad_x is not None:
                    torch.bmm(g, weights[0][c], out=grad_x[c])
        return (None, grad_x, *grads)


def batched_mlp(layers: Sequence[tuple[Tensor, Tensor]], x: Tensor, activation: str) -> Tensor:
    """``[P, B, in] → [P, B, out]`` through P MLPs at once: weights ``[P, out, in]`` (nn.Linear's layout),
    biases ``[P, out]``; the activation after every layer but the last."""
    act = _TORCH_ACT[activation]
    last = len(layers) - 1
    if x.shape[0] == 1:  # a population of one: nn.Linear's own kernels (cheaper forward and backward)
        h = x[0]
        for i, (weight, bias) in enumerate(layers):
            h = F.linear(h, weight.squeeze(0), bias.squeeze(0))  # views: no copy in the backward pass
            if i < last:
                h = act(h)
        return h.unsqueeze(0)
    if activation == "gelu":  # autograd's backward: GELU's needs its input (the written-out one keeps outputs)
        return _layers_forward(layers, x, activation)
    return _BatchedMLP.apply(activation, x, *(t for layer in layers for t in layer))


def _linear_layers(params: dict, prefix: str, seq: nn.Sequential) -> list[tuple[Tensor, Tensor]]:
    return [(params[f"{prefix}.{i}.weight"], params[f"{prefix}.{i}.bias"])
            for i, m in enumerate(seq) if isinstance(m, nn.Linear)]


class PolicyPopulation(nn.Module):
    """P policies of one architecture, parameters stacked on a leading member axis (see the module docstring).

    Inputs and outputs carry the member axis first: observations ``[P, B, obs_dim]``, actions ``[P, B(, A)]``,
    distribution parameters ``[P, B, A]``, values and log-probabilities ``[P, B]``. Parameters are in the member
    module's order (``names``), so an optimizer's per-parameter state maps onto a member's one to one.
    """

    def __init__(self, members: Sequence[ActorCritic]):
        super().__init__()
        if not members:
            raise ValueError("a population needs at least one member")
        template = members[0]
        self.names = [name for name, _ in template.named_parameters()]
        self.stacked = nn.ParameterList(
            [nn.Parameter(torch.stack([m.get_parameter(name).detach() for m in members]).clone())
             for name in self.names])
        self._template = [copy.deepcopy(template)]  # a list: not a submodule, its parameters are not ours
        self._bind()

    def _bind(self) -> None:
        """Name the stacked parameters after the member's (also after a deepcopy, which copies them)."""
        params = dict(zip(self.names, self.stacked))
        template = self._template[0]
        self.tabular = isinstance(template, TabularActorCritic)
        self._log_std = params.get("log_std")
        if self.tabular:
            self._logits, self._baseline = params["logits"], params["baseline"]
        else:
            self.activation, self.critic_activation = template.activation, template.critic_activation
            self.actor_layers = _linear_layers(params, "actor", template.actor)
            self.critic_layers = _linear_layers(params, "critic", template.critic)

    def __deepcopy__(self, memo):
        new = PolicyPopulation.__new__(PolicyPopulation)
        memo[id(self)] = new
        for key, value in self.__dict__.items():
            if key not in ("actor_layers", "critic_layers", "_log_std", "_logits", "_baseline"):
                new.__dict__[key] = copy.deepcopy(value, memo)
        new._bind()
        return new

    @property
    def members(self) -> int:
        return self.stacked[0].shape[0]

    @property
    def device(self) -> torch.device:
        return self.stacked[0].device

    def select(self, rows: Sequence[int]) -> "PolicyPopulation":
        """A frozen copy of members ``rows`` (in that order), on this population's device: training this one does
        not change it."""
        new = PolicyPopulation.__new__(PolicyPopulation)
        nn.Module.__init__(new)
        new.names = list(self.names)
        index = torch.as_tensor(list(rows), device=self.device)
        new.stacked = nn.ParameterList([nn.Parameter(p.detach().index_select(0, index), requires_grad=False)
                                        for p in self.stacked])
        new._template = [copy.deepcopy(self._template[0])]
        new._bind()
        return new

    @property
    def log_std(self) -> Optional[Tensor]:
        """``[P, A]``, None for categorical policies."""
        return self._log_std

    def dist_params(self, obs: Tensor) -> Tensor:
        if self.tabular:
            return self._logits.unsqueeze(1).expand(-1, obs.shape[1], -1)
        return batched_mlp(self.actor_layers, obs, self.activation)

    def value(self, obs: Tensor) -> Tensor:
        if self.tabular:
            return self._baseline.unsqueeze(1).expand(-1, obs.shape[1])
        return batched_mlp(self.critic_layers, obs, self.critic_activation).squeeze(-1)

    def _member_log_std(self, log_std: Optional[Tensor]) -> Optional[Tensor]:
        return None if log_std is None else log_std.unsqueeze(1)  # [P, 1, A] against [P, B, A]

    def evaluate(self, obs: Tensor, actions: Tensor) -> PolicyEval:
        params = self.dist_params(obs)
        logprobs, ent = log_prob_and_entropy(params, actions, self._member_log_std(self._log_std))
        return PolicyEval(logprobs, ent, self.value(obs), params)

    def kl_divergence(self, params: Tensor, ref_params: Tensor, ref_log_std: Optional[Tensor]) -> Tensor:
        """Per-sample KL(π ‖ π_ref), ``[P, B]``; ``ref_log_std`` is the reference population's ``[P, A]``."""
        return kl_divergence(params, ref_params, self._member_log_std(self._log_std),
                             self._member_log_std(ref_log_std))

    # --- members -----------------------------------------------------------------------------------------------
    def member_state(self, k: int) -> "dict[str, Tensor]":
        """Member k's ``state_dict``, keys and layout of the member module's (what a checkpoint stores)."""
        return OrderedDict((name, p[k].detach().cpu().clone()) for name, p in zip(self.names, self.stacked))

    def load_member_state(self, k: int, state: "dict[str, Tensor]") -> None:
        """Copy a member module's ``state_dict`` into member k (strict: PyTorch's own checks of keys and shapes)."""
        template = self._template[0]  # a private copy: loading into it changes no member
        template.load_state_dict(state)
        with torch.no_grad():
            for name, p in zip(self.names, self.stacked):
                p[k].copy_(template.get_parameter(name))

    def member(self, k: int) -> ActorCritic:
        """Member k as a module of its own (a copy: training the population does not change it)."""
        module = copy.deepcopy(self._template[0])
        module.load_state_dict(self.member_state(k))
        return module


def build_population(obs_dim: int, action_dim: int, discrete: bool, network_seeds: Sequence[int],
                     **network) -> PolicyPopulation:
    """One member per seed, each initialised as ``build_policy`` does after ``torch.manual_seed(seed)``: member k
    starts from exactly the weights of the solo run with that seed. ``network`` is ``PPOConfig.network()``."""
    members = []
    for seed in network_seeds:
        torch.manual_seed(seed)
        members.append(build_policy(obs_dim, action_dim, discrete, **network))
    return PolicyPopulation(members)
