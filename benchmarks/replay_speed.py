"""Replay speed on the Atari configuration (DrQ(eps)-Rainbow, paper Table 5): add, sample(32), update_priorities.

Fills a 100k-transition buffer (frames (1, 84, 84) uint8, stack 4, n-step 10, PER alpha 0.5) with synthetic frames,
then times each operation (medians of per-call times: the machine is shared). Prints a summary and, last, one JSON
line.

A batch's two uint8 stacks are ~1.8 MB of fresh arrays; with glibc's default malloc each is mmap'ed and zero-faulted
on every call, which costs ~10x the gather itself. `--tune-malloc` raises the mmap and trim thresholds with mallopt
(docs/performance.md), as a training process should at start-up.

    python benchmarks/replay_speed.py [--capacity 100000] [--episode-length 1000] [--repeats 2000] [--tune-malloc]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import sys
import time

import numpy as np

from plastic.replay import ReplayBuffer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capacity", type=int, default=100_000)
    parser.add_argument("--episode-length", type=int, default=1000, help="steps per synthetic episode")
    parser.add_argument("--repeats", type=int, default=2000, help="timed sample/update calls")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--tune-malloc", action="store_true", help="mallopt: mmap threshold 32 MiB, trim 4 GiB")
    args = parser.parse_args()
    if args.tune_malloc:
        if not sys.platform.startswith("linux"):
            raise SystemExit("--tune-malloc needs glibc (Linux)")
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        libc.mallopt(M_MMAP_THRESHOLD, 32 * 2**20)
        libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)  # mallopt takes an int: the largest, ~2 GiB

    buffer = ReplayBuffer(args.capacity, (1, 84, 84), 4, n_step=10, gamma=0.99, prioritized=True,
                          priority_exponent=0.5, seed=0)  # fmt: skip
    rng = np.random.default_rng(0)
    # A pool of frames to draw from: generating 100k random 84x84 frames would dominate the timing.
    pool = rng.integers(0, 256, (256, 1, 84, 84), dtype=np.uint8)

    obs = np.concatenate(pool[:4])
    buffer.start_episode(obs)
    fill_start = time.perf_counter()
    add_block_s, block_start = [], fill_start
    for step in range(args.capacity + 1000):  # wraps the ring
        next_obs = np.concatenate([obs[1:], pool[step % 256]])
        end = (step + 1) % args.episode_length == 0
        buffer.add(step % 18, 1.0, next_obs, end, False)
        obs = next_obs
        if end:
            obs = np.concatenate(pool[rng.integers(0, 256, 4)])
            buffer.start_episode(obs)
        if (step + 1) % 1000 == 0:  # per-add time from blocks of 1000 (includes making next_obs)
            now = time.perf_counter()
            add_block_s.append((now - block_start) / 1000)
            block_start = now
    fill_s = time.perf_counter() - fill_start
    buffer.sample(args.batch_size)  # the first read gives all filled transitions their initial priority

    sample_s, update_s, uniform_s = [], [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        batch = buffer.sample(args.batch_size, importance_exponent=0.4)
        middle = time.perf_counter()
        buffer.update_priorities(batch.indices, rng.random(args.batch_size))
        sample_s.append(middle - start)
        update_s.append(time.perf_counter() - middle)
    for _ in range(args.repeats):
        start = time.perf_counter()
        buffer.sample_uniform(args.batch_size)
        uniform_s.append(time.perf_counter() - start)

    result = {
        "benchmark": "replay_speed",
        "capacity": args.capacity,
        "len": len(buffer),
        "batch_size": args.batch_size,
        "tune_malloc": args.tune_malloc,
        "fill_s": round(fill_s, 2),
        "add_us": round(float(np.median(add_block_s)) * 1e6, 2),
        "sample_ms": round(float(np.median(sample_s)) * 1e3, 4),
        "update_priorities_ms": round(float(np.median(update_s)) * 1e3, 4),
        "sample_uniform_ms": round(float(np.median(uniform_s)) * 1e3, 4),
        "memory_mib": round(buffer.nbytes / 2**20, 1),
        "two_stacks_per_transition_mib": round(args.capacity * 2 * 4 * 84 * 84 / 2**20, 1),
    }
    print(f"add: {result['add_us']} us  sample({args.batch_size}): {result['sample_ms']} ms  "
          f"update_priorities: {result['update_priorities_ms']} ms  uniform: {result['sample_uniform_ms']} ms")
    print(f"memory: {result['memory_mib']} MiB for {len(buffer)} sampleable transitions "
          f"(two full stacks per transition: {result['two_stacks_per_transition_mib']} MiB)")  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
