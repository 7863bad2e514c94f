"""`plastic train` and `plastic eval`.

    plastic train --env atari:Pong --method plastic --replay-ratio 2 --seed 0 --steps 100000 --out runs/
    plastic train --env minatar:breakout --method plastic-dagger+l2_init   # = --preset plastic-dagger --methods l2_init
    plastic train --resume runs/atari-Pong_plastic_rr2_s0
    plastic eval runs/atari-Pong_plastic_rr2_s0 --eval-episodes 100

Flag names are a contract (scripts rely on them). Any config field is reachable with `--set KEY=VALUE`
(`--set sam.rho=0.05 --set reset.interval=20000`); `plastic train --list-config` prints every field with its value
(JSON), `--describe-config` each with its value and its doc.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from plastic.errors import UserError


def register(subparsers) -> None:
    train = subparsers.add_parser(
        "train", help="train an agent (DrQ(ε)-Rainbow on Atari/MinAtar, DrQ-SAC on DMC) with PLASTIC's methods",
        description="Train one run. Writes config.json, metrics.jsonl, TensorBoard events, checkpoints and "
                    "result.json into the run directory.")
    train.add_argument("--env", help="env id: atari:<Game>, minatar:<game>, dmc:<domain>-<task>")
    train.add_argument("--method", metavar="SPEC", help="the method: a preset or a switch, then +SWITCH... added on "
                       "top, e.g. plastic, plastic-dagger+l2_init, base+ln+sam (presets: --list-presets; default base)")
    train.add_argument("--preset", help="older spelling: --preset P --methods a,b is --method P+a+b (base, a single "
                       "method, plastic, plastic-dagger, plastic-official, reset-dagger)")
    train.add_argument("--methods", default="", help="older spelling: switches added on top of --preset, comma or + "
                       "separated: ln,sam,crelu,reset,shrink_perturb,redo,l2_init,...")
    train.add_argument("--replay-ratio", type=int, help="gradient updates per agent step (paper: 2, 4, 8)")
    train.add_argument("--seed", type=int)
    train.add_argument("--seeds", metavar="LIST", help="train several seeds of this config together in one process, "
                       "e.g. 0-7 or 0,3,5: each seed gets its own run directory in --out (docs/multi_seed.md)")
    train.add_argument("--steps", type=int, help="agent steps (default: Atari/MinAtar 100000)")
    train.add_argument("--env-steps", type=int, help="environment steps = agent steps x action repeat (DMC: the "
                       "task's, Atari: frame skip 4, MinAtar: 1), rounded up to whole agent steps; exclusive with "
                       "--steps (default: DMC 2000000)")
    train.add_argument("--out", default="runs", help="parent folder; the run directory is created inside it")
    train.add_argument("--run-dir", help="exact run directory (must not exist or be empty); with --seeds, a pattern "
                       "with {seed} in it")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its latest checkpoint")
    train.add_argument("--device", choices=("auto", "cpu", "cuda"))
    train.add_argument("--checkpoint-every", type=int, help="agent steps between checkpoints")
    train.add_argument("--eval-episodes", type=int, help="episodes of the final evaluation (default: Atari/MinAtar "
                       "100, DMC 10)")
    train.add_argument("--keep-replay", action="store_true", help="a finished run keeps its last checkpoints whole, "
                       "replay buffer included (default: only the final one, without the replay)")  # fmt: skip
    train.add_argument("--threads", type=int, help="torch threads (0 = torch's default)")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="set any config field, e.g. --set sam.rho=0.05 (repeatable)")
    train.add_argument("--backbone-checkpoint", metavar="PATH",
                       help="fine-tune: load the encoder from a run directory, a checkpoint or a state dict (§4.4)")
    train.add_argument("--freeze-backbone", action="store_true", help="keep the loaded encoder fixed")
    train.add_argument("--no-progress", action="store_true", help="no progress bar (logs still go to files)")
    train.add_argument("--list-presets", action="store_true", help="print the presets and exit")
    train.add_argument("--list-config", action="store_true", help="print the resolved config and exit")
    train.add_argument("--describe-config", action="store_true",
                       help="print each config key with its resolved value and its doc, and exit")
    train.set_defaults(func=run_train)

    evaluate = subparsers.add_parser("eval", help="re-evaluate the latest checkpoint of a run",
                                     description="Evaluate a run's latest checkpoint; writes eval_step<N>.json.")
    evaluate.add_argument("run_dir")
    evaluate.add_argument("--eval-episodes", type=int)
    evaluate.add_argument("--seed", type=int, default=None, help="evaluation seed (default: the run's seed)")
    evaluate.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    evaluate.set_defaults(func=run_eval)


def _cli_overrides(args) -> dict:
    from plastic.config import parse_overrides

    try:
        overrides = parse_overrides(args.overrides)
    except ValueError as error:
        raise UserError(str(error)) from None
    check_budget_flags(args.steps, args.env_steps)
    for flag, key in (("replay_ratio", "replay_ratio"), ("seed", "seed"), ("steps", "steps"),
                      ("env_steps", "env_steps"), ("device", "device"), ("checkpoint_every", "checkpoint_every"),
                      ("eval_episodes", "eval_episodes"), ("threads", "threads")):
        value = getattr(args, flag)
        if value is not None:
            overrides[key] = value
    if args.backbone_checkpoint:
        overrides["backbone_checkpoint"] = args.backbone_checkpoint
    if args.freeze_backbone:
        overrides["freeze_backbone"] = True
    if args.keep_replay:
        overrides["keep_replay"] = True
    return overrides


def check_budget_flags(steps: int | None, env_steps: int | None) -> None:
    """--steps and --env-steps: at most one, and positive (also used by `plastic sweep`)."""
    if steps is not None and env_steps is not None:
        raise UserError(f"give either --steps (agent steps) or --env-steps (environment steps), not both "
                        f"(got --steps {steps} and --env-steps {env_steps})")
    for flag, value in (("--steps", steps), ("--env-steps", env_steps)):
        if value is not None and value <= 0:
            raise UserError(f"{flag} must be positive, got {value}")


def default_run_name(config) -> str:
    return f"{config.env.replace(':', '-')}_{config.method_label}_rr{config.replay_ratio}_s{config.seed}"


def _check_env(env_id: str) -> None:
    """Fail on an unknown game before anything is created; the env module's message lists the valid ids."""
    from plastic.envs import parse_env_id

    parse_env_id(env_id)


