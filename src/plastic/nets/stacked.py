"""The forward pass of S networks of one architecture at once, from their stacked tensors (agents/seed_group.py).

`forward(network, tensors, x)`: `x` has a leading seed dimension (S, B, ...); `tensors` maps each of `network`'s
parameter and buffer names to a tensor (S, ...), row k being seed k's. Every layer type of the Rainbow network has a
batched form here: convolutions as one grouped convolution, linear and noisy layers as one batched matmul. The
matmuls are written as y^T = W x^T so that the weights' gradients come back in the weights' own (S, out, in) layout;
`torch.func.vmap` over the plain module gives them transposed, and the strided copies and elementwise passes that
follow cost more than the batching saves. `supports(network)` says whether a network is built only from these layers.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from plastic.nets.noisy import NoisyLinear
from plastic.nets.rainbow import DuelingC51Head, RainbowNetwork
from plastic.plasticity.layers import ConvLayerNorm, CReLU

Tensors = dict[str, torch.Tensor]


def _conv2d(module: nn.Conv2d, p: Callable[[str], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    seeds, batch = x.shape[:2]
    weight = p("weight")
    y = F.conv2d(x.transpose(0, 1).reshape(batch, seeds * x.shape[2], *x.shape[3:]),
                 weight.reshape(seeds * weight.shape[1], *weight.shape[2:]), p("bias").reshape(-1),
                 module.stride, module.padding, module.dilation, seeds * module.groups)
    return y.view(batch, seeds, -1, *y.shape[2:]).transpose(0, 1)


def _linear_of(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """x (S, B, in), weight (S, out, in), bias (S, out) -> (S, B, out), as (W x^T + b)^T."""
    return torch.baddbmm(bias[:, :, None], weight, x.transpose(1, 2)).transpose(1, 2)


def _noisy(module: NoisyLinear, p: Callable[[str], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    if not module.noisy:
        return _linear_of(p("weight_mu"), p("bias_mu"), x)
    epsilon_out = p("epsilon_out")
    weight = torch.addcmul(p("weight_mu"), p("weight_sigma"), epsilon_out[:, :, None] * p("epsilon_in")[:, None, :])
    return _linear_of(weight, torch.addcmul(p("bias_mu"), p("bias_sigma"), epsilon_out), x)


def _layer_norm(module: nn.LayerNorm, p: Callable[[str], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    y = F.layer_norm(x, module.normalized_shape, None, None, module.eps)
    return y * p("weight")[:, None] + p("bias")[:, None] if module.elementwise_affine else y


def _conv_layer_norm(module: ConvLayerNorm, p: Callable[[str], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    y = F.layer_norm(x.permute(0, 1, 3, 4, 2), (module.num_channels,), None, None, module.eps)
    return (y * p("weight")[:, None, None, None] + p("bias")[:, None, None, None]).permute(0, 1, 4, 2, 3)


def _shifted(dim: int) -> int:
    """A module's axis in the stacked tensor (one more leading axis)."""
    return dim + 1 if dim >= 0 else dim


LAYERS: dict[type, Callable] = {
    nn.Conv2d: _conv2d,
    nn.Linear: lambda module, p, x: _linear_of(p("weight"), p("bias"), x),
    NoisyLinear: _noisy,
    nn.LayerNorm: _layer_norm,
    ConvLayerNorm: _conv_layer_norm,
    nn.ReLU: lambda module, p, x: F.relu(x),
    CReLU: lambda module, p, x: torch.cat([F.relu(x), F.relu(-x)], dim=_shifted(module.dim)),
    nn.Flatten: lambda module, p, x: x.flatten(_shifted(module.start_dim), _shifted(module.end_dim)),
}


def supports(network: nn.Module) -> bool:
    """Whether `forward` can run `network`: a RainbowNetwork whose every leaf layer has a batched form above."""
    leaves = [m for m in network.modules() if not list(m.children())]
    return isinstance(network, RainbowNetwork) and all(type(m) in LAYERS for m in leaves) and not any(
        isinstance(m, nn.Conv2d) and m.padding_mode != "zeros" or isinstance(m, nn.Linear) and m.bias is None
        for m in leaves)


def forward(network: RainbowNetwork, tensors: Tensors, x: torch.Tensor) -> torch.Tensor:
    """(S, B, C, H, W) observations -> (S, B, actions, atoms) log-probabilities, seed k under `tensors`' row k."""
    features = _sequential(network.backbone, tensors, "backbone.", x)
    head: DuelingC51Head = network.head
    value = _sequential(head.value, tensors, "head.value.", features)
    advantage = _sequential(head.advantage, tensors, "head.advantage.", features)
    seeds, batch = x.shape[:2]
    return head.combine(value.flatten(0, 1), advantage.flatten(0, 1)).view(seeds, batch, head.num_actions, -1)


def _sequential(block: nn.Sequential, tensors: Tensors, prefix: str, x: torch.Tensor) -> torch.Tensor:
    for name, module in block.named_children():
        x = LAYERS[type(module)](module, lambda key, at=f"{prefix}{name}.": tensors[at + key], x)
    return x
