"""`plastic train` / `plastic eval` end to end on MinAtar with a tiny budget: files, determinism, exact resume after
SIGKILL and SIGTERM, fallback from a damaged checkpoint, and one-line errors for bad input."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from plastic.cli import main
from plastic.training.checkpoint import checkpoint_paths, load_checkpoint, save_checkpoint

STEPS = 400
CHECKPOINT_EVERY = 100
TINY = [
    "--env", "minatar:breakout", "--preset", "plastic", "--seed", "0", "--steps", str(STEPS), "--replay-ratio", "2",
    "--checkpoint-every", str(CHECKPOINT_EVERY), "--eval-episodes", "2", "--threads", "1", "--no-progress",
    "--set", "rainbow.learning_starts=100", "--set", "rainbow.batch_size=8", "--set", "rainbow.buffer_size=1000",
    # Resets and probes before and after the checkpoints, so that resume must restore their schedules and the probes'
    # generators too (a probe at 300 after resuming from 200 continues the draws of the probes at 100 and 200).
    "--set", "reset.interval=150", "--set", "log_every=50",
    "--set", "probe.every=100", "--set", "probe.batch_size=16", "--set", "probe.hessian_batch_size=8",
    "--set", "probe.hessian_iters=3",
]
RESULT_KEYS = {"env", "preset", "seed", "eval_returns", "eval_mean", "hns", "random_score", "wall_time_s",
               "updates_per_s", "env_steps_per_s"}
TIME_LIKE = {"time_s", "charts/SPS", "charts/updates_per_s"}


def metrics_without_time(run_dir: Path) -> list[str]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    # Compared as canonical JSON text, so that NaN equals NaN.
    return [json.dumps({k: v for k, v in json.loads(line).items() if k not in TIME_LIKE}, sort_keys=True)
            for line in lines]


def result(run_dir: Path) -> dict:
    return json.loads((run_dir / "result.json").read_text())


def plastic(*args, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "default"}
    return subprocess.run([sys.executable, "-m", "plastic", *args], capture_output=True, text=True, env=env,
                          timeout=300, **kwargs)


def start(*args) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "plastic", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, f"run ended before {path.name} appeared: {process.communicate()}"
        assert time.monotonic() < deadline, f"{path} did not appear in {timeout} s"
        time.sleep(0.02)


def checkpoint_file(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step_{step:09d}.pt"


def snapshot(run_dir: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(run_dir)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(run_dir.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """One uninterrupted run, shared by the tests that compare against it."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    assert main(["train", *TINY, "--run-dir", str(run_dir)]) == 0
    return run_dir


# --------------------------------------------------------------------------------------------- a run
def test_a_tiny_run_writes_every_file(reference):
    assert (reference / "config.json").is_file()
    assert (reference / "metrics.jsonl").is_file()
    assert any(p.name.startswith("events.out.tfevents") for p in (reference / "tb").iterdir())
    assert [p.name for p in checkpoint_paths(reference)] == ["step_000000400.pt"]  # finished: the final one only
    out = result(reference)
    assert RESULT_KEYS <= set(out)
    assert (out["env"], out["preset"], out["seed"], out["steps"]) == ("minatar:breakout", "plastic", 0, STEPS)
    assert out["methods"] == ["ln", "sam", "crelu", "reset"]
    assert len(out["eval_returns"]) == 2
    assert out["eval_mean"] == pytest.approx(sum(out["eval_returns"]) / 2)
    assert out["hns"] is None  # no human reference scores on MinAtar
    # The random policy's score under the same protocol (2 episodes, the final evaluation's env seed) sits beside it.
    from plastic.training.evaluation import random_policy_score
    from plastic.training.seeding import RandomStreams

    _, env_seed = RandomStreams(0).evaluation(0)
    assert out["random_score"] == random_policy_score("minatar:breakout", 3, episodes=2, seed=env_seed)
    assert out["updates"] == 2 * (STEPS - 100 + 1)  # replay ratio 2 from step 100 (learning starts) on
    assert out["wall_time_s"] > 0 and out["updates_per_s"] > 0 and out["env_steps_per_s"] > 0
    config = json.loads((reference / "config.json").read_text())
    assert (config["reset"]["interval"], config["sam"]["rho"], config["rainbow"]["hidden"]) == (150, 0.1, 128)


