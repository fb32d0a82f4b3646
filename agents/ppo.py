"""The PPO update: minibatch epochs over a rollout batch with the seeds' combined loss.

The speed of the update on a CPU is per-call overhead, not arithmetic (two 64×64 MLPs, minibatches of ~128):
``FlatAdam`` keeps every parameter and gradient in one flat buffer so that the optimizer step and the
gradient-norm clip are a handful of tensor ops, and the loop reads its diagnostics back once per update.
"""

from __future__ import annotations

import copy
from typing import Iterable, Optional

import numpy as np
import torch

from agents.config import PPOConfig
from agents.losses import compute_ppo_total_loss
from agents.networks import ActorCritic, build_policy, kl_divergence
from agents.normalization import ObsNormalizer
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
    """The doubling/halving rule of the PPO paper's adaptive-KL variant (§4): double β when KL > 1.5·target, halve
    it when KL < target/1.5. The paper applies it to KL(π_old ‖ π_θ); here it steers β of the penalty to the
    frozen reference π_ref (RLHF's use of β, where Ziegler et al. 2019 use a proportional controller)."""
    if kl > 1.5 * kl_target:
        return kl_coef * 2.0
    if kl < kl_target / 1.5:
        return kl_coef / 2.0
    return kl_coef


class FlatAdam:
    """Adam with global grad-norm clipping over parameters that live in one flat buffer.

    The same arithmetic as ``torch.optim.Adam(foreach=True)`` followed by ``clip_grad_norm_`` (the clip's norm
    is taken over the flat gradient, equal up to float rounding), but:

    - each parameter's ``data`` and ``grad`` are re-pointed at views of two flat tensors, so a step is ~8 tensor
      ops whatever the number of layers, instead of per-parameter ops plus torch.optim's bookkeeping;
    - ``torch.optim`` is not touched: its first use imports ``torch._dynamo``, ~1.5–2 s of every run's start-up
      on this CPU (a third of a whole 50k-step CartPole run).

    ``zero_grad`` zeroes the flat gradient in place (the views must stay the parameters' ``.grad``); a ``.grad``
    that someone else replaced is copied back in before the step. ``state_dict`` has torch.optim.Adam's layout, so
    checkpoints load into either.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        self.params = [p for p in params if p.requires_grad]
        total = sum(p.numel() for p in self.params)
        self.flat = torch.empty(total)
        self.flat_grad = torch.zeros(total)
        self.exp_avg = torch.zeros(total)
        self.exp_avg_sq = torch.zeros(total)
        self.steps = 0
        self._slices: list[slice] = []
        offset = 0
        with torch.no_grad():
            for p in self.params:
                sl = slice(offset, offset + p.numel())
                self.flat[sl].copy_(p.reshape(-1))
                p.data = self.flat[sl].view_as(p)
                p.grad = self.flat_grad[sl].view_as(p)
                self._slices.append(sl)
                offset = sl.stop
        self._grads = [p.grad for p in self.params]
        self._data_ptrs = [p.data_ptr() for p in self.params]
        self.param_groups = [{"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": 0, "amsgrad": False,
                              "maximize": False, "foreach": True, "capturable": False, "differentiable": False,
                              "fused": None, "decoupled_weight_decay": False}]

    def zero_grad(self) -> None:
        self.flat_grad.zero_()

    def _sync_grads(self) -> None:
        """Put back the flat gradient's views if ``.grad`` was replaced (e.g. ``module.zero_grad()`` set None)."""
        for p, view in zip(self.params, self._grads):
            if p.grad is not view:
                view.copy_(p.grad if p.grad is not None else torch.zeros_like(view))
                p.grad = view

    @torch.no_grad()
    def clip_grad_norm_(self, max_norm: float) -> torch.Tensor:
        """Scale the gradient by min(1, max_norm / (‖g‖ + 1e-6)) as ``clip_grad_norm_``; returns ‖g‖."""
        self._sync_grads()
        total_norm = torch.linalg.vector_norm(self.flat_grad)
        self.flat_grad.mul_(torch.clamp(max_norm / (total_norm + 1e-6), max=1.0))
        return total_norm

    @torch.no_grad()
    def step(self) -> None:
        if [p.data_ptr() for p in self.params] != self._data_ptrs:
            raise RuntimeError("FlatAdam: a parameter's .data no longer lives in the flat buffer (e.g. after "
                               "module.to(...)): build the optimizer again after such a change")
        self._sync_grads()
        group = self.param_groups[0]
        beta1, beta2 = group["betas"]
        self.steps += 1
        self.exp_avg.lerp_(self.flat_grad, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(self.flat_grad, self.flat_grad, value=1 - beta2)
        step_size = -group["lr"] / (1 - beta1 ** self.steps)
        denom = self.exp_avg_sq.sqrt().div_((1 - beta2 ** self.steps) ** 0.5).add_(group["eps"])
        self.flat.addcdiv_(self.exp_avg, denom, value=step_size)

    def state_dict(self) -> dict:
        state = {}
        if self.steps:
            state = {i: {"step": torch.tensor(float(self.steps)), "exp_avg": self.exp_avg[sl].view_as(p).clone(),
                         "exp_avg_sq": self.exp_avg_sq[sl].view_as(p).clone()}
                     for i, (p, sl) in enumerate(zip(self.params, self._slices))}
        return {"state": state, "param_groups": [{**self.param_groups[0], "params": list(range(len(self.params)))}]}

    def load_state_dict(self, state_dict: dict) -> None:
        groups = state_dict["param_groups"]
        if len(groups) != 1 or len(groups[0]["params"]) != len(self.params):
            raise ValueError("loaded optimizer state does not match this network's parameters")
        state = state_dict["state"]
        with torch.no_grad():
            self.exp_avg.zero_()
            self.exp_avg_sq.zero_()
            self.steps = int(state[0]["step"]) if state else 0
            for i, (p, sl) in enumerate(zip(self.params, self._slices)):
                if state:
                    self.exp_avg[sl].copy_(state[i]["exp_avg"].view_as(p).reshape(-1))
                    self.exp_avg_sq[sl].copy_(state[i]["exp_avg_sq"].view_as(p).reshape(-1))
        self.param_groups[0].update({k: v for k, v in groups[0].items() if k != "params"})


class PPOAgent:
    """Policy, optimizer and (with a KL penalty) the frozen reference policy; ``update`` runs one PPO update."""

    def __init__(self, cfg: PPOConfig, obs_dim: int, action_dim: int, discrete: bool,
                 rng: np.random.Generator):
        self.cfg = cfg
        self.rng = rng
        self.policy: ActorCritic = build_policy(obs_dim, action_dim, discrete, **cfg.network())
        self.optimizer = FlatAdam(self.policy.parameters(), lr=cfg.learning_rate, eps=1e-5)
        self.obs_norm: Optional[ObsNormalizer] = ObsNormalizer(obs_dim, cfg.clip_obs) if cfg.normalize_obs else None
        """Observation statistics: part of what defines the policy (checkpoints and evaluation carry them)."""
        self.kl_coef = float(cfg.kl_coef)
        self.use_kl = cfg.kl_coef > 0
        self.ref_policy: Optional[ActorCritic] = None
        if self.use_kl:
            self.ref_policy = copy.deepcopy(self.policy).requires_grad_(False)

    def start_from(self, agent_state: dict) -> None:
        """Fine-tuning: π_θ and the critic (and the observation statistics, if both normalise) start from
        ``agent_state`` (a checkpoint's ``agent``), and so does the default reference π_ref of the KL penalty. The
        optimizer starts fresh."""
        self.policy.load_state_dict(agent_state["policy"])  # copied into the parameters: they stay in FlatAdam's buffer
        if self.ref_policy is not None:
            self.ref_policy.load_state_dict(agent_state["policy"])
        if self.obs_norm is not None and agent_state.get("obs_norm") is not None:
            self.obs_norm.load_statistics(agent_state["obs_norm"])  # they go on learning from the new run's data

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
        keys = UPDATE_METRICS + (("kl_ref",) if self.use_kl else ())
        per_minibatch: list[torch.Tensor] = []
        count = 0
        stop = False
        for _ in range(cfg.ppo_epochs):
            for idx in np.array_split(self.rng.permutation(n), cfg.num_minibatches):
                if len(idx) == 0:
                    continue
                mb_idx = torch.from_numpy(idx)
                mb = batch[mb_idx]
                ev = policy.evaluate(mb.obs, mb.actions)
                advantages = normalize(mb.advantages) if cfg.norm_adv and cfg.advantage == "gae" else mb.advantages
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
                self.optimizer.zero_grad()
                out["total_loss"].backward()
                if cfg.max_grad_norm > 0:
                    self.optimizer.clip_grad_norm_(cfg.max_grad_norm)
                self.optimizer.step()
                per_minibatch.append(torch.stack([out[key].detach() for key in keys]))
                count += 1
            if stop:
                break
        # one read-back per update instead of one .item() per metric and minibatch
        means = torch.stack(per_minibatch).double().mean(0).tolist() if per_minibatch else [0.0] * len(keys)
        metrics = dict(zip(keys, means))
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
        if self.obs_norm is not None:
            state["obs_norm"] = self.obs_norm.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.kl_coef = float(state["kl_coef"])
        if self.ref_policy is not None and "ref_policy" in state:
            self.ref_policy.load_state_dict(state["ref_policy"])
        if self.obs_norm is not None:
            self.obs_norm.load_state_dict(state["obs_norm"])
