"""Seeds trained together (`plastic train --seeds`): each seed of a group computes what it computes alone.

A Rainbow group batches the seeds' network passes (agents/seed_group.py), so a member equals its lone run to float
rounding, not bit for bit; the window here (the golden trace's MinAtar run: PLASTIC + shrink & perturb, augmentation,
probes, a reset at update 200) is short enough that no rounding difference flips an action or a sampled batch.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from plastic.config import build
from plastic.training.checkpoint import checkpoint_paths
from plastic.training.group import SeedGroupTrainer, common_checkpoint, group_members
from plastic.training.loop import Trainer
from tests.test_golden_trace import RAINBOW_ARGS, TIME_KEYS

SRC = str(Path(__file__).resolve().parents[1] / "src")


def config_for(seed: int, **extra):
    spec = copy.deepcopy(RAINBOW_ARGS)
    spec["overrides"].update({"seed": str(seed), **extra})
    return build(spec["env"], preset=spec["preset"], methods=spec["methods"], overrides=spec["overrides"])


def metrics_of(run_dir: Path) -> list[dict]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in line.items() if k not in TIME_KEYS} for line in lines]


def assert_same_run(group_metrics: list[dict], alone_metrics: list[dict], rtol: float) -> None:
    assert [m["step"] for m in group_metrics] == [m["step"] for m in alone_metrics]
    for mine, theirs in zip(group_metrics, alone_metrics):
        assert mine.keys() == theirs.keys()
        for key, value in theirs.items():
            assert mine[key] == pytest.approx(value, rel=rtol, abs=1e-6), (mine["step"], key)


def test_a_seed_trained_in_a_group_equals_the_seed_trained_alone(tmp_path):
    alone = Trainer(config_for(4), tmp_path / "alone", progress=False)
    alone_result = alone.run()
    group = SeedGroupTrainer([config_for(3), config_for(4)], [tmp_path / "s3", tmp_path / "s4"], progress=False)
    results = group.run()
    assert group.group.vectorised
    member = group.trainers[1]
    assert results[1]["seed"] == 4 and results[1]["updates"] == alone_result["updates"] == 2 * (300 - 60 + 1)
    # Losses, gradient norms, probes (Hessian eigenvalue, dormant units, ...) at every logged step, the reset's
    # metrics at update 200, the final evaluation returns and every weight.
    assert_same_run(metrics_of(tmp_path / "s4"), metrics_of(tmp_path / "alone"), rtol=2e-3)
    assert results[1]["eval_returns"] == alone_result["eval_returns"]
    for network in ("online", "target"):
        for (name, mine), theirs in zip(getattr(member.agent, network).state_dict().items(),
                                        getattr(alone.agent, network).state_dict().values()):
            torch.testing.assert_close(mine, theirs, rtol=2e-3, atol=2e-5, msg=f"{network}.{name}")
    # The other seed is a different run, not a copy.
    assert metrics_of(tmp_path / "s3")[-1] != metrics_of(tmp_path / "s4")[-1]


def test_a_group_member_s_checkpoint_holds_only_its_own_weights(tmp_path):
    group = SeedGroupTrainer([config_for(s, steps="80", checkpoint_every="70") for s in (0, 1, 2)],
                             [tmp_path / f"s{s}" for s in (0, 1, 2)], progress=False)
    group.run()
    state = torch.load(checkpoint_paths(tmp_path / "s1")[0], map_location="cpu", weights_only=False)
    weight = state["agent"]["online"]["head.value.0.weight_mu"]
    # Its weights are rows of the group's stacked tensors while training; the file stores just the row.
    assert weight.untyped_storage().nbytes() == weight.nbytes
    torch.testing.assert_close(weight, group.trainers[1].agent.online.head.value[0].weight_mu.detach())


def test_common_checkpoint_is_the_newest_step_every_member_has(tmp_path):
    for name, steps in (("a", (100, 200, 300)), ("b", (100, 200))):
        folder = tmp_path / name / "checkpoints"
        folder.mkdir(parents=True)
        for step in steps:
            (folder / f"step_{step:09d}.pt").write_bytes(b"")
    assert common_checkpoint([tmp_path / "a", tmp_path / "b"]) == 200
    (tmp_path / "c" / "checkpoints").mkdir(parents=True)
    with pytest.raises(ValueError, match="no checkpoint of a common step"):
        common_checkpoint([tmp_path / "a", tmp_path / "c"])


def plastic_cli(*args, **kwargs):
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "plastic", *args], capture_output=True, text=True, env=env,
                          **kwargs)


GROUP_ARGS = ["train", "--env", "minatar:breakout", "--seeds", "5,6", "--steps", "400", "--checkpoint-every", "100",
              "--no-progress", "--set", "rainbow.learning_starts=100", "--set", "rainbow.batch_size=16",
              "--set", "eval_episodes=2", "--set", "log_every=20", "--threads", "1"]


def test_a_group_killed_and_resumed_ends_as_without_interruption(tmp_path):
    assert plastic_cli(*GROUP_ARGS, "--out", str(tmp_path / "whole")).returncode == 0
    process = subprocess.Popen([sys.executable, "-m", "plastic", *GROUP_ARGS, "--out", str(tmp_path / "cut")],
                               env={**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    member = tmp_path / "cut" / "minatar-breakout_base_rr2_s6"
    deadline = time.time() + 300
    while len(checkpoint_paths(member)) < 2 and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (member / "result.json").exists()
    resumed = plastic_cli("train", "--resume", str(member), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    for seed in (5, 6):
        name = f"minatar-breakout_base_rr2_s{seed}"
        whole, cut = (json.loads((tmp_path / run / name / "result.json").read_text()) for run in ("whole", "cut"))
        assert cut["eval_returns"] == whole["eval_returns"]
        assert metrics_of(tmp_path / "cut" / name) == metrics_of(tmp_path / "whole" / name)
        assert group_members(tmp_path / "cut" / name) == [tmp_path / "cut" / f"minatar-breakout_base_rr2_s{s}"
                                                          for s in (5, 6)]


def test_run_dir_pattern_places_each_seed_and_any_member_resumes_the_group(tmp_path):
    args = [*GROUP_ARGS, "--run-dir", str(tmp_path / "seed{seed}" / "run"), "--set", "eval_episodes=1"]
    args[args.index("--steps") + 1] = "150"
    assert plastic_cli(*args).returncode == 0
    assert group_members(tmp_path / "seed6" / "run") == [tmp_path / "seed5" / "run", tmp_path / "seed6" / "run"]
    assert json.loads((tmp_path / "seed5" / "run" / "result.json").read_text())["seed"] == 5
    again = plastic_cli("train", "--resume", str(tmp_path / "seed6" / "run"))
    assert again.returncode == 2 and "every run of its seed group already finished" in again.stderr


@pytest.mark.parametrize("args, message", [
    (["--seeds", "3-1"], "empty range '3-1'"),
    (["--seeds", "0,1,1"], "--seeds: 1 given more than once"),
    (["--seeds", "0-2", "--seed", "4"], "give either --seed (one run) or --seeds (a group), not both"),
    (["--seeds", "a"], "--seeds: 'a' is not an integer"),
    (["--seeds", "0-1", "--run-dir", "x"], "--run-dir x names one; put {seed} in it"),
    (["--seeds", "0-1", "--run-dir", "runs/{game}/s{seed}"], "only {seed} may stand in braces (KeyError('game'))"),
])
def test_bad_seed_lists_are_one_line_errors(tmp_path, args, message):
    result = plastic_cli("train", "--env", "minatar:breakout", "--out", str(tmp_path), *args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not any(tmp_path.iterdir())


def test_a_group_that_does_not_fit_in_memory_is_refused_before_anything_is_written(tmp_path, monkeypatch, capsys):
    from plastic import cli, runtime

    monkeypatch.setattr(runtime, "available_memory_bytes", lambda: 64 << 20)  # 64 MiB
    code = cli.main(["train", "--env", "minatar:breakout", "--seeds", "0-7", "--out", str(tmp_path)])
    error = capsys.readouterr().err
    assert code == 2
    # 100k Breakout transitions: ~44 MB each (the frame ring of 10x10x4 uint8 frames and per-transition fields).
    assert "--seeds 0-7: 8 seeds need about" in error and "use at most 1 seeds per process" in error
    assert not any(tmp_path.iterdir())


def test_a_sac_group_updates_each_seed_in_turn_exactly_as_alone(tmp_path):
    """DrQ-SAC groups are not batched: each member's run is the lone run's, bit for bit."""
    pytest.importorskip("dm_control")
    from tests.test_golden_trace import SAC_ARGS

    def sac_config(seed: int):
        spec = copy.deepcopy(SAC_ARGS)
        spec["overrides"].update({"seed": str(seed), "steps": "130"})
        spec["overrides"]["probe"]["every"] = "0"
        return build(spec["env"], preset=spec["preset"], methods=spec["methods"], overrides=spec["overrides"])

    alone = Trainer(sac_config(2), tmp_path / "alone", progress=False).run()
    group = SeedGroupTrainer([sac_config(1), sac_config(2)], [tmp_path / "s1", tmp_path / "s2"], progress=False)
    results = group.run()
    assert not group.group.vectorised
    assert metrics_of(tmp_path / "s2") == metrics_of(tmp_path / "alone")
    assert results[1]["eval_returns"] == alone["eval_returns"]


def minatar_agents(seeds, preset="plastic"):
    """Rainbow agents with MinAtar shapes and identical, deterministically filled buffers."""
    from plastic.agents.rainbow import RainbowAgent
    from plastic.replay import ReplayBuffer

    pairs = []
    for seed in seeds:
        config = build("minatar:breakout", preset=preset, overrides={"seed": seed, "compile": "off",
                                                                     "rainbow": {"batch_size": 8}})
        agent = RainbowAgent(config, (4, 10, 10), 3, torch.device("cpu"), observation_high=1.0)
        buffer = ReplayBuffer(seed=seed, frame_shape=(4, 10, 10), frame_stack=1, **agent.replay_options())
        rng = np.random.default_rng(0)
        buffer.start_episode(rng.integers(0, 2, (4, 10, 10), dtype=np.uint8))
        for t in range(200):
            buffer.add(int(rng.integers(3)), float(rng.normal()), rng.integers(0, 2, (4, 10, 10), dtype=np.uint8),
                       t % 50 == 49, False)
            if t % 50 == 49:
                buffer.start_episode(rng.integers(0, 2, (4, 10, 10), dtype=np.uint8))
        pairs.append((agent, buffer))
    return pairs


def test_the_vmap_fallback_computes_what_the_stacked_layers_compute():
    from plastic.agents.seed_group import RainbowGroup

    groups = []
    for batched_layers in (True, False):
        pairs = minatar_agents([0, 1])
        group = RainbowGroup([agent for agent, _ in pairs])
        group.batched_layers = batched_layers  # False: torch.func.vmap over the plain module
        groups.append((group, [buffer for _, buffer in pairs]))
    for _ in range(3):
        (stacked_results, fallback_results) = (group.update(buffers, 0.5) for group, buffers in groups)
        for mine, theirs in zip(stacked_results, fallback_results):
            assert mine["losses/td_loss"] == pytest.approx(theirs["losses/td_loss"], rel=1e-5)
            assert mine["losses/grad_norm"] == pytest.approx(theirs["losses/grad_norm"], rel=1e-4)
    for mine, theirs in zip(groups[0][0].agents, groups[1][0].agents):
        for a, b in zip(mine.online.parameters(), theirs.online.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