def run_train(args) -> int:
    from plastic import config as config_module
    from plastic.presets import available_presets

    if args.list_presets:
        for name in available_presets():
            print(name)
        return 0
    if args.resume:
        return _resume(args)
    listing = args.list_config or args.describe_config
    if not args.env and not listing:
        raise UserError("--env is required (e.g. --env atari:Pong or --env minatar:breakout), or --resume RUN_DIR")
    seeds = parse_seeds(args) if args.seeds is not None else None
    try:
        method = method_spec(args.method, args.preset, args.methods)
        config = config_module.build(args.env, method.preset, list(method.switches), _cli_overrides(args))
        if not listing:
            _check_env(config.env)
    except ValueError as error:
        raise UserError(str(error)) from None
    if args.list_config:
        print(json.dumps(config_module.to_dict(config), indent=2))
        return 0
    if args.describe_config:
        print("\n".join(config_module.describe(config)))
        return 0
    if seeds is not None:
        configs = [config_module.build(args.env, method.preset, list(method.switches),
                                       {**_cli_overrides(args), "seed": seed})
                   for seed in seeds]
        run_dirs = [Path(args.run_dir.format(seed=c.seed)) if args.run_dir else Path(args.out) / default_run_name(c)
                    for c in configs]
        return _start_group(configs, run_dirs, args.seeds, progress=not args.no_progress)
    run_dir = Path(args.run_dir) if args.run_dir else Path(args.out) / default_run_name(config)
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        raise UserError(f"run directory {run_dir} already exists and is not empty; "
                        f"continue it with --resume {run_dir}, or choose another --run-dir")
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    print(f"run directory: {run_dir}", flush=True)
    try:
        return _run(config, run_dir, resume=False, progress=not args.no_progress)
    except UserError:
        if created and not any(run_dir.iterdir()):
            run_dir.rmdir()  # the run never started: leave nothing behind
        raise


def method_spec(method: str | None, preset: str | None, methods: str):
    """The run's method from `--method SPEC`, or from the older `--preset P --methods a,b`; both given must agree."""
    from plastic.methods import from_preset_and_switches, parse_method

    older = from_preset_and_switches(preset or "base", methods)
    if method is None:
        return older
    spec = parse_method(method, "--method")
    preset_differs = preset is not None and preset != spec.preset
    if preset_differs or (methods.strip() and set(older.switches) != set(spec.switches)):
        given = f"--preset {preset}" if preset_differs else f"--methods {methods}"
        raise ValueError(f"--method {method} and {given} disagree (--method {method} is --preset {spec.preset} "
                         f"--methods {','.join(spec.switches) or '(none)'}); give only --method")
    return spec


