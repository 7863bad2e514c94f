"""DrQ-SAC agent (paper App. A.4, Algorithm 2, Table 6): losses by hand, target EMA, SAM scope, reset scope,
encoder isolation from the actor, shapes, determinism and checkpoint round trip."""

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from plastic.agents.sac import SACAgent
from plastic.config import build
from plastic.nets.sac import build_networks, squashed_gaussian_log_prob
from plastic.plasticity import SAM
from plastic.replay import ReplayBuffer
from plastic.training.hooks import ResetHook

OBS = (3, 32, 32)  # 32 px is the smallest size the four stride-2 convs keep positive (32 -> 15 -> 7 -> 3 -> 1)
ACTIONS = 2


def make_agent(preset="base", seed=0, obs_shape=OBS, action_dim=ACTIONS, **overrides):
    overrides = {"sac": {"batch_size": "8"}, "seed": str(seed), **overrides}
    config = build("dmc:cartpole-swingup", preset=preset, overrides=overrides)
    return SACAgent(config, obs_shape, action_dim, torch.device("cpu"))


def filled_buffer(agent, transitions=40, seed=0, obs_shape=OBS):
    frames = obs_shape[0] // 3
    buffer = ReplayBuffer(seed=seed, frame_shape=(frames, *obs_shape[1:]), frame_stack=3,
                          **{**agent.replay_options(), "capacity": max(100, transitions)})
    rng = np.random.default_rng(seed)
    obs = rng.integers(0, 256, obs_shape, dtype=np.uint8)
    buffer.start_episode(obs)
    for step in range(transitions):
        next_obs = np.concatenate([obs[frames:], rng.integers(0, 256, (frames, *obs_shape[1:]), dtype=np.uint8)])
        action = rng.uniform(-1, 1, agent.action_dim).astype(np.float32)
        buffer.add(action, float(rng.normal()), next_obs, step == transitions - 1, False)
        obs = next_obs
    return buffer


