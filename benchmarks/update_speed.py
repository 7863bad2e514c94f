"""Speed of one DrQ(ε)-Rainbow training update at batch 32 on Atari-shaped data (issue 3).

One update = sample from a filled prioritized buffer, augment s and s', loss, backward, optimizer (SAM: two passes),
priorities, EMA target. Prints ms and updates/s for base, SAM only, PLASTIC† and PLASTIC; the GFLOP/s the base
update achieves (FLOPs counted by torch's FlopCounterMode); a conv/matmul peak GFLOP/s measured in the same run at
the same thread count, and the ratio; optionally the full training loop's env steps/s at replay ratio 2 on Pong.
Ends with one JSON line (keys: base_ms, sam_ms, dagger_ms, plastic_ms, base_gflops, peak_gflops, threads, ...).
With `--compile both` (the default) every preset is timed eager and compiled (config `compile`, what a long Atari
run uses); the main keys then hold the compiled figures and `eager_*_ms` the eager ones. `--compile-mode
reduce-overhead` (CUDA only) compiles with CUDA graphs (config `compile_mode`).

The floor (issue 14): the streaming memory bandwidth measured in the same run at the same thread count (a large
copy), the bytes one base update must move (every parameter-sized tensor each pass reads or writes, counted from the
agent's tensors: `update_traffic`), and `floor_ms` = bytes / bandwidth + convolution FLOPs / the conv peak. Base,
PLASTIC† and PLASTIC are also timed with `precision = "bf16"` (`bf16_base_ms`, `bf16_dagger_ms`, `bf16_plastic_ms`;
null on a CPU without bf16 units), interleaved with the float32 ones. `--loop-steps N` also breaks one agent step
of the loop down into acting at batch 1, the emulator, buffer insertion, PER sampling, the priority update, the rest
of the update and logging.

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


# Timed variants: name -> (preset, precision). The names prefix the JSON keys (`base_ms`, `bf16_plastic_ms`, ...).
PRESETS = {"base": ("base", "fp32"), "sam": ("sam", "fp32"), "dagger": ("plastic-dagger", "fp32"),
           "plastic": ("plastic", "fp32"), "bf16_base": ("base", "bf16"), "bf16_dagger": ("plastic-dagger", "bf16"),
           "bf16_plastic": ("plastic", "bf16")}


def build(preset: str, actions: int, fill: int, device: torch.device, compile: str = "off", precision: str = "fp32",
          compile_mode: str = "default"):
    from plastic import config as config_module
    from plastic.agents.rainbow import RainbowAgent
    from plastic.replay import ReplayBuffer

    config = config_module.build("atari:Pong", preset, overrides={
        "compile": compile, "precision": precision, "device": device.type,
        "compile_mode": compile_mode if compile == "on" else "default"})
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


def conv_flops(agent, buffer) -> float:
    """FLOPs of one update's convolutions (forward and backward), counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        agent.update(buffer, 0.5)
    return float(sum(flops for op, flops in counter.get_flop_counts()["Global"].items() if "convolution" in str(op)))


def update_traffic(agent) -> dict[str, int]:
    """Bytes of parameter-sized tensors one update must read or write, per phase, from the agent's own tensors.

    Per online parameter p (its gradient g, Adam moments m, v) and its target twin t: the target pass reads t once
    and, with double Q, p once (the online network picks a*); the loss pass reads p, its backward reads p (the input
    gradient) and writes g; clipping reads g; Adam reads p, g, m, v and writes p, m, v; the EMA reads t and p and
    writes t. SAM adds, over its perturbed parameters, the backup copy (read p, write), the gradient norm (read g),
    the perturbation (read p, g, write p) and the restore (read the backup, write p), and over all parameters a
    second loss pass (read p twice, write g). Activations at batch 32 are small and left out."""
    online = list(agent.online.parameters())
    size = sum(p.numel() * p.element_size() for p in online)
    target = sum(t.numel() * t.element_size() for t in agent.target.parameters())
    traffic = {
        "target_pass": target + (size if agent.rainbow.double_q else 0),
        "loss_pass": 3 * size,
        "clip": size,
        "adam": 7 * size,
        "ema": 2 * target + size,
    }
    if agent.config.sam.enabled:
        perturbed = sum(p.numel() * p.element_size() for p in agent.optimizer.perturbed_parameters())
        traffic["sam"] = 8 * perturbed + 3 * size
    return traffic


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def stream_bandwidth(device: torch.device, megabytes: int = 256, reps: int = 10) -> float:
    """GB/s of a large tensor copy (bytes read + bytes written), best of `reps`, at the current thread count."""
    source = torch.ones(megabytes << 18, device=device)  # float32: megabytes MiB
    destination = torch.empty_like(source)
    best = float("inf")
    for _ in range(reps + 2):
        synchronize(device)
        started = time.perf_counter()
        destination.copy_(source)
        synchronize(device)
        best = min(best, time.perf_counter() - started)
    return 2 * source.numel() * 4 / best / 1e9


