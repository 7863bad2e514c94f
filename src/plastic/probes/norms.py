"""Norm probes: parameter norm, gradient norm and distance from a reference (e.g. the initial) parameter set.

Growing weight norms and drift from the initialisation accompany the loss of plasticity (Lyle et al., 2023,
"Understanding plasticity in neural networks", the paper's [47]; Nikishin et al., 2022 [52]); the gradient norm tracks
the gradient propagation the paper measures with active units (§4.1). All are global L2 norms over every tensor
jointly, sqrt(Σ_p ‖p‖²), accumulated in float64. Arguments are an `nn.Module` (its `parameters()`) or an iterable of
tensors.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

ParamsLike = nn.Module | Iterable[torch.Tensor]


def _tensors(module_or_params: ParamsLike, argument: str) -> list[torch.Tensor]:
    tensors = list(module_or_params.parameters() if isinstance(module_or_params, nn.Module) else module_or_params)
    if not tensors:
        raise ValueError(f"{argument} is empty; pass an nn.Module or a non-empty iterable of tensors")
    return tensors


def _global_norm(tensors: list[torch.Tensor]) -> float:
    if not tensors:
        return 0.0
    # One fused kernel per device and dtype, accumulating in float64.
    norms = torch._foreach_norm([t.detach() for t in tensors], 2, dtype=torch.float64)
    return float(torch.linalg.vector_norm(torch.stack([n.to(norms[0].device) for n in norms])))


def weight_norm(module_or_params: ParamsLike) -> float:
    """sqrt(Σ_p ‖p‖²) over all parameters."""
    return _global_norm(_tensors(module_or_params, "module_or_params"))


def gradient_norm(module_or_params: ParamsLike) -> float:
    """sqrt(Σ_p ‖p.grad‖²) over the parameters that have a `.grad`; 0.0 when none has one."""
    tensors = _tensors(module_or_params, "module_or_params")
    return _global_norm([p.grad for p in tensors if p.grad is not None])


def parameter_distance(params_a: ParamsLike, params_b: ParamsLike) -> float:
    """‖θ_a - θ_b‖₂ over paired tensors (same order and shapes), e.g. the distance from the initial weights."""
    tensors_a = _tensors(params_a, "params_a")
    tensors_b = _tensors(params_b, "params_b")
    if len(tensors_a) != len(tensors_b) or any(a.shape != b.shape for a, b in zip(tensors_a, tensors_b)):
        raise ValueError("params_a and params_b must hold the same number of tensors with matching shapes")
    tensors_b = [b.detach().to(a) for a, b in zip(tensors_a, tensors_b)]
    differences = torch._foreach_sub([a.detach() for a in tensors_a], tensors_b)
    return _global_norm(differences)
