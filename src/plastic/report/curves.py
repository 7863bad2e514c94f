"""Learning curves for the report: any metric of metrics.jsonl against training steps, mean over seeds with a CI.

Each run directory's metrics.jsonl is read once. Per (method, env), a curve is built in three steps:

1. bins: the env's step range [0, S] is cut into `bins` equal bins (lo, hi], S being the largest training budget
   of the env's runs (or the largest logged step, if larger), so an unfinished run's points land where they will
   stay once it finishes. A bin is reported at its upper edge `hi`: an evaluation logged every S / bins steps sits
   exactly at its own step.
2. per run: the mean of the values the run logged inside each bin (e.g. all episodic returns of episodes that
   ended there); a run with nothing logged in a bin does not count for it.
3. over runs: the mean over the runs (seeds) that have a value in the bin, `n` of them, and the Student-t interval
   mean +- t_{(1+c)/2, n-1} * sd / sqrt(n) at confidence c (zero width when n = 1).

Steps: metrics.jsonl counts agent steps. A run whose result.json (or config.json) has both `steps` and `env_steps`
is drawn in environment steps (agent step x env_steps / steps); when any run lacks them, every run stays in agent
steps, so one axis never mixes the two units.

Runs: finished runs carry the labels of their result.json (the ones the tables use); unfinished runs (no
result.json yet) take method, env, seed and replay ratio from their config.json, so a running sweep can be drawn.
Values are raw (Atari returns are not human-normalized: one panel per game).
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from plastic.report import scores as loading

TRAIN_RETURN = "charts/episodic_return"
EVAL_RETURN = "eval/return_mean"
CSV_COLUMNS = ("method", "env", "step", "mean", "ci_low", "ci_high", "n")
DEFAULT_BINS = 20
ENV_STEPS = "environment steps"
AGENT_STEPS = "agent steps"


@dataclass
class RunMetrics:
    """One run directory's labels and logged metrics (steps already in the report's step unit)."""

    method: str  # method key, as in the tables (see `scores.method_key`)
    env: str
    seed: str
    budget: float | None  # the run's training budget in the report's step unit, if known
    metrics: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


@dataclass(frozen=True)
class BinnedCurve:
    """The curve of one metric for one (method, env): per bin with data, its upper edge and the statistics."""

    method: str
    env: str
    steps: np.ndarray
    mean: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    n: np.ndarray


@dataclass
class CurveSet:
    """Everything the report draws and writes as curves."""

    step_unit: str  # ENV_STEPS or AGENT_STEPS
    curves: dict[str, list[BinnedCurve]]  # metric name -> one curve per (method, env)
    random_scores: dict[str, float] = field(default_factory=dict)  # env -> mean `random_score` of its finished runs


def sanitized(metric: str) -> str:
    """A file-name stem for a metric name: "probes/hessian_max_eigenvalue" -> "probes_hessian_max_eigenvalue"."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", metric).strip("_.")


