"""Plasticity injection (Nikishin et al., 2023, "Deep reinforcement learning with plasticity injection").

An alternative to resets among the label-plasticity interventions PLASTIC compares against (paper §2 related work):
a head h_theta is replaced by

    h(x) = h_theta(x) + h_theta'(x) - h_theta'_frozen(x)

where theta is frozen, theta' is a fresh initialisation draw and theta'_frozen a frozen copy of it. At injection the
last two terms cancel exactly, so the function is unchanged, while only theta' is trained: new capacity without a drop
in performance and without growing the effective number of trainable parameters.

The frozen copy is evaluated with the trainable copy's buffers (`torch.func.functional_call`), so a noisy head's two
new terms share one noise sample and still cancel after `reset_noise`.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from plastic.plasticity.reset import reset_parameters_


class PlasticityInjection(nn.Module):
    """Wraps `module`: `old(x) + (new(x) - new_frozen(x))`; only `new` has `requires_grad=True`.

    Build the optimizer after injecting, from `[p for p in model.parameters() if p.requires_grad]`.
    """

    def __init__(self, module: nn.Module, generator: torch.Generator | None = None):
        super().__init__()
        self.old = module.requires_grad_(False)
        self.new = reset_parameters_(copy.deepcopy(module), generator).requires_grad_(True)
        self.new_frozen = copy.deepcopy(self.new).requires_grad_(False)

    def forward(self, *args, **kwargs):
        frozen = dict(self.new_frozen.named_parameters())
        new_frozen = torch.func.functional_call(self.new, frozen, args, kwargs)
        # Difference first: it is exactly zero at injection, so the output equals old(x) bit for bit.
        return self.old(*args, **kwargs) + (self.new(*args, **kwargs) - new_frozen)


def inject_plasticity_(
    parent: nn.Module, child_name: str, generator: torch.Generator | None = None
) -> PlasticityInjection:
    """Replace `parent`'s submodule `child_name` (dotted path allowed) by a `PlasticityInjection` of it, in place."""
    owner_name, _, attribute = child_name.rpartition(".")
    try:
        owner = parent.get_submodule(owner_name) if owner_name else parent
        child = owner.get_submodule(attribute)
    except AttributeError as error:
        raise ValueError(f"child_name {child_name!r} is not a submodule of {type(parent).__name__}") from error
    injected = PlasticityInjection(child, generator)
    setattr(owner, attribute, injected)
    return injected
