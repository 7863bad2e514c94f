"""`plastic report`: aggregate results the way the field does (paper §4.1; rliable), with tables and figures.

Usage:
    plastic report RUNS... [--out DIR] [--format table|json] [--reps N] [--seed S] [--confidence C]
                           [--compare paper] [--no-figures] [--curve-bins N] [--curve-metric NAME...]

Inputs (RUNS, any mix):
- directories: searched recursively for run directories written by `plastic train` / `plastic sweep`. A run counts
  once its `result.json` exists; its final score is `eval_mean` (else the mean of `eval_returns`), grouped by
  `method`, with `env`, `seed`, `replay_ratio`, `methods` (switches) and `wall_time_s` taken from the same file.
  Unfinished runs (metrics.jsonl or config.json but no result.json) are left out of the scores with a warning; their
  learning curves are drawn (labels from config.json). The sample-efficiency figure uses `eval/return_mean` in
  metrics.jsonl (else `charts/episodic_return`); probe curves `probes/hessian_max_eigenvalue` and
  `probes/active_unit_fraction/all/units`.
- `.csv` files with the header `method,env,seed,score` (raw returns; `env` as for `plastic train --env`, e.g.
  `atari:Pong`, `dmc:cheetah-run`, `minatar:breakout`) and optional columns `step` (then each (method, env, seed)
  is a learning curve and its final score is the row with the largest step), `replay_ratio` and `wall_time_s`.

Scores: Atari runs are human-normalized, (score - random) / (human - random) with the random/human scores of paper
Table 7 (metric basis "hns"); DMC and MinAtar returns stay raw ("raw"), as the paper aggregates raw DMC returns. One
report covers one domain. Methods are keyed by their `method` label; when the runs mix replay ratios the key becomes
`LABEL@rr<N>` (e.g. `plastic@rr4`) so each ratio is its own method.

Aggregates per method (definitions equal rliable's): IQM (25%-trimmed mean over all runs x tasks), median and mean
of the per-task means, optimality gap mean(max(1 - score, 0)), each with a percentile stratified-bootstrap CI
(`--reps` resamples, default 2,000; `--seed` makes it reproducible; `--confidence`, default 0.95); the probability
of improvement P(X > Y) for each ordered pair of methods; performance profiles. Every method must cover the same
tasks with the same number of runs per task; for an unfinished grid, `--common-runs` scores only the tasks and seeds
every method has (on each task the same number of the lowest shared seeds) and names the runs it leaves out. With
one run per task the CIs have zero width: a warning says so.

Output: the aggregate table (Markdown) on stdout, or with `--format json` one JSON object:
    {"metric_basis": "hns"|"raw", "methods": {NAME: {"iqm": {"value": x, "ci": [lo, hi]}, "median": {...},
     "mean": {...}, "optimality_gap": {...}, "num_runs": n, "num_tasks": k}}}
(`num_runs` is the number of runs per task.) With `--out DIR` it also writes, as a whole or not at all (built in a
hidden sibling directory and renamed into place; `report.json` lists the contents):
    aggregates.{json,md,csv,tex}            Table 1 style, with CIs
    per_game.{md,csv,tex}                   Table 7 / 10 style: mean raw score per task and method, over every
                                            finished run (with --common-runs too; blank where a method has none)
    ablation.{md,csv,tex}                   Table 4 style (runs whose result.json lists their switches)
    replay_ratio_scaling.{md,csv,tex}       Tables 2 / 9 style, with wall-clock hours per run
    probability_of_improvement.{md,csv,tex}
    scores.csv                              every run's raw and normalized score
    learning_curves.csv                     method,env,step,mean,ci_low,ci_high,n: training episodic return per
                                            step bin, mean over seeds and its t-interval (run directories only)
    curve_eval_return_mean.csv              the same for the evaluation return, where runs logged one
    curve_<METRIC>.csv                      the same for each --curve-metric (name with "/" etc. as "_")
    figures/*.{png,pdf}                     interval estimates, performance profiles, sample efficiency,
                                            probe curves, IQM vs compute, learning_curves (training solid,
                                            evaluation dashed), curve_<METRIC> (unless --no-figures)
Curves: each run's values are averaged within `--curve-bins` equal step bins (default 20) over the env's training
budget, then averaged over the runs (seeds) with data in the bin (`n`), with a Student-t interval at --confidence;
`step` is the bin's upper edge, in environment steps when every run's result.json/config.json gives `env_steps`,
else agent steps (report.json's `curve_step_unit` says which).
An existing DIR is replaced only if it holds an earlier report (its report.json); otherwise the command refuses.
`--compare paper` puts the paper's published numbers (Tables 1, 2, 4, 7, 10) beside yours, labelled "(paper)".
Errors in the input (malformed CSV, NaN scores, unknown Atari game, methods with different task sets, ...) print
one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from plastic.envs.domains import DOMAINS
from plastic.errors import UserError

if TYPE_CHECKING:  # numpy and the report modules load only when a report runs (the parser is built without them)
    import numpy as np

    from plastic.report.aggregates import Estimate
    from plastic.report.curves import CurveSet
    from plastic.report.scores import Results, RunScore
    from plastic.report.tables import Table

DEFAULT_CURVE_BINS = 20  # = plastic.report.curves.DEFAULT_BINS, without importing numpy to build the parser


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "report",
        help="aggregate runs or score CSVs: IQM/median/mean/optimality gap with bootstrap CIs, tables, figures",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUNS", help="run directories (searched recursively) "
                        "and/or score CSV files (method,env,seed,score[,step,replay_ratio,wall_time_s])")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None, help="write tables, figures and JSON into this directory")
    parser.add_argument("--format", choices=("table", "json"), default="table",
                        help="stdout: the Markdown aggregate table, or the aggregates as one JSON object")  # fmt: skip
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    parser.add_argument("--confidence", type=float, default=0.95, help="CI coverage (default 0.95)")
    parser.add_argument("--compare", choices=("paper",), default=None,
                        help="put the paper's published numbers beside the results")  # fmt: skip
    parser.add_argument("--no-figures", action="store_true", help="skip the figures (faster)")
    parser.add_argument("--common-runs", action="store_true",
                        help="score only the tasks and seeds every method has (an unfinished grid); the runs left "
                        "out are named in a warning (learning curves keep every run)")
    parser.add_argument("--curve-bins", type=int, default=DEFAULT_CURVE_BINS, metavar="N",
                        help=f"learning curves: equal step bins per env (default {DEFAULT_CURVE_BINS})")  # fmt: skip
    parser.add_argument("--curve-metric", action="append", default=[], metavar="NAME",
                        help="also draw this metrics.jsonl metric over training, e.g. probes/hessian_max_eigenvalue "
                             "(repeatable, or a comma list); needs --out")  # fmt: skip
    parser.set_defaults(func=run_report)


@dataclass(frozen=True)
class _Report:
    """Everything `run_report` computed, as the writers of `--out` read it."""

    args: argparse.Namespace
    results: Results
    groups: dict[str, list[RunScore]]  # method -> its runs (with --common-runs, the shared ones)
    all_groups: dict[str, list[RunScore]]  # method -> every finished run, for the per-task means
    tasks: list[str]
    matrices: dict[str, np.ndarray]  # method -> (runs per task, tasks) scores on the metric basis
    estimates: dict[str, dict[str, Estimate]]  # method -> aggregate name -> estimate
    improvement: dict[tuple[str, str], Estimate]  # (X, Y) -> P(X > Y)
    summary: dict  # the JSON of --format json, also aggregates.json
    table: Table  # the aggregate table printed on stdout
    domain: str
    metric_basis: str  # "hns" or "raw"
    warnings: list[str]
    curve_set: CurveSet | None


def _warn(message: str) -> None:
    print(f"plastic report: warning: {message}", file=sys.stderr)


def _check_arguments(args: argparse.Namespace) -> None:
    if args.reps < 1:
        raise UserError(f"--reps must be a positive number of bootstrap resamples, got {args.reps}")
    if not 0.0 < args.confidence < 1.0:
        raise UserError(f"--confidence must be between 0 and 1 (exclusive), got {args.confidence}")
    if args.curve_bins < 1:
        raise UserError(f"--curve-bins must be a positive number of step bins, got {args.curve_bins}")
    args.curve_metric = [name.strip() for names in args.curve_metric for name in names.split(",") if name.strip()]
    if args.curve_metric and args.out is None:
        raise UserError(f"--curve-metric {args.curve_metric[0]} writes files: give --out DIR as well")
    if args.out is not None and args.out.exists():
        if not args.out.is_dir():
            raise UserError(f"--out {args.out} exists and is not a directory")
        if any(args.out.iterdir()) and not (args.out / "report.json").is_file():
            raise UserError(f"--out {args.out} is a non-empty directory that does not hold an earlier report; "
                            "refusing to replace it")  # fmt: skip


def run_report(args: argparse.Namespace) -> int:
    _check_arguments(args)
    from plastic.report import scores as loading
    from plastic.report.aggregates import aggregate_estimates, probability_of_improvement_estimate

    try:
        results = loading.load_results(args.runs)
        domain = loading.check_single_domain(results.runs)
        groups = all_groups = loading.group_by_method(results.runs)
        left_out = []
        if args.common_runs:
            groups, left_out = loading.common_runs(all_groups)
        tasks, matrices = loading.score_matrices(groups)
        curve_set = None
        if args.out is not None:
            from plastic.report import curves

            curve_set = curves.build(results, domain, args.curve_metric, args.curve_bins, args.confidence)
    except ValueError as error:
        raise UserError(str(error)) from None
    warnings = []
    if results.unfinished:
        warnings.append(f"left {len(results.unfinished)} unfinished run(s) without result.json out of the scores "
                        f"(learning curves include them), e.g. {results.unfinished[0]}")  # fmt: skip
    if left_out:
        named = ", ".join(f"{run.method} {run.env} seed {run.seed}" for run in left_out[:6])
        warnings.append(f"--common-runs left {len(left_out)} finished run(s) out of the scores, not shared by every "
                        f"method: {named}{', ...' if len(left_out) > 6 else ''}")  # fmt: skip
    for method, matrix in matrices.items():
        if matrix.shape[0] == 1:
            warnings.append(f"method {method!r} has a single run per task: its confidence intervals have zero width "
                            "and say nothing about seed-to-seed variation")  # fmt: skip
    if args.compare == "paper" and domain == "minatar":
        warnings.append("the paper has no MinAtar results to compare with")
    for message in warnings:
        _warn(message)

    metric_basis = "hns" if DOMAINS[domain].human_normalized else "raw"
    estimates = {
        method: aggregate_estimates(matrix, reps=args.reps, confidence=args.confidence, seed=args.seed,
                                    description=f"bootstrap {method}")
        for method, matrix in matrices.items()
    }  # fmt: skip
    summary = {
        "metric_basis": metric_basis,
        "methods": {
            method: {**{name: e.as_json() for name, e in estimates[method].items()},
                     "num_runs": int(matrices[method].shape[0]), "num_tasks": len(tasks)}
            for method in matrices
        },
    }  # fmt: skip

    from plastic.report.tables import aggregate_table

    counts = {method: (int(matrix.shape[0]), len(tasks)) for method, matrix in matrices.items()}
    table = aggregate_table(estimates, counts, domain, metric_basis, compare_paper=args.compare == "paper")
    if args.out is not None:
        improvement = {
            (x, y): probability_of_improvement_estimate(matrices[x], matrices[y], reps=args.reps,
                                                        confidence=args.confidence, seed=args.seed)
            for x in matrices for y in matrices if x != y
        }  # fmt: skip
        report = _Report(args=args, results=results, groups=groups, all_groups=all_groups, tasks=tasks,
                         matrices=matrices, estimates=estimates, improvement=improvement, summary=summary, table=table,
                         domain=domain, metric_basis=metric_basis, warnings=warnings, curve_set=curve_set)  # fmt: skip
        _write_report(report)
    if args.format == "json":
        print(json.dumps(summary))
    else:
        print(table.to_markdown(), end="")
    return 0


def _write_report(report: _Report) -> None:
    """Builds the whole report in a hidden sibling directory, then renames it to `--out`."""
    from plastic import __version__

    args, curve_set = report.args, report.curve_set
    out = args.out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        staging.chmod(0o755)
        files = _write_contents(staging, report)
        manifest = {
            "plastic_version": __version__,
            "inputs": [str(path) for path in args.runs],
            "domain": report.domain,
            "metric_basis": report.metric_basis,
            "reps": args.reps,
            "seed": args.seed,
            "confidence": args.confidence,
            "warnings": report.warnings,
            **({"curve_step_unit": curve_set.step_unit, "curve_bins": args.curve_bins} if curve_set else {}),
            "files": sorted(str(path.relative_to(staging)) for path in files),
        }
        (staging / "report.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            retired = out.with_name(f".{out.name}.old")
            shutil.rmtree(retired, ignore_errors=True)
            out.rename(retired)
            staging.rename(out)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _write_contents(directory: Path, report: _Report) -> list[Path]:
    import csv

    from plastic.report import tables
    from plastic.report.scores import normalized_score

    args, groups, tasks, estimates, domain = report.args, report.groups, report.tasks, report.estimates, report.domain
    metric_basis, improvement, curve_set = report.metric_basis, report.improvement, report.curve_set
    compare = args.compare == "paper"
    files = report.table.write(directory)
    (directory / "aggregates.json").write_text(json.dumps(report.summary, indent=2) + "\n", encoding="utf-8")
    files.append(directory / "aggregates.json")
    built = [
        tables.per_game_table(report.all_groups, sorted({run.env for run in report.results.runs}), domain, compare),
        tables.ablation_table(groups, estimates, domain, compare),
        tables.replay_ratio_table(groups, estimates, domain, metric_basis, compare),
        tables.probability_of_improvement_table(improvement) if improvement else None,
    ]
    for extra in built:
        if extra is not None:
            files += extra.write(directory)
    with open(directory / "scores.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method", "env", "seed", "replay_ratio", "score", f"{metric_basis}_score", "source"])
        for method, runs in groups.items():
            for run in runs:
                normalized = normalized_score(run.score, run.env)
                writer.writerow([method, run.env, run.seed, run.replay_ratio, run.score, normalized, run.source])
    files.append(directory / "scores.csv")
    if curve_set is not None:
        files += _write_curve_tables(directory, args, curve_set)
    if not args.no_figures:
        figures_dir = directory / "figures"
        figures_dir.mkdir()
        files += _draw_figures(figures_dir, report)
        if curve_set is not None:
            files += _draw_curves(figures_dir, args, curve_set)
    return files


def _curve_files(args, curve_set) -> list[tuple[str, str]]:
    """(metric, file stem) pairs: the training return as learning_curves, then the evaluation return (where logged)
    and each --curve-metric as curve_<name>."""
    from plastic.report.curves import EVAL_RETURN, TRAIN_RETURN, sanitized

    others = ([EVAL_RETURN] if curve_set.curves[EVAL_RETURN] else []) + args.curve_metric
    stems = {f"curve_{sanitized(metric)}": metric for metric in others}
    return [(TRAIN_RETURN, "learning_curves"), *((metric, stem) for stem, metric in stems.items())]


def _write_curve_tables(directory, args, curve_set) -> list[Path]:
    from plastic.report.curves import write_csv

    return [write_csv(curve_set.curves[metric], directory / f"{stem}.csv")
            for metric, stem in _curve_files(args, curve_set)]  # fmt: skip


def _draw_curves(directory, args, curve_set) -> list[Path]:
    from plastic.report import figures
    from plastic.report.curves import EVAL_RETURN, TRAIN_RETURN

    paths = []
    returns = {"training": curve_set.curves[TRAIN_RETURN], "evaluation": curve_set.curves[EVAL_RETURN]}
    returns = {label: curves for label, curves in returns.items() if curves}
    if returns:
        paths += figures.learning_curves(returns, directory, "learning_curves", curve_set.step_unit, "Return",
                                         curve_set.random_scores)
    for metric, stem in _curve_files(args, curve_set)[1:]:
        if curve_set.curves[metric]:
            paths += figures.learning_curves({metric: curve_set.curves[metric]}, directory, stem,
                                             curve_set.step_unit, metric)  # fmt: skip
    return paths


def _draw_figures(directory: Path, report: _Report) -> list[Path]:
    from plastic.report import figures
    from plastic.report import scores as loading
    from plastic.report.reference import paper_compute

    args, results, groups, matrices = report.args, report.results, report.groups, report.matrices
    estimates, domain, metric_basis = report.estimates, report.domain, report.metric_basis
    label = "Human-normalized score" if metric_basis == "hns" else "Return"
    paths = figures.interval_estimates(estimates, directory, label)
    paths += figures.performance_profiles(matrices, directory, label, reps=min(args.reps, 500), seed=args.seed)

    # Learning and probe curves: from metrics.jsonl of run directories, and from `step` columns of score CSVs.
    mixed = len({run.replay_ratio for run in results.runs}) > 1
    returns: dict[str, dict[str, list]] = {}
    probes: dict[str, dict[str, list]] = {"Hessian \u03bbmax": {}, "Fraction of active units": {}}
    probe_names = {loading.HESSIAN_METRIC: "Hessian \u03bbmax", loading.ACTIVE_UNITS_METRIC: "Fraction of active units"}
    for curve in results.csv_curves:
        key = loading.method_key(loading.RunScore(curve.method, curve.env, curve.seed, 0.0, curve.replay_ratio), mixed)
        values = loading.normalized_score(curve.values, curve.env)
        returns.setdefault(key, {}).setdefault(curve.env, []).append((curve.steps, values))
    for method, runs in groups.items():
        for run in runs:
            if run.run_dir is None:
                continue
            metrics = loading.read_metrics(run.run_dir, loading.RETURN_METRICS + tuple(probe_names))
            curve = next((metrics[name] for name in loading.RETURN_METRICS if len(metrics.get(name, ((),))[0]) > 1),
                         None)  # fmt: skip
            if curve is not None:
                steps, values = curve
                returns.setdefault(method, {}).setdefault(run.env, []).append(
                    (steps, loading.normalized_score(values, run.env))
                )
            for name, title in probe_names.items():
                if name in metrics and len(metrics[name][0]) > 1:
                    probes[title].setdefault(method, []).append(metrics[name])
    complete = {
        method: by_task
        for method, by_task in returns.items()
        if len(by_task) == next(iter(matrices.values())).shape[1] and len({len(r) for r in by_task.values()}) == 1
    }
    if complete:
        paths += figures.sample_efficiency(complete, directory, label)
    probes = {title: by_method for title, by_method in probes.items() if by_method}
    if probes:
        paths += figures.probe_curves(probes, directory)

    compute = {}
    for method, runs in groups.items():
        times = [run.wall_time_s for run in runs if run.wall_time_s is not None]
        if times and len(times) == len(runs):
            compute[method] = (sum(times) / len(times) / 3600.0, estimates[method]["iqm"])
    if compute:
        paper_points = None
        if args.compare == "paper" and domain == "atari":
            paper_points = {f"{row.method} rr{row.replay_ratio}": (row.gpu_hours, row.iqm)
                            for row in paper_compute() if row.iqm is not None and row.replay_ratio}  # fmt: skip
        paths += figures.iqm_versus_compute(compute, directory, label, paper_points)
    return paths
