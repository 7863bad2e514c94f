"""Active units (paper §4.1, Fig. 4 right) and ReDo's dormant units, on crafted nets whose answer is known by hand."""

from collections import OrderedDict

import pytest
import torch
from torch import nn

from plastic.plasticity.layers import CReLU
from plastic.probes import active_unit_fraction, dormant_unit_fraction

# Through an identity Linear and ReLU these give h = [[4, 2, 0, 0], [0, 0, 2, 0]]:
# 3 of 8 elements > 0; units 0-2 active on some input, unit 3 never; E|h| per unit = [2, 1, 1, 0], mean 1.
INPUTS = torch.tensor([[4.0, 2.0, 0.0, -1.0], [0.0, 0.0, 2.0, -5.0]])


def _linear(weight) -> nn.Linear:
    weight = torch.as_tensor(weight, dtype=torch.float32)
    layer = nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        layer.weight.copy_(weight)
        layer.bias.zero_()
    return layer


def _identity_relu() -> nn.Sequential:
    return nn.Sequential(_linear(torch.eye(4)), nn.ReLU())


def _two_layers() -> nn.Sequential:
    # Second layer: z = [h0 + h1, -h3] -> [[6, 0], [0, 0]]: 1 of 4 elements, 1 of 2 units; E|h| = [3, 0].
    return nn.Sequential(_linear(torch.eye(4)), nn.ReLU(), _linear([[1, 1, 0, 0], [0, 0, 0, -1]]), nn.ReLU())


def _hook_counts(model: nn.Module) -> dict[str, int]:
    return {name: len(module._forward_hooks) for name, module in model.named_modules()}


def test_identity_linear_relu_fractions():
    assert active_unit_fraction(_identity_relu(), INPUTS) == {
        "1/elements": 3 / 8,
        "1/units": 3 / 4,
        "all/elements": 3 / 8,
        "all/units": 3 / 4,
    }


def test_pooled_fractions_are_weighted_by_element_and_unit_counts():
    fractions = active_unit_fraction(_two_layers(), INPUTS)
    assert fractions["3/elements"] == 1 / 4
    assert fractions["3/units"] == 1 / 2
    assert fractions["all/elements"] == pytest.approx((3 + 1) / (8 + 4))
    assert fractions["all/units"] == pytest.approx((3 + 1) / (4 + 2))


@pytest.mark.parametrize(
    ("inputs", "units"),
    [
        ([[1.0, -2.0], [3.0, -4.0]], 2 / 4),  # outputs [[1, 0, 0, 2], [3, 0, 0, 4]]: units 0 and 3 only
        ([[1.0, -2.0], [-3.0, 4.0]], 4 / 4),  # outputs [[1, 0, 0, 2], [0, 4, 3, 0]]: every unit on some input
    ],
)
def test_crelu_has_exactly_one_of_each_pair_active(inputs, units):
    fractions = active_unit_fraction(nn.Sequential(CReLU()), torch.tensor(inputs))
    assert fractions["0/elements"] == 0.5
    assert fractions["0/units"] == units


def test_conv_maps_count_positions_as_elements_and_channels_as_units():
    conv = nn.Conv2d(3, 3, kernel_size=1)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(3).reshape(3, 3, 1, 1))
        conv.bias.zero_()
    model = nn.Sequential(conv, nn.ReLU())
    maps = torch.zeros(2, 3, 2, 2)
    maps[:, 0] = 1.0  # channel 0 on everywhere: 8 elements
    maps[:, 1] = -1.0  # channel 1 off everywhere
    maps[1, 2, 0, 1] = 0.5  # channel 2 on at one position of one sample
    fractions = active_unit_fraction(model, maps)
    assert fractions["1/elements"] == 9 / 24
    assert fractions["1/units"] == 2 / 3
    # E|h| per channel = [1, 0, 0.5 / 8]; the layer mean is 1.0625 / 3, so s = [2.82, 0, 0.176].
    assert dormant_unit_fraction(model, maps, tau=0.1) == {"1": 1 / 3, "all": 1 / 3}
    assert dormant_unit_fraction(model, maps, tau=0.2) == {"1": 2 / 3, "all": 2 / 3}


def test_crelu_on_conv_maps_doubles_the_channels():
    maps = torch.tensor([[[[1.0, -1.0]], [[-2.0, -3.0]]]])  # (1, 2, 1, 2)
    # Outputs: relu channels [[1, 0]], [[0, 0]]; negated channels [[0, 1]], [[2, 3]]: 4 of 8 elements, 3 of 4 units.
    fractions = active_unit_fraction(nn.Sequential(CReLU(dim=1)), maps)
    assert fractions["0/elements"] == 0.5
    assert fractions["0/units"] == 3 / 4


