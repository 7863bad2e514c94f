"""The report's tables, each written as Markdown, CSV and LaTeX.

- aggregate table (paper Table 1): IQM / median / mean / optimality gap with 95% CIs per method;
- per-game table (Table 7 / Table 10): mean raw score per task and method over seeds;
- ablation table (Table 4): methods as on/off combinations of LN, SAM, CReLU, Reset with their IQM;
- replay-ratio scaling table (Tables 2 and 9): aggregates per replay ratio with wall-clock hours per run.
With `compare_paper`, the paper's published numbers go beside the user's, labelled "(paper)".
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from plastic.report.aggregates import Estimate
from plastic.report.reference import (
    ABLATION_SWITCHES,
    paper_ablation,
    paper_aggregates,
    paper_compute,
    paper_per_game,
)
from plastic.report.scores import RunScore

METRIC_TITLES = {"iqm": "IQM", "median": "Median", "mean": "Mean", "optimality_gap": "Optimality gap"}
SWITCH_TITLES = {"ln": "LN", "sam": "SAM", "crelu": "CReLU", "reset": "Reset"}

Cell = str | float | int | Estimate | None


@dataclass
class Table:
    """A titled table of cells; an `Estimate` cell prints as "value (low, high)" and becomes three CSV columns."""

    name: str  # file stem
    title: str
    columns: list[str]
    rows: list[list[Cell]]
    digits: int = 3

    def _text(self, cell: Cell) -> str:
        if cell is None:
            return "n/a"
        if isinstance(cell, Estimate):
            return f"{self._text(cell.value)} ({self._text(cell.ci_low)}, {self._text(cell.ci_high)})"
        if isinstance(cell, float):
            return f"{cell:.{self.digits}f}"
        return str(cell)

    def to_markdown(self) -> str:
        lines = [f"**{self.title}**", "", "| " + " | ".join(self.columns) + " |"]
        lines.append("|" + "|".join("---" for _ in self.columns) + "|")
        lines += ["| " + " | ".join(self._text(cell) for cell in row) + " |" for row in self.rows]
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        estimate_columns = {i for row in self.rows for i, cell in enumerate(row) if isinstance(cell, Estimate)}
        header = []
        for i, column in enumerate(self.columns):
            header += [column, f"{column} ci_low", f"{column} ci_high"] if i in estimate_columns else [column]
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        for row in self.rows:
            out: list = []
            for i, cell in enumerate(row):
                if i in estimate_columns:
                    out += [cell.value, cell.ci_low, cell.ci_high] if isinstance(cell, Estimate) else [cell, "", ""]
                else:
                    out.append("" if cell is None else cell)
            writer.writerow(out)
        return buffer.getvalue()

    def to_latex(self) -> str:
        def escape(text: str) -> str:
            for raw, tex in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("#", r"\#"), ("_", r"\_"),
                             ("†", r"$^\dagger$"), ("✓", r"\checkmark")):  # fmt: skip
                text = text.replace(raw, tex)
            return text

        lines = [
            "% " + escape(self.title),
            r"\begin{tabular}{l" + "c" * (len(self.columns) - 1) + "}",
            r"\toprule",
            " & ".join(escape(c) for c in self.columns) + r" \\",
            r"\midrule",
        ]
        lines += [" & ".join(escape(self._text(cell)) for cell in row) + r" \\" for row in self.rows]
        lines += [r"\bottomrule", r"\end{tabular}"]
        return "\n".join(lines) + "\n"

    def write(self, directory: Path) -> list[Path]:
        """Writes NAME.md, NAME.csv and NAME.tex into `directory`; returns their paths."""
        paths = []
        for suffix, text in ((".md", self.to_markdown()), (".csv", self.to_csv()), (".tex", self.to_latex())):
            path = directory / f"{self.name}{suffix}"
            path.write_text(text, encoding="utf-8")
            paths.append(path)
        return paths


def _paper_label(method: str) -> str:
    return f"{method} (paper)"


def aggregate_table(
    estimates: Mapping[str, Mapping[str, Estimate]],
    counts: Mapping[str, tuple[int, int]],
    domain: str,
    metric_basis: str,
    compare_paper: bool = False,
) -> Table:
    """Table 1: one row per method with IQM, median, mean and optimality gap (95% CIs), runs and tasks."""
    rows: list[list[Cell]] = []
    for method, by_metric in estimates.items():
        runs, tasks = counts[method]
        rows.append([method] + [by_metric[m] for m in METRIC_TITLES] + [runs, tasks])
    if compare_paper:
        # Table 1 has CIs for IQM/median/mean; the optimality gap of the same runs is in Table 7 (Atari only).
        published: dict[str, dict[str, Cell]] = {}
        paper_tasks = {"atari": 26, "dmc": 11}.get(domain)  # 10 seeds on each task (Table 1)
        for score in sorted(paper_aggregates(), key=lambda s: s.table != "table1"):  # Table 1 first: it has CIs
            if score.domain == domain and score.table in ("table1", "table7"):
                cell = Estimate(score.value, score.ci_low, score.ci_high) if score.ci_low is not None else score.value
                published.setdefault(score.method, {}).setdefault(score.key, cell)
        for method, by_metric in published.items():
            rows.append([_paper_label(method)] + [by_metric.get(m) for m in METRIC_TITLES] + [10, paper_tasks])
    basis = "human-normalized score" if metric_basis == "hns" else "raw return"
    return Table(
        "aggregates",
        f"Aggregate {basis} per method (stratified bootstrap 95% CIs)",
        ["Method"] + list(METRIC_TITLES.values()) + ["Runs", "Tasks"],
        rows,
        digits=3 if metric_basis == "hns" else 1,
    )


def per_game_table(
    groups: Mapping[str, Sequence[RunScore]], tasks: Sequence[str], domain: str, compare_paper: bool = False
) -> Table:
    """Table 7 / 10: the mean raw score over seeds of each method on each task (None where it has no run). With
    `compare_paper`, the paper's columns follow: Table 7 (Atari, replay ratio 2, 10 seeds), then Table 9's methods at
    the same replay ratio that Table 7 lacks (PLASTIC†, 5 seeds; Table 9's PLASTIC at 2 repeats Table 7's), and
    Table 10 on DMC."""
    methods = list(groups)
    paper_columns: dict[str, dict[str, float | None]] = {}
    if compare_paper:
        tables = [s for s in paper_per_game() if s.domain == domain and s.table in ("table7", "table10")]
        tables += [s for s in paper_per_game() if (s.domain, s.table, s.replay_ratio) == (domain, "table9", 2)]
        for score in tables:  # Table 7 first: where Table 9 repeats a method, Table 7's scores stand
            paper_columns.setdefault(_paper_label(score.method), {}).setdefault(score.key, score.value)
    rows: list[list[Cell]] = []
    for task in tasks:
        name = task.split(":", 1)[1]
        scores = [[run.score for run in groups[m] if run.env == task] for m in methods]
        means = [float(np.mean(values)) if values else None for values in scores]
        rows.append([name] + means + [column.get(name) for column in paper_columns.values()])
    return Table("per_game", "Mean raw score per task over seeds", ["Task"] + methods + list(paper_columns), rows, 2)


def run_switches(runs: Sequence[RunScore]) -> frozenset[str] | None:
    """The plasticity switches the runs share, or None if unknown or if the runs disagree."""
    switches = {run.switches for run in runs}
    return switches.pop() if len(switches) == 1 else None


def ablation_table(
    groups: Mapping[str, Sequence[RunScore]],
    estimates: Mapping[str, Mapping[str, Estimate]],
    domain: str,
    compare_paper: bool = False,
) -> Table | None:
    """Table 4: methods as on/off combinations of LN, SAM, CReLU, Reset with their IQM; None if no run says which
    switches it used (score CSVs do not)."""
    paper = {row.switches: row for row in paper_ablation()} if compare_paper and domain == "atari" else {}
    rows: list[list[Cell]] = []
    for method, runs in groups.items():
        switches = run_switches(runs)
        if switches is None:
            continue
        marks: list[Cell] = ["✓" if s in switches else "" for s in ABLATION_SWITCHES]
        row = [method] + marks + [estimates[method]["iqm"]]
        if paper:
            published = paper.get(frozenset(switches & set(ABLATION_SWITCHES)))
            row.append(Estimate(published.iqm, published.ci_low, published.ci_high) if published else None)
        rows.append(row)
    if not rows:
        return None
    columns = ["Method"] + [SWITCH_TITLES[s] for s in ABLATION_SWITCHES] + ["IQM"] + (["IQM (paper)"] if paper else [])
    return Table("ablation", "IQM per combination of plasticity-preserving methods", columns, rows)


def replay_ratio_table(
    groups: Mapping[str, Sequence[RunScore]],
    estimates: Mapping[str, Mapping[str, Estimate]],
    domain: str,
    metric_basis: str,
    compare_paper: bool = False,
) -> Table | None:
    """Tables 2 / 9: aggregates per method and replay ratio with wall-clock hours per run (mean `wall_time_s`).

    None if no run records its replay ratio.
    """
    rows: list[list[Cell]] = []
    for method, runs in groups.items():
        ratios = {run.replay_ratio for run in runs}
        if len(ratios) != 1 or None in ratios:
            continue
        times = [run.wall_time_s for run in runs if run.wall_time_s is not None]
        hours = float(np.mean(times)) / 3600.0 if len(times) == len(runs) else None
        rows.append([method, ratios.pop(), hours] + [estimates[method][m] for m in METRIC_TITLES])
    if not rows:
        return None
    if compare_paper and domain == "atari":
        for row in paper_compute():
            if row.method in ("PLASTIC", "PLASTIC†"):
                aggregates = [row.iqm, row.median, row.mean, row.optimality_gap]
                rows.append([_paper_label(row.method), row.replay_ratio, row.gpu_hours] + aggregates)
    columns = ["Method", "Replay ratio", "Hours per run"] + list(METRIC_TITLES.values())
    title = "Aggregates per replay ratio with compute (paper rows: GPU hours per run)"
    return Table("replay_ratio_scaling", title, columns, rows, digits=3 if metric_basis == "hns" else 1)


def probability_of_improvement_table(estimates: Mapping[tuple[str, str], Estimate]) -> Table:
    """P(X > Y) with its CI for each ordered pair of methods."""
    rows: list[list[Cell]] = [[x, y, estimate] for (x, y), estimate in estimates.items()]
    return Table("probability_of_improvement", "Probability of improvement P(X > Y)", ["X", "Y", "P(X > Y)"], rows)
