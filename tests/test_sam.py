"""SAM (paper Algorithm 1) against hand-computed updates on a two-layer linear model with an analytic gradient."""

import io

import pytest
import torch
from torch import nn

from plastic.plasticity.reset import reset_optimizer_state_, reset_parameters_
from plastic.plasticity.sam import SAM, check_sam_compatible

RHO, LR = 0.3, 0.1


def make_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2)).double()


def make_data(seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(5, 2, generator=g, dtype=torch.float64)


def loss_fn(model, x, y):
    return 0.5 * ((model(x) - y) ** 2).sum(dim=1).mean()


def analytic_grads(w, x, y):
    """Gradient of 0.5 * mean_n ||W2 (W1 x_n + b1) + b2 - y_n||^2 for w = [W1, b1, W2, b2], by hand."""
    w1, b1, w2, b2 = w
    n = x.shape[0]
    h = x @ w1.T + b1
    r = h @ w2.T + b2 - y
    dh = r @ w2
    return [dh.T @ x / n, dh.mean(0), r.T @ h / n, r.mean(0)]


def global_norm(tensors):
    return torch.sqrt(sum((t**2).sum() for t in tensors))


def params_of(model):
    return [p.detach().clone() for p in model.parameters()]


def closure_for(model, opt, x, y):
    def closure():
        opt.zero_grad()
        loss = loss_fn(model, x, y)
        loss.backward()
        return loss

    return closure


def sam_step_by_hand(w, x, y, perturbed=(0, 1, 2, 3), rho=RHO):
    """The SAM gradient: eps = rho g / ||g|| over the perturbed tensors, gradient taken at w + eps."""
    g = analytic_grads(w, x, y)
    norm = global_norm([g[i] for i in perturbed])
    w_tilde = [wi + rho * gi / norm if i in perturbed else wi for i, (wi, gi) in enumerate(zip(w, g))]
    return analytic_grads(w_tilde, x, y), w_tilde


def test_sgd_step_equals_hand_computed_update():
    model, (x, y) = make_model(), make_data()
    w0 = params_of(model)
    opt = SAM(model.parameters(), torch.optim.SGD, rho=RHO, lr=LR)
    loss_fn(model, x, y).backward()
    opt.first_step(zero_grad=True)
    g_sam, w_tilde = sam_step_by_hand(w0, x, y)
    for p, wt in zip(model.parameters(), w_tilde):
        torch.testing.assert_close(p.detach(), wt)  # the perturbation w + rho g / ||g||
    loss_fn(model, x, y).backward()
    opt.second_step(zero_grad=True)
    for p, w, g in zip(model.parameters(), w0, g_sam):
        torch.testing.assert_close(p.detach(), w - LR * g)
        assert p.grad is None


def test_perturb_false_group_is_never_perturbed_and_uses_gradient_where_only_others_are():
    model, (x, y) = make_model(), make_data()
    w0 = params_of(model)
    first, second = model[0], model[1]
    opt = SAM(
        [{"params": first.parameters()}, {"params": second.parameters(), "perturb": False}],
        torch.optim.SGD,
        rho=RHO,
        lr=LR,
    )
    assert opt.perturbed_parameters() == list(first.parameters())
    seen_second_weights = []
    second.register_forward_pre_hook(lambda m, inp: seen_second_weights.append(m.weight.detach().clone()))
    opt.step(closure_for(model, opt, x, y))
    g_sam, _ = sam_step_by_hand(w0, x, y, perturbed=(0, 1))
    for p, w, g in zip(model.parameters(), w0, g_sam):
        torch.testing.assert_close(p.detach(), w - LR * g)
    assert len(seen_second_weights) == 2
    for seen in seen_second_weights:
        torch.testing.assert_close(seen, w0[2], rtol=0, atol=0)
    # The group's gradient differs from the clean one (it was taken at the perturbed first layer).
    assert not torch.allclose(g_sam[2], analytic_grads(w0, x, y)[2])


def test_adam_two_steps_equal_hand_computed_adam_on_sam_gradients():
    model, (x, y) = make_model(), make_data()
    betas, adam_eps = (0.9, 0.999), 1e-8
    opt = SAM(model.parameters(), torch.optim.Adam, rho=RHO, lr=LR, betas=betas, eps=adam_eps)
    w = params_of(model)
    m = [torch.zeros_like(t) for t in w]
    v = [torch.zeros_like(t) for t in w]
    for t in (1, 2):
        g_sam, _ = sam_step_by_hand(w, x, y)
        m = [betas[0] * mi + (1 - betas[0]) * g for mi, g in zip(m, g_sam)]
        v = [betas[1] * vi + (1 - betas[1]) * g * g for vi, g in zip(v, g_sam)]
        m_hat = [mi / (1 - betas[0] ** t) for mi in m]
        v_hat = [vi / (1 - betas[1] ** t) for vi in v]
        w = [wi - LR * mh / (vh.sqrt() + adam_eps) for wi, mh, vh in zip(w, m_hat, v_hat)]
        opt.step(closure_for(model, opt, x, y))
        for p, wi in zip(model.parameters(), w):
            torch.testing.assert_close(p.detach(), wi)


def test_adaptive_perturbation_is_asam_formula():
    model, (x, y) = make_model(), make_data()
    w0 = params_of(model)
    opt = SAM(model.parameters(), torch.optim.SGD, rho=RHO, adaptive=True, lr=LR)
    loss_fn(model, x, y).backward()
    opt.first_step()
    g = analytic_grads(w0, x, y)
    norm = global_norm([wi * gi for wi, gi in zip(w0, g)])
    for p, wi, gi in zip(model.parameters(), w0, g):
        torch.testing.assert_close(p.detach(), wi + RHO * wi * wi * gi / norm)


def test_step_with_closure_equals_first_and_second_step():
    (x, y) = make_data()
    model_a, model_b = make_model(), make_model()
    opt_a = SAM(model_a.parameters(), torch.optim.Adam, rho=RHO, lr=LR)
    opt_b = SAM(model_b.parameters(), torch.optim.Adam, rho=RHO, lr=LR)
    for _ in range(3):
        loss_a = opt_a.step(closure_for(model_a, opt_a, x, y))
        opt_b.zero_grad()
        loss_b = loss_fn(model_b, x, y)
        loss_b.backward()
        opt_b.first_step(zero_grad=True)
        loss_fn(model_b, x, y).backward()
        opt_b.second_step(zero_grad=True)
        assert loss_a.item() == loss_b.item()  # step returns the clean (unperturbed) loss
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        assert torch.equal(pa, pb)


def test_zero_gradient_gives_no_perturbation_and_none_grads_are_skipped():
    model = make_model()
    w0 = params_of(model)
    opt = SAM(model.parameters(), torch.optim.SGD, rho=RHO, lr=LR)
    model[0].weight.grad = torch.zeros_like(model[0].weight)  # all other grads are None
    opt.first_step()
    for p, w in zip(model.parameters(), w0):
        assert torch.equal(p.detach(), w)
    opt.second_step()
    for p, w in zip(model.parameters(), w0):
        assert torch.equal(p.detach(), w)


def test_per_group_rho():
    model, (x, y) = make_model(), make_data()
    w0 = params_of(model)
    opt = SAM([{"params": model[0].parameters(), "rho": 0.05}, {"params": model[1].parameters()}],
              torch.optim.SGD, rho=RHO, lr=LR)
    loss_fn(model, x, y).backward()
    opt.first_step()
    g = analytic_grads(w0, x, y)
    norm = global_norm(g)
    for i, (p, wi, gi) in enumerate(zip(model.parameters(), w0, g)):
        rho = 0.05 if i < 2 else RHO
        torch.testing.assert_close(p.detach(), wi + rho * gi / norm)


def test_state_dict_round_trip_through_torch_save_equals_uninterrupted_run():
    (x, y) = make_data()

    def build():
        model = make_model()
        opt = SAM([{"params": model[0].parameters()}, {"params": model[1].parameters(), "perturb": False}],
                  torch.optim.Adam, rho=RHO, lr=LR)
        return model, opt

    model, opt = build()
    for _ in range(6):
        opt.step(closure_for(model, opt, x, y))
    uninterrupted = params_of(model)

    model, opt = build()
    for _ in range(3):
        opt.step(closure_for(model, opt, x, y))
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer)

    resumed = make_model(seed=123)
    # Built with the wrong scope on purpose: the saved groups' flags must win.
    opt2 = SAM(
        [{"params": resumed[0].parameters()}, {"params": resumed[1].parameters()}], torch.optim.Adam, rho=1.0, lr=LR
    )
    resumed.load_state_dict(saved["model"])
    opt2.load_state_dict(saved["optimizer"])
    assert [g["perturb"] for g in opt2.param_groups] == [True, False]
    assert [g["rho"] for g in opt2.param_groups] == [RHO, RHO]
    assert opt2.base_optimizer.param_groups is opt2.param_groups
    assert opt2.state[resumed[0].weight]["step"].item() == 3
    for _ in range(3):
        opt2.step(closure_for(resumed, opt2, x, y))
    for p, w in zip(resumed.parameters(), uninterrupted):
        assert torch.equal(p.detach(), w)


