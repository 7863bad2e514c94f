"""Hyper-parameter selection as in the paper (§3, App. A.2), done on held-out data.

Grids: lr and weight decay over {1e-1, 1e-2, 1e-3, 1e-4, 1e-5} for every method; SAM's rho over {0.1, 0.03, 0.01};
the reset interval over {5, 10, 20} chunks (phases) for the methods that reset on a schedule (Reset, ReDo, ...).

How the best setting is picked (the paper does not say; this is our protocol): a validation set is held out from the
*training* set (`ImageDataset.validation_split`, 10% by default, fixed seed 0); every setting is trained on the rest
for `seeds` seeds (different from the reporting seeds) with the same phases and updates, and scored by the mean over
seeds of the final-phase validation accuracy. The highest score wins (ties: the earlier setting in grid order). The
test set is never used for selection; the chosen setting is then run on the full training set and reported on test.

Two protocols (`PROTOCOLS`):
- `full`: every method's whole grid (25 settings, x3 with SAM, x3 with a reset schedule: 225 for PLASTIC).
- `staged`: lr and weight decay are chosen once per scenario on Base (25 settings); then every method's own knobs
  (rho, reset interval: 3 or 9 settings) at Base's lr and weight decay. A method without knobs of its own takes Base's
  setting without further runs. About a tenth of `full`'s cost for the paper's Fig. 3 methods.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any, Callable, Sequence

import numpy as np

from plastic.synthetic.data import ImageDataset
from plastic.synthetic.experiment import Method, RunConfig, run_many
from plastic.synthetic.runlog import RunLog

LR_GRID = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
WEIGHT_DECAY_GRID = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
RHO_GRID = (0.1, 0.03, 0.01)
RESET_INTERVAL_GRID = (5, 10, 20)
PROTOCOLS = ("full", "staged")
SHARED = ("lr", "weight_decay")
OWN = ("rho", "reset_interval")


def _grids() -> dict[str, Sequence[Any]]:  # read at call time: tests narrow the module's grids
    return {"lr": LR_GRID, "weight_decay": WEIGHT_DECAY_GRID, "rho": RHO_GRID, "reset_interval": RESET_INTERVAL_GRID}


def grid(config: RunConfig, names: Sequence[str] = SHARED + OWN) -> list[RunConfig]:
    """Every setting of the paper's sweep over the hyper-parameters in `names` that matter for `config.method` (lr
    and weight decay: 25; x3 with SAM; x3 with a reset schedule); the others keep `config`'s values."""
    grids = _grids()
    varied = [name for name in config.hyperparameters() if name in names]
    return [replace(config, **dict(zip(varied, values))) for values in itertools.product(*(grids[n] for n in varied))]


def _bases(configs: list[RunConfig]) -> dict[str, RunConfig]:
    """scenario -> Base with the first config of that scenario's other settings (the staged protocol's first stage)."""
    bases: dict[str, RunConfig] = {}
    for config in configs:
        bases.setdefault(config.scenario, replace(config, method=Method.parse("base")))
    return bases


def selection_runs(configs: list[RunConfig], protocol: str, seeds: int) -> int:
    """How many training runs `select` makes (the staged protocol's second grids do not depend on the lr chosen)."""
    def searched(grids):
        return sum(len(g) for g in grids if len(g) > 1)

    if protocol == "full":
        return seeds * searched(grid(c) for c in configs)
    return seeds * (searched(grid(c, SHARED) for c in _bases(configs).values())
                    + searched(grid(c, OWN) for c in configs))


def _best(validation: ImageDataset, configs: list[RunConfig], names: Sequence[str], stage: str, seeds: list[int],
          workers: int, on_phase: Callable[[int], None] | None,
          log: RunLog | None) -> tuple[list[RunConfig], list[dict[str, Any]]]:
    settings = [grid(config, names) for config in configs]
    searched = [group for group in settings if len(group) > 1]
    runs = [(setting, seed) for group in searched for setting in group for seed in seeds]
    rows = run_many(validation, runs, workers=workers, on_phase=on_phase, log=log) if runs else []
    finals = [row["test_accuracy"] for row in rows if row["phase"] == configs[0].phases - 1]
    scores = iter(np.asarray(finals).reshape(-1, len(seeds)).mean(axis=1))
    best, table = [], []
    for group in settings:
        if len(group) == 1:  # nothing to choose
            best.append(group[0])
            continue
        group_scores = [next(scores) for _ in group]
        best.append(group[int(np.argmax(group_scores))])
        table.extend(
            dict(stage=stage, scenario=setting.scenario, method=setting.method.name, **setting.hyperparameters(),
                 validation_accuracy=float(score), seeds=len(seeds))
            for setting, score in zip(group, group_scores)
        )
    return best, table


def select(
    dataset: ImageDataset,
    configs: list[RunConfig],
    seeds: list[int],
    validation_fraction: float = 0.1,
    workers: int = 1,
    on_phase: Callable[[int], None] | None = None,
    protocol: str = "full",
    log: RunLog | None = None,
) -> tuple[list[RunConfig], list[dict[str, Any]]]:
    """Best setting for each config (one per method/scenario) and the score table (one row per setting searched:
    `stage`, scenario, method, its hyper-parameters, `validation_accuracy`, seeds). With a `log`, settings trained
    before are read from it (`run_many`)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"selection protocol {protocol!r}; allowed: {', '.join(PROTOCOLS)}")
    validation = dataset.validation_split(validation_fraction, seed=0)
    if protocol == "full":
        return _best(validation, configs, SHARED + OWN, "full", seeds, workers, on_phase, log)
    bases = _bases(configs)
    best_bases, shared_table = _best(validation, list(bases.values()), SHARED, "shared", seeds, workers, on_phase,
                                      log)
    chosen = dict(zip(bases, best_bases))
    configs = [replace(c, lr=chosen[c.scenario].lr, weight_decay=chosen[c.scenario].weight_decay) for c in configs]
    best, own_table = _best(validation, configs, OWN, "own", seeds, workers, on_phase, log)
    return best, shared_table + own_table
