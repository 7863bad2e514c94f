"""`plastic sweep --address HOST:PORT` against a real Ray head node started on this machine (`ray start --head`), as
on a cluster: the trials run as Ray tasks of that node, the report is written, and the node outlives the sweep."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import plastic
from plastic.cli import main
from plastic.sweep.manifest import Manifest

pytest.importorskip("plastic.training.commands")
ray = pytest.importorskip("ray")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains `text` (the head node's own temp dir: only its processes name it)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


@pytest.fixture
def ray_head():
    """A Ray head node with 2 CPUs on free local ports, in its own temp dir and process group; stopped through its
    own handle (and any process naming its temp dir killed), whatever the test did."""
    temp_dir = tempfile.mkdtemp(prefix="plastic-ray-")  # short: Ray's socket paths must fit in 107 bytes
    port = free_port()
    ray_cli = Path(sys.executable).with_name("ray")
    source = str(Path(plastic.__file__).resolve().parents[1])  # the package under test, for the trial processes
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))}  # fmt: skip
    command = [str(ray_cli), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
               "--num-cpus", "2", "--num-gpus", "0", "--include-dashboard", "false", "--disable-usage-stats",
               "--ray-client-server-port", str(free_port()), "--dashboard-agent-listen-port", str(free_port()),
               "--temp-dir", temp_dir]  # fmt: skip
    head = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while True:  # ready when the GCS port accepts connections
            assert head.poll() is None, f"ray start exited early: {head.communicate()[0][-2000:]}"
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "the Ray head node did not come up in 90 s"
            time.sleep(0.5)
        yield f"127.0.0.1:{port}", head
    finally:
        if head.poll() is None:
            head.send_signal(signal.SIGTERM)  # `ray start --block` stops its node's processes on SIGTERM
            try:
                head.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(head.pid, signal.SIGKILL)
                head.wait(timeout=10)
        for pid in processes_mentioning(temp_dir):  # anything of this node that outlived it
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.slow  # 50-60 s on 2 loaded cores: the node's start-up, then two tiny `plastic train` runs
def test_small_sweep_runs_on_a_ray_head_node_through_address(ray_head, tmp_path, capsys):
    address, head = ray_head
    sweep = tmp_path / "sweep"
    argv = ["sweep", "--envs", "minatar:breakout", "--methods", "base", "--seeds", "0-1", "--steps", "200",
            "--eval-episodes", "1", "--out", str(sweep), "--address", address, "--progress-every", "5"]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert f"Ray at {address}" in err  # the cluster's Ray, not one started in-process
    manifest = Manifest.load(sweep)
    assert manifest.counts() == {"pending": 0, "running": 0, "finished": 2, "failed": 0}
    assert [(record.trial.id, record.attempts) for record in manifest.trials.values()] == [
        ("minatar_breakout/base/rr2/seed0", 1), ("minatar_breakout/base/rr2/seed1", 1)]  # the default RR 2
    for seed in (0, 1):
        result = json.loads((sweep / f"runs/minatar_breakout/base/rr2/seed{seed}/result.json").read_text())
        assert (result["env"], result["preset"], result["seed"], result["steps"]) == ("minatar:breakout", "base",
                                                                                      seed, 200)  # fmt: skip
        assert len(result["eval_returns"]) == 1
        log = (sweep / f"logs/minatar_breakout/base/rr2/seed{seed}.log").read_text()
        assert log.count("=====") == 1 and "finished minatar:breakout base seed" in log
    report = json.loads((sweep / "report" / "aggregates.json").read_text())
    assert {name: stats["num_runs"] for name, stats in report["methods"].items()} == {"base": 2}
    assert not ray.is_initialized()  # the sweep disconnected ...
    assert head.poll() is None  # ... and left the cluster running
