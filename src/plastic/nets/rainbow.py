"""The DrQ(ε)-Rainbow network (paper Table 5): a conv backbone and a dueling distributional (C51) noisy head.

Backbones: the Nature CNN (32@8x8/4, 64@4x4/2, 64@3x3/1) for 84x84 Atari frames, and a one-conv encoder
(16@3x3/1, as in the MinAtar paper) for 10x10 MinAtar inputs. The head has two noisy streams (value, advantage),
hidden width 512 (Atari), 51 atoms; Q-distributions are `softmax(v + a - mean_a a)` over atoms.

Plasticity switches shape the network (paper §4.1, App. A.3; docs/deviations.md):
- `ln_placement`: None, "backbone" (LayerNorm after each backbone conv, before its activation — the public code) or
  "all" (also after each hidden FC layer of the head — the paper's text).
- `crelu_placement`: None, "head" (CReLU after the head's hidden layers — the paper's parameter counts) or "all"
  (also in the backbone), with `width_mode` "double_input" or "halve_output" (`plastic.plasticity.crelu_widths`).
The network is split into `backbone` and `head` modules so that resets, shrink & perturb and SAM scopes can name
them.
"""

from __future__ import annotations

import torch
from torch import nn

from plastic.nets.noisy import NoisyLinear
from plastic.plasticity.layers import ConvLayerNorm, activation, crelu_widths

# (out_channels, kernel, stride) per conv layer.
ENCODERS = {
    "nature": ((32, 8, 4), (64, 4, 2), (64, 3, 1)),
    "minatar": ((16, 3, 1),),
}


def conv_backbone(in_channels: int, layers, *, layer_norm: bool, crelu: bool, width_mode: str) -> nn.Sequential:
    modules: list[nn.Module] = []
    channels = in_channels
    for out_channels, kernel, stride in layers:
        units, next_channels = crelu_widths(out_channels, width_mode) if crelu else (out_channels, out_channels)
        modules.append(nn.Conv2d(channels, units, kernel, stride))
        if layer_norm:
            modules.append(ConvLayerNorm(units))
        modules.append(activation(crelu, dim=1))
        channels = next_channels
    modules.append(nn.Flatten())
    return nn.Sequential(*modules)


class DuelingStream(nn.Sequential):
    """NoisyLinear -> [LayerNorm] -> ReLU/CReLU -> NoisyLinear."""

    def __init__(self, in_features: int, hidden: int, out_features: int, *, sigma0: float, layer_norm: bool,
                 crelu: bool, width_mode: str):
        units, next_features = crelu_widths(hidden, width_mode) if crelu else (hidden, hidden)
        modules: list[nn.Module] = [NoisyLinear(in_features, units, sigma0)]
        if layer_norm:
            modules.append(nn.LayerNorm(units))
        modules += [activation(crelu, dim=-1), NoisyLinear(next_features, out_features, sigma0)]
        super().__init__(*modules)


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    return x.float() if x.dtype in (torch.bfloat16, torch.float16) else x


class DuelingC51Head(nn.Module):
    def __init__(self, in_features: int, num_actions: int, *, hidden: int, num_atoms: int, sigma0: float,
                 layer_norm: bool, crelu: bool, width_mode: str):
        super().__init__()
        self.num_actions = num_actions
        self.num_atoms = num_atoms
        kwargs = dict(sigma0=sigma0, layer_norm=layer_norm, crelu=crelu, width_mode=width_mode)
        self.value = DuelingStream(in_features, hidden, num_atoms, **kwargs)
        self.advantage = DuelingStream(in_features, hidden, num_actions * num_atoms, **kwargs)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Log-probabilities over atoms, shape (batch, actions, atoms)."""
        # Under bf16 autocast the streams' matmuls are bf16; the dueling sum and log-softmax stay float32 (or wider).
        return self.combine(self.value(features), self.advantage(features))

    def combine(self, value: torch.Tensor, advantage: torch.Tensor) -> torch.Tensor:
        """The dueling sum of the two streams' outputs (batch, atoms) and (batch, actions * atoms), log-softmaxed."""
        value = at_least_float32(value).view(-1, 1, self.num_atoms)
        advantage = at_least_float32(advantage).view(-1, self.num_actions, self.num_atoms)
        logits = value + advantage - advantage.mean(dim=1, keepdim=True)
        return torch.log_softmax(logits, dim=-1)


class RainbowNetwork(nn.Module):
    def __init__(self, obs_shape: tuple[int, int, int], num_actions: int, *, encoder: str = "nature",
                 hidden: int = 512, num_atoms: int = 51, sigma0: float = 0.5, ln_placement: str | None = None,
                 crelu_placement: str | None = None, width_mode: str = "double_input"):
        super().__init__()
        if encoder not in ENCODERS:
            raise ValueError(f"unknown encoder {encoder!r}; allowed: {', '.join(ENCODERS)}")
        self.backbone = conv_backbone(obs_shape[0], ENCODERS[encoder], layer_norm=ln_placement is not None,
                                      crelu=crelu_placement == "all", width_mode=width_mode)
        with torch.no_grad():
            features = self.backbone(torch.zeros(1, *obs_shape)).shape[-1]
        self.head = DuelingC51Head(features, num_actions, hidden=hidden, num_atoms=num_atoms, sigma0=sigma0,
                                   layer_norm=ln_placement == "all", crelu=crelu_placement is not None,
                                   width_mode=width_mode)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """obs: float (batch, C, H, W) scaled to [0, 1] -> log-probabilities (batch, actions, atoms)."""
        return self.head(self.backbone(obs))

    def noisy_layers(self) -> list[NoisyLinear]:
        return [m for m in self.modules() if isinstance(m, NoisyLinear)]

    def reset_noise(self, generator: torch.Generator | None = None) -> None:
        for layer in self.noisy_layers():
            layer.reset_noise(generator)
