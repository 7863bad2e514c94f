"""The sweep manifest, `<sweep>/sweep.json`: the grid, the versions, and every trial's status.

It is all that `plastic sweep --resume <sweep>` needs to carry on, and it tells a reader what the sweep was. It is
rewritten atomically (temporary file + rename) after every status change, so a sweep killed at any moment leaves a
readable manifest. The run directories stay the source of truth for "finished" (a `result.json`): the statuses
here are a record of what the sweep saw, refreshed from the disk when a sweep starts.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

from plastic.sweep.grid import Trial, TrialGroup, expand_grid, pack_trials

MANIFEST_NAME = "sweep.json"
FORMAT_VERSION = 1
STATUSES = ("pending", "running", "finished", "failed")
_VERSIONED_PACKAGES = ("plastic-rl", "torch", "numpy", "gymnasium", "ale-py", "minatar", "dm-control", "ray")


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def package_versions() -> dict[str, str | None]:
    """Python and the installed versions of the packages a result depends on (None = not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for package in _VERSIONED_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


@dataclass
class TrialRecord:
    """What the sweep knows about one trial. `attempts` counts launches across all runs of the sweep command."""

    trial: Trial
    status: str = "pending"
    attempts: int = 0
    error: str | None = None
    started_at: str | None = None
    finished_at: str | None = None

    def to_dict(self) -> dict:
        return {"id": self.trial.id, "run_dir": f"runs/{self.trial.id}", **self.trial.to_dict(), **{
            key: value for key, value in asdict(self).items() if key != "trial"
        }}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict) -> TrialRecord:
        trial = Trial(**{name: data[name] for name in ("env", "method", "replay_ratio", "seed", "steps")},
                      env_steps=data.get("env_steps"))
        record = cls(trial, **{name: data.get(name) for name in ("error", "started_at", "finished_at")})
        record.status, record.attempts = data.get("status", "pending"), int(data.get("attempts", 0))
        return record


@dataclass
class Manifest:
    """The grid (`envs`, `methods`, `replay_ratios`, `seeds`, `steps`, and `seeds_per_trial` when above 1), the
    extra `plastic train` arguments every trial gets, the execution options last used, and the trials (one per seed
    run) in launch order."""

    directory: Path
    grid: dict
    train_args: list[str]
    options: dict
    trials: dict[str, TrialRecord]
    versions: dict = field(default_factory=package_versions)
    created_at: str = field(default_factory=now)
    updated_at: str = field(default_factory=now)

    @classmethod
    def create(cls, directory: Path, grid: dict, train_args: list[str], options: dict,
               steps: dict[str, int] | None = None) -> Manifest:
        """`steps`: agent steps per env, when the grid's budget is `env_steps` or the domains' defaults."""
        trials = expand_grid(grid["envs"], grid["methods"], grid["replay_ratios"], grid["seeds"],
                             grid["steps"] if steps is None else steps, grid.get("env_steps"))
        pack_trials(trials, int(grid.get("seeds_per_trial", 1)))  # validates --seeds-per-trial
        records = {trial.id: TrialRecord(trial) for trial in trials}
        return cls(Path(directory), dict(grid), list(train_args), dict(options), records)

    @property
    def seeds_per_trial(self) -> int:
        """Seeds trained together by one `plastic train --seeds` process; 1 (one process per seed) when the grid
        does not say, as in manifests written before seed groups."""
        return int(self.grid.get("seeds_per_trial", 1))

    def groups(self) -> list[TrialGroup]:
        """The trials packed into the processes that train them (`grid.pack_trials`)."""
        return pack_trials([record.trial for record in self.trials.values()], self.seeds_per_trial)

    @property
    def path(self) -> Path:
        return self.directory / MANIFEST_NAME

    def run_dir(self, trial: Trial) -> Path:
        return self.directory / "runs" / trial.id

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for record in self.trials.values():
            counts[record.status] += 1
        return counts

    def to_dict(self) -> dict:
        return {
            "format": FORMAT_VERSION,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "grid": self.grid,
            "train_args": self.train_args,
            "options": self.options,
            "versions": self.versions,
            "counts": self.counts(),
            "trials": [record.to_dict() for record in self.trials.values()],
        }

    def save(self) -> None:
        """Write `sweep.json` atomically: a reader (or a later sweep) sees the old or the new file, never half."""
        from plastic.training.files import atomic_write_text

        self.updated_at = now()
        atomic_write_text(self.path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, directory: Path) -> Manifest:
        """Read `<directory>/sweep.json`; a missing or unreadable manifest is a `ValueError` naming the file."""
        path = Path(directory) / MANIFEST_NAME
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ValueError(f"{directory} is not a sweep: no {MANIFEST_NAME} in it") from None
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"cannot read {path}: {error}") from None
        if data.get("format") != FORMAT_VERSION:
            raise ValueError(f"{path}: unsupported manifest format {data.get('format')!r} (expected {FORMAT_VERSION})")
        records = [TrialRecord.from_dict(item) for item in data["trials"]]
        return cls(
            Path(directory), data["grid"], list(data.get("train_args", [])), dict(data.get("options", {})),
            {record.trial.id: record for record in records}, dict(data.get("versions", {})),
            data.get("created_at", now()), data.get("updated_at", now()),
        )  # fmt: skip
