"""The compiled tail's arithmetic (agents/fused_step.py), checked eagerly against the library calls it replaces."""

import copy

import pytest
import torch
from torch import nn

from plastic.agents.base import ema_update_
from plastic.agents.fused_step import CompiledTail, clip_adam_ema_, supports
from plastic.agents.rainbow import clip_grad_norm


def twin_setups(seed=0):
    torch.manual_seed(seed)
    online = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))
    setups = []
    for _ in range(2):
        net = copy.deepcopy(online)
        target = copy.deepcopy(net)
        groups = [{"params": list(net[0].parameters())}, {"params": list(net[2].parameters())}]
        setups.append((net, target, torch.optim.Adam(groups, lr=1e-3, eps=1.5e-4, fused=True)))
    return setups


@pytest.mark.parametrize("max_norm", [10.0, 0.05])  # the second clips every step
def test_clip_adam_ema_equals_clip_grad_norm_then_adam_then_the_ema_across_a_state_reset(max_norm):
    (eager_net, eager_target, eager_opt), (net, target, opt) = twin_setups()
    tail = CompiledTail(opt, net, target, tau=0.99, max_norm=max_norm, eager_tail=None, strict=False)
    x, y = torch.randn(16, 5), torch.randn(16, 3)
    for step in range(4):
        if step == 2:  # a reset of the second layer clears its state; both must re-create it as new
            for optimizer, model in ((eager_opt, eager_net), (opt, net)):
                for p in model[2].parameters():
                    optimizer.state.pop(p)
        for model, optimizer in ((eager_net, eager_opt), (net, opt)):
            optimizer.zero_grad(set_to_none=True)
            ((model(x) - y) ** 2).mean().backward()
        expected_norm = clip_grad_norm(eager_net.parameters(), max_norm)
        eager_opt.step()
        ema_update_(eager_target, eager_net, 0.99)
        norm = clip_adam_ema_(tail._groups(), tail.targets, max_norm, tail.online_weight)
        assert norm.item() == pytest.approx(expected_norm.item(), rel=1e-6)
    for a, b in zip(list(net.parameters()) + list(target.parameters()),
                    list(eager_net.parameters()) + list(eager_target.parameters())):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    for p, q in zip(net.parameters(), eager_net.parameters()):
        assert opt.state[p]["step"].item() == eager_opt.state[q]["step"].item()
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(opt.state[p][key], eager_opt.state[q][key], rtol=1e-5, atol=1e-10)
    assert [opt.state[p]["step"].item() for p in net.parameters()] == [4.0, 4.0, 2.0, 2.0]


def test_only_plain_adam_with_the_options_the_tail_implements_is_supported():
    params = [nn.Parameter(torch.zeros(2))]
    assert supports(torch.optim.Adam(params, lr=1e-3))
    assert not supports(torch.optim.Adam(params, lr=1e-3, weight_decay=0.1))
    assert not supports(torch.optim.Adam(params, lr=1e-3, amsgrad=True))
    assert not supports(torch.optim.AdamW(params, lr=1e-3))
    assert not supports(torch.optim.SGD(params, lr=1e-3))


def test_a_parameter_without_a_gradient_sends_the_tail_to_the_eager_calls():
    (_, _, _), (net, target, opt) = twin_setups()
    calls = []
    tail = CompiledTail(opt, net, target, tau=0.99, max_norm=10.0, eager_tail=lambda: calls.append(1) or 0.0,
                        strict=False)
    assert tail() == 0.0 and calls == [1]  # no backward yet: no gradients at all
