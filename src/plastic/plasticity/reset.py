"""Resets, the label-plasticity interventions of PLASTIC: hard reset, Shrink & Perturb, optimizer-state reset.

- `reset_parameters_` (paper §3.3 "Reset", §4; Nikishin et al., 2022): re-draw every parameter of a module (e.g. the
  head every 40,000 updates) from its initialisation distribution. LayerNorm affine and noisy mu/sigma are included
  (the public code forgets LayerNorm).
- `shrink_perturb_` (paper §4.3, PLASTIC†; Ash & Adams, 2020): theta <- alpha * theta + (1 - alpha) * phi with phi a
  fresh initialisation draw (alpha 0.6 on the backbone at each reset in the public code).
- `reset_optimizer_state_`: forget the optimizer's moments and step counts of exactly the reset parameters, so that
  the optimizer (and SAM's scope) need not be rebuilt.

With a target network (an EMA twin of the online one), `reset_twins_` and `shrink_perturb_twins_` act on
(online, target) pairs: the target takes the same fresh draw (a hard reset copies it; shrink & perturb replays the
generator state, so the twin moves towards the same phi), and `clear_optimizer_states_` applies a reset's
optimizer-state policy ("reset": the re-drawn parameters, "all", "none"). The schedule (when) lives in
`plastic.training.schedules`; the training hooks compose these.

Randomness: with a `generator`, the draw happens under a forked torch RNG seeded from one draw of `generator`, so the
global RNG is not advanced and the same generator state gives the same parameters. Without one, the draw uses (and
advances) the global RNG, as constructing a fresh module would.
"""

from __future__ import annotations

import copy
from typing import Iterable

import torch
from torch import nn

from plastic.plasticity.sam import SAM


def _resettable_modules(module: nn.Module) -> list[nn.Module]:
    """Submodules defining `reset_parameters()`; raise ValueError naming any parameter none of them covers.

    A module's `reset_parameters()` is taken to re-draw its own (directly registered) parameters.
    """
    resettable = [m for m in module.modules() if callable(getattr(m, "reset_parameters", None))]
    covered = {id(p) for m in resettable for p in m.parameters(recurse=False)}
    for name, parameter in module.named_parameters():
        if id(parameter) not in covered:
            raise ValueError(
                f"parameter {name!r} belongs to no submodule with reset_parameters(); cannot re-draw it "
                "(give its module a reset_parameters() method)"
            )
    return resettable


def _cuda_devices(module: nn.Module) -> list[int]:
    indices = set()
    for tensor in list(module.parameters()) + list(module.buffers()):
        if tensor.device.type == "cuda":
            indices.add(tensor.device.index if tensor.device.index is not None else torch.cuda.current_device())
    return sorted(indices)


@torch.no_grad()
def reset_parameters_(module: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """Re-draw every parameter of `module` from its initialisation distribution, in place; returns `module`.

    Calls `reset_parameters()` on every submodule that defines one (torch layers, `nn.LayerNorm`, `ConvLayerNorm`,
    `NoisyLinear`, ...). Such modules may also reset their own buffers (BatchNorm running statistics). Nothing
    outside `module` changes. Raises ValueError, before changing anything, if a parameter is covered by no submodule.
    """
    resettable = _resettable_modules(module)
    if generator is None:
        for m in resettable:
            m.reset_parameters()
        return module
    devices = _cuda_devices(module)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device).item())
    with torch.random.fork_rng(devices=devices):
        torch.default_generator.manual_seed(seed)
        for index in devices:
            torch.cuda.default_generators[index].manual_seed(seed)
        for m in resettable:
            m.reset_parameters()
    return module


