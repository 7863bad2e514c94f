"""Specifications of `plastic synthetic`: the output files and one-line errors for bad input."""

import csv
import json

import pytest

from plastic.cli import main


def run_cli(tmp_path, *extra):
    return main(["synthetic", "--dataset", "digits", "--phases", "2", "--updates-per-phase", "2", "--probe-every", "0",
                 "--workers", "1", "--no-progress", "--out", str(tmp_path / "out"), *extra])


def test_tiny_run_writes_results_summary_and_figures(tmp_path):
    assert run_cli(tmp_path, "--scenario", "label", "--methods", "base,crelu,reset,plastic", "--seeds", "2",
                   "--reset-interval", "1") == 0
    out = tmp_path / "out"
    with open(out / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {"scenario", "method", "seed", "phase", "test_accuracy"} <= set(rows[0])
    assert len(rows) == 4 * 2 * 2
    assert {r["method"] for r in rows} == {"base", "crelu", "reset", "plastic"}
    assert len((out / "results.jsonl").read_text().splitlines()) == 16
    with open(out / "summary.csv") as handle:
        summary = list(csv.DictReader(handle))
    assert [s["method"] for s in summary] == ["base", "crelu", "reset", "plastic"]
    assert all(float(s["ci_low"]) <= float(s["mean"]) <= float(s["ci_high"]) and s["n"] == "2" for s in summary)
    for name in ("improvement.png", "improvement.pdf", "curves.png", "curves.pdf"):
        assert (out / name).stat().st_size > 0
    assert json.loads((out / "config.json").read_text())["runs"][0]["method"] == "base"
    assert not list(out.glob(".*tmp"))


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--methods", "base,dropout"], "unknown method 'dropout'"),
        (["--seeds", "0"], "--seeds 0: must be >= 1"),
        (["--scenario", "reward"], "--scenario 'reward'"),
        (["--reset-layers", "4"], "reset_layers=4: the head has 3 FC layers; allowed 1..3"),
        (["--dataset", "cifar10", "--data-dir", "{tmp}/missing", "--no-download"], "CIFAR-10 not found"),
        (["--out", "{tmp}/a-file"], "is a file, not a folder"),
    ],
)
def test_bad_input_gives_a_one_line_error(tmp_path, capsys, flags, message):
    flags = [f.replace("{tmp}", str(tmp_path)) for f in flags]
    (tmp_path / "a-file").write_text("")
    assert run_cli(tmp_path, *flags) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1 and "Traceback" not in error


def test_cifar_folder_run_with_paper_and_code_strides(tmp_path):
    from plastic.synthetic.data import write_cifar10_folder
    from test_synthetic_data import tiny_cifar_arrays

    write_cifar10_folder(tmp_path / "data" / "cifar-10-batches-py", *tiny_cifar_arrays())
    for strides in ("paper", "code"):
        assert run_cli(tmp_path, "--dataset", "cifar10", "--data-dir", str(tmp_path / "data"), "--strides", strides,
                       "--scenario", "input", "--methods", "base", "--seeds", "1") == 0
        config = json.loads((tmp_path / "out" / "config.json").read_text())
        assert config["dataset"] == "cifar10"
        assert config["runs"][0]["strides"] == ([3, 3, 1] if strides == "paper" else [3, 1, 1])


def test_select_writes_the_score_table_and_runs_the_winner(tmp_path, monkeypatch):
    from plastic.synthetic import selection

    monkeypatch.setattr(selection, "LR_GRID", (1e-1, 1e-5))
    monkeypatch.setattr(selection, "WEIGHT_DECAY_GRID", (1e-4,))
    assert run_cli(tmp_path, "--methods", "base", "--seeds", "1", "--select", "--select-seeds", "1") == 0
    with open(tmp_path / "out" / "selection.csv") as handle:
        table = list(csv.DictReader(handle))
    assert [float(r["lr"]) for r in table] == [1e-1, 1e-5]
    winner = max(table, key=lambda r: float(r["validation_accuracy"]))
    assert json.loads((tmp_path / "out" / "config.json").read_text())["runs"][0]["lr"] == float(winner["lr"])


