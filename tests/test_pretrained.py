"""Fine-tuning from a pretrained backbone (paper §4.4, Table 3): loading, freezing, Reset† and clear mismatch errors."""

import copy

import numpy as np
import pytest
import torch

from plastic import config as config_module
from plastic.agents.rainbow import RainbowAgent
from plastic.cli import main
from plastic.plasticity import reset_parameters_
from plastic.replay import ReplayBuffer
from plastic.training.hooks import ResetHook
from plastic.training.pretrained import apply_pretrained_backbone, load_backbone_, read_backbone_state

OBS = (4, 10, 10)


def make_agent(seed=0, **overrides):
    overrides.setdefault("rainbow", {}).update(batch_size=8, learning_starts=0)
    config = config_module.build("minatar:breakout", "base", overrides={"seed": seed, **overrides})
    return RainbowAgent(config, OBS, 3, torch.device("cpu"))


def filled_buffer(agent, transitions=64):
    buffer = ReplayBuffer(seed=0, frame_shape=OBS, frame_stack=1, **agent.replay_options())
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 2, OBS, dtype=np.uint8)
    buffer.start_episode(obs)
    for t in range(transitions):
        next_obs = rng.integers(0, 2, OBS, dtype=np.uint8)
        buffer.add(int(rng.integers(3)), 1.0, next_obs, t % 16 == 15, False)
        obs = next_obs
        if t % 16 == 15:
            buffer.start_episode(obs)
    return buffer


def test_loaded_encoder_gives_identical_features(tmp_path):
    source, fresh = make_agent(seed=1), make_agent(seed=2)
    path = tmp_path / "encoder.pt"
    torch.save({f"backbone.{k}": v for k, v in source.online.backbone.state_dict().items()}, path)
    x = torch.rand(5, *OBS)
    assert not torch.equal(source.online.backbone(x), fresh.online.backbone(x))
    apply_pretrained_backbone(fresh, path, freeze=False)
    assert torch.equal(source.online.backbone(x), fresh.online.backbone(x))
    assert torch.equal(source.online.backbone(x), fresh.target.backbone(x))  # the target twin too


def test_run_directory_and_checkpoint_file_are_accepted(tmp_path):
    run_dir = tmp_path / "pre"
    code = main(["train", "--env", "minatar:breakout", "--steps", "60", "--run-dir", str(run_dir), "--no-progress",
                 "--eval-episodes", "1", "--set", "rainbow.learning_starts=20", "--set", "rainbow.batch_size=4",
                 "--set", "probe.every=0"])
    assert code == 0
    checkpoint = sorted((run_dir / "checkpoints").iterdir())[-1]
    saved = torch.load(checkpoint, weights_only=False)["agent"]["online"]
    expected = {k[len("backbone."):]: v for k, v in saved.items() if k.startswith("backbone.")}
    for source in (run_dir, checkpoint):
        state = read_backbone_state(source)
        assert state.keys() == expected.keys()
        assert all(torch.equal(state[k], expected[k]) for k in expected)


def test_frozen_backbone_does_not_change_while_the_head_trains(tmp_path):
    source, agent = make_agent(seed=1), make_agent(seed=3, sam={"enabled": True})
    path = tmp_path / "encoder.pt"
    torch.save(source.online.backbone.state_dict(), path)
    apply_pretrained_backbone(agent, path, freeze=True)
    backbone = copy.deepcopy(agent.online.backbone.state_dict())
    head = copy.deepcopy(agent.online.head.state_dict())
    buffer = filled_buffer(agent)
    for _ in range(5):
        agent.update(buffer, 0.5)
    assert all(torch.equal(v, agent.online.backbone.state_dict()[k]) for k, v in backbone.items())
    assert all(torch.equal(v, agent.target.backbone.state_dict()[k]) for k, v in backbone.items())
    assert any(not torch.equal(v, agent.online.head.state_dict()[k]) for k, v in head.items())


@pytest.mark.parametrize("freeze", [False, True])
def test_reset_dagger_hard_resets_the_head_and_softly_resets_a_trained_backbone(freeze):
    agent = make_agent(seed=4, reset={"enabled": True, "interval": 1},
                       shrink_perturb={"enabled": True, "alpha": 0.6})
    if freeze:
        for p in agent.online.backbone.parameters():
            p.requires_grad_(False)
    before = copy.deepcopy(agent.online)
    generator_state = agent.generator.get_state()
    # The same draws the hook will make: a fresh head, then phi for the backbone.
    expected_head = copy.deepcopy(agent.online.head)
    replay = torch.Generator().manual_seed(0)
    replay.set_state(generator_state)
    reset_parameters_(expected_head, replay)
    phi = copy.deepcopy(agent.online.backbone)
    reset_parameters_(phi, replay)

    agent.updates = 1
    ResetHook(agent.config).after_update(agent, buffer=None)

    for k, v in agent.online.head.state_dict().items():
        assert torch.equal(v, expected_head.state_dict()[k]), k
        assert torch.equal(v, agent.target.head.state_dict()[k]), k
    for (name, new), old, fresh in zip(agent.online.backbone.named_parameters(), before.backbone.parameters(),
                                       phi.parameters()):
        expected = old if freeze else 0.6 * old + 0.4 * fresh
        assert torch.allclose(new, expected, atol=1e-6), name


def test_mismatched_checkpoints_name_the_keys_and_shapes(tmp_path):
    agent = make_agent()
    encoder = agent.online.backbone
    state = encoder.state_dict()
    wrong_shape = {**state, "0.weight": torch.zeros(16, 7, 3, 3)}
    with pytest.raises(ValueError, match=r"0\.weight: checkpoint \(16, 7, 3, 3\) vs encoder \(16, 4, 3, 3\)"):
        load_backbone_(encoder, wrong_shape)
    missing = {k: v for k, v in state.items() if k != "0.bias"}
    with pytest.raises(ValueError, match=r"missing keys \['0\.bias'\]"):
        load_backbone_(encoder, missing)
    with pytest.raises(ValueError, match=r"unexpected keys \['9\.weight'\]"):
        load_backbone_(encoder, {**state, "9.weight": torch.zeros(1)})


def test_cli_reports_a_bad_backbone_in_one_line_and_leaves_no_run_dir(tmp_path, capsys):
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(b"not a checkpoint")
    run_dir = tmp_path / "run"
    code = main(["train", "--env", "minatar:breakout", "--steps", "10", "--run-dir", str(run_dir),
                 "--backbone-checkpoint", str(bad), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "garbage.pt: unreadable" in err and "Traceback" not in err
    assert not run_dir.exists()
    assert main(["train", "--env", "minatar:breakout", "--freeze-backbone", "--run-dir", str(run_dir)]) == 2
