"""Copy finished runs into a `results/<experiment>/` folder of the repository and rebuild its report.

    python scripts/export_results.py SOURCE... --to results/NAME [--report-args "..."]

SOURCE: run directories or folders holding them (a sweep's `runs/`), searched recursively for `result.json`.
Each run's `config.json`, `result.json` and `metrics.jsonl` are copied to
`results/NAME/runs/<env>/<method>/rr<R>/seed<S>/`; checkpoints and TensorBoard events are not. `scores.csv`
(`method,env,seed,score,step`, what `plastic report` reads) and `runs.md` (a table of every run: final evaluation,
random policy, wall time, the evaluations during training) are rewritten from every run in the folder, and the
report is rebuilt with `plastic report results/NAME/runs --out results/NAME/report`. Runs already exported are
replaced, so the command can be re-run as more trials finish.

When the sources are one sweep's (`SWEEP/runs` or `SWEEP`), its manifest `sweep.json` is copied too: the folder is
then a sweep that `plastic sweep --resume` continues anywhere, training only the trials it lacks (docs/sweep.md,
"Carrying a sweep to another machine").
"""

from __future__ import annotations

import argparse
import csv
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

FILES = ("config.json", "result.json", "metrics.jsonl")


def export_run(run: Path, runs_dir: Path) -> Path:
    result = json.loads((run / "result.json").read_text())
    target = (runs_dir / result["env"].replace(":", "_") / result["method"] / f"rr{result['replay_ratio']}"
              / f"seed{result['seed']}")
    target.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        shutil.copy2(run / name, target / name)
    return target


def sweep_manifest(sources: list[Path]) -> Path | None:
    """The `sweep.json` of the one sweep that `sources` come from (each a sweep folder or its `runs/`), else None."""
    manifests = set()
    for source in sources:
        found = [folder / "sweep.json" for folder in (source, source.parent) if (folder / "sweep.json").is_file()]
        if not found:
            return None
        manifests.add(found[0].resolve())
    return manifests.pop() if len(manifests) == 1 else None


def write_scores(runs_dir: Path, path: Path) -> int:
    rows = []
    for result_path in sorted(runs_dir.rglob("result.json")):
        result = json.loads(result_path.read_text())
        rows.append({"method": result["method"], "env": result["env"], "seed": result["seed"],
                     "score": result["eval_mean"], "step": result["steps"]})
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["method", "env", "seed", "score", "step"])
        writer.writeheader()
        writer.writerows(rows)
    return len(rows)


def _eval_curve(metrics_path: Path) -> list[tuple[int, float]]:
    """(step, eval/return_mean) of every evaluation logged in a run's metrics.jsonl, in step order."""
    curve = []
    with open(metrics_path) as handle:
        for line in handle:
            row = json.loads(line)
            if "eval/return_mean" in row:
                curve.append((int(row["step"]), float(row["eval/return_mean"])))
    return sorted(curve)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _steps_label(steps: list[int]) -> str:
    return " / ".join(f"{step // 1000}k" if step % 1000 == 0 else str(step) for step in steps)


def write_runs_table(runs_dir: Path, path: Path) -> int:
    """`runs.md`: one row per exported run (env, method, precision, seed, final evaluation, the random policy's score,
    the human-normalized score where any run has one, wall time, the evaluations logged during training), sorted by
    env, method and seed. Where the runs logged their evaluations at different steps, each row names its own.
    Returns the number of rows."""
    runs = []
    for result_path in runs_dir.rglob("result.json"):
        result = json.loads(result_path.read_text())
        config = json.loads((result_path.parent / "config.json").read_text())
        runs.append((result, config.get("precision", "fp32"), _eval_curve(result_path.parent / "metrics.jsonl")))
    runs.sort(key=lambda run: (run[0]["env"], run[0]["method"], run[1], int(run[0]["seed"])))
    with_hns = any(result.get("hns") is not None for result, _, _ in runs)
    step_lists = {tuple(step for step, _ in curve) for _, _, curve in runs}
    shared_steps = next(iter(step_lists)) if len(step_lists) == 1 else None
    header = ["env", "method", "precision", "seed", "final eval return", "random policy"]
    header += ["human-normalized"] * with_hns + ["wall time (min)"]
    if shared_steps is None:
        header += ["eval return during training", "at steps"]
    elif shared_steps:
        header += [f"eval return at {_steps_label(list(shared_steps))}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for result, precision, curve in runs:
        cells = [result["env"], result["method"], precision, str(result["seed"]), _number(result["eval_mean"]),
                 _number(result.get("random_score"))]
        cells += [_number(result.get("hns"))] * with_hns + [f"{result['wall_time_s'] / 60:.1f}"]
        if shared_steps is None or shared_steps:
            cells.append(" / ".join(f"{value:.1f}" for _, value in curve))
        if shared_steps is None:
            cells.append(_steps_label([step for step, _ in curve]))
        lines.append("| " + " | ".join(cells) + " |")
    path.write_text("\n".join(lines) + "\n")
    return len(runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="+", type=Path)
    parser.add_argument("--to", type=Path, required=True, help="the experiment folder, e.g. results/minatar-30k")
    parser.add_argument("--report-args", default="", help="extra `plastic report` arguments, e.g. '--curve-bins 12'")
    args = parser.parse_args()
    runs_dir = args.to / "runs"
    found = [path.parent for source in args.sources for path in sorted(source.rglob("result.json"))]
    if not found:
        print(f"export: no finished run (result.json) under {', '.join(map(str, args.sources))}", file=sys.stderr)
        return 2
    for run in found:
        print(f"export: {run} -> {export_run(run, runs_dir)}")
    manifest = sweep_manifest(args.sources)
    if manifest is not None:
        shutil.copy2(manifest, args.to / "sweep.json")
        print(f"export: {manifest} -> {args.to / 'sweep.json'} (`plastic sweep --resume {args.to}` continues it)")
    print(f"export: {write_scores(runs_dir, args.to / 'scores.csv')} runs in {args.to / 'scores.csv'}")
    print(f"export: {write_runs_table(runs_dir, args.to / 'runs.md')} runs in {args.to / 'runs.md'}")
    report = [sys.executable, "-m", "plastic", "report", str(runs_dir), "--out", str(args.to / "report"),
              *shlex.split(args.report_args)]
    print("export:", " ".join(report))
    return subprocess.call(report)


if __name__ == "__main__":
    sys.exit(main())
