"""The PPO loss functions (agents.losses) against hand-worked tables and independent reference computations."""

import inspect
import math

import pytest
import torch
from torch.distributions import Categorical, Normal, kl_divergence

from agents import (
    approx_kl,
    categorical_kl,
    clip_fraction,
    compute_entropy,
    compute_ppo_loss,
    compute_ppo_total_loss,
    compute_value_loss,
    gaussian_entropy,
    gaussian_kl,
    gaussian_log_prob,
)

F64 = torch.float64

# Exercise 1 of experiments/clip_exercises.py, ε = 0.2: its hand-worked solution tables as literals.
# Columns: r, r·A, clip(r, 0.8, 1.2), clip·A, L^CLIP = min(…), clipped?
CLIP_TABLE_A_POS = [
    (0.5, 0.5, 0.8, 0.8, 0.5, "no"),
    (0.8, 0.8, 0.8, 0.8, 0.8, "no"),
    (1.0, 1.0, 1.0, 1.0, 1.0, "no"),
    (1.1, 1.1, 1.1, 1.1, 1.1, "no"),
    (1.2, 1.2, 1.2, 1.2, 1.2, "no"),
    (1.3, 1.3, 1.2, 1.2, 1.2, "yes"),
    (1.5, 1.5, 1.2, 1.2, 1.2, "yes"),
    (2.0, 2.0, 1.2, 1.2, 1.2, "yes"),
]
CLIP_TABLE_A_NEG = [
    (0.5, -0.5, 0.8, -0.8, -0.8, "yes"),
    (0.7, -0.7, 0.8, -0.8, -0.8, "yes"),
    (0.8, -0.8, 0.8, -0.8, -0.8, "boundary"),
    (1.0, -1.0, 1.0, -1.0, -1.0, "no"),
    (1.2, -1.2, 1.2, -1.2, -1.2, "boundary"),
    (1.5, -1.5, 1.2, -1.2, -1.5, "no"),
    (2.0, -2.0, 1.2, -1.2, -2.0, "no"),
]
CLIP_TABLES = [(1.0, CLIP_TABLE_A_POS), (-1.0, CLIP_TABLE_A_NEG)]
CLIP_RATIO = 0.2


def _one_sample(r: float, advantage: float, clip_ratio: float = CLIP_RATIO):
    """(L^CLIP, ∂L^CLIP/∂log π) of one sample with ratio r, via compute_ppo_loss and autograd."""
    logprob = torch.tensor([math.log(r)], dtype=F64, requires_grad=True)
    loss = compute_ppo_loss(logprob, torch.zeros(1, dtype=F64), torch.tensor([advantage], dtype=F64), clip_ratio)
    (grad,) = torch.autograd.grad(-loss, logprob)
    return -loss.item(), grad.item()


# --- exercise 1 tables --------------------------------------------------------------------------------------

@pytest.mark.parametrize("advantage,table", CLIP_TABLES, ids=["A=+1", "A=-1"])
def test_clip_table_is_consistent(advantage, table):
    """Guard against transcription slips: each literal row obeys the definitions it claims."""
    for r, r_a, clip_r, clip_a, l_clip, _ in table:
        assert r_a == pytest.approx(r * advantage)
        assert clip_r == pytest.approx(min(max(r, 0.8), 1.2))
        assert clip_a == pytest.approx(clip_r * advantage)
        assert l_clip == pytest.approx(min(r_a, clip_a))


