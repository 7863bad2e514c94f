"""Plasticity injection (Nikishin et al., 2023): unchanged output at injection, only the new copy trains."""

import copy

import pytest
import torch
from torch import nn

from plastic.nets.noisy import NoisyLinear
from plastic.plasticity.injection import PlasticityInjection, inject_plasticity_
from plastic.plasticity.reset import reset_parameters_


def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 3)))


def test_output_unchanged_at_injection_and_new_part_is_a_fresh_draw():
    net = model()
    head = copy.deepcopy(net[2])
    x = torch.randn(16, 5)
    before = net(x)
    injected = inject_plasticity_(net, "2", torch.Generator().manual_seed(3))
    assert net[2] is injected and injected.old is not head
    assert torch.equal(net(x), before)
    fresh = reset_parameters_(copy.deepcopy(head), torch.Generator().manual_seed(3))
    for p, q, old in zip(injected.new.parameters(), fresh.parameters(), head.parameters()):
        assert torch.equal(p, q) and not torch.equal(p, old)
    for p, q in zip(injected.new.parameters(), injected.new_frozen.parameters()):
        assert torch.equal(p, q)


def test_only_the_new_copy_trains():
    net = model()
    injected = inject_plasticity_(net, "2")
    trainable = [p for p in net.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == {id(p) for p in list(net[0].parameters()) + list(injected.new.parameters())}
    frozen = [p.detach().clone() for p in list(injected.old.parameters()) + list(injected.new_frozen.parameters())]
    optimizer = torch.optim.SGD(trainable, lr=0.1)
    x, y = torch.randn(16, 5), torch.randn(16, 3)
    for _ in range(3):
        optimizer.zero_grad()
        ((net(x) - y) ** 2).mean().backward()
        optimizer.step()
    for p, f in zip(list(injected.old.parameters()) + list(injected.new_frozen.parameters()), frozen):
        assert torch.equal(p, f) and p.grad is None
    assert not torch.equal(injected.new[0].weight, injected.new_frozen[0].weight)
    features = net[1](net[0](x))
    expected = injected.old(features) + injected.new(features) - injected.new_frozen(features)
    torch.testing.assert_close(net(x), expected)


def test_noisy_head_terms_share_noise_and_cancel():
    torch.manual_seed(0)
    head = nn.Sequential(NoisyLinear(4, 6), nn.ReLU(), NoisyLinear(6, 2))
    injected = PlasticityInjection(head, torch.Generator().manual_seed(1))
    generator = torch.Generator().manual_seed(2)
    for module in injected.modules():  # what an agent does before each update: every noisy layer re-draws
        if isinstance(module, NoisyLinear):
            module.reset_noise(generator)
    x = torch.randn(3, 4)
    assert torch.equal(injected(x), injected.old(x))


def test_bad_child_name():
    with pytest.raises(ValueError, match="child_name"):
        inject_plasticity_(model(), "head")
