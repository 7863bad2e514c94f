"""Specifications of the synthetic experiment loop: determinism, seed grouping, and what each method switch does."""

import numpy as np
import pytest
import torch

from plastic.plasticity import ConvLayerNorm, CReLU
from plastic.synthetic.data import ImageDataset
from plastic.synthetic.experiment import Method, RunConfig, _intervene, _make_optimizer, parse_methods, run_many, run_seed
from plastic.synthetic.model import PatchConv2d, build_model, update_flops


def tiny_dataset(n_train=64, n_test=32, size=8, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n_train + n_test)
    images = rng.normal(size=(n_train + n_test, 1, size, size)) + labels[:, None, None, None] * 0.3
    return ImageDataset.from_arrays("tiny", images[:n_train], labels[:n_train], images[n_train:], labels[n_train:], 10)


def tiny_config(**overrides):
    base = dict(phases=3, updates_per_phase=3, batch_size=16, probe_every=0, reset_interval=1)
    return RunConfig(**{**base, **overrides})


def test_method_names_parse_and_print_canonically():
    assert Method.parse("sam+ln").name == "ln+sam"
    assert Method.parse("plastic").switches == {"ln", "sam", "crelu", "reset"}
    assert Method.parse("base").name == "base"
    assert [m.name for m in parse_methods("base, crelu,ln+sam,plastic,crelu")] == ["base", "crelu", "ln+sam", "plastic"]
    assert len(parse_methods("combinations")) == 16
    with pytest.raises(ValueError, match="unknown method 'dropout'"):
        Method.parse("ln+dropout")


def test_paper_model_has_app_a2_shapes_and_about_0_3_gflop_per_update():
    model = build_model((3, 32, 32), strides=(3, 3, 1))
    convs = [m for m in model.backbone if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 64] and [c.stride[0] for c in convs] == [3, 3, 1]
    linears = [m for m in model.head if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 512), (512, 128), (128, 10)]
    assert abs(update_flops(model) / 1e9 - 0.30) < 0.01
    code = build_model((3, 32, 32), strides=(3, 1, 1))  # public code: 64 x 6 x 6 features, 1.30M parameters
    assert sum(p.numel() for p in code.parameters()) == pytest.approx(1.30e6, rel=0.01)