@torch.no_grad()
def shrink_perturb_(module: nn.Module, alpha: float, generator: torch.Generator | None = None) -> nn.Module:
    """Shrink & Perturb in place: theta <- alpha * theta + (1 - alpha) * phi, phi = a fresh draw; returns `module`.

    phi is drawn by `reset_parameters_` on a copy with the same `generator` semantics, so alpha = 0 equals a reset with
    the same generator state and alpha = 1 leaves the parameters unchanged. Buffers are not touched.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got alpha={alpha}")
    fresh = reset_parameters_(copy.deepcopy(module), generator)
    params = list(module.parameters())
    if params:
        torch._foreach_mul_(params, alpha)
        torch._foreach_add_(params, list(fresh.parameters()), alpha=1.0 - alpha)
    return module


def reset_twins_(pairs: Iterable[tuple[nn.Module, nn.Module | None]], generator: torch.Generator | None,
                 target: bool = True) -> list[torch.nn.Parameter]:
    """Hard-reset each online module; its target twin (if any, and `target`) takes the same fresh draw. Returns the
    re-drawn online parameters (for the optimizer-state policy)."""
    touched: list[torch.nn.Parameter] = []
    for online, twin in pairs:
        reset_parameters_(online, generator)
        if twin is not None and target:
            twin.load_state_dict(online.state_dict())  # the same fresh draw
        touched += list(online.parameters())
    return touched


def shrink_perturb_twins_(pairs: Iterable[tuple[nn.Module, nn.Module | None]], alpha: float,
                          generator: torch.Generator) -> list[torch.nn.Parameter]:
    """Shrink & perturb each trainable online module and its target twin towards the same phi (the generator state
    is replayed for the twin, then left where the online draw left it). A module with no trainable parameter (a
    frozen pretrained backbone) is not trained, so not softly reset either. Returns the trainable parameters moved."""
    touched: list[torch.nn.Parameter] = []
    for online, twin in pairs:
        if not any(p.requires_grad for p in online.parameters()):
            continue
        draw = generator.get_state()
        shrink_perturb_(online, alpha, generator)
        if twin is not None:
            after = generator.get_state()
            generator.set_state(draw)
            shrink_perturb_(twin, alpha, generator)
            generator.set_state(after)
        touched += [p for p in online.parameters() if p.requires_grad]
    return touched


OPTIMIZER_POLICIES = ("reset", "all", "none")


def clear_optimizer_states_(optimizers: Iterable[torch.optim.Optimizer], touched: Iterable[torch.Tensor],
                            policy: str) -> None:
    """A reset's optimizer-state policy: "reset" clears the state of the `touched` parameters each optimizer owns,
    "all" of every parameter (the public code rebuilds the optimizer), "none" keeps it."""
    if policy not in OPTIMIZER_POLICIES:
        raise ValueError(f"optimizer policy {policy!r}; allowed: {', '.join(OPTIMIZER_POLICIES)}")
    touched = list(touched)
    for optimizer in optimizers:
        if policy == "all":
            params = [p for group in optimizer.param_groups for p in group["params"]]
        elif policy == "reset":
            owned = {id(p) for group in optimizer.param_groups for p in group["params"]}
            params = [p for p in touched if id(p) in owned]
        else:
            params = []
        if params:
            reset_optimizer_state_(optimizer, params)


def reset_optimizer_state_(optimizer: torch.optim.Optimizer, params: Iterable[torch.Tensor]) -> None:
    """Clear the optimizer state (moments, step counts, momentum buffers) of exactly `params`.

    The per-parameter state is deleted, so Adam/AdamW (plain, foreach, fused) and SGD re-create it lazily on their
    next step as for a new parameter; other parameters' state is untouched. For `SAM`, its base optimizer's state is
    cleared. Raises ValueError if `params` is empty or holds a tensor the optimizer does not optimise.
    """
    params = list(params)
    if not params:
        raise ValueError("params is empty; name the parameters whose optimizer state to reset")
    inner = optimizer.base_optimizer if isinstance(optimizer, SAM) else optimizer
    optimised = {id(p) for group in inner.param_groups for p in group["params"]}
    for index, p in enumerate(params):
        if id(p) not in optimised:
            raise ValueError(f"params[{index}] (shape {tuple(p.shape)}) is not optimised by this optimizer")
    for p in params:
        inner.state.pop(p, None)
