"""Network options: per-network sizes and activations, orthogonal init on/off, the NumPy snapshot's parity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from agents import PPOConfig
from agents.config import ConfigError
from agents.networks import build_policy
from agents.inference import make_inference


def linears(seq: nn.Sequential) -> list[nn.Linear]:
    return [m for m in seq if isinstance(m, nn.Linear)]


def test_actor_and_critic_get_their_own_sizes_and_activations():
    cfg = PPOConfig(hidden_sizes=[64, 64], actor_hidden_sizes=[32], critic_hidden_sizes=[16, 8],
                    critic_activation="relu")
    torch.manual_seed(0)
    policy = build_policy(5, 3, False, **cfg.network())
    assert [layer.out_features for layer in linears(policy.actor)] == [32, 3]
    assert [layer.out_features for layer in linears(policy.critic)] == [16, 8, 1]
    assert isinstance(policy.actor[1], nn.Tanh) and isinstance(policy.critic[1], nn.ReLU)
    obs = torch.randn(7, 5)
    # the NumPy inference path computes the same numbers with each network's own activation
    inference = make_inference(policy, "numpy")
    np.testing.assert_allclose(inference.dist_params(obs.numpy()), policy.dist_params(obs).detach().numpy(),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(inference.value(obs.numpy()), policy.value(obs).detach().numpy(), rtol=1e-5,
                               atol=1e-6)


@pytest.mark.parametrize("ortho", [True, False])
def test_orthogonal_init_can_be_switched_off(ortho):
    torch.manual_seed(0)
    policy = build_policy(8, 2, True, **PPOConfig(ortho_init=ortho).network())
    hidden = linears(policy.actor)[1].weight.detach().double()  # 64 × 64
    gram = hidden @ hidden.T
    is_orthogonal = torch.allclose(gram, 2.0 * torch.eye(64, dtype=torch.float64), atol=1e-5)  # gain √2
    assert is_orthogonal == ortho
    out = linears(policy.actor)[-1]
    # zero biases with ortho init, PyTorch's uniform without
    assert (float(out.bias.detach().abs().max()) == 0.0) == ortho
    if ortho:
        assert float(torch.linalg.matrix_norm(out.weight.detach(), 2)) == pytest.approx(0.01, rel=1e-4)
    else:
        bound = 1 / math.sqrt(64)  # PyTorch's default: U(−1/√fan_in, 1/√fan_in)
        assert float(out.weight.detach().abs().max()) <= bound


@pytest.mark.parametrize("key, value", [("actor_activation", "sigmoid"), ("critic_hidden_sizes", []),
                                        ("ortho_init", "yes")])
def test_network_options_are_validated(key, value):
    with pytest.raises(ConfigError, match=f"agent.{key}="):
        PPOConfig(**{key: value}).validate(4)


@pytest.mark.parametrize("activation", ["tanh", "relu", "elu", "gelu"])
@pytest.mark.parametrize("members, chunk", [(1, None), (3, None), (3, 2), (3, 1)])
def test_a_population_computes_each_members_outputs_and_gradients(activation, members, chunk, monkeypatch):
    """The batched forward (products, bias and activation written into one buffer) gives every member what its
    own ``nn.Module`` gives, and the same gradients (the population's written-out backward, GELU's autograd) as
    autograd through the member module, for the weights and for the observations — also computed in ranges of
    ``chunk`` members (``_member_chunks``: here 2 + 1, or 1 + 1 + 1)."""
    from agents import networks
    from agents.networks import PolicyPopulation

    if chunk is not None:  # a range of `chunk` members' widest hidden activation (11 samples × 16 units)
        monkeypatch.setattr(networks, "_CHUNK_ELEMENTS", chunk * 11 * 16)
        assert len(networks._member_chunks(torch.zeros(members, 11, 5), 16)) == math.ceil(members / chunk)
    cfg = PPOConfig(hidden_sizes=[16, 8], activation=activation, critic_activation=activation)
    torch.manual_seed(1)
    solo = [build_policy(5, 3, True, **cfg.network()) for _ in range(members)]
    population = PolicyPopulation(solo)
    obs = torch.randn(members, 11, 5, requires_grad=True)
    actions = torch.randint(0, 3, (members, 11))
    weights = torch.randn(members, 11)
    ev = population.evaluate(obs, actions)
    ((ev.logprobs + ev.values + ev.entropy) * weights).sum().backward()
    for k, policy in enumerate(solo):
        member_obs = obs[k].detach().clone().requires_grad_()
        mine = policy.evaluate(member_obs, actions[k])
        for ours, theirs in zip((ev.logprobs[k], ev.values[k], ev.entropy[k]),
                                (mine.logprobs, mine.values, mine.entropy)):
            torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
        ((mine.logprobs + mine.values + mine.entropy) * weights[k]).sum().backward()
        torch.testing.assert_close(obs.grad[k], member_obs.grad, rtol=1e-4, atol=1e-6, msg="observations")
        for name, param in policy.named_parameters():
            grad = population.stacked[population.names.index(name)].grad[k]
            torch.testing.assert_close(grad, param.grad, rtol=1e-4, atol=1e-6, msg=name)
