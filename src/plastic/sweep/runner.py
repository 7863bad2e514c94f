"""Running a sweep: launch the unfinished trials, retry failed attempts, record statuses, show progress.

Resumable and idempotent by construction: each trial's run directory says what to do with it.
- `result.json` present: finished. Never launched again, never touched.
- a checkpoint but no `result.json`: interrupted. `plastic train --resume DIR` continues it.
- neither: removed (whatever is there is a start that saved nothing) and started fresh with `--run-dir DIR`.
An attempt that exits non-zero, or whose Ray worker dies, is retried up to `retries` more times in this run of the
command; exit status 2 is a user error (`plastic train` rejected its arguments), which no retry can fix. A trial
that keeps failing is marked `failed` and reported; the others go on. Each trial's output is appended to
`<sweep>/logs/<trial id>.log`, outside the run directory, so that a fresh restart neither deletes the log of the
attempt that failed nor trips `--run-dir`'s refusal of a non-empty directory.

With `seeds_per_trial` above 1, the unit launched is a `TrialGroup`: one `plastic train --seeds a,b,... --run-dir
<...>/seed{seed}` process for the group's unfinished seeds, each seed in the run directory it would have alone. The
same rules hold for the group: its finished seeds are left alone; the unfinished ones continue together with
`plastic train --resume <one of them>` when they share a checkpoint step (the group's resume skips the finished
members), else all of them are removed and started again together. An attempt's outcome is every unfinished seed's;
its log is `<sweep>/logs/<group id>.log`. Statuses and progress stay per seed run.
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from plastic.sweep.execution import Launch, LocalExecutor, RayExecutor, local_cpu_count, parse_address
from plastic.sweep.grid import Trial, TrialGroup
from plastic.sweep.manifest import Manifest, TrialRecord, now
from plastic.sweep.progress import Progress, SweepLock

USER_ERROR_EXIT_STATUS = 2


@dataclass(frozen=True)
class SweepOptions:
    """How to run a sweep (not what: that is the manifest's grid).

    address: None = a local Ray started in-process; "auto" or "HOST:PORT" or "ray://HOST:PORT" = an existing cluster.
    backend: "ray", "local" (subprocesses, no Ray), or "auto" (Ray when installed, else local).
    cpus_per_trial / gpus_per_trial: resources each trial reserves; the trial gets ceil(cpus_per_trial) threads and
    runs on cuda when gpus_per_trial > 0 (fractions share a GPU).
    max_concurrent: cap on trials at once (None = as many as the resources allow).
    retries: extra attempts after a failed one, per trial, per run of the command.
    progress_every: seconds between progress lines (a line is also printed on every status change).
    """

    address: str | None = None
    backend: str = "auto"
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None
    retries: int = 2
    progress_every: float = 10.0

    def __post_init__(self):
        if self.backend not in ("auto", "ray", "local"):
            raise ValueError(f"backend must be auto, ray or local, got {self.backend!r}")
        if not self.cpus_per_trial > 0:
            raise ValueError(f"--cpus-per-trial must be positive, got {self.cpus_per_trial:g}")
        if self.gpus_per_trial < 0 or (self.gpus_per_trial > 1 and self.gpus_per_trial != int(self.gpus_per_trial)):
            raise ValueError(
                f"--gpus-per-trial must be a fraction in [0, 1] or a whole number, got {self.gpus_per_trial:g}"
            )
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise ValueError(f"--max-concurrent must be at least 1, got {self.max_concurrent}")
        if self.retries < 0:
            raise ValueError(f"--retries must be 0 or more, got {self.retries}")
        if self.address is not None:
            parse_address(self.address)

    @property
    def threads(self) -> int:
        return max(1, math.ceil(self.cpus_per_trial))

    @property
    def device(self) -> str:
        # Explicit, never "auto": a trial that reserved no GPU must not take one.
        return "cuda" if self.gpus_per_trial > 0 else "cpu"


# (trial, run_dir, resume, train_args, options) -> the arguments of `python` that run one attempt.
TrialCommand = Callable[[Trial, Path, bool, list[str], SweepOptions], list[str]]
# (trials, run_dirs, resume, train_args, options) -> the same for one attempt at a group's unfinished seeds.
GroupCommand = Callable[[list[Trial], list[Path], bool, list[str], SweepOptions], list[str]]


def _common_args(options: SweepOptions) -> list[str]:
    return ["--device", options.device, "--threads", str(options.threads), "--no-progress"]


def _setting_args(trial: Trial) -> tuple[list[str], list[str]]:
    """(env, method and replay ratio; budget) of `plastic train` for `trial`'s setting."""
    switches = ["--methods", ",".join(trial.switches)] if trial.switches else []
    budget = ["--steps", str(trial.steps)] if trial.env_steps is None else ["--env-steps", str(trial.env_steps)]
    setting = ["--env", trial.env, "--preset", trial.preset, *switches, "--replay-ratio", str(trial.replay_ratio)]
    return setting, budget


def train_command(trial: Trial, run_dir: Path, resume: bool, train_args: list[str], options: SweepOptions) -> list[str]:
    """`python -m plastic train ...` for one attempt: a fresh run in `run_dir`, or `--resume` of it."""
    if resume:
        return ["-m", "plastic", "train", "--resume", str(run_dir), *_common_args(options)]
    setting, budget = _setting_args(trial)
    return [
        "-m", "plastic", "train", *setting, "--seed", str(trial.seed), *budget,
        "--run-dir", str(run_dir), *_common_args(options), *train_args,
    ]  # fmt: skip


def run_dir_pattern(run_dir: Path) -> str:
    """`plastic train --run-dir`'s `{seed}` pattern of the runs next to `run_dir` (`.../rr2/seed{seed}`); braces in
    the sweep's own path are doubled, so `str.format` gives them back unchanged."""
    parent = str(run_dir.parent).replace("{", "{{").replace("}", "}}")
    return f"{parent}/seed{{seed}}"


def group_train_command(trials: list[Trial], run_dirs: list[Path], resume: bool, train_args: list[str],
                        options: SweepOptions) -> list[str]:  # fmt: skip
    """`python -m plastic train ...` for one attempt at a group's unfinished seeds: `--seeds a,b,...` with their run
    directories' `{seed}` pattern, or `--resume` of the first (which continues the group's other unfinished seeds)."""
    if resume:
        return ["-m", "plastic", "train", "--resume", str(run_dirs[0]), *_common_args(options)]
    setting, budget = _setting_args(trials[0])
    seeds = ",".join(str(trial.seed) for trial in trials)
    return [
        "-m", "plastic", "train", *setting, "--seeds", seeds, *budget,
        "--run-dir", run_dir_pattern(run_dirs[0]), *_common_args(options), *train_args,
    ]  # fmt: skip


def is_finished(run_dir: Path) -> bool:
    return (run_dir / "result.json").is_file()


def has_checkpoint(run_dir: Path) -> bool:
    """Whether `plastic train --resume run_dir` has a checkpoint to continue from (its own rule when installed)."""
    try:
        from plastic.training.checkpoint import checkpoint_paths
    except ImportError:
        checkpoints = run_dir / "checkpoints"
        return checkpoints.is_dir() and any(checkpoints.glob("step_*.pt"))
    return bool(checkpoint_paths(run_dir))


def group_can_resume(run_dirs: list[Path]) -> bool:
    """Whether `plastic train --resume run_dirs[0]` continues exactly these unfinished seeds of a group: the group
    file names them as its unfinished members, and they share a checkpoint step. A group killed before all its
    members wrote their first checkpoint shares none, and starts again."""
    from plastic.training.group import common_checkpoint, group_members, unfinished

    members = group_members(run_dirs[0])
    if members is None:
        return len(run_dirs) == 1 and has_checkpoint(run_dirs[0])
    if {path.resolve() for path in unfinished(members)} != {path.resolve() for path in run_dirs}:
        return False
    try:
        common_checkpoint(run_dirs)
    except ValueError:
        return False
    return True


def make_executor(options: SweepOptions):
    """The executor `options` ask for: Ray when installed (or required), else local subprocesses."""
    backend = options.backend
    if backend == "auto":
        try:
            import ray  # noqa: F401

            backend = "ray"
        except ImportError:
            backend = "local"
    if backend == "local":
        if options.address is not None:
            raise ValueError("--address needs Ray: pip install 'plastic-rl[sweep]'")
        if options.gpus_per_trial > 0:
            raise ValueError("--gpus-per-trial needs Ray, which shares out the GPUs: pip install 'plastic-rl[sweep]'")
        fit = math.floor(local_cpu_count() / options.cpus_per_trial + 1e-9)
        if fit < 1:
            raise ValueError(
                f"--cpus-per-trial {options.cpus_per_trial:g} exceeds this machine's {local_cpu_count()} CPUs"
            )
        return LocalExecutor(min(fit, options.max_concurrent or fit))
    try:
        import ray  # noqa: F401
    except ImportError:
        raise ValueError("Ray is not installed: pip install 'plastic-rl[sweep]', or use --backend local") from None
    return RayExecutor(options.address, options.cpus_per_trial, options.gpus_per_trial, options.max_concurrent)


def _last_log_line(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def unit_id(manifest: Manifest, group: TrialGroup) -> str:
    """The id of the process that trains `group`: its trial's id alone (one seed per trial), else the group's."""
    return group.trials[0].id if manifest.seeds_per_trial == 1 else group.id


def units(manifest: Manifest) -> list[tuple[str, list[TrialRecord]]]:
    """(id, records) of every process of the sweep, in launch order: one per trial, or one per `TrialGroup`."""
    return [(unit_id(manifest, group), [manifest.trials[trial.id] for trial in group.trials])
            for group in manifest.groups()]


def refresh_from_disk(manifest: Manifest) -> None:
    """Statuses from the run directories: finished ones are finished; every other trial is pending for this run
    (a `running` status left by a killed sweep, and a `failed` one, which gets a new round of attempts)."""
    for record in manifest.trials.values():
        if is_finished(manifest.run_dir(record.trial)):
            record.status, record.error = "finished", None
        elif record.status != "pending":
            record.status = "pending"


def run_sweep(
    manifest: Manifest,
    options: SweepOptions,
    command: TrialCommand = train_command,
    executor_factory: Callable[[SweepOptions], object] = make_executor,
    stream: TextIO | None = None,
    group_command: GroupCommand = group_train_command,
) -> Manifest:
    """Run every unfinished trial of `manifest` to completion or failure; returns the manifest, saved.

    `command` builds each attempt's `python` arguments (tests substitute a fake trainer), `group_command` those of a
    group's attempt when the manifest packs several seeds per trial; progress goes to `stream` (default stderr)."""
    stream = stream if stream is not None else sys.stderr
    with SweepLock(manifest.directory):
        refresh_from_disk(manifest)
        manifest.save()
        queue = [(name, [record for record in records if record.status == "pending"])
                 for name, records in units(manifest)]
        queue = [(name, records) for name, records in queue if records]
        if not queue:
            Progress(manifest, stream).show()
            return manifest
        executor = executor_factory(options)
        progress = Progress(manifest, stream)  # after the executor: Ray's start-up is not the trials' time
        runs = sum(len(records) for _, records in queue)
        what = f"{len(queue)} trials" if manifest.seeds_per_trial == 1 else \
            f"{runs} runs in {len(queue)} trials of up to {manifest.seeds_per_trial} seeds"
        print(
            f"sweep: {what} to run on {executor.description}, up to {executor.capacity} at a time "
            f"({options.cpus_per_trial:g} CPUs, {options.gpus_per_trial:g} GPUs each)", file=stream, flush=True,
        )  # fmt: skip
        attempts_now = {name: 0 for name, _ in queue}  # the retry budget is per run of the command
        running: dict[str, list[TrialRecord]] = {}
        shown_at, next_line = -math.inf, 0.0
        try:
            while queue or running:
                changed = False
                while queue and len(running) < executor.capacity:
                    name, records = queue.pop(0)
                    executor.submit(_launch(manifest, name, records, command, group_command, options))
                    running[name] = records
                    for record in records:
                        record.status, record.started_at, record.finished_at = "running", now(), None
                        record.attempts += 1
                    attempts_now[name] += 1
                    changed = True
                for name, outcome in executor.wait(timeout=max(0.05, min(1.0, next_line - time.monotonic()))):
                    records = running.pop(name)
                    left = _record_outcome(manifest, name, records, outcome, attempts_now[name], options.retries,
                                           stream)  # fmt: skip
                    if left:
                        queue.insert(0, (name, left))
                    changed = True
                if changed:
                    manifest.save()
                    next_line = min(next_line, shown_at + 1.0)  # show changes, at most one line a second
                if time.monotonic() >= next_line:
                    progress.show()
                    shown_at = time.monotonic()
                    next_line = shown_at + options.progress_every
        finally:
            executor.shutdown()
            for records in running.values():  # interrupted: these resume from their checkpoints next time
                for record in records:
                    record.status = "pending"
            manifest.save()
        progress.show()
    return manifest


def _record_outcome(manifest: Manifest, name: str, records: list[TrialRecord], outcome: int | BaseException,
                    attempts: int, retries: int, stream: TextIO) -> list[TrialRecord]:  # fmt: skip
    """Set the statuses of an attempt's trials after it ended; returns those to attempt again (the unfinished ones,
    unless the attempt is out of retries or was a user error)."""
    left = []
    for record in records:
        record.finished_at = now()
        if is_finished(manifest.run_dir(record.trial)):
            record.status, record.error = "finished", None
        else:
            left.append(record)
    if not left:
        return []
    log = _log_path(manifest, name)
    if isinstance(outcome, BaseException):
        first_line = (str(outcome).strip().splitlines() or [type(outcome).__name__])[0]
        why = f"worker lost: {first_line}"
    elif outcome == 0:
        why = "exited 0 but wrote no result.json"
    else:
        why = f"exit status {outcome}: {_last_log_line(log)}"
    failed = outcome == USER_ERROR_EXIT_STATUS or attempts > retries
    for record in left:
        record.status, record.error = ("failed", f"{why} (log: {log})") if failed else ("pending", why)
    if failed:
        print(f"sweep: {name} FAILED after {attempts} attempt(s): {why}", file=stream, flush=True)
        return []
    print(f"sweep: {name} attempt {attempts} failed ({why}); retrying", file=stream, flush=True)
    return left


def _log_path(manifest: Manifest, name: str) -> Path:
    return manifest.directory / "logs" / f"{name}.log"


def attempt_command(manifest: Manifest, records: list[TrialRecord], options: SweepOptions,
                    command: TrialCommand = train_command, group_command: GroupCommand = group_train_command,
                    prepare: bool = False) -> tuple[bool, list[str]]:  # fmt: skip
    """(resume, python arguments) of the next attempt at `records`, a trial or a group's unfinished seeds: resume
    from the checkpoint, or start fresh. `prepare` clears the run directories of a fresh start first (never
    finished, checked by the caller, and saved nothing the trial can continue from) and gives the command absolute
    paths."""
    run_dirs = [manifest.run_dir(record.trial) for record in records]
    grouped = manifest.seeds_per_trial > 1
    resume = group_can_resume(run_dirs) if grouped else has_checkpoint(run_dirs[0])
    if prepare and not resume:
        for run_dir in run_dirs:
            if run_dir.exists():
                shutil.rmtree(run_dir)
            run_dir.parent.mkdir(parents=True, exist_ok=True)
    if prepare:
        run_dirs = [run_dir.resolve() for run_dir in run_dirs]  # the process may start in another directory
    if grouped:
        return resume, group_command([record.trial for record in records], run_dirs, resume, manifest.train_args,
                                     options)  # fmt: skip
    return resume, command(records[0].trial, run_dirs[0], resume, manifest.train_args, options)


def _launch(manifest: Manifest, name: str, records: list[TrialRecord], command: TrialCommand,
            group_command: GroupCommand, options: SweepOptions) -> Launch:  # fmt: skip
    """The next attempt at the trial `name` (its unfinished `records`)."""
    _, python_args = attempt_command(manifest, records, options, command, group_command, prepare=True)
    return Launch(name, python_args, str(_log_path(manifest, name).resolve()), options.threads)
