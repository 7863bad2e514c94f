"""Speed of the synthetic experiments' training update (App. A.2 CNN, batch 128) on this CPU, in one run.

Ways to train many seeds, each measured here:
  conv         one seed, whole images, the convs as plain nn.Conv2d (oneDNN), 1 thread: the reference point
  patch        one seed, whole images, PatchConv2d, 1 thread
  sequential   one seed after another, 1 thread, what `run_seed` trains: the patch path
               (`SyntheticNet.forward_patches`) where the model allows it (the paper's strides), else whole images
  vmap-S       S seeds stacked with torch.func (functional_call + vmap + grad), 1 thread
  threads-2    one seed, 2 threads
  processes-2  two 1-thread processes, each training its own seed (what `--workers 2` does)
  run-seed     `run_many` with one seed in this process, 1 thread, on CIFAR-sized random data, `--phases` phases
               of 500 updates (set-up excluded): batches gathered from 50,000 training images, test accuracy on
               10,000 images after every phase (no probes)
  run-many-2   the same with two seeds in two 1-thread worker processes: what `plastic synthetic` runs
plus the peaks of the same run: a 2048^3 sgemm and a large channels_last conv, 1 thread.

Prints updates/s, GFLOP/s (per core used) and % of the same-run peak for each way, the projected wall time of a
30-seed x 50,000-update run of one method on both cores for each way, and (from run-many-2 plus the measured cost of
the default probes) that of `plastic synthetic` end to end.

    python benchmarks/synthetic_speed.py [--strides paper|code] [--updates 100] [--mkl-avx512] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from plastic.runtime import tune_allocator  # noqa: E402

tune_allocator()  # what run_many and its workers do (spawned workers import this module, so they get it too)

STRIDES = {"paper": (3, 3, 1), "code": (3, 1, 1)}
BATCH = 128


def _model(strides, plain=False):
    from plastic.synthetic.model import build_model

    model = build_model((3, 32, 32), 10, strides)
    if plain:  # the same parameters computed by nn.Conv2d's own forward (oneDNN convolution)
        for module in model.backbone:
            if isinstance(module, torch.nn.Conv2d):
                module.__class__ = torch.nn.Conv2d
    return model


def _batches(seed=0, count=8):
    generator = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(BATCH, 3, 32, 32, generator=generator).contiguous(memory_format=torch.channels_last),
         torch.randint(10, (BATCH,), generator=generator))
        for _ in range(count)
    ]


def time_sequential(strides, updates, threads=1, seed=0, way="sequential") -> float:
    """Seconds per update of one seed with the experiment's own `_train_step`. `way`: "conv" (whole images, plain
    nn.Conv2d), "patch" (whole images, PatchConv2d), "sequential" (what `run_seed` trains: `forward_patches` where
    the model allows it, else whole images)."""
    from plastic.synthetic.experiment import _train_step

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = _model(strides, plain=way == "conv")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4, foreach=True)
    batches, forward = _batches(seed), model
    if way == "sequential" and model.patch_rows is not None:
        forward = model.forward_patches
        batches = [(model.to_patches(x.permute(0, 2, 3, 1)), y) for x, y in batches]
    for i in range(10):
        _train_step(forward, optimizer, *batches[i % len(batches)])
    start = time.perf_counter()
    for i in range(updates):
        _train_step(forward, optimizer, *batches[i % len(batches)])
    return (time.perf_counter() - start) / updates


def time_vmap(strides, updates, seeds) -> float:
    """Seconds per update per seed with `seeds` models stacked and trained by one vmapped SGD step."""
    from torch.func import functional_call, grad, stack_module_state, vmap

    torch.set_num_threads(1)
    models = [_model(strides) for _ in range(seeds)]
    params, buffers = stack_module_state(models)
    template = models[0]
    momentum = {k: torch.zeros_like(v) for k, v in params.items()}

    def loss(p, b, x, y):
        return F.cross_entropy(functional_call(template, (p, b), (x,)), y)

    step_grad = vmap(grad(loss), in_dims=(0, 0, 0, 0))
    x = torch.randn(seeds, BATCH, 3, 32, 32)
    y = torch.randint(10, (seeds, BATCH))

    def update():
        grads = step_grad(params, buffers, x, y)
        with torch.no_grad():
            for k in params:
                momentum[k].mul_(0.9).add_(grads[k])
                params[k].sub_(0.01 * momentum[k])

    for _ in range(3):
        update()
    start = time.perf_counter()
    for _ in range(updates):
        update()
    return (time.perf_counter() - start) / updates / seeds


def _process_worker(strides, updates, seed, result):
    result.put(time_sequential(strides, updates, threads=1, seed=seed))


def time_processes(strides, updates, processes=2) -> float:
    """Wall seconds per update of all processes together (each 1 thread, its own seed): wall / (processes x updates)."""
    context = multiprocessing.get_context("spawn")
    result = context.Queue()
    workers = [context.Process(target=_process_worker, args=(strides, updates, s, result)) for s in range(processes)]
    for worker in workers:
        worker.start()
    per_update = [result.get() for _ in workers]  # each measures only its own timed loop
    for worker in workers:
        worker.join()
    return max(per_update) / processes


def _random_cifar():
    import numpy as np

    from plastic.synthetic.data import ImageDataset

    rng = np.random.default_rng(0)
    images = rng.random((60_000, 3, 32, 32), dtype=np.float32)
    labels = rng.integers(0, 10, 60_000)
    return ImageDataset.from_arrays("random-cifar", images[:50_000], labels[:50_000], images[50_000:],
                                    labels[50_000:], 10)


def time_run_many(strides, phases: int, workers: int, updates_per_phase: int = 500) -> float:
    """Wall seconds per seed-update of `run_many` training `workers` seeds in `workers` 1-thread processes (1: in
    this process) on CIFAR-sized random data: batch gathering and the test accuracy on 10,000 images after every
    phase included, no probes. Measured as the wall time of 1 + `phases` phases minus that of 1 phase, so that the
    one-off set-up (process start, model, data layout) is left out."""
    from plastic.synthetic.experiment import RunConfig, run_many

    torch.set_num_threads(1)
    dataset = _random_cifar()
    seconds = []
    for count in (1, 1 + phases):
        config = RunConfig(scenario="label", phases=count, updates_per_phase=updates_per_phase, strides=strides,
                           probe_every=0)
        start = time.perf_counter()
        run_many(dataset, [(config, seed) for seed in range(workers)], workers=workers)
        seconds.append(time.perf_counter() - start)
    return (seconds[1] - seconds[0]) / (phases * updates_per_phase * workers)


def time_probe(strides, repeats: int = 3) -> float:
    """Seconds of one probe (λmax with 20 Hessian iterations and active units, 512 samples), 1 thread."""
    from plastic.synthetic.experiment import _probe
    from plastic.synthetic.model import build_model

    torch.set_num_threads(1)
    model = build_model((3, 32, 32), 10, strides)
    x = torch.rand(512, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(10, (512,))
    _probe(model, x, y, torch.Generator().manual_seed(0), 20)
    start = time.perf_counter()
    for _ in range(repeats):
        _probe(model, x, y, torch.Generator().manual_seed(0), 20)
    return (time.perf_counter() - start) / repeats


def peaks(repeats=5) -> dict[str, float]:
    torch.set_num_threads(1)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    matmul = repeats * 2 * 2048**3 / (time.perf_counter() - start) / 1e9
    conv = torch.nn.Conv2d(64, 64, 3, padding=1).to(memory_format=torch.channels_last)
    x = torch.randn(32, 64, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        conv(x)
        start = time.perf_counter()
        for _ in range(repeats):
            conv(x)
    flops = 2 * 32 * 32 * 32 * 64 * 64 * 9
    return {"matmul": matmul, "conv": repeats * flops / (time.perf_counter() - start) / 1e9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--strides", choices=tuple(STRIDES), default="paper")
    parser.add_argument("--updates", type=int, default=100)
    parser.add_argument("--vmap-seeds", type=int, nargs="*", default=[4, 30])
    parser.add_argument("--phases", type=int, default=8,
                        help="phases of 500 updates timed in the run-seed and run-many-2 ways (0 = skip both)")
    parser.add_argument("--mkl-avx512", action="store_true",
                        help="restart with the opt-in MKL shim (`plastic --mkl-avx512`; see plastic/runtime.py)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    from plastic import runtime
    from plastic.synthetic.model import update_flops

    if args.mkl_avx512:
        runtime.reexec_with_mkl_shim()

    strides = STRIDES[args.strides]
    gflop = update_flops(_model(strides)) / 1e9
    peak = peaks()
    best_peak = max(peak.values())
    print(f"model strides {strides}: {gflop:.3f} GFLOP per update (batch {BATCH})")
    print(f"same-run peak, 1 thread: sgemm {peak['matmul']:.0f} GFLOP/s, conv {peak['conv']:.0f} GFLOP/s")
    mkl = {"shim": runtime.mkl_shim_loaded(), "code_path": runtime.mkl_code_path()}
    print(f"MKL: {'AVX-512 shim loaded' if mkl['shim'] else 'default path'} (mkl_serv_cpu_detect = {mkl['code_path']})")

    # (name, seconds per update per seed, cores used)
    ways = [("conv", time_sequential(strides, args.updates, way="conv"), 1),
            ("patch", time_sequential(strides, args.updates, way="patch"), 1),
            ("sequential", time_sequential(strides, args.updates), 1)]
    for seeds in args.vmap_seeds:
        ways.append((f"vmap-{seeds}", time_vmap(strides, max(3, args.updates // seeds), seeds), 1))
    ways.append(("threads-2", time_sequential(strides, args.updates, threads=2), 2))
    ways.append(("processes-2", time_processes(strides, args.updates), 2))
    if args.phases:
        ways.append(("run-seed", time_run_many(strides, args.phases, workers=1), 1))
        ways.append(("run-many-2", time_run_many(strides, args.phases, workers=2), 2))

    report = {"strides": strides, "gflop_per_update": gflop, "peak_gflops": peak, "mkl": mkl, "ways": {}}
    print(f"{'way':12s} {'updates/s':>10s} {'GFLOP/s/core':>13s} {'% peak':>7s} {'30 seeds x 50k, 2 cores':>24s}")
    for name, seconds, cores in ways:
        per_core = gflop / seconds / cores
        # seconds per update per seed on `cores` cores; a 1-core way runs twice (2 processes) on 2 cores
        wall = 30 * 50_000 * seconds * cores / 2
        report["ways"][name] = {"updates_per_s": 1 / seconds, "gflops_per_core": per_core,
                                "percent_of_peak": 100 * per_core / best_peak, "projected_30_seed_minutes": wall / 60}
        print(f"{name:12s} {1 / seconds:10.1f} {per_core:13.1f} {100 * per_core / best_peak:6.0f}% {wall / 60:20.1f} min")
    print("(1-core ways are projected as two 1-thread processes; processes-2 and run-many-2 are measured that way)")
    if args.phases:
        # what `plastic synthetic` does for one method and scenario: 30 seeds x 100 phases x 500 updates on both
        # cores, plus the probes at the defaults (every 25 phases: 4 per seed), two at a time
        probe = time_probe(strides)
        total = report["ways"]["run-many-2"]["projected_30_seed_minutes"] + 30 * 4 * probe / 2 / 60
        report.update(probe_seconds=probe, projected_30_seed_minutes_end_to_end=total)
        print(f"one probe {probe:.2f} s; a 30-seed run of one method and scenario, end to end: {total:.1f} min")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
