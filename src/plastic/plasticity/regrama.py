"""ReGraMa: ReDo's recycling with units scored by gradient magnitude, GraMa (Liu et al., 2025, "Measure gradients not
activations! Enhancing neuronal activity in deep reinforcement learning").

GraMa replaces ReDo's activation statistic by the magnitude of the loss gradient reaching the unit: a unit the loss
cannot move has lost its learning capacity, whatever its activation. For a layer with units i = 1..n, a batch loss L
and the unit's value h_i(x) on each input x (and spatial position, for conv maps):

    g_i = E_x |dL/dh_i(x)|          G_i = g_i / ((1/n) sum_k g_k)          unit i is tau-dormant if G_i <= tau

(the normalisation by the layer mean makes scores average 1 per layer, as in ReDo). Dormant units are recycled
exactly as by `plastic.plasticity.redo.redo_`: fresh incoming weights, zeroed outgoing weights, zeroed optimizer
moments of those rows/columns. Layer structure and its limits are ReDo's (see `plastic.plasticity.redo`).

Where h is taken (the paper speaks of the neuron's gradient without fixing the tensor) is the named choice
`gradient_at`:
- `"activation_input"` (default): the tensor entering the nonlinearity (after LayerNorm, if any). A ReLU unit that
  is off on every input gets exactly 0 here, since ReLU passes no gradient where its input is <= 0; this is the
  gradient that reaches the unit's incoming weights.
- `"activation_output"`: the nonlinearity's output. Its gradient depends only on the outgoing weights, so a dead
  ReLU unit can score high; after CReLU there are 2n outputs and a unit is dormant when both of its are.

Hook into training: a periodic call (ReDo's schedule) `regrama_(model, loss_fn, tau, optimizer)`, with `loss_fn` the
agent's training loss on a replay batch. `.grad` fields are not touched (only `torch.autograd.grad` is used), so it
may run between `zero_grad` and `backward` or anywhere outside the update.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from plastic.plasticity.redo import _find_layers, _normalise, _recycle_dormant, _trace, _unit_mean_abs

GRADIENT_AT = ("activation_input", "activation_output")


def grama_scores(
    model: nn.Module, loss_fn: Callable[[], torch.Tensor], gradient_at: str = "activation_input"
) -> dict[str, torch.Tensor]:
    """G_i = E|dL/dh_i| / mean_k E|dL/dh_k| for every ReDo layer of `model`, keyed by the producing layer's name.

    `loss_fn()` must run `model`'s forward and return the scalar loss; it is called once, with grad enabled. One score
    per unit (`"activation_input"`) or per activation output (`"activation_output"`: 2n after CReLU).
    """
    if gradient_at not in GRADIENT_AT:
        raise ValueError(f"gradient_at={gradient_at!r}; allowed: {', '.join(GRADIENT_AT)}")
    layers = _find_layers(model)
    return {name: _normalise(value) for name, value in _gradient_magnitudes(model, loss_fn, layers, gradient_at).items()}


def _gradient_magnitudes(model, loss_fn, layers, gradient_at: str) -> dict[str, torch.Tensor]:
    """E|dL/dh| per unit (or activation output), h taken at `gradient_at`."""
    index = GRADIENT_AT.index(gradient_at)
    if index == 0:
        for layer in layers:
            if getattr(layer.activation, "inplace", False):
                raise ValueError(f"ReGraMa: activation {layer.activation_name!r} is in-place; its input is "
                                 "overwritten, so gradient_at='activation_input' needs inplace=False")
    with torch.enable_grad():
        captured, loss = _trace(model, layers, loss_fn)
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise ValueError("loss_fn must return a scalar tensor")
        names = list(captured)
        tensors = [captured[name][index] for name in names]
        if not loss.requires_grad or not all(t.requires_grad for t in tensors):
            raise ValueError("ReGraMa: the loss does not depend on the activations through autograd "
                             "(called under torch.no_grad(), or the parameters are frozen)")
        grads = torch.autograd.grad(loss, tensors, allow_unused=True, materialize_grads=True)
    return {name: _unit_mean_abs(grad) for name, grad in zip(names, grads)}


def regrama_(
    model: nn.Module,
    loss_fn: Callable[[], torch.Tensor],
    tau: float = 0.0,
    optimizer: torch.optim.Optimizer | None = None,
    generator: torch.Generator | None = None,
    gradient_at: str = "activation_input",
) -> dict[str, int]:
    """Recycle the GraMa tau-dormant units of every layer of `model`; returns the number recycled per layer.

    All scores come from one `loss_fn()` call before any unit is recycled. `optimizer` (SAM allowed) and `generator`
    as in `redo_`. tau = 0 recycles only units the loss gradient does not reach at all; the paper's threshold for a
    given benchmark is a tuned hyperparameter, so it is an argument here.
    """
    if tau < 0:
        raise ValueError(f"tau must be >= 0, got tau={tau}")
    if gradient_at not in GRADIENT_AT:
        raise ValueError(f"gradient_at={gradient_at!r}; allowed: {', '.join(GRADIENT_AT)}")
    layers = _find_layers(model)
    magnitudes = _gradient_magnitudes(model, loss_fn, layers, gradient_at)
    scores = {name: _normalise(value) for name, value in magnitudes.items()}
    return _recycle_dormant(layers, scores, tau, optimizer, generator)
