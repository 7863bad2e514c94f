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
"""

from __future__ import annotations

import datetime
import fcntl
import json
import math
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from plastic.sweep.execution import Launch, LocalExecutor, RayExecutor, local_cpu_count, parse_address
from plastic.sweep.grid import Trial
from plastic.sweep.manifest import Manifest, TrialRecord, now

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


def train_command(trial: Trial, run_dir: Path, resume: bool, train_args: list[str], options: SweepOptions) -> list[str]:
    """`python -m plastic train ...` for one attempt: a fresh run in `run_dir`, or `--resume` of it."""
    common = ["--device", options.device, "--threads", str(options.threads), "--no-progress"]
    if resume:
        return ["-m", "plastic", "train", "--resume", str(run_dir), *common]
    switches = ["--methods", ",".join(trial.switches)] if trial.switches else []
    budget = ["--steps", str(trial.steps)] if trial.env_steps is None else ["--env-steps", str(trial.env_steps)]
    return [
        "-m", "plastic", "train", "--env", trial.env, "--preset", trial.preset, *switches,
        "--replay-ratio", str(trial.replay_ratio), "--seed", str(trial.seed), *budget,
        "--run-dir", str(run_dir), *common, *train_args,
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


def last_step(run_dir: Path) -> int:
    """The latest `step` in the run's `metrics.jsonl` (0 when there is none yet); reads only the file's tail."""
    path = run_dir / "metrics.jsonl"
    try:
        with open(path, "rb") as file:
            file.seek(0, 2)
            size = file.tell()
            file.seek(max(0, size - 65536))
            lines = file.read().splitlines()
    except OSError:
        return 0
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            continue  # a line being written, or one cut by the tail
    return 0


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


def _format_duration(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(seconds)))


class Progress:
    """Trials finished/running/failed, aggregate env-steps/s since this command started, and the ETA.

    The rate counts, per trial, the steps above the lowest step seen since this command started: a trial resumed from
    its last checkpoint goes back below the step it had logged (its metrics.jsonl is cut back to the checkpoint), and
    only what it computes from there on is progress, never a negative rate. `clock`: seconds (tests pass their own)."""

    def __init__(self, manifest: Manifest, stream: TextIO, clock: Callable[[], float] = time.monotonic):
        self.manifest, self.stream, self.clock = manifest, stream, clock
        self.start_time = clock()
        self._lowest: dict[str, int] = {}  # trial id -> its lowest step seen since this command started
        self._steps()

    def _steps(self) -> tuple[int, int, int]:
        """(env steps done, env steps made since this command started, env steps still to do) over the trials not
        failed."""
        done = made = remaining = 0
        for trial_id, record in self.manifest.trials.items():
            if record.status == "failed":
                continue
            step = record.trial.steps
            if record.status != "finished":
                step = min(step, last_step(self.manifest.run_dir(record.trial)))
                remaining += record.trial.steps - step
            lowest = self._lowest[trial_id] = min(step, self._lowest.get(trial_id, step))
            done, made = done + step, made + step - lowest
        return done, made, remaining

    def steps_done(self) -> int:
        return self._steps()[0]

    def line(self) -> str:
        counts = self.manifest.counts()
        _, made, remaining = self._steps()
        elapsed = self.clock() - self.start_time
        rate = made / elapsed if elapsed > 0 else 0.0
        eta = _format_duration(remaining / rate) if rate > 0 else "?"
        return (
            f"sweep: {counts['finished']}/{len(self.manifest.trials)} finished, {counts['running']} running, "
            f"{counts['failed']} failed, {counts['pending']} pending | {rate:,.0f} env-steps/s | "
            f"elapsed {_format_duration(elapsed)} | ETA {eta}"
        )

    def show(self) -> None:
        print(self.line(), file=self.stream, flush=True)


class SweepLock:
    """One sweep command per sweep directory at a time. An OS file lock: it goes away with the process holding it,
    so a killed sweep never leaves a stale lock behind."""

    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self._file = open(directory / ".sweep.lock", "w")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            raise ValueError(f"another `plastic sweep` is running on {directory}") from None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()


def _last_log_line(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


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
) -> Manifest:
    """Run every unfinished trial of `manifest` to completion or failure; returns the manifest, saved.

    `command` builds each attempt's `python` arguments (tests substitute a fake trainer); progress goes to `stream`
    (default stderr)."""
    stream = stream if stream is not None else sys.stderr
    with SweepLock(manifest.directory):
        refresh_from_disk(manifest)
        manifest.save()
        queue = [record for record in manifest.trials.values() if record.status == "pending"]
        if not queue:
            Progress(manifest, stream).show()
            return manifest
        executor = executor_factory(options)
        progress = Progress(manifest, stream)  # after the executor: Ray's start-up is not the trials' time
        print(
            f"sweep: {len(queue)} trials to run on {executor.description}, up to {executor.capacity} at a time "
            f"({options.cpus_per_trial:g} CPUs, {options.gpus_per_trial:g} GPUs each)", file=stream, flush=True,
        )  # fmt: skip
        attempts_now = {record.trial.id: 0 for record in queue}  # the retry budget is per run of the command
        running: dict[str, TrialRecord] = {}
        shown_at, next_line = -math.inf, 0.0
        try:
            while queue or running:
                changed = False
                while queue and len(running) < executor.capacity:
                    record = queue.pop(0)
                    executor.submit(_launch(manifest, record, command, options))
                    running[record.trial.id] = record
                    record.status, record.started_at, record.finished_at = "running", now(), None
                    record.attempts += 1
                    attempts_now[record.trial.id] += 1
                    changed = True
                for trial_id, outcome in executor.wait(timeout=max(0.05, min(1.0, next_line - time.monotonic()))):
                    record = running.pop(trial_id)
                    retry = _record_outcome(manifest, record, outcome, attempts_now[trial_id], options.retries, stream)
                    if retry:
                        queue.insert(0, record)
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
            for record in running.values():  # interrupted: these resume from their checkpoints next time
                record.status = "pending"
            manifest.save()
        progress.show()
    return manifest


def _record_outcome(manifest: Manifest, record: TrialRecord, outcome: int | BaseException, attempts: int,
                    retries: int, stream: TextIO) -> bool:  # fmt: skip
    """Set the trial's status after an attempt ended; True when it should be attempted again."""
    record.finished_at = now()
    if is_finished(manifest.run_dir(record.trial)):
        record.status, record.error = "finished", None
        return False
    log = _log_path(manifest, record.trial)
    if isinstance(outcome, BaseException):
        first_line = (str(outcome).strip().splitlines() or [type(outcome).__name__])[0]
        why = f"worker lost: {first_line}"
    elif outcome == 0:
        why = "exited 0 but wrote no result.json"
    else:
        why = f"exit status {outcome}: {_last_log_line(log)}"
    if outcome == USER_ERROR_EXIT_STATUS or attempts > retries:
        record.status, record.error = "failed", f"{why} (log: {log})"
        print(f"sweep: {record.trial.id} FAILED after {attempts} attempt(s): {why}", file=stream, flush=True)
        return False
    record.status, record.error = "pending", why
    print(f"sweep: {record.trial.id} attempt {attempts} failed ({why}); retrying", file=stream, flush=True)
    return True


def _log_path(manifest: Manifest, trial: Trial) -> Path:
    return manifest.directory / "logs" / f"{trial.id}.log"


def _launch(manifest: Manifest, record: TrialRecord, command: TrialCommand, options: SweepOptions) -> Launch:
    """The next attempt at `record`'s trial: resume from its checkpoint, or clear the directory and start fresh."""
    run_dir = manifest.run_dir(record.trial)
    resume = has_checkpoint(run_dir)
    if not resume and run_dir.exists():
        shutil.rmtree(run_dir)  # never finished (checked by the caller) and saved nothing worth keeping
    if not resume:
        run_dir.parent.mkdir(parents=True, exist_ok=True)
    python_args = command(record.trial, run_dir.resolve(), resume, manifest.train_args, options)
    return Launch(record.trial.id, python_args, str(_log_path(manifest, record.trial).resolve()), options.threads)
