"""The PPO loss terms, each a small pure function of tensors.

``compute_ppo_loss`` (the clipped surrogate), ``compute_value_loss``, ``compute_entropy`` and
``compute_ppo_total_loss``: the objective L^{CLIP+VF+S} of the PPO paper (Schulman et al. 2017, "Proximal Policy
Optimization Algorithms", §3 and §5), written as a loss to minimise, with ``clip_ratio`` = ε, ``vf_coef`` = c₁ and
``entropy_coef`` = c₂. The distribution helpers at the bottom (categorical and diagonal Gaussian) give the
log-probabilities, entropies and KL divergences that the losses consume, so the same losses serve discrete and
continuous actions.

**Population axis.** Every reduction is over the last (sample) axis: 1-D inputs give a scalar, as in the paper's
formulas; ``[P, B]`` inputs (P members of a population, B samples each) give one value per member, ``[P]``. The
coefficients (``clip_ratio``, ``vf_coef``, ``entropy_coef``, ``kl_coef``) may be floats or per-member ``[P]``
tensors. ``weights`` (optional, ``[..., B]``, each row summing to 1) turns the means into weighted means: a
population pads members whose minibatches are shorter with weight-0 samples.
"""

from __future__ import annotations

import math
from typing import Optional, Union

import torch
import torch.nn.functional as F

Tensor = torch.Tensor
Coef = Union[float, Tensor]


def per_member(coef: Coef, like: Tensor) -> Coef:
    """A per-member ``[P]`` coefficient shaped to broadcast against ``like`` (``[P, B, …]``); floats unchanged."""
    if isinstance(coef, Tensor) and coef.ndim and like.ndim > coef.ndim:
        return coef.reshape(coef.shape + (1,) * (like.ndim - coef.ndim))
    return coef


def sample_mean(x: Tensor, weights: Optional[Tensor] = None) -> Tensor:
    """Mean over the last (sample) axis; with ``weights`` (rows summing to 1) the weighted mean."""
    return x.mean(-1) if weights is None else (x * weights).sum(-1)


def probability_ratio(logprobs: Tensor, old_logprobs: Tensor) -> Tensor:
    """r = π_new / π_old, computed in log space: exp(log π_new − log π_old)."""
    return torch.exp(logprobs - old_logprobs)


def _clip_band(ratio: Tensor, clip_ratio: Coef) -> Tensor:
    eps = per_member(clip_ratio, ratio)
    return torch.clamp(ratio, 1.0 - eps, 1.0 + eps)


def compute_ppo_loss(
    logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, clip_ratio: Coef = 0.2, *,
    weights: Optional[Tensor] = None,
) -> Tensor:
    """Clipped surrogate loss −mean(min(r·A, clip(r, 1−ε, 1+ε)·A)), to minimise.

    ``clip_ratio`` is ε. Outside the trust band the min picks the clipped term only where that caps the gain
    (r > 1+ε with A > 0, r < 1−ε with A < 0), and there the gradient with respect to the log-probs is zero;
    moves in the harmful direction are never clipped (the PPO paper, §3, Figure 1).
    """
    ratio = probability_ratio(logprobs, old_logprobs)
    unclipped = ratio * advantages
    clipped = _clip_band(ratio, clip_ratio) * advantages
    return -sample_mean(torch.min(unclipped, clipped), weights)


def compute_value_loss(
    values: Tensor,
    returns: Tensor,
    old_values: Optional[Tensor] = None,
    clip_value: bool = True,
    clip_ratio: Coef = 0.2,
    *,
    weights: Optional[Tensor] = None,
) -> Tensor:
    """Value loss: mean squared error, or (with ``old_values`` and ``clip_value``) the clipped variant.

    Clipped: V_clip = V_old + clip(V − V_old, −ε, +ε); loss = mean(max((V − R)², (V_clip − R)²)). ε is
    ``clip_ratio`` and the loss is the plain mean of squared errors (no factor ½).
    """
    loss_unclipped = (values - returns) ** 2
    if clip_value and old_values is not None:
        eps = per_member(clip_ratio, values)
        value_clipped = old_values + torch.clamp(values - old_values, -eps, eps)
        loss_clipped = (value_clipped - returns) ** 2
        return sample_mean(torch.max(loss_unclipped, loss_clipped), weights)
    return sample_mean(loss_unclipped, weights)


def log_softmax(logits: Tensor) -> Tensor:
    """``F.log_softmax(logits, dim=-1)``, the same values. PyTorch's CPU kernel vectorises along the softmax axis,
    slow for a policy's few actions; a population's logits are a transposed view of ``[P, A, B]`` memory
    (``agents.networks``), and taken along that layout's action axis the kernel vectorises over the samples."""
    if logits.dim() >= 2 and logits.stride(-1) != 1 and logits.transpose(-1, -2).is_contiguous():
        return F.log_softmax(logits.transpose(-1, -2), dim=-2).transpose(-1, -2)
    return F.log_softmax(logits, dim=-1)


def _entropy_of(log_probs: Tensor) -> Tensor:
    return -(log_probs.exp() * log_probs).sum(dim=-1)


def _log_prob_of(log_probs: Tensor, actions: Tensor) -> Tensor:
    return log_probs.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)


def categorical_entropy(logits: Tensor) -> Tensor:
    """Per-sample entropy −Σ p log p of softmax(logits) over the last axis (log-softmax, so stable)."""
    return _entropy_of(log_softmax(logits))


def compute_entropy(logits: Tensor, *, weights: Optional[Tensor] = None) -> Tensor:
    """Mean categorical entropy of a batch of raw logits; at most log K for K actions (uniform policy)."""
    return sample_mean(categorical_entropy(logits), weights)


