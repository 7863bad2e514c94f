"""The existing layers: CReLU, crelu_widths, ConvLayerNorm, NoisyLinear, against their formulas."""

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from plastic.nets.noisy import FACTORISED_MAX_ROWS, NoisyLinear
from plastic.plasticity.layers import ConvLayerNorm, CReLU, activation, crelu_widths


def test_crelu_formula_by_hand():
    x = torch.tensor([[1.5, -2.0, 0.0]])
    assert torch.equal(CReLU()(x), torch.tensor([[1.5, 0.0, 0.0, 0.0, 2.0, 0.0]]))
    maps = torch.tensor([[[[1.0, -1.0]], [[-3.0, 2.0]]]])  # (1, 2, 1, 2)
    expected = torch.tensor([[[[1.0, 0.0]], [[0.0, 2.0]], [[0.0, 1.0]], [[3.0, 0.0]]]])
    assert torch.equal(CReLU(dim=1)(maps), expected)


def test_crelu_widths():
    assert crelu_widths(512, "double_input") == (512, 1024)
    assert crelu_widths(512, "halve_output") == (256, 512)
    with pytest.raises(ValueError, match="even"):
        crelu_widths(5, "halve_output")
    with pytest.raises(ValueError, match="double_input"):
        crelu_widths(4, "triple")


def test_activation_is_a_module():
    assert isinstance(activation(True), CReLU) and isinstance(activation(False), nn.ReLU)


def test_conv_layer_norm_is_layer_norm_over_channels_at_each_position():
    torch.manual_seed(0)
    norm = ConvLayerNorm(3)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([0.5, 2.0, -1.0]))
        norm.bias.copy_(torch.tensor([0.1, 0.0, 3.0]))
    x = torch.randn(2, 3, 4, 5)
    channels_last = x.permute(0, 2, 3, 1)
    expected = F.layer_norm(channels_last, (3,), norm.weight, norm.bias, eps=norm.eps).permute(0, 3, 1, 2)
    torch.testing.assert_close(norm(x), expected)
    # One position by hand: (x - mean) / sqrt(var + eps) * w + b over the 3 channels.
    v = x[1, :, 2, 3]
    by_hand = (v - v.mean()) / torch.sqrt(v.var(unbiased=False) + 1e-5) * norm.weight + norm.bias
    torch.testing.assert_close(norm(x)[1, :, 2, 3], by_hand)


def test_noisy_linear_forward_equals_factorised_formula():
    torch.manual_seed(0)
    layer = NoisyLinear(4, 3, sigma0=0.5)
    bound = 1 / math.sqrt(4)
    assert torch.allclose(layer.weight_sigma, torch.full((3, 4), 0.5 * bound))
    assert layer.weight_mu.abs().max() <= bound
    with torch.no_grad():
        layer.weight_sigma.uniform_(0.1, 0.9)
        layer.bias_sigma.uniform_(0.1, 0.9)
    layer.reset_noise(torch.Generator().manual_seed(4))
    g = torch.Generator().manual_seed(4)
    f = lambda z: z.sign() * z.abs().sqrt()  # noqa: E731
    eps_in, eps_out = f(torch.randn(4, generator=g)), f(torch.randn(3, generator=g))
    assert torch.equal(layer.epsilon_in, eps_in) and torch.equal(layer.epsilon_out, eps_out)
    weight = layer.weight_mu + layer.weight_sigma * torch.outer(eps_out, eps_in)
    bias = layer.bias_mu + layer.bias_sigma * eps_out
    x = torch.randn(5, 4)
    torch.testing.assert_close(layer(x), x @ weight.T + bias)
    # Without gradients, up to FACTORISED_MAX_ROWS rows (acting) take x mu^T + eps_out * ((x * eps_in) sigma^T), which
    # never forms W; more rows materialise W. Both are the same function.
    with torch.no_grad():
        for rows in (1, FACTORISED_MAX_ROWS, FACTORISED_MAX_ROWS + 1):
            x = torch.randn(rows, 4)
            torch.testing.assert_close(layer(x), x @ weight.T + bias)
    layer.noisy = False
    torch.testing.assert_close(layer(x), x @ layer.weight_mu.T + layer.bias_mu)
