"""Speed of one DrQ(ε)-Rainbow training update at batch 32 on Atari-shaped data (issue 3).

One update = sample from a filled prioritized buffer, augment s and s', loss, backward, optimizer (SAM: two passes),
priorities, EMA target. Prints ms and updates/s for base, SAM only, PLASTIC† and PLASTIC; the GFLOP/s the base
update achieves (FLOPs counted by torch's FlopCounterMode); a conv/matmul peak GFLOP/s measured in the same run at
the same thread count, and the ratio; optionally the full training loop's env steps/s at replay ratio 2 on Pong.
Ends with one JSON line (keys: base_ms, sam_ms, dagger_ms, plastic_ms, base_gflops, peak_gflops, threads, ...).
With `--compile both` (the default) every preset is timed eager and compiled (config `compile`, what a long Atari
run uses); the main keys then hold the compiled figures and `eager_*_ms` the eager ones.

    python benchmarks/update_speed.py [--threads 1] [--updates 10] [--rounds 5] [--compile both|on|off] [--loop-steps 1500]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from plastic.runtime import enable_huge_pages  # noqa: E402

enable_huge_pages()  # before torch allocates, as the `plastic` command does
import torch  # noqa: E402


def build(preset: str, actions: int, fill: int, device: torch.device, compile: str = "off"):
    from plastic import config as config_module
    from plastic.agents.rainbow import RainbowAgent
    from plastic.replay import ReplayBuffer

    config = config_module.build("atari:Pong", preset, overrides={"compile": compile})
    agent = RainbowAgent(config, (4, 84, 84), actions, device)
    buffer = ReplayBuffer(seed=0, frame_shape=(1, 84, 84), frame_stack=4, **agent.replay_options())
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(fill + 4, 1, 84, 84), dtype=np.uint8)
    obs = np.concatenate(frames[:4])
    buffer.start_episode(obs)
    for t in range(fill):
        next_obs = np.concatenate([obs[1:], frames[t + 4]])
        end = (t + 1) % 500 == 0
        buffer.add(int(rng.integers(actions)), float(rng.normal()), next_obs, end, False)
        obs = next_obs
        if end:
            obs = np.concatenate(frames[t:t + 4])
            buffer.start_episode(obs)
    return agent, buffer


def time_updates(runs: dict, updates: int, rounds: int = 5) -> dict[str, float]:
    """Median ms per update of each (agent, buffer) in `runs`, the agents taking turns round by round, so that a
    slow spell of this shared machine hits them all alike rather than whichever ran during it."""
    for agent, buffer in runs.values():
        for _ in range(3):  # warm-up; compiles on the first call when compile is on
            agent.update(buffer, 0.5)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, (agent, buffer) in runs.items():
            started = time.perf_counter()
            for _ in range(updates):
                agent.update(buffer, 0.5)
            times[name].append((time.perf_counter() - started) / updates)
    return {name: statistics.median(values) * 1e3 for name, values in times.items()}


def update_flops(agent, buffer) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        agent.update(buffer, 0.5)
    return counter.get_total_flops()


def peak_gflops() -> dict[str, float]:
    """Best of a large sgemm and the Nature-CNN conv2 shape in channels_last (forward), at the current threads."""
    out = {}
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    for _ in range(2):
        a @ b
    started, reps = time.perf_counter(), 10
    for _ in range(reps):
        a @ b
    out["matmul"] = 2 * 2048**3 * reps / (time.perf_counter() - started) / 1e9
    conv = torch.nn.Conv2d(32, 64, 4, 2).to(memory_format=torch.channels_last)
    x = torch.randn(256, 32, 20, 20).to(memory_format=torch.channels_last)
    flops = 2 * 256 * 64 * 9 * 9 * 32 * 16
    with torch.no_grad():
        for _ in range(2):
            conv(x)
        started, reps = time.perf_counter(), 10
        for _ in range(reps):
            conv(x)
    out["conv"] = flops * reps / (time.perf_counter() - started) / 1e9
    return out


def loop_speed(steps: int, threads: int, compile: str) -> float:
    import tempfile

    from plastic import config as config_module
    from plastic.training.loop import Trainer

    config = config_module.build("atari:Pong", "plastic-dagger", overrides={
        "steps": steps, "threads": threads, "rainbow": {"learning_starts": steps // 3}, "eval_episodes": 1,
        "eval_envs": 1, "probe": {"every": 0}, "checkpoint_every": 10 * steps, "compile": compile})
    with tempfile.TemporaryDirectory() as run_dir:
        result = Trainer(config, run_dir, progress=False).run()
    return result["env_steps_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--updates", type=int, default=10, help="updates per agent per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; each preset's median round is reported")
    parser.add_argument("--actions", type=int, default=18, help="18 = full action set (the figures in docs/performance.md)")
    parser.add_argument("--fill", type=int, default=5000, help="transitions in the buffer")
    parser.add_argument("--compile", choices=("both", "on", "off"), default="both",
                        help="time eager (off), compiled (on) or both")
    parser.add_argument("--loop-steps", type=int, default=0, help="also time the full loop on Pong (0 = skip)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from plastic.runtime import tune_allocator

    tune_allocator()
    device = torch.device("cpu")
    figures: dict[str, float] = {"threads": args.threads}
    flops = update_flops(*build("base", args.actions, args.fill, device))  # counted eagerly; compiling keeps FLOPs
    figures["base_gflop_per_update"] = round(flops / 1e9, 3)
    modes = ("off", "on") if args.compile == "both" else (args.compile,)
    presets = {"base": "base", "sam": "sam", "dagger": "plastic-dagger", "plastic": "plastic"}
    for mode in modes:
        prefix = "eager_" if mode == "off" and len(modes) == 2 else ""
        torch._dynamo.reset()
        runs = {name: build(preset, args.actions, args.fill, device, compile=mode) for name, preset in presets.items()}
        for name, ms in time_updates(runs, args.updates, args.rounds).items():
            figures[f"{prefix}{name}_ms"] = round(ms, 2)
            params = sum(p.numel() for p in runs[name][0].online.parameters())
            label = f"{presets[name]} ({'compiled' if mode == 'on' else 'eager'})"
            print(f"{label:>26}: {ms:7.2f} ms/update  {1e3 / ms:6.1f} updates/s  ({params:,} parameters)",
                  flush=True)
        del runs
    figures["base_gflops"] = round(flops / figures["base_ms"] / 1e6, 1)
    peak = peak_gflops()
    figures["peak_gflops"] = round(max(peak.values()), 1)
    figures["peak_matmul_gflops"] = round(peak["matmul"], 1)
    figures["peak_conv_gflops"] = round(peak["conv"], 1)
    figures["base_fraction_of_peak"] = round(figures["base_gflops"] / figures["peak_gflops"], 3)
    figures["sam_over_base"] = round(figures["sam_ms"] / figures["base_ms"], 3)
    print(f"base update: {figures['base_gflop_per_update']} GFLOP -> {figures['base_gflops']} GFLOP/s; "
          f"peak {figures['peak_gflops']} GFLOP/s (matmul {peak['matmul']:.0f}, conv {peak['conv']:.0f}); "
          f"{100 * figures['base_fraction_of_peak']:.0f}% of peak; SAM/base {figures['sam_over_base']:.2f}x")
    if len(modes) == 2:
        print(f"compiled/eager: base {figures['base_ms'] / figures['eager_base_ms']:.2f}x, "
              f"PLASTIC† {figures['dagger_ms'] / figures['eager_dagger_ms']:.2f}x, "
              f"PLASTIC {figures['plastic_ms'] / figures['eager_plastic_ms']:.2f}x")
    updates_100k = 2 * (100_000 - 2_000)
    figures["dagger_100k_update_hours"] = round(updates_100k * figures["dagger_ms"] / 3.6e6, 2)
    print(f"PLASTIC† Atari-100k at replay ratio 2: {updates_100k:,} updates x {figures['dagger_ms']:.1f} ms = "
          f"{figures['dagger_100k_update_hours']:.2f} h of updates")
    if args.loop_steps:
        mode = modes[-1]
        figures["loop_env_steps_per_s"] = round(loop_speed(args.loop_steps, args.threads, mode), 1)
        print(f"full loop (Pong, PLASTIC†, RR 2, compile {mode}): {figures['loop_env_steps_per_s']} env steps/s")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
