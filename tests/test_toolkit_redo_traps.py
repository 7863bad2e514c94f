"""ReDo against the known traps of other implementations (score normalisation, outgoing weights, Adam moments,
dormancy measured on the activation)."""

import copy

import pytest
import torch
from torch import nn

from plastic.plasticity import CReLU, redo_, unit_scores
from plastic.probes import dormant_unit_fraction


def net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 2))


def batch(seed=1):
    return torch.rand(32, 3, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_scores_are_normalised_by_the_layer_mean_not_by_the_unit_count():
    # Dopamine labs divided by the number of neurons; the paper's s_i averages 1 within each layer.
    scores = unit_scores(net(), batch())
    for name, score in scores.items():
        assert score.mean().item() == pytest.approx(1.0), name
    crelu = nn.Sequential(nn.Linear(3, 4), CReLU(), nn.Linear(8, 1))
    assert unit_scores(crelu, batch())["0"].mean().item() == pytest.approx(1.0)


def test_dormancy_is_measured_on_the_activation_output_as_it_is():
    # DrM took abs() of the layer output before the ReLU: a unit with large negative pre-activations looked active.
    model = net()
    with torch.no_grad():
        model[0].bias[5] = -100.0
    x = batch()
    pre = x @ model[0].weight.T + model[0].bias
    assert pre[:, 5].abs().mean() > 90  # |pre-activation| is large...
    h = torch.relu(pre)
    expected = h.mean(0) / h.mean(0).mean()
    torch.testing.assert_close(unit_scores(model, x)["0"], expected)
    assert unit_scores(model, x)["0"][5] == 0  # ...but the unit is silent after its ReLU
    silent = float((h.amax(0) <= 0).float().mean())  # unit 5 and any unit this init leaves off on the whole batch
    assert dormant_unit_fraction(model, x, tau=0.0)["1"] == pytest.approx(silent)
    assert silent >= 1 / 8


def test_recycled_unit_gets_fresh_incoming_zero_outgoing_and_reset_adam_moments():
    model = net()
    with torch.no_grad():
        model[0].bias[5] = -100.0
        model[0].bias[[0, 1, 2, 3, 4, 6, 7]] = 3.0  # everything else alive
        model[2].bias.fill_(3.0)
    x = batch()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(2):
        optimizer.zero_grad()
        model(x).pow(2).sum().backward()
        optimizer.step()
    with torch.no_grad():
        for p in model.parameters():
            optimizer.state[p]["exp_avg"].fill_(1.0)
            optimizer.state[p]["exp_avg_sq"].fill_(2.0)
    before = copy.deepcopy(model)
    assert redo_(model, x, tau=0.0, optimizer=optimizer) == {"0": 1, "2": 0}
    assert not torch.equal(model[0].weight[5], before[0].weight[5])  # fresh incoming row
    assert model[0].bias[5] != -100.0
    assert torch.all(model[2].weight[:, 5] == 0)  # zeroed outgoing column
    for parameter, index in ((model[0].weight, (5,)), (model[0].bias, (5,)), (model[2].weight, (slice(None), 5))):
        state = optimizer.state[parameter]
        assert torch.all(state["exp_avg"][index] == 0) and torch.all(state["exp_avg_sq"][index] == 0)
    state = optimizer.state[model[0].weight]
    assert torch.all(state["exp_avg"][[0, 1, 2, 3, 4, 6, 7]] == 1)
    assert torch.all(state["exp_avg_sq"][[0, 1, 2, 3, 4, 6, 7]] == 2)
    assert int(state["step"]) == 2  # per-tensor step counts are left alone