def test_param_groups_are_shared_with_base_optimizer():
    model = make_model()
    opt = SAM(model.parameters(), torch.optim.Adam, rho=RHO, lr=LR)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    x, y = make_data()
    opt.step(closure_for(model, opt, x, y))
    scheduler.step()
    assert opt.base_optimizer.param_groups[0]["lr"] == pytest.approx(0.5 * LR)
    opt.param_groups[0]["lr"] = 0.02
    assert opt.base_optimizer.param_groups[0]["lr"] == 0.02


def test_bad_arguments_name_the_argument():
    model = make_model()
    with pytest.raises(ValueError, match="rho"):
        SAM(model.parameters(), torch.optim.SGD, rho=0.0, lr=LR)
    with pytest.raises(ValueError, match="rho"):
        SAM(model.parameters(), torch.optim.SGD, rho=-0.1, lr=LR)
    with pytest.raises(ValueError, match="rho"):
        SAM([{"params": model.parameters(), "rho": 0.0}], torch.optim.SGD, lr=LR)
    with pytest.raises(ValueError, match="params"):
        SAM([], torch.optim.SGD, lr=LR)


def test_check_sam_compatible_refuses_batchnorm_in_training_mode():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sequential(nn.BatchNorm2d(2)), nn.ReLU())
    with pytest.raises(ValueError, match="'1.0'"):
        check_sam_compatible(model)
    model.eval()
    check_sam_compatible(model)
    check_sam_compatible(nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2)).train())


