"""The post-PLASTIC interventions: one step of each on a tiny network equals the paper's formula."""

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from plastic.plasticity import (
    CChain,
    ConvLayerNorm,
    HareTortoise,
    L2Init,
    NaP,
    Parseval,
    grama_scores,
    insert_layer_norms_,
    missing_layer_norms,
    regrama_,
)


def mlp(seed=0, norm=False):
    torch.manual_seed(seed)
    layers = [nn.Linear(3, 4)] + ([nn.LayerNorm(4)] if norm else []) + [nn.ReLU(), nn.Linear(4, 2)]
    return nn.Sequential(*layers)


def batch(n=8, d=3, seed=1):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- L2-init (Kumar et al., 2023)


def test_l2_init_penalty_and_gradient_equal_the_formula():
    model = mlp()
    l2 = L2Init(model, coefficient=0.1)
    initial = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5)
    penalty = l2.penalty()
    # every entry moved by 0.5: λ Σ 0.25 over all parameters
    count = sum(p.numel() for p in model.parameters())
    torch.testing.assert_close(penalty, torch.tensor(0.1 * 0.25 * count))
    penalty.backward()
    for p, p0 in zip(model.parameters(), initial):
        torch.testing.assert_close(p.grad, 2 * 0.1 * (p.detach() - p0))


def test_l2_init_one_sgd_step_pulls_towards_the_snapshot():
    model = mlp()
    l2 = L2Init(model, coefficient=0.25)
    theta0 = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    moved = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    l2.penalty().backward()
    optimizer.step()
    for p, m, p0 in zip(model.parameters(), moved, theta0):  # θ' = θ − η 2λ (θ − θ₀)
        torch.testing.assert_close(p.detach(), m - 0.1 * 2 * 0.25 * (m - p0))


def test_l2_init_state_round_trip_and_bad_coefficient():
    model = mlp()
    l2 = L2Init(model, coefficient=0.1)
    state = l2.state_dict()
    with torch.no_grad():
        model[0].weight.add_(1.0)
    fresh = L2Init(model, coefficient=0.5)  # snapshots the moved weights
    assert fresh.penalty() == 0
    fresh.load_state_dict(state)
    assert fresh.coefficient == 0.1
    torch.testing.assert_close(fresh.penalty(), l2.penalty())
    with pytest.raises(ValueError, match="coefficient=-1"):
        L2Init(model, coefficient=-1)


# ---------------------------------------------------------------- Parseval (Chung et al., 2024)


def test_parseval_value_and_gradient_equal_the_analytic_ones():
    model = nn.Sequential(nn.Linear(3, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 2.0, 0.0], [0.0, 1.0, 1.0]]))
    parseval = Parseval(model, coefficient=0.01, scale=2.0)
    assert list(parseval.layers) == ["0"]  # the output layer is excluded by default
    w = model[0].weight.detach()
    # W Wᵀ = [[5, 2], [2, 2]]; minus 2I: [[3, 2], [2, 0]]; squared Frobenius 9 + 4 + 4 = 17
    penalty = parseval.penalty()
    torch.testing.assert_close(penalty, torch.tensor(0.01 * 17.0))
    penalty.backward()
    residual = w @ w.T - 2.0 * torch.eye(2)
    torch.testing.assert_close(model[0].weight.grad, 4 * 0.01 * residual @ w)
    assert model[2].weight.grad is None


def test_parseval_flattens_conv_kernels_and_honours_exclude():
    model = nn.Sequential(nn.Conv2d(2, 3, 2), nn.ReLU(), nn.Flatten(), nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    parseval = Parseval(model, exclude=["5", "3"])
    assert list(parseval.layers) == ["0"]
    w = model[0].weight.detach().reshape(3, 8)
    expected = 1e-3 * (w @ w.T - torch.eye(3)).pow(2).sum()  # paper defaults λ = 1e-3, s = 1
    torch.testing.assert_close(parseval.penalty(), expected)
    assert list(Parseval(model, include_conv=False).layers) == ["3"]


def test_parseval_orthogonal_rows_have_zero_penalty_and_bad_arguments_raise():
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1))
    nn.init.orthogonal_(model[0].weight)
    assert Parseval(model).penalty().item() == pytest.approx(0.0, abs=1e-10)
    with pytest.raises(ValueError, match="scale=0"):
        Parseval(model, scale=0)
    with pytest.raises(ValueError, match="'7'"):
        Parseval(model, exclude=["7"])
    with pytest.raises(ValueError, match="coefficient=-0.1"):
        Parseval(model, coefficient=-0.1)


