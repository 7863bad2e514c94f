"""DrQ(ε)-Rainbow agent with the PLASTIC switches: network sizes, SAM done right, EMA target, resets, augmentation."""

import copy
import warnings

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from plastic.agents.augment import augment, intensity, random_shift
from plastic.agents.compiled import cpp_compiler
from plastic.agents.distributional import project_distribution
from plastic.agents.rainbow import RainbowAgent
from plastic.config import build, parse_overrides
from plastic.agents.base import count_parameters
from plastic.nets.rainbow import RainbowNetwork
from plastic.plasticity import SAM, reset_parameters_
from plastic.replay import ReplayBuffer
from plastic.training.hooks import ResetHook

OBS_SHAPE = (4, 10, 10)  # a MinAtar breakout frame
NUM_ACTIONS = 3
SMALL = ["rainbow.hidden=16", "rainbow.batch_size=8", "rainbow.buffer_size=500", "rainbow.n_step=3",
         "rainbow.augmentation=true"]  # the Atari path, on small MinAtar-shaped frames


# --------------------------------------------------------------------------------------------- helpers
def make_agent(preset="base", *overrides, seed=0):
    config = build("minatar:breakout", preset, overrides=parse_overrides([*SMALL, f"seed={seed}", *overrides]))
    return RainbowAgent(config, OBS_SHAPE, NUM_ACTIONS, torch.device("cpu"))


def filled_buffer(agent, transitions=80, seed=0):
    rng = np.random.default_rng(seed)
    buffer = ReplayBuffer(seed=seed, frame_shape=OBS_SHAPE, frame_stack=1, **agent.replay_options())
    buffer.start_episode(rng.integers(0, 256, OBS_SHAPE, dtype=np.uint8))
    for t in range(transitions):
        done = t % 17 == 16
        buffer.add(int(rng.integers(NUM_ACTIONS)), float(rng.choice([-1.0, 0.0, 1.0])),
                   rng.integers(0, 256, OBS_SHAPE, dtype=np.uint8), done, False)
        if done:
            buffer.start_episode(rng.integers(0, 256, OBS_SHAPE, dtype=np.uint8))
    return buffer


def clone_params(module):
    return [p.detach().clone() for p in module.parameters()]


def assert_params_equal(module, params):
    for p, q in zip(module.parameters(), params, strict=True):
        torch.testing.assert_close(p.detach(), q, rtol=0, atol=0)


def params_differ(module, params):
    return any(not torch.equal(p.detach(), q) for p, q in zip(module.parameters(), params, strict=True))


# --------------------------------------------------------------------------------------------- network sizes
PONG = dict(obs_shape=(4, 84, 84), num_actions=6)
# Counted from the architecture (docs/deviations.md, "CReLU placement and width"): Nature CNN 77,984 (78,304 with LN
# after each conv); ReLU dueling noisy head 6,476,902 + 52,326 A.
# CReLU in the head with doubled input: the second layers see 1024 features, +52,224 (1 + A). Halve-output: the first
# head layers have 256 units (2 (3136 * 256 + 256) per stream) and the second layers see 512 features again.
BASE_PONG = 77_984 + 6_476_902 + 52_326 * 6
PLASTIC_PONG = BASE_PONG + 320 + 52_224 * 7
HALVE_OUTPUT_PONG = 78_304 + 2 * 2 * (3136 * 256 + 256) + 52_326 * 7


@pytest.mark.parametrize("kwargs, expected", [
    (dict(), BASE_PONG),
    (dict(ln_placement="backbone", crelu_placement="head", width_mode="double_input"), PLASTIC_PONG),
    (dict(ln_placement="all", crelu_placement="head", width_mode="double_input"), PLASTIC_PONG + 2 * 2 * 512),
    (dict(ln_placement="backbone", crelu_placement="head", width_mode="halve_output"), HALVE_OUTPUT_PONG),
])
def test_parameter_counts_match_notes(kwargs, expected):
    network = RainbowNetwork(PONG["obs_shape"], PONG["num_actions"], **kwargs)
    assert count_parameters(network) == expected


