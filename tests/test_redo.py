"""ReDo (Sokar et al., 2023): scores by hand, and recycling of units that are dead by construction."""

import copy

import pytest
import torch
from torch import nn

from plastic.nets.noisy import NoisyLinear
from plastic.plasticity.layers import ConvLayerNorm, CReLU
from plastic.plasticity.redo import redo_, unit_scores
from plastic.plasticity.reset import reset_parameters_


def kill_(layer, units):
    """Units with bias -100 never fire on inputs in [-1, 1] with default-init weights: dormant by construction."""
    with torch.no_grad():
        layer.bias[units] = -100.0


def inputs(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_unit_scores_by_hand_and_hooks_removed():
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        model[0].bias.zero_()
    x = torch.tensor([[1.0, 2.0], [3.0, -4.0]])
    # h = relu(W x): [1, 2, 3] and [3, 0, 0]; E|h| = [2, 1, 1.5]; mean 1.5.
    scores = unit_scores(model, x)
    assert list(scores) == ["0"]
    torch.testing.assert_close(scores["0"], torch.tensor([4 / 3, 2 / 3, 1.0]))
    for module in model:
        assert not module._forward_hooks and not module._forward_pre_hooks


def test_redo_recycles_exactly_the_dead_units_of_an_mlp():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 2))
    with torch.no_grad():  # every other unit is alive on all inputs
        model[0].bias.fill_(5.0)
        model[2].bias.fill_(5.0)
    kill_(model[0], [1, 4])
    kill_(model[2], [3])
    x = inputs(64, 4)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(x).pow(2).sum().backward()
    optimizer.step()
    with torch.no_grad():  # give every moment a known non-zero value
        for p in model.parameters():
            optimizer.state[p]["exp_avg"].fill_(1.0)
    before = copy.deepcopy(model)
    output = model(x)

    counts = redo_(model, x, tau=0.0, optimizer=optimizer, generator=torch.Generator().manual_seed(7))
    assert counts == {"0": 2, "2": 1}

    # Incoming weights of the dead units: a fresh init draw (the first draw of the generator); other rows unchanged.
    fresh = reset_parameters_(copy.deepcopy(before[0]), torch.Generator().manual_seed(7))
    for rows, source in (([1, 4], fresh), ([0, 2, 3, 5], before[0])):
        assert torch.equal(model[0].weight[rows], source.weight[rows])
        assert torch.equal(model[0].bias[rows], source.bias[rows])
    # Outgoing weights zeroed (layer 2, except its own recycled row 3), layer 4 column 3 zeroed.
    others = [0, 1, 2, 4]
    assert torch.all(model[2].weight[others][:, [1, 4]] == 0)
    assert torch.equal(model[2].weight[others][:, [0, 2, 3, 5]], before[2].weight[others][:, [0, 2, 3, 5]])
    assert not torch.equal(model[2].weight[3], before[2].weight[3])
    assert torch.all(model[4].weight[:, 3] == 0)
    assert torch.equal(model[4].weight[:, [0, 1, 2, 4]], before[4].weight[:, [0, 1, 2, 4]])
    # The recycled units contribute nothing yet: the output is unchanged.
    torch.testing.assert_close(model(x), output)
    # Their moments are zeroed; the rest keep theirs.
    exp_avg = optimizer.state[model[0].weight]["exp_avg"]
    assert torch.all(exp_avg[[1, 4]] == 0) and torch.all(exp_avg[[0, 2, 3, 5]] == 1)
    exp_avg = optimizer.state[model[4].weight]["exp_avg"]
    assert torch.all(exp_avg[:, 3] == 0) and torch.all(exp_avg[:, [0, 1, 2, 4]] == 1)
    # Nothing is dormant any more.
    assert redo_(model, x) == {"0": 0, "2": 0}


def test_redo_threshold_tau():
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        model[0].bias.zero_()
    x = torch.tensor([[1.0, 2.0], [3.0, -4.0]])  # scores [4/3, 2/3, 1]
    assert redo_(copy.deepcopy(model), x, tau=0.5) == {"0": 0}
    assert redo_(copy.deepcopy(model), x, tau=0.7) == {"0": 1}
    assert redo_(copy.deepcopy(model), x, tau=1.0) == {"0": 2}


def test_crelu_unit_is_dormant_only_when_both_halves_are():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), CReLU(), nn.Linear(6, 2))
    with torch.no_grad():
        model[0].weight[0] = 0.0  # pre-activation exactly 0: relu(z) and relu(-z) both silent
        model[0].bias[0] = 0.0
    kill_(model[0], [1])  # relu(z) silent but relu(-z) = 100 - ...: alive
    before = copy.deepcopy(model)
    x = inputs(32, 4)
    assert unit_scores(model, x)["0"].shape == (6,)
    assert redo_(model, x) == {"0": 1}
    assert torch.all(model[2].weight[:, [0, 3]] == 0)
    assert torch.equal(model[2].weight[:, [1, 2, 4, 5]], before[2].weight[:, [1, 2, 4, 5]])
    assert torch.equal(model[0].weight[1:], before[0].weight[1:])


def test_conv_flatten_linear_with_conv_layer_norm():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), ConvLayerNorm(3), nn.ReLU(), nn.Flatten(), nn.Linear(27, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([2.0, 3.0, 4.0]))
        model[1].bias.copy_(torch.tensor([0.5, 0.5, -50.0]))  # channel 2 is dead after the norm
    before = copy.deepcopy(model)
    x = inputs(8, 1, 5, 5)
    assert redo_(model, x) == {"0": 1}
    # Channel 2 feeds columns [2*9, 3*9) of the linear layer (3x3 maps, NCHW flatten).
    assert torch.all(model[4].weight[:, 18:27] == 0)
    assert torch.equal(model[4].weight[:, :18], before[4].weight[:, :18])
    assert torch.equal(model[1].weight, torch.tensor([2.0, 3.0, 1.0]))
    assert torch.equal(model[1].bias, torch.tensor([0.5, 0.5, 0.0]))
    assert torch.equal(model[0].weight[:2], before[0].weight[:2])
    assert not torch.equal(model[0].weight[2], before[0].weight[2])


class Dueling(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(4, 6), nn.ReLU())
        self.value = nn.Linear(6, 1)
        self.advantage = NoisyLinear(6, 3)

    def forward(self, x):
        h = self.features(x)
        a = self.advantage(h)
        return self.value(h) + a - a.mean(dim=1, keepdim=True)


def test_every_consumer_of_a_shared_feature_is_zeroed():
    torch.manual_seed(0)
    model = Dueling()
    kill_(model.features[0], [2])
    x = inputs(16, 4)
    output = model(x)
    assert redo_(model, x) == {"features.0": 1}
    assert torch.all(model.value.weight[:, 2] == 0)
    assert torch.all(model.advantage.weight_mu[:, 2] == 0) and torch.all(model.advantage.weight_sigma[:, 2] == 0)
    torch.testing.assert_close(model(x), output)


def test_structure_errors_and_bad_tau():
    with pytest.raises(ValueError, match="no consuming layer"):
        unit_scores(nn.Sequential(nn.Linear(2, 2), nn.ReLU()), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="no Linear/Conv2d/NoisyLinear before it"):
        unit_scores(nn.Sequential(nn.ReLU(), nn.Linear(2, 2)), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="with parameters"):
        unit_scores(nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.BatchNorm1d(2), nn.Linear(2, 2)), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="tau"):
        redo_(nn.Sequential(nn.Linear(2, 2), nn.ReLU(), nn.Linear(2, 1)), torch.zeros(1, 2), tau=-0.1)