def parse_seeds(args) -> list[int]:
    """`--seeds`: distinct non-negative integers and ranges (`0-7`, `0,3,5`); not with --seed or --run-dir."""
    from plastic.sweep.grid import parse_int_list

    if args.seed is not None:
        raise UserError(f"give either --seed (one run) or --seeds (a group), not both (got --seed {args.seed} and "
                        f"--seeds {args.seeds})")
    if args.run_dir and "{seed}" not in args.run_dir:
        raise UserError(f"--seeds gives each seed its own run directory: --run-dir {args.run_dir} names one; put "
                        "{seed} in it (e.g. --run-dir runs/breakout/seed{seed}) or use --out")
    if args.run_dir:
        try:
            args.run_dir.format(seed=0)
        except (KeyError, IndexError, ValueError) as error:
            raise UserError(f"--run-dir {args.run_dir}: only {{seed}} may stand in braces ({error!r}); write a "
                            "literal brace as {{ or }}") from None
    try:
        seeds = parse_int_list(args.seeds, "--seeds", unique=True)
    except ValueError as error:
        raise UserError(str(error)) from None
    if not seeds:
        raise UserError("--seeds: no seed given (e.g. --seeds 0-7 or --seeds 0,3,5)")
    return seeds


def check_group_memory(configs, flag_value: str) -> None:
    """Refuse a group whose replay buffers would not fit in the memory available now (one-line error)."""
    from plastic.runtime import available_memory_bytes
    from plastic.training.setup import env_options, make_agent, make_buffer, resolve_device

    available = available_memory_bytes()
    if available is None:
        return
    from plastic.envs import make_env

    config = configs[0]
    env = make_env(config.env, seed=0, train=True, **env_options(config))
    try:
        per_seed = make_buffer(config, env, make_agent(config, env, resolve_device("cpu"))).nbytes
    finally:
        env.close()
    needed = per_seed * len(configs)
    if needed > 0.9 * available:
        gib = 1 << 30
        raise UserError(f"--seeds {flag_value}: {len(configs)} seeds need about {needed / gib:.1f} GiB of replay "
                        f"memory ({per_seed / gib:.2f} GiB each), more than 90% of the {available / gib:.1f} GiB "
                        f"available; use at most {max(int(0.9 * available // per_seed), 0)} seeds per process")


def _start_group(configs, run_dirs: list[Path], flag_value: str, *, progress: bool) -> int:
    """`plastic train --seeds`: a new seed group, one run directory per seed."""
    from plastic.training.group import write_group_file

    for run_dir in run_dirs:
        if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
            raise UserError(f"run directory {run_dir} already exists and is not empty; continue its group with "
                            f"--resume {run_dir}, or choose another --out or --run-dir")
    try:
        check_group_memory(configs, flag_value)
    except ValueError as error:
        raise UserError(str(error)) from None
    for run_dir in run_dirs:
        run_dir.mkdir(parents=True, exist_ok=True)
    write_group_file(run_dirs)
    print(f"run directories: {', '.join(str(d) for d in run_dirs)}", flush=True)
    return _run_group(configs, run_dirs, resume=False, progress=progress)


def _run_group(configs, run_dirs: list[Path], *, resume: bool, progress: bool) -> int:
    from plastic.training.group import SeedGroupTrainer

    return _train(SeedGroupTrainer(configs, run_dirs, progress=progress), run_dirs[0], resume=resume)


def _resume_group(args, members: list[Path]) -> int:
    """`--resume` of a seed group's member: every unfinished member continues, together."""
    from plastic.training.group import unfinished

    remaining = unfinished(members)
    if not remaining:
        raise UserError(f"--resume {args.resume}: every run of its seed group already finished")
    configs = [_resumable_config(args, run_dir) for run_dir in remaining]
    return _run_group(configs, remaining, resume=True, progress=not args.no_progress)


