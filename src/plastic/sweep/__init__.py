"""Sweeps: grids of training runs (envs x methods x replay ratios x seeds), locally or on a Ray cluster.

The paper's results are such grids (26 Atari games x 5-10 seeds x 6-12 methods x replay ratios 2/4/8). Every
trial is an ordinary `plastic train` run directory; the sweep adds the grid, the scheduling, retries, resumption
and a manifest (`sweep.json`), and runs `plastic report` at the end.

- `grid`: env groups, parsing of the grid flags, `Trial` and `expand_grid`; `TrialGroup` and `pack_trials` for
  `--seeds-per-trial`.
- `manifest`: `sweep.json`, the record of the grid, versions and per-trial statuses.
- `execution`: where trials run (Ray tasks, or local processes when Ray is not installed).
- `runner`: `run_sweep`, the loop that launches, retries, records and shows progress.
- `commands`: the `plastic sweep` command line.
"""

from plastic.sweep.commands import register
from plastic.sweep.grid import Trial, env_groups, expand_grid
from plastic.sweep.manifest import Manifest

__all__ = ["Manifest", "Trial", "env_groups", "expand_grid", "register"]
