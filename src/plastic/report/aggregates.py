"""Aggregate metrics with stratified bootstrap confidence intervals (paper §4.1; Agarwal et al. 2021, "rliable").

A method's results are a score matrix of shape (num_runs, num_tasks): one final score per seed and task (human-
normalized on Atari, raw on DMC and MinAtar). The definitions equal rliable's `metrics.aggregate_*`:
- IQM: the 25%-trimmed mean over all runs x tasks (scipy's `trim_mean(proportiontocut=0.25, axis=None)`);
- median: the median over tasks of the per-task mean; mean: the mean over tasks of the per-task mean;
- optimality gap: gamma - mean(min(score, gamma)), i.e. mean(max(gamma - score, 0)), with gamma = 1.
Confidence intervals are percentile intervals of the stratified bootstrap: every resample draws num_runs runs with
replacement independently within each task. Indices come from `numpy.random.RandomState(seed).randint`, the same
stream rliable draws from the global numpy state, so with the same seed both give the same intervals.

All statistics here are vectorised: they take arrays whose last two axes are (runs, tasks) and reduce those two, so
one call evaluates every bootstrap resample at once. rliable is not needed at run time (it is a test dependency).

`mean_confidence_interval` is the Student-t interval over seeds, mean ± t_{(1+level)/2, n-1} · sd / sqrt(n): the
learning-curve bands and the synthetic experiments' summary (App. A.2: "averaged over 30 random seeds with a 95%
confidence interval").
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

# Resamples drawn per vectorised chunk: bounds memory at chunk * runs * tasks floats.
_BOOTSTRAP_CHUNK = 500


def interquartile_mean(scores: np.ndarray) -> np.ndarray:
    """IQM: mean of the middle 50% of all runs x tasks (a 25%-trimmed mean, trimming int(0.25 n) each side)."""
    flat = np.sort(np.reshape(scores, scores.shape[:-2] + (-1,)), axis=-1)
    cut = int(0.25 * flat.shape[-1])
    return np.mean(flat[..., cut : flat.shape[-1] - cut], axis=-1)


def median_of_task_means(scores: np.ndarray) -> np.ndarray:
    """Median over tasks of the per-task mean score."""
    return np.median(np.mean(scores, axis=-2), axis=-1)


def mean_of_task_means(scores: np.ndarray) -> np.ndarray:
    """Mean over tasks of the per-task mean score."""
    return np.mean(np.mean(scores, axis=-2), axis=-1)


def optimality_gap(scores: np.ndarray, threshold: float = 1.0) -> np.ndarray:
    """How far the runs fall short of `threshold` on average: threshold - mean(min(score, threshold))."""
    return threshold - np.mean(np.minimum(scores, threshold), axis=(-2, -1))


# The four aggregates the paper reports, under the names of the JSON output.
AGGREGATES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "iqm": interquartile_mean,
    "median": median_of_task_means,
    "mean": mean_of_task_means,
    "optimality_gap": optimality_gap,
}


@dataclass(frozen=True)
class Estimate:
    """A point estimate and its confidence interval."""

    value: float
    ci_low: float
    ci_high: float

    def as_json(self) -> dict:
        return {"value": self.value, "ci": [self.ci_low, self.ci_high]}


def check_score_matrix(scores: np.ndarray, name: str = "scores") -> np.ndarray:
    """`scores` as a float array of shape (runs, tasks); ValueError naming `name` if it is not one."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] < 1 or scores.shape[1] < 1:
        raise ValueError(f"{name} must be a (num_runs, num_tasks) matrix with at least one entry, got {scores.shape}")
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"{name} must be finite; it contains NaN or inf")
    return scores


def _progress(total: int, description: str):
    """A tqdm bar on stderr when it is a terminal, else a no-op with the same interface."""
    from tqdm import tqdm

    return tqdm(total=total, desc=description, disable=not sys.stderr.isatty(), leave=False)


def stratified_bootstrap(
    scores: np.ndarray,
    statistics: Mapping[str, Callable[[np.ndarray], np.ndarray]],
    reps: int = 2000,
    seed: int | None = 0,
    description: str = "bootstrap",
) -> dict[str, np.ndarray]:
    """Each statistic on `reps` stratified resamples of `scores` (runs resampled with replacement within each task).

    `scores` has shape (runs, tasks, *extra); every statistic must reduce the (runs, tasks) axes of an array shaped
    (batch, runs, tasks, *extra) and return shape (batch, *rest). Returns name -> array of shape (reps, *rest).
    """
    if reps < 1:
        raise ValueError(f"reps must be a positive number of bootstrap resamples, got {reps}")
    num_runs, num_tasks = scores.shape[:2]
    rng = np.random.RandomState(seed)
    task_index = np.arange(num_tasks)
    results: dict[str, list[np.ndarray]] = {name: [] for name in statistics}
    with _progress(reps, description) as bar:
        for start in range(0, reps, _BOOTSTRAP_CHUNK):
            count = min(_BOOTSTRAP_CHUNK, reps - start)
            # Same draws, in the same order, as rliable's StratifiedBootstrap: np.random.choice(runs, (runs, tasks)).
            run_index = rng.randint(0, num_runs, size=(count, num_runs, num_tasks))
            resampled = scores[run_index, task_index]
            for name, statistic in statistics.items():
                results[name].append(np.asarray(statistic(resampled)))
            bar.update(count)
    return {name: np.concatenate(values, axis=0) for name, values in results.items()}


