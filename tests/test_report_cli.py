"""`plastic report` end to end: fake run directories and score CSVs in, JSON / tables / figures out, bad input -> exit 2."""

import json

import numpy as np
import pytest

from plastic import cli
from plastic.report.aggregates import interquartile_mean, mean_of_task_means

PONG = (-20.7, 14.6)
BREAKOUT = (1.7, 30.5)


@pytest.fixture(autouse=True)
def only_the_report_command(monkeypatch):
    # The other subcommands are written concurrently; this test exercises `report` through `cli.main` alone.
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("plastic.report.commands",))


def write_run(directory, method, env, seed, score, replay_ratio=2, switches=("ln", "reset"), wall_time_s=3600.0):
    directory.mkdir(parents=True)
    (directory / "config.json").write_text("{}")
    lines = []
    for step in (1000, 2000, 3000, 4000):
        record = {"step": step, "time_s": step / 100, "charts/episodic_return": score * step / 4000,
                  "probes/hessian_max_eigenvalue": 10.0 / step, "probes/active_unit_fraction/all/units": 0.5}
        lines.append(json.dumps(record))
    (directory / "metrics.jsonl").write_text("\n".join(lines) + "\n{\"step\": 5000, \"charts/epi")  # partial line
    result = {"env": env, "preset": method, "methods": list(switches), "method": method, "replay_ratio": replay_ratio,
              "seed": seed, "steps": 4000, "eval_returns": [score - 1, score + 1], "eval_mean": score, "hns": None,
              "wall_time_s": wall_time_s, "updates_per_s": 1.0, "env_steps_per_s": 1.0, "num_parameters": 10,
              "plastic_version": "0"}  # fmt: skip
    (directory / "result.json").write_text(json.dumps(result))


RAW = {  # method -> game -> scores of seeds 0, 1, 2
    "base": {"Pong": [-20.0, -10.0, 0.0], "Breakout": [2.0, 5.0, 9.0]},
    "plastic": {"Pong": [-5.0, 3.0, 10.0], "Breakout": [10.0, 20.0, 40.0]},
}


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    for method, games in RAW.items():
        switches = () if method == "base" else ("ln", "sam", "crelu", "reset")
        for game, scores in games.items():
            for seed, score in enumerate(scores):
                write_run(root / method / f"{game}-{seed}", method, f"atari:{game}", seed, score, switches=switches)
    (root / "unfinished" / "run").mkdir(parents=True)
    (root / "unfinished" / "run" / "metrics.jsonl").write_text("")
    return root


def hns_matrix(method):
    pong = (np.array(RAW[method]["Pong"]) - PONG[0]) / (PONG[1] - PONG[0])
    breakout = (np.array(RAW[method]["Breakout"]) - BREAKOUT[0]) / (BREAKOUT[1] - BREAKOUT[0])
    return np.stack([breakout, pong], axis=1)  # tasks sorted: atari:Breakout, atari:Pong


