"""Sharpness-Aware Minimization (SAM; Foret et al., 2021), the input-plasticity optimizer of PLASTIC.

Paper §3.3, App. B.1 and Algorithm 1 (lines 10-17): with g = grad L(w),

    perturbation step:  eps = rho * g / ||g||_2        (||g||_2 is the global L2 norm over all perturbed parameters)
                        w~  = w + eps
    update step:        g_SAM = grad L(w~);  restore w;  w <- base_optimizer_update(w, g_SAM)

`adaptive=True` gives ASAM (Kwon et al., 2021) with the element-wise scale T_w = |w|:
eps = rho * w^2 * g / ||w * g||_2.

Scope (App. B.4, "backbone-SAM vs head-SAM") is explicit and per param group: a group with `perturb=False` is never
perturbed, takes no part in the norm, and is updated with its gradient from the second pass, i.e. the gradient at
the point where only the other groups are perturbed. `rho` may also be set per group. Since the scope is given by the
param groups you pass, re-creating SAM after a reset with the same groups gives the same scope; it never silently
widens to the whole network (a bug of the public code). Prefer `reset_optimizer_state_` (plastic.plasticity.reset)
to re-creating the optimizer at all.

SAM sees only parameters. A BatchNorm in training mode would update its running statistics in both passes of a
step; `check_sam_compatible(model)` refuses that, and the agents call it before using SAM.

`sam_update(optimizer, loss, loss_fn, ...)` is the one two-pass update every caller uses (the agents, the synthetic
experiment): with a plain optimizer it is backward + step; with SAM it is Algorithm 1's lines 10-17, with hooks for
what differs between callers (a noise redraw before the second pass, gradient clipping before the step).

Usage::

    opt = SAM([{"params": backbone.parameters()}, {"params": head.parameters(), "perturb": False}],
              torch.optim.Adam, rho=0.1, lr=1e-4)
    loss = loss_fn(model(x)); loss.backward(); opt.first_step(zero_grad=True)
    loss_fn(model(x)).backward(); opt.second_step(zero_grad=True)
    # or: opt.step(closure) with a closure doing zero_grad + forward + backward and returning the loss.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import torch
from torch import nn


class SAM(torch.optim.Optimizer):
    """SAM wrapping `base_optimizer` (an optimizer class, built on the same, shared param groups).

    `state_dict()` / `load_state_dict()` are the base optimizer's (moments, step counts) and include each group's
    `perturb`, `rho` and `adaptive`. `self.state` is the base optimizer's state.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        base_optimizer: type[torch.optim.Optimizer],
        rho: float = 0.05,
        adaptive: bool = False,
        **base_optimizer_kwargs: Any,
    ):
        params = list(params)
        if not params:
            raise ValueError("params is empty; SAM needs at least one parameter")
        if not rho > 0:
            raise ValueError(f"rho must be > 0, got rho={rho}")
        defaults = dict(rho=rho, adaptive=adaptive, perturb=True, **base_optimizer_kwargs)
        super().__init__(params, defaults)
        for group in self.param_groups:
            if not group["params"]:
                raise ValueError("params contains an empty param group")
            if not group["rho"] > 0:
                raise ValueError(f"rho must be > 0 in every param group, got rho={group['rho']}")
        # The base optimizer adds its defaults to the very same group dicts, so lr changes (schedulers) propagate.
        self.base_optimizer = base_optimizer(self.param_groups, **base_optimizer_kwargs)
        self._share_base_optimizer()
        self._backup: dict[torch.Tensor, torch.Tensor] = {}  # w saved by first_step, keyed by parameter
        self._perturbed: list[torch.Tensor] = []  # parameters perturbed by the last first_step

    def _share_base_optimizer(self) -> None:
        self.param_groups = self.base_optimizer.param_groups
        self.state = self.base_optimizer.state
        self.defaults.update(self.base_optimizer.defaults)

    def perturbed_parameters(self) -> list[torch.Tensor]:
        """All parameters in groups with `perturb=True` (the SAM scope), whether or not they have a gradient."""
        return [p for group in self.param_groups if group["perturb"] for p in group["params"]]

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """Perturbation step: w <- w + eps for the perturbed groups (parameters with a gradient only)."""
        if self._perturbed:
            raise RuntimeError("first_step called twice without second_step; the weights are still perturbed")
        groups = []
        for group in self.param_groups:
            if not group["perturb"]:
                continue
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                groups.append((group, params, [p.grad for p in params]))
        if not groups:
            return
        device = groups[0][1][0].device
        # Global L2 norm over every perturbed parameter: sqrt(sum of squared per-tensor norms), one kernel per list.
        scaled = []
        for group, params, grads in groups:
            scaled.append(torch._foreach_mul(grads, params) if group["adaptive"] else grads)
        # float32 at least, so that a half-precision model's norm does not overflow.
        wide = any(g.dtype == torch.float64 for _, _, grads in groups for g in grads)
        dtype = torch.float64 if wide else torch.float32
        norms: list[torch.Tensor] = []
        for s in scaled:
            norms.extend(n.to(device=device, dtype=dtype) for n in torch._foreach_norm(s))
        grad_norm = torch.linalg.vector_norm(torch.stack(norms))
        # A zero gradient gives no perturbation (0 * rho / tiny = 0), without a host sync or NaN.
        inverse_norm = 1.0 / grad_norm.clamp_min(torch.finfo(grad_norm.dtype).tiny)
        for (group, params, grads), s in zip(groups, scaled):
            for p in params:
                if p not in self._backup:
                    self._backup[p] = torch.empty_like(p)
            torch._foreach_copy_([self._backup[p] for p in params], params)
            # w <- w + eps with eps = rho * g / ||g|| (ASAM: rho * w^2 g / ||w g||, the scaled gradient times w once
            # more). addcmul with a 0-d scale avoids both a host sync and a temporary the size of the model.
            if group["adaptive"]:
                torch._foreach_mul_(s, params)
            scale = inverse_norm * group["rho"]
            torch._foreach_addcmul_(params, s, [scale] * len(params))
            self._perturbed.extend(params)
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Update step: restore w exactly, then let the base optimizer step with the gradient taken at w + eps."""
        if self._perturbed:
            torch._foreach_copy_(self._perturbed, [self._backup[p] for p in self._perturbed])
            self._perturbed = []
        self.base_optimizer.step()
        if zero_grad:
            self.zero_grad()

    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor:  # type: ignore[override]
        """One SAM update; `closure` zeroes the gradients, runs forward and backward, and returns the loss.

        Returns the loss of the first (unperturbed) pass.
        """
        if closure is None:
            raise ValueError("closure is required: SAM evaluates the loss twice (at w and at w + eps)")
        closure = torch.enable_grad()(closure)
        loss = closure()
        self.first_step(zero_grad=True)
        closure()
        self.second_step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        return self.base_optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for group in state_dict["param_groups"]:
            if "perturb" not in group or "rho" not in group:
                raise ValueError("state_dict has no SAM `perturb`/`rho` in its param groups; it is not from SAM")
        self.base_optimizer.load_state_dict(state_dict)
        self._share_base_optimizer()


def sam_update(
    optimizer: torch.optim.Optimizer | Sequence[torch.optim.Optimizer],
    loss: torch.Tensor,
    loss_fn: Callable[[], torch.Tensor],
    *,
    before_second_pass: Callable[[], None] | None = None,
    before_step: Callable[[], Any] | None = None,
) -> Any:
    """One update from `loss` = L(w), already computed; `loss_fn()` recomputes it (SAM's second pass, at w + eps).

    Gradients of `optimizer`'s parameters are cleared, `loss` is back-propagated, then either the base step (a plain
    optimizer) or, for `SAM`: perturb to w + eps, `before_second_pass()` (e.g. draw fresh noisy-layer noise,
    App. B.4), back-propagate `loss_fn()`, and step from w with that gradient (Algorithm 1 lines 10-17).
    `before_step()` runs just before the parameters move (e.g. gradient clipping); its result is returned.

    A sequence of optimizers (the seeds of a group, agents/seed_group.py, with `loss` the sum of their independent
    losses) steps each one as above: every SAM perturbation is scaled by its own optimizer's gradient norm.
    """
    optimizers = [optimizer] if isinstance(optimizer, torch.optim.Optimizer) else list(optimizer)
    for each in optimizers:
        each.zero_grad(set_to_none=True)
    loss.backward()
    if isinstance(optimizers[0], SAM):
        for each in optimizers:
            each.first_step(zero_grad=True)
        if before_second_pass is not None:
            before_second_pass()
        loss_fn().backward()
        result = before_step() if before_step is not None else None
        for each in optimizers:
            each.second_step(zero_grad=True)
        return result
    result = before_step() if before_step is not None else None
    for each in optimizers:
        each.step()
    return result


def check_sam_compatible(model: nn.Module) -> None:
    """Raise ValueError naming the first BatchNorm module in training mode that tracks running statistics.

    SAM runs two forward passes per update; such a module would update its running mean/var twice per step, once at
    the perturbed weights. Put it in eval mode for the second pass, or use LayerNorm (the paper's choice).
    """
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training and module.track_running_stats:
            raise ValueError(
                f"module {name or type(module).__name__!r} ({type(module).__name__}) is a BatchNorm in training mode; "
                "SAM's two passes would update its running statistics twice per step"
            )