def test_parameter_counts_in_millions():
    assert BASE_PONG == 6_868_842
    assert round(PLASTIC_PONG / 1e6, 2) == 7.23
    assert round(HALVE_OUTPUT_PONG / 1e6, 2) == 3.66


def test_layer_norm_defaults_to_the_backbone_convs():
    # Nature CNN 77,984 + LN (weight and bias per channel) after its 32-, 64- and 64-channel convs: 78,304.
    network = RainbowNetwork(PONG["obs_shape"], PONG["num_actions"], ln_placement="backbone")
    assert count_parameters(network.backbone) == 77_984 + 2 * (32 + 64 + 64) == 78_304
    assert count_parameters(network) == BASE_PONG + 320
    agent = RainbowAgent(build("atari:Pong", "ln"), PONG["obs_shape"], PONG["num_actions"], torch.device("cpu"))
    assert count_parameters(agent.online) == BASE_PONG + 320
    agent = RainbowAgent(build("atari:Pong", "plastic"), PONG["obs_shape"], PONG["num_actions"], torch.device("cpu"))
    assert count_parameters(agent.online) == PLASTIC_PONG


def test_agent_builds_the_network_its_preset_names():
    config = build("atari:Pong", "plastic-official")
    agent = RainbowAgent(config, PONG["obs_shape"], PONG["num_actions"], torch.device("cpu"))
    assert count_parameters(agent.online) == HALVE_OUTPUT_PONG
    assert count_parameters(agent.target) == HALVE_OUTPUT_PONG


def test_same_seed_same_initial_weights_different_seed_different():
    a, b, c = make_agent("plastic"), make_agent("plastic"), make_agent("plastic", seed=1)
    assert_params_equal(a.online, clone_params(b.online))
    assert_params_equal(a.target, clone_params(a.online))
    assert params_differ(c.online, clone_params(a.online))


# --------------------------------------------------------------------------------------------- SAM done right
def reference_clean_loss(agent, buffer, progress):
    """The clean pass computed from the public pieces, with the same random draws as `agent.update` makes."""
    rainbow = agent.rainbow
    beta = rainbow.importance_exponent_start + (1 - rainbow.importance_exponent_start) * progress
    batch = buffer.sample(rainbow.batch_size, importance_exponent=beta)
    obs = torch.as_tensor(batch.obs).float() / 255.0
    next_obs = torch.as_tensor(batch.next_obs).float() / 255.0
    obs = augment(obs, rainbow.shift_pad, rainbow.intensity_scale, agent.augmentation_generator)
    next_obs = augment(next_obs, rainbow.shift_pad, rainbow.intensity_scale, agent.augmentation_generator)
    agent.online.reset_noise(agent.generator)
    agent.target.reset_noise(agent.generator)
    rows = torch.arange(len(batch.action))
    with torch.no_grad():
        next_action = (agent.online(next_obs).exp() * agent.atoms).sum(-1).argmax(-1)  # double Q
        next_probs = agent.target(next_obs).exp()[rows, next_action]
        target = project_distribution(next_probs, torch.as_tensor(batch.reward), torch.as_tensor(batch.discount),
                                      agent.atoms)
        log_probs = agent.online(obs)[rows, torch.as_tensor(batch.action)]
    return batch.indices, -(target * log_probs).sum(-1)


def capture_priorities(buffer):
    captured = {}
    original = buffer.update_priorities

    def spy(indices, priorities):
        captured["indices"], captured["priorities"] = np.array(indices), np.array(priorities)
        original(indices, priorities)

    buffer.update_priorities = spy
    return captured


