"""Plasticity interventions that work on any `torch.nn.Module` (paper §3-4, and the methods published since:
L2-init, Hare & Tortoise, NaP, ReGraMa, Parseval, C-CHAIN; docs/toolkit.md)."""

from plastic.plasticity.churn import CChain
from plastic.plasticity.hare_tortoise import HareTortoise
from plastic.plasticity.injection import PlasticityInjection, inject_plasticity_
from plastic.plasticity.layers import (
    CRELU_WIDTH_MODES,
    LN_PLACEMENTS,
    ConvLayerNorm,
    CReLU,
    activation,
    crelu_widths,
)
from plastic.plasticity.nap import NaP, insert_layer_norms_, missing_layer_norms
from plastic.plasticity.redo import redo_, unit_scores
from plastic.plasticity.regrama import grama_scores, regrama_
from plastic.plasticity.regularizers import L2Init, Parseval
from plastic.plasticity.reset import reset_optimizer_state_, reset_parameters_, shrink_perturb_
from plastic.plasticity.sam import SAM, check_sam_compatible, sam_update

__all__ = [
    "CRELU_WIDTH_MODES",
    "LN_PLACEMENTS",
    "CChain",
    "HareTortoise",
    "L2Init",
    "NaP",
    "Parseval",
    "PlasticityInjection",
    "SAM",
    "CReLU",
    "ConvLayerNorm",
    "activation",
    "check_sam_compatible",
    "crelu_widths",
    "grama_scores",
    "inject_plasticity_",
    "insert_layer_norms_",
    "missing_layer_norms",
    "redo_",
    "regrama_",
    "reset_optimizer_state_",
    "reset_parameters_",
    "sam_update",
    "shrink_perturb_",
    "unit_scores",
]
