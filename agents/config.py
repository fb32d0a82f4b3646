"""PPO hyperparameters: one dataclass, a docstring per field, validated before any work starts."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import List, Optional


class ConfigError(ValueError):
    """A user's configuration mistake. Its message is one line naming the key and what is allowed."""


class NumericalError(RuntimeError):
    """A NaN or inf in observations, rewards, losses or parameters; the last good checkpoint is kept."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name if it has none), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def is_int(value) -> bool:
    """An integer and not a bool (YAML's ``true`` passes ``isinstance(value, int)``)."""
    return isinstance(value, int) and not isinstance(value, bool)


ACTIVATIONS = ("tanh", "relu", "elu", "gelu")
POLICIES = ("mlp", "tabular")
ROLLOUT_BACKENDS = ("numpy", "torch")
ADVANTAGES = ("gae", "group")


@dataclass
class PPOConfig:
    """Hyperparameters of the actor-critic PPO agent (``conf/agent/ppo.yaml``): ``clip_ratio`` is ε,
    ``vf_coef`` c₁ and ``entropy_coef`` c₂ of the PPO paper (Schulman et al. 2017, §5); the rest as in CleanRL's
    ppo.py."""

    learning_rate: float = 2.5e-4
    """Adam step size. (1e-5, common when fine-tuning language models, is too small here: control tasks use
    ~1e-4–1e-3.)"""
    anneal_lr: bool = True
    """Anneal the learning rate linearly: the full rate at the first iteration, learning_rate/N at the last of
    N iterations (see ``Trainer.learning_rate``)."""
    num_steps: int = 128
    """Steps collected per env per iteration; the batch is num_envs × num_steps transitions."""
    num_minibatches: int = 4
    """Minibatches per epoch; must divide the batch (num_envs × num_steps)."""
    ppo_epochs: int = 4
    """Passes over each batch (K epochs in the PPO paper, §5)."""
    gamma: float = 0.99
    """Discount factor, in (0, 1]."""
    gae_lambda: float = 0.95
    """GAE λ in [0, 1]: 0 = one-step TD error, 1 = Monte-Carlo return minus the baseline."""
    clip_ratio: float = 0.2
    """ε of the clipped surrogate: the ratio π/π_old is clipped to [1−ε, 1+ε]."""
    vf_coef: float = 0.25
    """Weight of the value loss in the total loss (c₁). The value loss is the plain MSE (no ½), so 0.25 here
    weighs the critic as CleanRL's 0.5 on ½·MSE does (SB3's value loss is plain MSE too: its 0.5 is 0.5 here)."""
    entropy_coef: float = 0.01
    """Weight of the entropy bonus, subtracted from the loss (c₂ in the PPO paper, §5, Eq. 9)."""
    norm_adv: bool = True
    """Normalise GAE advantages to zero mean and unit std within each minibatch (group advantages are already
    normalised per group, so not again)."""
    advantage: str = "gae"
    """'gae' (GAE(γ, λ) from the critic) or 'group' (GRPO's critic-free (r − mean)/std over the samples of one
    state: for the bandit, the pulls of one rollout step across envs; refused where the states differ)."""
    group_scale: bool = True
    """With advantage=group: divide by the group's std (GRPO); false only subtracts the mean (Dr. GRPO)."""
    clip_value_loss: bool = False
    """Use the clipped value loss (V_old ± clip_ratio, as OpenAI Baselines' PPO2) instead of plain MSE."""
    max_grad_norm: float = 0.5
    """Clip the global gradient norm to this value; 0 disables clipping."""
    target_kl: Optional[float] = None
    """Stop the epochs of an iteration early when a minibatch's approx_kl exceeds 1.5 × target_kl."""
    kl_coef: float = 0.0
    """β of the penalty β·KL(π_θ ‖ π_ref) to a frozen reference policy (0 = off)."""
    kl_target: Optional[float] = None
    """Adaptive β on KL(π_θ ‖ π_ref) to the frozen reference: after each iteration double β when
    KL > 1.5·kl_target, halve it when KL < kl_target/1.5 (the doubling/halving rule of the PPO paper's adaptive-KL
    variant, §4, applied to the reference policy rather than to π_old; RLHF implementations, e.g. Ziegler et al.
    2019, steer the same β with a proportional controller instead). KL is the iteration's mean over its minibatches,
    each measured before its own gradient step."""
    normalize_obs: bool = False
    """Normalise observations by running per-dimension mean/std (``agents/normalization.py``); the statistics are
    part of the agent: checkpointed, restored on resume, applied frozen by evaluation."""
    clip_obs: float = 10.0
    """Normalised observations are clipped to ±clip_obs."""
    normalize_reward: bool = False
    """Scale rewards by the running std of the discounted return (logged episodic returns stay raw)."""
    clip_reward: float = 10.0
    """Scaled rewards are clipped to ±clip_reward."""
    policy: str = "mlp"
    """'mlp' (separate actor and critic MLPs) or 'tabular' (one logit per action, a scalar baseline)."""
    hidden_sizes: List[int] = field(default_factory=lambda: [64, 64])
    """Hidden layer widths of the actor and of the critic MLP (unless actor_/critic_hidden_sizes say otherwise)."""
    activation: str = "tanh"
    """Hidden activation: tanh, relu, elu or gelu (unless actor_/critic_activation say otherwise)."""
    actor_hidden_sizes: Optional[List[int]] = None
    """The actor's hidden widths; null = hidden_sizes (SB3's net_arch=dict(pi=...))."""
    critic_hidden_sizes: Optional[List[int]] = None
    """The critic's hidden widths; null = hidden_sizes (SB3's net_arch=dict(vf=...))."""
    actor_activation: Optional[str] = None
    """The actor's activation; null = activation."""
    critic_activation: Optional[str] = None
    """The critic's activation; null = activation."""
    ortho_init: bool = True
    """Orthogonal initialisation (gain √2 hidden, 0.01 actor output, 1 critic output) as CleanRL and SB3; false
    keeps PyTorch's default init (SB3's ortho_init=False)."""
    init_log_std: float = 0.0
    """Initial log σ of the Gaussian policy (Box actions; SB3's log_std_init)."""
    rollout_backend: str = "numpy"
    """Policy inference while collecting: 'numpy' (fast copy of the weights) or 'torch' (the module)."""

    def network(self) -> dict:
        """The keyword arguments of ``agents.networks.build_policy``: what defines the network's shape."""
        return {"policy": self.policy,
                "actor_hidden_sizes": list(self.actor_hidden_sizes or self.hidden_sizes),
                "critic_hidden_sizes": list(self.critic_hidden_sizes or self.hidden_sizes),
                "actor_activation": self.actor_activation or self.activation,
                "critic_activation": self.critic_activation or self.activation,
                "ortho_init": self.ortho_init, "init_log_std": self.init_log_std}

    def batch_size(self, num_envs: int) -> int:
        return num_envs * self.num_steps

    def minibatch_size(self, num_envs: int) -> int:
        return self.batch_size(num_envs) // self.num_minibatches

    def validate(self, num_envs: int, prefix: str = "agent.") -> None:
        """Raise ``ConfigError`` naming the first bad key and what is allowed."""

        def bad(key: str, allowed: str) -> ConfigError:
            return ConfigError(f"{prefix}{key}={getattr(self, key)!r} is invalid: {allowed}")

        def finite(key: str) -> float:
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise bad(key, "must be a finite number")
            return float(value)

        if not finite("learning_rate") > 0:
            raise bad("learning_rate", "must be > 0")
        for key in ("num_steps", "num_minibatches", "ppo_epochs"):
            value = getattr(self, key)
            if not is_int(value) or value < 1:
                raise bad(key, "must be an integer ≥ 1")
        if not 0 < finite("gamma") <= 1:
            raise bad("gamma", "must be in (0, 1]")
        if not 0 <= finite("gae_lambda") <= 1:
            raise bad("gae_lambda", "must be in [0, 1]")
        if not finite("clip_ratio") > 0:
            raise bad("clip_ratio", "must be > 0 (typically 0.1–0.3)")
        for key in ("vf_coef", "entropy_coef", "max_grad_norm", "kl_coef"):
            if not finite(key) >= 0:
                raise bad(key, "must be ≥ 0")
        for key in ("target_kl", "kl_target"):
            if getattr(self, key) is not None and not finite(key) > 0:
                raise bad(key, "must be > 0, or null to disable")
        if self.kl_target is not None and self.kl_coef == 0:
            raise bad("kl_target", "adaptive β needs a starting agent.kl_coef > 0")
        if self.policy not in POLICIES:
            raise bad("policy", f"must be one of {', '.join(POLICIES)}")
        if self.activation not in ACTIVATIONS:
            raise bad("activation", f"must be one of {', '.join(ACTIVATIONS)}")
        if self.advantage not in ADVANTAGES:
            raise bad("advantage", f"must be one of {', '.join(ADVANTAGES)}")
        if not isinstance(self.group_scale, bool):
            raise bad("group_scale", "must be true or false")
        if self.rollout_backend not in ROLLOUT_BACKENDS:
            raise bad("rollout_backend", f"must be one of {', '.join(ROLLOUT_BACKENDS)}")
        for key in ("actor_activation", "critic_activation"):
            if getattr(self, key) is not None and getattr(self, key) not in ACTIVATIONS:
                raise bad(key, f"must be one of {', '.join(ACTIVATIONS)}, or null for agent.activation")
        for key in ("hidden_sizes", "actor_hidden_sizes", "critic_hidden_sizes"):
            sizes = getattr(self, key)
            if key != "hidden_sizes" and sizes is None:
                continue
            if not sizes or any(not is_int(h) or h < 1 for h in sizes):
                raise bad(key, "must be a non-empty list of integers ≥ 1, e.g. [64, 64]"
                          + ("" if key == "hidden_sizes" else ", or null for agent.hidden_sizes"))
        if not isinstance(self.ortho_init, bool):
            raise bad("ortho_init", "must be true or false")
        finite("init_log_std")
        for key in ("normalize_obs", "normalize_reward"):
            if not isinstance(getattr(self, key), bool):
                raise bad(key, "must be true or false")
        for key in ("clip_obs", "clip_reward"):
            if not finite(key) > 0:
                raise bad(key, "must be > 0")
        batch = self.batch_size(num_envs)
        if batch % self.num_minibatches:
            divisors = [d for d in range(1, batch + 1) if batch % d == 0][:8]
            raise bad("num_minibatches", f"must divide the batch num_envs×num_steps = {num_envs}×{self.num_steps}"
                      f" = {batch}: use one of {', '.join(map(str, divisors))}, …")


PER_MEMBER_KEYS = ("learning_rate", "clip_ratio", "entropy_coef", "vf_coef", "gamma", "gae_lambda", "max_grad_norm",
                   "target_kl", "kl_coef", "kl_target", "norm_adv")
"""Agent keys that may differ between the members of one population (each member's value is its own tensor or
array entry). Every other key shapes the population's tensors or its loop, and must be equal."""


def check_population(cfgs: "list[PPOConfig]") -> None:
    """Raise ``ConfigError`` if the members' configs differ in a key that must be shared (not in
    ``PER_MEMBER_KEYS``)."""
    first = vars(cfgs[0])
    for k, cfg in enumerate(cfgs[1:], start=1):
        for key, value in vars(cfg).items():
            if key not in PER_MEMBER_KEYS and value != first[key]:
                raise ConfigError(f"agent.{key} differs between members of one population (member 0: "
                                  f"{first[key]!r}, member {k}: {value!r}); only {', '.join(PER_MEMBER_KEYS)} may "
                                  "differ")

