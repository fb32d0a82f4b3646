"""The PPO update: minibatch epochs over a rollout batch with the combined loss, for a population of agents.

A solo run's update on a CPU is bound by per-call overhead, not arithmetic (two 64×64 MLPs, minibatches of ~128):
every member's forward and backward pass is one batched matrix product per layer (``PolicyPopulation``), so a
population of a few dozen is bound by the products and the element-wise passes over its activations instead;
``FlatAdam`` keeps every parameter and gradient in one flat buffer so that the optimizer step and the per-member
gradient-norm clip are a handful of tensor ops, and the loop reads its diagnostics back once per update.
"""

from __future__ import annotations

import copy
import math
from typing import Optional, Sequence, Union

import numpy as np
import torch

from agents.allocator import keep_freed_memory
from agents.config import PPOConfig, check_population
from agents.losses import compute_ppo_total_loss, sample_mean
from agents.networks import PolicyPopulation, build_policy, build_population
from agents.normalization import ObsNormalizer
from agents.optim import FlatAdam
from agents.rollout import Batch

UPDATE_METRICS = ("policy_loss", "value_loss", "entropy", "total_loss", "clip_fraction", "approx_kl")


def explained_variance(values: torch.Tensor, returns: torch.Tensor,
                       counts: Optional[np.ndarray] = None) -> np.ndarray:
    """1 − Var(R − V) / Var(R) over the last axis (per member of ``[P, n]`` inputs, over its first ``counts[k]``
    samples): 1 is a perfect critic, 0 no better than a constant; NaN where Var(R) = 0."""
    values, returns = values.double(), returns.double()
    weights = None
    if counts is not None:
        n = torch.as_tensor(counts, dtype=torch.float64, device=values.device).unsqueeze(-1)
        weights = (torch.arange(values.shape[-1], device=values.device) < n).double() / n.clamp(min=1)

    def variance(x: torch.Tensor) -> torch.Tensor:
        mean = sample_mean(x, weights).unsqueeze(-1)
        return sample_mean((x - mean) ** 2, weights)

    var_returns = variance(returns)
    ev = 1.0 - variance(returns - values) / var_returns
    return torch.where(var_returns == 0, torch.nan, ev).cpu().numpy()