@pytest.mark.parametrize("in_channels, size, kernel, stride, tiles", [
    (8, 32, 3, 3, True),   # 32x32 -> 10x10 (the last 2 rows/columns are not seen, as in nn.Conv2d)
    (32, 10, 3, 3, True),  # paper conv2: 10x10 -> 3x3
    (64, 3, 3, 1, True),   # paper conv3: one output position
    (32, 4, 2, 2, True),   # digits conv2
    (3, 32, 3, 3, False),  # paper conv1: too few inputs per output for a matmul to pay; the ordinary convolution
    (32, 10, 3, 1, False),  # public code's stride 1: overlapping fields, the ordinary convolution
])
def test_patch_conv_equals_conv2d_values_gradients_and_hessian_products(in_channels, size, kernel, stride, tiles):
    torch.manual_seed(0)
    patch = PatchConv2d(in_channels, 8, kernel, stride).double()
    conv = torch.nn.Conv2d(in_channels, 8, kernel, stride).double()
    conv.load_state_dict(patch.state_dict())
    assert (patch._tiles(size, size) is not None) == tiles
    x = torch.randn(4, in_channels, size, size, dtype=torch.double).contiguous(memory_format=torch.channels_last)
    target = torch.randn_like(conv(x))
    results = []
    for layer in (patch, conv):
        params = list(layer.parameters())
        loss = ((layer(x) - target) ** 2).sum() ** 1.5  # not quadratic, so the Hessian depends on the point
        grads = torch.autograd.grad(loss, params, create_graph=True)
        vector = [torch.ones_like(p) for p in params]
        hvp = torch.autograd.grad(grads, params, vector)
        results.append((layer(x), grads, hvp))
    (y_patch, g_patch, h_patch), (y_conv, g_conv, h_conv) = results
    torch.testing.assert_close(y_patch, y_conv, rtol=1e-10, atol=1e-10)
    for a, b in zip(g_patch + h_patch, g_conv + h_conv, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_digits_model_is_three_2x2_stride_2_convs_ending_in_one_position():
    model = build_model((1, 8, 8))
    convs = [m for m in model.backbone if isinstance(m, torch.nn.Conv2d)]
    assert [(c.kernel_size, c.stride) for c in convs] == [((2, 2), (2, 2))] * 3
    assert model.head[1].in_features == 64
    assert [c._tiles(s, s) is not None for c, s in zip(convs, (8, 4, 2))] == [False, True, True]


def test_layer_norm_and_crelu_switches_change_the_model():
    plain = build_model((1, 8, 8))
    assert not any(isinstance(m, (ConvLayerNorm, torch.nn.LayerNorm, CReLU)) for m in plain.modules())
    ln = build_model((1, 8, 8), layer_norm=True)
    assert sum(isinstance(m, ConvLayerNorm) for m in ln.modules()) == 3
    assert sum(isinstance(m, torch.nn.LayerNorm) for m in ln.modules()) == 2
    crelu = build_model((1, 8, 8), crelu=True)
    assert sum(isinstance(m, CReLU) for m in crelu.modules()) == 5
    convs = [m for m in crelu.backbone if isinstance(m, torch.nn.Conv2d)]
    assert [c.in_channels for c in convs] == [1, 64, 128]  # CReLU doubles the next layer's inputs
    assert crelu(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_same_seed_same_run_other_seed_other_run():
    dataset = tiny_dataset()
    config = tiny_config(scenario="label")
    first, again, other = (run_seed(dataset, config, s) for s in (0, 0, 1))
    assert first == again
    assert [r["train_loss"] for r in first] != [r["train_loss"] for r in other]
    assert [r["phase"] for r in first] == [0, 1, 2] and all(r["method"] == "base" for r in first)


def test_seeds_in_worker_processes_equal_seeds_one_after_another():
    dataset = tiny_dataset()
    runs = [(tiny_config(scenario="input", method=Method.parse("crelu")), seed) for seed in (0, 1, 2)]
    assert run_many(dataset, runs, workers=2) == run_many(dataset, runs, workers=1)


def test_sam_switch_uses_the_toolkit_sam_and_changes_the_run():
    from plastic.plasticity import SAM

    model = build_model((1, 8, 8))
    assert isinstance(_make_optimizer(model, tiny_config(method=Method.parse("sam"))), SAM)
    assert isinstance(_make_optimizer(model, tiny_config()), torch.optim.SGD)
    dataset = tiny_dataset()
    base = run_seed(dataset, tiny_config(), 0)
    sam = run_seed(dataset, tiny_config(method=Method.parse("sam")), 0)
    assert all(b["train_loss"] != s["train_loss"] for b, s in zip(base, sam))


def _trained(config):
    dataset = tiny_dataset()
    model = build_model(dataset.image_shape, layer_norm="ln" in config.method, crelu="crelu" in config.method)
    optimizer = _make_optimizer(model, config)
    x, y = torch.from_numpy(dataset.train_images[:16]), torch.from_numpy(dataset.train_labels[:16])
    torch.nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
    return model, optimizer, x


@pytest.mark.parametrize("reset_optimizer", [True, False])
def test_reset_redraws_the_head_only_and_optionally_its_momentum(reset_optimizer):
    config = tiny_config(method=Method.parse("reset"), reset_optimizer=reset_optimizer)
    model, optimizer, x = _trained(config)
    backbone = [p.clone() for p in model.backbone.parameters()]
    head = [p.clone() for p in model.head.parameters()]
    _intervene(model, optimizer, config, x, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(backbone, model.backbone.parameters()))
    assert all(not torch.equal(a, b) for a, b in zip(head, model.head.parameters()))
    head_state = [p in optimizer.state for p in model.head.parameters()]
    assert head_state == [not reset_optimizer] * len(head_state)
    assert all(p in optimizer.state for p in model.backbone.parameters())


@pytest.mark.parametrize("layers, crelu", [(1, False), (2, False), (2, True), (3, False)])
def test_reset_layers_redraws_only_the_heads_last_fc_layers_and_their_momentum(layers, crelu):
    config = tiny_config(method=Method.parse("ln+reset" if not crelu else "ln+crelu+reset"), reset_layers=layers)
    model, optimizer, x = _trained(config)
    linears = [m for m in model.head if isinstance(m, torch.nn.Linear)]
    norms = [m for m in model.head if isinstance(m, torch.nn.LayerNorm)]
    assert len(linears) == 3 and len(norms) == 2
    # the last `layers` linears and the LayerNorms after the first of them (1 -> none, 2 -> the 128-unit one)
    redrawn = [*linears[3 - layers:], *norms[3 - layers:]]
    kept = [*model.backbone, *linears[: 3 - layers], *norms[: 3 - layers]]
    redrawn_params = [p for m in redrawn for p in m.parameters()]
    kept_params = [p for m in kept for p in m.parameters()]
    assert len(redrawn_params) + len(kept_params) == len(list(model.parameters()))
    before = {id(p): p.clone() for p in model.parameters()}
    with torch.no_grad():  # LayerNorm's initial affine (1, 0) is what a re-draw restores; move it off first
        for norm in norms:
            norm.weight.add_(0.5)
            norm.bias.add_(0.5)
    moved = {id(p): p.clone() for p in model.parameters()}
    _intervene(model, optimizer, config, x, torch.Generator().manual_seed(0))
    assert all(torch.equal(moved[id(p)], p) for p in kept_params)
    for p in (p for m in redrawn if isinstance(m, torch.nn.Linear) for p in m.parameters()):
        assert not torch.equal(before[id(p)], p)
    for norm in norms[3 - layers:]:
        assert torch.equal(norm.weight, torch.ones_like(norm.weight)) and not norm.bias.any()
    assert [p in optimizer.state for p in redrawn_params] == [False] * len(redrawn_params)
    assert all(p in optimizer.state for p in kept_params)
    assert [id(p) for p in model.last_layers(3).parameters()] == [id(p) for p in model.head.parameters()]


@pytest.mark.parametrize("layers", [0, 4])
def test_reset_layers_outside_the_head_is_refused(layers):
    with pytest.raises(ValueError, match=f"reset_layers={layers}: the head has 3 FC layers; allowed 1..3"):
        tiny_config(reset_layers=layers)
    with pytest.raises(ValueError, match=f"reset_layers={layers}: the head has 3 FC layers"):
        build_model((1, 8, 8)).last_layers(layers)


def test_base_does_not_intervene():
    config = tiny_config()
    model, optimizer, x = _trained(config)
    before = [p.clone() for p in model.parameters()]
    _intervene(model, optimizer, config, x, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_reset_schedule_changes_a_run_only_from_the_reset_phase():
    dataset = tiny_dataset()
    base = run_seed(dataset, tiny_config(reset_interval=2), 0)
    reset = run_seed(dataset, tiny_config(method=Method.parse("reset"), reset_interval=2), 0)
    assert base[:2] == [{**r, "method": "base"} for r in reset[:2]]  # phases 0 and 1 identical
    assert base[2]["train_loss"] != reset[2]["train_loss"]  # the head was re-drawn at the start of phase 2


def test_probes_report_hessian_max_eigenvalue_and_active_units_without_changing_the_run():
    dataset = tiny_dataset()
    plain = run_seed(dataset, tiny_config(), 0)
    probed = run_seed(dataset, tiny_config(probe_every=2, hessian_iters=3, probe_samples=32), 0)
    assert [r["test_accuracy"] for r in plain] == [r["test_accuracy"] for r in probed]
    assert "probes/hessian_max_eigenvalue" not in probed[0] and "probes/hessian_max_eigenvalue" in probed[1] and "probes/hessian_max_eigenvalue" in probed[2]  # every 2 + last
    assert 0.0 < probed[1]["probes/active_unit_fraction/all/units"] <= 1.0


def test_label_scenario_scores_against_relabelled_test_set():
    dataset = tiny_dataset()
    config = tiny_config(scenario="label", label_map="shift", updates_per_phase=1)
    rows = run_seed(dataset, config, 0)
    # label maps change each phase, so accuracy is measured against different test labels every phase
    assert len({r["test_accuracy"] for r in rows}) > 1


def test_input_scenario_needs_one_chunk_per_phase():
    with pytest.raises(ValueError, match="phases=100"):
        run_seed(tiny_dataset(n_train=50), tiny_config(phases=100), 0)


def test_redo_recycles_dormant_units_with_the_toolkit():
    config = tiny_config(method=Method.parse("redo"), redo_tau=0.5)  # tau 0.5: many units count as dormant
    model, optimizer, x = _trained(config)
    before = [p.clone() for p in model.parameters()]
    _intervene(model, optimizer, config, x, torch.Generator().manual_seed(0))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    base = tiny_config(redo_tau=0.5)
    model, optimizer, x = _trained(base)
    before = [p.clone() for p in model.parameters()]
    _intervene(model, optimizer, base, x, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


@pytest.mark.parametrize("image_shape, strides", [((3, 32, 32), (3, 3, 1)), ((1, 8, 8), None), ((3, 29, 29), None)])
@pytest.mark.parametrize("layer_norm, crelu", [(False, False), (True, False), (False, True), (True, True)])
def test_patch_forward_equals_forward_in_values_and_gradients(image_shape, strides, layer_norm, crelu):
    torch.manual_seed(0)
    model = build_model(image_shape, strides=strides, layer_norm=layer_norm, crelu=crelu).double()
    assert model.patch_rows == (81 if image_shape[1] > 8 else 16)  # kernel ** (2 * (depth - 1))
    images = torch.randn(5, image_shape[1], image_shape[2], image_shape[0], dtype=torch.double)  # NHWC
    rows = model.to_patches(images)
    assert rows.shape == ((5 * 81, 27) if image_shape[1] > 8 else (5 * 16, 4))
    results = []
    for logits in (model(images.permute(0, 3, 1, 2)), model.forward_patches(rows)):
        grads = torch.autograd.grad((logits ** 2).sum(), list(model.parameters()))
        results.append((logits, grads))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=1e-12, atol=1e-12)
    for a, b in zip(results[1][1], results[0][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_patch_rows_are_first_conv_patches_in_digit_order():
    model = build_model((1, 32, 32), strides=(3, 3, 1))
    image = torch.arange(32 * 32.0).view(1, 32, 32, 1)  # pixel value = 32 * y + x
    rows = model.to_patches(image)
    patch = lambda y, x: [32 * (y + dy) + x + dx for dy in range(3) for dx in range(3)]  # noqa: E731
    assert rows[0].tolist() == patch(0, 0)
    assert rows[1].tolist() == patch(0, 3)  # next conv1 position inside the first conv2 window
    assert rows[3].tolist() == patch(3, 0)
    assert rows[9].tolist() == patch(0, 9)  # first patch of the second conv2 window (conv3 position (0, 1))
    assert rows[27].tolist() == patch(9, 0)
    assert rows[80].tolist() == patch(24, 24)  # the last patch: pixels 24..26 (27..31 never reach the logits)


def test_patches_need_tiling_convs():
    model = build_model((3, 32, 32), strides=(3, 1, 1))  # the public code's strides overlap
    assert model.patch_rows is None
    with pytest.raises(ValueError, match="do not tile"):
        model.to_patches(torch.zeros(1, 32, 32, 3))


@pytest.mark.parametrize("method", ["base", "plastic"])
def test_run_seed_trains_the_same_through_patches_as_through_whole_images(method, monkeypatch):
    from plastic.synthetic.model import SyntheticNet

    dataset = tiny_dataset()
    config = tiny_config(scenario="label", method=Method.parse(method), probe_every=3)
    patched = run_seed(dataset, config, 0)
    monkeypatch.setattr(SyntheticNet, "patch_rows", property(lambda self: None))
    whole = run_seed(dataset, config, 0)
    for a, b in zip(patched, whole, strict=True):
        assert a["test_accuracy"] == b["test_accuracy"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
    assert patched[-1]["probes/hessian_max_eigenvalue"] == pytest.approx(whole[-1]["probes/hessian_max_eigenvalue"], rel=1e-3)  # probed at the last phase
