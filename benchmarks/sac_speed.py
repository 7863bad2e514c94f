"""DrQ-SAC speed on DMC (paper Table 6): one gradient update at batch 512, Base vs PLASTIC, and the full training loop.

1. Update: an agent on 64x64 grayscale stacks of 3 (cartpole: 1 action dimension) and a replay buffer of synthetic
   frames; the median time of `--repeats` calls of `agent.update` after one warm-up call, per preset.
2. Loop: `plastic train`'s Trainer on dmc:cartpole-swingup for `--loop-steps` agent steps with updates from
   `--loop-learning-starts` (1 update per step, Table 6), evaluation 1 episode; reports env steps/s (agent steps x
   action repeat 8, over the training time only) and the loop's updates/s.

Prints a table and, last, one JSON line.

    python benchmarks/sac_speed.py [--batch-size 512] [--repeats 5] [--device auto] [--loop-steps 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from plastic.runtime import enable_huge_pages  # noqa: E402

enable_huge_pages()  # before torch allocates, as the `plastic` command does
import torch  # noqa: E402

from plastic.agents.sac import SACAgent  # noqa: E402
from plastic.config import build  # noqa: E402
from plastic.replay import ReplayBuffer  # noqa: E402
from plastic.runtime import tune_allocator  # noqa: E402
from plastic.training.loop import Trainer  # noqa: E402
from plastic.training.setup import resolve_device  # noqa: E402

OBS_SHAPE, ACTION_DIM = (3, 64, 64), 1


def filled_buffer(agent: SACAgent, transitions: int, seed: int = 0) -> ReplayBuffer:
    buffer = ReplayBuffer(seed=seed, frame_shape=(1, 64, 64), frame_stack=3,
                          **{**agent.replay_options(), "capacity": transitions})
    rng = np.random.default_rng(seed)
    pool = rng.integers(0, 256, (256, 1, 64, 64), dtype=np.uint8)  # drawing 64x64 noise per step would dominate
    obs = np.concatenate(pool[:3])
    buffer.start_episode(obs)
    for step in range(transitions):
        next_obs = np.concatenate([obs[1:], pool[step % 256]])
        buffer.add(rng.uniform(-1, 1, ACTION_DIM).astype(np.float32), float(rng.random()), next_obs, False, False)
        obs = next_obs
    return buffer


def time_updates(preset: str, batch_size: int, repeats: int, device: torch.device) -> float:
    """Median seconds per update."""
    config = build("dmc:cartpole-swingup", preset=preset, overrides={"sac": {"batch_size": str(batch_size)}})
    agent = SACAgent(config, OBS_SHAPE, ACTION_DIM, device)
    buffer = filled_buffer(agent, max(2 * batch_size, 1000))
    agent.update(buffer, 0.0)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        agent.update(buffer, 0.0)
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def time_loop(preset: str, steps: int, learning_starts: int, batch_size: int, device: str) -> dict:
    overrides = {"steps": str(steps), "replay_ratio": "1", "eval_episodes": "1", "device": device,
                 "checkpoint_every": str(10 * steps), "sac": {"batch_size": str(batch_size),
                                                            "learning_starts": str(learning_starts)}}
    config = build("dmc:cartpole-swingup", preset=preset, overrides=overrides)
    with tempfile.TemporaryDirectory() as folder:
        result = Trainer(config, Path(folder) / "run", progress=False).run()
    return {"env_steps_per_s": result["env_steps_per_s"], "updates_per_s": result["updates_per_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5, help="timed updates per preset")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0 = torch's default)")
    parser.add_argument("--presets", nargs="+", default=["base", "plastic"])
    parser.add_argument("--loop-steps", type=int, default=200, help="agent steps of the loop run (0 = skip it)")
    parser.add_argument("--loop-learning-starts", type=int, default=100)
    parser.add_argument("--loop-batch-size", type=int, help="default: --batch-size")
    args = parser.parse_args()
    tune_allocator()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    report = {"device": str(device), "threads": torch.get_num_threads(), "batch_size": args.batch_size,
              "update": {}, "loop": {}}
    print(f"device {device} | threads {torch.get_num_threads()} | batch {args.batch_size}")
    print("| preset | ms per update | updates/s |")
    print("|---|---|---|")
    for preset in args.presets:
        seconds = time_updates(preset, args.batch_size, args.repeats, device)
        report["update"][preset] = {"ms_per_update": round(1000 * seconds, 2), "updates_per_s": round(1 / seconds, 3)}
        print(f"| {preset} | {1000 * seconds:.1f} | {1 / seconds:.2f} |", flush=True)
    if args.loop_steps:
        batch = args.loop_batch_size or args.batch_size
        print(f"\nloop: dmc:cartpole-swingup, {args.loop_steps} agent steps, updates from step "
              f"{args.loop_learning_starts}, batch {batch}")
        print("| preset | env steps/s | updates/s |")
        print("|---|---|---|")
        for preset in args.presets:
            loop = time_loop(preset, args.loop_steps, args.loop_learning_starts, batch, str(device.type))
            report["loop"][preset] = {k: round(v, 3) for k, v in loop.items()}
            print(f"| {preset} | {loop['env_steps_per_s']:.1f} | {loop['updates_per_s']:.2f} |", flush=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
