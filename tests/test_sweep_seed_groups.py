"""`plastic sweep --seeds-per-trial S`: the seeds of each (env, method, replay ratio) packed into trials of up to S
seeds, each one `plastic train --seeds` process, every seed in the run directory it has alone.

The sweep loop is driven by a fake group trainer (a script that writes what `plastic train --seeds` writes: each
member's checkpoints, `seed_group.json`, metrics and result.json) so that its tests take seconds; the last test runs
the real trainer end to end.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from test_sweep import QUIET, local

from plastic.cli import build_parser, main
from plastic.sweep.commands import _new_or_existing_manifest
from plastic.sweep.grid import Trial, expand_grid, pack_trials
from plastic.sweep.manifest import MANIFEST_NAME, Manifest
from plastic.sweep.runner import SweepOptions, attempt_command, group_train_command, run_dir_pattern, run_sweep, units

FAKE_GROUP_TRAINER = textwrap.dedent(
    """
    # A stand-in for `plastic train --seeds` (start: the members' run directories) and `plastic train --resume DIR`
    # (resume: the unfinished members of DIR's group). Per method: "halfway", when started, finishes its first
    # member, then fails; "usage" exits 2; anything else finishes every member.
    import json, os, sys
    from pathlib import Path
    mode, journal, method, *dirs = sys.argv[1:]
    dirs = [Path(d) for d in dirs]
    if mode == "resume":
        group = json.loads((dirs[0] / "seed_group.json").read_text())["members"]
        members = [Path(os.path.normpath(dirs[0] / name)) for name in group]
        dirs = [d for d in members if not (d / "result.json").exists()]
    names = ",".join(d.name for d in dirs)
    with open(journal, "a") as file:
        file.write(f"{method}/{names} {mode}\\n")
    if method == "usage":
        print("plastic train: error: unknown preset 'usage'", file=sys.stderr)
        sys.exit(2)
    if mode == "start":
        for d in dirs:
            (d / "checkpoints").mkdir(parents=True)
            (d / "config.json").write_text("{}")
            members = [os.path.relpath(m, d) for m in dirs]
            (d / "seed_group.json").write_text(json.dumps({"members": members}))
    for d in dirs:
        (d / "checkpoints" / "step_000000200.pt").write_text("200")
        with open(d / "metrics.jsonl", "a") as file:
            file.write(json.dumps({"step": 200}) + "\\n")
    for k, d in enumerate(dirs):
        with open(d / "metrics.jsonl", "a") as file:
            file.write(json.dumps({"step": 400}) + "\\n")
        (d / "result.json").write_text(json.dumps({"seed": int(d.name.removeprefix("seed")), "steps": 400}))
        if method == "halfway" and mode == "start" and k == 0:
            raise RuntimeError("killed after the first member finished")
    """
)


class FakeGroupTrainer:
    """A group command running the fake group trainer; `launches()` lists 'method/seedA,seedB start|resume'."""

    def __init__(self, directory):
        self.directory = Path(directory)
        self.journal = self.directory / "journal.txt"
        (self.directory / "fake_group_train.py").write_text(FAKE_GROUP_TRAINER)

    def __call__(self, trials, run_dirs, resume, train_args, options):
        dirs = run_dirs[:1] if resume else run_dirs
        return [str(self.directory / "fake_group_train.py"), "resume" if resume else "start", str(self.journal),
                trials[0].method, *map(str, dirs)]  # fmt: skip

    def launches(self) -> list[str]:
        return self.journal.read_text().splitlines() if self.journal.exists() else []


def grouped_manifest(directory, methods, seeds, seeds_per_trial=2, steps=400):
    grid = {"envs": ["minatar:breakout"], "methods": methods, "replay_ratios": [2], "seeds": seeds, "steps": steps,
            "seeds_per_trial": seeds_per_trial}  # fmt: skip
    return Manifest.create(directory, grid, train_args=[], options={})


# --------------------------------------------------------------------------------------------------- the packing
def test_seeds_are_packed_per_setting_in_order_into_trials_of_up_to_S(tmp_path):
    manifest = grouped_manifest(tmp_path / "sweep", ["base", "plastic"], [0, 1, 2, 3, 4])
    assert [name for name, _ in units(manifest)] == [
        "minatar_breakout/base/rr2/seeds0,1", "minatar_breakout/plastic/rr2/seeds0,1",
        "minatar_breakout/base/rr2/seeds2,3", "minatar_breakout/plastic/rr2/seeds2,3",
        "minatar_breakout/base/rr2/seeds4", "minatar_breakout/plastic/rr2/seeds4",
    ]  # fmt: skip
    # Every seed keeps the run directory it has alone.
    assert [record.trial.id for record in units(manifest)[0][1]] == ["minatar_breakout/base/rr2/seed0",
                                                                      "minatar_breakout/base/rr2/seed1"]
    last = units(manifest)[5][1][0].trial
    assert manifest.run_dir(last) == tmp_path / "sweep/runs/minatar_breakout/plastic/rr2/seed4"
    # Seeds as listed (not necessarily consecutive); envs and replay ratios are settings of their own.
    trials = expand_grid(["minatar:breakout", "atari:Pong"], ["base"], [2, 4], [0, 3, 7], steps=100)
    assert [group.id for group in pack_trials(trials, 2)] == [
        "minatar_breakout/base/rr2/seeds0,3", "minatar_breakout/base/rr4/seeds0,3",
        "atari_Pong/base/rr2/seeds0,3", "atari_Pong/base/rr4/seeds0,3",
        "minatar_breakout/base/rr2/seeds7", "minatar_breakout/base/rr4/seeds7",
        "atari_Pong/base/rr2/seeds7", "atari_Pong/base/rr4/seeds7",
    ]  # fmt: skip
    assert [group.seeds for group in pack_trials(trials, 5)] == [[0, 3, 7]] * 4
    with pytest.raises(ValueError, match="--seeds-per-trial must be at least 1, got 0"):
        pack_trials(trials, 0)


def test_one_seed_per_trial_is_the_sweep_of_before(tmp_path):
    grid = {"envs": ["minatar:breakout"], "methods": ["base"], "replay_ratios": [2], "seeds": [0, 1], "steps": 400}
    manifest = Manifest.create(tmp_path / "sweep", grid, [], {})
    assert manifest.seeds_per_trial == 1
    assert [(name, [r.trial.id for r in records]) for name, records in units(manifest)] == [
        ("minatar_breakout/base/rr2/seed0", ["minatar_breakout/base/rr2/seed0"]),
        ("minatar_breakout/base/rr2/seed1", ["minatar_breakout/base/rr2/seed1"]),
    ]  # fmt: skip


# ------------------------------------------------------------------------------------------ the command line
def test_a_trial_launches_plastic_train_seeds_with_a_run_dir_pattern():
    options = SweepOptions(cpus_per_trial=2)
    trials = [Trial("atari:Pong", "base+sam+crelu", 4, seed, 100000) for seed in (2, 3)]
    runs = Path("/s/runs/atari_Pong/base+sam+crelu/rr4")
    assert group_train_command(trials, [runs / "seed2", runs / "seed3"], False, ["--set", "a=1"], options) == [
        "-m", "plastic", "train", "--env", "atari:Pong", "--preset", "base", "--methods", "sam,crelu",
        "--replay-ratio", "4", "--seeds", "2,3", "--steps", "100000",
        "--run-dir", "/s/runs/atari_Pong/base+sam+crelu/rr4/seed{seed}",
        "--device", "cpu", "--threads", "2", "--no-progress", "--set", "a=1",
    ]  # fmt: skip
    # A resume names one unfinished member; `plastic train --resume` continues the group's others with it.
    assert group_train_command(trials[1:], [runs / "seed3"], True, ["--set", "a=1"], SweepOptions()) == [
        "-m", "plastic", "train", "--resume", "/s/runs/atari_Pong/base+sam+crelu/rr4/seed3",
        "--device", "cpu", "--threads", "1", "--no-progress",
    ]  # fmt: skip
    dmc = [Trial("dmc:cheetah-run", "base", 1, seed, 500_000, env_steps=2_000_000) for seed in (0, 1)]
    command = group_train_command(dmc, [Path("/s/a/seed0"), Path("/s/a/seed1")], False, [], SweepOptions())
    assert command[command.index("--seeds"):command.index("--run-dir")] == ["--seeds", "0,1", "--env-steps", "2000000"]
    # Braces in the sweep's own path survive `plastic train`'s str.format of the pattern.
    pattern = run_dir_pattern(Path("/s/{x}/rr2/seed0"))
    assert pattern == "/s/{{x}}/rr2/seed{seed}" and pattern.format(seed=5) == "/s/{x}/rr2/seed5"


def test_dry_run_shows_each_trials_process(tmp_path, capsys):
    argv = ["sweep", "--envs", "minatar:breakout", "--methods", "base", "--seeds", "0-2", "--seeds-per-trial", "2",
            "--replay-ratio", "2", "--steps", "400", "--out", str(tmp_path / "sweep"), "--dry-run"]  # fmt: skip
    assert main(argv) == 0
    runs = tmp_path / "sweep/runs/minatar_breakout/base/rr2"
    assert capsys.readouterr().out.splitlines() == [
        f"start     minatar_breakout/base/rr2/seeds0,1: python -m plastic train --env minatar:breakout --preset base "
        f"--replay-ratio 2 --seeds 0,1 --steps 400 --run-dir {runs}/seed{{seed}} --device cpu --threads 1 "
        f"--no-progress",
        f"start     minatar_breakout/base/rr2/seeds2: python -m plastic train --env minatar:breakout --preset base "
        f"--replay-ratio 2 --seeds 2 --steps 400 --run-dir {runs}/seed{{seed}} --device cpu --threads 1 "
        f"--no-progress",
        "2 trials of up to 2 seeds, 3 runs",
    ]
    assert not (tmp_path / "sweep").exists()


def test_the_next_attempt_resumes_a_groups_unfinished_seeds_or_starts_them_all_again(tmp_path):
    manifest = grouped_manifest(tmp_path / "sweep", ["base"], [0, 1, 2, 3, 4, 5])
    (first, pair), (second, fresh), (third, broken) = [(name, records) for name, records in units(manifest)]
    dirs = {seed: manifest.run_dir(Trial("minatar:breakout", "base", 2, seed, 400)) for seed in range(6)}
    for seed, step in ((0, 400), (1, 200), (4, 200)):  # 0 finished, 1 interrupted; 4 checkpointed, 5 never did
        (dirs[seed] / "checkpoints").mkdir(parents=True)
        (dirs[seed] / "checkpoints" / f"step_{step:09d}.pt").write_text("")
    (dirs[0] / "result.json").write_text("{}")
    for seeds in ((0, 1), (4, 5)):
        for seed in seeds:
            (dirs[seed] / "seed_group.json").parent.mkdir(parents=True, exist_ok=True)
            (dirs[seed] / "seed_group.json").write_text(json.dumps({"members": [f"../seed{s}" for s in seeds]}))
    (dirs[2] / "config.json").parent.mkdir(parents=True)
    (dirs[2] / "config.json").write_text("{}")  # a start that saved nothing

    # 1 continues from its checkpoint; 0 (finished) is not part of the attempt.
    resume, command = attempt_command(manifest, pair[1:], SweepOptions(), prepare=True)
    assert resume and command[3:5] == ["--resume", str(dirs[1].resolve())]
    assert (dirs[0] / "result.json").exists() and (dirs[1] / "checkpoints/step_000000200.pt").exists()
    # No checkpoint in 2 or 3: both start again, fresh.
    resume, command = attempt_command(manifest, fresh, SweepOptions(), prepare=True)
    assert not resume and command[command.index("--seeds") + 1] == "2,3" and not dirs[2].exists()
    # 4 and 5 share no checkpoint step (killed before 5 wrote its first): the group cannot resume; both restart.
    resume, command = attempt_command(manifest, broken, SweepOptions(), prepare=True)
    assert not resume and command[command.index("--seeds") + 1] == "4,5"
    assert not dirs[4].exists() and not dirs[5].exists()


# --------------------------------------------------------------------------------------------------- the manifest
def test_manifest_records_seeds_per_trial_and_old_manifests_mean_one(tmp_path):
    manifest = grouped_manifest(tmp_path / "sweep", ["base"], [0, 1, 2], seeds_per_trial=2)
    manifest.save()
    loaded = Manifest.load(tmp_path / "sweep")
    assert loaded.to_dict() == manifest.to_dict()
    assert loaded.seeds_per_trial == 2 and loaded.grid["seeds_per_trial"] == 2
    assert [name for name, _ in units(loaded)] == ["minatar_breakout/base/rr2/seeds0,1",
                                                   "minatar_breakout/base/rr2/seeds2"]
    data = json.loads((tmp_path / "sweep" / MANIFEST_NAME).read_text())
    assert [trial["run_dir"] for trial in data["trials"]] == [
        f"runs/minatar_breakout/base/rr2/seed{s}" for s in range(3)]
    # A manifest written before seed groups has no such field: one seed per trial.
    del data["grid"]["seeds_per_trial"]
    (tmp_path / "sweep" / MANIFEST_NAME).write_text(json.dumps(data))
    old = Manifest.load(tmp_path / "sweep")
    assert old.seeds_per_trial == 1 and [name for name, _ in units(old)] == [
        f"minatar_breakout/base/rr2/seed{s}" for s in range(3)]


GRID = ["--envs", "minatar:breakout", "--methods", "base", "--seeds", "0-2", "--replay-ratio", "2", "--steps", "400"]


def test_the_grid_records_seeds_per_trial_only_above_one(tmp_path):
    def grid_of(*extra):
        args = build_parser().parse_args(["sweep", *GRID, "--out", str(tmp_path / "new"), *extra])
        return _new_or_existing_manifest(args).grid

    assert "seeds_per_trial" not in grid_of() and "seeds_per_trial" not in grid_of("--seeds-per-trial", "1")
    assert grid_of("--seeds-per-trial", "3")["seeds_per_trial"] == 3


def one_line_error(capsys, argv) -> str:
    assert main(["sweep", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("plastic sweep: error: "), err
    return err


@pytest.mark.parametrize("value", ["0", "-3"])
def test_seeds_per_trial_below_one_is_one_line_and_creates_nothing(tmp_path, capsys, value):
    err = one_line_error(capsys, [*GRID, "--seeds-per-trial", value, "--out", str(tmp_path / "sweep")])
    assert f"--seeds-per-trial must be at least 1, got {value}" in err
    assert not (tmp_path / "sweep").exists()


def test_another_seeds_per_trial_for_an_existing_sweep_is_refused(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    args = build_parser().parse_args(["sweep", *GRID, "--out", str(sweep)])
    _new_or_existing_manifest(args).save()  # a sweep of one seed per trial
    err = one_line_error(capsys, [*GRID, "--seeds-per-trial", "2", "--out", str(sweep)])
    assert f"{sweep} holds this sweep with --seeds-per-trial 1, not 2" in err
    assert "drop --seeds-per-trial" in one_line_error(capsys, ["--resume", str(sweep), "--seeds-per-trial", "2"])
    # The same command (with the default spelled out) is the same sweep.
    assert _new_or_existing_manifest(build_parser().parse_args(
        ["sweep", *GRID, "--seeds-per-trial", "1", "--out", str(sweep)])).seeds_per_trial == 1


# ------------------------------------------------------------------------------------------- running a sweep
def test_groups_run_retry_resume_their_unfinished_seeds_and_fail_together(tmp_path, capsys):
    fake = FakeGroupTrainer(tmp_path)
    manifest = grouped_manifest(tmp_path / "sweep", ["base", "halfway", "usage"], [0, 1, 2])
    run_sweep(manifest, SweepOptions(retries=1, **QUIET), executor_factory=local(), group_command=fake)
    assert sorted(fake.launches()) == sorted([
        "base/seed0,seed1 start", "base/seed2 start",
        "halfway/seed0,seed1 start", "halfway/seed1 resume",  # seed0 finished before the failure: not launched again
        "halfway/seed2 start",  # finished its only member, then failed: finished all the same
        "usage/seed0,seed1 start", "usage/seed2 start",  # exit status 2: no retry
    ])  # fmt: skip
    statuses = {record.trial.id.split("/", 1)[1]: (record.status, record.attempts)
                for record in manifest.trials.values()}
    assert statuses == {
        "base/rr2/seed0": ("finished", 1), "base/rr2/seed1": ("finished", 1), "base/rr2/seed2": ("finished", 1),
        "halfway/rr2/seed0": ("finished", 1), "halfway/rr2/seed1": ("finished", 2),
        "halfway/rr2/seed2": ("finished", 1),
        "usage/rr2/seed0": ("failed", 1), "usage/rr2/seed1": ("failed", 1), "usage/rr2/seed2": ("failed", 1),
    }  # fmt: skip
    log = tmp_path / "sweep/logs/minatar_breakout/usage/rr2/seeds0,1.log"
    assert manifest.trials["minatar_breakout/usage/rr2/seed1"].error == (
        f"exit status 2: plastic train: error: unknown preset 'usage' (log: {log})")
    halfway_log = (tmp_path / "sweep/logs/minatar_breakout/halfway/rr2/seeds0,1.log").read_text()
    assert halfway_log.count("===== minatar_breakout/halfway/rr2/seeds0,1 on ") == 2  # both attempts, one log
    err = capsys.readouterr().err
    assert "sweep: 9 runs in 6 trials of up to 2 seeds to run on local processes" in err
    assert "sweep: minatar_breakout/halfway/rr2/seeds0,1 attempt 1 failed (exit status 1: RuntimeError: " in err
    assert "sweep: minatar_breakout/usage/rr2/seeds0,1 FAILED after 1 attempt(s)" in err
    assert err.splitlines()[-1].startswith("sweep: 6/9 finished, 0 running, 3 failed, 0 pending | ")  # per seed run

    launched = len(fake.launches())
    run_sweep(Manifest.load(tmp_path / "sweep"), SweepOptions(retries=0, **QUIET), executor_factory=local(),
              group_command=fake)  # fmt: skip
    assert sorted(fake.launches()[launched:]) == ["usage/seed0,seed1 start", "usage/seed2 start"]


def test_groups_run_on_a_local_ray(tmp_path):
    pytest.importorskip("ray")
    fake = FakeGroupTrainer(tmp_path)
    manifest = grouped_manifest(tmp_path / "sweep", ["base"], [0, 1, 2])
    run_sweep(manifest, SweepOptions(backend="ray", **QUIET), group_command=fake, stream=sys.stdout)
    assert sorted(fake.launches()) == ["base/seed0,seed1 start", "base/seed2 start"]
    assert manifest.counts() == {"pending": 0, "running": 0, "finished": 3, "failed": 0}


def test_a_real_sweep_of_seed_groups_runs_to_completion_and_is_reported(tmp_path, capsys):
    pytest.importorskip("plastic.training.commands")
    sweep = tmp_path / "sweep"
    argv = ["sweep", "--envs", "minatar:breakout", "--methods", "base", "--seeds", "0-2", "--seeds-per-trial", "2",
            "--steps", "150", "--set", "rainbow.learning_starts=50", "--set", "rainbow.batch_size=16",
            "--eval-episodes", "1", "--backend", "local", "--out", str(sweep)]  # fmt: skip
    assert main(argv) == 0
    runs = sweep / "runs/minatar_breakout/base/rr2"
    for seed in (0, 1, 2):
        result = json.loads((runs / f"seed{seed}/result.json").read_text())
        assert (result["env"], result["preset"], result["seed"], result["steps"]) == ("minatar:breakout", "base",
                                                                                      seed, 150)
    # Seeds 0 and 1 were one process, 2 another.
    assert json.loads((runs / "seed1/seed_group.json").read_text())["members"] == ["../seed0", "."]
    assert json.loads((runs / "seed2/seed_group.json").read_text())["members"] == ["."]
    assert sorted(path.name for path in (sweep / "logs/minatar_breakout/base/rr2").iterdir()) == ["seeds0,1.log",
                                                                                                "seeds2.log"]
    assert Manifest.load(sweep).counts() == {"pending": 0, "running": 0, "finished": 3, "failed": 0}
    report = json.loads((sweep / "report" / "aggregates.json").read_text())
    assert report["methods"]["base"]["num_runs"] == 3
    assert "sweep: 3 runs in 2 trials of up to 2 seeds" in capsys.readouterr().err

    stamps = [path.stat().st_mtime_ns for path in runs.glob("seed*/result.json")]
    assert main([*argv, "--no-report"]) == 0  # the same command again: nothing to run
    assert "3/3 finished, 0 running, 0 failed, 0 pending" in capsys.readouterr().err
    assert [path.stat().st_mtime_ns for path in runs.glob("seed*/result.json")] == stamps
