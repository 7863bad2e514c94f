"""Gradient-propagation probes: active and dormant units (paper §4.1 "Metrics", §4.3, Fig. 4 right).

- `active_unit_fraction`: the paper's "fraction of active units" (§4.1), recorded periodically on 512 transitions
  sampled from the replay buffer. A ReLU unit whose output is <= 0 passes no gradient to its incoming weights, so a
  shrinking fraction signals lost plasticity; CReLU and Reset keep it high (Fig. 4). Reported two ways: over output
  elements, and over units active for at least one input.
- `dormant_unit_fraction`: the dormant-neuron ratio of ReDo (Sokar et al., 2023, "The Dormant Neuron Phenomenon in
  Deep Reinforcement Learning", Def. 3.1): the score of unit i is s_i = E|h_i| / mean_k E|h_k| within its layer, and
  the unit is tau-dormant when s_i <= tau.
- `gradient_dormant_fraction`: GraMa's dormant ratio (Liu et al., 2025, "Measure gradients not activations!"): the
  same with the gradient magnitude, G_i = E|dL/dh_i| / mean_k E|dL/dh_k|, h at the activation's input (default) or
  output (`plastic.plasticity.regrama` explains the choice).

Activations are found as modules: every `nn.ReLU` and `plastic.plasticity.layers.CReLU` in `model.named_modules()`
(`ACTIVATION_TYPES`). A nonlinearity written as a functional call (`F.relu(x)`) inside a `forward` is invisible to
these probes; builders in this project always use modules (`plastic.plasticity.layers.activation`).

Units are the entries along the feature/channel axis: dim 1 for `nn.ReLU` (PyTorch's (N, C, ...) layout, so a conv
channel or a linear feature), the module's `dim` for `CReLU` (whose 2C outputs are all units). Statistics run over
the batch and any spatial positions. A module called several times in one forward (one `nn.ReLU` reused after
several layers) counts each call as a separate set of units under the module's one name.

Hooks are removed before returning, also when the forward raises (the public code leaked one per call, slowing
training). The forward runs under `torch.no_grad()` (with grad for the GraMa probe, which leaves `.grad` fields
untouched) in whatever train/eval mode the model is in, which is left as is (pick the mode, e.g. noisy layers at their
means, before calling).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, TypeVar

import torch
from torch import nn

from plastic.plasticity.layers import CReLU

ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (nn.ReLU, CReLU)

Inputs = torch.Tensor | tuple[Any, ...]
T = TypeVar("T")


def activation_modules(model: nn.Module, layers: Iterable[str] | None = None) -> dict[str, nn.Module]:
    """The activation modules of `model` by qualified name, in `named_modules()` order.

    `layers` restricts them to the given names and to activations inside the given sub-modules (name prefixes).
    """
    found = {name: module for name, module in model.named_modules() if isinstance(module, ACTIVATION_TYPES)}
    if layers is not None:
        if isinstance(layers, str):
            raise ValueError(f"layers must be a list of module names, not the string {layers!r}")
        wanted = set()
        for prefix in layers:
            matches = [name for name in found if name == prefix or name.startswith(prefix + ".") or prefix == ""]
            if not matches:
                raise ValueError(
                    f"layers: {prefix!r} holds no activation module (nn.ReLU / CReLU); activations: {list(found)}"
                )
            wanted.update(matches)
        found = {name: module for name, module in found.items() if name in wanted}
    if not found:
        raise ValueError("model has no activation modules (nn.ReLU / CReLU); functional activations are not seen")
    return found


def capture_outputs(
    model: nn.Module,
    inputs: Inputs,
    modules: dict[str, nn.Module],
    reduce: Callable[[nn.Module, torch.Tensor], T],
) -> dict[str, list[T]]:
    """Run `model(inputs)` without grad and return `reduce(module, output)` for each call of each named module.

    `inputs` is a tensor or a tuple of positional arguments. The forward hooks are always removed.
    """
    results: dict[str, list[T]] = {name: [] for name in modules}

    def record(name: str, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        results[name].append(reduce(module, output))

    handles = []
    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(partial(record, name)))
        with torch.no_grad():
            model(*inputs) if isinstance(inputs, tuple) else model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return results


GRADIENT_AT = ("activation_input", "activation_output")


def capture_gradients(
    loss_fn: Callable[[], torch.Tensor], modules: dict[str, nn.Module], gradient_at: str = "activation_input"
) -> dict[str, list[torch.Tensor]]:
    """dL/dx for each call of each named module, x its input (`"activation_input"`) or output; `loss_fn()` runs once.

    Only `torch.autograd.grad` is used, so `.grad` fields are not touched. The hooks are always removed.
    """
    if gradient_at not in GRADIENT_AT:
        raise ValueError(f"gradient_at={gradient_at!r}; allowed: {', '.join(GRADIENT_AT)}")
    index = GRADIENT_AT.index(gradient_at)
    if index == 0:
        for name, module in modules.items():
            if getattr(module, "inplace", False):
                raise ValueError(f"activation {name!r} is in-place; gradient_at='activation_input' needs inplace=False")
    tensors: dict[str, list[torch.Tensor]] = {name: [] for name in modules}

    def record(name: str, module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        tensors[name].append((args[0], output)[index])

    handles = []
    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(partial(record, name)))
        with torch.enable_grad():
            loss = loss_fn()
    finally:
        for handle in handles:
            handle.remove()
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise ValueError("loss_fn must return a scalar tensor")
    flat = [(name, t) for name, calls in tensors.items() for t in calls]
    if not loss.requires_grad or not all(t.requires_grad for _, t in flat):
        raise ValueError("the loss does not depend on the activations through autograd (torch.no_grad()? frozen?)")
    grads = torch.autograd.grad(loss, [t for _, t in flat], allow_unused=True, materialize_grads=True)
    results: dict[str, list[torch.Tensor]] = {name: [] for name in modules}
    for (name, _), grad in zip(flat, grads):
        results[name].append(grad)
    return results


def _unit_rows(module: nn.Module, output: torch.Tensor) -> torch.Tensor:
    """The output as (units, samples x positions): one row per unit."""
    if output.dim() < 2:
        raise ValueError(f"activation output of shape {tuple(output.shape)} has no batch and unit axes")
    unit_dim = module.dim if isinstance(module, CReLU) else 1
    return output.detach().movedim(unit_dim, 0).reshape(output.shape[unit_dim], -1)


def _active_counts(module: nn.Module, output: torch.Tensor) -> torch.Tensor:
    """[active elements, elements, units active on some input, units] of one call."""
    active = _unit_rows(module, output) > 0
    sizes = torch.tensor([active.numel(), active.shape[0]], device=active.device)
    return torch.stack([active.sum(), sizes[0], active.any(dim=1).sum(), sizes[1]])


def active_unit_fraction(model: nn.Module, inputs: Inputs, layers: Iterable[str] | None = None) -> dict[str, float]:
    """Fraction of active (> 0) activation outputs per activation layer and pooled (paper §4.1, Fig. 4 right).

    Returns, for each activation module `name`:
    `f"{name}/elements"`: fraction of output elements > 0 over the batch and spatial positions;
    `f"{name}/units"`: fraction of units (features / channels) > 0 for at least one input at any position;
    plus `"all/elements"` and `"all/units"` pooled over the layers (weighted by element and unit counts).
    `layers` restricts the probe to these activation modules or sub-modules (qualified names).
    """
    modules = activation_modules(model, layers)
    captured = capture_outputs(model, inputs, modules, _active_counts)
    fractions: dict[str, float] = {}
    total = torch.zeros(4, dtype=torch.long)
    for name, calls in captured.items():
        if not calls:
            continue  # not on this forward's path
        counts = torch.stack(calls).sum(dim=0).cpu()
        total += counts
        fractions[f"{name}/elements"] = float(counts[0]) / float(counts[1])
        fractions[f"{name}/units"] = float(counts[2]) / float(counts[3])
    if not fractions:
        raise ValueError("no activation module ran during model(inputs)")
    fractions["all/elements"] = float(total[0]) / float(total[1])
    fractions["all/units"] = float(total[2]) / float(total[3])
    return fractions


def _mean_absolute_activity(module: nn.Module, output: torch.Tensor) -> torch.Tensor:
    """E|h_i| per unit over the batch and positions."""
    return _unit_rows(module, output).abs().mean(dim=1)


def normalized_scores(activity: torch.Tensor) -> torch.Tensor:
    """The dormancy score s_i = a_i / mean_k a_k of one layer's per-unit statistics a (ReDo's E|h_i|, GraMa's
    E|dL/dh_i|); a layer whose statistics are all zero scores 0 everywhere (entirely dormant)."""
    layer_mean = activity.mean()
    return activity / layer_mean if layer_mean > 0 else torch.zeros_like(activity)


def _dormant_fractions(captured: dict[str, list[torch.Tensor]], tau: float) -> dict[str, float]:
    """Per-layer and pooled fraction of units whose per-unit statistic, over its layer's mean, is <= tau."""
    fractions: dict[str, float] = {}
    dormant_total, units_total = 0, 0
    for name, calls in captured.items():
        if not calls:
            continue
        dormant, units = 0, 0
        for activity in calls:  # each call of the module is its own layer of units
            scores = normalized_scores(activity)
            dormant += int((scores <= tau).sum())
            units += activity.numel()
        fractions[name] = dormant / units
        dormant_total += dormant
        units_total += units
    if not fractions:
        raise ValueError("no activation module ran during model(inputs)")
    fractions["all"] = dormant_total / units_total
    return fractions


