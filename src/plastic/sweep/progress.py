"""What a running sweep shows and holds: the progress line (runs finished / running / failed / pending, steps/s,
ETA) and the lock that keeps one sweep command per sweep directory."""

from __future__ import annotations

import datetime
import fcntl
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from plastic.sweep.manifest import Manifest


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


def _format_duration(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(seconds)))


class Progress:
    """Trials finished/running/failed, aggregate agent steps/s since this command started, and the ETA.

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
            f"{counts['failed']} failed, {counts['pending']} pending | {rate:,.0f} steps/s | "
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
