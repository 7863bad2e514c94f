"""`plastic sweep`: run a grid of `plastic train` runs locally or on a Ray cluster, then `plastic report` it.

    plastic sweep --envs minatar --methods base,plastic --seeds 0-4 --replay-ratio 2,4,8 --steps 100000 \\
        --out sweeps/minatar
    plastic sweep --envs dmc-medium --methods base,plastic --seeds 0-4 --replay-ratio 1 --env-steps 2000000 \\
        --out sweeps/dmc                                    # the same environment budget for every task
    plastic sweep --resume sweeps/minatar                   # or re-run the same command: finished trials are skipped
    plastic sweep ... --seeds 0-7 --seeds-per-trial 4       # 4 seeds per process (plastic train --seeds)
    plastic sweep ... --address auto                        # on the Ray cluster this machine belongs to
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from plastic.envs.domains import split_env_id
from plastic.errors import UserError
from plastic.training.commands import check_budget_flags

GRID_FLAGS = ("envs", "methods", "seeds", "replay_ratio", "steps")
# Grid flags with a default: not required for a new sweep, and refused with --resume only when given.
_OPTIONAL_GRID_FLAGS = ("env_steps", "seeds_per_trial")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="run a grid of training runs (envs x methods x replay ratios x seeds), locally or on Ray",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Trials run as `plastic train` run directories under OUT/runs/; OUT/sweep.json records the grid and "
        "every trial's status; logs go to OUT/logs/. See docs/sweep.md.",
    )
    grid = parser.add_argument_group("the grid (--envs, --methods, --seeds and --out required for a new sweep)")
    grid.add_argument("--envs", help="comma list of env groups (atari100k, dmc-medium, minatar) and env ids "
                      "(minatar:breakout, atari:Pong, dmc:cheetah-run)")  # fmt: skip
    grid.add_argument("--methods", help="comma list of methods, each a preset or a switch, then +SWITCH... added on "
                      "top (as `plastic train --method`): base,plastic,plastic-dagger,base+sam+crelu")
    grid.add_argument("--seeds", help="seeds: 0-4, or 0,3,7")
    grid.add_argument("--replay-ratio", help="comma list of replay ratios: 2,4,8 (default: each domain's, as "
                      "`plastic train`: 2 on Atari and MinAtar, 1 on DMC)")  # fmt: skip
    grid.add_argument("--steps", type=int, help="agent steps per run (default: each domain's budget, as in "
                      "`plastic train`)")
    grid.add_argument("--env-steps", type=int, help="environment steps per run, converted with each task's action "
                      "repeat (as `plastic train --env-steps`); exclusive with --steps")
    grid.add_argument("--seeds-per-trial", type=int, metavar="S", help="train up to S seeds of each (env, method, "
                      "replay ratio) together in one `plastic train --seeds` process; each seed keeps its own run "
                      "directory (default 1: one process per seed)")
    grid.add_argument("--out", type=Path, help="the sweep directory (re-running the same command resumes it)")
    grid.add_argument("--resume", type=Path, metavar="SWEEP_DIR", help="continue the sweep in SWEEP_DIR, grid and "
                      "training options from its sweep.json")  # fmt: skip
    train = parser.add_argument_group("passed to every `plastic train`")
    train.add_argument("--checkpoint-every", type=int, help="agent steps between checkpoints")
    train.add_argument("--eval-episodes", type=int, help="evaluation episodes at the end of each run")
    train.add_argument("--keep-replay", action="store_true", help="finished runs keep their replay buffers")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any config field; repeatable")
    execution = parser.add_argument_group("execution")
    execution.add_argument("--address", help="an existing Ray cluster: auto, HOST:PORT or ray://HOST:10001 "
                           "(default: a local Ray started here)")  # fmt: skip
    execution.add_argument("--backend", choices=("auto", "ray", "local"), default="auto",
                           help="ray, or local processes without Ray; auto = ray when installed (default)")  # fmt: skip
    execution.add_argument("--cpus-per-trial", type=float, help="CPUs (and torch threads) per trial (default 1)")
    execution.add_argument("--gpus-per-trial", type=float, help="GPUs per trial, fractions share a GPU (default 0)")
    execution.add_argument("--max-concurrent", type=int, help="cap on trials at once (default: what fits)")
    execution.add_argument("--retries", type=int, help="extra attempts for a failed trial (default 2)")
    execution.add_argument("--progress-every", type=float, default=10.0, help="seconds between progress lines")
    execution.add_argument("--dry-run", action="store_true", help="print the grid and what would run, run nothing")
    execution.add_argument("--no-report", action="store_true", help="do not run `plastic report` at the end")
    parser.set_defaults(func=run)


def _train_args(args) -> list[str]:
    train_args = []
    if args.checkpoint_every is not None:
        train_args += ["--checkpoint-every", str(args.checkpoint_every)]
    if args.eval_episodes is not None:
        train_args += ["--eval-episodes", str(args.eval_episodes)]
    if args.keep_replay:
        train_args += ["--keep-replay"]
    for assignment in args.set:
        if "=" not in assignment:
            raise UserError(f"--set {assignment!r}: expected KEY=VALUE")
        train_args += ["--set", assignment]
    return train_args


def _new_or_existing_manifest(args):
    """The manifest for this command: read from `--resume`, or built from the grid flags (and checked against the
    sweep already in `--out`, if any: re-running the same command resumes it, a different grid is refused)."""
    from plastic.sweep.grid import parse_envs, parse_int_list, parse_methods
    from plastic.sweep.manifest import MANIFEST_NAME, Manifest

    given = [f"--{flag.replace('_', '-')}" for flag in (*GRID_FLAGS, *_OPTIONAL_GRID_FLAGS)
             if getattr(args, flag) is not None]
    if args.resume is not None:
        if given or args.set or args.checkpoint_every is not None or args.eval_episodes is not None or args.keep_replay:
            raise UserError(f"--resume takes the grid and training options from {args.resume / MANIFEST_NAME}; "
                            f"drop {', '.join(given) or 'the training options'}")  # fmt: skip
        if args.out is not None and args.out.resolve() != args.resume.resolve():
            raise UserError("give either --out or --resume, not both")
        return Manifest.load(args.resume)
    check_budget_flags(args.steps, args.env_steps)
    if args.seeds_per_trial is not None and args.seeds_per_trial < 1:
        raise UserError(f"--seeds-per-trial must be at least 1, got {args.seeds_per_trial}")
    missing = [f"--{flag.replace('_', '-')}" for flag in (*GRID_FLAGS, "out")
               if getattr(args, flag) is None and flag not in ("steps", "replay_ratio")]  # each domain's default
    if missing:
        raise UserError(f"a new sweep needs {', '.join(missing)} (or --resume SWEEP_DIR)")
    grid = {
        "envs": parse_envs(args.envs),
        "methods": parse_methods(args.methods),
        "replay_ratios": None if args.replay_ratio is None else parse_int_list(args.replay_ratio, "--replay-ratio"),
        "seeds": parse_int_list(args.seeds, "--seeds"),
        "steps": args.steps,
    }
    if args.env_steps is not None:
        grid["env_steps"] = args.env_steps
    if args.seeds_per_trial not in (None, 1):  # absent = 1, so that sweeps from before seed groups match
        grid["seeds_per_trial"] = args.seeds_per_trial
    train_args = _train_args(args)
    _check_configs(grid["envs"], grid["methods"], args.set)
    manifest = Manifest.create(args.out, grid, train_args, options={},  # validates the grid
                               steps=None if args.steps is not None else _agent_steps(args, grid["envs"]))
    if (args.out / MANIFEST_NAME).exists():
        existing = Manifest.load(args.out)
        without_packing = [{key: value for key, value in g.items() if key != "seeds_per_trial"}
                           for g in (existing.grid, grid)]
        if existing.seeds_per_trial != manifest.seeds_per_trial and without_packing[0] == without_packing[1]:
            raise UserError(f"{args.out} holds this sweep with --seeds-per-trial {existing.seeds_per_trial}, not "
                            f"{manifest.seeds_per_trial} (its runs' checkpoints belong to those groups); run it with "
                            f"`plastic sweep --resume {args.out}`, or use another --out")
        if existing.grid != grid or existing.train_args != train_args:
            raise UserError(f"{args.out} holds a sweep with another grid or training options; use another --out, "
                            f"or `plastic sweep --resume {args.out}` to continue it")  # fmt: skip
        return existing
    if args.out.exists() and any(args.out.iterdir()):
        raise UserError(f"{args.out} exists and is not a sweep (no {MANIFEST_NAME}); use another --out")
    return manifest


def _check_configs(envs: list[str], methods: list[str], assignments: list[str]) -> None:
    """Build each (env, method)'s config as its trial will, so that what `plastic train` would refuse (a method a
    domain lacks, such as c_chain on DMC, or a bad --set) fails here, before any trial starts."""
    from plastic.config import build, parse_overrides
    from plastic.methods import parse_method

    overrides = parse_overrides(assignments)
    for env in envs:
        build(env, overrides=overrides)  # --set alone
    for method in methods:
        spec = parse_method(method, "--methods")
        for env in envs:
            try:
                build(env, spec.preset, list(spec.switches), overrides)
            except ValueError as error:
                raise ValueError(f"--methods {method} on {env}: {error}") from None


def _agent_steps(args, envs: list[str]) -> dict[str, int]:
    """Agent steps per env for an `--env-steps` budget, or the domains' default budgets: resolved as `plastic train`
    resolves them (with this sweep's --set values, e.g. dmc.action_repeat), so each trial records its real length."""
    from plastic.config import build, parse_overrides

    overrides = parse_overrides(args.set)
    if args.env_steps is not None:
        overrides["env_steps"] = args.env_steps
    return {env: build(env, overrides=overrides).steps for env in envs}


def _options(args, manifest):
    """Execution options: the flags given now, else those the sweep last ran with, else the defaults."""
    from plastic.sweep.runner import SweepOptions

    stored = manifest.options
    chosen = {
        "cpus_per_trial": args.cpus_per_trial if args.cpus_per_trial is not None else stored.get("cpus_per_trial", 1.0),
        "gpus_per_trial": args.gpus_per_trial if args.gpus_per_trial is not None else stored.get("gpus_per_trial", 0.0),
        "retries": args.retries if args.retries is not None else stored.get("retries", 2),
    }
    options = SweepOptions(address=args.address, backend=args.backend, max_concurrent=args.max_concurrent,
                           progress_every=args.progress_every, **chosen)  # fmt: skip
    manifest.options.update(chosen)
    return options


def report_jobs(manifest) -> list[tuple[list[Path], Path]]:
    """(inputs, output folder) of each `plastic report` to run: the sweep directory into `report/`, or, since one
    report covers one domain, each domain's env folders into `report/<domain>/` when the grid mixes domains."""
    domains: dict[str, list[Path]] = {}
    for env in manifest.grid["envs"]:
        folder = manifest.directory / "runs" / env.replace(":", "_")
        if folder.is_dir():
            domains.setdefault(split_env_id(env)[0], []).append(folder)
    if len(domains) <= 1:
        return [([manifest.directory], manifest.directory / "report")]
    return [(folders, manifest.directory / "report" / domain) for domain, folders in domains.items()]


def _report(manifest) -> None:
    """`plastic report` on the sweep, in-process; skipped with a warning when that command is not installed."""
    from plastic.cli import main

    try:
        import plastic.report.commands  # noqa: F401
    except ModuleNotFoundError:
        print("sweep: warning: `plastic report` is not available; skipped the report", file=sys.stderr)
        return
    for inputs, output in report_jobs(manifest):
        output.parent.mkdir(parents=True, exist_ok=True)
        try:
            status = main(["report", *map(str, inputs), "--out", str(output)])
        except SystemExit as exit_:
            status = exit_.code
        if status:
            print(f"sweep: warning: `plastic report` on {output.name} exited with status {status}", file=sys.stderr)
        else:
            print(f"sweep: report in {output}", file=sys.stderr)


def run(args) -> int:
    from plastic.sweep.runner import run_sweep, train_command

    try:
        manifest = _new_or_existing_manifest(args)
        options = _options(args, manifest)
    except ValueError as error:
        raise UserError(str(error)) from None
    if args.dry_run:
        return _dry_run(manifest, options, train_command)
    try:
        run_sweep(manifest, options)
    except (ValueError, ConnectionError) as error:  # bad resources or address, found when the executor starts
        raise UserError(str(error)) from None
    counts = manifest.counts()
    for record in manifest.trials.values():
        if record.status == "failed":
            print(f"sweep: failed: {record.trial.id}: {record.error}", file=sys.stderr)
    if counts["finished"] and not args.no_report:
        _report(manifest)
    return 1 if counts["failed"] else 0


def _dry_run(manifest, options, command) -> int:
    from plastic.sweep.runner import attempt_command, is_finished, units

    processes = units(manifest)
    for name, records in processes:
        left = [record for record in records if not is_finished(manifest.run_dir(record.trial))]
        if not left:
            print(f"finished  {name}")
            continue
        resume, arguments = attempt_command(manifest, left, options, command)
        print(f"{'resume' if resume else 'start':<9} {name}: python {' '.join(arguments)}")
    if manifest.seeds_per_trial == 1:
        print(f"{len(manifest.trials)} trials")
    else:
        print(f"{len(processes)} trials of up to {manifest.seeds_per_trial} seeds, {len(manifest.trials)} runs")
    return 0