def dormant_unit_fraction(
    model: nn.Module, inputs: Inputs, tau: float, layers: Iterable[str] | None = None
) -> dict[str, float]:
    """Fraction of tau-dormant units per activation layer and over all of them (ReDo, Sokar et al. 2023).

    s_i = E|h_i| / mean_k E|h_k| (expectations over the batch and positions, mean over the layer's units); unit i is
    dormant when s_i <= tau. A layer whose outputs are all zero is entirely dormant. Returns `{name: fraction}` and
    `"all"` (pooled over all units).
    """
    if tau < 0:
        raise ValueError(f"tau={tau} must be >= 0")
    modules = activation_modules(model, layers)
    return _dormant_fractions(capture_outputs(model, inputs, modules, _mean_absolute_activity), tau)


def gradient_dormant_fraction(
    model: nn.Module,
    loss_fn: Callable[[], torch.Tensor],
    tau: float = 0.0,
    layers: Iterable[str] | None = None,
    gradient_at: str = "activation_input",
) -> dict[str, float]:
    """GraMa (Liu et al., 2025): fraction of units with G_i = E|dL/dh_i| / mean_k E|dL/dh_k| <= tau, per layer.

    `loss_fn()` runs `model` and returns the scalar training loss (called once). Keys as `dormant_unit_fraction`:
    activation module names and `"all"`. At the input of a ReLU, a unit that is off on every input has G_i = 0.
    """
    if tau < 0:
        raise ValueError(f"tau={tau} must be >= 0")
    modules = activation_modules(model, layers)
    gradients = capture_gradients(loss_fn, modules, gradient_at)
    magnitudes = {
        name: [_mean_absolute_activity(modules[name], grad) for grad in calls] for name, calls in gradients.items()
    }
    return _dormant_fractions(magnitudes, tau)