def _json_object(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _positive(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None


def _step_scale(run_dir: Path) -> tuple[float | None, float | None]:
    """(agent-step budget, environment steps per agent step) from result.json, else config.json; None if unknown."""
    budget, scale = None, None
    for name in ("result.json", "config.json"):
        data = _json_object(run_dir / name)
        steps, env_steps = _positive(data.get("steps")), _positive(data.get("env_steps"))
        budget = budget or steps
        if scale is None and steps and env_steps:
            scale = env_steps / steps
    return budget, scale


def _unfinished_labels(run_dir: Path) -> tuple[str, str, str, int | None] | None:
    """(method label, env, seed, replay ratio) of a run without result.json, from its config.json; None if it has
    no readable config.json."""
    from plastic import config as config_module

    data = _json_object(run_dir / "config.json")
    if not data:
        return None
    try:
        config = config_module.from_dict(data)
        env = loading.canonical_env(config.env)
        return config.method_label, env, str(config.seed), config.replay_ratio
    except (ValueError, TypeError, KeyError):
        return None


def load_run_metrics(
    results: loading.Results, domain: str, names: Sequence[str]
) -> tuple[list[RunMetrics], str, set[str]]:
    """(runs, step unit, every metric name logged by any run) for the run directories among the results: finished
    runs and the unfinished ones of `domain` whose config.json names their method and env."""
    labelled: list[tuple[loading.RunScore, Path]] = []
    for run in results.runs:
        if run.run_dir is not None:
            labelled.append((run, run.run_dir))
    for run_dir in results.unfinished:
        labels = _unfinished_labels(run_dir)
        if labels is not None and loading.domain_of(labels[1]) == domain:
            method, env, seed, replay_ratio = labels
            labelled.append((loading.RunScore(method, env, seed, 0.0, replay_ratio, source=str(run_dir)), run_dir))
    mixed = len({run.replay_ratio for run, _ in labelled}) > 1
    scales = [(run, run_dir, *_step_scale(run_dir)) for run, run_dir in labelled]
    in_env_steps = bool(scales) and all(scale is not None for *_, scale in scales)
    seen: set[str] = set()
    runs = []
    for run, run_dir, budget, scale in scales:
        factor = scale if in_env_steps else 1.0
        metrics = loading.read_metrics(run_dir, names, seen)
        runs.append(RunMetrics(
            method=loading.method_key(run, mixed), env=run.env, seed=run.seed,
            budget=budget * factor if budget is not None else None,
            metrics={name: (steps * factor, values) for name, (steps, values) in metrics.items()},
        ))  # fmt: skip
    return runs, ENV_STEPS if in_env_steps else AGENT_STEPS, seen


def bin_edges(runs: Sequence[RunMetrics], bins: int) -> np.ndarray:
    """`bins` + 1 equal-width edges from 0 to the largest budget (or logged step) of `runs`, all of one env."""
    ends = [run.budget for run in runs if run.budget is not None]
    ends += [float(steps.max()) for run in runs for steps, _ in run.metrics.values() if len(steps)]
    return np.linspace(0.0, max(ends, default=1.0) or 1.0, bins + 1)


def binned_run(steps: np.ndarray, values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Per bin (lo, hi] of `edges`, the mean of the values logged at steps inside it; NaN where there are none.
    Step 0 counts in the first bin."""
    index = np.clip(np.searchsorted(edges, steps, side="left") - 1, 0, len(edges) - 2)
    sums = np.bincount(index, weights=values, minlength=len(edges) - 1)
    counts = np.bincount(index, minlength=len(edges) - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def bin_curves(runs: Sequence[RunMetrics], metric: str, bins: int, confidence: float) -> list[BinnedCurve]:
    """One curve of `metric` per (method, env) that logged it, in order of first appearance."""
    from plastic.report.aggregates import mean_confidence_interval

    edges_of = {env: bin_edges([run for run in runs if run.env == env], bins) for env in {run.env for run in runs}}
    grouped: dict[tuple[str, str], list[np.ndarray]] = {}
    for run in runs:
        if metric in run.metrics:
            steps, values = run.metrics[metric]
            grouped.setdefault((run.method, run.env), []).append(binned_run(steps, values, edges_of[run.env]))
    curves = []
    for (method, env), per_run in grouped.items():
        matrix = np.stack(per_run)  # (runs, bins)
        rows = []
        for column, upper in zip(matrix.T, edges_of[env][1:]):
            present = [float(v) for v in column if np.isfinite(v)]
            if present:
                rows.append((upper, *mean_confidence_interval(present, confidence), len(present)))
        if rows:
            steps, mean, low, high, n = (np.array(part) for part in zip(*rows))
            curves.append(BinnedCurve(method, env, steps, mean, low, high, n.astype(int)))
    return curves


def build(
    results: loading.Results, domain: str, metrics: Sequence[str], bins: int, confidence: float
) -> CurveSet | None:
    """The training and evaluation return curves plus one curve per name in `metrics`; None without run
    directories. ValueError naming a metric in `metrics` that no run logged."""
    names = list(dict.fromkeys([TRAIN_RETURN, EVAL_RETURN, *metrics]))
    runs, step_unit, seen = load_run_metrics(results, domain, names)
    for metric in metrics:
        if metric not in seen:
            if not runs:
                raise ValueError(f"--curve-metric {metric!r}: no run directory among the inputs, so no metrics.jsonl "
                                 "logged it (score CSVs have no curves)")  # fmt: skip
            listed = sorted(seen)
            more = f", ... ({len(listed)} in all)" if len(listed) > 12 else ""
            raise ValueError(f"--curve-metric {metric!r}: no run logged it; logged metrics are "
                             f"{', '.join(listed[:12]) or 'none'}{more}")  # fmt: skip
    stems: dict[str, str] = {}
    for metric in metrics:
        other = stems.setdefault(sanitized(metric), metric)
        if other != metric:
            raise ValueError(f"--curve-metric {other!r} and {metric!r} would both be written as "
                             f"curve_{sanitized(metric)}.csv; give one of them")  # fmt: skip
    if not runs:
        return None
    return CurveSet(step_unit, {name: bin_curves(runs, name, bins, confidence) for name in names},
                    random_scores(results))


def random_scores(results: loading.Results) -> dict[str, float]:
    """Per env, the mean `random_score` (a uniformly random policy's score, written by `plastic train`) of its
    finished runs that recorded one: the line a learning curve is read against."""
    scores: dict[str, list[float]] = {}
    for run in results.runs:
        if run.run_dir is not None and run.random_score is not None:
            scores.setdefault(run.env, []).append(run.random_score)
    return {env: float(np.mean(values)) for env, values in scores.items()}


def write_csv(curves: Sequence[BinnedCurve], path: Path) -> Path:
    """`method,env,step,mean,ci_low,ci_high,n`, one row per (method, env, bin with data)."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for curve in curves:
            for i in range(len(curve.steps)):
                step = float(curve.steps[i])
                writer.writerow([curve.method, curve.env, int(step) if step.is_integer() else step,
                                 float(curve.mean[i]), float(curve.ci_low[i]), float(curve.ci_high[i]),
                                 int(curve.n[i])])  # fmt: skip
    return path