def test_metrics_log_losses_resets_probes_and_the_final_evaluation(reference):
    records = [json.loads(line) for line in (reference / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records]
    assert steps == sorted(steps)
    keys = set().union(*records)
    assert {"charts/episodic_return", "losses/td_loss", "charts/SPS", "charts/updates_per_s",
            "probes/hessian_max_eigenvalue"} <= keys
    resets = [r["plasticity/resets"] for r in records if "plasticity/resets" in r]
    assert resets == [1.0, 2.0, 3.0, 4.0]  # at updates 150, 300, 450, 600 of 602
    assert [r["step"] for r in records if "probes/hessian_max_eigenvalue" in r] == [100, 200, 300, 400]
    assert records[-1]["eval/return_mean"] == result(reference)["eval_mean"]


def test_same_seed_gives_identical_results(reference, tmp_path):
    assert main(["train", *TINY, "--out", str(tmp_path)]) == 0
    run_dir = tmp_path / "minatar-breakout_plastic_rr2_s0"  # --out names the run after env, method, RR and seed
    assert result(run_dir)["eval_returns"] == result(reference)["eval_returns"]
    assert metrics_without_time(run_dir) == metrics_without_time(reference)
    final, again = load_checkpoint(checkpoint_paths(reference)[-1]), load_checkpoint(checkpoint_paths(run_dir)[-1])
    for name, tensor in final["agent"]["online"].items():
        assert tensor.equal(again["agent"]["online"][name]), name


def without_probes(lines: list[str]) -> list[str]:
    return [json.dumps({k: v for k, v in json.loads(line).items() if not k.startswith("probes/")}, sort_keys=True)
            for line in lines]


def test_probes_draw_nothing_from_the_training_runs_streams(reference, tmp_path):
    # The probes sample their own transitions and power-iteration start (training/seeding.py): with probes off the
    # run learns exactly the same.
    run_dir = tmp_path / "no-probes"
    assert main(["train", *TINY, "--run-dir", str(run_dir), "--set", "probe.every=0"]) == 0
    assert result(run_dir)["eval_returns"] == result(reference)["eval_returns"]
    assert without_probes(metrics_without_time(run_dir)) == without_probes(metrics_without_time(reference))
    assert "probes/hessian_max_eigenvalue" not in (run_dir / "metrics.jsonl").read_text()


def test_sigkill_then_resume_equals_the_uninterrupted_run(reference, tmp_path):
    run_dir = tmp_path / "killed"
    process = start("train", *TINY, "--run-dir", str(run_dir))
    try:
        wait_for(checkpoint_file(run_dir, 200), process)
        time.sleep(0.3)  # somewhere between two checkpoints, after some lines were logged past the last one
        assert process.poll() is None, "the run finished before it could be killed"
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=60) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()
    assert not (run_dir / "result.json").exists()

    resumed = plastic("train", "--resume", str(run_dir), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout
    assert result(run_dir)["eval_returns"] == result(reference)["eval_returns"]
    assert result(run_dir)["updates"] == result(reference)["updates"]
    assert metrics_without_time(run_dir) == metrics_without_time(reference)  # probes after the resume included


def test_a_checkpoint_without_hook_state_still_resumes(reference, kept_reference, tmp_path):
    """Checkpoints written before hooks had state (no "hooks" entry) load; the probes then start fresh streams, and
    the training itself still continues exactly."""
    run_dir = tmp_path / "old"
    shutil.copytree(kept_reference, run_dir)
    (run_dir / "result.json").unlink()
    state = load_checkpoint(checkpoint_file(run_dir, 300))
    assert set(state["hooks"]) == {"ResetHook", "ProbeHook"}
    del state["hooks"]
    for path in checkpoint_paths(run_dir):
        path.unlink()
    save_checkpoint(run_dir, 300, state, keep=2)
    assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 0
    assert result(run_dir)["eval_returns"] == result(reference)["eval_returns"]
    assert without_probes(metrics_without_time(run_dir)) == without_probes(metrics_without_time(reference))


@pytest.mark.slow  # ~25 s on 2 loaded cores; the SIGKILL test above keeps resume in the default run
def test_sigterm_checkpoints_and_exits_143_and_a_damaged_newest_checkpoint_falls_back(reference, tmp_path):
    run_dir = tmp_path / "terminated"
    process = start("train", *TINY, "--run-dir", str(run_dir))
    try:
        wait_for(checkpoint_file(run_dir, 200), process)
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143
    assert "SIGTERM" in stderr and f"--resume {run_dir}" in stderr
    assert "Traceback" not in stderr
    assert not (run_dir / "result.json").exists()
    newest = checkpoint_paths(run_dir)[-1]
    stopped_at = load_checkpoint(newest)["step"]
    assert 200 < stopped_at < STEPS and stopped_at % CHECKPOINT_EVERY != 0  # written at the signal, not on schedule

    # Damage the newest file: resume warns, uses the previous checkpoint (step 200), and still ends identical.
    newest.write_bytes(newest.read_bytes()[:1000])
    resumed = plastic("train", "--resume", str(run_dir), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr
    assert newest.name in resumed.stderr and "unreadable" in resumed.stderr
    assert "step_000000200.pt" in resumed.stdout
    assert result(run_dir)["eval_returns"] == result(reference)["eval_returns"]
    assert metrics_without_time(run_dir) == metrics_without_time(reference)


def test_eval_evaluates_the_latest_checkpoint(reference, capsys):
    assert main(["eval", str(reference), "--eval-episodes", "3"]) == 0
    out = json.loads((reference / "eval_step400.json").read_text())
    assert (out["env"], out["step"], out["checkpoint"]) == ("minatar:breakout", STEPS, "step_000000400.pt")
    assert len(out["eval_returns"]) == 3
    assert out["eval_mean"] == pytest.approx(sum(out["eval_returns"]) / 3)
    assert "eval_step400.json" in capsys.readouterr().out
    # With the run's seed and episode count it repeats the run's final evaluation (the same evaluation stream).
    assert main(["eval", str(reference), "--eval-episodes", "2"]) == 0
    again = json.loads((reference / "eval_step400.json").read_text())
    assert again["eval_returns"] == result(reference)["eval_returns"]
    (reference / "eval_step400.json").unlink()  # leave the shared run as the other tests expect it


@pytest.fixture(scope="module")
def kept_reference(tmp_path_factory) -> Path:
    """The reference run again, with `--keep-replay`: its last two checkpoints keep the replay buffer."""
    run_dir = tmp_path_factory.mktemp("kept") / "run"
    assert main(["train", *TINY, "--run-dir", str(run_dir), "--keep-replay"]) == 0
    return run_dir


def test_a_finished_run_drops_its_replay_unless_keep_replay(reference, kept_reference, tmp_path, capsys):
    final = load_checkpoint(checkpoint_paths(reference)[-1])
    assert final["buffer"] is None and final["step"] == STEPS  # eval and fine-tuning read only the agent
    kept_dir = kept_reference
    assert json.loads((kept_dir / "config.json").read_text())["keep_replay"] is True
    assert [p.name for p in checkpoint_paths(kept_dir)] == ["step_000000300.pt", "step_000000400.pt"]  # keep 2
    kept = load_checkpoint(checkpoint_paths(kept_dir)[-1])
    assert kept["buffer"]["_added"] == STEPS  # every transition of the run
    assert kept["buffer"]["_frames"].shape[0] == kept["buffer"]["_frames_written"] > STEPS  # + one per episode start
    for name, tensor in final["agent"]["online"].items():  # dropping the replay loses nothing of the agent
        assert tensor.equal(kept["agent"]["online"][name]), name
    assert checkpoint_paths(reference)[-1].stat().st_size < checkpoint_paths(kept_dir)[-1].stat().st_size
    assert not list((reference / "checkpoints").glob(".*.tmp"))  # written atomically, no temporary left

    # A checkpoint without its replay cannot be continued: one line naming --keep-replay (if result.json is gone).
    stripped = tmp_path / "stripped"
    stripped.mkdir()
    for name in ("config.json", "metrics.jsonl"):
        (stripped / name).write_bytes((reference / name).read_bytes())
    (stripped / "checkpoints").mkdir()
    (stripped / "checkpoints" / "step_000000400.pt").write_bytes(checkpoint_paths(reference)[-1].read_bytes())
    capsys.readouterr()
    assert main(["train", "--resume", str(stripped), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no replay buffer" in err and "--keep-replay" in err, err


def test_importance_exponent_anneals_from_the_first_update_to_the_last_step(tmp_path, monkeypatch):
    from plastic.replay import ReplayBuffer

    exponents = []
    sample = ReplayBuffer.sample

    def recording_sample(self, batch_size, importance_exponent=0.4):
        exponents.append(importance_exponent)
        return sample(self, batch_size, importance_exponent)

    monkeypatch.setattr(ReplayBuffer, "sample", recording_sample)
    assert main(["train", "--env", "minatar:breakout", "--steps", "120", "--replay-ratio", "2", "--eval-episodes", "1",
                 "--threads", "1", "--no-progress", "--run-dir", str(tmp_path / "run"),
                 "--set", "rainbow.learning_starts=100", "--set", "rainbow.batch_size=8"]) == 0
    # Updates at steps 100..120, two per step: beta = 0.4 + 0.6 (step - 100) / 20, from 0.4 to 1.
    assert len(exponents) == 2 * 21
    assert exponents[:2] == [0.4, 0.4]
    assert exponents[-1] == pytest.approx(1.0, abs=1e-12)
    assert exponents[::2] == pytest.approx(0.4 + 0.6 * np.arange(21) / 20, abs=1e-12)


# --------------------------------------------------------------------------------------------- bad input
def assert_one_line_error(completed: subprocess.CompletedProcess, *fragments: str) -> None:
    assert completed.returncode == 2, completed.stderr
    assert "Traceback" not in completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_bad_input_exits_2_with_one_line(tmp_path):
    common = ["--out", str(tmp_path / "runs"), "--no-progress"]
    assert_one_line_error(plastic("train", "--env", "minatar:brekout", *common), "minatar:brekout", "breakout",
                          "space_invaders")
    assert_one_line_error(plastic("train", "--env", "atari:Pongg", *common), "atari:Pongg", "Pong", "Seaquest")
    assert_one_line_error(plastic("train", "--env", "minatar:breakout", "--replay-ratio", "0", *common),
                          "replay_ratio")
    assert_one_line_error(plastic("train", "--resume", str(tmp_path / "missing")), "missing", "not a run directory")
    assert_one_line_error(plastic("eval", str(tmp_path / "missing")), "missing", "not a run directory")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args, fragments", [
    (["--preset", "plastik"], ["plastik", "plastic-dagger"]),
    (["--set", "sam.rhoo=0.1"], ["sam.rhoo", "rho"]),
    (["--set", "steps=many"], ["steps", "many"]),
    (["--replay-ratio", "-2"], ["replay_ratio"]),
    (["--methods", "ln,sma"], ["sma"]),
])
def test_bad_config_is_a_one_line_error_in_process(args, fragments, tmp_path, capsys):
    assert main(["train", "--env", "minatar:breakout", "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert all(fragment in err for fragment in fragments)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_run_directory_is_refused_and_untouched(reference, capsys):
    before = snapshot(reference)
    assert main(["train", *TINY, "--run-dir", str(reference)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["train", "--resume", str(reference)]) == 2  # finished runs are not resumed
    assert "already finished" in capsys.readouterr().err
    assert snapshot(reference) == before


def unreadable_run(tmp_path: Path, reference: Path) -> Path:
    run_dir = tmp_path / "broken"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.json").write_bytes((reference / "config.json").read_bytes())
    (run_dir / "metrics.jsonl").write_text('{"step": 1}\n')
    checkpoint_file(run_dir, 100).write_bytes(b"garbage")
    return run_dir


def test_an_unreadable_checkpoint_exits_2_without_traceback_and_changes_nothing(reference, tmp_path):
    run_dir = unreadable_run(tmp_path, reference)
    before = snapshot(run_dir)
    for completed in (plastic("train", "--resume", str(run_dir), "--no-progress"), plastic("eval", str(run_dir))):
        assert completed.returncode == 2
        assert "Traceback" not in completed.stderr
        assert "no readable checkpoint" in completed.stderr.strip().splitlines()[-1]
    assert snapshot(run_dir) == before


def test_an_unreadable_checkpoint_is_a_single_stderr_line(reference, tmp_path):
    run_dir = unreadable_run(tmp_path, reference)
    assert_one_line_error(plastic("eval", str(run_dir)), "no readable checkpoint")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_cuda_without_a_gpu_is_a_one_line_error(tmp_path, capsys):
    assert main(["train", *TINY, "--run-dir", str(tmp_path / "run"), "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--device cuda" in err
    assert not (tmp_path / "run" / "config.json").exists()


FLUSH_PROBE = """
import sys, torch
from plastic import config as config_module
from plastic.training.loop import Trainer
config = config_module.build("minatar:breakout", "base", overrides={"threads": 2, "flush_denormal": sys.argv[1] == "1"})
Trainer(config, sys.argv[2], progress=False)._build(resume=False)
print(int(torch.count_nonzero(torch.full((1 << 22,), 1e-39) * 0.5)))
"""


@pytest.mark.parametrize("flush, survivors", [(True, 0), (False, 1 << 22)])
def test_flush_denormal_zeroes_subnormal_results_on_every_thread(flush, survivors, tmp_path):
    # A fresh process (the mode is process-wide) with two threads, so that the product is split over the pool:
    # 1e-39 * 0.5 is subnormal, so every element survives under IEEE gradual underflow and none under flushing.
    out = subprocess.run([sys.executable, "-c", FLUSH_PROBE, str(int(flush)), str(tmp_path)], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    assert int(out.strip().splitlines()[-1]) == survivors


def test_a_cpu_without_flush_to_zero_is_a_warning_not_an_error(tmp_path, monkeypatch):
    import torch

    from plastic import config as config_module
    from plastic.training.loop import Trainer

    monkeypatch.setattr(torch, "set_flush_denormal", lambda mode: False)  # what torch returns on such a CPU
    config = config_module.build("minatar:breakout", "base")
    with pytest.warns(UserWarning, match="cannot flush subnormal floats"):
        Trainer(config, tmp_path, progress=False)._build(resume=False)
