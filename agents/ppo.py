"""The PPO update: minibatch epochs over a rollout batch with the seeds' combined loss."""

from __future__ import annotations

import copy
from typing import Optional

import numpy as np
import torch

from agents.config import PPOConfig
from agents.losses import compute_ppo_total_loss
from agents.networks import ActorCritic, build_policy, kl_divergence
from agents.rollout import Batch

UPDATE_METRICS = ("policy_loss", "value_loss", "entropy", "total_loss", "clip_fraction", "approx_kl")


def explained_variance(values: torch.Tensor, returns: torch.Tensor) -> float:
    """1 − Var(R − V) / Var(R): 1 is a perfect critic, 0 no better than a constant; NaN if Var(R) = 0."""
    var_returns = returns.var(unbiased=False)
    if var_returns == 0:
        return float("nan")
    return float(1.0 - (returns - values).var(unbiased=False) / var_returns)


def normalize(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Zero mean, unit (population) std; a single sample becomes 0 instead of NaN."""
    return (x - x.mean()) / (x.std(unbiased=False) + eps)


def adapt_kl_coef(kl_coef: float, kl: float, kl_target: float) -> float:
    """Adaptive β of the PPO paper (§4): double when KL > 1.5·target, halve when KL < target/1.5."""
    if kl > 1.5 * kl_target:
        return kl_coef * 2.0
    if kl < kl_target / 1.5:
        return kl_coef / 2.0
    return kl_coef


class PPOAgent:
    """Policy, optimizer and (with a KL penalty) the frozen reference policy; ``update`` runs one PPO update."""

    def __init__(self, cfg: PPOConfig, obs_dim: int, action_dim: int, discrete: bool,
                 rng: np.random.Generator):
        self.cfg = cfg
        self.rng = rng
        self.policy: ActorCritic = build_policy(obs_dim, action_dim, discrete, cfg.policy, cfg.hidden_sizes,
                                                cfg.activation, cfg.init_log_std)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=cfg.learning_rate, eps=1e-5, foreach=True)
        self.kl_coef = float(cfg.kl_coef)
        self.use_kl = cfg.kl_coef > 0
        self.ref_policy: Optional[ActorCritic] = None
        if self.use_kl:
            self.ref_policy = copy.deepcopy(self.policy).requires_grad_(False)

    def set_reference(self, state_dict: dict) -> None:
        """Use the weights in ``state_dict`` (e.g. a loaded checkpoint's policy) as the frozen π_ref."""
        if self.ref_policy is not None:
            self.ref_policy.load_state_dict(state_dict)

    def set_learning_rate(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def update(self, batch: Batch) -> dict[str, float]:
        """``ppo_epochs`` passes of ``num_minibatches`` shuffled minibatches; returns the mean diagnostics."""
        cfg, policy = self.cfg, self.policy
        n = len(batch)
        ref_params = None
        if self.ref_policy is not None:
            with torch.no_grad():
                ref_params = self.ref_policy.dist_params(batch.obs)
            ref_log_std = self.ref_policy.log_std
        sums = dict.fromkeys(UPDATE_METRICS + (("kl_ref",) if self.use_kl else ()), 0.0)
        count = 0
        stop = False
        for _ in range(cfg.ppo_epochs):
            for idx in np.array_split(self.rng.permutation(n), cfg.num_minibatches):
                if len(idx) == 0:
                    continue
                mb_idx = torch.from_numpy(idx)
                mb = batch[mb_idx]
                ev = policy.evaluate(mb.obs, mb.actions)
                advantages = normalize(mb.advantages) if cfg.norm_adv else mb.advantages
                kl_ref = None
                if ref_params is not None:
                    kl_ref = kl_divergence(ev.params, ref_params[mb_idx], policy.log_std, ref_log_std)
                out = compute_ppo_total_loss(
                    ev.logprobs, mb.logprobs, advantages, ev.values, mb.returns,
                    clip_ratio=cfg.clip_ratio, vf_coef=cfg.vf_coef, entropy_coef=cfg.entropy_coef,
                    entropy=ev.entropy, old_values=mb.values, clip_value=cfg.clip_value_loss,
                    kl_ref=kl_ref, kl_coef=self.kl_coef,
                )
                if cfg.target_kl is not None and out["approx_kl"] > 1.5 * cfg.target_kl:
                    stop = True
                    break
                self.optimizer.zero_grad(set_to_none=True)
                out["total_loss"].backward()
                if cfg.max_grad_norm > 0:
                    torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm, foreach=True)
                self.optimizer.step()
                for key in sums:
                    sums[key] += out[key].item()
                count += 1
            if stop:
                break
        metrics = {key: value / max(count, 1) for key, value in sums.items()}
        metrics["minibatch_updates"] = count
        metrics["explained_variance"] = explained_variance(batch.values, batch.returns)
        if self.use_kl:
            metrics["kl_coef"] = self.kl_coef
            if cfg.kl_target is not None and count:
                self.kl_coef = adapt_kl_coef(self.kl_coef, metrics["kl_ref"], cfg.kl_target)
        return metrics

    # --- checkpointing -----------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = {"policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "kl_coef": self.kl_coef}
        if self.ref_policy is not None:
            state["ref_policy"] = self.ref_policy.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.kl_coef = float(state["kl_coef"])
        if self.ref_policy is not None and "ref_policy" in state:
            self.ref_policy.load_state_dict(state["ref_policy"])
