"""Hard reset, Shrink & Perturb and optimizer-state reset (paper §3.3, §4.3)."""

import copy
import math

import pytest
import torch
from torch import nn

from plastic.nets.noisy import NoisyLinear
from plastic.plasticity.layers import ConvLayerNorm
from plastic.plasticity.reset import reset_optimizer_state_, reset_parameters_, shrink_perturb_
from plastic.plasticity.sam import SAM


class Agent(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(2, 3, 3), ConvLayerNorm(3), nn.ReLU(), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(12, 8), nn.LayerNorm(8), nn.ReLU(), NoisyLinear(8, 3))
        self.register_buffer("steps", torch.tensor(7))


def scramble_(module):
    """Move every parameter away from its init distribution (LN affine != 1/0, noisy sigma != sigma0/sqrt(p))."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn_like(p) + 3.0)


def snapshot(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def seed_from(seed):
    """The seed `reset_parameters_` derives from a generator in state `manual_seed(seed)`: one draw of it."""
    return int(torch.randint(0, 2**62, (1,), generator=torch.Generator().manual_seed(seed)).item())


def test_reset_redraws_ln_and_noisy_parameters_and_nothing_else():
    torch.manual_seed(0)
    agent = Agent()
    scramble_(agent)
    agent.head[3].reset_noise(torch.Generator().manual_seed(1))
    before = snapshot(agent)
    reset_parameters_(agent.head, torch.Generator().manual_seed(5))
    after = agent.state_dict()
    for key in before:
        if key.startswith("backbone") or key == "steps" or "epsilon" in key:
            assert torch.equal(before[key], after[key]), key  # outside the head, or a head buffer
    ln, noisy, linear = agent.head[1], agent.head[3], agent.head[0]
    assert torch.equal(ln.weight, torch.ones(8)) and torch.equal(ln.bias, torch.zeros(8))
    bound = 1 / math.sqrt(8)
    assert torch.allclose(noisy.weight_sigma, torch.full((3, 8), 0.5 * bound))
    assert torch.allclose(noisy.bias_sigma, torch.full((3,), 0.5 * bound))
    assert noisy.weight_mu.abs().max() <= bound and noisy.bias_mu.abs().max() <= bound
    assert linear.weight.abs().max() <= 1 / math.sqrt(12)  # kaiming_uniform(a=sqrt 5) bound = 1/sqrt(fan_in)
    # A reset under a seeded generator is the draw of a freshly constructed head under the derived seed.
    torch.manual_seed(seed_from(5))
    fresh = nn.Sequential(nn.Linear(12, 8), nn.LayerNorm(8), nn.ReLU(), NoisyLinear(8, 3))
    for (name, p), q in zip(agent.head.named_parameters(), fresh.parameters()):
        assert torch.equal(p, q), name


def test_reset_covers_conv_layer_norm():
    norm = ConvLayerNorm(4)
    scramble_(norm)
    reset_parameters_(norm)
    assert torch.equal(norm.weight, torch.ones(4)) and torch.equal(norm.bias, torch.zeros(4))


def test_same_generator_seed_same_draw_and_global_rng_not_advanced():
    a, b = Agent(), Agent()
    state = torch.get_rng_state()
    reset_parameters_(a, torch.Generator().manual_seed(3))
    reset_parameters_(b, torch.Generator().manual_seed(3))
    assert torch.equal(torch.get_rng_state(), state)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    generator = torch.Generator().manual_seed(3)
    reset_parameters_(a, generator)
    reset_parameters_(b, generator)  # the generator advanced: a new draw
    assert not torch.equal(a.head[0].weight, b.head[0].weight)


def test_without_generator_the_global_rng_draws():
    model = nn.Linear(5, 4)
    torch.manual_seed(11)
    reset_parameters_(model)
    torch.manual_seed(11)
    expected = nn.Linear(5, 4)
    assert torch.equal(model.weight, expected.weight) and torch.equal(model.bias, expected.bias)


def test_uncovered_parameter_is_an_error_naming_it():
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.gain = nn.Parameter(torch.ones(3))

    model = nn.Sequential(nn.Linear(3, 3), Scale())
    before = snapshot(model)
    with pytest.raises(ValueError, match=r"'1\.gain'"):
        reset_parameters_(model)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])  # nothing changed


def test_shrink_perturb_matches_formula():
    torch.manual_seed(0)
    agent = Agent()
    scramble_(agent)
    theta = [p.detach().clone() for p in agent.parameters()]
    phi = list(reset_parameters_(copy.deepcopy(agent), torch.Generator().manual_seed(9)).parameters())
    state = torch.get_rng_state()
    shrink_perturb_(agent, 0.6, torch.Generator().manual_seed(9))
    assert torch.equal(torch.get_rng_state(), state)
    for p, t, f in zip(agent.parameters(), theta, phi):
        torch.testing.assert_close(p.detach(), 0.6 * t + 0.4 * f)
    assert torch.equal(agent.steps, torch.tensor(7))


def test_shrink_perturb_endpoints():
    torch.manual_seed(0)
    a = Agent()
    scramble_(a)
    b = copy.deepcopy(a)
    theta = [p.detach().clone() for p in a.parameters()]
    shrink_perturb_(a, 1.0, torch.Generator().manual_seed(2))
    for p, t in zip(a.parameters(), theta):
        assert torch.equal(p, t)
    shrink_perturb_(a, 0.0, torch.Generator().manual_seed(2))
    reset_parameters_(b, torch.Generator().manual_seed(2))
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


@pytest.mark.parametrize("alpha", [-0.1, 1.5])
def test_shrink_perturb_rejects_alpha_outside_unit_interval(alpha):
    with pytest.raises(ValueError, match="alpha"):
        shrink_perturb_(nn.Linear(2, 2), alpha)


def two_layers():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))


def train(model, optimizer, steps, x, y):
    for _ in range(steps):
        def closure():
            optimizer.zero_grad()
            loss = ((model(x) - y) ** 2).mean()
            loss.backward()
            return loss

        if isinstance(optimizer, SAM):
            optimizer.step(closure)
        else:
            closure()
            optimizer.step()


def gradient(model, x, y):
    model.zero_grad()
    ((model(x) - y) ** 2).mean().backward()
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("variant", [{}, {"foreach": True}, {"fused": True}])
def test_reset_adam_state_clears_exactly_named_params(variant):
    x, y = torch.randn(6, 3), torch.randn(6, 2)
    model = two_layers()
    lr, eps = 0.01, 1e-8
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, eps=eps, **variant)
    train(model, optimizer, 3, x, y)
    kept = {p: {k: v.clone() for k, v in optimizer.state[p].items()} for p in model[0].parameters()}
    reset_optimizer_state_(optimizer, model[2].parameters())
    for p in model[2].parameters():
        assert p not in optimizer.state
    for p, state in kept.items():
        for k, v in state.items():
            assert torch.equal(optimizer.state[p][k], v)
    # Next step: the reset params move as on Adam's first step, w - lr * g / (|g| + eps).
    w = [p.detach().clone() for p in model[2].parameters()]
    g = gradient(model, x, y)[2:]
    optimizer.step()
    for p, wi, gi in zip(model[2].parameters(), w, g):
        torch.testing.assert_close(p.detach(), wi - lr * gi / (gi.abs() + eps))
    assert optimizer.state[model[2].weight]["step"].item() == 1
    assert optimizer.state[model[0].weight]["step"].item() == 4


def test_reset_sgd_momentum_buffer():
    x, y = torch.randn(6, 3), torch.randn(6, 2)
    model = two_layers()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    train(model, optimizer, 3, x, y)
    kept = optimizer.state[model[0].weight]["momentum_buffer"].clone()
    reset_optimizer_state_(optimizer, [model[2].weight])
    w = model[2].weight.detach().clone()
    g = gradient(model, x, y)[2]
    optimizer.step()
    torch.testing.assert_close(model[2].weight.detach(), w - 0.1 * g)  # a fresh buffer starts at g
    assert not torch.equal(optimizer.state[model[0].weight]["momentum_buffer"], kept)  # it kept accumulating
    assert "momentum_buffer" in optimizer.state[model[2].bias]


def test_reset_sam_base_optimizer_state():
    x, y = torch.randn(6, 3), torch.randn(6, 2)
    model = two_layers()
    optimizer = SAM(model.parameters(), torch.optim.Adam, rho=0.05, lr=0.01)
    train(model, optimizer, 2, x, y)
    reset_optimizer_state_(optimizer, model[2].parameters())
    assert set(optimizer.base_optimizer.state) == set(model[0].parameters())
    train(model, optimizer, 1, x, y)
    assert optimizer.base_optimizer.state[model[2].weight]["step"].item() == 1
    assert optimizer.base_optimizer.state[model[0].weight]["step"].item() == 3


def test_reset_optimizer_state_bad_params():
    model = two_layers()
    optimizer = torch.optim.Adam(model[0].parameters())
    with pytest.raises(ValueError, match="params"):
        reset_optimizer_state_(optimizer, [])
    with pytest.raises(ValueError, match="params"):
        reset_optimizer_state_(optimizer, model[2].parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_reset_on_cuda_is_reproducible_and_leaves_global_rngs():
    a, b = Agent().cuda(), Agent().cuda()
    cpu_state, cuda_state = torch.get_rng_state(), torch.cuda.get_rng_state()
    reset_parameters_(a, torch.Generator().manual_seed(4))
    shrink_perturb_(b, 0.0, torch.Generator().manual_seed(4))
    assert torch.equal(torch.get_rng_state(), cpu_state) and torch.equal(torch.cuda.get_rng_state(), cuda_state)
    for p, q in zip(a.parameters(), b.parameters()):
        assert p.is_cuda and torch.equal(p, q)


def test_schedule_is_due_at_multiples_of_its_interval_and_never_at_zero():
    from plastic.training.schedules import Every

    assert [count for count in range(13) if Every(4).due(count)] == [4, 8, 12]
    assert not any(Every(0).due(count) for count in range(10))


def test_reset_and_shrink_perturb_twins_give_the_target_the_same_draw():
    from plastic.plasticity.reset import reset_twins_, shrink_perturb_twins_

    online, target = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    target.load_state_dict(online.state_dict())
    generator = torch.Generator().manual_seed(1)
    touched = shrink_perturb_twins_([(online, target)], 0.5, generator)
    assert len(touched) == 2 and all(torch.equal(a, b) for a, b in zip(online.parameters(), target.parameters()))
    before = [p.detach().clone() for p in online.parameters()]
    reset_twins_([(online, target)], generator)
    assert not torch.equal(before[0], online.weight)
    assert all(torch.equal(a, b) for a, b in zip(online.parameters(), target.parameters()))
