"""DMC pixel env speed: the model's own rendering settings vs `fast_rendering` (small buffer, shadow map, no MSAA).

For each task it runs the same seeded action sequence through envs that differ only in their rendering settings and
prints agent steps/s, simulator steps/s (agent steps x action repeat) and how far each variant's RGB frames are
from the model's default rendering (mean and max absolute difference on the 0-255 scale).

    python benchmarks/dmc_env_speed.py                      # cartpole-swingup_sparse, quadruped-run at 64 and 84 px
    python benchmarks/dmc_env_speed.py --tasks cheetah-run --sizes 64 --shadow-sizes 1024 512 256 --steps 300
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from plastic.envs.dmc import FAST_SHADOW_SIZE, make_dmc_env


def run(task: str, image_size: int, steps: int, seed: int, fast: bool, shadow_size: int | None):
    """(agent steps/s, RGB frames, action repeat) for one rendering variant."""
    env = make_dmc_env(task, seed=seed, train=True, image_size=image_size, grayscale=False, frame_stack=1,
                       fast_rendering=fast)  # fmt: skip
    if shadow_size is not None:  # override before the GL context exists (it is made at the first render)
        env._physics.model.vis.quality.shadowsize = shadow_size  # noqa: SLF001 (benchmark-only knob)
    actions = np.random.default_rng(seed).uniform(-1, 1, size=(steps, *env.action_space.shape)).astype(np.float32)
    frames = [env.reset()[0]]
    start = time.perf_counter()
    for action in actions:
        observation, _, terminated, truncated, _ = env.step(action)
        frames.append(observation)
        if terminated or truncated:
            frames.append(env.reset()[0])
    elapsed = time.perf_counter() - start
    repeat = env.action_repeat
    env.close()
    return steps / elapsed, np.stack(frames), repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["cartpole-swingup_sparse", "quadruped-run"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[64, 84])
    parser.add_argument("--steps", type=int, default=200, help="agent steps per variant")
    parser.add_argument("--shadow-sizes", nargs="*", type=int, default=[1024, 256],
                        help="extra fast variants with these shadow map sizes")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    print("| task | px | rendering | agent steps/s | sim steps/s | speed-up | mean abs diff | max abs diff |")
    print("|---|---|---|---|---|---|---|---|")
    for task in args.tasks:
        for size in args.sizes:
            variants = [("model default", False, None), (f"fast (shadow {FAST_SHADOW_SIZE})", True, None)]
            variants += [(f"fast, shadow {s}", True, s) for s in args.shadow_sizes if s != FAST_SHADOW_SIZE]
            baseline_speed, baseline_frames = None, None
            for name, fast, shadow in variants:
                speed, frames, repeat = run(task, size, args.steps, args.seed, fast, shadow)
                if baseline_frames is None:
                    baseline_speed, baseline_frames = speed, frames
                difference = np.abs(frames.astype(np.int16) - baseline_frames.astype(np.int16))
                print(f"| {task} | {size} | {name} | {speed:.0f} | {speed * repeat:.0f} | "
                      f"{speed / baseline_speed:.2f}x | {difference.mean():.3f} | {difference.max()} |")  # fmt: skip


if __name__ == "__main__":
    main()
