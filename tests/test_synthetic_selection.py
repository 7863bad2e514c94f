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


def test_grid_over_named_hyperparameters_keeps_the_others():
    config = RunConfig(method=Method.parse("plastic"), lr=0.003, weight_decay=0.5)
    own = grid(config, ("rho", "reset_interval"))
    assert len(own) == 9 and {(s.lr, s.weight_decay) for s in own} == {(0.003, 0.5)}
    assert grid(RunConfig(method=Method.parse("crelu"), lr=0.003), ("rho", "reset_interval")) == [
        RunConfig(method=Method.parse("crelu"), lr=0.003)]


def _scripted_runs(made):
    """A stand-in for run_many whose final accuracy prefers lr 1e-5, weight decay 1e-4, rho 0.01 and interval 20."""
    def fake(dataset, runs, **kw):
        made.extend(runs)
        score = lambda c: (c.lr == 1e-5) + (c.weight_decay == 1e-4) + (c.rho == 0.01) + (c.reset_interval == 20)
        return [dict(phase=c.phases - 1, test_accuracy=score(c) / 4) for c, _ in runs]
    return fake


def test_staged_selection_chooses_lr_and_weight_decay_on_base_then_each_methods_own_knobs(monkeypatch):
    made = []
    monkeypatch.setattr(selection, "run_many", _scripted_runs(made))
    configs = [tiny_config(scenario=s, method=Method.parse(m)) for s in ("input", "label")
               for m in ("crelu", "sam", "sam+reset")]
    best, table = select(tiny_dataset(), configs, seeds=[0, 1], workers=1, protocol="staged")
    assert [(b.scenario, b.method.name, b.lr, b.weight_decay) for b in best] == [
        (s, m, 1e-5, 1e-4) for s in ("input", "label") for m in ("crelu", "sam", "sam+reset")]
    assert [b.rho for b in best] == [0.1, 0.01, 0.01] * 2  # crelu keeps the default rho: it has no SAM
    assert [b.reset_interval for b in best] == [1, 1, 20] * 2  # tiny_config's interval where there is no reset
    shared = [row for row in table if row["stage"] == "shared"]
    assert len(shared) == 2 * 25 and {row["method"] for row in shared} == {"base"}
    own = [row for row in table if row["stage"] == "own"]
    assert [(row["scenario"], row["method"]) for row in own] == [
        pair for s in ("input", "label") for pair in [(s, "sam")] * 3 + [(s, "sam+reset")] * 9]
    assert all((row["lr"], row["weight_decay"]) == (1e-5, 1e-4) for row in own)
    assert len(made) == selection.selection_runs(configs, "staged", 2) == 2 * 2 * (25 + 3 + 9)


def test_full_selection_searches_every_methods_whole_grid(monkeypatch):
    made = []
    monkeypatch.setattr(selection, "run_many", _scripted_runs(made))
    configs = [tiny_config(method=Method.parse(m)) for m in ("crelu", "sam+reset")]
    best, table = select(tiny_dataset(), configs, seeds=[0], workers=1, protocol="full")
    assert [(b.lr, b.weight_decay, b.rho, b.reset_interval) for b in best] == [(1e-5, 1e-4, 0.1, 1),
                                                                              (1e-5, 1e-4, 0.01, 20)]
    assert {row["stage"] for row in table} == {"full"} and len(table) == 25 + 225
    assert len(made) == selection.selection_runs(configs, "full", 1) == 250


def test_unknown_selection_protocol_is_refused():
    with pytest.raises(ValueError, match="'half'; allowed: full, staged"):
        select(tiny_dataset(), [tiny_config()], seeds=[0], protocol="half")
