"""Rank probes of a feature matrix Φ (N samples x D features), from its singular values σ_1 >= ... >= σ_r.

Capacity measures used alongside the paper's metrics (§4.1) in the loss-of-plasticity literature:
- `effective_rank`: exp of the Shannon entropy of p_k = σ_k / Σσ (Roy & Vetterli, 2007, "The effective rank: a
  measure of effective dimensionality").
- `stable_rank`: Σσ² / σ_1² = ‖Φ‖_F² / ‖Φ‖_2².
- `feature_rank`: srank_δ(Φ) = min{k : Σ_{i<=k} σ_i >= (1 - δ) Σ_i σ_i} (Kumar et al., 2021, "Implicit
  Under-Parameterization Inhibits Data-Efficient Deep Reinforcement Learning").
All three are 0 for a zero matrix. Singular values are computed in float64.

`layer_features` captures the output of one named module of a model (e.g. the backbone's last activation) as such a
matrix.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from plastic.probes.activity import Inputs, capture_outputs

# Slack on the cumulative-sum comparison so that a sum equal to the threshold in exact arithmetic counts as reaching it.
_RELATIVE_SLACK = 1e-12


def singular_values(features: torch.Tensor) -> torch.Tensor:
    """σ of an (N, D) feature matrix, descending, in float64."""
    if features.dim() != 2:
        raise ValueError(f"features must be a 2-D (samples, features) matrix, got shape {tuple(features.shape)}")
    return torch.linalg.svdvals(features.detach().to(torch.float64))


def effective_rank(features: torch.Tensor) -> float:
    """exp(-Σ p_k log p_k) with p_k = σ_k / Σσ (Roy & Vetterli, 2007); between 1 and rank(Φ), 0 for Φ = 0."""
    sigma = singular_values(features)
    total = sigma.sum()
    if total == 0:
        return 0.0
    p = sigma[sigma > 0] / total  # 0 log 0 = 0
    return math.exp(float(-(p * p.log()).sum()))


def stable_rank(features: torch.Tensor) -> float:
    """Σσ² / max σ²; 0 for Φ = 0."""
    sigma = singular_values(features)
    if sigma.numel() == 0 or sigma[0] == 0:
        return 0.0
    return float((sigma**2).sum() / sigma[0] ** 2)


def feature_rank(features: torch.Tensor, delta: float = 0.01) -> int:
    """srank_δ (Kumar et al., 2021): the fewest singular values holding a 1 - δ share of Σσ; δ in (0, 1)."""
    if not 0 < delta < 1:
        raise ValueError(f"delta={delta} must lie in (0, 1)")
    sigma = singular_values(features)
    total = sigma.sum()
    if total == 0:
        return 0
    reached = sigma.cumsum(0) >= (1 - delta) * total * (1 - _RELATIVE_SLACK)
    return int(reached.nonzero()[0]) + 1


def layer_features(model: nn.Module, inputs: Inputs, layer_name: str) -> torch.Tensor:
    """The output of module `layer_name` during `model(inputs)` (no grad), flattened to (N, features).

    The module must run exactly once in the forward; its hook is removed afterwards.
    """
    modules = dict(model.named_modules())
    if layer_name not in modules:
        raise ValueError(f"layer_name {layer_name!r} is not a module of the model")
    outputs = capture_outputs(model, inputs, {layer_name: modules[layer_name]}, lambda module, out: out.detach())
    calls = outputs[layer_name]
    if len(calls) != 1:
        raise ValueError(f"layer_name {layer_name!r} ran {len(calls)} times in the forward; expected exactly once")
    return calls[0].reshape(calls[0].shape[0], -1)
