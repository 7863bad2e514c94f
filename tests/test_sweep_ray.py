"""`plastic sweep` on a local Ray started in-process: the same promises as with local processes, plus a trial
whose Ray worker dies is retried like one that raises."""

import re

import pytest

from test_sweep import QUIET, FakeTrainer, new_manifest

from plastic.sweep.runner import SweepOptions, run_sweep

ray = pytest.importorskip("ray")


def test_sweep_on_local_ray_retries_a_lost_worker_and_fails_a_broken_trial(tmp_path, capsys):
    fake = FakeTrainer(tmp_path)
    manifest = new_manifest(tmp_path / "sweep", ["base", "killworker", "crash"], [0, 1])
    run_sweep(manifest, SweepOptions(backend="ray", retries=1, **QUIET), command=fake)
    statuses = {record.trial.id: (record.status, record.attempts) for record in manifest.trials.values()}
    assert statuses == {
        "minatar_breakout/base/rr2/seed0": ("finished", 1),
        "minatar_breakout/base/rr2/seed1": ("finished", 1),
        "minatar_breakout/killworker/rr2/seed0": ("finished", 2),
        "minatar_breakout/killworker/rr2/seed1": ("finished", 2),
        "minatar_breakout/crash/rr2/seed0": ("failed", 2),
        "minatar_breakout/crash/rr2/seed1": ("failed", 2),
    }
    err = capsys.readouterr().err
    assert re.search(r"on a local Ray, up to \d+ at a time", err)
    assert "killworker/rr2/seed0 attempt 1 failed (worker lost:" in err
    assert len(list((tmp_path / "sweep" / "runs").rglob("result.json"))) == 4
    assert not ray.is_initialized()  # the sweep shut its Ray down