def clip_fraction(ratio: Tensor, clip_ratio: Coef, *, weights: Optional[Tensor] = None) -> Tensor:
    """Share of samples whose ratio left the trust band: mean(|r − 1| > ε)."""
    return sample_mean(((ratio - 1.0).abs() > per_member(clip_ratio, ratio)).to(ratio.dtype), weights)


def approx_kl(logprobs: Tensor, old_logprobs: Tensor, *, weights: Optional[Tensor] = None) -> Tensor:
    """Low-variance estimator of KL(π_old ‖ π_new): mean((r − 1) − log r), ≥ 0.

    r − 1 is computed as expm1(log r), so a ratio within rounding of 1 gives ~(log r)²/2, not a tiny negative.
    """
    log_ratio = logprobs - old_logprobs
    return sample_mean(torch.expm1(log_ratio) - log_ratio, weights)


def compute_ppo_total_loss(
    policy_logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    values: Tensor,
    returns: Tensor,
    logits: Optional[Tensor] = None,
    clip_ratio: Coef = 0.2,
    vf_coef: Coef = 0.5,
    entropy_coef: Coef = 0.01,
    *,
    entropy: Optional[Tensor] = None,
    old_values: Optional[Tensor] = None,
    clip_value: bool = False,
    kl_ref: Optional[Tensor] = None,
    kl_coef: Coef = 0.0,
    weights: Optional[Tensor] = None,
) -> dict[str, Tensor]:
    """total = policy_loss + vf_coef·value_loss − entropy_coef·entropy (+ kl_coef·kl_ref).

    The entropy comes from ``logits`` (categorical policies) or is passed as ``entropy`` (per-sample, or already a
    mean per member, e.g. a Gaussian's). ``old_values`` with ``clip_value`` switches to the clipped value loss.
    ``kl_ref`` is the per-sample KL(π_θ ‖ π_ref) to a frozen reference policy (the RLHF-style penalty), averaged
    and weighted by ``kl_coef`` (β). With a population axis every output is ``[P]``.

    Returns ``total_loss``, ``policy_loss``, ``value_loss``, ``entropy`` (with gradients) and the diagnostics
    ``clip_fraction`` and ``approx_kl`` (without), plus ``kl_ref`` when given.
    """
    if entropy is None:
        if logits is None:
            raise ValueError("compute_ppo_total_loss needs logits or entropy")
        entropy = compute_entropy(logits, weights=weights)
    elif entropy.ndim == policy_logprobs.ndim:  # per sample
        entropy = sample_mean(entropy, weights)
    policy_loss = compute_ppo_loss(policy_logprobs, old_logprobs, advantages, clip_ratio, weights=weights)
    value_loss = compute_value_loss(values, returns, old_values, clip_value=clip_value, clip_ratio=clip_ratio,
                                    weights=weights)
    total_loss = policy_loss + vf_coef * value_loss - entropy_coef * entropy
    out = {"policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy}
    if kl_ref is not None:
        kl_ref = sample_mean(kl_ref, weights)
        total_loss = total_loss + kl_coef * kl_ref
        out["kl_ref"] = kl_ref
    with torch.no_grad():
        ratio = probability_ratio(policy_logprobs, old_logprobs)
        out["clip_fraction"] = clip_fraction(ratio, clip_ratio, weights=weights)
        out["approx_kl"] = approx_kl(policy_logprobs, old_logprobs, weights=weights)
    out["total_loss"] = total_loss
    return out


# --- distributions -------------------------------------------------------------------------------------------

def categorical_log_prob(logits: Tensor, actions: Tensor) -> Tensor:
    """log π(a) of integer ``actions`` under softmax(``logits``)."""
    return _log_prob_of(log_softmax(logits), actions)


def categorical_log_prob_and_entropy(logits: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
    """``categorical_log_prob`` and ``categorical_entropy`` from one log-softmax (what a minibatch step needs)."""
    log_probs = log_softmax(logits)
    return _log_prob_of(log_probs, actions), _entropy_of(log_probs)


def categorical_kl(logits_p: Tensor, logits_q: Tensor) -> Tensor:
    """Per-sample KL(p ‖ q) = Σ p (log p − log q) between two softmax policies."""
    log_p = log_softmax(logits_p)
    log_q = log_softmax(logits_q)
    return (log_p.exp() * (log_p - log_q)).sum(dim=-1)


_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


def gaussian_log_prob(mean: Tensor, log_std: Tensor, actions: Tensor) -> Tensor:
    """log N(a; μ, diag σ²), summed over the action dimensions (the last axis)."""
    z = (actions - mean) * torch.exp(-log_std)
    return (-0.5 * z * z - log_std - _LOG_SQRT_2PI).sum(dim=-1)


def gaussian_entropy(log_std: Tensor) -> Tensor:
    """Entropy of a diagonal Gaussian, Σ (½ + ½ log 2π + log σ), over the last axis."""
    return (0.5 + _LOG_SQRT_2PI + log_std).sum(dim=-1)


def gaussian_kl(mean_p: Tensor, log_std_p: Tensor, mean_q: Tensor, log_std_q: Tensor) -> Tensor:
    """Per-sample KL(p ‖ q) of two diagonal Gaussians, summed over the last axis."""
    var_ratio = torch.exp(2.0 * (log_std_p - log_std_q))
    t = ((mean_p - mean_q) * torch.exp(-log_std_q)) ** 2
    return 0.5 * (var_ratio + t - 1.0 - 2.0 * (log_std_p - log_std_q)).sum(dim=-1)
