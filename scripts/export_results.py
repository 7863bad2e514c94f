"""Copy finished runs into a `results/<experiment>/` folder of the repository and rebuild its report.

    python scripts/export_results.py SOURCE... --to results/NAME [--report-args "..."]

SOURCE: run directories or folders holding them (a sweep's `runs/`), searched recursively for `result.json`.
Each run's `config.json`, `result.json` and `metrics.jsonl` are copied to
`results/NAME/runs/<env>/<method>/rr<R>/seed<S>/`; checkpoints and TensorBoard events are not. `scores.csv`
(`method,env,seed,score,step`, what `plastic report` reads) is rewritten from every run in the folder, and the
report is rebuilt with `plastic report results/NAME/runs --out results/NAME/report`. Runs already exported are
replaced, so the command can be re-run as more trials finish.
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
    print(f"export: {write_scores(runs_dir, args.to / 'scores.csv')} runs in {args.to / 'scores.csv'}")
    report = [sys.executable, "-m", "plastic", "report", str(runs_dir), "--out", str(args.to / "report"),
              *shlex.split(args.report_args)]
    print("export:", " ".join(report))
    return subprocess.call(report)


if __name__ == "__main__":
    sys.exit(main())
