"""Norm probes: parameter norm, gradient norm and distance from a reference (e.g. the initial) parameter set.

Growing weight norms and drift from the initialisation accompany the loss of plasticity (Lyle et al., 2023,
"Understanding plasticity in neural networks", the paper's [47]; Nikishin et al., 2022 [52]); the gradient norm tracks
the gradient propagation the paper measures with active units (§4.1). All are global L2 norms over every tensor
jointly, sqrt(Σ_p ‖p‖²), accumulated in float64. Arguments are an `nn.Module` (its `parameters()`) or an iterable of
tensors.
"""

from __future__ import annotations

import math
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


def _layer_of(parameter_name: str) -> str:
    """The module owning a parameter (`"encoder.0"` for `"encoder.0.weight"`); a root parameter is its own layer."""
    layer, _, _ = parameter_name.rpartition(".")
    return layer or parameter_name


def parameter_snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached copies of `model`'s named parameters, the "before" of `effective_learning_rate`."""
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def effective_learning_rate(before: dict[str, torch.Tensor], model: nn.Module) -> dict[str, float]:
    """‖θ_l − θ_l^before‖ / ‖θ_l^before‖ per layer l (the module owning the parameters), and `"all"` jointly.

    The relative size of the change between two snapshots, e.g. one update: with a normalised layer the function is
    invariant to the scale of θ_l, so this ratio, not the nominal step size, is the rate at which it learns (Lyle et
    al., 2024, "Normalization and effective learning rates in reinforcement learning"). `before` is
    `parameter_snapshot(model)` taken earlier. A layer whose `before` norm is 0 reports inf if it moved and 0 if not.
    """
    current = dict(model.named_parameters())
    if before.keys() != current.keys() or any(before[n].shape != current[n].shape for n in current):
        raise ValueError("before must be parameter_snapshot(model) of this model (same names and shapes)")
    if not current:
        raise ValueError("model has no parameters")
    names = list(current)
    olds = [before[n].detach().to(current[n]) for n in names]
    changes = torch._foreach_norm(torch._foreach_sub([current[n].detach() for n in names], olds), 2,
                                  dtype=torch.float64)
    norms = torch._foreach_norm(olds, 2, dtype=torch.float64)
    squares: dict[str, list[float]] = {}
    for name, change, norm in zip(names, torch.stack([c.cpu() for c in changes]), torch.stack([n.cpu() for n in norms])):
        totals = squares.setdefault(_layer_of(name), [0.0, 0.0])
        totals[0] += float(change) ** 2
        totals[1] += float(norm) ** 2
    squares["all"] = [sum(t[0] for t in squares.values()), sum(t[1] for t in squares.values())]

    def ratio(change_sq: float, norm_sq: float) -> float:
        if norm_sq == 0:
            return math.inf if change_sq > 0 else 0.0
        return math.sqrt(change_sq / norm_sq)

    return {layer: ratio(*totals) for layer, totals in squares.items()}
