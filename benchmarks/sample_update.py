"""Where one DrQ(ε)-Rainbow update's time goes, by sampling: which library each thread runs, and how long the
OpenMP worker thread waits while the main thread works alone.

`profile_update.py` asks torch's profiler, which times operators from inside; for compiled graphs its records
overstate inductor's kernels (a kernel it put at 4.7 ms ran ~0.6 ms by sampling) and it cannot show how long a
second thread sits idle. This script runs the updates of `update_speed.py` (Atari-shaped data, batch 32) in a child
process and samples every thread with Linux `perf` at a fixed rate (`perf record -e cpu-clock`, a software clock:
no hardware counters needed), then prints, per thread, ms per update in: inductor's kernels, MKL (matmuls), oneDNN
(convolutions; its JIT code shows as `perf-<pid>.map`), ATen's own kernels (Adam, the EMA, norms, copies), the
OpenMP runtime (a worker waiting for work, or any thread waiting at a barrier), Python, the allocator (libc) and
the rest of libtorch (dispatcher, autograd). One JSON line ends it (keys: `preset`, `precision`, `threads`,
`update_ms`, `main_<group>_ms`, `worker_<group>_ms`, `worker_idle_share`). Needs `perf` (Debian: linux-perf) and
permission to sample (`/proc/sys/kernel/perf_event_paranoid` <= 1, or root).

    python benchmarks/sample_update.py [--preset plastic-dagger] [--precision fp32] [--threads 2] [--seconds 6]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import sys, time
sys.path.insert(0, {benchmarks!r})
from update_speed import build
import torch
torch.set_num_threads({threads}); torch.set_flush_denormal(True)
from plastic.runtime import tune_allocator
tune_allocator()
agent, buffer = build({preset!r}, 18, 5000, torch.device("cpu"), compile="on", precision={precision!r})
for _ in range(8):
    agent.update(buffer, 0.5)
open({ready!r}, "w").write("1")
started, count = time.perf_counter(), 0
while time.perf_counter() - started < {seconds} + 3:
    agent.update(buffer, 0.5)
    count += 1
print((time.perf_counter() - started) / count * 1e3)
"""

GROUPS = (("inductor kernels", lambda dso, sym: dso.endswith(".main.so")),
          ("OpenMP runtime", lambda dso, sym: dso.startswith("libgomp")),
          ("oneDNN", lambda dso, sym: dso.startswith("perf-") or "dnnl" in sym),
          ("MKL", lambda dso, sym: "mkl_" in sym),
          ("ATen kernels", lambda dso, sym: dso == "libtorch_cpu.so" and ("function_ref" in sym
                                                                           or "invoke_parallel" in sym)),
          ("libtorch other", lambda dso, sym: dso.startswith(("libtorch", "libc10"))),
          ("Python", lambda dso, sym: dso.startswith("libpython") or dso.endswith(".cpython-311-x86_64-linux-gnu.so")),
          ("libc", lambda dso, sym: dso.startswith(("libc.so", "libm.so", "libstdc++"))))


def group_of(dso: str, sym: str) -> str:
    return next((name for name, test in GROUPS if test(dso, sym)), "other")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="plastic-dagger")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=6.0, help="how long perf samples")
    args = parser.parse_args()
    if args.threads < 1 or args.seconds <= 0:
        parser.error(f"--threads must be at least 1 and --seconds positive, got {args.threads} and {args.seconds}")
    if shutil.which("perf") is None:
        parser.error("needs Linux perf on PATH (Debian: apt install linux-perf)")
    with tempfile.TemporaryDirectory() as scratch:
        ready, data = Path(scratch) / "ready", Path(scratch) / "perf.data"
        code = CHILD.format(benchmarks=str(Path(__file__).parent), threads=args.threads, preset=args.preset,
                            precision=args.precision, ready=str(ready), seconds=args.seconds)
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        while not ready.exists():
            if child.poll() is not None:
                sys.exit(f"the update loop exited before sampling began (exit {child.returncode})")
            time.sleep(0.2)
        record = subprocess.run(["perf", "record", "-e", "cpu-clock", "-F", "2000", "-p", str(child.pid), "-o",
                                 str(data), "--", "sleep", str(args.seconds)], capture_output=True, text=True)
        update_ms = float(child.communicate()[0].split()[-1])
        if record.returncode != 0:
            sys.exit(f"perf record failed: {record.stderr.strip().splitlines()[-1] if record.stderr else ''}")
        script = subprocess.run(["perf", "script", "-i", str(data), "-F", "tid,ip,sym,dso"], capture_output=True,
                                text=True).stdout
    samples: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for line in script.splitlines():
        match = re.match(r"\s*(\d+)\s+[0-9a-f]+\s+(.*?)\s*\((.*)\)\s*$", line)
        if match:
            tid, sym, dso = match.groups()
            samples[tid][group_of(os.path.basename(dso), sym)] += 1
    # The two busiest threads; the main thread is the one that runs Python, the other is OpenMP's worker.
    threads = sorted(sorted(samples, key=lambda tid: -sum(samples[tid].values()))[:2],
                     key=lambda tid: -samples[tid]["Python"])
    roles = dict(zip(threads, ("main", "worker")))
    figures = {"preset": args.preset, "precision": args.precision, "threads": args.threads,
               "update_ms": round(update_ms, 2)}
    names = [name for name, _ in GROUPS] + ["other"]
    print(f"{args.preset} ({args.precision}, compiled, {args.threads} threads): {update_ms:.2f} ms per update; "
          f"ms per update by thread (sampled over {args.seconds:g} s)")
    print(f"  {'':>17}  " + "  ".join(f"{roles[tid]:>7}" for tid in threads))
    for name in names:
        cells = []
        for tid in threads:
            ms = update_ms * samples[tid][name] / max(1, sum(samples[tid].values()))
            figures[f"{roles[tid]}_{name.replace(' ', '_').lower()}_ms"] = round(ms, 2)
            cells.append(f"{ms:7.2f}")
        print(f"  {name:>17}  " + "  ".join(cells))
    if "worker" in roles.values():
        worker = next(tid for tid, role in roles.items() if role == "worker")
        idle = samples[worker]["OpenMP runtime"] / max(1, sum(samples[worker].values()))
        figures["worker_idle_share"] = round(idle, 3)
        print(f"the worker thread waits {100 * idle:.0f}% of the time: the main thread then works alone")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
