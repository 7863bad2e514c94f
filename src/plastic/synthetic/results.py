"""Result files of `plastic synthetic`: per-phase rows (CSV + JSONL) and the per-method summary with 95% CIs.

Files are written to a temporary file in the same folder and renamed, so a reader never sees a half-written file.
The summary is over seeds of the final-phase test accuracy (App. A.2: "test accuracy, averaged over 30 random seeds
with a 95% confidence interval, at the end of each experiment"): mean ± t_{0.975, n-1} · sd / sqrt(n).
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, Iterable

from plastic.report.aggregates import mean_confidence_interval
from plastic.training.files import atomic_write_text as write_atomic

RESULT_COLUMNS = ("scenario", "method", "seed", "phase", "test_accuracy", "train_loss")
SUMMARY_COLUMNS = ("scenario", "method", "mean", "ci_low", "ci_high", "n")


def _columns(rows: list[dict[str, Any]], first: Iterable[str]) -> list[str]:
    columns = list(first)
    for row in rows:
        columns.extend(key for key in row if key not in columns)
    return columns


def to_csv(rows: list[dict[str, Any]], first: Iterable[str] = RESULT_COLUMNS) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=_columns(rows, first), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_results(out: str | os.PathLike, rows: list[dict[str, Any]]) -> None:
    """`results.csv` and `results.jsonl` (one JSON object per phase row) in `out`."""
    write_atomic(Path(out) / "results.csv", to_csv(rows))
    write_atomic(Path(out) / "results.jsonl", "".join(json.dumps(row) + "\n" for row in rows))


def final_accuracies(rows: list[dict[str, Any]]) -> dict[tuple[str, str], list[float]]:
    """{(scenario, method): [final-phase test accuracy of each seed]}, in the order the rows first name them."""
    last: dict[tuple[str, str, int], tuple[int, float]] = {}
    for row in rows:
        key = (row["scenario"], row["method"], int(row["seed"]))
        if key not in last or int(row["phase"]) >= last[key][0]:
            last[key] = (int(row["phase"]), float(row["test_accuracy"]))
    grouped: dict[tuple[str, str], list[float]] = {}
    for (scenario, method, _), (_, value) in last.items():
        grouped.setdefault((scenario, method), []).append(value)
    return grouped


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    summary = []
    for (scenario, method), values in final_accuracies(rows).items():
        mean, low, high = mean_confidence_interval(values)
        summary.append(dict(scenario=scenario, method=method, mean=mean, ci_low=low, ci_high=high, n=len(values)))
    return summary


def write_summary(out: str | os.PathLike, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    summary = summarize(rows)
    write_atomic(Path(out) / "summary.csv", to_csv(summary, SUMMARY_COLUMNS))
    return summary


# Probe columns as older versions named them -> the training runs' names (`probes/...`), used since.
_OLD_PROBE_PREFIXES = (("lambda_max", "probes/hessian_max_eigenvalue"), ("active/", "probes/active_unit_fraction/"))


def _current_names(row: dict[str, Any]) -> dict[str, Any]:
    renamed = {}
    for key, value in row.items():
        for old, new in _OLD_PROBE_PREFIXES:
            if key == old or (old.endswith("/") and key.startswith(old)):
                key = new + key[len(old):]
                break
        renamed[key] = value
    return renamed


def read_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a `results.jsonl`; probe columns written by older versions (`lambda_max`, `active/...`) are read
    under their current names."""
    with open(path) as handle:
        return [_current_names(json.loads(line)) for line in handle if line.strip()]
