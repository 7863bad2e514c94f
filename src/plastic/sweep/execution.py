"""Where trials run: Ray (a local instance started in-process, or an existing cluster), or plain local processes.

Every trial is a subprocess of the Python interpreter on the machine that runs it (`python -m plastic train ...`),
so a trial is an ordinary run directory whichever executor launched it, and a crash in a trial never takes the
sweep down. An executor only launches such processes and reports their exit status; retries, statuses and
progress live in `plastic.sweep.runner`, identical for all executors.

- `RayExecutor`: one Ray task per trial with `num_cpus=cpus_per_trial`, `num_gpus=gpus_per_trial` (fractional, so
  several runs share a GPU as the paper's 3 runs per GPU did). A task whose worker dies comes back as an error,
  which the runner counts as a failed attempt.
- `LocalExecutor`: the fallback when Ray is not installed (`--backend local`): a thread pool of at most
  `max_concurrent` subprocesses on this machine.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import ctypes.util
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

_PR_SET_PDEATHSIG = 1
try:  # Linux: a trial dies with the process that launched it, so a killed sweep leaves no trainer behind.
    _prctl = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).prctl
except (OSError, AttributeError):
    _prctl = None


def _die_with_parent() -> None:
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def local_cpu_count() -> int:
    """CPUs this process may use (respects affinity masks and container CPU sets)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Launch:
    """One attempt at one trial: `python <python_args>` with its output appended to `log_path`."""

    trial_id: str
    python_args: list[str]
    log_path: str
    threads: int


def run_trial_process(launch: Launch, on_start=None) -> int:
    """Run one attempt with this machine's interpreter; return its exit status. Kills the process if interrupted.

    `threads` caps the trial's math libraries (two 1-thread trials beat one 2-thread trial: docs/performance.md)."""
    threads = str(launch.threads)
    environment = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, PYTHONUNBUFFERED="1")
    Path(launch.log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(launch.log_path, "a") as log:
        log.write(f"\n===== {launch.trial_id} on {socket.gethostname()}: python {' '.join(launch.python_args)}\n")
        log.flush()
        process = subprocess.Popen(
            [sys.executable, *launch.python_args], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=environment, preexec_fn=_die_with_parent,
        )  # fmt: skip
        if on_start is not None:
            on_start(process)
        try:
            return process.wait()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


class LocalExecutor:
    """Trials as subprocesses of this machine, at most `max_concurrent` at a time."""

    description = "local processes"

    def __init__(self, max_concurrent: int):
        self.capacity = max_concurrent
        self._pool = concurrent.futures.ThreadPoolExecutor(max_concurrent, thread_name_prefix="trial")
        self._futures: dict[concurrent.futures.Future, str] = {}
        self._processes: set[subprocess.Popen] = set()
        self._lock = threading.Lock()

    def _run(self, launch: Launch) -> int:
        started: list[subprocess.Popen] = []

        def register(process):
            started.append(process)
            with self._lock:
                self._processes.add(process)

        try:
            return run_trial_process(launch, on_start=register)
        finally:
            with self._lock:
                self._processes.difference_update(started)

    def submit(self, launch: Launch) -> None:
        self._futures[self._pool.submit(self._run, launch)] = launch.trial_id

    def wait(self, timeout: float) -> list[tuple[str, int | BaseException]]:
        """Outcomes of the attempts that ended within `timeout` seconds: (trial id, exit status or exception)."""
        done, _ = concurrent.futures.wait(self._futures, timeout, return_when=concurrent.futures.FIRST_COMPLETED)
        outcomes = []
        for future in done:
            trial_id = self._futures.pop(future)
            error = future.exception()
            outcomes.append((trial_id, error if error is not None else future.result()))
        return outcomes

    def shutdown(self) -> None:
        """Stop everything still running (the sweep was interrupted) and release the pool."""
        with self._lock:
            for process in self._processes:
                process.kill()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._futures.clear()


def parse_address(address: str) -> tuple[str, int] | None:
    """(host, port) of a Ray address, None for "auto"; a malformed address is a `ValueError`."""
    if address == "auto":
        return None
    target = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        port = target.port
    except ValueError:
        port = None
    if target.scheme not in ("ray", "tcp") or not target.hostname or port is None:
        raise ValueError(f"--address {address!r}: expected auto, HOST:PORT or ray://HOST:PORT")
    return target.hostname, port


def check_address(address: str) -> None:
    """Fail fast, in one line, on an address that nothing listens on.

    `ray.init` on an unreachable `HOST:PORT` waits minutes before it gives up; a plain TCP connect takes seconds."""
    host_port = parse_address(address)
    if host_port is None:
        return
    try:
        socket.create_connection(host_port, timeout=5).close()
    except OSError as error:
        raise ConnectionError(f"cannot reach the Ray cluster at {address}: {error.strerror or error}") from None


class RayExecutor:
    """Trials as Ray tasks: on a local Ray started here (`address=None`), or on the cluster at `address`."""

    def __init__(self, address: str | None, cpus_per_trial: float, gpus_per_trial: float, max_concurrent: int | None):
        import ray

        self._ray = ray
        if address is not None:
            check_address(address)
        try:
            if address is None:
                ray.init(num_cpus=local_cpu_count(), include_dashboard=False, log_to_driver=False,
                         logging_level=logging.WARNING)  # fmt: skip
            else:
                ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
        except ConnectionError as error:
            raise ConnectionError(f"cannot reach the Ray cluster at {address}: {str(error).splitlines()[0]}") from None
        self.description = f"Ray at {address}" if address else "a local Ray"
        resources = ray.cluster_resources()
        fits = [math.floor(resources.get("CPU", 0) / cpus_per_trial + 1e-9)] if cpus_per_trial > 0 else []
        if gpus_per_trial > 0:
            fits.append(math.floor(resources.get("GPU", 0) / gpus_per_trial + 1e-9))
        fit = min(fits) if fits else max_concurrent or local_cpu_count()
        if fit < 1:
            ray.shutdown()
            raise ValueError(
                f"no trial fits: --cpus-per-trial {cpus_per_trial:g} and --gpus-per-trial {gpus_per_trial:g}, but "
                f"{self.description} has {resources.get('CPU', 0):g} CPUs and {resources.get('GPU', 0):g} GPUs"
            )
        self.capacity = min(fit, max_concurrent) if max_concurrent else fit
        # Failed attempts are retried by the runner, the same way for every executor, so Ray itself retries nothing.
        self._task = ray.remote(num_cpus=cpus_per_trial, num_gpus=gpus_per_trial, max_retries=0)(run_trial_process)
        self._refs: dict = {}

    def submit(self, launch: Launch) -> None:
        self._refs[self._task.remote(launch)] = launch.trial_id

    def wait(self, timeout: float) -> list[tuple[str, int | BaseException]]:
        if not self._refs:
            return []
        done, waiting = self._ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        if done and waiting:  # collect the others that have ended too, without waiting for more
            done += self._ray.wait(waiting, num_returns=len(waiting), timeout=0)[0]
        outcomes = []
        for ref in done:
            trial_id = self._refs.pop(ref)
            try:
                outcomes.append((trial_id, self._ray.get(ref)))
            except Exception as error:  # the worker died, or the node was lost
                outcomes.append((trial_id, error))
        return outcomes

    def shutdown(self) -> None:
        for ref in self._refs:
            self._ray.cancel(ref, force=True)
        self._refs.clear()
        self._ray.shutdown()
