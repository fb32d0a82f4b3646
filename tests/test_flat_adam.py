"""``FlatAdam``, the PPO update's optimizer: the arithmetic of ``torch.optim.Adam(foreach=True)`` (+ grad-norm
clipping) over one flat buffer, checkpoints in torch.optim.Adam's layout, and no ``torch._dynamo`` import.

FlatAdam optimises a population (parameters with a leading member axis); here a population of one is compared
with torch.optim.Adam on the member module itself."""

from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pytest
import torch

from agents.config import PPOConfig
from agents.networks import PolicyPopulation, build_policy
from agents.optim import FlatAdam
from agents.ppo import PPOAgent
from agents.rollout import Batch


def loss_of(policy, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if isinstance(policy, PolicyPopulation):
        x = x.unsqueeze(0)
    return ((policy.dist_params(x) - y) ** 2).mean() * 10 + policy.value(x).pow(2).mean() + policy.log_std.sum()


def train(policy, optimizer, steps: int, clip: float, seed: int = 0, reference: bool = False) -> None:
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x, y = torch.randn(64, 3, generator=g), torch.randn(64, 2, generator=g)
        optimizer.zero_grad()
        loss_of(policy, x, y).backward()
        if clip:
            if reference:
                torch.nn.utils.clip_grad_norm_(policy.parameters(), clip, foreach=True)
            else:
                optimizer.clip_grad_norm_(clip)
        optimizer.step()


def pair(lr: float = 1e-3):
    torch.manual_seed(0)
    ref = build_policy(3, 2, False, actor_hidden_sizes=[16, 16], critic_hidden_sizes=[16, 16])
    flat = PolicyPopulation([copy.deepcopy(ref)])
    return (ref, torch.optim.Adam(ref.parameters(), lr=lr, eps=1e-5, foreach=True),
            flat, FlatAdam(flat.parameters(), lr=lr, eps=1e-5))


def max_diff(a, b) -> float:
    """Largest parameter difference of two policies (modules or populations of one)."""
    def params(m):
        return [p[0] if isinstance(m, PolicyPopulation) else p for p in m.parameters()]

    return max((p - q).abs().max().item() for p, q in zip(params(a), params(b)))


def test_same_steps_as_torch_adam_bit_for_bit_without_clipping():
    ref, ref_opt, flat, flat_opt = pair()
    train(ref, ref_opt, 30, clip=0.0, reference=True)
    train(flat, flat_opt, 30, clip=0.0)
    assert max_diff(ref, flat) == 0.0


def test_same_steps_as_torch_adam_with_grad_norm_clipping():
    ref, ref_opt, flat, flat_opt = pair()
    train(ref, ref_opt, 30, clip=0.5, reference=True)
    train(flat, flat_opt, 30, clip=0.5)
    assert max_diff(ref, flat) < 1e-6  # the clip's norm is summed in another order: float rounding only


def test_state_dict_round_trips_through_torch_adam():
    ref, ref_opt, flat, flat_opt = pair()
    train(ref, ref_opt, 5, clip=0.0, reference=True)
    train(flat, flat_opt, 5, clip=0.0)
    theirs, ours = ref_opt.state_dict(), flat_opt.member_state_dict(0)
    assert ours["param_groups"] == theirs["param_groups"]
    assert ours["state"].keys() == theirs["state"].keys()
    for i, entry in theirs["state"].items():
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(ours["state"][i][key], entry[key]), (i, key)

    # continue each from the other's state: both keep matching the uninterrupted torch run
    other_flat = PolicyPopulation([copy.deepcopy(ref)])
    other_opt = FlatAdam(other_flat.parameters(), lr=0.5, eps=1e-5)
    other_opt.load_member_state_dict(0, theirs)
    assert other_opt.steps[0] == 5 and other_opt.lr[0] == 1e-3
    other_ref = flat.member(0)
    other_ref_opt = torch.optim.Adam(other_ref.parameters(), lr=0.5, eps=1e-5, foreach=True)
    other_ref_opt.load_state_dict(ours)
    train(ref, ref_opt, 5, clip=0.0, seed=1, reference=True)
    train(other_flat, other_opt, 5, clip=0.0, seed=1)
    train(other_ref, other_ref_opt, 5, clip=0.0, seed=1, reference=True)
    assert max_diff(ref, other_flat) == 0.0 and max_diff(ref, other_ref) == 0.0


@pytest.mark.parametrize("rates", [[1e-3, 3e-3, 1e-3], [2e-3, 2e-3, 2e-3]])
def test_a_population_steps_each_member_as_torch_fused_adam_with_its_own_rate_and_step_count(rates):
    """On the CPU a population steps with the fused kernel: member k as ``torch.optim.Adam(fused=True)`` with its
    own learning rate on its own module, also when some members sit out a step (their parameters, moments and step
    counts stay); one rate for all steps every member in one call when all step. Up to float rounding: the kernel
    takes a parameter's elements on its vectorised or its scalar path depending on where they sit in the tensor it
    is given (a whole member row here, one parameter there)."""
    torch.manual_seed(0)
    members = [build_policy(3, 2, False, actor_hidden_sizes=[16, 16], critic_hidden_sizes=[16, 16])
               for _ in range(3)]
    population = PolicyPopulation([copy.deepcopy(m) for m in members])
    flat_opt = FlatAdam(population.parameters(), lr=rates, eps=1e-5)
    refs = [torch.optim.Adam(m.parameters(), lr=lr, eps=1e-5, fused=True) for m, lr in zip(members, rates)]
    g = torch.Generator().manual_seed(0)
    for step in range(12):
        x, y = torch.randn(3, 64, 3, generator=g), torch.randn(3, 64, 2, generator=g)
        going = torch.tensor([True, step % 3 != 1, step < 8])
        for k, (member, ref) in enumerate(zip(members, refs)):  # both optimizers get the members' gradients
            ref.zero_grad()
            loss_of(member, x[k], y[k]).backward()
            for name, param in member.named_parameters():
                population.stacked[population.names.index(name)].grad[k] = param.grad
            if going[k]:
                ref.step()
        flat_opt.step(going)
    assert flat_opt.steps.tolist() == [12, 8, 8]
    for k, member in enumerate(members):  # a wrong rate or step count would be off by ~1e-5 or more
        for name, param in member.named_parameters():
            torch.testing.assert_close(population.stacked[population.names.index(name)][k].detach(), param.detach(),
                                       rtol=0, atol=1e-8, msg=f"member {k} {name}")
        ours, theirs = flat_opt.member_state_dict(k)["state"], refs[k].state_dict()["state"]
        for i, entry in theirs.items():
            assert torch.equal(ours[i]["step"], entry["step"]), (k, i)
            for key in ("exp_avg", "exp_avg_sq"):
                torch.testing.assert_close(ours[i][key], entry[key], rtol=1e-6, atol=1e-12, msg=f"{k} {i} {key}")


def test_a_state_dict_of_another_network_is_refused():
    _, ref_opt, _, _ = pair()
    small = FlatAdam(PolicyPopulation([build_policy(3, 2, True, actor_hidden_sizes=[8], critic_hidden_sizes=[8])])
                     .parameters(), lr=1e-3)
    with pytest.raises(ValueError):
        small.load_member_state_dict(0, ref_opt.state_dict())


def test_gradients_replaced_by_module_zero_grad_are_still_used():
    """``module.zero_grad()`` sets ``.grad`` to None; the next backward's fresh gradients must be the ones used."""
    ref, ref_opt, flat, flat_opt = pair()
    train(ref, ref_opt, 3, clip=0.0, reference=True)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        x, y = torch.randn(64, 3, generator=g), torch.randn(64, 2, generator=g)
        flat.zero_grad()  # set_to_none=True: the flat buffer's views are gone from .grad
        loss_of(flat, x, y).backward()
        flat_opt.step()
    assert max_diff(ref, flat) == 0.0
    assert all(p.grad.data_ptr() == flat_opt.flat_grad[:, sl].data_ptr()
               for p, sl in zip(flat_opt.params, flat_opt._slices))


def test_a_parameter_moved_out_of_the_flat_buffer_is_refused():
    """Training would silently stop changing such a parameter: the step says so instead."""
    _, _, flat, flat_opt = pair()
    flat.to(torch.float64)  # module.to/.double()/... give each parameter new .data
    with pytest.raises(RuntimeError, match="flat buffer"):
        flat_opt.step()


def test_ppo_update_matches_torch_adam_on_the_same_batch():
    """The whole PPO update with FlatAdam equals the update written with torch.optim.Adam + clip_grad_norm_."""
    n = 256
    g = torch.Generator().manual_seed(0)
    batch = Batch(torch.randn(1, n, 4, generator=g), torch.randint(0, 2, (1, n), generator=g),
                  torch.randn(1, n, generator=g) * 0.1 - 0.7, torch.randn(1, n, generator=g),
                  torch.randn(1, n, generator=g), torch.randn(1, n, generator=g))

    class TorchAdam(torch.optim.Adam):
        def clip_grad_norm_(self, max_norm):
            return torch.nn.utils.clip_grad_norm_(self.param_groups[0]["params"], max_norm, foreach=True)

    agents = []
    for use_torch in (False, True):
        torch.manual_seed(3)
        agent = PPOAgent(PPOConfig(clip_value_loss=True), 4, 2, True, np.random.default_rng(0))
        if use_torch:
            agent.optimizer = TorchAdam(agent.policy.parameters(), lr=agent.cfg.learning_rate, eps=1e-5, foreach=True)
        agents.append((agent, [agent.update(batch) for _ in range(3)]))
    (fast, fast_metrics), (plain, plain_metrics) = agents
    for a, b in zip(fast_metrics, plain_metrics):
        assert a.keys() == b.keys()
        assert max(abs(a[k] - b[k]) for k in a) < 1e-5
    assert max_diff(fast.policy, plain.policy) < 1e-6


def test_training_never_imports_torch_dynamo():
    """torch.optim's first use imports torch._dynamo (a noticeable share of start-up); a PPO update must not."""
    code = ("import sys, numpy as np, torch\n"
            "from agents.config import PPOConfig\n"
            "from agents.ppo import PPOAgent\n"
            "from agents.rollout import Batch\n"
            "a = PPOAgent(PPOConfig(), 4, 2, True, np.random.default_rng(0))\n"
            "n = 512\n"
            "a.update(Batch(torch.randn(1, n, 4), torch.randint(0, 2, (1, n)), torch.zeros(1, n), torch.zeros(1, n),"
            " torch.randn(1, n), torch.randn(1, n)))\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
