"""The report's figures, each saved as PNG and PDF (matplotlib, Agg backend).

- interval estimates of the four aggregates per method (rliable's `plot_interval_estimates`);
- performance profiles: fraction of runs above each score threshold, with bootstrap bands;
- sample-efficiency curves: IQM over runs x tasks of the (normalized) return against training steps;
- probe curves (paper Fig. 4): Hessian lambda_max and the fraction of active units over training, mean over runs;
- IQM against compute (paper Fig. 1): IQM with its CI against wall-clock hours per run;
- learning curves: per env, one metric (or the training and evaluation returns) against steps, mean over seeds with
  its CI band, one line per method (binned in `plastic.report.curves`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from plastic.report.aggregates import Estimate, interquartile_mean, performance_profile  # noqa: E402
from plastic.report.curves import BinnedCurve  # noqa: E402
from plastic.report.tables import METRIC_TITLES  # noqa: E402


def save_figure(figure, stem: Path, *, dpi: int = 120, tight_bbox: bool = False) -> list[Path]:
    """Save `figure` as `stem`.png and `stem`.pdf and close it; returns the paths. `tight_bbox` crops to the drawn
    area (bbox_inches="tight") instead of laying the axes out tightly first."""
    if not tight_bbox:
        figure.tight_layout()
    paths = [stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".pdf")]
    for path in paths:
        figure.savefig(path, dpi=dpi, **({"bbox_inches": "tight"} if tight_bbox else {}))
    plt.close(figure)
    return paths


def step_label(value: float, _position=None) -> str:
    """A step-axis tick: 400000 -> "400k", 1500000 -> "1.5M" (full numbers of six or more digits collide)."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def _steps_axis(axis) -> None:
    axis.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(step_label))


def _save(figure, directory: Path, name: str) -> list[Path]:
    return save_figure(figure, directory / name)


def _finish(figure, axis, directory: Path, name: str, x_label: str, y_label: str) -> list[Path]:
    """The single-panel figures' common ending: axis labels, legend, light grid; saved as PNG and PDF."""
    axis.set_xlabel(x_label)
    axis.set_ylabel(y_label)
    axis.legend()
    axis.grid(alpha=0.3)
    return _save(figure, directory, name)


def interval_estimates(
    estimates: Mapping[str, Mapping[str, Estimate]], directory: Path, axis_label: str
) -> list[Path]:
    """One panel per aggregate: a bar from CI low to CI high and a tick at the point estimate, per method."""
    methods = list(estimates)
    figure, axes = plt.subplots(1, len(METRIC_TITLES), figsize=(3.2 * len(METRIC_TITLES), 0.5 * len(methods) + 1.4))
    colors = plt.cm.tab10(np.arange(len(methods)) % 10)
    for axis, (metric, title) in zip(axes, METRIC_TITLES.items()):
        for row, method in enumerate(methods):
            estimate = estimates[method][metric]
            axis.barh(row, estimate.ci_high - estimate.ci_low, left=estimate.ci_low, height=0.6, color=colors[row],
                      alpha=0.75)  # fmt: skip
            axis.vlines(estimate.value, row - 0.3, row + 0.3, color="black", linewidth=1.5)
        axis.set_title(title)
        axis.set_yticks(range(len(methods)), methods if axis is axes[0] else [""] * len(methods))
        axis.set_xlabel(axis_label)
        axis.grid(axis="x", alpha=0.3)
    return _save(figure, directory, "interval_estimates")


def performance_profiles(
    matrices: Mapping[str, np.ndarray], directory: Path, axis_label: str, reps: int, seed: int
) -> list[Path]:
    """Score distributions (fraction of runs with score > tau) with 95% bootstrap bands."""
    everything = np.concatenate([m.ravel() for m in matrices.values()])
    high = max(float(np.quantile(everything, 0.95)), 1.0 if axis_label.startswith("Human") else 0.0)
    thresholds = np.linspace(min(0.0, float(everything.min())), high, 81)
    figure, axis = plt.subplots(figsize=(6, 4))
    for method, matrix in matrices.items():
        profile, low, upper = performance_profile(matrix, thresholds, reps=reps, seed=seed)
        (line,) = axis.plot(thresholds, profile, label=method)
        axis.fill_between(thresholds, low, upper, color=line.get_color(), alpha=0.2)
    axis.set_ylim(0, 1.02)
    x_label = f"{axis_label} (\u03c4)"
    return _finish(figure, axis, directory, "performance_profiles", x_label, "Fraction of runs with score > \u03c4")


def _common_grid(curves: Sequence[tuple[np.ndarray, np.ndarray]], points: int = 50) -> np.ndarray | None:
    """Steps at which every curve has data (from the latest first step to the earliest last step)."""
    start = max(steps[0] for steps, _ in curves)
    stop = min(steps[-1] for steps, _ in curves)
    return np.linspace(start, stop, points) if stop > start else None