@pytest.mark.parametrize("noise", ["independent", "shared"])
def test_sam_update_computes_the_target_once_and_priorities_from_the_clean_pass(noise):
    agent = make_agent("sam", f"sam.noise={noise}")
    buffer = filled_buffer(agent)
    reference, reference_buffer = make_agent("sam", f"sam.noise={noise}"), filled_buffer(agent)
    indices, clean_loss = reference_clean_loss(reference, reference_buffer, progress=0.5)

    target_calls, target_forwards, online_outputs = [], [], []
    original = agent._clean_pass  # what `update` calls: clean_pass, or its compiled form

    def counting_clean_pass(*args):
        result = original(*args)
        target_calls.append(result[0])
        return result

    agent._clean_pass = counting_clean_pass
    agent.target.register_forward_hook(lambda module, inputs, output: target_forwards.append(1))
    agent.online.register_forward_hook(lambda module, inputs, output: online_outputs.append(output.detach()))
    captured = capture_priorities(buffer)
    agent.update(buffer, progress=0.5)

    assert len(target_calls) == 1  # the perturbed pass reuses the target distribution
    assert len(target_forwards) == 1
    assert len(online_outputs) == 3  # double-Q action choice, clean pass, perturbed pass
    np.testing.assert_array_equal(captured["indices"], indices)
    np.testing.assert_allclose(captured["priorities"], clean_loss.numpy(), rtol=1e-5, atol=1e-6)
    # The perturbed pass gives a different loss; priorities must not come from it.
    rows = torch.arange(len(indices))
    action = torch.as_tensor(reference_buffer.gather(indices).action)
    perturbed_loss = -(target_calls[0] * online_outputs[2][rows, action]).sum(-1)
    assert not np.allclose(captured["priorities"], perturbed_loss.numpy(), rtol=1e-4, atol=1e-6)


def test_without_sam_priorities_also_equal_the_per_sample_loss():
    agent, reference = make_agent("base"), make_agent("base")
    buffer, reference_buffer = filled_buffer(agent), filled_buffer(agent)
    indices, clean_loss = reference_clean_loss(reference, reference_buffer, progress=0.0)
    captured = capture_priorities(buffer)
    agent.update(buffer, progress=0.0)
    np.testing.assert_array_equal(captured["indices"], indices)
    np.testing.assert_allclose(captured["priorities"], clean_loss.numpy(), rtol=1e-5, atol=1e-6)


def weights_seen_by_each_forward(agent):
    """Pre-hooks recording the backbone's and the head's weights at every forward of the online network."""
    seen = {"backbone": [], "head": []}
    for name in seen:
        module = getattr(agent.online, name)
        module.register_forward_pre_hook(lambda m, inputs, name=name: seen[name].append(clone_params(m)))
    return seen


def perturbed(snapshots):
    """Whether the third forward (perturbed pass) saw different weights from the second (clean pass)."""
    clean, second = snapshots[1], snapshots[2]
    return any(not torch.equal(a, b) for a, b in zip(clean, second))


