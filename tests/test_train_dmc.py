"""`plastic train` on DeepMind Control from pixels with the DrQ-SAC agent: a tiny PLASTIC run finishes and writes
its result, and a run killed after a checkpoint and resumed ends identical to an uninterrupted one.

The budget is tiny (300 agent steps, updates from step 100, batch 32, 1 update per step as in Table 6). Frames stay at
the protocol's 64x64 grayscale: the image size is not a run-config field (it is a `make_dmc_env` option)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("dm_control")

ARGS = ["--env", "dmc:cartpole-swingup", "--preset", "plastic", "--steps", "300", "--set", "sac.learning_starts=100",
        "--set", "sac.batch_size=32", "--set", "replay_ratio=1", "--set", "log_every=50", "--eval-episodes", "1",
        "--checkpoint-every", "100", "--no-progress"]
TIMING_KEYS = {"time_s", "charts/SPS", "charts/updates_per_s"}


def train_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "plastic", "train", *args]


def environment() -> dict:
    return {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "OMP_NUM_THREADS": "1"}


def train(*args: str) -> str:
    result = subprocess.run(train_command(*args), env=environment(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout


def metrics_without_timings(run_dir: Path) -> list[dict]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in line.items() if k not in TIMING_KEYS} for line in lines]


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("dmc") / "whole"
    (run_dir.parent / "stdout.txt").write_text(train(*ARGS, "--run-dir", str(run_dir)))
    return run_dir


def test_tiny_plastic_run_finishes_and_writes_result(whole_run):
    result = json.loads((whole_run / "result.json").read_text())
    assert result["env"] == "dmc:cartpole-swingup" and result["methods"] == ["ln", "sam", "crelu", "reset"]
    assert result["updates"] == 201  # one update per step from step 100 to 300
    assert len(result["eval_returns"]) == 1 and 0 <= result["eval_returns"][0] <= 1000  # DMC rewards lie in [0, 1]
    assert result["env_steps_per_s"] > 0
    # cartpole-swingup repeats each action 8 times (PlaNet's table): 300 agent steps are 2,400 environment steps.
    assert (result["steps"], result["env_steps"]) == (300, 2400)
    config = json.loads((whole_run / "config.json").read_text())
    assert (config["steps"], config["env_steps"], config["dmc"]["action_repeat"]) == (300, 2400, 8)
    assert (config["eval_episodes"], config["crelu"]["placement"]) == (1, "all")
    assert "steps 300 (env steps 2,400, action repeat 8)" in (whole_run.parent / "stdout.txt").read_text()
    losses = [line for line in metrics_without_timings(whole_run) if "losses/critic_loss" in line]
    assert [line["step"] for line in losses] == [100, 150, 200, 250, 300]
    assert all({"losses/actor_loss", "losses/temperature_loss", "charts/temperature", "charts/entropy"} <= set(line)
               for line in losses)


@pytest.mark.slow
def test_resume_after_kill_equals_uninterrupted(whole_run, tmp_path):
    # Killed (SIGKILL: no chance to save) once the step-200 checkpoint exists, then resumed from it.
    interrupted = tmp_path / "interrupted"
    process = subprocess.Popen(train_command(*ARGS, "--run-dir", str(interrupted)), env=environment(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = interrupted / "checkpoints" / "step_000000200.pt"
    deadline = time.monotonic() + 300
    while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert checkpoint.exists() and not (interrupted / "result.json").exists()
    train("--resume", str(interrupted), "--no-progress")

    result = json.loads((whole_run / "result.json").read_text())
    resumed = json.loads((interrupted / "result.json").read_text())
    assert resumed["eval_returns"] == result["eval_returns"]
    assert resumed["updates"] == result["updates"]
    assert metrics_without_timings(interrupted) == metrics_without_timings(whole_run)
