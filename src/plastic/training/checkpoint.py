"""Checkpoints: periodic, atomic, the last K kept; the newest readable one is used on resume.

A checkpoint holds everything a run needs to continue exactly (on CPU, bit for bit): networks, optimizer (SAM's
base state), replay buffer with its sum tree and RNG, every RNG (torch generator, numpy), the env's full state,
counters (steps, updates — the reset schedule is derived from the update count), and the logger's position.
A truncated or corrupted newest file is detected at load time and the previous one is used, with a warning.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch
from torch.utils._pytree import tree_map

from plastic.training.files import atomic_write

CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step_(\d+)\.pt$")
FORMAT_VERSION = 1


def checkpoint_paths(run_dir: str | Path) -> list[Path]:
    """Checkpoint files of a run, oldest first."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"step_{step:09d}.pt"


def checkpoint_step(path: Path) -> int:
    return int(_NAME.match(path.name).group(1))


def save_checkpoint(run_dir: str | Path, step: int, state: dict, keep: int) -> Path:
    """Write the checkpoint of `step` atomically, then keep only the newest `keep`."""
    path = checkpoint_path(run_dir, step)
    payload = {"format_version": FORMAT_VERSION, "step": step, **_own_storage(state), "complete": True}
    atomic_write(path, lambda handle: torch.save(payload, handle))
    prune_checkpoints(run_dir, keep)
    return path


def _own_storage(state):
    """`state` with every tensor that views a larger storage copied out: torch.save writes a tensor's whole storage,
    and a seed group's weights are rows of tensors stacked over all its seeds (agents/seed_group.py)."""
    def compact(value):
        if isinstance(value, torch.Tensor) and value.untyped_storage().nbytes() > value.nbytes:
            return value.clone()
        return value

    return tree_map(compact, state)


def prune_checkpoints(run_dir: str | Path, keep: int) -> None:
    for old in checkpoint_paths(run_dir)[:-keep]:
        old.unlink(missing_ok=True)


def load_checkpoint(path: str | Path) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or not state.get("complete"):
        raise ValueError(f"{path} is not a complete plastic checkpoint")
    return state


def load_latest_checkpoint(run_dir: str | Path) -> tuple[dict, Path] | None:
    """The newest checkpoint that loads, or None if the run has none. Unreadable newer ones are skipped with one
    warning; if none is readable, a ValueError says why for each file."""
    failures = []
    for path in reversed(checkpoint_paths(run_dir)):
        try:
            loaded = load_checkpoint(path), path
        except Exception as error:  # a truncated zip raises RuntimeError, a garbage file UnpicklingError, ...
            failures.append(f"{path.name} is unreadable ({type(error).__name__}: {str(error).splitlines()[0]})")
            continue
        if failures:
            warnings.warn(f"{'; '.join(failures)}; using {path.name}", stacklevel=2)
        return loaded
    if failures:
        raise ValueError(f"{run_dir} has no readable checkpoint: {'; '.join(failures)}")
    return None
