"""`plastic synthetic` continues where it stopped: finished runs are kept in `OUT/runs.jsonl` and never trained twice,
and a continued command ends with the same files as an uninterrupted one."""

import json

import pytest

from plastic.cli import main
from plastic.synthetic import experiment, selection
from plastic.synthetic.data import load_digits
from plastic.synthetic.experiment import RunConfig
from plastic.synthetic.runlog import RunLog


def run_cli(out, *extra):
    return main(["synthetic", "--dataset", "digits", "--phases", "2", "--updates-per-phase", "2", "--probe-every", "0",
                 "--workers", "1", "--no-progress", "--scenario", "label", "--out", str(out), *extra])


@pytest.fixture
def trained(monkeypatch):
    """The (method, seed) of every run trained, in order; `stop_after` makes the next runs raise, like a kill."""
    calls, state = [], {"stop_after": None}
    real = experiment.run_seed

    def counting(dataset, config, seed, on_phase=None):
        if state["stop_after"] is not None and len(calls) >= state["stop_after"]:
            raise KeyboardInterrupt
        calls.append((config.method.name, seed))
        return real(dataset, config, seed, on_phase)

    monkeypatch.setattr(experiment, "run_seed", counting)
    return calls, state


def outputs(out):
    return {name: (out / name).read_text() for name in ("results.jsonl", "summary.csv", "config.json")}


def test_more_seeds_train_only_the_new_ones_and_match_a_run_made_at_once(tmp_path, trained):
    calls, _ = trained
    assert run_cli(tmp_path / "once", "--methods", "base,reset", "--seeds", "3") == 0
    assert len(calls) == 6
    calls.clear()
    assert run_cli(tmp_path / "grown", "--methods", "base,reset", "--seeds", "2") == 0
    assert run_cli(tmp_path / "grown", "--methods", "base,reset", "--seeds", "3") == 0
    assert calls == [("base", 0), ("base", 1), ("reset", 0), ("reset", 1), ("base", 2), ("reset", 2)]
    assert outputs(tmp_path / "grown") == outputs(tmp_path / "once")
    assert len((tmp_path / "grown" / "runs.jsonl").read_text().splitlines()) == 6


def test_an_interrupted_command_continues_and_ends_as_an_uninterrupted_one(tmp_path, trained, capsys):
    calls, state = trained
    assert run_cli(tmp_path / "once", "--methods", "base,crelu", "--seeds", "2") == 0
    calls.clear()
    state["stop_after"] = 3
    assert run_cli(tmp_path / "cut", "--methods", "base,crelu", "--seeds", "2") == 130
    assert "3 finished runs are kept in" in capsys.readouterr().err
    assert len((tmp_path / "cut" / "runs.jsonl").read_text().splitlines()) == 3
    state["stop_after"] = None
    calls.clear()
    assert run_cli(tmp_path / "cut", "--methods", "base,crelu", "--seeds", "2") == 0
    assert calls == [("crelu", 1)]
    assert "holds 3 finished runs" in capsys.readouterr().err
    assert outputs(tmp_path / "cut") == outputs(tmp_path / "once")


def test_an_interrupted_selection_continues_with_the_same_scores(tmp_path, trained, monkeypatch):
    calls, state = trained
    monkeypatch.setattr(selection, "LR_GRID", (1e-1, 1e-2, 1e-5))
    monkeypatch.setattr(selection, "WEIGHT_DECAY_GRID", (1e-4,))
    flags = ("--methods", "base", "--seeds", "1", "--select", "--select-seeds", "2")
    assert run_cli(tmp_path / "once", *flags) == 0
    assert len(calls) == 3 * 2 + 1
    calls.clear()
    state["stop_after"] = 4
    assert run_cli(tmp_path / "cut", *flags) == 130
    state["stop_after"] = None
    calls.clear()
    assert run_cli(tmp_path / "cut", *flags) == 0
    assert len(calls) == 3  # the last two selection runs and the final run
    for name in ("selection.csv", "results.jsonl", "config.json"):
        assert (tmp_path / "cut" / name).read_text() == (tmp_path / "once" / name).read_text()


def test_fresh_trains_everything_again_and_replaces_the_log(tmp_path, trained):
    calls, _ = trained
    assert run_cli(tmp_path / "out", "--methods", "base", "--seeds", "2") == 0
    calls.clear()
    assert run_cli(tmp_path / "out", "--methods", "base", "--seeds", "1", "--fresh") == 0
    assert calls == [("base", 0)]
    assert len((tmp_path / "out" / "runs.jsonl").read_text().splitlines()) == 1


def test_a_line_cut_short_by_a_kill_is_dropped_and_its_run_trained_again(tmp_path):
    dataset = load_digits()
    path = tmp_path / "runs.jsonl"
    log = RunLog(path)
    first, second = (RunConfig(scenario="label", phases=1, lr=lr) for lr in (0.1, 0.01))
    log.add(log.key(dataset, first, 0), [{"phase": 0, "test_accuracy": 0.5}])
    whole = path.read_text()
    path.write_text(whole + '{"key": "cut sh')
    reread = RunLog(path)
    assert len(reread) == 1 and reread.get(reread.key(dataset, first, 0)) == [{"phase": 0, "test_accuracy": 0.5}]
    assert path.read_text() == whole
    reread.add(reread.key(dataset, second, 0), [{"phase": 0, "test_accuracy": 0.25}])
    assert [json.loads(line)["rows"][0]["test_accuracy"] for line in path.read_text().splitlines()] == [0.5, 0.25]


def test_the_key_tells_apart_the_data_the_config_and_the_seed():
    dataset = load_digits()
    log = RunLog("unused.jsonl")
    config = RunConfig(scenario="label", phases=1)
    keys = {
        log.key(dataset, config, 0),
        log.key(dataset, config, 1),
        log.key(dataset, RunConfig(scenario="label", phases=1, lr=0.1), 0),
        log.key(dataset, RunConfig(scenario="input", phases=1), 0),
        log.key(dataset.validation_split(0.1), config, 0),
        log.key(dataset.validation_split(0.2), config, 0),
    }
    assert len(keys) == 6
    assert log.key(load_digits(), config, 0) == log.key(dataset, config, 0)  # the same data loaded again


def test_runs_from_the_log_and_new_ones_come_back_in_order_with_two_workers(tmp_path):
    from plastic.synthetic.experiment import run_many

    dataset = load_digits()
    runs = [(RunConfig(scenario="label", phases=1, updates_per_phase=2, probe_every=0), seed) for seed in range(3)]
    log = RunLog(tmp_path / "runs.jsonl")
    run_many(dataset, runs[1:2], workers=1, log=log)
    finished = []
    rows = run_many(dataset, runs, workers=2, on_run=finished.append, log=log)
    assert rows == run_many(dataset, runs, workers=1)
    assert len(finished) == 3 and len(RunLog(tmp_path / "runs.jsonl")) == 3