def snapshot(module: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


class FixedQ(nn.Module):
    """A critic stub: Q1, Q2 given, whatever the inputs."""

    def __init__(self, q1, q2):
        super().__init__()
        self.q1, self.q2 = torch.tensor(q1), torch.tensor(q2)

    def forward(self, obs, action):
        return self.q1, self.q2


# ------------------------------------------------------------------------------------------ losses by hand
def test_critic_target_and_loss_by_hand():
    agent = make_agent()
    with torch.no_grad():
        agent.log_alpha.fill_(math.log(0.1))
    agent.target = FixedQ([2.0, 3.0], [1.5, 4.0])
    reward, discount = torch.tensor([1.0, 0.5]), torch.tensor([0.99, 0.0])
    target = agent.critic_target(None, reward, discount, next_action=torch.zeros(2, ACTIONS),
                                 next_log_prob=torch.tensor([-1.0, 2.0]))
    # y = r + discount * (min(Q1', Q2') - alpha log pi): 1 + 0.99 * (1.5 + 0.1) and 0.5 + 0 (terminal).
    assert target.tolist() == pytest.approx([2.584, 0.5])

    agent.critic = FixedQ([1.0, 2.0], [0.0, 3.0])
    loss = agent.critic_loss(None, None, target)
    # mean over the batch of (Q1 - y)^2 + (Q2 - y)^2.
    expected = ((1 - 2.584) ** 2 + (0 - 2.584) ** 2 + (2 - 0.5) ** 2 + (3 - 0.5) ** 2) / 2
    assert float(loss) == pytest.approx(expected)


def test_squashed_gaussian_log_prob_by_hand():
    mean, log_std, u = 0.5, math.log(0.5), 1.0
    normal = -0.5 * ((u - mean) / 0.5) ** 2 - math.log(0.5) - 0.5 * math.log(2 * math.pi)
    expected = normal - math.log(1 - math.tanh(u) ** 2)
    value = squashed_gaussian_log_prob(torch.tensor([[u, u]]), torch.tensor([[mean, mean]]),
                                       torch.tensor([[log_std, log_std]]))
    assert float(value) == pytest.approx(2 * expected, rel=1e-6)  # summed over the two action dimensions
    # Stable far out in the tail, where 1 - tanh(u)^2 underflows in float32.
    far = squashed_gaussian_log_prob(torch.tensor([[20.0]]), torch.tensor([[20.0]]), torch.tensor([[0.0]]))
    assert float(far) == pytest.approx(-0.5 * math.log(2 * math.pi) - 2 * (math.log(2) - 20 - math.log1p(math.exp(-40))))


class FixedActor(nn.Module):
    def __init__(self, mean, log_std):
        super().__init__()
        self.mean = nn.Parameter(torch.tensor([[mean]]))
        self.log_std = nn.Parameter(torch.tensor([[log_std]]))

    def forward(self, features):
        return self.mean.expand(len(features), 1), self.log_std.expand(len(features), 1)


class SumQ(nn.Module):
    """Critic stub on (features, action): Q1 = 2 a, Q2 = 2 a + 1."""

    def forward(self, features, action):
        return 2 * action.sum(-1), 2 * action.sum(-1) + 1


def test_actor_and_temperature_losses_by_hand():
    agent = make_agent(action_dim=1)
    agent.actor = FixedActor(0.5, math.log(0.5))
    agent.critic.critic = SumQ()
    with torch.no_grad():
        agent.log_alpha.fill_(math.log(0.2))
    loss, log_prob, _ = agent.actor_loss(torch.zeros(1, 4), noise=torch.tensor([[1.0]]))
    u = 0.5 + 0.5 * 1.0
    expected_log_prob = (-0.5 * ((u - 0.5) / 0.5) ** 2 - math.log(0.5) - 0.5 * math.log(2 * math.pi)
                         - math.log(1 - math.tanh(u) ** 2))
    assert float(log_prob.detach()) == pytest.approx(expected_log_prob, rel=1e-5)
    # alpha log pi - min(Q1, Q2), with min = Q1 = 2 tanh(u).
    assert float(loss.detach()) == pytest.approx(0.2 * expected_log_prob - 2 * math.tanh(u), rel=1e-5)

    # Temperature: alpha * mean(-log pi - target_entropy), target entropy -|A| = -1.
    log_prob = torch.tensor([0.2, -0.4])
    assert float(agent.temperature_loss(log_prob).detach()) == pytest.approx(0.2 * ((-0.2 + 1) + (0.4 + 1)) / 2)


def test_temperature_update_is_one_adam_step_on_log_alpha():
    agent = make_agent(action_dim=1)
    before = float(agent.log_alpha.detach())
    assert math.exp(before) == pytest.approx(0.1)  # Table 6: initial temperature 0.1
    loss = agent.update_temperature(torch.tensor([0.2, -0.4]))
    assert float(loss) == pytest.approx(0.1 * 1.1)
    # d loss / d log_alpha = loss = 0.11 > 0; Adam's first step moves by lr * g / (|g| + eps) = lr (3e-4).
    assert float(agent.log_alpha.detach()) == pytest.approx(before - 3e-4 * 0.11 / (0.11 + 1e-8), abs=1e-7)


# ------------------------------------------------------------------------------------------ target network
def test_target_is_ema_of_encoder_and_critic():
    agent = make_agent()
    with torch.no_grad():
        for index, (online, target) in enumerate(zip(agent.critic.parameters(), agent.target.parameters())):
            online.fill_(1.0 + index)
            target.fill_(-2.0)
    agent.update_target()
    for index, target in enumerate(agent.target.parameters()):
        # target <- 0.995 target + 0.005 online (Table 6: tau 0.995).
        assert torch.allclose(target, torch.full_like(target, 0.995 * -2.0 + 0.005 * (1.0 + index)))
    assert not any(p.requires_grad for p in agent.target.parameters())


# ------------------------------------------------------------------------------------------ SAM scope
def test_sam_optimizer_per_component():
    base = make_agent()
    assert all(type(o) is torch.optim.Adam for o in base.optimizers)

    agent = make_agent("sam", sam={"actor_rho": "0", "critic_rho": "0.05"})
    assert type(agent.actor_optimizer) is torch.optim.Adam  # actor_rho = 0: no SAM on the actor
    assert isinstance(agent.critic_optimizer, SAM) and isinstance(agent.temperature_optimizer, SAM)
    critic_scope = {id(p) for p in agent.critic_optimizer.perturbed_parameters()}
    assert critic_scope == {id(p) for p in agent.critic.parameters()}  # encoder + critic, nothing else
    assert {id(p) for p in agent.critic.encoder.parameters()} <= critic_scope
    assert agent.critic_optimizer.param_groups[0]["rho"] == 0.05
    assert agent.temperature_optimizer.param_groups[0]["rho"] == 0.01  # DMC default rho
    assert agent.temperature_optimizer.perturbed_parameters() == [agent.log_alpha]

    off = make_agent("sam", sam={"temperature_rho": "0"})
    assert type(off.temperature_optimizer) is torch.optim.Adam and isinstance(off.actor_optimizer, SAM)
    assert make_agent("sam", env="dmc:quadruped-run").critic_optimizer.param_groups[0]["rho"] == 0.1


def test_critic_sam_perturbs_encoder_and_critic_only():
    agent = make_agent("sam")
    buffer = filled_buffer(agent)
    obs, action, reward, discount, next_obs = agent._batch_tensors(buffer.sample_uniform(8), augmentation=True)
    critic_before, actor_before = snapshot(agent.critic), snapshot(agent.actor)
    seen = []
    loss_of = agent.critic_loss

    def recording_loss(*args):
        seen.append((snapshot(agent.critic), snapshot(agent.actor), float(agent.log_alpha.detach())))
        return loss_of(*args)

    agent.critic_loss = recording_loss
    agent.update_critic(obs, action, reward, discount, next_obs)
    (clean_critic, clean_actor, _), (perturbed_critic, perturbed_actor, alpha) = seen
    assert same(clean_critic, critic_before)
    encoder_count = len(list(agent.critic.encoder.parameters()))
    # Every encoder and critic tensor moved by the perturbation; the actor and temperature did not.
    assert all(not torch.equal(a, b) for a, b in zip(perturbed_critic, critic_before))
    assert encoder_count > 0 and same(perturbed_actor, actor_before) and same(clean_actor, actor_before)
    assert alpha == pytest.approx(math.log(0.1))
    delta = torch.sqrt(sum(((a - b) ** 2).sum() for a, b in zip(perturbed_critic, critic_before)))
    assert float(delta) == pytest.approx(0.01, rel=1e-4)  # ||eps|| = rho
    assert same(snapshot(agent.actor), actor_before)


# ------------------------------------------------------------------------------------------ encoder isolation
def test_actor_loss_does_not_train_encoder_or_critic():
    agent = make_agent("plastic")
    buffer = filled_buffer(agent)
    obs = agent._batch_tensors(buffer.sample_uniform(8), augmentation=True)[0]
    critic_before, actor_before = snapshot(agent.critic), snapshot(agent.actor)
    agent.update_actor(obs)
    assert same(snapshot(agent.critic), critic_before)
    assert all(p.grad is None for p in agent.critic.parameters())
    assert not same(snapshot(agent.actor), actor_before)
    assert all(p.requires_grad for p in agent.critic.parameters())  # unfrozen again


def test_critic_update_trains_encoder_not_actor():
    agent = make_agent()
    buffer = filled_buffer(agent)
    batch = agent._batch_tensors(buffer.sample_uniform(8), augmentation=True)
    encoder_before, actor_before = snapshot(agent.critic.encoder), snapshot(agent.actor)
    agent.update_critic(*batch)
    assert all(not torch.equal(a, b) for a, b in zip(snapshot(agent.critic.encoder), encoder_before))
    assert same(snapshot(agent.actor), actor_before)


# ------------------------------------------------------------------------------------------ reset
def test_reset_redraws_actor_and_critic_mlps_keeps_encoder():
    agent = make_agent("plastic", reset={"interval": "2"})
    buffer = filled_buffer(agent)
    hook = ResetHook(agent.config)
    agent.update(buffer, 0.0)
    assert hook.after_update(agent, buffer) == {}  # update 1: not yet
    agent.update(buffer, 0.0)
    encoder, target_encoder = snapshot(agent.critic.encoder), snapshot(agent.target.encoder)
    actor, critic_mlps = snapshot(agent.actor), snapshot(agent.critic.critic)
    assert hook.after_update(agent, buffer) == {"plasticity/resets": 1.0}
    assert same(snapshot(agent.critic.encoder), encoder) and same(snapshot(agent.target.encoder), target_encoder)
    assert all(not torch.equal(a, b) for a, b in zip(snapshot(agent.actor), actor) if a.numel() > 1)
    assert all(not torch.equal(a, b) for a, b in zip(snapshot(agent.critic.critic), critic_mlps) if a.numel() > 1)
    assert same(snapshot(agent.target.critic), snapshot(agent.critic.critic))  # target MLPs take the same draw
    # The optimizer state of what was re-drawn is cleared; the encoder keeps its Adam moments.
    state = agent.critic_optimizer.state
    assert all(p not in state for p in agent.critic.critic.parameters())
    assert all(p in state for p in agent.critic.encoder.parameters())
    assert all(p not in agent.actor_optimizer.state for p in agent.actor.parameters())
    assert agent.log_alpha not in agent.temperature_optimizer.state  # the temperature is renewed too (below)


def test_reset_renews_the_temperature_and_its_adam_state_as_in_a_fresh_agent():
    agent = make_agent("plastic", reset={"interval": "3"})
    buffer = filled_buffer(agent)
    hook = ResetHook(agent.config)
    for _ in range(3):
        agent.update(buffer, 0.0)
    assert agent.log_alpha.item() != pytest.approx(math.log(0.1))  # three Adam steps moved it
    hook.after_update(agent, buffer)
    fresh = make_agent("plastic", reset={"interval": "3"})
    assert agent.log_alpha.item() == fresh.log_alpha.item() == pytest.approx(math.log(0.1))  # Table 6: alpha 0.1
    assert agent.temperature_optimizer.state_dict() == fresh.temperature_optimizer.state_dict()
    # The next step is Adam's first step again: it moves log_alpha by lr = 3e-4 (|g| / (|g| + eps) ~ 1).
    before = agent.log_alpha.item()
    agent.update(buffer, 0.0)
    assert abs(agent.log_alpha.item() - before) == pytest.approx(3e-4, rel=1e-3)


@pytest.mark.parametrize("preset", ["base", "sam"])
def test_a_frozen_encoder_stays_bit_identical_over_updates(preset, tmp_path):
    from plastic.training.pretrained import apply_pretrained_backbone

    agent = make_agent(preset)
    torch.save(make_agent(preset, seed=1).critic.encoder.state_dict(), tmp_path / "encoder.pt")
    apply_pretrained_backbone(agent, tmp_path / "encoder.pt", freeze=True)
    buffer = filled_buffer(agent)
    encoder, target_encoder = snapshot(agent.critic.encoder), snapshot(agent.target.encoder)
    critic_mlps = snapshot(agent.critic.critic)
    for _ in range(4):
        agent.update(buffer, 0.0)
        assert same(snapshot(agent.critic.encoder), encoder)
        assert same(snapshot(agent.target.encoder), target_encoder)
        assert not any(p.requires_grad for p in agent.critic.encoder.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(snapshot(agent.critic.critic), critic_mlps))  # it did train
    assert all(p.requires_grad for p in agent.critic.critic.parameters())


def test_shrink_perturb_touches_encoder_only():
    agent = make_agent("plastic-dagger", reset={"interval": "1"}, shrink_perturb={"min_replay_ratio": "1"})
    buffer = filled_buffer(agent)
    agent.update(buffer, 0.0)
    encoder, target = snapshot(agent.critic.encoder), snapshot(agent.target.encoder)
    ResetHook(agent.config).after_update(agent, buffer)
    assert all(not torch.equal(a, b) for a, b in zip(snapshot(agent.critic.encoder), encoder))
    # theta <- 0.6 theta + 0.4 phi on the encoder and its target twin with the same phi: their gap shrinks by 0.6.
    for online_after, target_after, online_before, target_before in zip(
            snapshot(agent.critic.encoder), snapshot(agent.target.encoder), encoder, target):
        assert torch.allclose(online_after - target_after, 0.6 * (online_before - target_before), atol=1e-6)


# ------------------------------------------------------------------------------------------ shapes
@pytest.mark.parametrize("channels", [3, 9])  # grayscale (Table 6) and RGB (public code), stack 3
def test_shapes_grayscale_and_rgb(channels):
    obs_shape = (channels, 64, 64)
    agent = make_agent(obs_shape=obs_shape, action_dim=6)
    assert agent.critic.encoder.feature_dim == 256 * 3 * 3  # 64 -> 31 -> 15 -> 7 -> 3
    obs = np.random.default_rng(0).integers(0, 256, (5, *obs_shape), dtype=np.uint8)
    action = agent.act(obs[0], step=agent.learning_starts)
    assert action.shape == (6,) and action.dtype == np.float32 and np.all(np.abs(action) <= 1)
    warmup = agent.act(obs[0], step=0)
    assert warmup.shape == (6,) and np.all(np.abs(warmup) <= 1)
    greedy = agent.evaluation_policy(np.random.default_rng(0))(obs)
    assert greedy.shape == (5, 6) and np.all(np.abs(greedy) < 1)
    q1, q2 = agent.probe_model(*agent.probe_inputs(type("Batch", (), {"obs": obs, "action": np.zeros((5, 6))})))
    assert q1.shape == q2.shape == (5,)
    assert agent.replay_options()["action_shape"] == (6,)
    buffer = filled_buffer(agent, obs_shape=obs_shape)
    metrics = agent.update(buffer, 0.0)
    assert set(metrics) == {"losses/critic_loss", "losses/actor_loss", "losses/temperature_loss",
                            "charts/temperature", "charts/entropy"}


def test_parameter_count_of_the_base_critic():
    critic, _ = build_networks((3, 64, 64), 1)
    convs = (3 * 32 + 32 * 64 + 64 * 128 + 128 * 256) * 9 + (32 + 64 + 128 + 256)
    trunk = 2304 * 50 + 50 + 2 * 50  # Linear + LayerNorm affine
    q_mlp = (51 * 256 + 256) + (256 * 256 + 256) + (256 + 1)
    assert sum(p.numel() for p in critic.parameters()) == convs + trunk + 2 * q_mlp


def test_plasticity_switches_shape_the_networks():
    critic, actor = build_networks((3, 64, 64), 2, ln_placement="all", crelu_placement="head")
    conv_norms = [m for m in critic.encoder if type(m).__name__ == "ConvLayerNorm"]
    assert len(conv_norms) == 4
    assert [m.in_features for m in critic.critic.q1 if isinstance(m, nn.Linear)] == [52, 512, 512]
    assert sum(isinstance(m, nn.LayerNorm) for m in actor.policy) == 2
    critic, actor = build_networks((3, 64, 64), 2, ln_placement="backbone", crelu_placement="all",
                                   width_mode="halve_output")
    assert [m.out_channels for m in critic.encoder if isinstance(m, nn.Conv2d)] == [16, 32, 64, 128]
    assert not any(isinstance(m, nn.LayerNorm) for m in actor.policy)


# ------------------------------------------------------------------------------------------ determinism, resume
def run_updates(agent, buffer, count):
    return [agent.update(buffer, 0.0) for _ in range(count)]


def test_same_seed_same_losses():
    first = run_updates(make_agent("plastic"), filled_buffer(make_agent("plastic")), 3)
    again = run_updates(make_agent("plastic"), filled_buffer(make_agent("plastic")), 3)
    assert first == again
    other = run_updates(make_agent("plastic", seed=1), filled_buffer(make_agent("plastic")), 3)
    assert other != first


def test_state_dict_round_trip_continues_identically():
    agent = make_agent("plastic")
    buffer = filled_buffer(agent)
    run_updates(agent, buffer, 2)
    # A checkpoint is written to disk at once; deep copies stand in for that here.
    state, buffer_state = copy.deepcopy(agent.state_dict()), copy.deepcopy(buffer.state_dict())
    expected = run_updates(agent, buffer, 2) + [agent.act(np.zeros(OBS, np.uint8), step=10**6).tolist()]

    restored = make_agent("plastic", seed=5)
    restored.load_state_dict(state)
    buffer.load_state_dict(buffer_state)
    assert run_updates(restored, buffer, 2) + [restored.act(np.zeros(OBS, np.uint8), step=10**6).tolist()] == expected


# ------------------------------------------------------------------------------------------ probes, ReDo
def test_probe_interface():
    from plastic.probes import active_unit_fraction

    agent = make_agent("plastic", ln={"placement": "all"})  # the layer names below are those of LN after every layer
    buffer = filled_buffer(agent)
    batch = buffer.sample_uniform(8)
    fractions = active_unit_fraction(agent.probe_model, agent.probe_inputs(batch))
    assert "encoder.2/elements" in fractions and "critic.q1.2/elements" in fractions
    state = agent.generator.get_state()
    with agent.loss_closure(batch) as closure:
        assert float(closure().detach()) == float(closure().detach()) > 0  # deterministic
    assert torch.equal(agent.generator.get_state(), state)  # the probe draws nothing from the run's generator
    recycled = agent.redo(agent.probe_inputs(batch), tau=0.0)
    assert set(recycled) == {"critic.q1.0", "critic.q1.3", "critic.q2.0", "critic.q2.3",
                             "actor.policy.0", "actor.policy.3"}