def normalize(x: torch.Tensor, eps: float = 1e-8, weights: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Zero mean, unit (population) std over the last axis (per member; ``weights`` as in ``sample_mean``); a
    single sample becomes 0 instead of NaN."""
    centered = x - sample_mean(x, weights).unsqueeze(-1)
    std = sample_mean(centered * centered, weights).sqrt().unsqueeze(-1)  # (Tensor.std: several times slower)
    return centered / (std + eps)


def adapt_kl_coef(kl_coef: float, kl: float, kl_target: float) -> float:
    """The doubling/halving rule of the PPO paper's adaptive-KL variant (§4): double β when KL > 1.5·target, halve
    it when KL < target/1.5. The paper applies it to KL(π_old ‖ π_θ); here it steers β of the penalty to the
    frozen reference π_ref (RLHF's use of β, where Ziegler et al. 2019 use a proportional controller)."""
    if kl > 1.5 * kl_target:
        return kl_coef * 2.0
    if kl < kl_target / 1.5:
        return kl_coef / 2.0
    return kl_coef


def _split_bounds(n: int, parts: int) -> np.ndarray:
    """Where ``np.array_split(range(n), parts)`` cuts: the first ``n % parts`` parts one longer."""
    sizes = np.full(parts, n // parts)
    sizes[: n % parts] += 1
    return np.concatenate([[0], np.cumsum(sizes)])


class PPOAgent:
    """A population of P PPO agents trained in lockstep (a solo run is P = 1): the policies, their optimizer, their
    observation statistics and (with a KL penalty) their frozen reference policies; ``update`` runs one PPO update
    of every member.

    ``cfgs`` are the members' configs: equal in everything that shapes the tensors (``PopulationShape`` keys), free
    to differ in ``PER_MEMBER_KEYS``. Member k has its own minibatch order (``rngs[k]``), advantage normalisation,
    gradient-norm clip, Adam state and learning rate, target-KL early stop and adaptive β.

    The networks, the optimizer and the update's tensors live on ``device`` (the weights are initialised on the CPU
    first, so member k starts from the same weights on any device); a ``Batch`` comes in from the host and the
    diagnostics go back to it once per update. Minibatch orders are drawn on the host (``rngs``).
    """

    def __init__(self, cfgs: Union[PPOConfig, Sequence[PPOConfig]], obs_dim: int, action_dim: int, discrete: bool,
                 rngs: Union[np.random.Generator, Sequence[np.random.Generator]],
                 network_seeds: Optional[Sequence[int]] = None, device: Union[str, torch.device] = "cpu"):
        self.cfgs = [cfgs] if isinstance(cfgs, PPOConfig) else list(cfgs)
        self.rngs = [rngs] if isinstance(rngs, np.random.Generator) else list(rngs)
        cfg = self.cfg = self.cfgs[0]
        check_population(self.cfgs)
        keep_freed_memory()  # a population's activations are MBs, allocated and freed every minibatch step
        P = self.members = len(self.cfgs)
        if network_seeds is None:  # members drawn one after another from torch's current generator
            self.policy = PolicyPopulation([build_policy(obs_dim, action_dim, discrete, **cfg.network())
                                            for _ in range(P)])
        else:
            self.policy = build_population(obs_dim, action_dim, discrete, network_seeds, **cfg.network())
        self.device = torch.device(device)
        self.policy.to(self.device)
        self.optimizer = FlatAdam(self.policy.parameters(), lr=[c.learning_rate for c in self.cfgs], eps=1e-5)
        self.obs_norm: Optional[ObsNormalizer] = (ObsNormalizer(obs_dim, cfg.clip_obs, members=P)
                                                  if cfg.normalize_obs else None)
        """Observation statistics: part of what defines each policy (checkpoints and evaluation carry them)."""
        self.kl_coef = np.array([float(c.kl_coef) for c in self.cfgs])
        self.use_kl = bool((self.kl_coef > 0).any())
        self.ref_policy: Optional[PolicyPopulation] = None
        if self.use_kl:
            self.ref_policy = copy.deepcopy(self.policy).requires_grad_(False)

        def per_member(key: str, none: float = 0.0) -> Union[float, torch.Tensor]:
            """The members' values of ``key``: one float when they share it (cheaper ops, and a solo run's),
            else a ``[P]`` tensor."""
            values = [none if getattr(c, key) is None else float(getattr(c, key)) for c in self.cfgs]
            return values[0] if len(set(values)) == 1 else torch.tensor(values, device=self.device)

        self.clip_ratio, self.vf_coef = per_member("clip_ratio"), per_member("vf_coef")
        self.entropy_coef, clips = per_member("entropy_coef"), per_member("max_grad_norm")
        self.grad_clip = clips if isinstance(clips, torch.Tensor) or clips > 0 else None
        """The members' gradient-norm clip (per member, 0 = not clipped); None when no member clips."""
        self.kl_limit = 1.5 * torch.tensor([math.inf if c.target_kl is None else c.target_kl for c in self.cfgs],
                                           device=self.device)
        """A member stops its update's epochs at the first minibatch whose approx_kl exceeds 1.5 × its target."""
        self.use_target_kl = any(c.target_kl is not None for c in self.cfgs)
        self.norm_adv = torch.tensor([c.norm_adv and c.advantage == "gae" for c in self.cfgs], device=self.device)
        self.norm_adv_any, self.norm_adv_all = bool(self.norm_adv.any()), bool(self.norm_adv.all())

    # --- members ---------------------------------------------------------------------------------------------
    def start_from(self, k: int, agent_state: dict) -> None:
        """Fine-tuning: member k's π_θ and critic (and observation statistics, if both normalise) start from
        ``agent_state`` (a checkpoint's ``agent``), and so does its default reference π_ref of the KL penalty. The
        optimizer starts fresh."""
        self.policy.load_member_state(k, agent_state["policy"])  # copied in: the weights stay in FlatAdam's buffer
        if self.ref_policy is not None:
            self.ref_policy.load_member_state(k, agent_state["policy"])
        if self.obs_norm is not None and agent_state.get("obs_norm") is not None:
            self.obs_norm.load_member_statistics(k, agent_state["obs_norm"])  # they go on learning from new data

    def set_reference(self, k: int, state_dict: dict) -> None:
        """Use the weights in ``state_dict`` (e.g. a loaded checkpoint's policy) as member k's frozen π_ref."""
        if self.ref_policy is not None:
            self.ref_policy.load_member_state(k, state_dict)

    def set_learning_rate(self, lr) -> None:
        """One rate for every member, or one per member."""
        self.optimizer.set_lr(lr)

    # --- the update -------------------------------------------------------------------------------------------
    def _minibatches(self, sizes: np.ndarray):
        """One epoch's minibatches: per member a permutation of its own samples (from its own generator) split
        into ``num_minibatches`` parts as ``np.array_split`` splits; yields (indices ``[P, m]``, weights ``[P, m]``
        or None, which members have samples or None), on the agent's device. Members whose part j is shorter are
        padded with weight-0 samples."""
        M, device = self.cfg.num_minibatches, self.device
        perms = [rng.permutation(int(n)) for rng, n in zip(self.rngs, sizes)]
        if (sizes == sizes[0]).all() and sizes[0] % M == 0:  # every part of every member has the same size
            parts = torch.from_numpy(np.stack(perms)).view(len(perms), M, -1).to(device)
            for j in range(M):
                yield parts[:, j], None, None
            return
        bounds = [_split_bounds(int(n), M) for n in sizes]
        for j in range(M):
            chunks = [perm[b[j]:b[j + 1]] for perm, b in zip(perms, bounds)]
            lens = np.array([len(c) for c in chunks])
            width = int(lens.max())
            if width == 0:
                continue
            if (lens == width).all():
                yield torch.from_numpy(np.stack(chunks)).to(device), None, None
                continue
            idx = np.zeros((len(chunks), width), dtype=np.int64)
            weights = np.zeros((len(chunks), width), dtype=np.float32)
            for k, c in enumerate(chunks):
                idx[k, :len(c)] = c
                weights[k, :len(c)] = 1.0 / max(len(c), 1)
            yield (torch.from_numpy(idx).to(device), torch.from_numpy(weights).to(device),
                   torch.from_numpy(lens > 0).to(device))

    def update(self, batch: Batch, active: Optional[np.ndarray] = None) -> dict[str, np.ndarray]:
        """``ppo_epochs`` passes of ``num_minibatches`` shuffled minibatches for every member where ``active``
        (default: all); returns each diagnostic as a ``[P]`` array (the mean over the member's minibatch steps)."""
        cfg, policy, device = self.cfg, self.policy, self.device
        P = self.members
        batch = batch.to(device)
        ref_params = ref_log_std = None
        if self.ref_policy is not None:
            with torch.no_grad():
                ref_params = self.ref_policy.dist_params(batch.obs)
            ref_log_std = self.ref_policy.log_std
        kl_coef = float(self.kl_coef[0]) if (self.kl_coef == self.kl_coef[0]).all() else \
            torch.from_numpy(self.kl_coef.astype(np.float32)).to(device)
        keys = UPDATE_METRICS + (("kl_ref",) if self.use_kl else ())
        going = torch.ones(P, dtype=torch.bool, device=device) if active is None else \
            torch.from_numpy(np.asarray(active, bool)).to(device)
        everyone = bool(going.all())
        per_minibatch: list[torch.Tensor] = []
        stepped: list[torch.Tensor] = []
        rows = torch.arange(P, device=device).unsqueeze(1)
        for _ in range(cfg.ppo_epochs):
            for idx, weights, has_samples in self._minibatches(batch.sizes()):
                mb = batch.take(idx)
                ev = policy.evaluate(mb.obs, mb.actions)
                advantages = mb.advantages
                if self.norm_adv_any:
                    normalized = normalize(advantages, weights=weights)
                    advantages = normalized if self.norm_adv_all else \
                        torch.where(self.norm_adv.unsqueeze(1), normalized, advantages)
                kl_ref = None
                if ref_params is not None:
                    kl_ref = policy.kl_divergence(ev.params, ref_params[rows, idx], ref_log_std)
                out = compute_ppo_total_loss(
                    ev.logprobs, mb.logprobs, advantages, ev.values, mb.returns,
                    clip_ratio=self.clip_ratio, vf_coef=self.vf_coef, entropy_coef=self.entropy_coef,
                    entropy=ev.entropy, old_values=mb.values, clip_value=cfg.clip_value_loss,
                    kl_ref=kl_ref, kl_coef=kl_coef, weights=weights,
                )
                if self.use_target_kl:  # a member over its limit stops here: this minibatch is not stepped
                    going = going & ~(out["approx_kl"].detach() > self.kl_limit)
                    everyone = bool(going.all())
                    if not bool(going.any()):
                        break
                step = going if has_samples is None else going & has_samples
                self.optimizer.zero_grad()
                out["total_loss"].sum().backward()  # members share no parameter: each gets its own gradient
                if self.grad_clip is not None:
                    self.optimizer.clip_grad_norm_(self.grad_clip)
                self.optimizer.step(None if everyone and has_samples is None else step)
                per_minibatch.append(torch.stack([out[key].detach() for key in keys]))
                stepped.append(step)
            if not bool(going.any()):
                break
        # one read-back per update instead of one .item() per metric and minibatch
        if per_minibatch:
            mask = torch.stack(stepped).double()  # [S, P]
            count = mask.sum(0)
            sums = (torch.stack(per_minibatch).double() * mask.unsqueeze(1)).sum(0)  # [K, P]
            means = (sums / count.clamp(min=1)).cpu().numpy()
            count = count.cpu().numpy().astype(int)
        else:
            means, count = np.zeros((len(keys), P)), np.zeros(P, dtype=int)
        metrics = dict(zip(keys, means))
        metrics["minibatch_updates"] = count
        metrics["explained_variance"] = explained_variance(batch.values, batch.returns, batch.counts)
        if self.use_kl:
            metrics["kl_coef"] = self.kl_coef.copy()
            for k, c in enumerate(self.cfgs):
                if c.kl_target is not None and count[k]:
                    self.kl_coef[k] = adapt_kl_coef(self.kl_coef[k], metrics["kl_ref"][k], c.kl_target)
        return metrics

    # --- checkpointing (per member, in a solo run's layout) ---------------------------------------------------
    def member_state_dict(self, k: int) -> dict:
        state = {"policy": self.policy.member_state(k), "optimizer": self.optimizer.member_state_dict(k),
                 "kl_coef": float(self.kl_coef[k])}
        if self.ref_policy is not None:
            state["ref_policy"] = self.ref_policy.member_state(k)
        if self.obs_norm is not None:
            state["obs_norm"] = self.obs_norm.member_state(k)
        return state

    def load_member_state_dict(self, k: int, state: dict) -> None:
        self.policy.load_member_state(k, state["policy"])
        self.optimizer.load_member_state_dict(k, state["optimizer"])
        self.kl_coef[k] = float(state["kl_coef"])
        if self.ref_policy is not None and "ref_policy" in state:
            self.ref_policy.load_member_state(k, state["ref_policy"])
        if self.obs_norm is not None:
            self.obs_norm.load_member_state(k, state["obs_norm"])

    def state_dict(self) -> dict:
        """A solo agent's state (member 0 of a population of one)."""
        return self.member_state_dict(0)

    def load_state_dict(self, state: dict) -> None:
        self.load_member_state_dict(0, state)
