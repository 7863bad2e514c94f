"""Many synthetic runs: one seed after another in each of `workers` 1-thread processes.

One seed per 1-thread process beats stacking seeds with `torch.func.vmap` on a CPU (the convs become grouped convs;
docs/performance.md). A seed's result does not depend on the worker that ran it (tested).
"""

from __future__ import annotations

import multiprocessing
import queue as queue_module
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import TYPE_CHECKING, Any, Callable, Iterable

import torch

from plastic.runtime import tune_allocator
from plastic.synthetic.data import ImageDataset

if TYPE_CHECKING:
    from plastic.synthetic.experiment import RunConfig
    from plastic.synthetic.runlog import RunLog


_worker_dataset: ImageDataset | None = None
_worker_progress: Any = None


def _init_worker(dataset: ImageDataset, progress: Any) -> None:
    global _worker_dataset, _worker_progress
    torch.set_num_threads(1)
    tune_allocator()
    _worker_dataset, _worker_progress = dataset, progress


def _run_in_worker(config: RunConfig, seed: int) -> list[dict[str, Any]]:
    from plastic.synthetic.experiment import run_seed

    return run_seed(_worker_dataset, config, seed, on_phase=_worker_progress.put)


def run_many(
    dataset: ImageDataset,
    runs: Iterable[tuple[RunConfig, int]],
    workers: int = 1,
    on_phase: Callable[[int], None] | None = None,
    on_run: Callable[[list[dict[str, Any]]], None] | None = None,
    log: RunLog | None = None,
) -> list[dict[str, Any]]:
    """Train every `(config, seed)`; `workers` > 1 spreads them over that many 1-thread processes.

    `on_phase(n)` is called as phases finish (a progress bar), `on_run(rows)` as runs finish (checkpointing results).
    With a `log` (`runlog.py`), a run found there is not trained again (its phases count as done at once) and every
    newly trained run is added to it. Rows come back in the order of `runs`.
    """
    from plastic.synthetic.experiment import run_seed

    runs = list(runs)
    results: list[list[dict[str, Any]] | None] = [None] * len(runs)
    keys = [log.key(dataset, config, seed) for config, seed in runs] if log is not None else []
    todo = []
    for position, (config, _) in enumerate(runs):
        results[position] = log.get(keys[position]) if log is not None else None
        if results[position] is None:
            todo.append(position)
            continue
        if on_phase is not None:
            on_phase(config.phases)
        if on_run is not None:
            on_run(results[position])

    def finished(position: int, rows: list[dict[str, Any]]) -> None:
        results[position] = rows
        if log is not None:
            log.add(keys[position], rows)
        if on_run is not None:
            on_run(rows)

    if workers <= 1 or len(todo) <= 1:
        tune_allocator()
        for position in todo:
            finished(position, run_seed(dataset, *runs[position], on_phase))
        return [row for rows in results for row in rows]  # type: ignore[union-attr]

    context = multiprocessing.get_context("spawn")
    progress = context.Queue()
    with ProcessPoolExecutor(
        min(workers, len(todo)), mp_context=context, initializer=_init_worker, initargs=(dataset, progress)
    ) as pool:
        pending = {pool.submit(_run_in_worker, *runs[position]): position for position in todo}
        while pending:
            done, _ = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            _drain(progress, on_phase)
            for future in done:
                finished(pending.pop(future), future.result())
        _drain(progress, on_phase)
    return [row for rows in results for row in rows]  # type: ignore[union-attr]


def _drain(progress: Any, on_phase: Callable[[int], None] | None) -> None:
    while True:
        try:
            count = progress.get_nowait()
        except queue_module.Empty:
            return
        if on_phase is not None:
            on_phase(count)
