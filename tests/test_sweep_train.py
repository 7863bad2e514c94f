"""`plastic sweep` end to end with the real `plastic train`: a small MinAtar sweep on a local Ray, the report at
the end, and a re-run of the same command that has nothing left to do."""

import json

import pytest

from plastic.cli import main
from plastic.sweep.manifest import Manifest

pytest.importorskip("plastic.training.commands")
pytest.importorskip("ray")


def test_small_minatar_sweep_runs_to_completion_on_ray_and_is_reported(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    argv = ["sweep", "--envs", "minatar:breakout", "--methods", "base,plastic", "--seeds", "0-1",
            "--replay-ratio", "2", "--steps", "200", "--eval-episodes", "1", "--out", str(sweep)]  # fmt: skip
    assert main(argv) == 0
    results = sorted(sweep.glob("runs/minatar_breakout/*/rr2/seed*/result.json"))
    assert [path.relative_to(sweep / "runs").as_posix() for path in results] == [
        "minatar_breakout/base/rr2/seed0/result.json",
        "minatar_breakout/base/rr2/seed1/result.json",
        "minatar_breakout/plastic/rr2/seed0/result.json",
        "minatar_breakout/plastic/rr2/seed1/result.json",
    ]
    for path in results:
        result = json.loads(path.read_text())
        method, seed = path.parts[-4], int(path.parts[-2].removeprefix("seed"))
        assert (result["env"], result["preset"], result["seed"], result["steps"]) == (
            "minatar:breakout", method, seed, 200)
    assert Manifest.load(sweep).counts() == {"pending": 0, "running": 0, "finished": 4, "failed": 0}
    report = json.loads((sweep / "report" / "aggregates.json").read_text())
    assert {name: stats["num_runs"] for name, stats in report["methods"].items()} == {"base": 2, "plastic": 2}
    capsys.readouterr()

    stamps = [path.stat().st_mtime_ns for path in results]
    assert main(argv) == 0  # the same command again: nothing to run
    assert "4/4 finished, 0 running, 0 failed, 0 pending" in capsys.readouterr().err
    assert [path.stat().st_mtime_ns for path in results] == stamps
