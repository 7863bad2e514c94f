"""Opt-in bf16 mixed precision of the Rainbow update, and the channels_last layout of its networks (issue 14).

bf16: the convolutions and matmuls run in bfloat16, everything the update accumulates or normalises stays float32
(master weights, gradients, Adam moments, losses, log-softmax, the C51 projection), and the loss stays close to the
float32 one. Without bf16 units the run is refused with the reason. channels_last changes only the memory layout:
logits and gradients equal those of the contiguous network to float rounding (checked in float64).
"""

import json

import pytest
import torch

from plastic.agents import precision
from plastic.agents.rainbow import RainbowAgent
from plastic.cli import main
from plastic.config import build, load, parse_overrides, save
from plastic.nets.rainbow import RainbowNetwork
from tests.test_rainbow_agent import NUM_ACTIONS, OBS_SHAPE, SMALL, filled_buffer

NO_BF16 = precision.bf16_unsupported_reason(torch.device("cpu"))
needs_bf16 = pytest.mark.skipif(NO_BF16 is not None, reason=f"no bf16 units: {NO_BF16}")


def make_agent(preset, value, seed=0):
    config = build("minatar:breakout", preset, overrides=parse_overrides([*SMALL, f"seed={seed}",
                                                                         f"precision={value}"]))
    return RainbowAgent(config, OBS_SHAPE, NUM_ACTIONS, torch.device("cpu"))


# --------------------------------------------------------------------------------------------- config
def test_precision_defaults_to_fp32_and_rejects_other_values():
    assert build("minatar:breakout", "base").precision == "fp32"
    with pytest.raises(ValueError, match="'precision' = 'fp16'; allowed: fp32, bf16"):
        build("minatar:breakout", "base", overrides={"precision": "fp16"})
    with pytest.raises(ValueError, match="'precision' = 'bf16' is implemented for the Rainbow agent"):
        build("dmc:cartpole-swingup", "base", overrides={"precision": "bf16"})


def test_precision_is_recorded_in_config_json_and_old_files_load_as_fp32(tmp_path):
    path = tmp_path / "config.json"
    save(build("minatar:breakout", "base", overrides={"precision": "bf16"}), path)
    data = json.loads(path.read_text())
    assert data["precision"] == "bf16" and load(path).precision == "bf16"
    del data["precision"]  # a config.json written before the field existed
    path.write_text(json.dumps(data))
    assert load(path).precision == "fp32"


# --------------------------------------------------------------------------------------------- detection
def test_bf16_is_refused_with_the_reason_on_a_cpu_without_bf16_units(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(precision, "cpu_flags", lambda: {"avx2", "avx512f"})
    assert "no bf16 units" in precision.bf16_unsupported_reason(torch.device("cpu"))
    with pytest.raises(ValueError, match=r"precision = 'bf16' needs bf16 hardware: this CPU has no bf16 units \("
                                         r"none of the CPU flags avx512_bf16, amx_bf16\); use --set precision=fp32"):
        make_agent("base", "bf16")
    make_agent("base", "fp32")  # float32 never needs them
    code = main(["train", "--env", "minatar:breakout", "--steps", "10", "--run-dir", str(tmp_path / "run"),
                 "--no-progress", "--set", "precision=bf16"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("plastic train: error: precision = 'bf16' needs bf16 hardware") and "\n" not in err


def test_bf16_is_accepted_where_the_cpu_has_either_flag(monkeypatch):
    for flags in ({"avx512_bf16"}, {"amx_bf16", "amx_tile"}):
        monkeypatch.setattr(precision, "cpu_flags", lambda flags=flags: flags)
        assert precision.bf16_unsupported_reason(torch.device("cpu")) is None


# --------------------------------------------------------------------------------------------- bf16 update
@needs_bf16
@pytest.mark.parametrize("preset", ["base", "plastic"])
def test_bf16_update_keeps_float32_state_and_a_loss_close_to_float32(preset):
    agents = [make_agent(preset, value) for value in ("fp32", "bf16")]
    buffers = [filled_buffer(agent) for agent in agents]
    for _ in range(3):
        metrics = [agent.update(buffer, 0.5) for agent, buffer in zip(agents, buffers)]
        losses = [float(m["losses/td_loss"]) for m in metrics]
        assert all(torch.isfinite(torch.tensor(losses)))
        # Same seed, same batches: the bf16 loss is the float32 one to bf16's ~3 significant digits.
        assert losses[1] == pytest.approx(losses[0], rel=5e-2)
    mixed = agents[1]
    assert all(p.dtype == torch.float32 for net in (mixed.online, mixed.target) for p in net.parameters())
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in mixed.online.parameters())
    moments = [v for state in mixed.optimizer.state.values() for k, v in state.items() if k != "step"]
    assert moments and all(m.dtype == torch.float32 for m in moments)
    # bf16 is really used: the weights moved differently from the float32 run's.
    assert any(not torch.equal(a, b) for a, b in zip(agents[0].online.parameters(), mixed.online.parameters()))


@needs_bf16
def test_bf16_passes_return_float32_log_probs_and_a_float32_projection():
    agent = make_agent("base", "bf16")
    batch = filled_buffer(agent).sample(8)
    obs, action, reward, discount, next_obs = agent._batch_tensors(batch, augmentation=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        log_probs = agent.online(obs)
    assert log_probs.dtype == torch.float32
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(8, NUM_ACTIONS))
    target, losses = agent._clean_pass(obs, action, reward, discount, next_obs)
    assert target.dtype == torch.float32 and losses.dtype == torch.float32
    torch.testing.assert_close(target.sum(-1), torch.ones(8), rtol=0, atol=1e-6)
    assert agent._loss_pass(obs, action, target).dtype == torch.float32


# --------------------------------------------------------------------------------------------- channels_last
def test_channels_last_network_equals_the_contiguous_one_in_float64():
    torch.manual_seed(0)
    contiguous = RainbowNetwork((4, 84, 84), 6, ln_placement="backbone", crelu_placement="head").double()
    last = RainbowNetwork((4, 84, 84), 6, ln_placement="backbone", crelu_placement="head").double()
    last.load_state_dict(contiguous.state_dict())
    last.to(memory_format=torch.channels_last)
    assert last.backbone[0].weight.is_contiguous(memory_format=torch.channels_last)
    generator = torch.Generator().manual_seed(1)
    for net in (contiguous, last):
        net.reset_noise(torch.Generator().manual_seed(2))
    obs = torch.rand(5, 4, 84, 84, generator=generator, dtype=torch.float64)
    outputs = [net(x) for net, x in ((contiguous, obs), (last, obs.contiguous(memory_format=torch.channels_last)))]
    assert outputs[0].dtype == outputs[1].dtype == torch.float64  # the head keeps float64 (casts only bf16 up)
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-12, atol=1e-12)
    for out in outputs:
        out[:, 0].sum().backward()
    for a, b in zip(contiguous.parameters(), last.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-10, atol=1e-12)
