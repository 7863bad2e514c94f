"""scripts/export_results.py: the per-run table written beside scores.csv in a results folder."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "export_results.py"
spec = importlib.util.spec_from_file_location("export_results", SCRIPT)
export_results = importlib.util.module_from_spec(spec)
spec.loader.exec_module(export_results)


def write_run(directory: Path, *, env: str, method: str, seed: int, eval_mean: float, wall_time_s: float,
              evaluations: dict[int, float], precision: str = "fp32", hns: float | None = None,
              random_score: float | None = 0.5) -> None:
    directory.mkdir(parents=True)
    (directory / "config.json").write_text(json.dumps({"precision": precision}))
    (directory / "result.json").write_text(json.dumps({
        "env": env, "method": method, "seed": seed, "eval_mean": eval_mean, "random_score": random_score,
        "hns": hns, "wall_time_s": wall_time_s, "steps": 100, "replay_ratio": 2}))
    lines = [{"step": 5, "time_s": 1.0, "charts/episodic_return": 3.0}]  # a training row, not an evaluation
    lines += [{"step": step, "time_s": 2.0, "eval/return_mean": value} for step, value in evaluations.items()]
    (directory / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_runs_table_rows_sorted_with_the_shared_evaluation_steps_in_the_header(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs / "b", env="minatar:breakout", method="plastic", seed=1, eval_mean=7.625, wall_time_s=90.0,
              evaluations={50: 2.04, 100: 7.625})
    write_run(runs / "a", env="minatar:breakout", method="base", seed=0, eval_mean=6.0, wall_time_s=1800.0,
              evaluations={50: 1.96, 100: 6.0}, precision="bf16")
    assert export_results.write_runs_table(runs, tmp_path / "runs.md") == 2
    assert (tmp_path / "runs.md").read_text().splitlines() == [
        "| env | method | precision | seed | final eval return | random policy | wall time (min) "
        "| eval return at 50 / 100 |",
        "|---|---|---|---|---|---|---|---|",
        "| minatar:breakout | base | bf16 | 0 | 6.00 | 0.50 | 30.0 | 2.0 / 6.0 |",
        "| minatar:breakout | plastic | fp32 | 1 | 7.62 | 0.50 | 1.5 | 2.0 / 7.6 |",
    ]


def test_runs_table_names_each_rows_steps_when_they_differ_and_shows_hns_when_known(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs / "a", env="atari:Boxing", method="base", seed=0, eval_mean=12.1, wall_time_s=600.0,
              evaluations={}, hns=1.0, random_score=0.1)
    write_run(runs / "b", env="atari:Pong", method="base", seed=0, eval_mean=-20.0, wall_time_s=60.0,
              evaluations={10000: -21.0}, hns=None, random_score=None)
    export_results.write_runs_table(runs, tmp_path / "runs.md")
    lines = (tmp_path / "runs.md").read_text().splitlines()
    assert lines[0] == ("| env | method | precision | seed | final eval return | random policy | human-normalized "
                        "| wall time (min) | eval return during training | at steps |")
    assert lines[2:] == ["| atari:Boxing | base | fp32 | 0 | 12.10 | 0.10 | 1.00 | 10.0 |  |  |",
                         "| atari:Pong | base | fp32 | 0 | -20.00 |  |  | 1.0 | -21.0 | 10k |"]
