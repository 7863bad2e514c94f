"""Plasticity interventions that work on any `torch.nn.Module` (paper §3-4)."""

from plastic.plasticity.injection import PlasticityInjection, inject_plasticity_
from plastic.plasticity.layers import (
    CRELU_WIDTH_MODES,
    LN_PLACEMENTS,
    ConvLayerNorm,
    CReLU,
    activation,
    crelu_widths,
)
from plastic.plasticity.redo import redo_, unit_scores
from plastic.plasticity.reset import reset_optimizer_state_, reset_parameters_, shrink_perturb_
from plastic.plasticity.sam import SAM, check_sam_compatible

__all__ = [
    "CRELU_WIDTH_MODES",
    "LN_PLACEMENTS",
    "PlasticityInjection",
    "SAM",
    "CReLU",
    "ConvLayerNorm",
    "activation",
    "check_sam_compatible",
    "crelu_widths",
    "inject_plasticity_",
    "redo_",
    "reset_optimizer_state_",
    "reset_parameters_",
    "shrink_perturb_",
    "unit_scores",
]
