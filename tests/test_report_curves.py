"""`plastic report` learning curves: on tiny real MinAtar runs (two finished, one still running) the curve of each
(method, env) equals, per step bin, the mean over seeds of each run's mean logged value in the bin, with its
Student-t interval and the number of seeds; env-step conversion, --curve-metric, and bad input -> exit 2."""

import csv
import json
import math
import shutil
from collections import defaultdict

import numpy as np
import pytest
from scipy.stats import t

from plastic import cli

STEPS = 300
BINS = 10
TINY = [
    "--env", "minatar:breakout", "--preset", "base", "--steps", str(STEPS), "--replay-ratio", "1",
    "--eval-episodes", "1", "--threads", "1", "--no-progress", "--set", "eval_envs=1",
    "--set", "rainbow.learning_starts=200", "--set", "rainbow.batch_size=8", "--set", "rainbow.buffer_size=1000",
    "--set", "log_every=100", "--set", "eval_every=100", "--set", "probe.every=100", "--set", "probe.batch_size=16",
    "--set", "probe.hessian_batch_size=8", "--set", "probe.hessian_iters=2",
]  # fmt: skip
COLUMNS = ["method", "env", "step", "mean", "ci_low", "ci_high", "n"]
HESSIAN = "probes/hessian_max_eigenvalue"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Seeds 0 and 1 finished; seed 2 "still running": cut back to what it had written at step 250 (no result.json,
    metrics up to step 250 and a half-written line)."""
    root = tmp_path_factory.mktemp("runs")
    for seed in range(3):
        assert cli.main(["train", *TINY, "--seed", str(seed), "--out", str(root)]) == 0
    running = next(root.glob("*_s2"))
    (running / "result.json").unlink()
    shutil.rmtree(running / "checkpoints")
    lines = (running / "metrics.jsonl").read_text().splitlines()
    kept = [line for line in lines if json.loads(line)["step"] <= 250]
    (running / "metrics.jsonl").write_text("\n".join(kept) + '\n{"step": 251, "charts/episodic_ret')
    return root


def read_csv(path):
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    return rows[0], [dict(zip(rows[0], row)) for row in rows[1:]]


def by_hand(run_dirs, metric, edges):
    """bin upper edge -> [each run's mean of `metric` over the records with edges[i] < step <= edges[i + 1]]."""
    per_bin = defaultdict(list)
    for run_dir in run_dirs:
        logged = defaultdict(list)
        for line in (run_dir / "metrics.jsonl").read_text().splitlines():
            if not line.endswith("}"):
                continue  # the running run's half-written last line
            record = json.loads(line)
            if metric in record:
                i = next(i for i in range(len(edges) - 1) if record["step"] <= edges[i + 1])
                logged[i].append(record[metric])
        for i, values in logged.items():
            per_bin[edges[i + 1]].append(sum(values) / len(values))
    return per_bin


def t_interval(values, confidence=0.95):
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, mean, mean
    half = t.ppf(0.5 + confidence / 2, len(values) - 1) * np.std(values, ddof=1) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def assert_curve_equals_hand_binning(rows, run_dirs, metric, edges):
    expected = by_hand(run_dirs, metric, edges)
    assert [float(row["step"]) for row in rows] == sorted(expected)  # one row per bin with data, in step order
    for row in rows:
        values = expected[float(row["step"])]
        mean, low, high = t_interval(values)
        assert (row["method"], row["env"]) == ("base", "minatar:breakout")
        assert int(row["n"]) == len(values)
        assert float(row["mean"]) == pytest.approx(mean)
        assert float(row["ci_low"]) == pytest.approx(low) and float(row["ci_high"]) == pytest.approx(high)
        assert float(row["ci_low"]) <= float(row["mean"]) <= float(row["ci_high"])


def test_learning_curves_are_the_seed_mean_of_each_runs_binned_returns(runs, tmp_path, capsys):
    out = tmp_path / "report"
    assert cli.main(["report", str(runs), "--out", str(out), "--reps", "20", "--curve-bins", str(BINS),
                     "--curve-metric", HESSIAN]) == 0
    assert "unfinished" in capsys.readouterr().err  # the running run is left out of the scores, not the curves
    run_dirs = sorted(path.parent for path in runs.rglob("metrics.jsonl"))
    assert len(run_dirs) == 3
    edges = [STEPS * i / BINS for i in range(BINS + 1)]  # every run's budget is 300 agent steps: bins of 30

    header, rows = read_csv(out / "learning_curves.csv")
    assert header == COLUMNS
    assert_curve_equals_hand_binning(rows, run_dirs, "charts/episodic_return", edges)
    assert max(int(row["n"]) for row in rows) == 3  # the running seed counts
    _, evaluation = read_csv(out / "curve_eval_return_mean.csv")
    assert_curve_equals_hand_binning(evaluation, run_dirs, "eval/return_mean", edges)
    assert [(row["step"], row["n"]) for row in evaluation] == [("120", "3"), ("210", "3"), ("300", "2")]
    header, hessian = read_csv(out / "curve_probes_hessian_max_eigenvalue.csv")
    assert header == COLUMNS
    assert_curve_equals_hand_binning(hessian, run_dirs, HESSIAN, edges)

    manifest = json.loads((out / "report.json").read_text())
    # MinAtar runs record env_steps (= agent steps: no action repeat), so the axis is in environment steps.
    assert manifest["curve_step_unit"] == "environment steps" and manifest["curve_bins"] == BINS
    for stem in ("learning_curves", "curve_eval_return_mean", "curve_probes_hessian_max_eigenvalue"):
        for suffix in (".png", ".pdf"):
            assert (out / "figures" / f"{stem}{suffix}").stat().st_size > 1000, stem + suffix
            assert f"figures/{stem}{suffix}" in manifest["files"]
        assert f"{stem}.csv" in manifest["files"]


def write_run(directory, method, seed, records, steps=100, env_steps=None, finished=True):
    directory.mkdir(parents=True)
    config = {"env": "minatar:breakout", "preset": method, "seed": seed, "steps": steps, "replay_ratio": 1}
    (directory / "config.json").write_text(json.dumps(config))
    (directory / "metrics.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    if finished:
        result = {"env": "minatar:breakout", "method": method, "seed": seed, "replay_ratio": 1, "steps": steps,
                  "eval_mean": 1.0, **({"env_steps": env_steps} if env_steps else {})}  # fmt: skip
        (directory / "result.json").write_text(json.dumps(result))


def returns(*pairs):
    return [{"step": step, "charts/episodic_return": value} for step, value in pairs]


def test_exact_values_per_method_and_the_env_step_axis(tmp_path):
    # Bins of 25 agent steps = 100 env steps (env_steps / steps = 4): (0, 100], (100, 200], (200, 300], (300, 400].
    write_run(tmp_path / "a0", "base", 0, returns((10, 1.0), (20, 3.0), (60, 5.0), (100, 7.0)), env_steps=400)
    write_run(tmp_path / "a1", "base", 1, returns((25, 4.0), (26, 6.0), (90, 9.0)), env_steps=400)
    write_run(tmp_path / "b0", "plastic", 0, returns((50, 10.0), (51, 20.0)), env_steps=400)
    write_run(tmp_path / "b1", "plastic", 1, returns((49, 40.0)), env_steps=400)
    out = tmp_path / "report"
    assert cli.main(["report", str(tmp_path), "--out", str(out), "--reps", "10", "--curve-bins", "4"]) == 0
    _, rows = read_csv(out / "learning_curves.csv")
    got = [(r["method"], r["step"], float(r["mean"]), int(r["n"])) for r in rows]
    # base seed 0 per bin: (1 + 3) / 2, -, 5, 7; seed 1: 4, 6, -, 9. plastic seed 0: -, 10, 20, -; seed 1: -, 40, -, -.
    assert got == [("base", "100", 3.0, 2), ("base", "200", 6.0, 1), ("base", "300", 5.0, 1), ("base", "400", 8.0, 2),
                   ("plastic", "200", 25.0, 2), ("plastic", "300", 20.0, 1)]  # fmt: skip
    half = t.ppf(0.975, 1) * np.std([7.0, 9.0], ddof=1) / math.sqrt(2)  # = t_{0.975, 1} = 12.71
    assert (float(rows[3]["ci_low"]), float(rows[3]["ci_high"])) == pytest.approx((8.0 - half, 8.0 + half))
    assert (rows[1]["ci_low"], rows[1]["ci_high"]) == ("6.0", "6.0")  # one seed: a zero-width interval
    assert json.loads((out / "report.json").read_text())["curve_step_unit"] == "environment steps"
    assert not (out / "curve_eval_return_mean.csv").exists()  # no run logged an evaluation return

    # One run without env_steps: every run stays in agent steps (bins of 25), so the axis never mixes units.
    write_run(tmp_path / "a2", "base", 2, returns((5, 0.0)))
    assert cli.main(["report", str(tmp_path), "--out", str(out), "--reps", "10", "--curve-bins", "4"]) == 0
    _, rows = read_csv(out / "learning_curves.csv")
    assert [(r["step"], r["n"]) for r in rows if r["method"] == "base"] == [("25", "3"), ("50", "1"), ("75", "1"),
                                                                          ("100", "2")]  # fmt: skip
    assert json.loads((out / "report.json").read_text())["curve_step_unit"] == "agent steps"


def test_a_running_run_is_drawn_with_the_labels_of_its_config(tmp_path):
    write_run(tmp_path / "done", "base", 0, returns((10, 2.0)))
    write_run(tmp_path / "running", "plastic", 3, returns((10, 8.0), (30, 4.0)), steps=1000, finished=False)
    out = tmp_path / "report"
    assert cli.main(["report", str(tmp_path), "--out", str(out), "--reps", "10", "--curve-bins", "10"]) == 0
    _, rows = read_csv(out / "learning_curves.csv")
    # Bins of 100 from the largest budget (1000); config.json's preset "plastic" is its method label.
    assert [(r["method"], r["step"], r["mean"], r["n"]) for r in rows] == [("base", "100", "2.0", "1"),
                                                                          ("plastic", "100", "6.0", "1")]  # fmt: skip


def test_score_csvs_alone_give_no_curves(tmp_path, capsys):
    path = tmp_path / "scores.csv"
    path.write_text("method,env,seed,score\nbase,minatar:breakout,0,1.0\nbase,minatar:breakout,1,2.0\n")
    out = tmp_path / "report"
    assert cli.main(["report", str(path), "--out", str(out), "--reps", "10"]) == 0
    assert not (out / "learning_curves.csv").exists() and not (out / "figures" / "learning_curves.png").exists()
    assert "curve_step_unit" not in json.loads((out / "report.json").read_text())
    assert cli.main(["report", str(path), "--out", str(tmp_path / "other"), "--curve-metric", HESSIAN]) == 2
    assert "no run directory" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--curve-metric", "probes/nope"], "--curve-metric 'probes/nope': no run logged it; logged metrics are "
                                        "a/b, a_b, charts/episodic_return"),
    (["--curve-metric", "charts/episodic_return,probes/nope"], "'probes/nope'"),
    (["--curve-bins", "0"], "--curve-bins must be a positive number of step bins, got 0"),
    (["--curve-metric", "a/b", "--curve-metric", "a_b"], "would both be written as curve_a_b.csv"),
])  # fmt: skip
def test_bad_curve_options_exit_2_with_one_line(tmp_path, capsys, extra, message):
    write_run(tmp_path / "runs" / "a", "base", 0, [{"step": 10, "charts/episodic_return": 1.0, "a/b": 1, "a_b": 2}])
    out = tmp_path / "report"
    assert cli.main(["report", str(tmp_path / "runs"), "--out", str(out), *extra]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1 and "Traceback" not in error
    assert not out.exists()


def test_curve_metric_needs_an_output_directory(tmp_path, capsys):
    write_run(tmp_path / "a", "base", 0, returns((10, 1.0)))
    assert cli.main(["report", str(tmp_path), "--curve-metric", HESSIAN]) == 2
    assert f"--curve-metric {HESSIAN} writes files: give --out DIR" in capsys.readouterr().err


def test_the_random_policy_line_is_the_mean_random_score_of_each_envs_finished_runs(runs):
    from plastic.report import scores as loading
    from plastic.report.curves import random_scores

    finished = sorted(root for root in runs.iterdir() if (root / "result.json").exists())
    recorded = [json.loads((root / "result.json").read_text())["random_score"] for root in finished]
    assert len(recorded) == 2 and all(isinstance(value, float) for value in recorded)
    results = loading.load_results([runs])
    assert random_scores(results) == {"minatar:breakout": pytest.approx(sum(recorded) / 2)}


def test_step_ticks_are_short_so_that_six_digit_steps_do_not_collide():
    from plastic.report.figures import step_label

    assert [step_label(x) for x in (0, 500, 50_000, 400_000, 1_500_000, 2_000_000, -25_000)] == [
        "0", "500", "50k", "400k", "1.5M", "2M", "-25k"]