@pytest.mark.parametrize(("tau", "dormant"), [(0.0, 1 / 4), (0.5, 1 / 4), (1.0, 3 / 4), (2.0, 1.0)])
def test_dormant_fraction_uses_activity_normalised_by_the_layer_mean(tau, dormant):
    # s = E|h| / mean E|h| = [2, 1, 1, 0]; dormant when s <= tau.
    assert dormant_unit_fraction(_identity_relu(), INPUTS, tau=tau) == {"1": dormant, "all": dormant}


def test_dormant_fraction_pools_units_over_layers_and_a_dead_layer_is_all_dormant():
    fractions = dormant_unit_fraction(_two_layers(), INPUTS, tau=0.5)
    assert fractions == {"1": 1 / 4, "3": 1 / 2, "all": pytest.approx(2 / 6)}
    dead = nn.Sequential(_linear(-torch.eye(4)), nn.ReLU())
    assert dormant_unit_fraction(dead, INPUTS.abs(), tau=0.0) == {"1": 1.0, "all": 1.0}


class _ReusedReLU(nn.Module):
    """One nn.ReLU module applied after two layers: the same computation as `_two_layers`."""

    def __init__(self):
        super().__init__()
        self.first = _linear(torch.eye(4))
        self.second = _linear([[1, 1, 0, 0], [0, 0, 0, -1]])
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.second(self.relu(self.first(x))))


def test_a_reused_activation_module_counts_every_call():
    fractions = active_unit_fraction(_ReusedReLU(), INPUTS)
    assert fractions["relu/elements"] == pytest.approx(4 / 12)
    assert fractions["relu/units"] == pytest.approx(4 / 6)
    assert dormant_unit_fraction(_ReusedReLU(), INPUTS, tau=0.5)["relu"] == pytest.approx(2 / 6)


class _TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.relu = nn.ReLU()

    def forward(self, a, b):
        return self.relu(a - b)


def test_inputs_may_be_a_tuple_of_positional_arguments():
    fractions = active_unit_fraction(_TwoInputs(), (torch.tensor([[3.0, 1.0]]), torch.tensor([[1.0, 2.0]])))
    assert fractions["relu/elements"] == 0.5


class _Raises(nn.Module):
    def forward(self, x):
        raise RuntimeError("forward failed")


def test_hooks_are_removed_after_the_call_and_after_a_failing_forward():
    model = _two_layers()
    model[1].register_forward_hook(lambda module, args, output: None)  # a user's own hook must survive
    before = _hook_counts(model)
    active_unit_fraction(model, INPUTS)
    dormant_unit_fraction(model, INPUTS, tau=0.1)
    assert _hook_counts(model) == before

    failing = nn.Sequential(_linear(torch.eye(4)), nn.ReLU(), _Raises())
    before = _hook_counts(failing)
    with pytest.raises(RuntimeError, match="forward failed"):
        active_unit_fraction(failing, INPUTS)
    with pytest.raises(RuntimeError, match="forward failed"):
        dormant_unit_fraction(failing, INPUTS, tau=0.1)
    assert _hook_counts(failing) == before


@pytest.mark.parametrize("training", [True, False])
def test_train_eval_mode_is_preserved(training):
    model = _two_layers().train(training)
    active_unit_fraction(model, INPUTS)
    dormant_unit_fraction(model, INPUTS, tau=0.1)
    assert all(module.training == training for module in model.modules())


def test_layers_restricts_to_named_activations_and_sub_modules():
    model = _two_layers()
    assert active_unit_fraction(model, INPUTS, layers=["3"]) == {
        "3/elements": 1 / 4,
        "3/units": 1 / 2,
        "all/elements": 1 / 4,
        "all/units": 1 / 2,
    }
    nested = nn.Sequential(OrderedDict(backbone=_identity_relu(), head=nn.Sequential(model[2], nn.ReLU())))
    assert dormant_unit_fraction(nested, INPUTS, tau=0.5, layers=["head"]) == {"head.1": 1 / 2, "all": 1 / 2}
    with pytest.raises(ValueError, match="layers"):
        active_unit_fraction(model, INPUTS, layers=["nonexistent"])


def test_bad_arguments_raise_value_error():
    with pytest.raises(ValueError, match="tau"):
        dormant_unit_fraction(_identity_relu(), INPUTS, tau=-0.1)
    with pytest.raises(ValueError, match="activation"):
        active_unit_fraction(nn.Sequential(nn.Linear(4, 2), nn.Tanh()), INPUTS)
