"""The new probes: churn, GraMa dormant fraction, effective learning rate and Hessian trace, on known cases."""

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from plastic.probes import (
    OutputChurn,
    effective_learning_rate,
    gradient_dormant_fraction,
    hessian_trace,
    parameter_snapshot,
)


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def batch(n=8, d=3, seed=1):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- churn


def test_churn_of_an_identical_update_is_zero_and_a_bias_shift_is_its_size():
    model = mlp()
    probe = OutputChurn(model, batch(), layers=["1"])
    probe.snapshot()
    assert probe.measure() == {"output": 0.0, "1": 0.0}
    probe.snapshot()
    with torch.no_grad():
        model[2].bias += torch.tensor([0.5, -0.25])  # every output row moves by (0.5, -0.25)
    churn = probe.measure()
    assert churn["output"] == pytest.approx((0.5 + 0.25) / 2)
    assert churn["1"] == 0.0  # the hidden layer did not change


def test_churn_bad_arguments():
    model = mlp()
    with pytest.raises(ValueError, match="snapshot"):
        OutputChurn(model, batch()).measure()
    with pytest.raises(ValueError, match="'head'"):
        OutputChurn(model, batch(), layers=["head"])
    with pytest.raises(ValueError, match="string '1'"):
        OutputChurn(model, batch(), layers="1")


# ---------------------------------------------------------------- GraMa probe


def test_gradient_dormant_fraction_counts_units_the_gradient_does_not_reach():
    model = mlp()
    with torch.no_grad():
        model[0].bias[[0, 3]] = -100.0  # two of four units never fire
    x = batch()
    fractions = gradient_dormant_fraction(model, lambda: model(x).pow(2).mean())
    assert fractions == {"1": 0.5, "all": 0.5}
    # at the output side the dead units still get the outgoing weights' gradient
    assert gradient_dormant_fraction(model, lambda: model(x).pow(2).mean(), gradient_at="activation_output")["1"] == 0
    # tau above the scores of all but the largest unit: only units with G_i > tau survive
    pre = (x @ model[0].weight.T + model[0].bias).detach().requires_grad_()
    (grad,) = torch.autograd.grad((torch.relu(pre) @ model[2].weight.T + model[2].bias).pow(2).mean(), pre)
    scores = grad.abs().mean(0) / grad.abs().mean(0).mean()
    tau = float(scores.max()) - 1e-6
    assert gradient_dormant_fraction(model, lambda: model(x).pow(2).mean(), tau=tau)["1"] == 0.75
    with pytest.raises(ValueError, match="tau=-0.5"):
        gradient_dormant_fraction(model, lambda: model(x).sum(), tau=-0.5)
    with pytest.raises(ValueError, match="gradient_at='weights'"):
        gradient_dormant_fraction(model, lambda: model(x).sum(), gradient_at="weights")


# ---------------------------------------------------------------- effective learning rate


def test_effective_learning_rate_of_a_known_change():
    model = mlp()
    with torch.no_grad():
        model[0].weight.fill_(1.0)  # 12 entries: norm sqrt(12)
        model[0].bias.fill_(2.0)  # 4 entries: norm 4
        model[2].weight.fill_(1.0)
        model[2].bias.zero_()
    before = parameter_snapshot(model)
    with torch.no_grad():
        model[0].weight.add_(0.5)  # ‖Δ‖ = 0.5 sqrt(12)
    rates = effective_learning_rate(before, model)
    assert rates["0"] == pytest.approx(0.5 * math.sqrt(12) / math.sqrt(12 + 16))
    assert rates["2"] == 0.0
    assert rates["all"] == pytest.approx(0.5 * math.sqrt(12) / math.sqrt(12 + 16 + 8))
    assert effective_learning_rate(parameter_snapshot(model), model)["all"] == 0.0
    with pytest.raises(ValueError, match="parameter_snapshot"):
        effective_learning_rate(before, mlp().append(nn.Linear(2, 1)))


def test_effective_learning_rate_of_a_zero_layer():
    model = nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
    before = parameter_snapshot(model)
    assert effective_learning_rate(before, model) == {"weight": 0.0, "bias": 0.0, "all": 0.0}
    with torch.no_grad():
        model.bias.fill_(1.0)
    assert effective_learning_rate(before, model)["bias"] == math.inf


# ---------------------------------------------------------------- Hessian trace


def test_hutchinson_is_exact_for_a_diagonal_hessian_with_per_layer_blocks():
    a = torch.tensor([1.0, 2.0], requires_grad=True)
    b = torch.tensor([0.5, -1.0, 3.0], requires_grad=True)
    module = nn.Module()
    module.first = nn.Module()
    module.first.weight = nn.Parameter(a.detach().clone())
    module.second = nn.Parameter(b.detach().clone())

    def loss():  # H = diag(2, 6 | 1, 4, -2): tr = 8 + 3
        w, s = module.first.weight, module.second
        return w[0] ** 2 + 3 * w[1] ** 2 + 0.5 * s[0] ** 2 + 2 * s[1] ** 2 - s[2] ** 2

    traces = hessian_trace(loss, module, samples=3, generator=torch.Generator().manual_seed(0))
    assert traces == pytest.approx({"first": 8.0, "second": 3.0, "all": 11.0})


def test_hutchinson_approaches_the_exact_trace_of_a_dense_quadratic():
    generator = torch.Generator().manual_seed(0)
    m = torch.randn(6, 6, generator=generator)
    hessian = m @ m.T  # symmetric, dense off-diagonal
    theta = torch.zeros(6, requires_grad=True)
    estimate = hessian_trace(lambda: 0.5 * theta @ hessian @ theta, [theta], samples=4000,
                             generator=torch.Generator().manual_seed(1))
    exact = float(hessian.trace())
    # Rademacher variance: 2 Σ_{i≠j} H_ij² per sample
    off = hessian - torch.diag(hessian.diagonal())
    standard_error = math.sqrt(2 * float(off.pow(2).sum()) / 4000)
    assert abs(estimate["all"] - exact) < 4 * standard_error
    assert standard_error < 0.05 * exact


def test_hessian_trace_of_a_linear_loss_is_zero_and_bad_samples_raise():
    model = nn.Linear(3, 1)
    x = batch(4, 3)
    assert hessian_trace(lambda: model(x).sum(), model)["all"] == 0.0
    with pytest.raises(ValueError, match="samples=0"):
        hessian_trace(lambda: model(x).sum(), model, samples=0)
    # a real network: same generator, same estimate; .grad untouched
    net = mlp()
    target = torch.randn(8, 2, generator=torch.Generator().manual_seed(2))
    first = hessian_trace(lambda: F.mse_loss(net(batch()), target), net, generator=torch.Generator().manual_seed(5))
    second = hessian_trace(lambda: F.mse_loss(net(batch()), target), net, generator=torch.Generator().manual_seed(5))
    assert first == second and set(first) == {"0", "2", "all"}
    assert first["all"] == pytest.approx(first["0"] + first["2"])
    assert all(p.grad is None for p in net.parameters())