# ---------------------------------------------------------------- Hare & Tortoise (Lee et al., 2024)


def test_tortoise_is_the_ema_of_the_hare_and_the_hare_resets_to_it():
    torch.manual_seed(0)
    hare = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 1))
    hare.train()
    ht = HareTortoise(hare, reset_interval=3, ema=0.9)
    expected = {n: t.detach().clone().double() for n, t in hare.state_dict().items() if t.is_floating_point()}
    optimizer = torch.optim.SGD(hare.parameters(), lr=0.1)
    resets = []
    for step in range(1, 4):
        optimizer.zero_grad()
        hare(batch(8, 3, seed=step)).pow(2).mean().backward()
        optimizer.step()
        hare_state = {n: t.detach().clone() for n, t in hare.state_dict().items()}
        for name in expected:  # θ_T <- 0.9 θ_T + 0.1 θ_H, parameters and float buffers
            expected[name] = 0.9 * expected[name] + 0.1 * hare_state[name].double()
        resets.append(ht.after_step())
        tortoise = ht.tortoise.state_dict()
        for name, value in expected.items():
            torch.testing.assert_close(tortoise[name].double(), value, rtol=1e-6, atol=1e-7)
    assert resets == [False, False, True]
    assert tortoise["1.num_batches_tracked"] == 3  # integer buffers are copied
    for name, value in hare.state_dict().items():  # at the 3rd update the hare became the tortoise
        assert torch.equal(value, tortoise[name])


def test_hare_tortoise_optimizer_reset_state_round_trip_and_bad_arguments():
    hare = mlp()
    optimizer = torch.optim.Adam(hare.parameters(), lr=1e-2)
    ht = HareTortoise(hare, reset_interval=1, reset_optimizer_state=True)
    hare(batch()).sum().backward()
    optimizer.step()
    with pytest.raises(ValueError, match="needs the optimizer"):
        ht.after_step()
    assert ht.after_step(optimizer) and not optimizer.state
    state = ht.state_dict()
    other = HareTortoise(mlp(seed=5), reset_interval=1)
    other.load_state_dict(state)
    assert other.updates == 1
    for a, b in zip(other.tortoise.parameters(), ht.tortoise.parameters()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="reset_interval=0"):
        HareTortoise(hare, reset_interval=0)
    with pytest.raises(ValueError, match="ema=1.5"):
        HareTortoise(hare, reset_interval=10, ema=1.5)


# ---------------------------------------------------------------- NaP (Lyle et al., 2024)


def test_missing_layer_norms_and_insertion():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 5), nn.ReLU(), nn.Linear(5, 1))
    assert missing_layer_norms(model) == ["1", "4"]
    assert missing_layer_norms(mlp(norm=True)) == []
    x = torch.randn(4, 1, 4, 4)
    assert insert_layer_norms_(model) == ["1", "4"]
    assert missing_layer_norms(model) == []
    assert isinstance(model[1][0], ConvLayerNorm) and model[1][0].num_channels == 2
    assert isinstance(model[4][0], nn.LayerNorm) and model[4][0].normalized_shape == (5,)
    assert model(x).shape == (4, 1)
    with pytest.raises(ValueError, match="'0'"):
        insert_layer_norms_(nn.Sequential(nn.ReLU(), nn.Linear(2, 1)))


def test_nap_projection_keeps_the_initial_norms():
    model = mlp(norm=True)
    nap = NaP(model)
    assert set(nap.groups) == {"0", "3"}  # the weights of both linear layers; LayerNorm affine not in scope
    initial = {"0": model[0].weight.norm().item(), "3": model[3].weight.norm().item()}
    biases = [model[0].bias.detach().clone()]
    optimizer = torch.optim.Adam(model.parameters(), lr=0.5)
    for step in range(5):
        optimizer.zero_grad()
        model(batch(seed=step)).pow(2).sum().mul(-1).backward()  # ascent: weights grow fast
        optimizer.step()
        grown = model[0].weight.detach().clone()
        nap.project_()
        torch.testing.assert_close(model[0].weight.detach(), grown * initial["0"] / grown.norm())
        assert model[0].weight.norm().item() == pytest.approx(initial["0"], rel=1e-6)
        assert model[3].weight.norm().item() == pytest.approx(initial["3"], rel=1e-6)
    assert not torch.equal(model[0].bias, biases[0])  # biases are not projected


