"""Several seeds of one config trained in lock-step in one process (`plastic train --seeds 0-7`, docs/multi_seed.md).

Each seed is a whole `Trainer` with its own run directory holding the files of a single-seed run (`config.json`,
`metrics.jsonl`, `tb/`, `checkpoints/`, `result.json`), its own env, replay buffer, hooks and logger. The group
steps them together, and each step's `replay_ratio` updates are batched updates of all seeds at once
(agents/seed_group.py).

Checkpoints. Every member checkpoints at the same steps, and drops its old checkpoints only once all members have
written the new one, so a kill at any point leaves a step that every member has; `--resume` continues the whole group
from the newest such step. `GROUP_FILE` in each member's directory names the group's members, so `plastic train
--resume` of any one of them continues them all. A member that had already finished when the group was stopped is
left as it is; the others continue as a smaller group.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from plastic.agents.seed_group import batched, make_seed_group
from plastic.config import TrainConfig
from plastic.training.checkpoint import checkpoint_path, checkpoint_paths, checkpoint_step, prune_checkpoints
from plastic.training.files import atomic_write_text
from plastic.training.loop import RESULT_FILE, Trainer, TrainingInterrupted, stop_signals

GROUP_FILE = "seed_group.json"


def write_group_file(run_dirs: list[Path]) -> None:
    """Each member's `GROUP_FILE`: the members' directories, relative to that member's own."""
    for run_dir in run_dirs:
        members = [os.path.relpath(member, run_dir) for member in run_dirs]
        atomic_write_text(run_dir / GROUP_FILE, json.dumps({"members": members}, indent=2) + "\n")


def group_members(run_dir: Path) -> list[Path] | None:
    """The member directories of the group `run_dir` belongs to, or None for a single-seed run."""
    path = Path(run_dir) / GROUP_FILE
    if not path.is_file():
        return None
    return [Path(os.path.normpath(Path(run_dir) / name)) for name in json.loads(path.read_text())["members"]]


def common_checkpoint(run_dirs: list[Path]) -> int:
    """The newest step every member has a checkpoint of (the group's last complete checkpoint)."""
    steps = [{checkpoint_step(path) for path in checkpoint_paths(run_dir)} for run_dir in run_dirs]
    common = set.intersection(*steps)
    if not common:
        raise ValueError(f"the seed group's members {', '.join(d.name for d in run_dirs)} have no checkpoint of a "
                         "common step to resume from; start the group again")
    return max(common)


class SeedGroupTrainer:
    """Trains `configs` (one config, several seeds) in lock-step; `run` returns each seed's `result.json` dict."""

    def __init__(self, configs: list[TrainConfig], run_dirs: list[Path], *, progress: bool = True):
        self.trainers = [Trainer(config, run_dir, progress=progress and k == 0)
                         for k, (config, run_dir) in enumerate(zip(configs, run_dirs))]
        self.stop_signal: int | None = None

    def run(self, resume: bool = False) -> list[dict]:
        trainers = self.trainers
        step = common_checkpoint([t.run_dir for t in trainers]) if resume else None
        seeds = ", ".join(str(t.config.seed) for t in trainers)
        if not resume:
            kind = "one batched update" if batched(trainers[0].config) else "updates in turn"
            print(f"seed group: seeds {seeds} in lock-step ({kind}); the header and progress below are seed "
                  f"{trainers[0].config.seed}'s", flush=True)
        for k, trainer in enumerate(trainers):
            checkpoint = None if step is None else checkpoint_path(trainer.run_dir, step)
            trainer.open(resume, checkpoint, quiet=k > 0)
        self.group = make_seed_group([t.agent for t in trainers])
        try:
            with stop_signals(self._on_signal):
                self._loop()
                return [trainer.finish() for trainer in trainers]
        finally:
            for trainer in trainers:
                trainer.close()

    def _on_signal(self, signum, frame) -> None:
        self.stop_signal = signum

    def _loop(self) -> None:
        """`Trainer._loop` for every seed at once: each acts and stores, then all update together, then each seed's
        hooks, logging and (together) checkpoints."""
        trainers, first = self.trainers, self.trainers[0]
        buffers = [trainer.buffer for trainer in trainers]
        replay_ratio = first.config.replay_ratio
        while first.step < first.config.steps:
            metrics = [trainer.env_step() for trainer in trainers]
            if first.updating:
                progress, started = first.update_progress, time.perf_counter()
                for _ in range(replay_ratio):
                    for trainer, found, losses in zip(trainers, metrics, self.group.update(buffers, progress)):
                        found.update(trainer.after_update(losses))
                # Each seed is charged the whole group's time: its updates/s is the per-seed throughput.
                spent = time.perf_counter() - started
                for trainer in trainers:
                    trainer.count_update_time(spent, replay_ratio)
            for trainer, found in zip(trainers, metrics):
                trainer.end_step(found)
            if self.stop_signal is not None:
                raise TrainingInterrupted(self.stop_signal, self._save())
            if first.checkpoint_due:
                self._save()

    def _save(self) -> Path:
        """A checkpoint of every member; old ones are pruned only after all are written. Returns member 0's."""
        keep = self.trainers[0].config.keep_checkpoints
        paths = [trainer.save(keep=keep + 1) for trainer in self.trainers]
        for trainer in self.trainers:
            prune_checkpoints(trainer.run_dir, keep)
        return paths[0]


def unfinished(run_dirs: list[Path]) -> list[Path]:
    return [run_dir for run_dir in run_dirs if not (run_dir / RESULT_FILE).exists()]