def peak_gflops(device: torch.device) -> dict[str, float]:
    """Best of a large sgemm and the Nature-CNN conv2 shape in channels_last (forward), at the current threads."""
    out = {}
    a, b = torch.randn(2048, 2048, device=device), torch.randn(2048, 2048, device=device)
    for _ in range(2):
        a @ b
    synchronize(device)
    started, reps = time.perf_counter(), 10
    for _ in range(reps):
        a @ b
    synchronize(device)
    out["matmul"] = 2 * 2048**3 * reps / (time.perf_counter() - started) / 1e9
    conv = torch.nn.Conv2d(32, 64, 4, 2).to(device, memory_format=torch.channels_last)
    x = torch.randn(256, 32, 20, 20, device=device).to(memory_format=torch.channels_last)
    flops = 2 * 256 * 64 * 9 * 9 * 32 * 16
    with torch.no_grad():
        for _ in range(2):
            conv(x)
        synchronize(device)
        started, reps = time.perf_counter(), 10
        for _ in range(reps):
            conv(x)
        synchronize(device)
    out["conv"] = flops * reps / (time.perf_counter() - started) / 1e9
    return out


def loop_speed(steps: int, threads: int, compile: str, device: torch.device) -> float:
    import tempfile

    from plastic import config as config_module
    from plastic.training.loop import Trainer

    config = config_module.build("atari:Pong", "plastic-dagger", overrides={
        "steps": steps, "threads": threads, "rainbow": {"learning_starts": steps // 3}, "eval_episodes": 1,
        "eval_envs": 1, "probe": {"every": 0}, "checkpoint_every": 10 * steps, "compile": compile,
        "device": device.type})
    with tempfile.TemporaryDirectory() as run_dir:
        result = Trainer(config, run_dir, progress=False).run()
    return result["env_steps_per_s"]


def loop_breakdown(steps: int, compile: str, device: torch.device, calls: int = 50) -> dict[str, float]:
    """ms per agent step of each part of the loop on Pong (PLASTIC†, replay ratio 2), each timed on its own: acting
    at batch 1 (the noisy target network, right after the step's updates), the emulator (frame skip 4), buffer
    insertion, PER sampling and priority updates (twice per step, as the updates), the rest of the two updates, and
    logging (one metrics line per `log_every` steps, the progress bar every 50). `steps` random-action steps fill
    the buffer first."""
    import tempfile

    from plastic import config as config_module
    from plastic.envs import make_env
    from plastic.training.logger import RunLogger
    from plastic.training.setup import make_agent, make_buffer

    config = config_module.build("atari:Pong", "plastic-dagger", overrides={
        "steps": 100_000, "compile": compile, "rainbow": {"learning_starts": 0}})
    env = make_env(config.env, seed=0, train=True)
    agent = make_agent(config, env, device)
    buffer = make_buffer(config, env, agent)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    buffer.start_episode(obs)
    times: dict[str, list[float]] = {"emulator": [], "buffer_add": []}
    for _ in range(steps):
        action = int(rng.integers(env.action_space.n))
        started = time.perf_counter()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        middle = time.perf_counter()
        buffer.add(action, agent.transform_reward(reward), next_obs, terminated, truncated)
        times["buffer_add"].append(time.perf_counter() - middle)
        times["emulator"].append(middle - started)
        obs = next_obs
        if terminated or truncated:
            obs, _ = env.reset()
            buffer.start_episode(obs)
    parts = {name: statistics.median(values) * 1e3 for name, values in times.items()}

    def timed(fn) -> float:
        for _ in range(3):
            fn()
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        return (time.perf_counter() - started) / calls * 1e3

    rr, batch_size = config.replay_ratio, config.rainbow.batch_size
    # Acting as the loop does it, right after the step's updates: back to back, the weights it reads stay in cache.
    acting = []
    for _ in range(calls // 5):
        for _ in range(rr):
            agent.update(buffer, 0.5)
        started = time.perf_counter()
        agent.act(obs, 10**6)
        acting.append(time.perf_counter() - started)
    parts["acting"] = statistics.median(acting) * 1e3
    batch = buffer.sample(batch_size)
    parts["per_sample"] = rr * timed(lambda: buffer.sample(batch_size))
    priorities = rng.random(batch_size) + 0.1
    parts["per_priorities"] = rr * timed(lambda: buffer.update_priorities(batch.indices, priorities))
    update = rr * timed(lambda: agent.update(buffer, 0.5))
    parts["update_rest"] = update - parts["per_sample"] - parts["per_priorities"]
    metrics = {"charts/SPS": 1.0, "charts/updates_per_s": 1.0, "losses/td_loss": 1.0, "losses/grad_norm": 1.0}
    with tempfile.TemporaryDirectory() as run_dir:
        logger = RunLogger(run_dir, total_steps=10**6, progress=False)
        log_ms = timed(lambda: logger.log(1, 1.0, metrics))
        progress_ms = timed(lambda: logger.progress(1, ups=1.0, ret=1.0))
        logger.close()
    parts["logging"] = log_ms / config.log_every + progress_ms / 50
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--updates", type=int, default=10, help="updates per agent per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; each preset's median round is reported")
    parser.add_argument("--actions", type=int, default=18, help="18 = full action set (the figures in docs/performance.md)")
    parser.add_argument("--fill", type=int, default=5000, help="transitions in the buffer")
    parser.add_argument("--compile", choices=("both", "on", "off"), default="both",
                        help="time eager (off), compiled (on) or both")
    parser.add_argument("--compile-mode", choices=("default", "reduce-overhead"), default="default",
                        help="torch.compile mode of the compiled figures; reduce-overhead = CUDA graphs (cuda only)")
    parser.add_argument("--loop-steps", type=int, default=0, help="also time the full loop on Pong (0 = skip)")
    parser.add_argument("--presets", default=",".join(PRESETS), help=f"comma list of {', '.join(PRESETS)}")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from plastic.runtime import tune_allocator

    tune_allocator()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("update_speed.py: --device cuda but torch sees no CUDA device")
    if args.compile_mode == "reduce-overhead" and (device.type != "cuda" or args.compile == "off"):
        raise SystemExit("update_speed.py: --compile-mode reduce-overhead captures CUDA graphs: it needs --device "
                         "cuda and --compile on or both")
    unknown = set(args.presets.split(",")) - set(PRESETS)
    if unknown or "base" not in args.presets.split(","):
        raise SystemExit(f"update_speed.py: --presets {args.presets}: a comma list of {', '.join(PRESETS)} that "
                         "includes base")
    figures: dict[str, float] = {"threads": args.threads, "device": args.device, "compile_mode": args.compile_mode}
    flops = update_flops(*build("base", args.actions, args.fill, device))  # counted eagerly; compiling keeps FLOPs
    figures["base_gflop_per_update"] = round(flops / 1e9, 3)
    base_agent, base_buffer = build("base", args.actions, args.fill, device)
    traffic = update_traffic(base_agent)
    convolution_flops = conv_flops(base_agent, base_buffer)
    del base_agent, base_buffer
    modes = ("off", "on") if args.compile == "both" else (args.compile,)
    presets = {name: PRESETS[name] for name in args.presets.split(",")}
    from plastic.agents.precision import bf16_unsupported_reason

    no_bf16 = bf16_unsupported_reason(device)
    if no_bf16:
        print(f"bf16 not timed: {no_bf16}")
        presets = {name: value for name, value in presets.items() if value[1] == "fp32"}
        figures.update(bf16_base_ms=None, bf16_dagger_ms=None, bf16_plastic_ms=None)
    for mode in modes:
        prefix = "eager_" if mode == "off" and len(modes) == 2 else ""
        torch._dynamo.reset()
        runs = {name: build(preset, args.actions, args.fill, device, compile=mode, precision=precision,
                            compile_mode=args.compile_mode)
                for name, (preset, precision) in presets.items()}
        for name, ms in time_updates(runs, args.updates, args.rounds).items():
            figures[f"{prefix}{name}_ms"] = round(ms, 2)
            params = sum(p.numel() for p in runs[name][0].online.parameters())
            preset, precision = presets[name]
            label = f"{preset} ({'compiled' if mode == 'on' else 'eager'}, {precision})"
            print(f"{label:>32}: {ms:7.2f} ms/update  {1e3 / ms:6.1f} updates/s  ({params:,} parameters)",
                  flush=True)
        del runs
    figures["base_gflops"] = round(flops / figures["base_ms"] / 1e6, 1)
    peak = peak_gflops(device)
    figures["peak_gflops"] = round(max(peak.values()), 1)
    figures["peak_matmul_gflops"] = round(peak["matmul"], 1)
    figures["peak_conv_gflops"] = round(peak["conv"], 1)
    figures["base_fraction_of_peak"] = round(figures["base_gflops"] / figures["peak_gflops"], 3)
    if "sam_ms" in figures:
        figures["sam_over_base"] = round(figures["sam_ms"] / figures["base_ms"], 3)
    bandwidth = stream_bandwidth(device)
    figures["bandwidth_gbs"] = round(bandwidth, 1)
    figures["bytes_per_update"] = sum(traffic.values())
    figures["conv_gflop_per_update"] = round(convolution_flops / 1e9, 3)
    memory_ms = figures["bytes_per_update"] / bandwidth / 1e6
    conv_ms = convolution_flops / peak["conv"] / 1e6
    figures["floor_ms"] = round(memory_ms + conv_ms, 2)
    figures["base_over_floor"] = round(figures["base_ms"] / figures["floor_ms"], 3)
    print(f"floor: {figures['bytes_per_update'] / 1e6:.0f} MB of parameter-sized tensors "
          f"({', '.join(f'{k} {v / 1e6:.0f}' for k, v in traffic.items())}) at {bandwidth:.1f} GB/s = "
          f"{memory_ms:.1f} ms + {figures['conv_gflop_per_update']} GFLOP of convolutions at {peak['conv']:.0f} "
          f"GFLOP/s = {conv_ms:.1f} ms -> floor {figures['floor_ms']:.1f} ms; base is "
          f"{figures['base_over_floor']:.2f}x the floor")
    for name in ("base", "dagger", "plastic"):
        if figures.get(f"bf16_{name}_ms") and f"{name}_ms" in figures:
            figures[f"bf16_over_fp32_{name}"] = round(figures[f"bf16_{name}_ms"] / figures[f"{name}_ms"], 3)
            print(f"bf16/fp32 {name}: {figures[f'bf16_over_fp32_{name}']:.2f}x")
    print(f"base update: {figures['base_gflop_per_update']} GFLOP -> {figures['base_gflops']} GFLOP/s; "
          f"peak {figures['peak_gflops']} GFLOP/s (matmul {peak['matmul']:.0f}, conv {peak['conv']:.0f}); "
          f"{100 * figures['base_fraction_of_peak']:.0f}% of peak; SAM/base {figures.get('sam_over_base', '-')}x")
    if len(modes) == 2:
        print("compiled/eager: " + ", ".join(f"{name} {figures[f'{name}_ms'] / figures[f'eager_{name}_ms']:.2f}x"
                                             for name in presets))
    if "dagger_ms" in figures:
        updates_100k = 2 * (100_000 - 2_000)
        figures["dagger_100k_update_hours"] = round(updates_100k * figures["dagger_ms"] / 3.6e6, 2)
        print(f"PLASTIC† Atari-100k at replay ratio 2: {updates_100k:,} updates x {figures['dagger_ms']:.1f} ms = "
              f"{figures['dagger_100k_update_hours']:.2f} h of updates")
    if args.loop_steps:
        mode = modes[-1]
        parts = loop_breakdown(args.loop_steps, mode, device)
        step_ms = sum(parts.values())
        around = step_ms - parts["update_rest"]
        figures.update({f"loop_{name}_ms": round(ms, 3) for name, ms in parts.items()})
        figures["loop_outside_update_share"] = round(around / step_ms, 3)
        print(f"one agent step (PLASTIC†, RR 2, compile {mode}): {step_ms:.1f} ms = "
              + ", ".join(f"{name} {ms:.2f} ({100 * ms / step_ms:.1f}%)" for name, ms in parts.items())
              + f"; all but the updates' own work: {100 * around / step_ms:.1f}%")
        figures["loop_env_steps_per_s"] = round(loop_speed(args.loop_steps, args.threads, mode, device), 1)
        print(f"full loop (Pong, PLASTIC†, RR 2, compile {mode}): {figures['loop_env_steps_per_s']} env steps/s")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