def test_nap_norm_affine_scope_projects_scale_and_offset_jointly():
    model = mlp(norm=True)
    nap = NaP(model, scope="weights_and_norm_affine", exclude=["3"])
    assert set(nap.groups) == {"0", "1"}
    with torch.no_grad():
        model[1].weight.fill_(3.0)  # initial (γ, β) = (1, 0): joint norm 2
        model[1].bias.fill_(4.0)
    nap.project_()
    torch.testing.assert_close(model[1].weight.detach(), torch.full((4,), 3.0 * 2 / 10))  # ‖(3,4)x4‖ = 10
    torch.testing.assert_close(model[1].bias.detach(), torch.full((4,), 4.0 * 2 / 10))
    with pytest.raises(ValueError, match="scope='all'"):
        NaP(model, scope="all")
    zero = mlp()
    nn.init.zeros_(zero[2].weight)
    with pytest.raises(ValueError, match="'2' has norm 0"):
        NaP(zero)


def test_nap_state_round_trip():
    model = mlp()
    nap = NaP(model)
    state = nap.state_dict()
    with torch.no_grad():
        model[0].weight.mul_(5)
    other = NaP(model)
    other.load_state_dict(state)
    other.project_()
    assert model[0].weight.norm().item() == pytest.approx(state["initial_norms"]["0"], rel=1e-6)


# ---------------------------------------------------------------- ReGraMa (Liu et al., 2025)


def dead_unit_mlp():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    torch.manual_seed(0)
    for layer in (model[0], model[2]):
        layer.reset_parameters()
    with torch.no_grad():
        model[0].bias[2] = -100.0  # unit 2 never fires on these inputs
    return model


def test_grama_scores_equal_normalised_mean_absolute_gradients():
    model = dead_unit_mlp()
    x, target = batch(), torch.randn(8, 2, generator=torch.Generator().manual_seed(3))
    scores = grama_scores(model, lambda: F.mse_loss(model(x), target))
    # by hand: the same forward with the pre-activation as a leaf
    pre = (x @ model[0].weight.T + model[0].bias).detach().requires_grad_()
    loss = F.mse_loss(torch.relu(pre) @ model[2].weight.T + model[2].bias, target)
    (grad,) = torch.autograd.grad(loss, pre)
    magnitude = grad.abs().mean(dim=0)
    torch.testing.assert_close(scores["0"], magnitude / magnitude.mean())
    assert scores["0"][2] == 0  # the dead unit gets no gradient through its ReLU
    assert scores["0"].mean().item() == pytest.approx(1.0)
    assert model[0].weight.grad is None  # .grad untouched
    # at the activation output the dead unit still receives the outgoing weights' gradient
    out = grama_scores(model, lambda: F.mse_loss(model(x), target), gradient_at="activation_output")
    h = torch.relu(pre.detach()).requires_grad_()
    (grad_h,) = torch.autograd.grad(F.mse_loss(h @ model[2].weight.T + model[2].bias, target), h)
    torch.testing.assert_close(out["0"], grad_h.abs().mean(0) / grad_h.abs().mean(0).mean())
    assert out["0"][2] > 0


def test_regrama_recycles_the_zero_gradient_unit_like_redo():
    model = dead_unit_mlp()
    x = batch()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(x).pow(2).sum().backward()
    optimizer.step()
    with torch.no_grad():
        for p in model.parameters():
            optimizer.state[p]["exp_avg"].fill_(1.0)
            optimizer.state[p]["exp_avg_sq"].fill_(1.0)
    before = copy.deepcopy(model)
    output = model(x)
    counts = regrama_(model, lambda: model(x).pow(2).mean(), tau=0.0, optimizer=optimizer,
                      generator=torch.Generator().manual_seed(1))
    assert counts == {"0": 1}
    assert not torch.equal(model[0].weight[2], before[0].weight[2])  # fresh incoming weights
    assert torch.equal(model[0].weight[[0, 1, 3]], before[0].weight[[0, 1, 3]])
    assert torch.all(model[2].weight[:, 2] == 0)  # zeroed outgoing weights
    torch.testing.assert_close(model(x), output)
    for key in ("exp_avg", "exp_avg_sq"):
        assert torch.all(optimizer.state[model[0].weight][key][2] == 0)
        assert torch.all(optimizer.state[model[2].weight][key][:, 2] == 0)
        assert torch.all(optimizer.state[model[0].weight][key][[0, 1, 3]] == 1)


