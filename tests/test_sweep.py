"""`plastic sweep`: grid expansion, the manifest, and the sweep loop's promises (finish everything, skip what is
finished, resume what was interrupted, retry then fail a broken trial without stopping the others).

The loop is driven by a fake trainer (a small script that writes metrics, checkpoints and result.json like
`plastic train`) so that these tests take seconds; `test_sweep_train.py` runs the real trainer.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from plastic.sweep.execution import LocalExecutor
from plastic.sweep.grid import Trial, env_groups, expand_grid, parse_envs, parse_int_list, parse_methods
from plastic.sweep.manifest import MANIFEST_NAME, Manifest
from plastic.sweep.progress import Progress, SweepLock, last_step
from plastic.sweep.runner import SweepOptions, run_sweep, train_command

FAKE_TRAINER = textwrap.dedent(
    """
    # A stand-in for `plastic train`: CHUNKS chunks of steps, a metrics line and a checkpoint after each,
    # result.json at the end. Behaviour per trial comes from the method name: "crash" always raises, "flaky" raises
    # on its first attempt, "usage" exits 2, "killworker" kills its parent (the Ray worker) on its first attempt.
    import json, os, signal, sys, time
    from pathlib import Path
    run_dir, resume, method, seed, steps, journal, pause = sys.argv[1:8]
    run_dir, steps, pause = Path(run_dir), int(steps), float(pause)
    trial = f"{method}/seed{seed}"
    first_attempt = not any(line.split()[0] == trial for line in Path(journal).read_text().splitlines()) \\
        if Path(journal).exists() else True
    with open(journal, "a") as file:
        file.write(f"{trial} {'resume' if resume == '1' else 'start'}\\n")
    if method == "crash" or (method == "flaky" and first_attempt):
        raise RuntimeError(f"boom in {trial}")
    if method == "usage":
        print("plastic train: error: unknown preset 'usage'", file=sys.stderr)
        sys.exit(2)
    if method == "killworker" and first_attempt:
        os.kill(os.getppid(), signal.SIGKILL)
        time.sleep(30)
    checkpoints = run_dir / "checkpoints"
    start = 0
    if resume == "1":
        start = max(int(path.stem.split("_")[1]) for path in checkpoints.glob("step_*.pt"))
    else:
        checkpoints.mkdir(parents=True)
        (run_dir / "config.json").write_text(json.dumps({"method": method, "seed": int(seed)}))
    chunk = steps // 4
    for step in range(start + chunk, steps + 1, chunk):
        time.sleep(pause)
        with open(run_dir / "metrics.jsonl", "a") as file:
            file.write(json.dumps({"step": step, "time_s": 0.0}) + "\\n")
        (checkpoints / f"step_{step:09d}.pt").write_text(str(step))
    result = {"env": "minatar:breakout", "method": method, "seed": int(seed), "steps": steps, "eval_mean": 1.0,
              "replay_ratio": 2}
    (run_dir / "result.json").write_text(json.dumps(result))
    """
)


class FakeTrainer:
    """A trial command that runs the fake trainer; `launches()` lists every launch as 'method/seedS start|resume'.
    A plain class (not a closure) so that a sweep driven from another process can use it too."""

    def __init__(self, directory, pause: float = 0.0):
        self.directory, self.pause = Path(directory), pause
        self.journal = self.directory / "journal.txt"
        (self.directory / "fake_train.py").write_text(FAKE_TRAINER)

    def __call__(self, trial, run_dir, resume, train_args, options):
        return [str(self.directory / "fake_train.py"), str(run_dir), "1" if resume else "0", trial.method,
                str(trial.seed), str(trial.steps), str(self.journal), str(self.pause)]  # fmt: skip

    def launches(self) -> list[str]:
        return self.journal.read_text().splitlines() if self.journal.exists() else []


@pytest.fixture
def fake(tmp_path):
    return FakeTrainer(tmp_path)


def new_manifest(directory, methods, seeds, steps=400):
    grid = {"envs": ["minatar:breakout"], "methods": methods, "replay_ratios": [2], "seeds": seeds, "steps": steps}
    return Manifest.create(directory, grid, train_args=[], options={})


def local(max_concurrent=2):
    return lambda options: LocalExecutor(max_concurrent)


QUIET = dict(progress_every=60.0)


# ------------------------------------------------------------------------------------------------------ the grid
def test_int_lists_take_ranges_and_lists():
    assert parse_int_list("0-4", "--seeds") == [0, 1, 2, 3, 4]
    assert parse_int_list("2,4,8", "--replay-ratio") == [2, 4, 8]
    assert parse_int_list("0-2,7,1", "--seeds") == [0, 1, 2, 7]
    for bad in ("3-1", "x", "1.5", "-2"):
        with pytest.raises(ValueError, match="--seeds"):
            parse_int_list(bad, "--seeds")


def test_env_groups_are_the_papers_benchmarks():
    groups = env_groups()
    assert len(groups["atari100k"]) == 26 and "atari:Pong" in groups["atari100k"]
    assert len(groups["dmc-medium"]) == 11 and "dmc:quadruped-run" in groups["dmc-medium"]
    assert groups["minatar"] == ("minatar:asterix", "minatar:breakout", "minatar:freeway", "minatar:seaquest",
                                 "minatar:space_invaders")  # fmt: skip
    assert parse_envs("minatar:breakout,atari:Pong,minatar") == ["minatar:breakout", "atari:Pong", "minatar:asterix",
                                                                   "minatar:freeway", "minatar:seaquest",
                                                                   "minatar:space_invaders"]  # fmt: skip
    with pytest.raises(ValueError, match="unknown env group or env id 'atari100'"):
        parse_envs("atari100")
    with pytest.raises(ValueError, match="unknown method 'pla stic'"):
        parse_methods("base,pla stic")


def test_grid_is_the_cross_product_with_seeds_varying_slowest():
    trials = expand_grid(["minatar:breakout", "atari:Pong"], ["base", "plastic"], [2, 4], [0, 1], steps=100)
    assert len(trials) == 2 * 2 * 2 * 2
    assert len({trial.id for trial in trials}) == 16
    assert [trial.seed for trial in trials] == [0] * 8 + [1] * 8
    assert trials[0] == Trial("minatar:breakout", "base", 2, 0, 100)
    assert trials[0].id == "minatar_breakout/base/rr2/seed0"
    with pytest.raises(ValueError, match="empty grid: --methods"):
        expand_grid(["minatar:breakout"], [], [2], [0], steps=100)


def test_train_command_starts_fresh_or_resumes():
    options = SweepOptions(cpus_per_trial=2, gpus_per_trial=0.33)
    trial = Trial("atari:Pong", "base+sam+crelu", 4, 3, 100000)
    assert train_command(trial, Path("/s/runs/x"), False, ["--set", "a=1"], options) == [
        "-m", "plastic", "train", "--env", "atari:Pong", "--preset", "base", "--methods", "sam,crelu",
        "--replay-ratio", "4", "--seed", "3", "--steps", "100000", "--run-dir", "/s/runs/x",
        "--device", "cuda", "--threads", "2", "--no-progress", "--set", "a=1",
    ]  # fmt: skip
    assert train_command(trial, Path("/s/runs/x"), True, ["--set", "a=1"], SweepOptions()) == [
        "-m", "plastic", "train", "--resume", "/s/runs/x", "--device", "cpu", "--threads", "1", "--no-progress",
    ]  # fmt: skip


def test_an_env_steps_trial_passes_its_budget_to_the_run_and_round_trips(tmp_path):
    trial = Trial("dmc:cheetah-run", "base", 1, 0, 500_000, env_steps=2_000_000)
    command = train_command(trial, Path("/s/runs/x"), False, [], SweepOptions())
    assert command[command.index("--seed") + 2:command.index("--run-dir")] == ["--env-steps", "2000000"]
    assert "--steps" not in command
    grid = {"envs": ["dmc:cheetah-run"], "methods": ["base"], "replay_ratios": [1], "seeds": [0],
            "steps": None, "env_steps": 2_000_000}  # fmt: skip
    Manifest.create(tmp_path / "sweep", grid, [], {}, steps={"dmc:cheetah-run": 500_000}).save()
    assert [record.trial for record in Manifest.load(tmp_path / "sweep").trials.values()] == [trial]
    # A manifest written before trials had env_steps still loads (the run got --steps).
    data = json.loads((tmp_path / "sweep" / MANIFEST_NAME).read_text())
    del data["trials"][0]["env_steps"]
    (tmp_path / "sweep" / MANIFEST_NAME).write_text(json.dumps(data))
    assert next(iter(Manifest.load(tmp_path / "sweep").trials.values())).trial.env_steps is None


def test_options_reject_impossible_resources():
    with pytest.raises(ValueError, match="--gpus-per-trial"):
        SweepOptions(gpus_per_trial=1.5)
    with pytest.raises(ValueError, match="--cpus-per-trial"):
        SweepOptions(cpus_per_trial=0)
    with pytest.raises(ValueError, match="--address 'host'"):
        SweepOptions(address="host")


# -------------------------------------------------------------------------------------------------- the manifest
def test_manifest_round_trips_and_leaves_no_temporary_files(tmp_path):
    manifest = new_manifest(tmp_path / "sweep", ["base", "plastic"], [0, 1])
    manifest.trials["minatar_breakout/plastic/rr2/seed1"].status = "failed"
    manifest.save()
    assert sorted(path.name for path in (tmp_path / "sweep").iterdir()) == [MANIFEST_NAME]
    loaded = Manifest.load(tmp_path / "sweep")
    assert loaded.to_dict() == manifest.to_dict()
    data = json.loads((tmp_path / "sweep" / MANIFEST_NAME).read_text())
    assert data["counts"] == {"pending": 3, "running": 0, "finished": 0, "failed": 1}
    assert data["versions"]["plastic-rl"] is not None and data["versions"]["python"]
    assert data["trials"][0]["run_dir"] == "runs/minatar_breakout/base/rr2/seed0"


def test_last_step_reads_the_newest_complete_line(tmp_path):
    assert last_step(tmp_path) == 0
    lines = [json.dumps({"step": step, "time_s": 0.1, "probes/x": [0.5] * 2000}) for step in (100, 200, 300)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + '\n{"step": 40')  # a line still being written
    assert last_step(tmp_path) == 300


# -------------------------------------------------------------------------------------------- running a sweep
def test_sweep_runs_every_trial_and_a_rerun_recomputes_nothing(tmp_path, fake):
    manifest = new_manifest(tmp_path / "sweep", ["base", "plastic"], [0, 1])
    run_sweep(manifest, SweepOptions(**QUIET), command=fake, executor_factory=local(), stream=sys.stdout)
    assert sorted(fake.launches()) == ["base/seed0 start", "base/seed1 start", "plastic/seed0 start",
                                       "plastic/seed1 start"]  # fmt: skip
    results = sorted((tmp_path / "sweep" / "runs").rglob("result.json"))
    assert len(results) == 4
    stamps = [path.stat().st_mtime_ns for path in results]
    saved = Manifest.load(tmp_path / "sweep")
    assert saved.counts() == {"pending": 0, "running": 0, "finished": 4, "failed": 0}
    assert all(record.attempts == 1 for record in saved.trials.values())

    run_sweep(Manifest.load(tmp_path / "sweep"), SweepOptions(**QUIET), command=fake, executor_factory=local())
    assert len(fake.launches()) == 4  # nothing launched again
    assert [path.stat().st_mtime_ns for path in results] == stamps  # nothing overwritten


def test_a_sweep_exported_with_its_manifest_continues_elsewhere_training_only_the_missing_trials(tmp_path, fake):
    import importlib.util
    import shutil

    script = Path(__file__).resolve().parents[1] / "scripts" / "export_results.py"
    spec = importlib.util.spec_from_file_location("export_results", script)
    export_results = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(export_results)
    sweep = tmp_path / "sweep"
    # "flaky" fails its first attempt; with no retries the first machine finishes only base.
    run_sweep(new_manifest(sweep, ["base", "flaky"], [0]), SweepOptions(retries=0, **QUIET), command=fake,
              executor_factory=local())
    exported = tmp_path / "results" / "wave"
    for result in (sweep / "runs").rglob("result.json"):
        export_results.export_run(result.parent, exported / "runs")
    manifest = export_results.sweep_manifest([sweep / "runs"])
    assert manifest == (sweep / MANIFEST_NAME).resolve()
    shutil.copy2(manifest, exported / MANIFEST_NAME)
    assert export_results.sweep_manifest([tmp_path / "results"]) is None  # not a sweep's folder

    elsewhere = tmp_path / "another-machine" / "wave"
    shutil.copytree(exported, elsewhere)
    finished = elsewhere / "runs/minatar_breakout/base/rr2/seed0/result.json"
    stamp = finished.stat().st_mtime_ns
    run_sweep(Manifest.load(elsewhere), SweepOptions(**QUIET), command=fake, executor_factory=local())
    first_machine, second_machine = fake.launches()[:2], fake.launches()[2:]
    assert sorted(first_machine) == ["base/seed0 start", "flaky/seed0 start"]
    assert second_machine == ["flaky/seed0 start"]
    assert finished.stat().st_mtime_ns == stamp
    assert Manifest.load(elsewhere).counts() == {"pending": 0, "running": 0, "finished": 2, "failed": 0}


def test_interrupted_trials_resume_and_empty_starts_begin_again(tmp_path, fake):
    sweep = tmp_path / "sweep"
    manifest = new_manifest(sweep, ["base"], [0, 1, 2])
    # seed0 finished; seed1 was interrupted after a checkpoint; seed2 died before saving anything.
    run_sweep(new_manifest(sweep, ["base"], [0]), SweepOptions(**QUIET), command=fake, executor_factory=local())
    interrupted = sweep / "runs/minatar_breakout/base/rr2/seed1"
    (interrupted / "checkpoints").mkdir(parents=True)
    (interrupted / "checkpoints/step_000000200.pt").write_text("200")
    (interrupted / "config.json").write_text("{}")
    (sweep / "runs/minatar_breakout/base/rr2/seed2").mkdir(parents=True)
    (sweep / "runs/minatar_breakout/base/rr2/seed2/config.json").write_text("{}")

    run_sweep(manifest, SweepOptions(**QUIET), command=fake, executor_factory=local())
    launches = fake.launches()  # the two trials of the second sweep run concurrently, in either order
    assert launches[:1] == ["base/seed0 start"]
    assert sorted(launches[1:]) == ["base/seed1 resume", "base/seed2 start"]
    steps = [json.loads(line)["step"] for line in (interrupted / "metrics.jsonl").read_text().splitlines()]
    assert steps == [300, 400]  # continued from the checkpoint at 200
    assert manifest.counts()["finished"] == 3


def test_a_trial_that_raises_is_retried_then_failed_and_the_others_finish(tmp_path, fake, capsys):
    manifest = new_manifest(tmp_path / "sweep", ["base", "crash", "flaky"], [0])
    run_sweep(manifest, SweepOptions(retries=2, **QUIET), command=fake, executor_factory=local())
    launches = fake.launches()
    assert launches.count("crash/seed0 start") == 3  # 1 + 2 retries
    assert launches.count("flaky/seed0 start") == 2  # failed once, then finished
    statuses = {record.trial.method: (record.status, record.attempts) for record in manifest.trials.values()}
    assert statuses == {"base": ("finished", 1), "crash": ("failed", 3), "flaky": ("finished", 2)}
    error = manifest.trials["minatar_breakout/crash/rr2/seed0"].error
    assert "RuntimeError: boom in crash/seed0" in error and "logs/minatar_breakout/crash/rr2/seed0.log" in error
    assert "crash/rr2/seed0 FAILED after 3 attempt(s)" in capsys.readouterr().err
    # The log keeps every attempt's output, the failed ones included.
    log = (tmp_path / "sweep/logs/minatar_breakout/crash/rr2/seed0.log").read_text()
    assert log.count("RuntimeError: boom in crash/seed0") == 3

    # Re-running the command gives a failed trial a new round of attempts, and leaves the finished ones alone.
    run_sweep(Manifest.load(tmp_path / "sweep"), SweepOptions(retries=0, **QUIET), command=fake,
              executor_factory=local())  # fmt: skip
    assert fake.launches()[len(launches):] == ["crash/seed0 start"]


def test_a_user_error_is_not_retried(tmp_path, fake):
    manifest = new_manifest(tmp_path / "sweep", ["usage"], [0])
    run_sweep(manifest, SweepOptions(retries=3, **QUIET), command=fake, executor_factory=local())
    record = manifest.trials["minatar_breakout/usage/rr2/seed0"]
    assert (record.status, record.attempts) == ("failed", 1)
    assert "exit status 2: plastic train: error: unknown preset 'usage'" in record.error


def test_one_sweep_at_a_time_per_directory(tmp_path):
    with SweepLock(tmp_path):
        with pytest.raises(ValueError, match="another `plastic sweep` is running"):
            SweepLock(tmp_path)
    with SweepLock(tmp_path):  # released on exit
        pass


def test_progress_counts_trials_and_steps(tmp_path):
    manifest = new_manifest(tmp_path / "sweep", ["base"], [0, 1], steps=400)
    records = list(manifest.trials.values())
    records[0].status = "finished"
    records[1].status = "running"
    progress = Progress(manifest, sys.stdout)
    run_dir = manifest.run_dir(records[1].trial)
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text(json.dumps({"step": 100}) + "\n")
    assert progress.steps_done() == 400 + 100
    assert progress.line().startswith("sweep: 1/2 finished, 1 running, 0 failed, 0 pending | ")
    assert "ETA" in progress.line()


def test_progress_rate_counts_only_steps_made_since_the_sweep_started(tmp_path):
    """A trial resumed from its checkpoint goes back below the step the sweep first saw (its metrics.jsonl is cut
    back): the rate counts what it computes from its lowest step on, never a negative rate."""
    manifest = new_manifest(tmp_path / "sweep", ["base"], [0, 1], steps=400)
    resumed, fresh = manifest.trials.values()
    resumed.status = "pending"
    run_dir = manifest.run_dir(resumed.trial)
    run_dir.mkdir(parents=True)
    metrics = run_dir / "metrics.jsonl"
    metrics.write_text(json.dumps({"step": 300}) + "\n")
    now = [100.0]
    progress = Progress(manifest, sys.stdout, clock=lambda: now[0])
    metrics.write_text(json.dumps({"step": 200}) + "\n")  # resumed from the checkpoint at 200
    now[0] = 110.0
    assert " | 0 steps/s | " in progress.line()  # was (200 - 300) / 10 = -10
    metrics.write_text(json.dumps({"step": 350}) + "\n")
    fresh.status = "finished"  # 0 -> 400 during this command
    now[0] = 125.0
    # (350 - 200) + (400 - 0) = 550 steps in 25 s = 22/s; 400 - 350 = 50 steps left: 50 / 22 s = 0:00:02
    assert progress.line() == ("sweep: 1/2 finished, 0 running, 0 failed, 1 pending | 22 steps/s | "
                               "elapsed 0:00:25 | ETA 0:00:02")


def test_killing_the_sweep_then_rerunning_finishes_only_the_missing_trials(tmp_path, fake):
    """SIGKILL the sweep mid-way: finished trials stay finished, running ones die with it (no orphaned trainer keeps
    writing), and the same sweep run again resumes the interrupted ones from their checkpoints."""
    sweep = tmp_path / "sweep"
    new_manifest(sweep, ["base", "plastic"], [0, 1, 2]).save()
    driver = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); from test_sweep import *; "
        f"run_sweep(Manifest.load(Path({str(sweep)!r})), SweepOptions(**QUIET), "
        f"command=FakeTrainer({str(tmp_path)!r}, pause=0.3), executor_factory=local())"
    )
    process = subprocess.Popen([sys.executable, "-c", driver], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(list(sweep.rglob("result.json"))) < 2 or not partial_runs(sweep):
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = {path.parent for path in sweep.rglob("result.json")}
    partial = partial_runs(sweep)
    time.sleep(0.2)  # let a trainer that was mid-write finish its line, if it were still alive
    sizes = {run_dir: (run_dir / "metrics.jsonl").stat().st_size for run_dir in partial}
    time.sleep(1.0)  # an orphaned trainer would write another chunk in this time
    assert {run_dir: (run_dir / "metrics.jsonl").stat().st_size for run_dir in partial} == sizes
    assert partial_runs(sweep) == partial and 2 <= len(finished) < 6
    launched_before = len(fake.launches())

    run_sweep(Manifest.load(sweep), SweepOptions(**QUIET), command=fake, executor_factory=local())
    relaunched = fake.launches()[launched_before:]
    name = lambda run_dir: f"{run_dir.parts[-3]}/{run_dir.parts[-1]}"  # noqa: E731  method/seedS
    assert sorted(line for line in relaunched if line.endswith("resume")) == sorted(
        f"{name(run_dir)} resume" for run_dir in partial
    )
    assert not {line.split()[0] for line in relaunched} & {name(run_dir) for run_dir in finished}
    assert len(relaunched) == 6 - len(finished)
    assert Manifest.load(sweep).counts()["finished"] == 6


def partial_runs(sweep: Path) -> set[Path]:
    """Run directories with a checkpoint but no result."""
    finished = {path.parent for path in sweep.rglob("result.json")}
    return {path.parent.parent for path in sweep.rglob("step_*.pt")} - finished
