"""Feature ranks on matrices with known singular values, and global norms against hand values."""

import copy
import math

import pytest
import torch
from torch import nn

from plastic.probes import (
    effective_rank,
    feature_rank,
    gradient_norm,
    layer_features,
    parameter_distance,
    stable_rank,
    weight_norm,
)


def _with_singular_values(values, rows=7, columns=6, seed=0) -> torch.Tensor:
    """U diag(s) V^T with random orthonormal U (rows x k) and V (columns x k)."""
    generator = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(rows, len(values), generator=generator, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(columns, len(values), generator=generator, dtype=torch.float64))
    return u @ torch.diag(torch.tensor(values, dtype=torch.float64)) @ v.T


SIGMA = [4.0, 3.0, 2.0, 1.0, 0.0]  # sum 10, sum of squares 30


def test_effective_rank_is_exp_entropy_of_normalised_singular_values():
    p = [0.4, 0.3, 0.2, 0.1]
    expected = math.exp(-sum(x * math.log(x) for x in p))  # 3.5961...
    assert effective_rank(_with_singular_values(SIGMA)) == pytest.approx(expected, rel=1e-9)
    assert effective_rank(_with_singular_values([2.0, 2.0, 2.0])) == pytest.approx(3.0, rel=1e-9)
    assert effective_rank(_with_singular_values([5.0])) == pytest.approx(1.0, rel=1e-9)


def test_stable_rank_is_sum_of_squares_over_largest_square():
    assert stable_rank(_with_singular_values(SIGMA)) == pytest.approx(30 / 16, rel=1e-9)
    assert stable_rank(_with_singular_values([2.0, 2.0, 2.0])) == pytest.approx(3.0, rel=1e-9)


@pytest.mark.parametrize(("delta", "rank"), [(0.01, 4), (0.15, 3), (0.35, 2), (0.65, 1), (0.1, 3)])
def test_feature_rank_is_fewest_singular_values_holding_one_minus_delta(delta, rank):
    # Cumulative sums 4, 7, 9, 10 of a total 10; delta = 0.1 needs exactly 9 (reached at k = 3).
    assert feature_rank(_with_singular_values(SIGMA), delta=delta) == rank


def test_ranks_accept_float32_features_and_are_zero_for_a_zero_matrix():
    features = _with_singular_values(SIGMA).float()
    assert stable_rank(features) == pytest.approx(30 / 16, rel=1e-5)
    zeros = torch.zeros(4, 3)
    assert (effective_rank(zeros), stable_rank(zeros), feature_rank(zeros)) == (0.0, 0.0, 0)


def test_rank_arguments_are_validated():
    with pytest.raises(ValueError, match="delta"):
        feature_rank(torch.eye(3), delta=0.0)
    with pytest.raises(ValueError, match="delta"):
        feature_rank(torch.eye(3), delta=1.0)
    with pytest.raises(ValueError, match="features"):
        effective_rank(torch.ones(2, 3, 4))


def test_layer_features_flattens_a_named_module_output_and_removes_its_hook():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 2 * 2, 5))
    inputs = torch.randn(4, 2, 4, 4)
    features = layer_features(model, inputs, "1")
    assert features.shape == (4, 12)
    torch.testing.assert_close(features, model[1](model[0](inputs)).reshape(4, 12))
    assert not features.requires_grad
    assert all(len(module._forward_hooks) == 0 for module in model.modules())
    with pytest.raises(ValueError, match="layer_name"):
        layer_features(model, inputs, "7")


def _linear_3_4_12() -> nn.Linear:
    layer = nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[3.0, 4.0]]))
        layer.bias.fill_(12.0)
    return layer


def test_weight_norm_is_global_l2_over_all_parameters():
    assert weight_norm(_linear_3_4_12()) == pytest.approx(13.0)  # sqrt(9 + 16 + 144)
    assert weight_norm([torch.tensor([3.0]), torch.tensor([[4.0]])]) == pytest.approx(5.0)


def test_gradient_norm_counts_existing_gradients_only():
    layer = _linear_3_4_12()
    assert gradient_norm(layer) == 0.0
    layer.weight.grad = torch.tensor([[1.0, 2.0]])  # bias has no gradient
    assert gradient_norm(layer) == pytest.approx(math.sqrt(5.0))
    layer.bias.grad = torch.tensor([2.0])
    assert gradient_norm(layer.parameters()) == pytest.approx(3.0)


def test_parameter_distance_to_initial_weights():
    layer = _linear_3_4_12()
    initial = copy.deepcopy(layer)
    assert parameter_distance(layer, initial) == 0.0
    with torch.no_grad():
        layer.weight.add_(torch.tensor([[1.0, -2.0]]))
        layer.bias.sub_(2.0)
    assert parameter_distance(layer, initial) == pytest.approx(3.0)  # sqrt(1 + 4 + 4)
    assert parameter_distance(list(layer.parameters()), list(initial.parameters())) == pytest.approx(3.0)


def test_norm_arguments_are_validated():
    with pytest.raises(ValueError, match="module_or_params"):
        weight_norm([])
    with pytest.raises(ValueError, match="module_or_params"):
        gradient_norm(nn.ReLU())
    with pytest.raises(ValueError, match="params_a"):
        parameter_distance([torch.ones(2)], [torch.ones(3)])