def _resumable_config(args, run_dir: Path):
    """The saved config of a run that can be continued, with the runtime options --resume may change."""
    from plastic import config as config_module
    from plastic.training.checkpoint import checkpoint_paths
    from plastic.training.loop import CONFIG_FILE, RESULT_FILE

    if not (run_dir / CONFIG_FILE).is_file():
        raise UserError(f"--resume {run_dir}: not a run directory (no {CONFIG_FILE})")
    if (run_dir / RESULT_FILE).exists():
        raise UserError(f"--resume {run_dir}: the run already finished ({RESULT_FILE} exists)")
    if not checkpoint_paths(run_dir):
        raise UserError(f"--resume {run_dir}: no checkpoint to resume from; start it again with --run-dir")
    try:
        config = config_module.load(run_dir / CONFIG_FILE)
        config_module.resolve(config)
    except (ValueError, json.JSONDecodeError) as error:
        raise UserError(f"--resume {run_dir}: bad {CONFIG_FILE}: {error}") from None
    if args.device:
        config.device = args.device
    if args.threads is not None:
        config.threads = args.threads
    if args.keep_replay:
        config.keep_replay = True
    return config


def _resume(args) -> int:
    from plastic.training.group import group_members

    run_dir = Path(args.resume)
    if (args.env or args.overrides or args.method or args.methods or args.steps is not None
            or args.env_steps is not None or args.backbone_checkpoint or args.seeds):
        raise UserError("--resume continues a run with its saved config; --env/--method(s)/--steps/--env-steps/--set/"
                        "--backbone-checkpoint/--seeds cannot be combined with it")
    members = group_members(run_dir)
    if members is not None:
        return _resume_group(args, members)
    return _run(_resumable_config(args, run_dir), run_dir, resume=True, progress=not args.no_progress)


def _run(config, run_dir: Path, *, resume: bool, progress: bool) -> int:
    from plastic.training.loop import Trainer

    return _train(Trainer(config, run_dir, progress=progress), run_dir, resume=resume)


def _train(trainer, run_dir: Path, *, resume: bool) -> int:
    """Run a `Trainer` or a `SeedGroupTrainer` (whose `--resume` is any member's `run_dir`); SIGINT/SIGTERM end it
    with a checkpoint, the command to continue and exit status 128 + the signal."""
    from plastic.training.loop import TrainingInterrupted

    try:
        trainer.run(resume=resume)
    except TrainingInterrupted as stop:
        print(f"\n{stop}\nresume with: plastic train --resume {run_dir}", file=sys.stderr, flush=True)
        return 128 + stop.signum
    except ValueError as error:
        # Bad input discovered while building (e.g. no CUDA device, unreadable checkpoint).
        raise UserError(str(error)) from None
    return 0


def run_eval(args) -> int:
    import numpy as np

    from plastic import config as config_module
    from plastic.training.checkpoint import load_latest_checkpoint
    from plastic.training.evaluation import evaluate
    from plastic.training.files import atomic_write_text
    from plastic.training.loop import CONFIG_FILE
    from plastic.training.setup import env_options, human_normalized, make_agent, resolve_device
    from plastic.training.seeding import RandomStreams

    run_dir = Path(args.run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise UserError(f"{run_dir}: not a run directory (no {CONFIG_FILE})")
    try:
        config = config_module.resolve(config_module.load(run_dir / CONFIG_FILE))
        loaded = load_latest_checkpoint(run_dir)
        if loaded is None:
            raise ValueError(f"{run_dir} has no readable checkpoint")
        state, path = loaded
        device = resolve_device(args.device)
    except (ValueError, json.JSONDecodeError) as error:
        raise UserError(str(error)) from None
    from plastic.envs import make_env

    env = make_env(config.env, seed=config.seed, train=False, **env_options(config))
    agent = make_agent(config, env, device)
    env.close()
    agent.load_state_dict(state["agent"])
    episodes = args.eval_episodes or config.eval_episodes
    seed = config.seed if args.seed is None else args.seed
    rng, env_seed = RandomStreams(seed).evaluation(0)  # the run's final evaluation, for the run's seed
    returns = evaluate(agent.evaluation_policy(rng), config.env, episodes=episodes, num_envs=config.eval_envs,
                       seed=env_seed, env_options=env_options(config))
    mean = float(np.mean(returns))
    out = {"env": config.env, "method": config.method_label, "seed": seed, "checkpoint": path.name,
           "step": state["step"], "eval_returns": returns, "eval_mean": mean,
           "hns": human_normalized(config.env, mean)}
    target = run_dir / f"eval_step{state['step']}.json"
    atomic_write_text(target, json.dumps(out, indent=2) + "\n")
    print(f"{config.env} {config.method_label} step {state['step']:,}: eval return {mean:.2f} "
          f"over {len(returns)} episodes -> {target}")
    return 0
