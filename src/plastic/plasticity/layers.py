"""Architectural interventions: CReLU (input plasticity, paper §3.3 / App. A.3) and LayerNorm (input plasticity, §3.3).

- `CReLU`: concat(ReLU(x), ReLU(-x)) along the feature/channel axis (Shang et al., 2016). It doubles the width, so a
  network builder decides where the doubling goes (`crelu_widths`): `"double_input"` keeps the layer's units and gives
  the next layer twice the inputs (paper App. A.3); `"halve_output"` halves the layer's units so the next layer sees
  the original width (the public code's head).
- `ConvLayerNorm`: LayerNorm for conv feature maps, normalising over channels at each spatial position with a
  per-channel affine (as the public code does before each backbone ReLU). Linear features use `torch.nn.LayerNorm`.
  `LN_PLACEMENTS` names where builders may place it: after every conv and FC layer (`"all"`, the paper) or after the
  backbone convs only (`"backbone"`, the public code).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

CRELU_WIDTH_MODES = ("double_input", "halve_output")
LN_PLACEMENTS = ("all", "backbone")


class CReLU(nn.Module):
    """Concatenated ReLU: `cat([relu(x), relu(-x)], dim)`; output has twice the features along `dim`."""

    def __init__(self, dim: int = 1):
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.relu(x), F.relu(-x)], dim=self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


def crelu_widths(units: int, mode: str) -> tuple[int, int]:
    """Width of a layer followed by CReLU and the input width of the layer after it.

    Returns `(layer_units, next_layer_inputs)`: `"double_input"` -> `(units, 2 * units)`;
    `"halve_output"` -> `(units // 2, units)`.
    """
    if mode == "double_input":
        return units, 2 * units
    if mode == "halve_output":
        if units % 2:
            raise ValueError(f"units={units} must be even for crelu width mode 'halve_output'")
        return units // 2, units
    raise ValueError(f"unknown crelu width mode {mode!r}; allowed: {', '.join(CRELU_WIDTH_MODES)}")


def activation(crelu: bool, dim: int = 1) -> nn.Module:
    """The nonlinearity a builder places after a layer: `CReLU(dim)` or `nn.ReLU()`.

    Always a module (never a functional call), so that probes and ReDo can find activations by hooks.
    """
    return CReLU(dim) if crelu else nn.ReLU()


class ConvLayerNorm(nn.Module):
    """LayerNorm over the channel axis of an `(N, C, H, W)` map, at each position, with per-channel affine."""

    def __init__(self, num_channels: int, eps: float = 1e-5):
        super().__init__()
        self.num_channels = num_channels
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # F.layer_norm over the innermost axis of the NHWC view: mean/var over dim 1 to float rounding, through
        # one fused kernel instead of several reductions over a strided axis (docs/performance.md).
        y = F.layer_norm(x.permute(0, 2, 3, 1), (self.num_channels,), self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        return f"{self.num_channels}, eps={self.eps}"