def test_regrama_bad_arguments():
    model = dead_unit_mlp()
    x = batch()
    with pytest.raises(ValueError, match="tau must be >= 0, got tau=-1"):
        regrama_(model, lambda: model(x).sum(), tau=-1)
    with pytest.raises(ValueError, match="gradient_at='weights'"):
        regrama_(model, lambda: model(x).sum(), gradient_at="weights")
    with torch.no_grad():  # grad is enabled inside: callable from an evaluation context
        assert regrama_(model, lambda: model(x).sum()) == {"0": 1}
    frozen = dead_unit_mlp().requires_grad_(False)
    with pytest.raises(ValueError, match="does not depend"):
        grama_scores(frozen, lambda: frozen(x).sum())


# ---------------------------------------------------------------- C-CHAIN (Tang et al., 2025)


def test_c_chain_penalty_is_the_churn_against_the_previous_network():
    model = mlp()
    chain = CChain(model, warmup=3)
    reference = batch(seed=7)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    def update(step):
        optimizer.zero_grad()
        rl_loss = model(batch(seed=step)).pow(2).mean()
        penalty = chain.penalty(reference)
        (rl_loss + penalty).backward()
        optimizer.step()
        chain.after_step(rl_loss)
        return rl_loss.item(), penalty

    theta0 = copy.deepcopy(model)
    rl1, penalty1 = update(1)
    assert penalty1.item() == 0  # no reference network yet (k = 1 update old)
    theta1 = copy.deepcopy(model)
    with torch.no_grad():
        expected = F.mse_loss(theta1(reference), theta0(reference))
    gradient_check = chain.churn_loss(reference)
    torch.testing.assert_close(gradient_check, expected)
    rl2, penalty2 = update(2)
    torch.testing.assert_close(penalty2.detach(), 50.0 * expected)  # initial λ = 50
    assert chain.coefficient == 50.0  # still in warm-up after 2 updates
    with torch.no_grad():
        churn3 = F.mse_loss(model(reference), theta1(reference)).item()
    rl3, _ = update(3)
    # from update 3 (= warmup) on: λ = c mean|L_RL| / (mean L_churn + 1e-8), churn recorded from update 2 on
    mean_rl = (abs(rl1) + abs(rl2) + abs(rl3)) / 3
    mean_churn = (expected.item() + churn3) / 2
    assert chain.coefficient == pytest.approx(0.01 * mean_rl / (mean_churn + 1e-8), rel=1e-5)


def test_c_chain_churn_gradient_pulls_back_to_the_reference():
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0.0]]))
    chain = CChain(model)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[2.0, 0.0]]))
    chain.after_step(0.0)  # the reference is now w = (1, 0)
    x = torch.tensor([[1.0, 1.0]])
    loss = chain.churn_loss(x)  # (2 - 1)²
    assert loss.item() == pytest.approx(1.0)
    loss.backward()
    torch.testing.assert_close(model.weight.grad, torch.tensor([[2.0, 2.0]]))  # 2 (f − f_ref) x


def test_c_chain_state_round_trip_and_bad_arguments():
    model = mlp()
    chain = CChain(model, warmup=1)
    reference = batch(seed=9)
    for step in range(3):
        chain.penalty(reference)
        with torch.no_grad():
            model[0].weight.add_(0.1)
        chain.after_step(1.0 + step)
    resumed = mlp(seed=3)
    resumed.load_state_dict(model.state_dict())
    other = CChain(resumed, warmup=1)
    other.load_state_dict(chain.state_dict())
    assert other.coefficient == chain.coefficient and other.updates == 3
    torch.testing.assert_close(other.churn_loss(reference), chain.churn_loss(reference))
    with pytest.raises(ValueError, match="lag=0"):
        CChain(model, lag=0)
    with pytest.raises(ValueError, match="window=0"):
        CChain(model, window=0)
    with pytest.raises(ValueError, match="relative_loss_scale=-1"):
        CChain(model, relative_loss_scale=-1)


def test_parseval_default_frees_every_output_layer_of_a_dueling_head():
    from plastic.nets.rainbow import RainbowNetwork
    from plastic.plasticity.regularizers import output_layers

    net = RainbowNetwork((4, 84, 84), 3, hidden=16, num_atoms=5, ln_placement="all")
    assert output_layers(net) == ["head.value.3", "head.advantage.3"]
    assert list(Parseval(net).layers) == ["backbone.0", "backbone.3", "backbone.6", "head.value.0", "head.advantage.0"]
