"""Sharpness probe: the largest eigenvalue of the loss Hessian, λmax(∇²L) (paper §4.1 "Metrics", §4.3, Fig. 4 left).

The paper measures the smoothness of the loss landscape by the maximum eigenvalue of the Hessian of the training loss
with respect to the network parameters (Kaur et al., 2023): a larger λmax means a sharper landscape. LN and SAM lower
it; PLASTIC reaches the smoothest region (Fig. 4).

The Hessian of a 7M-parameter network is never formed. Power iteration needs only Hessian-vector products, and
Hv = ∇_θ (∇_θL(θ) · v) (Pearlmutter, 1994): the gradient g = ∇_θL is computed once with its graph kept
(`create_graph=True`), and each iteration differentiates the scalar g · v through that same graph. All parameters
are treated as one flat vector, so the start vector is normalised jointly and the dot product is a single op.

`hessian_trace` estimates tr(∇²L) beside λmax, with Hutchinson's estimator (Hutchinson, 1989): for Rademacher v
(entries ±1 with probability 1/2), E[vᵀHv] = tr(H), so tr(H) ≈ (1/m) Σ_j v_jᵀ H v_j over m draws, each one
Hessian-vector product through the same first-order graph. Restricting the dot product to one layer's entries,
Σ_{i ∈ l} v_i (Hv)_i, estimates the trace of that layer's diagonal block without extra products.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch

LossFn = Callable[[], torch.Tensor]


def _named_parameter_list(params) -> list[tuple[str, torch.Tensor]]:
    """(layer, tensor) pairs: layers are module names for an `nn.Module`, `"all"` for a plain iterable of tensors."""
    if isinstance(params, torch.nn.Module):
        named = [(name.rpartition(".")[0] or name, p) for name, p in params.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError("params is empty; pass the tensors the loss is differentiated against")
        return named
    return [("all", p) for p in _parameter_list(params)]


def _parameter_list(params: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    if isinstance(params, torch.nn.Module):  # a module's frozen parameters (e.g. a frozen backbone, §4.4) are skipped
        params = [p for p in params.parameters() if p.requires_grad]
    params = list(params)
    if not params:
        raise ValueError("params is empty; pass the tensors the loss is differentiated against")
    if not all(p.requires_grad for p in params):
        raise ValueError("params must all require grad (requires_grad=True)")
    return params


def _flat_gradient(loss_fn: LossFn, params: list[torch.Tensor]) -> torch.Tensor:
    """∇_θL as one flat vector that keeps its graph, so that it can be differentiated again."""
    with torch.enable_grad():
        loss = loss_fn()
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise ValueError("loss_fn must return a scalar tensor")
        # Parameters the loss does not depend on have a zero gradient and zero Hessian rows.
        grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True, materialize_grads=True)
        return torch.cat([g.reshape(-1) for g in grads])


def _hessian_times(flat_grad: torch.Tensor, params: list[torch.Tensor], vector: torch.Tensor) -> torch.Tensor:
    """Hv = ∇_θ (g · v), reusing the first-order graph held by `flat_grad` (kept for the next product)."""
    if not flat_grad.requires_grad:  # the gradient is constant in θ: the loss is at most linear, H = 0
        return torch.zeros_like(vector)
    with torch.enable_grad():
        products = torch.autograd.grad(
            flat_grad @ vector, params, retain_graph=True, allow_unused=True, materialize_grads=True
        )
    return torch.cat([h.reshape(-1) for h in products])


def hessian_vector_product(
    loss_fn: LossFn, params: Iterable[torch.Tensor], vector: Sequence[torch.Tensor]
) -> list[torch.Tensor]:
    """H v for the Hessian H of `loss_fn()` w.r.t. `params`; `vector` holds one tensor per parameter (same shapes).

    Returns one tensor per parameter. `.grad` fields are not touched.
    """
    params = _parameter_list(params)
    vector = list(vector)
    if len(vector) != len(params) or any(v.shape != p.shape for v, p in zip(vector, params)):
        raise ValueError("vector must hold one tensor per parameter, with the parameter's shape")
    flat_grad = _flat_gradient(loss_fn, params)
    flat_vector = torch.cat([v.reshape(-1) for v in vector]).to(flat_grad)
    flat_product = _hessian_times(flat_grad, params, flat_vector).detach()
    return [h.view_as(p) for h, p in zip(flat_product.split([p.numel() for p in params]), params)]


def hessian_max_eigenvalue(
    loss_fn: LossFn,
    params: Iterable[torch.Tensor],
    iters: int = 100,
    tol: float = 1e-3,
    generator: torch.Generator | None = None,
) -> float:
    """λmax of the loss Hessian (the paper's sharpness, §4.3): its largest-magnitude eigenvalue, with its sign.

    Power iteration: v0 ~ N(0, I) drawn from `generator` over all parameters jointly and normalised;
    λ_k = v_k · H v_k (Rayleigh quotient), v_{k+1} = H v_k / ‖H v_k‖. Stops when |λ_k - λ_{k-1}| <= tol |λ_{k-1}|
    or after `iters` products.

    Args:
        loss_fn: zero-argument callable returning the scalar loss; called exactly once (so a noisy or stochastic loss
            is frozen at that call), even inside `torch.no_grad()`.
        params: the parameters (an iterable of tensors requiring grad, or an `nn.Module`).
        iters: the most Hessian-vector products, >= 1.
        tol: relative change of λ that stops the iteration, > 0.
        generator: source of the start vector; the same seed gives the same result.

    `.grad` fields are left untouched (only `torch.autograd.grad` is used).
    """
    if iters < 1:
        raise ValueError(f"iters={iters} must be >= 1")
    if not tol > 0:
        raise ValueError(f"tol={tol} must be > 0")
    params = _parameter_list(params)
    flat_grad = _flat_gradient(loss_fn, params)
    if not flat_grad.requires_grad:
        return 0.0

    device = generator.device if generator is not None else flat_grad.device
    vector = torch.randn(flat_grad.numel(), generator=generator, dtype=flat_grad.dtype, device=device)
    vector = vector.to(flat_grad.device)
    vector /= torch.linalg.vector_norm(vector)

    eigenvalue = None
    for _ in range(iters):
        product = _hessian_times(flat_grad, params, vector).detach()
        new_eigenvalue = float(vector @ product)
        norm = torch.linalg.vector_norm(product)
        if norm == 0:  # v lies in the null space of H
            return new_eigenvalue
        vector = product / norm
        converged = eigenvalue is not None and abs(new_eigenvalue - eigenvalue) <= tol * abs(eigenvalue)
        eigenvalue = new_eigenvalue
        if converged:
            break
    return eigenvalue


def hessian_trace(
    loss_fn: LossFn,
    params: Iterable[torch.Tensor],
    samples: int = 20,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """Hutchinson's estimate of tr(∇²L): per layer (for an `nn.Module`, keyed by module name) and `"all"`.

    tr(H) ≈ (1/m) Σ_j v_jᵀ H v_j, v_j Rademacher over all parameters jointly, m = `samples` Hessian-vector products
    (`hessian_vector_product`'s, sharing one first-order graph). Layer l's value is the estimate of the trace of its
    diagonal block, (1/m) Σ_j Σ_{i ∈ l} v_ji (H v_j)_i; the layers sum to `"all"`. `loss_fn` is called once (as in
    `hessian_max_eigenvalue`); `generator` makes the draws reproducible; `.grad` fields are untouched. The estimate
    is exact for a diagonal Hessian; otherwise its standard error shrinks as 1/sqrt(samples).
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise ValueError(f"samples={samples!r} must be an integer >= 1")
    named = _named_parameter_list(params)
    tensors = [p for _, p in named]
    if not all(p.requires_grad for p in tensors):
        raise ValueError("params must all require grad (requires_grad=True)")
    layers = list(dict.fromkeys(layer for layer, _ in named))
    flat_grad = _flat_gradient(loss_fn, tensors)
    # layer index of every flat entry, so that one scatter sums v_i (Hv)_i per layer
    owner = torch.cat([torch.full((p.numel(),), layers.index(layer), dtype=torch.long) for layer, p in named])
    owner = owner.to(flat_grad.device)
    totals = torch.zeros(len(layers), dtype=torch.float64, device=flat_grad.device)
    if flat_grad.requires_grad:  # otherwise H = 0
        device = generator.device if generator is not None else flat_grad.device
        for _ in range(samples):
            bits = torch.randint(0, 2, (flat_grad.numel(),), generator=generator, device=device)
            vector = (bits * 2 - 1).to(device=flat_grad.device, dtype=flat_grad.dtype)
            product = _hessian_times(flat_grad, tensors, vector).detach()
            totals.index_add_(0, owner, (vector * product).to(torch.float64))
    estimates = {layer: float(total) / samples for layer, total in zip(layers, totals.cpu())}
    estimates["all"] = float(totals.sum()) / samples
    return estimates