def percentile_interval(samples: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """The (lower, upper) percentile bootstrap interval along axis 0, as rliable's `method='percentile'`."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    alpha = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(samples, [alpha, 100.0 - alpha], axis=0)
    return low, high


def aggregate_estimates(
    scores: np.ndarray,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int | None = 0,
    description: str = "bootstrap",
) -> dict[str, Estimate]:
    """IQM, median, mean and optimality gap of one method's (runs, tasks) matrix, each with a bootstrap CI.

    All four statistics are computed on the same resamples (one seeded stream per call), so each method's intervals
    do not depend on which other methods are reported beside it.
    """
    scores = check_score_matrix(scores)
    samples = stratified_bootstrap(scores, AGGREGATES, reps=reps, seed=seed, description=description)
    estimates = {}
    for name, statistic in AGGREGATES.items():
        low, high = percentile_interval(samples[name], confidence)
        estimates[name] = Estimate(float(statistic(scores)), float(low), float(high))
    return estimates


def probability_of_improvement(scores_x: np.ndarray, scores_y: np.ndarray) -> np.ndarray:
    """P(X > Y): per task, the Mann-Whitney U of X over Y divided by n_x n_y (ties count 1/2), averaged over tasks.

    Takes (..., runs_x, tasks) and (..., runs_y, tasks) and reduces the last two axes.
    """
    greater = scores_x[..., :, None, :] > scores_y[..., None, :, :]
    ties = scores_x[..., :, None, :] == scores_y[..., None, :, :]
    per_task = np.mean(greater + 0.5 * ties, axis=(-3, -2))
    return np.mean(per_task, axis=-1)


def probability_of_improvement_estimate(
    scores_x: np.ndarray, scores_y: np.ndarray, reps: int = 2000, confidence: float = 0.95, seed: int | None = 0
) -> Estimate:
    """P(X > Y) with a CI from resampling the runs of X and of Y independently within each task."""
    scores_x, scores_y = check_score_matrix(scores_x, "scores_x"), check_score_matrix(scores_y, "scores_y")
    if scores_x.shape[1] != scores_y.shape[1]:
        raise ValueError(f"scores_x and scores_y must cover the same tasks, got {scores_x.shape} and {scores_y.shape}")
    if reps < 1:
        raise ValueError(f"reps must be a positive number of bootstrap resamples, got {reps}")
    rng = np.random.RandomState(seed)
    tasks = np.arange(scores_x.shape[1])
    samples = []
    for start in range(0, reps, _BOOTSTRAP_CHUNK):
        count = min(_BOOTSTRAP_CHUNK, reps - start)
        x = scores_x[rng.randint(0, scores_x.shape[0], size=(count,) + scores_x.shape), tasks]
        y = scores_y[rng.randint(0, scores_y.shape[0], size=(count,) + scores_y.shape), tasks]
        samples.append(probability_of_improvement(x, y))
    low, high = percentile_interval(np.concatenate(samples), confidence)
    return Estimate(float(probability_of_improvement(scores_x, scores_y)), float(low), float(high))


def score_distribution(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Performance profile: the fraction of all runs x tasks whose score exceeds each threshold tau.

    Takes (..., runs, tasks) and returns (..., len(thresholds)), as rliable's `run_score_deviation`.
    """
    thresholds = np.asarray(thresholds, dtype=np.float64)
    flat = np.reshape(scores, scores.shape[:-2] + (-1, 1))
    return np.mean(flat > thresholds, axis=-2)


def performance_profile(
    scores: np.ndarray, thresholds: np.ndarray, reps: int = 2000, confidence: float = 0.95, seed: int | None = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(profile, lower, upper) of the score distribution at each threshold, with stratified bootstrap bands."""
    scores = check_score_matrix(scores)
    samples = stratified_bootstrap(
        scores, {"profile": lambda s: score_distribution(s, thresholds)}, reps=reps, seed=seed, description="profile"
    )["profile"]
    low, high = percentile_interval(samples, confidence)
    return score_distribution(scores, thresholds), low, high


def mean_confidence_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of the Student-t interval; with one value the interval is that value."""
    n = len(values)
    if n == 0:
        raise ValueError("values is empty")
    mean = sum(values) / n
    if n == 1:
        return mean, mean, mean
    from scipy.stats import t

    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return mean, mean - half, mean + half
