"""λmax of the loss Hessian (paper §4.3 sharpness) by power iteration equals the exact top eigenvalue."""

import pytest
import torch
from torch import nn
from torch.func import functional_call

from plastic.probes import hessian_max_eigenvalue, hessian_vector_product


def _rotation(n: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    return q


def _quadratic(spectrum):
    """0.5 x^T A x with A = Q diag(spectrum) Q^T, x split over two parameter tensors (a 2x2 matrix and a vector)."""
    a = _rotation(len(spectrum), seed=3) @ torch.diag(torch.tensor(spectrum, dtype=torch.float64))
    a = a @ _rotation(len(spectrum), seed=3).T
    generator = torch.Generator().manual_seed(4)
    x = torch.randn(len(spectrum), generator=generator, dtype=torch.float64)
    params = [x[:4].reshape(2, 2).clone().requires_grad_(), x[4:].clone().requires_grad_()]

    def loss_fn():
        flat = torch.cat([p.reshape(-1) for p in params])
        return 0.5 * flat @ a @ flat

    return loss_fn, params, a


def test_quadratic_with_known_spectrum_gives_its_top_eigenvalue():
    loss_fn, params, _ = _quadratic([5.0, 2.0, 1.0, 0.5, 0.25])
    value = hessian_max_eigenvalue(loss_fn, params, iters=200, tol=1e-12, generator=torch.Generator().manual_seed(0))
    assert value == pytest.approx(5.0, rel=1e-9)


def test_largest_magnitude_eigenvalue_keeps_its_sign():
    loss_fn, params, _ = _quadratic([-5.0, 2.0, 1.0, 0.5, 0.25])
    value = hessian_max_eigenvalue(loss_fn, params, iters=200, tol=1e-12, generator=torch.Generator().manual_seed(0))
    assert value == pytest.approx(-5.0, rel=1e-9)


def _mlp_problem():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)).double()
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(16, 3, generator=generator, dtype=torch.float64)
    y = torch.randn(16, 2, generator=generator, dtype=torch.float64)

    def loss_fn():
        return nn.functional.mse_loss(model(x), y)

    return model, x, y, loss_fn


def _exact_hessian(model, x, y):
    names = [name for name, _ in model.named_parameters()]
    shapes = [p.shape for p in model.parameters()]
    sizes = [p.numel() for p in model.parameters()]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    def loss_of_flat(theta):
        tensors = [t.reshape(s) for t, s in zip(theta.split(sizes), shapes)]
        return nn.functional.mse_loss(functional_call(model, dict(zip(names, tensors)), (x,)), y)

    return torch.autograd.functional.hessian(loss_of_flat, flat)


def test_mlp_loss_matches_exact_hessian_top_eigenvalue():
    model, x, y, loss_fn = _mlp_problem()
    eigenvalues = torch.linalg.eigvalsh(_exact_hessian(model, x, y))
    expected = float(eigenvalues[eigenvalues.abs().argmax()])
    value = hessian_max_eigenvalue(
        loss_fn, model.parameters(), iters=2000, tol=1e-12, generator=torch.Generator().manual_seed(0)
    )
    assert value == pytest.approx(expected, rel=1e-3)


def test_hessian_vector_product_matches_exact_hessian_times_vector():
    model, x, y, loss_fn = _mlp_problem()
    generator = torch.Generator().manual_seed(5)
    vector = [torch.randn(p.shape, generator=generator, dtype=torch.float64) for p in model.parameters()]
    product = hessian_vector_product(loss_fn, list(model.parameters()), vector)
    expected = _exact_hessian(model, x, y) @ torch.cat([v.reshape(-1) for v in vector])
    assert [h.shape for h in product] == [p.shape for p in model.parameters()]
    torch.testing.assert_close(torch.cat([h.reshape(-1) for h in product]), expected, rtol=1e-10, atol=1e-12)


def test_same_generator_seed_gives_same_value_and_the_seed_matters():
    model, _, _, loss_fn = _mlp_problem()

    def estimate(seed):  # 3 products: far from converged, so the start vector shows in the result
        generator = torch.Generator().manual_seed(seed)
        return hessian_max_eigenvalue(loss_fn, model.parameters(), iters=3, tol=1e-12, generator=generator)

    assert estimate(7) == estimate(7)
    assert estimate(7) != estimate(8)


def test_no_grad_is_left_behind_and_existing_grads_are_untouched():
    model, _, _, loss_fn = _mlp_problem()
    hessian_max_eigenvalue(loss_fn, model.parameters(), iters=5, generator=torch.Generator().manual_seed(0))
    assert all(p.grad is None for p in model.parameters())

    loss_fn().backward()
    before = [p.grad.clone() for p in model.parameters()]
    hessian_max_eigenvalue(loss_fn, model.parameters(), iters=5, generator=torch.Generator().manual_seed(0))
    for p, grad in zip(model.parameters(), before):
        assert torch.equal(p.grad, grad)


def test_works_inside_no_grad_and_skips_frozen_module_parameters():
    _, params, a = _quadratic([5.0, 2.0, 1.0, 0.5, 0.25])
    holder = nn.Module()
    holder.first, holder.second = nn.Parameter(params[0].detach()), nn.Parameter(params[1].detach())
    holder.frozen = nn.Parameter(torch.ones(3, dtype=torch.float64), requires_grad=False)

    def loss_fn():
        flat = torch.cat([holder.first.reshape(-1), holder.second])
        return 0.5 * flat @ a @ flat + holder.frozen.sum()

    with torch.no_grad():
        value = hessian_max_eigenvalue(loss_fn, holder, iters=200, tol=1e-12)
    assert value == pytest.approx(5.0, rel=1e-9)


def test_linear_loss_has_zero_hessian():
    w = torch.ones(3, requires_grad=True)
    assert hessian_max_eigenvalue(lambda: (2 * w).sum(), [w]) == 0.0


@pytest.mark.parametrize(
    ("kwargs", "name"), [({"iters": 0}, "iters"), ({"tol": 0.0}, "tol"), ({"params": []}, "params")]
)
def test_bad_arguments_raise_value_error_naming_them(kwargs, name):
    w = torch.ones(2, requires_grad=True)
    arguments = {"loss_fn": lambda: (w**2).sum(), "params": [w], **kwargs}
    with pytest.raises(ValueError, match=name):
        hessian_max_eigenvalue(**arguments)