@pytest.mark.parametrize("advantage,table", CLIP_TABLES, ids=["A=+1", "A=-1"])
def test_clipped_objective_matches_the_clip_table(advantage, table):
    for r, r_a, _, clip_a, l_clip, status in table:
        value, grad = _one_sample(r, advantage)
        assert value == pytest.approx(l_clip, abs=1e-12), f"r={r}"
        if status == "yes":
            # The min picks the clipped term, strictly below r·A: the objective is flat, the gradient zero.
            assert clip_a < r_a
            assert grad == 0.0, f"r={r}: clipped row must have zero gradient"
        elif status == "boundary" or r in (0.8, 1.2):
            # r on a clip bound (the A=+1 table writes these as 'no'): both terms equal. At the knee the
            # derivative is one-sided, so autograd returns one of the two sides.
            assert clip_a == pytest.approx(r_a)
            assert grad == pytest.approx(r_a, abs=1e-12) or grad == 0.0, f"r={r}"
        else:
            # The unclipped term is active: d(r·A)/d log π = r·A.
            assert grad == pytest.approx(r_a, abs=1e-12), f"r={r}"
            assert grad != 0.0


@pytest.mark.parametrize("advantage,table", CLIP_TABLES, ids=["A=+1", "A=-1"])
def test_ppo_loss_is_minus_mean_of_the_table(advantage, table):
    ratios = torch.tensor([row[0] for row in table], dtype=F64)
    logprobs = torch.log(ratios) - 1.3  # any common old log-prob: only the difference matters
    old_logprobs = torch.full_like(ratios, -1.3)
    advantages = torch.full_like(ratios, advantage)
    expected = -sum(row[4] for row in table) / len(table)
    assert compute_ppo_loss(logprobs, old_logprobs, advantages, CLIP_RATIO).item() == pytest.approx(expected,
                                                                                                      abs=1e-12)
    # the default clip_ratio is 0.2, the PPO paper's ε (Schulman et al. 2017, §6.1)
    assert compute_ppo_loss(logprobs, old_logprobs, advantages).item() == pytest.approx(expected, abs=1e-12)


def test_ppo_loss_mixed_batch_by_hand():
    # r = [1.5, 0.9, 0.6], A = [1, 0.5, -1]: min(1.5, 1.2)=1.2, min(0.45, 0.45)=0.45, min(-0.6, -0.8)=-0.8
    old = torch.log(torch.full((3,), 1 / 3, dtype=F64))
    new = torch.log(torch.tensor([0.5, 0.3, 0.2], dtype=F64))
    adv = torch.tensor([1.0, 0.5, -1.0], dtype=F64)
    assert compute_ppo_loss(new, old, adv).item() == pytest.approx(-(1.2 + 0.45 - 0.8) / 3, abs=1e-12)
    # a wider clip (ε = 0.5) no longer caps r = 1.5: min(1.5, 1.5)=1.5; r = 0.6 → min(-0.6, -0.6) = -0.6
    assert compute_ppo_loss(new, old, adv, clip_ratio=0.5).item() == pytest.approx(-(1.5 + 0.45 - 0.6) / 3,
                                                                                  abs=1e-12)


@pytest.mark.parametrize("advantage", [1.0, -1.0, 2.5, -0.3])
def test_gradient_is_zero_exactly_where_the_objective_is_flat(advantage):
    """The PPO paper's Figure 1 (Schulman et al. 2017, §3): A > 0 flat for r > 1+ε, A < 0 flat for r < 1−ε;
    everywhere else d loss/d log π = −r·A/n ≠ 0."""
    ratios = torch.cat([torch.linspace(0.05, 0.79, 40, dtype=F64), torch.linspace(0.81, 1.19, 20, dtype=F64),
                        torch.linspace(1.21, 3.0, 40, dtype=F64)])
    logprobs = torch.log(ratios).requires_grad_(True)
    old_logprobs = torch.zeros_like(ratios)
    loss = compute_ppo_loss(logprobs, old_logprobs, torch.full_like(ratios, advantage), CLIP_RATIO)
    (grad,) = torch.autograd.grad(loss, logprobs)
    flat = ratios > 1.2 if advantage > 0 else ratios < 0.8
    assert torch.all(grad[flat] == 0.0)
    assert torch.all(grad[~flat] != 0.0)
    assert torch.allclose(grad[~flat], -ratios[~flat] * advantage / len(ratios), rtol=1e-12, atol=0)