def test_json_output_is_the_documented_contract(runs, capsys):
    assert cli.main(["report", str(runs), "--format", "json", "--reps", "100", "--seed", "3"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["metric_basis"] == "hns"
    assert set(summary["methods"]) == {"base", "plastic"}
    for method in RAW:
        entry = summary["methods"][method]
        assert set(entry) == {"iqm", "median", "mean", "optimality_gap", "num_runs", "num_tasks"}
        assert (entry["num_runs"], entry["num_tasks"]) == (3, 2)
        assert entry["iqm"]["value"] == pytest.approx(interquartile_mean(hns_matrix(method)))
        assert entry["mean"]["value"] == pytest.approx(mean_of_task_means(hns_matrix(method)))
        for metric in ("iqm", "median", "mean", "optimality_gap"):
            low, high = entry[metric]["ci"]
            assert low <= entry[metric]["value"] <= high
    assert "unfinished" in captured.err  # the run without result.json is skipped, with a warning
    assert cli.main(["report", str(runs), "--format", "json", "--reps", "100", "--seed", "3"]) == 0
    assert json.loads(capsys.readouterr().out) == summary  # same seed, same intervals


def test_out_directory_holds_tables_figures_and_json(runs, tmp_path, capsys):
    out = tmp_path / "report"
    assert cli.main(["report", str(runs), "--out", str(out), "--reps", "50", "--compare", "paper"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("**Aggregate human-normalized score") and "| plastic |" in printed
    assert "PLASTIC (paper) | 0.421 (0.388, 0.457)" in printed
    for stem in ("aggregates", "per_game", "ablation", "replay_ratio_scaling", "probability_of_improvement"):
        for suffix in (".md", ".csv", ".tex"):
            assert (out / f"{stem}{suffix}").stat().st_size > 0, stem + suffix
    for figure in ("interval_estimates", "performance_profiles", "sample_efficiency", "probe_curves",
                   "iqm_vs_compute"):  # fmt: skip
        for suffix in (".png", ".pdf"):
            assert (out / "figures" / f"{figure}{suffix}").stat().st_size > 1000, figure + suffix
    assert json.loads((out / "aggregates.json").read_text())["methods"]["plastic"]["num_runs"] == 3
    manifest = json.loads((out / "report.json").read_text())
    assert "figures/sample_efficiency.png" in manifest["files"]
    ablation = (out / "ablation.md").read_text()
    assert "| plastic | ✓ | ✓ | ✓ | ✓ |" in ablation and "0.421 (0.388, 0.457)" in ablation
    per_game = (out / "per_game.csv").read_text().splitlines()
    assert per_game[0].startswith("Task,base,plastic,Base (paper)")
    assert per_game[1].startswith("Breakout,5.333333333333333,23.333333333333332,13.16")
    # Table 7's columns (Base ... PLASTIC), then Table 9's PLASTIC† at replay ratio 2 (Breakout 16.4)
    assert per_game[0].endswith("PLASTIC (paper),PLASTIC† (paper)") and per_game[1].endswith(",21.0,16.4")
    assert "plastic,2,1.0," in (out / "replay_ratio_scaling.csv").read_text()  # 3600 s per run = 1 hour
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report", "runs"]  # no staging directory left behind
    # A second report replaces the first one.
    assert cli.main(["report", str(runs), "--out", str(out), "--reps", "20", "--no-figures"]) == 0
    assert not (out / "figures").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report", "runs"]


def test_mixed_replay_ratios_get_their_own_method_keys(tmp_path, capsys):
    for seed in range(2):
        for replay_ratio in (2, 4):
            write_run(tmp_path / f"rr{replay_ratio}-{seed}", "plastic", "atari:Pong", seed, 1.0 + seed + replay_ratio,
                      replay_ratio=replay_ratio)  # fmt: skip
    assert cli.main(["report", str(tmp_path), "--format", "json", "--reps", "20"]) == 0
    assert set(json.loads(capsys.readouterr().out)["methods"]) == {"plastic@rr2", "plastic@rr4"}


def test_score_csv_with_steps_gives_raw_dmc_aggregates_and_curves(tmp_path, capsys):
    rows = ["method,env,seed,score,step"]
    for method, offset in (("base", 0.0), ("plastic", 100.0)):
        for task in ("cheetah-run", "walker-run"):
            for seed in range(2):
                rows += [f"{method},dmc:{task},{seed},{offset + 10 * seed + step / 10},{step}" for step in (0, 500, 1000)]
    path = tmp_path / "scores.csv"
    path.write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    assert cli.main(["report", str(path), "--format", "json", "--reps", "20", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["metric_basis"] == "raw"
    # Final scores are the rows at step 1000: base 100 and 110 on both tasks -> mean 105.
    assert summary["methods"]["base"]["mean"]["value"] == pytest.approx(105.0)
    assert summary["methods"]["plastic"]["iqm"]["value"] == pytest.approx(205.0)
    assert (out / "figures" / "sample_efficiency.png").stat().st_size > 1000
    assert not (out / "ablation.md").exists()  # score CSVs do not say which switches a method used


def test_single_run_per_task_warns_that_the_interval_is_empty(tmp_path, capsys):
    write_run(tmp_path / "one", "plastic", "atari:Pong", 0, 0.0)
    assert cli.main(["report", str(tmp_path), "--format", "json", "--reps", "20"]) == 0
    captured = capsys.readouterr()
    assert "single run per task" in captured.err
    iqm = json.loads(captured.out)["methods"]["plastic"]["iqm"]
    assert iqm["ci"] == [iqm["value"], iqm["value"]]


BAD_CSVS = {
    "missing column": ("method,env,score\nbase,atari:Pong,1\n", "missing column(s) seed"),
    "non-numeric score": ("method,env,seed,score\nbase,atari:Pong,0,lots\n", "line 2: score 'lots' is not a number"),
    "nan score": ("method,env,seed,score\nbase,atari:Pong,0,nan\n", "not a finite number"),
    "inf score": ("method,env,seed,score\nbase,atari:Pong,0,inf\n", "not a finite number"),
    "unknown game": ("method,env,seed,score\nbase,atari:Zaxxon,0,1\n", "unknown Atari game 'atari:Zaxxon'"),
    "no domain": ("method,env,seed,score\nbase,Pong,0,1\n", "expected DOMAIN:NAME"),
    "different task sets": ("method,env,seed,score\nbase,atari:Pong,0,1\nbase,atari:Alien,0,1\n"
                            "plastic,atari:Pong,0,1\n", "cover different tasks"),  # fmt: skip
    "uneven seeds": ("method,env,seed,score\nbase,atari:Pong,0,1\nbase,atari:Pong,1,1\nbase,atari:Alien,0,1\n",
                     "different numbers of runs per task"),  # fmt: skip
    "mixed domains": ("method,env,seed,score\nbase,atari:Pong,0,1\nbase,dmc:cheetah-run,0,1\n", "mix domains"),
    "empty": ("method,env,seed,score\n", "no score rows"),
}


@pytest.mark.parametrize("case", sorted(BAD_CSVS))
def test_bad_score_csv_exits_2_with_one_line_and_no_report(case, tmp_path, capsys):
    text, message = BAD_CSVS[case]
    path = tmp_path / "scores.csv"
    path.write_text(text)
    out = tmp_path / "out"
    assert cli.main(["report", str(path), "--out", str(out), "--reps", "10"]) == 2
    error = capsys.readouterr().err
    assert message in error
    assert error.startswith("plastic report: error:") and error.count("\n") == 1 and "Traceback" not in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scores.csv"]  # nothing written, not even partially


def test_other_bad_input_exits_2(tmp_path, capsys):
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "thesis.tex").write_text("precious")
    write_run(tmp_path / "runs" / "a", "plastic", "atari:Pong", 0, 0.0)
    cases = [
        (["report", str(tmp_path / "missing")], "does not exist"),
        (["report", str(tmp_path / "runs"), "--out", str(tmp_path / "keep")], "refusing to replace it"),
        (["report", str(tmp_path / "runs"), "--reps", "0"], "--reps must be a positive"),
        (["report", str(tmp_path / "keep")], "no finished runs"),
    ]
    for argv, message in cases:
        assert cli.main(argv) == 2
        error = capsys.readouterr().err
        assert message in error and error.count("\n") == 1, argv
    assert (tmp_path / "keep" / "thesis.tex").read_text() == "precious"
    (tmp_path / "runs" / "a" / "result.json").write_text("{not json")
    assert cli.main(["report", str(tmp_path / "runs")]) == 2
    assert "cannot read it as JSON" in capsys.readouterr().err


UNFINISHED_GRID = ("method,env,seed,score\n"
                   "base,minatar:breakout,0,6\nbase,minatar:breakout,1,7\nbase,minatar:breakout,2,8\n"
                   "base,minatar:asterix,0,1\nbase,minatar:asterix,1,2\n"
                   "dagger,minatar:breakout,0,9\ndagger,minatar:breakout,1,10\ndagger,minatar:breakout,2,11\n"
                   "dagger,minatar:asterix,0,3\ndagger,minatar:asterix,1,4\ndagger,minatar:asterix,2,5\n"
                   "dagger,minatar:seaquest,0,20\n")  # fmt: skip


def test_common_runs_scores_the_tasks_and_seeds_every_method_has(tmp_path, capsys):
    path = tmp_path / "scores.csv"
    path.write_text(UNFINISHED_GRID)
    assert cli.main(["report", str(path), "--format", "json", "--reps", "10"]) == 2
    assert "--common-runs reports the tasks and seeds every method has" in capsys.readouterr().err
    assert cli.main(["report", str(path), "--format", "json", "--reps", "10", "--common-runs"]) == 0
    captured = capsys.readouterr()
    # kept: breakout and asterix (seaquest is dagger's alone), seeds 0-1 on both (asterix has only 0-1 in common)
    assert "--common-runs left 4 finished run(s) out" in captured.err
    assert "dagger minatar:seaquest seed 0" in captured.err and "base minatar:breakout seed 2" in captured.err
    methods = json.loads(captured.out)["methods"]
    assert {name: (m["num_runs"], m["num_tasks"]) for name, m in methods.items()} == {"base": (2, 2), "dagger": (2, 2)}
    assert methods["base"]["mean"]["value"] == pytest.approx(np.mean([6.5, 1.5]))  # raw MinAtar returns
    assert methods["dagger"]["mean"]["value"] == pytest.approx(np.mean([9.5, 3.5]))


def test_common_runs_with_nothing_shared_is_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "scores.csv"
    path.write_text("method,env,seed,score\nbase,minatar:breakout,0,1\nplastic,minatar:asterix,0,1\n")
    assert cli.main(["report", str(path), "--common-runs"]) == 2
    error = capsys.readouterr().err
    assert "no task and seed is shared by every method (base, plastic)" in error and error.count("\n") == 1


def test_common_runs_per_game_table_keeps_every_finished_run(tmp_path, capsys):
    import csv

    path = tmp_path / "scores.csv"
    path.write_text(UNFINISHED_GRID)
    out = tmp_path / "report"
    assert cli.main(["report", str(path), "--out", str(out), "--reps", "10", "--common-runs", "--no-figures"]) == 0
    with open(out / "per_game.csv") as handle:
        rows = {row["Task"]: row for row in csv.DictReader(handle)}
    assert sorted(rows) == ["asterix", "breakout", "seaquest"]
    assert float(rows["breakout"]["base"]) == pytest.approx(7.0)  # seeds 0-2, although the aggregates use 0-1
    assert float(rows["seaquest"]["dagger"]) == pytest.approx(20.0) and rows["seaquest"]["base"] == ""
    assert "--common-runs left 4" in json.loads((out / "report.json").read_text())["warnings"][0]