def test_staged_select_gives_every_method_bases_lr_and_tunes_only_their_own_knobs(tmp_path, monkeypatch):
    from plastic.synthetic import selection

    monkeypatch.setattr(selection, "LR_GRID", (1e-1, 1e-5))
    monkeypatch.setattr(selection, "WEIGHT_DECAY_GRID", (1e-4,))
    monkeypatch.setattr(selection, "RESET_INTERVAL_GRID", (1, 2))
    assert run_cli(tmp_path, "--methods", "crelu,reset", "--seeds", "1", "--select", "staged",
                   "--select-seeds", "1") == 0
    with open(tmp_path / "out" / "selection.csv") as handle:
        table = list(csv.DictReader(handle))
    assert [(r["stage"], r["method"]) for r in table] == [("shared", "base")] * 2 + [("own", "reset")] * 2
    base_lr = float(max(table[:2], key=lambda r: float(r["validation_accuracy"]))["lr"])
    runs = json.loads((tmp_path / "out" / "config.json").read_text())["runs"]
    assert [(r["method"], r["lr"]) for r in runs] == [("crelu", base_lr), ("reset", base_lr)]
    assert {float(r["lr"]) for r in table[2:]} == {base_lr}


@pytest.mark.parametrize("would_help", [True, False])
def test_mkl_hint_and_provenance(tmp_path, capsys, monkeypatch, would_help):
    from plastic import runtime

    monkeypatch.setattr(runtime, "mkl_avx512_would_help", lambda: would_help)
    assert run_cli(tmp_path, "--methods", "base", "--seeds", "1") == 0
    err = capsys.readouterr().err
    assert ("hint: on this AMD CPU, `plastic --mkl-avx512 synthetic ...`" in err) is would_help
    assert json.loads((tmp_path / "out" / "config.json").read_text())["mkl_avx512"] is False  # no shim in tests


def test_results_written_by_older_versions_are_read_under_the_current_probe_names(tmp_path):
    from plastic.synthetic.results import read_rows

    path = tmp_path / "results.jsonl"
    path.write_text('{"phase": 1, "lambda_max": 28.5, "active/all/units": 0.75, "test_accuracy": 0.5}\n')
    assert read_rows(path) == [{"phase": 1, "probes/hessian_max_eigenvalue": 28.5,
                                "probes/active_unit_fraction/all/units": 0.75, "test_accuracy": 0.5}]


def test_replot_rebuilds_summary_and_figures_from_results_alone(tmp_path, capsys):
    assert run_cli(tmp_path, "--scenario", "label", "--methods", "base,crelu", "--seeds", "2") == 0
    out = tmp_path / "out"
    summary = (out / "summary.csv").read_text()
    for name in ("summary.csv", "improvement.png", "curves.png", "curves.pdf"):
        (out / name).unlink()
    capsys.readouterr()
    assert main(["synthetic", "--replot", str(out)]) == 0
    assert (out / "summary.csv").read_text() == summary
    assert all((out / name).stat().st_size > 0 for name in ("improvement.png", "curves.png", "curves.pdf"))
    assert "crelu" in capsys.readouterr().out


def test_replot_of_a_folder_without_results_is_a_one_line_error(tmp_path, capsys):
    assert main(["synthetic", "--replot", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "no results.jsonl there" in error and error.count("\n") == 1


def test_methods_left_near_chance_are_named_in_a_warning():
    from plastic.synthetic.commands import near_chance

    summary = [dict(scenario="input", method="base", mean=0.99), dict(scenario="input", method="crelu", mean=0.104),
               dict(scenario="label", method="crelu", mean=0.151)]
    warnings = near_chance(summary, num_classes=10)
    assert len(warnings) == 1 and warnings[0].startswith("input crelu ends at 10.4% test accuracy, near chance (10%)")
    assert [w.split(" ends")[0] for w in near_chance(summary, num_classes=5)] == ["input crelu", "label crelu"]


def test_replot_of_one_scenario_into_another_folder(tmp_path, capsys):
    assert run_cli(tmp_path, "--scenario", "both", "--methods", "base,ln", "--seeds", "2") == 0
    out, label = tmp_path / "out", tmp_path / "label-only"
    with open(out / "summary.csv") as handle:
        both = [row for row in csv.DictReader(handle)]
    assert main(["synthetic", "--replot", str(out), "--scenario", "label", "--out", str(label)]) == 0
    with open(label / "summary.csv") as handle:
        assert list(csv.DictReader(handle)) == [row for row in both if row["scenario"] == "label"]
    assert (label / "improvement.png").stat().st_size > 0
    assert main(["synthetic", "--replot", str(out), "--scenario", "reward"]) == 2
    assert "--scenario 'reward'" in capsys.readouterr().err
