"""Figures of the synthetic experiments: the paper's Fig. 3 and accuracy curves over phases.

- `plot_improvement`: final test accuracy minus base's, mean over seeds with the 95% CI of the method (base's own
  spread is not added), one panel per group like Fig. 3: single methods (left) and combinations (right), one bar
  colour per scenario (input / label adaptation).
- `plot_curves`: mean test accuracy after every phase with a 95% CI band, one panel per scenario.
Both write PNG and PDF.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from plastic.report.aggregates import mean_confidence_interval
from plastic.synthetic.results import summarize

SCENARIO_LABELS = {"input": "input adaptation", "label": "label adaptation"}


def _save(figure: Any, path_stem: Path) -> list[Path]:
    from plastic.report.figures import save_figure

    return save_figure(figure, path_stem, dpi=150, tight_bbox=True)


def plot_improvement(rows: list[dict[str, Any]], out: str | os.PathLike) -> list[Path]:
    """Fig. 3: improvement of each method's final accuracy over base; needs base in the rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = {(s["scenario"], s["method"]): s for s in summarize(rows)}
    scenarios = [s for s in SCENARIO_LABELS if any(key[0] == s for key in summary)]
    methods = [m for (_, m) in summary if m != "base"]
    methods = list(dict.fromkeys(methods))
    combined = [m for m in methods if "+" in m or m == "plastic"]
    groups = [("single methods", [m for m in methods if m not in combined]), ("combinations", combined)]
    groups = [(title, names) for title, names in groups if names]
    figure, axes = plt.subplots(1, max(1, len(groups)), figsize=(4 + 4 * max(1, len(groups)), 4), squeeze=False)
    width = 0.8 / max(1, len(scenarios))
    for axis, (title, names) in zip(axes[0], groups):
        positions = np.arange(len(names))
        for k, scenario in enumerate(scenarios):
            base = summary.get((scenario, "base"))
            if base is None:
                continue
            means, errors = [], [[], []]
            for name in names:
                entry = summary.get((scenario, name))
                mean = (entry["mean"] - base["mean"]) if entry else np.nan
                means.append(100 * mean)
                errors[0].append(100 * (entry["mean"] - entry["ci_low"]) if entry else 0)
                errors[1].append(100 * (entry["ci_high"] - entry["mean"]) if entry else 0)
            axis.bar(positions + (k - (len(scenarios) - 1) / 2) * width, means, width, yerr=errors, capsize=3,
                     label=SCENARIO_LABELS[scenario])
        axis.axhline(0, color="black", linewidth=0.8)
        axis.set_xticks(positions, [n.replace("+", "\n+") for n in names], fontsize=8)
        axis.set_title(title)
        axis.set_ylabel("improvement over base (accuracy points)")
        axis.legend(fontsize=8)
    return _save(figure, Path(out) / "improvement")


def plot_curves(rows: list[dict[str, Any]], out: str | os.PathLike) -> list[Path]:
    """Mean test accuracy after each phase with 95% CI, per method, one panel per scenario."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves: dict[tuple[str, str], dict[int, list[float]]] = {}
    for row in rows:
        curves.setdefault((row["scenario"], row["method"]), {}).setdefault(int(row["phase"]), []).append(
            float(row["test_accuracy"])
        )
    scenarios = [s for s in SCENARIO_LABELS if any(key[0] == s for key in curves)]
    figure, axes = plt.subplots(1, max(1, len(scenarios)), figsize=(6 * max(1, len(scenarios)), 4), squeeze=False)
    for axis, scenario in zip(axes[0], scenarios):
        for (s, method), by_phase in curves.items():
            if s != scenario:
                continue
            phases = sorted(by_phase)
            stats = np.array([mean_confidence_interval(by_phase[p]) for p in phases])
            axis.plot(phases, stats[:, 0], label=method)
            axis.fill_between(phases, stats[:, 1], stats[:, 2], alpha=0.2)
        axis.set_title(SCENARIO_LABELS[scenario])
        axis.set_xlabel("phase")
        axis.set_ylabel("test accuracy")
        axis.legend(fontsize=8)
    return _save(figure, Path(out) / "curves")