def test_zero_advantage_gives_zero_gradient_everywhere():
    logprobs = torch.log(torch.tensor([0.5, 1.0, 1.7], dtype=F64)).requires_grad_(True)
    loss = compute_ppo_loss(logprobs, torch.zeros(3, dtype=F64), torch.zeros(3, dtype=F64))
    (grad,) = torch.autograd.grad(loss, logprobs)
    assert loss.item() == 0.0
    assert torch.all(grad == 0.0)


# --- value loss ---------------------------------------------------------------------------------------------

VALUES = torch.tensor([1.0, 2.0, 0.0, 1.0], dtype=F64)
OLD_VALUES = torch.tensor([0.5, 2.0, 0.3, 0.5], dtype=F64)
RETURNS = torch.tensor([2.0, 1.0, -1.0, 0.6], dtype=F64)
# by hand, ε = 0.2: V_clip = V_old + clip(V − V_old, ±0.2) = [0.7, 2.0, 0.1, 0.7]
#   (V − R)²      = [1.00, 1.00, 1.00, 0.16]
#   (V_clip − R)² = [1.69, 1.00, 1.21, 0.01]
#   max           = [1.69, 1.00, 1.21, 0.16] → mean 4.06 / 4
CLIPPED_BY_HAND = 4.06 / 4
MSE_BY_HAND = 3.16 / 4


def test_value_loss_clipped_by_hand():
    assert compute_value_loss(VALUES, RETURNS, OLD_VALUES).item() == pytest.approx(CLIPPED_BY_HAND, abs=1e-12)
    assert compute_value_loss(VALUES, RETURNS, OLD_VALUES, clip_value=True, clip_ratio=0.2).item() == \
        pytest.approx(CLIPPED_BY_HAND, abs=1e-12)
    # ε = 1: no difference is clipped, the loss is the plain MSE
    assert compute_value_loss(VALUES, RETURNS, OLD_VALUES, clip_ratio=1.0).item() == pytest.approx(MSE_BY_HAND,
                                                                                                  abs=1e-12)


def test_value_loss_unclipped_is_plain_mse_without_half():
    assert compute_value_loss(VALUES, RETURNS).item() == pytest.approx(MSE_BY_HAND, abs=1e-12)
    assert compute_value_loss(VALUES, RETURNS, OLD_VALUES, clip_value=False).item() == \
        pytest.approx(MSE_BY_HAND, abs=1e-12)
    # one error of 2: (3 − 1)² = 4, not ½·4
    assert compute_value_loss(torch.tensor([3.0]), torch.tensor([1.0])).item() == pytest.approx(4.0)


def test_value_clip_is_an_absolute_range():
    # V_old = 10, V = 10.5, R = 12: absolute clip → V_clip = 10.2, (10.2 − 12)² = 3.24 > (10.5 − 12)² = 2.25.
    # (A relative ±20 % clip would allow 10.5 and give 2.25.)
    loss = compute_value_loss(torch.tensor([10.5], dtype=F64), torch.tensor([12.0], dtype=F64),
                              torch.tensor([10.0], dtype=F64), clip_ratio=0.2)
    assert loss.item() == pytest.approx(3.24, abs=1e-12)


# --- entropy ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [2, 3, 1000])
def test_entropy_of_uniform_logits_is_log_k(k):
    assert compute_entropy(torch.zeros(4, k, dtype=F64)).item() == pytest.approx(math.log(k), abs=1e-12)
    # softmax is shift-invariant: any constant row is uniform
    assert compute_entropy(torch.full((2, k), 7.5, dtype=F64)).item() == pytest.approx(math.log(k), abs=1e-12)


def test_entropy_is_the_batch_mean_and_matches_torch_categorical():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [10.0, 0.0, 0.0, 0.0], [1.0, -2.0, 0.5, 3.0]], dtype=F64)
    per_row = Categorical(logits=logits).entropy()
    assert compute_entropy(logits).item() == pytest.approx(per_row.mean().item(), abs=1e-12)
    # hand value of the peaked row: p = [e¹⁰, 1, 1, 1] / (e¹⁰ + 3)
    z = math.exp(10) + 3
    peaked = -(math.exp(10) / z * math.log(math.exp(10) / z) + 3 / z * math.log(1 / z))
    assert compute_entropy(logits[1:2]).item() == pytest.approx(peaked, abs=1e-12)
    assert peaked < 0.01