def sample_efficiency(
    curves: Mapping[str, Mapping[str, Sequence[tuple[np.ndarray, np.ndarray]]]], directory: Path, axis_label: str
) -> list[Path]:
    """IQM of the normalized return over runs x tasks at each step. `curves`: method -> task -> [(steps, values)]
    with the same number of runs per task; runs are interpolated onto the steps all of them cover."""
    figure, axis = plt.subplots(figsize=(6, 4))
    for method, by_task in curves.items():
        every = [curve for runs in by_task.values() for curve in runs]
        grid = _common_grid(every)
        if grid is None:
            continue
        matrix = np.stack([[np.interp(grid, s, v) for s, v in runs] for runs in by_task.values()], axis=-1)
        axis.plot(grid, interquartile_mean(np.moveaxis(matrix, 1, 0)), label=method)  # (steps, runs, tasks)
    _steps_axis(axis)
    return _finish(figure, axis, directory, "sample_efficiency", "Environment steps", f"IQM {axis_label}")


def probe_curves(
    probes: Mapping[str, Mapping[str, Sequence[tuple[np.ndarray, np.ndarray]]]], directory: Path
) -> list[Path]:
    """Fig. 4: one panel per probe; per method the mean over runs (interpolated onto shared steps) +- one SE."""
    titles = list(probes)
    figure, axes = plt.subplots(1, len(titles), figsize=(5.5 * len(titles), 4), squeeze=False)
    for axis, title in zip(axes[0], titles):
        for method, runs in probes[title].items():
            grid = _common_grid(runs)
            if grid is None:
                continue
            values = np.array([np.interp(grid, s, v) for s, v in runs])
            mean = values.mean(axis=0)
            error = values.std(axis=0, ddof=1) / np.sqrt(len(values)) if len(values) > 1 else np.zeros_like(mean)
            (line,) = axis.plot(grid, mean, label=method)
            axis.fill_between(grid, mean - error, mean + error, color=line.get_color(), alpha=0.2)
        axis.set_title(title)
        axis.set_xlabel("Environment steps")
        _steps_axis(axis)
        axis.legend()
        axis.grid(alpha=0.3)
    return _save(figure, directory, "probe_curves")


def iqm_versus_compute(
    points: Mapping[str, tuple[float, Estimate]],
    directory: Path,
    axis_label: str,
    paper_points: Mapping[str, tuple[float, float]] | None = None,
) -> list[Path]:
    """Fig. 1: IQM (with its CI) against hours per run for each method; paper points (GPU hours) as crosses."""
    figure, axis = plt.subplots(figsize=(6, 4))
    for method, (hours, estimate) in points.items():
        error = [[estimate.value - estimate.ci_low], [estimate.ci_high - estimate.value]]
        axis.errorbar(hours, estimate.value, yerr=error, fmt="o", capsize=3, label=method)
    for method, (hours, iqm) in (paper_points or {}).items():
        axis.scatter(hours, iqm, marker="x", color="gray")
        axis.annotate(method, (hours, iqm), fontsize=7, color="gray")
    return _finish(figure, axis, directory, "iqm_vs_compute", "Wall-clock hours per run", f"IQM {axis_label}")


def learning_curves(
    series: Mapping[str, Sequence[BinnedCurve]], directory: Path, name: str, x_label: str, y_label: str,
    random_scores: Mapping[str, float] | None = None,
) -> list[Path]:
    """One panel per env, one color per method; `series` maps a style label ("training", "evaluation", or the
    metric name) to its curves, drawn solid, dashed with markers, ... The band is each bin's CI over seeds.
    `random_scores`: per env, a random policy's score, drawn as a grey dotted line."""
    envs = list(dict.fromkeys(curve.env for curves in series.values() for curve in curves))
    methods = list(dict.fromkeys(curve.method for curves in series.values() for curve in curves))
    colors = dict(zip(methods, plt.cm.tab10(np.arange(len(methods)) % 10)))
    columns = min(len(envs), 3)
    rows = -(-len(envs) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5.0 * columns, 3.6 * rows), squeeze=False)
    styles = [dict(linestyle="-"), dict(linestyle="--", marker="o", markersize=3)]
    for axis, env in zip(axes.ravel(), envs):
        for (label, curves), style in zip(series.items(), styles):
            for curve in curves:
                if curve.env != env:
                    continue
                suffix = f" ({label})" if len(series) > 1 else ""
                axis.plot(curve.steps, curve.mean, color=colors[curve.method], label=curve.method + suffix, **style)
                axis.fill_between(curve.steps, curve.ci_low, curve.ci_high, color=colors[curve.method], alpha=0.2)
        if random_scores and env in random_scores:
            axis.axhline(random_scores[env], color="0.5", linestyle=":", label="random policy")
        axis.set_title(env)
        axis.set_xlabel(x_label[:1].upper() + x_label[1:])
        _steps_axis(axis)
        axis.set_ylabel(y_label)
        axis.legend(fontsize=8)
        axis.grid(alpha=0.3)
    for axis in axes.ravel()[len(envs):]:
        axis.set_visible(False)
    return _save(figure, directory, name)
