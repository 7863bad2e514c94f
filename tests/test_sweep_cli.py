"""`plastic sweep` on the command line: bad input gets a clear one-line error (exit status 2), before any work."""

import socket
import time

import pytest

from test_sweep import new_manifest

from plastic.cli import main

GRID = ["--envs", "minatar:breakout", "--methods", "base,plastic", "--seeds", "0-1", "--replay-ratio", "2",
        "--steps", "400"]  # fmt: skip


def one_line_error(capsys, argv) -> str:
    assert main(["sweep", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("plastic sweep: error: "), err
    return err


@pytest.mark.parametrize(
    "change, message",
    [
        ({"--envs": "atari-100k"}, "unknown env group or env id 'atari-100k'; groups: atari100k, dmc-medium, minatar"),
        ({"--envs": "pong"}, "unknown env group or env id 'pong'"),
        ({"--seeds": "4-0"}, "--seeds: empty range '4-0'"),
        ({"--methods": ","}, "empty grid: --methods selects nothing"),
        ({"--replay-ratio": "0"}, "--replay-ratio values must be positive"),
        ({"--steps": "0"}, "--steps must be positive"),
    ],
)
def test_bad_grid_is_one_line_and_creates_nothing(tmp_path, capsys, change, message):
    argv = [*GRID, "--out", str(tmp_path / "sweep")]
    for flag, value in change.items():
        argv[argv.index(flag) + 1] = value
    assert message in one_line_error(capsys, argv)
    assert not (tmp_path / "sweep").exists()


def test_missing_grid_flags_are_named(tmp_path, capsys):
    err = one_line_error(capsys, ["--envs", "minatar", "--out", str(tmp_path / "s")])
    assert "a new sweep needs --methods, --seeds (or --resume SWEEP_DIR)" in err


@pytest.mark.parametrize("budget, message", [
    (["--steps", "400", "--env-steps", "800"],
     "give either --steps (agent steps) or --env-steps (environment steps), not both"),
    (["--env-steps", "0"], "--env-steps must be positive, got 0"),
    (["--env-steps", "-8"], "--env-steps must be positive, got -8"),
])
def test_bad_budget_is_one_line_and_creates_nothing(tmp_path, capsys, budget, message):
    argv = [*GRID[:-2], *budget, "--out", str(tmp_path / "sweep")]
    assert message in one_line_error(capsys, argv)
    assert not (tmp_path / "sweep").exists()


def dry_run_manifest(tmp_path, capsys, envs, *budget):
    """The dry run's printed commands and the trials' (agent steps, env steps) per env."""
    from plastic.cli import build_parser
    from plastic.sweep.commands import _new_or_existing_manifest

    argv = ["sweep", "--envs", envs, "--methods", "base", "--seeds", "0", "--replay-ratio", "1", *budget,
            "--out", str(tmp_path / "sweep"), "--dry-run"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    trials = _new_or_existing_manifest(build_parser().parse_args(argv)).trials.values()
    return out, {record.trial.env: (record.trial.steps, record.trial.env_steps) for record in trials}


def test_env_steps_give_every_task_the_same_environment_budget(tmp_path, capsys):
    # Action repeats 4 (cheetah-run), 2 (walker-run), 8 (cartpole-swingup): 8,000 env steps = 2,000 / 4,000 / 1,000.
    out, budgets = dry_run_manifest(tmp_path, capsys, "dmc:cheetah-run,dmc:walker-run,dmc:cartpole-swingup",
                                    "--env-steps", "8000")
    assert budgets == {"dmc:cheetah-run": (2000, 8000), "dmc:walker-run": (4000, 8000),
                       "dmc:cartpole-swingup": (1000, 8000)}
    assert out.count("--env-steps 8000 ") == 3 and "--steps" not in out
    # An overridden action repeat converts with the override.
    _, budgets = dry_run_manifest(tmp_path, capsys, "dmc:walker-run", "--env-steps", "8000",
                                  "--set", "dmc.action_repeat=8")
    assert budgets == {"dmc:walker-run": (1000, 8000)}


def test_without_a_budget_each_domain_gets_its_default(tmp_path, capsys):
    # DMC: the paper's 2,000,000 environment steps (cheetah-run: repeat 4); MinAtar/Atari: 100,000 agent steps.
    out, budgets = dry_run_manifest(tmp_path, capsys, "dmc:cheetah-run,minatar:breakout,atari:Pong")
    assert budgets == {"dmc:cheetah-run": (500_000, None), "minatar:breakout": (100_000, None),
                       "atari:Pong": (100_000, None)}
    assert out.count("--steps 500000 ") == 1 and out.count("--steps 100000 ") == 2


def test_without_replay_ratio_each_env_gets_its_domains_default(tmp_path, capsys):
    """As `plastic train`: 2 on Atari and MinAtar (Table 5), 1 on DMC (Table 6)."""
    argv = ["--envs", "minatar:breakout,atari:Pong,dmc:cheetah-run", "--methods", "base", "--seeds", "0",
            "--steps", "400", "--out", str(tmp_path / "sweep"), "--keep-replay", "--dry-run"]  # fmt: skip
    assert main(["sweep", *argv]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "3 trials"
    assert [line.split(":")[0] for line in out[:-1]] == [
        "start     minatar_breakout/base/rr2/seed0", "start     atari_Pong/base/rr2/seed0",
        "start     dmc_cheetah-run/base/rr1/seed0",
    ]  # fmt: skip
    assert [line.split("--replay-ratio ")[1].split()[0] for line in out[:-1]] == ["2", "2", "1"]
    assert all(line.endswith(" --keep-replay") for line in out[:-1])  # passed to every trial


def test_unreachable_address_is_one_line_and_fast(tmp_path, capsys):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    start = time.monotonic()
    err = one_line_error(capsys, [*GRID, "--out", str(tmp_path / "s"), "--address", f"ray://127.0.0.1:{port}"])
    assert f"cannot reach the Ray cluster at ray://127.0.0.1:{port}" in err
    assert time.monotonic() - start < 10
    assert "expected auto, HOST:PORT or ray://HOST:PORT" in one_line_error(
        capsys, [*GRID, "--out", str(tmp_path / "s"), "--address", "http://head"]
    )


def test_an_existing_sweep_with_another_grid_is_refused(tmp_path, capsys):
    new_manifest(tmp_path / "sweep", ["base", "plastic"], [0, 1], steps=400).save()
    err = one_line_error(capsys, [*GRID[:-1], "500", "--out", str(tmp_path / "sweep")])
    assert "holds a sweep with another grid" in err
    err = one_line_error(capsys, ["--resume", str(tmp_path / "sweep"), "--seeds", "0-9"])
    assert "drop --seeds" in err
    assert "is not a sweep: no sweep.json" in one_line_error(capsys, ["--resume", str(tmp_path)])


def test_too_many_cpus_per_trial_is_refused(tmp_path, capsys):
    argv = [*GRID, "--out", str(tmp_path / "s"), "--backend", "local", "--cpus-per-trial", "4096"]
    err = one_line_error(capsys, argv)
    assert "--cpus-per-trial 4096 exceeds this machine's" in err


def test_dry_run_lists_the_trials_and_runs_nothing(tmp_path, capsys):
    assert main(["sweep", *GRID, "--out", str(tmp_path / "sweep"), "--set", "rainbow.learning_rate=0.001",
                 "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "4 trials"
    assert out[0] == (
        f"start     minatar_breakout/base/rr2/seed0: python -m plastic train --env minatar:breakout --preset base "
        f"--replay-ratio 2 --seed 0 --steps 400 --run-dir {tmp_path}/sweep/runs/minatar_breakout/base/rr2/seed0 "
        f"--device cpu --threads 1 --no-progress --set rainbow.learning_rate=0.001"
    )
    assert not (tmp_path / "sweep").exists()


def test_one_report_per_domain_when_the_grid_mixes_domains(tmp_path):
    from plastic.sweep.commands import report_jobs
    from plastic.sweep.manifest import Manifest

    grid = {"envs": ["minatar:breakout", "atari:Pong", "minatar:asterix"], "methods": ["base"], "replay_ratios": [2],
            "seeds": [0], "steps": 100}  # fmt: skip
    mixed = Manifest.create(tmp_path / "mixed", grid, [], {})
    for env in ("minatar_breakout", "atari_Pong", "minatar_asterix"):
        (tmp_path / "mixed" / "runs" / env).mkdir(parents=True)
    assert report_jobs(mixed) == [
        ([tmp_path / "mixed/runs/minatar_breakout", tmp_path / "mixed/runs/minatar_asterix"],
         tmp_path / "mixed/report/minatar"),
        ([tmp_path / "mixed/runs/atari_Pong"], tmp_path / "mixed/report/atari"),
    ]  # fmt: skip
    single = new_manifest(tmp_path / "single", ["base"], [0])
    assert report_jobs(single) == [([tmp_path / "single"], tmp_path / "single/report")]