@pytest.mark.parametrize("scope, backbone, head", [
    ("all", True, True), ("backbone", True, False), ("head", False, True),
])
def test_sam_scope_decides_what_the_second_pass_perturbs(scope, backbone, head):
    agent = make_agent("sam", f"sam.scope={scope}")
    groups = agent.optimizer.param_groups
    assert [g["perturb"] for g in groups] == [scope in ("all", "backbone"), scope in ("all", "head")]
    buffer = filled_buffer(agent)
    seen = weights_seen_by_each_forward(agent)
    before = clone_params(agent.online)
    agent.update(buffer, progress=0.0)
    assert len(seen["backbone"]) == 3
    assert perturbed(seen["backbone"]) is backbone
    assert perturbed(seen["head"]) is head
    # The clean pass saw the weights before the update; the update restored and then stepped from them.
    for a, b in zip(seen["backbone"][1] + seen["head"][1], before, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert params_differ(agent.online, before)


def test_sam_scope_survives_a_reset():
    agent = make_agent("plastic", "sam.scope=head", "reset.interval=1")
    buffer = filled_buffer(agent)
    hook = ResetHook(agent.config)
    groups_before = [([id(p) for p in g["params"]], g["perturb"]) for g in agent.optimizer.param_groups]
    head_before = clone_params(agent.online.head)
    agent.update(buffer, progress=0.0)
    assert hook.after_update(agent, buffer) == {"plasticity/resets": 1.0}
    assert params_differ(agent.online.head, head_before)
    assert [([id(p) for p in g["params"]], g["perturb"]) for g in agent.optimizer.param_groups] == groups_before
    assert isinstance(agent.optimizer, SAM)
    assert agent.optimizer.base_optimizer.param_groups is agent.optimizer.param_groups
    ids = {id(p) for p in agent.online.parameters()}
    assert {id(p) for p in agent.optimizer.perturbed_parameters()} == {id(p) for p in agent.online.head.parameters()}
    assert {id(p) for g in agent.optimizer.param_groups for p in g["params"]} == ids
    # And the next update still perturbs the head only.
    seen = weights_seen_by_each_forward(agent)
    agent.update(buffer, progress=0.0)
    assert not perturbed(seen["backbone"])
    assert perturbed(seen["head"])


# --------------------------------------------------------------------------------------------- target network
@pytest.mark.parametrize("preset", ["base", "sam"])
def test_target_is_an_exponential_moving_average_of_the_online_weights(preset):
    agent = make_agent(preset)
    buffer = filled_buffer(agent)
    target_before = clone_params(agent.target)
    online_before = clone_params(agent.online)
    agent.update(buffer, progress=0.0)
    assert agent.updates == 1
    assert params_differ(agent.online, online_before)
    for t_after, t_before, online in zip(agent.target.parameters(), target_before, agent.online.parameters(),
                                         strict=True):
        torch.testing.assert_close(t_after, 0.99 * t_before + 0.01 * online.detach(), rtol=1e-6, atol=1e-7)


def test_identical_seeds_give_identical_updates():
    a, b = make_agent("plastic"), make_agent("plastic")
    buffer_a, buffer_b = filled_buffer(a), filled_buffer(b)
    losses = [(a.update(buffer_a, 0.1), b.update(buffer_b, 0.1)) for _ in range(3)]
    assert all(x == y for x, y in losses)
    assert_params_equal(a.online, clone_params(b.online))


# --------------------------------------------------------------------------------------------- resets
def adam_state(agent):
    return agent.optimizer.state


def test_hard_reset_redraws_the_head_and_keeps_the_backbone_and_its_adam_state():
    agent = make_agent("reset", "reset.interval=2")
    buffer = filled_buffer(agent)
    hook = ResetHook(agent.config)
    agent.update(buffer, progress=0.0)
    assert hook.after_update(agent, buffer) == {}  # 1 update: not yet
    agent.update(buffer, progress=0.0)
    head_before, backbone_before = clone_params(agent.online.head), clone_params(agent.online.backbone)
    target_backbone_before = clone_params(agent.target.backbone)
    backbone_state = {id(p): copy.deepcopy(adam_state(agent)[p]) for p in agent.online.backbone.parameters()}
    expected_head = reset_parameters_(copy.deepcopy(agent.online.head),
                                      torch.Generator().set_state(agent.generator.get_state()))

    assert hook.after_update(agent, buffer) == {"plasticity/resets": 1.0}

    assert params_differ(agent.online.head, head_before)
    assert_params_equal(agent.online.head, clone_params(expected_head))  # a fresh draw from the init distribution
    assert_params_equal(agent.target.head, clone_params(agent.online.head))
    assert_params_equal(agent.online.backbone, backbone_before)
    assert_params_equal(agent.target.backbone, target_backbone_before)
    state = adam_state(agent)
    assert all(p not in state for p in agent.online.head.parameters())
    for p in agent.online.backbone.parameters():
        assert p in state
        torch.testing.assert_close(state[p]["exp_avg"], backbone_state[id(p)]["exp_avg"], rtol=0, atol=0)
        assert float(state[p]["step"]) == 2.0
    agent.update(buffer, progress=0.0)  # Adam re-creates the head's state as for new parameters
    assert all(float(state[p]["step"]) == 1.0 for p in agent.online.head.parameters())
    assert all(float(state[p]["step"]) == 3.0 for p in agent.online.backbone.parameters())


def test_reset_with_optimizer_all_clears_every_adam_state():
    agent = make_agent("reset", "reset.interval=1", "reset.optimizer=all")
    buffer = filled_buffer(agent)
    agent.update(buffer, progress=0.0)
    ResetHook(agent.config).after_update(agent, buffer)
    assert len(adam_state(agent)) == 0


def test_shrink_perturb_moves_backbone_and_target_towards_the_same_fresh_draw():
    agent = make_agent("shrink_perturb", "reset.interval=1")
    buffer = filled_buffer(agent)
    agent.update(buffer, progress=0.0)
    online_before, target_before = clone_params(agent.online.backbone), clone_params(agent.target.backbone)
    head_before = clone_params(agent.online.head)
    assert params_differ(agent.target.backbone, online_before)  # the EMA target lags the online weights
    phi = clone_params(reset_parameters_(copy.deepcopy(agent.online.backbone),
                                         torch.Generator().set_state(agent.generator.get_state())))
    ResetHook(agent.config).after_update(agent, buffer)
    alpha = 0.6
    for p, before, fresh in zip(agent.online.backbone.parameters(), online_before, phi, strict=True):
        torch.testing.assert_close(p.detach(), alpha * before + (1 - alpha) * fresh, rtol=1e-6, atol=1e-7)
    for p, before, fresh in zip(agent.target.backbone.parameters(), target_before, phi, strict=True):
        torch.testing.assert_close(p.detach(), alpha * before + (1 - alpha) * fresh, rtol=1e-6, atol=1e-7)
    assert_params_equal(agent.online.head, head_before)  # no hard reset in this preset


def test_shrink_perturb_is_skipped_below_its_minimum_replay_ratio():
    agent = make_agent("shrink_perturb", "reset.interval=1", "shrink_perturb.min_replay_ratio=4",
                       "replay_ratio=2")
    buffer = filled_buffer(agent)
    agent.update(buffer, progress=0.0)
    before = clone_params(agent.online)
    ResetHook(agent.config).after_update(agent, buffer)
    assert_params_equal(agent.online, before)


# --------------------------------------------------------------------------------------------- augmentation
def test_random_shift_is_a_crop_of_the_edge_padded_input_at_the_drawn_offsets():
    pad = 2
    x = torch.rand(6, 3, 7, 9, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(5)
    offsets = torch.randint(0, 2 * pad + 1, (6, 2), generator=torch.Generator().set_state(generator.get_state()))
    shifted = random_shift(x, pad, generator)
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="edge")
    for i, (dy, dx) in enumerate(offsets.tolist()):
        np.testing.assert_array_equal(shifted[i].numpy(), padded[i, :, dy:dy + 7, dx:dx + 9])
    assert len({tuple(o) for o in offsets.tolist()}) > 1  # offsets are per sample


def test_random_shift_without_padding_is_the_identity_and_keeps_the_shape():
    x = torch.rand(2, 4, 10, 10)
    assert random_shift(x, 0, torch.Generator()) is x
    assert random_shift(x, 4, torch.Generator().manual_seed(0)).shape == x.shape


def test_intensity_scales_each_image_by_one_plus_clipped_noise():
    x = torch.ones(5, 2, 3, 3)
    generator = torch.Generator().manual_seed(3)
    noise = torch.randn((5, 1, 1, 1), generator=torch.Generator().set_state(generator.get_state()))
    out = intensity(x, 0.05, generator)
    torch.testing.assert_close(out, x * (1 + 0.05 * noise.clamp(-2, 2)))
    assert float(out.max()) <= 1.1 and float(out.min()) >= 0.9


def test_padded_crop_reference_agrees_with_torch_replicate_padding():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    np.testing.assert_array_equal(F.pad(x, (1, 1, 1, 1), mode="replicate").numpy(),
                                  np.pad(x.numpy(), ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge"))


# --------------------------------------------------------------------------------------------- torch.compile
def test_compile_auto_is_on_only_for_long_atari_runs():
    assert build("atari:Pong", "base", overrides={"steps": 100_000}).compile_enabled
    assert not build("atari:Pong", "base", overrides={"steps": 10_000}).compile_enabled
    assert not build("minatar:breakout", "base", overrides={"steps": 100_000}).compile_enabled
    assert build("minatar:breakout", "base", overrides={"compile": "on"}).compile_enabled
    assert not build("atari:Pong", "base", overrides={"steps": 100_000, "compile": "off"}).compile_enabled
    with pytest.raises(ValueError, match="'compile' = 'fast'; allowed: auto, on, off"):
        build("atari:Pong", "base", overrides={"compile": "fast"})
    with pytest.raises(ValueError, match="compile=off for dmc"):
        build("dmc:cartpole-swingup", "base", overrides={"compile": "on"})


@pytest.mark.skipif(cpp_compiler() is None, reason="torch.compile needs a C++ compiler")
def test_compiled_updates_match_eager_updates(tmp_path, monkeypatch):
    """The compiled passes compute the same update as the eager ones (to float rounding): same seed, same batches,
    same noise, so after three updates (SAM, LN, CReLU all on) the online weights and the priorities agree."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    torch._dynamo.reset()
    agents = [make_agent("plastic", f"compile={mode}") for mode in ("off", "on")]
    buffers = [filled_buffer(agent) for agent in agents]
    for _ in range(3):
        metrics = [agent.update(buffer, 0.5) for agent, buffer in zip(agents, buffers)]
        assert metrics[0]["losses/td_loss"] == pytest.approx(metrics[1]["losses/td_loss"], rel=1e-5)
    assert not agents[1]._loss_pass.failed
    for eager, compiled in zip(agents[0].online.parameters(), agents[1].online.parameters(), strict=True):
        torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)
    slots = np.arange(len(buffers[0]))
    np.testing.assert_allclose(buffers[1].sum_tree.get(slots), buffers[0].sum_tree.get(slots), rtol=1e-4)


@pytest.mark.skipif(cpp_compiler() is None, reason="torch.compile needs a C++ compiler")
def test_the_compiled_tail_steps_adam_and_the_target_as_the_eager_calls_do_across_a_reset(tmp_path, monkeypatch):
    """Without SAM the compiled update clips, steps Adam and moves the EMA target in one compiled call
    (agents/fused_step.py). It must leave the same weights, targets and Adam state as the eager calls, also after a
    reset cleared part of that state (which it then re-creates as torch.optim.Adam does), and keep the optimizer's
    checkpoint format."""
    from plastic.plasticity import reset_optimizer_state_

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    torch._dynamo.reset()
    agents = [make_agent("plastic-dagger", f"compile={mode}") for mode in ("off", "on")]
    assert agents[0]._compiled_tail is None and agents[1]._compiled_tail is not None
    buffers = [filled_buffer(agent) for agent in agents]
    for update in range(4):
        if update == 2:
            for agent in agents:
                reset_optimizer_state_(agent.optimizer, agent.online.head.parameters())
        metrics = [agent.update(buffer, 0.5) for agent, buffer in zip(agents, buffers)]
        for key in ("losses/td_loss", "losses/grad_norm"):
            assert metrics[1][key] == pytest.approx(metrics[0][key], rel=1e-5)
    assert not agents[1]._compiled_tail.compiled.failed
    eager, compiled = (agent.state_dict() for agent in agents)
    for network in ("online", "target"):
        for name, value in eager[network].items():
            torch.testing.assert_close(compiled[network][name], value, rtol=1e-4, atol=1e-6, msg=name)
    states = [agent.optimizer.state_dict()["state"] for agent in agents]
    head_from = len(list(agents[0].online.backbone.parameters()))  # the state is indexed backbone group first
    assert states[0].keys() == states[1].keys()
    for index, state in states[0].items():
        assert states[1][index].keys() == state.keys()
        assert states[1][index]["step"].item() == state["step"].item() == (2 if index >= head_from else 4)
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(states[1][index][key], state[key], rtol=1e-4, atol=1e-8)


@pytest.mark.skipif(cpp_compiler() is None, reason="compile=on needs a C++ compiler")
def test_the_compiled_tail_is_used_only_where_nothing_runs_between_clipping_adam_and_the_target_update():
    assert make_agent("plastic", "compile=on")._compiled_tail is None  # SAM steps twice
    assert make_agent("hare_tortoise", "compile=on")._compiled_tail is None  # acts after the step
    assert make_agent("base", "compile=off")._compiled_tail is None


def test_reduce_overhead_is_refused_where_there_are_no_cuda_graphs():
    for overrides, reason in ((["device=cpu"], "device = 'cpu' has no CUDA graphs"),
                              (["compile=off"], "compile = 'off' compiles nothing")):
        with pytest.raises(ValueError, match=f"'compile_mode' = 'reduce-overhead' .*{reason}; use compile_mode=default"):
            build("atari:Pong", "base", overrides=parse_overrides(["compile_mode=reduce-overhead", *overrides]))
    with pytest.raises(ValueError, match="dmc runs eagerly"):
        build("dmc:cartpole-swingup", "base", overrides={"compile_mode": "reduce-overhead"})
    with pytest.raises(ValueError, match="'compile_mode' = 'max'; allowed: default, reduce-overhead"):
        build("atari:Pong", "base", overrides={"compile_mode": "max"})
    # device = "auto" passes the config check; the agent, which knows the device it got, refuses a CPU
    with pytest.raises(ValueError, match="needs a cuda device, not cpu; use compile_mode=default"):
        make_agent("base", "compile=on", "compile_mode=reduce-overhead")


def test_under_cuda_graphs_a_pass_returns_clones_that_survive_its_next_replay(monkeypatch):
    """A CUDA graph replays into the same output memory. Stand in for one with a function that writes its result
    into one fixed buffer: the first call's result must keep its value after the second call, gradients must flow
    through the clone, and each call must begin a new graph step."""
    from plastic.agents import compiled

    static, modes = torch.zeros(3), []

    def graph_like(fn, **kwargs):
        modes.append(kwargs["mode"])
        return lambda x: (static.copy_(fn(x).detach()), fn(x))

    steps = []
    monkeypatch.setattr(compiled.torch, "compile", graph_like)
    monkeypatch.setattr(compiled.torch.compiler, "cudagraph_mark_step_begin", lambda: steps.append(1))
    monkeypatch.setattr(compiled, "cpp_compiler", lambda: "/usr/bin/g++")
    double = compiled.MaybeCompiled(lambda x: x * 2, strict=True, mode="reduce-overhead")
    x = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    first_out, first_grad_path = double(x)
    second_out, _ = double(torch.tensor([5.0, 5.0, 5.0]))
    assert first_out.tolist() == [2.0, 4.0, 6.0] and second_out.tolist() == [10.0, 10.0, 10.0]
    assert static.tolist() == [10.0, 10.0, 10.0]  # the "graph's" memory was overwritten; the clone was not
    first_grad_path.sum().backward()
    assert x.grad.tolist() == [2.0, 2.0, 2.0] and len(steps) == 2
    assert not compiled.MaybeCompiled(lambda x: x, strict=True).graphs
    assert modes == ["reduce-overhead", None]  # None: torch.compile's default mode


def test_a_failed_compile_falls_back_to_eager_under_auto_and_names_the_fix_under_on(monkeypatch):
    from plastic.agents import compiled

    def broken_compile(fn, **kwargs):
        def run(*args, **kw):
            raise RuntimeError("inductor: C++ compile failed\nlong log ...")
        return run

    monkeypatch.setattr(compiled.torch, "compile", broken_compile)
    monkeypatch.setattr(compiled, "cpp_compiler", lambda: "/usr/bin/g++")
    lenient = compiled.MaybeCompiled(lambda x: x * 2, strict=False)
    with pytest.warns(UserWarning, match=r"torch.compile failed \(inductor: C\+\+ compile failed\); running eagerly"):
        assert lenient(torch.tensor(3.0)) == 6.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # eager from then on, without a second warning
        assert lenient.failed and lenient(torch.tensor(4.0)) == 8.0
    strict = compiled.MaybeCompiled(lambda x: x * 2, strict=True)
    with pytest.raises(ValueError, match="torch.compile failed .*; run with --set compile=off"):
        strict(torch.tensor(3.0))
    monkeypatch.setattr(compiled, "cpp_compiler", lambda: None)
    with pytest.raises(ValueError, match="needs a C\\+\\+ compiler"):
        compiled.MaybeCompiled(lambda x: x, strict=True)


def test_augmenting_uint8_frames_equals_augmenting_their_float_values_with_the_same_draws():
    frames = torch.randint(0, 256, (6, 4, 12, 12), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    first, second = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    expected = augment(frames.float() / 255.0, 3, 0.05, first)
    from plastic.agents.augment import augment_frames

    torch.testing.assert_close(augment_frames(frames, 3, 0.05, second), expected, rtol=0, atol=0)
    assert torch.equal(first.get_state(), second.get_state())


@pytest.mark.skipif(cpp_compiler() is None, reason="torch.compile needs a C++ compiler")
@pytest.mark.parametrize("shape", [(32, 4, 84, 84), (8, 4, 10, 10)])  # Atari's batch (vectorised) and a small one
def test_the_compiled_float_conversion_of_augmented_frames_is_the_eager_one_bit_for_bit(shape, tmp_path, monkeypatch):
    """Compiled, the update converts the shifted uint8 frames to floats, jitters their intensity and lays them out
    channels_last in one pass: it must give exactly `augment_frames`' values, so that compiled and eager runs agree."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    torch._dynamo.reset()
    agent = make_agent("base", "compile=on", "rainbow.intensity_scale=0.05")
    assert agent.rainbow.intensity_scale == 0.05 and agent.observation_high == 255.0
    from plastic.agents.augment import augment_frames, shift_frames

    frames = torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    for seed in range(3):
        first, second = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        compiled = agent._float_frames(*shift_frames(frames, 4, 0.05, first))
        expected = augment_frames(frames, 4, 0.05, second)
        assert torch.equal(compiled, expected) and compiled.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(first.get_state(), second.get_state())
    assert not agent._float_frames.failed


@pytest.mark.parametrize("scale", [1e-3, 10.0])  # within the bound (untouched) and clipped
def test_clip_grad_norm_equals_torch_bit_for_bit(scale):
    from plastic.agents.rainbow import clip_grad_norm

    generator = torch.Generator().manual_seed(0)
    ours = [torch.nn.Parameter(torch.randn(n, generator=generator)) for n in (50, 7, 300)]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    for a, b in zip(ours, theirs):
        a.grad = torch.randn(a.shape, generator=generator) * scale
        b.grad = a.grad.clone()
    norm, expected_norm = clip_grad_norm(ours, 10.0), torch.nn.utils.clip_grad_norm_(theirs, 10.0)
    assert torch.equal(norm, expected_norm)
    assert all(torch.equal(a.grad, b.grad) for a, b in zip(ours, theirs))
    assert (float(torch.linalg.vector_norm(torch.cat([a.grad for a in ours]))) <= 10.0 + 1e-4) and (
        scale < 1 or float(norm) > 10.0)


@pytest.mark.parametrize("env_id, high", [("minatar:breakout", 1.0), ("atari:Pong", 255.0)])
def test_network_inputs_span_zero_to_one_whatever_the_observation_range(env_id, high):
    """MinAtar's channels are 0/1 and Atari's pixels 0..255: both reach the network as [0, 1] (MinAtar divided by
    255 would feed the network values <= 1/255)."""
    from plastic.envs import make_env
    from plastic.training.setup import make_agent as make_run_agent

    config = build(env_id, "base", overrides=parse_overrides(SMALL))
    env = make_env(env_id, seed=0, train=True)
    try:
        agent = make_run_agent(config, env, torch.device("cpu"))
        obs, _ = env.reset()
    finally:
        env.close()
    assert agent.observation_high == high and int(obs.max()) <= high
    full = np.full_like(obs, int(high))
    assert agent.probe_inputs(type("Batch", (), {"obs": full[None]})()).max().item() == 1.0
    generator = torch.Generator().manual_seed(0)
    frames = torch.as_tensor(full[None])
    from plastic.agents.augment import augment_frames

    shifted = augment_frames(frames, pad=1, intensity_scale=0.0, generator=generator, high=agent.observation_high)
    assert shifted.max().item() == 1.0 and shifted.min().item() == 1.0  # replicate padding of an all-ones frame