def test_parameters_without_gradient_are_skipped_and_excluded_from_the_norm():
    model, (x, y) = make_model(), make_data()
    w0 = params_of(model)
    opt = SAM(model.parameters(), torch.optim.SGD, rho=RHO, lr=LR)
    loss_fn(model, x, y).backward()
    model[1].bias.grad = None
    opt.first_step()
    g = analytic_grads(w0, x, y)
    norm = global_norm(g[:3])
    for p, wi, gi in zip(list(model.parameters())[:3], w0, g):
        torch.testing.assert_close(p.detach(), wi + RHO * gi / norm)
    assert torch.equal(model[1].bias.detach(), w0[3])


def test_scope_survives_a_reset_without_rebuilding_and_when_rebuilt_from_the_same_groups():
    model, (x, y) = make_model(), make_data()

    def groups():
        return [{"params": model[0].parameters()}, {"params": model[1].parameters(), "perturb": False}]

    opt = SAM(groups(), torch.optim.Adam, rho=RHO, lr=LR)
    opt.step(closure_for(model, opt, x, y))
    reset_parameters_(model[1], torch.Generator().manual_seed(0))  # in place: the same Parameter objects
    reset_optimizer_state_(opt, model[1].parameters())
    assert opt.perturbed_parameters() == list(model[0].parameters())
    rebuilt = SAM(groups(), torch.optim.Adam, rho=RHO, lr=LR)
    assert rebuilt.perturbed_parameters() == list(model[0].parameters())


def test_sam_update_is_algorithm_1_and_plain_backward_step_without_sam():
    from plastic.plasticity import sam_update

    torch.manual_seed(0)
    x = torch.randn(8, 3)
    for wrap in (True, False):
        w = torch.nn.Parameter(torch.tensor([0.5, -1.0, 2.0]))
        loss_fn = lambda: ((x @ w) ** 2).mean()  # noqa: E731
        optimizer = SAM([w], torch.optim.SGD, rho=0.1, lr=0.1) if wrap else torch.optim.SGD([w], lr=0.1)
        w0 = w.detach().clone()
        g = torch.autograd.grad(loss_fn(), w)[0]
        w_perturbed = (w0 + 0.1 * g / g.norm()).requires_grad_()
        g_sam = torch.autograd.grad(((x @ w_perturbed) ** 2).mean(), w_perturbed)[0]
        calls = []
        result = sam_update(optimizer, loss_fn(), loss_fn, before_second_pass=lambda: calls.append("redraw"),
                            before_step=lambda: "clipped")
        assert result == "clipped"
        assert calls == (["redraw"] if wrap else [])
        assert torch.allclose(w.detach(), w0 - 0.1 * (g_sam if wrap else g), atol=1e-6)
