"""Specifications of the hyper-parameter selection: the paper's grids, validation-only scoring, best = argmax."""

import pytest

from plastic.synthetic import selection
from plastic.synthetic.experiment import Method, RunConfig
from plastic.synthetic.selection import grid, select
from test_synthetic_experiment import tiny_config, tiny_dataset


def test_grid_sizes_follow_the_paper():
    assert len(grid(RunConfig(method=Method.parse("base")))) == 25
    assert len(grid(RunConfig(method=Method.parse("sam")))) == 75
    assert len(grid(RunConfig(method=Method.parse("reset")))) == 75
    settings = grid(RunConfig(method=Method.parse("plastic")))
    assert len(settings) == 225
    assert {s.rho for s in settings} == {0.1, 0.03, 0.01} and {s.reset_interval for s in settings} == {5, 10, 20}
    assert {s.lr for s in settings} == {1e-1, 1e-2, 1e-3, 1e-4, 1e-5} == {s.weight_decay for s in settings}


def test_select_picks_the_best_mean_validation_accuracy(monkeypatch):
    monkeypatch.setattr(selection, "LR_GRID", (1e-1, 1e-5))
    monkeypatch.setattr(selection, "WEIGHT_DECAY_GRID", (1e-4,))
    configs = [tiny_config(method=Method.parse("base"), updates_per_phase=8)]
    best, table = select(tiny_dataset(n_train=96), configs, seeds=[0, 1], workers=1)
    assert [row["lr"] for row in table] == [1e-1, 1e-5] and all(row["seeds"] == 2 for row in table)
    winner = max(table, key=lambda row: row["validation_accuracy"])
    assert best[0].lr == winner["lr"] and best[0].method.name == "base"


def test_test_set_is_not_used_for_selection(monkeypatch):
    seen = []
    monkeypatch.setattr(selection, "run_many", lambda dataset, runs, **kw: seen.append(dataset) or [
        dict(phase=c.phases - 1, test_accuracy=0.5) for c, _ in runs])
    dataset = tiny_dataset()
    select(dataset, [tiny_config()], seeds=[0], workers=1)
    assert len(seen[0].test_labels) == pytest.approx(0.1 * len(dataset.train_labels), abs=1)
    assert seen[0].name == "tiny-validation"
