"""Hyper-parameter selection as in the paper (§3, App. A.2), done on held-out data.

Grids: lr and weight decay over {1e-1, 1e-2, 1e-3, 1e-4, 1e-5} for every method; SAM's rho over {0.1, 0.03, 0.01};
the reset interval over {5, 10, 20} chunks (phases) for Reset (and ReDo, which shares its schedule).

How the best setting is picked (the paper does not say; this is our protocol): a validation set is held out from the
*training* set (`ImageDataset.validation_split`, 10% by default, fixed seed 0); every setting is trained on the rest
for `seeds` seeds (different from the reporting seeds) with the same phases and updates, and scored by the mean over
seeds of the final-phase validation accuracy. The highest score wins (ties: the earlier setting in grid order). The
test set is never used for selection; the chosen setting is then run on the full training set and reported on test.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from typing import Any, Callable

import numpy as np

from plastic.synthetic.data import ImageDataset
from plastic.synthetic.experiment import RunConfig, run_many

LR_GRID = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
WEIGHT_DECAY_GRID = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
RHO_GRID = (0.1, 0.03, 0.01)
RESET_INTERVAL_GRID = (5, 10, 20)


def grid(config: RunConfig) -> list[RunConfig]:
    """Every setting of the paper's sweep that matters for `config.method` (25, x3 with SAM, x3 with Reset/ReDo)."""
    rhos = RHO_GRID if "sam" in config.method else (config.rho,)
    intervals = RESET_INTERVAL_GRID if ("reset" in config.method or "redo" in config.method) else (config.reset_interval,)
    return [
        replace(config, lr=lr, weight_decay=wd, rho=rho, reset_interval=interval)
        for lr, wd, rho, interval in itertools.product(LR_GRID, WEIGHT_DECAY_GRID, rhos, intervals)
    ]


def select(
    dataset: ImageDataset,
    configs: list[RunConfig],
    seeds: list[int],
    validation_fraction: float = 0.1,
    workers: int = 1,
    on_phase: Callable[[int], None] | None = None,
) -> tuple[list[RunConfig], list[dict[str, Any]]]:
    """Best setting for each config (one per method/scenario) and the score table (one row per setting)."""
    validation = dataset.validation_split(validation_fraction, seed=0)
    settings = [grid(config) for config in configs]
    runs = [(setting, seed) for group in settings for setting in group for seed in seeds]
    rows = run_many(validation, runs, workers=workers, on_phase=on_phase)
    finals = [row["test_accuracy"] for row in rows if row["phase"] == runs[0][0].phases - 1]
    scores = np.asarray(finals).reshape(len(runs) // len(seeds), len(seeds)).mean(axis=1)
    best, table, position = [], [], 0
    for group in settings:
        group_scores = scores[position : position + len(group)]
        best.append(group[int(np.argmax(group_scores))])
        for setting, score in zip(group, group_scores):
            table.append(
                dict(scenario=setting.scenario, method=setting.method.name, **setting.hyperparameters(),
                     validation_accuracy=float(score), seeds=len(seeds))
            )
        position += len(group)
    return best, table
