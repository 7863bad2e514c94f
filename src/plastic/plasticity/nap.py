"""Normalize-and-Project, NaP (Lyle et al., 2024, "Normalization and effective learning rates in reinforcement
learning").

Two parts:
1. Normalize: a LayerNorm before each nonlinearity. `missing_layer_norms(model)` names the activations that lack one;
   `insert_layer_norms_(model)` adds them (`nn.LayerNorm` after a linear layer, `ConvLayerNorm` after a conv).
   This project's builders place LayerNorm themselves (`plastic.plasticity.layers.LN_PLACEMENTS`), so these are a
   check and a fallback for other networks.
2. Project: after every optimizer step, each layer's weight is rescaled to its norm at initialisation,

       W_l <- W_l · ‖W_l⁽⁰⁾‖_F / ‖W_l‖_F                     (per layer, Frobenius norm; biases are left free)

   With normalisation the network's function is invariant to the scale of W_l, so the growth of ‖W_l‖ silently
   shrinks the effective learning rate ∝ η / ‖W_l‖² (the paper's §3); fixing the norm keeps it constant. Which
   parameters are projected is the named choice `scope`:
   - `"weights"` (default): the weight of every Linear / Conv2d layer (the mean weight of a NoisyLinear).
   - `"weights_and_norm_affine"`: also each LayerNorm / ConvLayerNorm's scale and offset, jointly, to their
     initial joint norm ‖(γ⁽⁰⁾, β⁽⁰⁾)‖ (the paper's treatment of learnable normalisation parameters).

Hook into training: build `NaP(model)` once, right after initialisation; call `nap.project_()` after every optimizer
step. The initial norms are in `state_dict()` for exact resume.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from plastic.nets.noisy import NoisyLinear
from plastic.plasticity.layers import ConvLayerNorm, CReLU

PRODUCERS = (nn.Linear, nn.Conv2d, NoisyLinear)
NORMS = (nn.LayerNorm, ConvLayerNorm)
ACTIVATIONS = (nn.ReLU, CReLU)  # as plastic.probes.activity.ACTIVATION_TYPES (not imported: circular)
SCOPES = ("weights", "weights_and_norm_affine")


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, m) for name, m in model.named_modules() if not any(True for _ in m.children())]


def _activation_producers(model: nn.Module) -> dict[str, tuple[nn.Module | None, bool]]:
    """For every activation (registration order): (the producer before it or None, whether a norm sits between)."""
    found: dict[str, tuple[nn.Module | None, bool]] = {}
    producer, normalised = None, False
    for name, module in _leaves(model):
        if isinstance(module, PRODUCERS):
            producer, normalised = module, False
        elif isinstance(module, NORMS):
            normalised = True
        elif isinstance(module, ACTIVATIONS):
            found[name] = (producer, normalised)
            producer, normalised = None, False
    return found


def missing_layer_norms(model: nn.Module) -> list[str]:
    """Names of the activation modules (nn.ReLU / CReLU) with no LayerNorm between them and the layer before them.

    Structure is read from registration order (`named_modules()`), as ReDo does; an empty list means NaP's
    normalisation is in place.
    """
    return [name for name, (_, normalised) in _activation_producers(model).items() if not normalised]


def _norm_for(producer: nn.Module) -> nn.Module:
    if isinstance(producer, nn.Conv2d):
        return ConvLayerNorm(producer.out_channels)
    return nn.LayerNorm(producer.out_features)


def insert_layer_norms_(model: nn.Module) -> list[str]:
    """Put a LayerNorm before every activation that lacks one, in place; returns the activations changed.

    Each such activation module is replaced, in its parent, by `nn.Sequential(norm, activation)`, so its name gains
    a suffix (`"2"` becomes `"2.1"`) and the norm is `"2.0"`. The norm's size comes from the Linear/Conv2d before
    the activation. Raises ValueError, before changing anything, for an activation with no such layer before it or
    one registered under several names.
    """
    targets = {}
    for name, (producer, normalised) in _activation_producers(model).items():
        if normalised:
            continue
        if producer is None:
            raise ValueError(f"NaP: activation {name!r} has no Linear/Conv2d before it to size a LayerNorm")
        targets[name] = producer
    modules = dict(model.named_modules(remove_duplicate=False))
    counts: dict[int, int] = {}
    for module in modules.values():
        counts[id(module)] = counts.get(id(module), 0) + 1
    for name in targets:
        if counts[id(modules[name])] > 1:
            raise ValueError(f"NaP: activation {name!r} is shared by several parents; cannot insert a norm before it")
    for name, producer in targets.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        activation = getattr(parent, child)
        norm = _norm_for(producer).to(device=next(producer.parameters()).device)
        setattr(parent, child, nn.Sequential(norm, activation))
    return list(targets)


class NaP:
    """NaP's weight projection: after each optimizer step, every layer's weight back to its initial norm.

    Args:
        model: the network, at initialisation (its current norms are the targets).
        scope: `"weights"` or `"weights_and_norm_affine"` (see the module docstring).
        exclude: names of layers (Linear/Conv2d/NoisyLinear or norms) left unprojected.
    Raises ValueError for a projected tensor whose initial norm is 0 (projection would keep it at 0: exclude it).
    """

    def __init__(self, model: nn.Module, scope: str = "weights", exclude: Iterable[str] = ()):
        if scope not in SCOPES:
            raise ValueError(f"scope={scope!r}; allowed: {', '.join(SCOPES)}")
        if isinstance(exclude, str):
            raise ValueError(f"exclude must be a list of layer names, not the string {exclude!r}")
        exclude = set(exclude)
        modules = dict(model.named_modules())
        for name in exclude:
            if not isinstance(modules.get(name), PRODUCERS + NORMS):
                raise ValueError(f"exclude: {name!r} is not a Linear/Conv2d/NoisyLinear/LayerNorm of the model")
        self.scope = scope
        self.groups: dict[str, list[torch.Tensor]] = {}  # each group is projected jointly
        for name, module in model.named_modules():
            if name in exclude:
                continue
            if isinstance(module, PRODUCERS):
                self.groups[name] = [module.weight_mu if isinstance(module, NoisyLinear) else module.weight]
            elif scope == "weights_and_norm_affine" and isinstance(module, NORMS):
                affine = [p for p in (module.weight, module.bias) if p is not None]
                if affine:
                    self.groups[name] = affine
        if not self.groups:
            raise ValueError("NaP: no layer to project")
        self.initial_norms = {name: self._norm(tensors) for name, tensors in self.groups.items()}
        for name, norm in self.initial_norms.items():
            if norm == 0:
                raise ValueError(f"NaP: layer {name!r} has norm 0 at initialisation; exclude it")

    @staticmethod
    def _norm(tensors: list[torch.Tensor]) -> torch.Tensor:
        return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t.detach().float()) for t in tensors]))

    @torch.no_grad()
    def project_(self) -> None:
        """θ_l <- θ_l · ‖θ_l⁽⁰⁾‖ / ‖θ_l‖ for every group; a group of norm 0 (e.g. zeroed by a reset) is left alone."""
        for name, tensors in self.groups.items():
            norm = self._norm(tensors)
            target = self.initial_norms[name].to(norm.device)
            factor = torch.where(norm > 0, target / norm.clamp_min(torch.finfo(norm.dtype).tiny), 1.0)
            for t in tensors:  # no host sync: the factor stays a device tensor
                t.mul_(factor.to(t.dtype))

    def state_dict(self) -> dict:
        return {"scope": self.scope, "initial_norms": {n: float(v) for n, v in self.initial_norms.items()}}

    def load_state_dict(self, state: dict) -> None:
        if state["scope"] != self.scope or set(state["initial_norms"]) != set(self.groups):
            raise ValueError("NaP state does not match this model and scope")
        self.initial_norms = {n: torch.tensor(v, dtype=torch.float32) for n, v in state["initial_norms"].items()}