def test_log_prob_and_entropy_from_one_log_softmax_match_torch_categorical():
    """What a minibatch step uses: both from one log-softmax, per sample, with a population axis."""
    from agents.losses import categorical_log_prob_and_entropy

    logits = torch.tensor([[[0.0, 0.0, 0.0], [10.0, 0.0, -1.0]], [[1.0, -2.0, 0.5], [3.0, 3.0, -4.0]]], dtype=F64)
    actions = torch.tensor([[2, 0], [1, 0]])
    logprobs, entropy = categorical_log_prob_and_entropy(logits, actions)
    dist = Categorical(logits=logits)
    torch.testing.assert_close(logprobs, dist.log_prob(actions), rtol=0, atol=1e-12)
    torch.testing.assert_close(entropy, dist.entropy(), rtol=0, atol=1e-12)


def test_log_softmax_of_a_transposed_view_is_torchs_with_torchs_gradient():
    """A population's logits come as a transposed view of [P, A, B] memory; other strided views and contiguous
    logits take torch's own path. Values and gradients are those of F.log_softmax on a contiguous copy."""
    from agents.losses import categorical_log_prob_and_entropy, log_softmax

    g = torch.Generator().manual_seed(0)
    memory = torch.randn(3, 2, 5, generator=g) * 4  # [P, A, B]
    wide = torch.randn(3, 5, 6, generator=g)
    for logits in (memory.transpose(1, 2), memory.transpose(1, 2).contiguous(), wide[..., ::3], memory[0].t()):
        out = log_softmax(logits)
        assert out.shape == logits.shape
        torch.testing.assert_close(out, torch.nn.functional.log_softmax(logits.contiguous(), dim=-1), rtol=0,
                                   atol=1e-6)
    leaf = memory.clone().requires_grad_(True)
    dense = memory.transpose(1, 2).contiguous().requires_grad_(True)
    weights = torch.randn(3, 5, 2, generator=g)
    (grad,) = torch.autograd.grad((log_softmax(leaf.transpose(1, 2)) * weights).sum(), leaf)
    (expected,) = torch.autograd.grad((torch.nn.functional.log_softmax(dense, dim=-1) * weights).sum(), dense)
    torch.testing.assert_close(grad.transpose(1, 2), expected, rtol=0, atol=1e-6)
    actions = torch.tensor([[0, 1, 1, 0, 1], [1, 1, 0, 0, 0], [0, 0, 0, 1, 1]])
    logprobs, entropy = categorical_log_prob_and_entropy(memory.transpose(1, 2), actions)
    dist = Categorical(logits=memory.transpose(1, 2).contiguous())
    torch.testing.assert_close(logprobs, dist.log_prob(actions), rtol=0, atol=1e-6)
    torch.testing.assert_close(entropy, dist.entropy(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_entropy_is_stable_for_huge_logits(dtype):
    logits = torch.tensor([[1e4, 0.0, -1e4], [1e4, 1e4, 0.0], [-1e4, -1e4, -1e4]], dtype=dtype, requires_grad=True)
    entropy = compute_entropy(logits)
    assert torch.isfinite(entropy)
    # rows: one-hot (0), two equal arms (log 2), uniform (log 3)
    assert entropy.item() == pytest.approx((0.0 + math.log(2) + math.log(3)) / 3, abs=1e-6)
    (grad,) = torch.autograd.grad(entropy, logits)
    assert torch.all(torch.isfinite(grad))


# --- total loss ---------------------------------------------------------------------------------------------

def _total_inputs():
    old = torch.log(torch.full((3,), 1 / 3, dtype=F64))
    new = torch.log(torch.tensor([0.5, 0.3, 0.2], dtype=F64)).requires_grad_(True)  # r = [1.5, 0.9, 0.6]
    adv = torch.tensor([1.0, 0.5, -1.0], dtype=F64)
    values = torch.tensor([0.0, 1.0, 2.0], dtype=F64, requires_grad=True)
    returns = torch.tensor([1.0, 1.0, 0.0], dtype=F64)
    logits = torch.zeros(3, 4, dtype=F64, requires_grad=True)
    return new, old, adv, values, returns, logits


POLICY_BY_HAND = -(1.2 + 0.45 - 0.8) / 3
VALUE_BY_HAND = (1.0 + 0.0 + 4.0) / 3
ENTROPY_BY_HAND = math.log(4)


def test_total_loss_defaults():
    defaults = inspect.signature(compute_ppo_total_loss).parameters
    assert (defaults["clip_ratio"].default, defaults["vf_coef"].default, defaults["entropy_coef"].default) == \
        (0.2, 0.5, 0.01)
    out = compute_ppo_total_loss(*_total_inputs())
    assert out["policy_loss"].item() == pytest.approx(POLICY_BY_HAND, abs=1e-12)
    assert out["value_loss"].item() == pytest.approx(VALUE_BY_HAND, abs=1e-12)
    assert out["entropy"].item() == pytest.approx(ENTROPY_BY_HAND, abs=1e-12)
    expected = POLICY_BY_HAND + 0.5 * VALUE_BY_HAND - 0.01 * ENTROPY_BY_HAND
    assert out["total_loss"].item() == pytest.approx(expected, abs=1e-12)


def test_total_loss_coefficients_and_gradients():
    new, old, adv, values, returns, logits = _total_inputs()
    out = compute_ppo_total_loss(new, old, adv, values, returns, logits, clip_ratio=0.2, vf_coef=2.0,
                                 entropy_coef=0.1)
    expected = POLICY_BY_HAND + 2.0 * VALUE_BY_HAND - 0.1 * ENTROPY_BY_HAND
    assert out["total_loss"].item() == pytest.approx(expected, abs=1e-12)
    out["total_loss"].backward()
    # value gradient: vf_coef · 2(V − R)/n = 2 · 2 · [−1, 0, 2] / 3
    assert torch.allclose(values.grad, torch.tensor([-4.0, 0.0, 8.0], dtype=F64) / 3)
    # policy gradient: r = 1.5 (A = +1) is clipped → 0; r = 0.9 → −r·A/n; r = 0.6 (A = −1) is clipped → 0
    assert torch.allclose(new.grad, torch.tensor([0.0, -0.9 * 0.5 / 3, 0.0], dtype=F64))


def test_total_loss_diagnostics():
    out = compute_ppo_total_loss(*_total_inputs())
    r = [1.5, 0.9, 0.6]
    # |r − 1| = [0.5, 0.1, 0.4] > 0.2 for two of three samples
    assert out["clip_fraction"].item() == pytest.approx(2 / 3)
    assert out["approx_kl"].item() == pytest.approx(sum((x - 1) - math.log(x) for x in r) / 3, abs=1e-12)
    assert not out["clip_fraction"].requires_grad and not out["approx_kl"].requires_grad
    assert out["total_loss"].requires_grad


def test_clip_fraction_counts_ratios_outside_the_band():
    # The tables' ratios: strictly outside [0.8, 1.2] are 0.5, 1.3, 1.5, 2.0 (A=+1 rows), 0.5, 0.7, 1.5, 2.0
    # (A=−1 rows). For A=−1 the 1.5 and 2.0 rows count although L^CLIP keeps their unclipped term: clip_fraction
    # measures the ratio, not which term the min picks.
    for (_, table), outside in zip(CLIP_TABLES, (4, 4)):
        ratios = torch.tensor([row[0] for row in table], dtype=F64)
        assert clip_fraction(ratios, 0.2).item() == pytest.approx(outside / len(table))
    assert clip_fraction(torch.tensor([0.95, 1.05, 1.15]), 0.1).item() == pytest.approx(1 / 3)


def test_approx_kl_by_hand():
    old = torch.log(torch.tensor([0.2, 0.5], dtype=F64))
    new = torch.log(torch.tensor([0.4, 0.25], dtype=F64))  # r = [2, 0.5]
    expected = ((2 - 1 - math.log(2)) + (0.5 - 1 - math.log(0.5))) / 2
    assert approx_kl(new, old).item() == pytest.approx(expected, abs=1e-12)
    assert approx_kl(old, old).item() == 0.0


# --- distributions ------------------------------------------------------------------------------------------

def _gaussians():
    g = torch.Generator().manual_seed(0)
    mean_p, mean_q, actions = (torch.randn(5, 3, generator=g, dtype=F64) for _ in range(3))
    log_std_p = torch.randn(5, 3, generator=g, dtype=F64) * 0.5
    log_std_q = torch.randn(3, generator=g, dtype=F64) * 0.5  # broadcast state-independent log σ
    return mean_p, log_std_p, mean_q, log_std_q, actions


def test_gaussian_log_prob_matches_torch_normal():
    mean, log_std, _, _, actions = _gaussians()
    expected = Normal(mean, log_std.exp()).log_prob(actions).sum(-1)
    assert torch.allclose(gaussian_log_prob(mean, log_std, actions), expected, atol=1e-12)
    # by hand: log N(0; 0, 1) = −½ log 2π
    assert gaussian_log_prob(torch.zeros(1), torch.zeros(1), torch.zeros(1)).item() == \
        pytest.approx(-0.5 * math.log(2 * math.pi), abs=1e-6)


def test_gaussian_entropy_matches_torch_normal():
    _, log_std, _, log_std_q, _ = _gaussians()
    expected = Normal(torch.zeros_like(log_std), log_std.exp()).entropy().sum(-1)
    assert torch.allclose(gaussian_entropy(log_std), expected, atol=1e-12)
    assert gaussian_entropy(log_std_q).item() == pytest.approx(
        Normal(torch.zeros(3, dtype=F64), log_std_q.exp()).entropy().sum().item(), abs=1e-12)


def test_gaussian_kl_matches_torch_kl_divergence():
    mean_p, log_std_p, mean_q, log_std_q, _ = _gaussians()
    expected = kl_divergence(Normal(mean_p, log_std_p.exp()), Normal(mean_q, log_std_q.exp())).sum(-1)
    assert torch.allclose(gaussian_kl(mean_p, log_std_p, mean_q, log_std_q), expected, atol=1e-12)
    # by hand: KL(N(0,1) ‖ N(1,1)) = ½; KL(p ‖ p) = 0
    zero = torch.zeros(1, dtype=F64)
    assert gaussian_kl(zero, zero, zero + 1, zero).item() == pytest.approx(0.5, abs=1e-12)
    assert torch.allclose(gaussian_kl(mean_p, log_std_p, mean_p, log_std_p), torch.zeros(5, dtype=F64))


def test_categorical_kl_matches_torch_kl_divergence():
    g = torch.Generator().manual_seed(1)
    logits_p = torch.randn(6, 4, generator=g, dtype=F64) * 2
    logits_q = torch.randn(6, 4, generator=g, dtype=F64) * 2
    expected = kl_divergence(Categorical(logits=logits_p), Categorical(logits=logits_q))
    assert torch.allclose(categorical_kl(logits_p, logits_q), expected, atol=1e-12)
    assert torch.allclose(categorical_kl(logits_p, logits_p), torch.zeros(6, dtype=F64), atol=1e-12)
    # by hand: p = [½, ½], q = [¾, ¼] → ½ log(2/3) + ½ log 2
    kl = categorical_kl(torch.zeros(1, 2, dtype=F64), torch.log(torch.tensor([[0.75, 0.25]], dtype=F64)))
    assert kl.item() == pytest.approx(0.5 * math.log(2 / 3) + 0.5 * math.log(2), abs=1e-12)
