"""Plasticity interventions that work on any `torch.nn.Module` (paper §3-4)."""

from plastic.plasticity.layers import (
    CRELU_WIDTH_MODES,
    LN_PLACEMENTS,
    ConvLayerNorm,
    CReLU,
    activation,
    crelu_widths,
)

__all__ = ["CRELU_WIDTH_MODES", "LN_PLACEMENTS", "CReLU", "ConvLayerNorm", "activation", "crelu_widths"]
