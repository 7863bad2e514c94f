"""Per-seed update throughput of seeds trained together (`plastic train --seeds`, agents/seed_group.py; issue 18).

For MinAtar base and PLASTIC and Atari base, at each thread count: updates/s per seed of a lone agent (the ordinary
single-seed update, S = 1) and of groups of S = 2, 4, 8 seeds (one batched update of all S, divided by S). Each
seed has its own buffer filled with the same synthetic transitions (shaped as the env's). Rounds are interleaved
(lone, S=2, S=4, S=8, lone, ...) and the median of each is reported, since the machines here drift with load.
Ends with one JSON line whose keys include `minatar_base_speedup_8` and `minatar_plastic_speedup_8`: per-seed
throughput at S = 8 over the lone agent's, at the first thread count (a contract), and `<case>_speedup_<S>_t<T>`
for every case, S and thread count.

`--synthetic` also times the synthetic experiment's network, 4 seeds one by one against the same 4 under vmap
(`synthetic_<cifar|digits>_vmap_speedup_4_t<T>`): `plastic synthetic` runs seeds in a process pool instead, as long
as vmap does not measure faster.

    python benchmarks/multi_seed.py [--threads 1,2] [--sizes 2,4,8] [--updates 10] [--rounds 3] [--cases minatar_base,minatar_plastic,atari_base] [--synthetic]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np

from plastic.runtime import enable_huge_pages  # noqa: E402

enable_huge_pages()
import torch  # noqa: E402

# case -> (env id, preset, observation shape, frame shape, frame stack, actions)
CASES = {
    "minatar_base": ("minatar:breakout", "base", (4, 10, 10), (4, 10, 10), 1, 3),
    "minatar_plastic": ("minatar:breakout", "plastic", (4, 10, 10), (4, 10, 10), 1, 3),
    "atari_base": ("atari:Pong", "base", (4, 84, 84), (1, 84, 84), 4, 6),
}


def build(case: str, seed: int, fill: int):
    from plastic import config as config_module
    from plastic.agents.rainbow import RainbowAgent
    from plastic.replay import ReplayBuffer

    env, preset, obs_shape, frame_shape, stack, actions = CASES[case]
    config = config_module.build(env, preset, overrides={"seed": seed, "compile": "off"})
    high = 1.0 if env.startswith("minatar") else 255.0
    agent = RainbowAgent(config, obs_shape, actions, torch.device("cpu"), observation_high=high)
    buffer = ReplayBuffer(seed=seed, frame_shape=frame_shape, frame_stack=stack, **agent.replay_options())
    rng = np.random.default_rng(0)
    frames = rng.integers(0, int(high) + 1, size=(fill + stack, *frame_shape), dtype=np.uint8)
    obs = np.concatenate(frames[:stack])
    buffer.start_episode(obs)
    for t in range(fill):
        next_obs = np.concatenate([obs[frame_shape[0]:], frames[t + stack]])
        end = (t + 1) % 200 == 0
        buffer.add(int(rng.integers(actions)), float(rng.normal()), next_obs, end, False)
        obs = next_obs
        if end:
            obs = np.concatenate(frames[t + 1:t + 1 + stack])
            buffer.start_episode(obs)
    return agent, buffer


def timed(step, updates: int) -> float:
    """Seconds per call of `step`, over `updates` calls after one warm-up call."""
    step()
    started = time.perf_counter()
    for _ in range(updates):
        step()
    return (time.perf_counter() - started) / updates


def measure(case: str, sizes: list[int], updates: int, rounds: int, fill: int) -> dict[int, float]:
    """Per-seed updates/s: key 1 = a lone agent, key S = a group of S seeds."""
    from plastic.agents.seed_group import RainbowGroup

    lone_agent, lone_buffer = build(case, 0, fill)
    groups = {}
    for size in sizes:
        pairs = [build(case, seed, fill) for seed in range(size)]
        groups[size] = (RainbowGroup([agent for agent, _ in pairs]), [buffer for _, buffer in pairs])
    samples: dict[int, list[float]] = {1: [], **{size: [] for size in sizes}}
    for _ in range(rounds):
        samples[1].append(1.0 / timed(lambda: lone_agent.update(lone_buffer, 0.5), updates))
        for size, (group, buffers) in groups.items():
            samples[size].append(size / timed(lambda: group.update(buffers, 0.5), max(updates // 2, 2)))
    return {size: statistics.median(values) for size, values in samples.items()}


def synthetic(shape: tuple[int, int, int], seeds: int, updates: int, rounds: int) -> tuple[float, float]:
    """The synthetic experiment's network (App. A.2) at batch 128: ms per update of `seeds` models trained one after
    another, and of the same models under `torch.func.vmap` over their stacked parameters (Adam, no SAM)."""
    import copy

    from torch.func import functional_call, stack_module_state, vmap
    from torch.nn import functional as F

    from plastic.synthetic.model import build_model

    models = [build_model(shape).to(memory_format=torch.contiguous_format) for _ in range(seeds)]
    x, y = torch.randn(seeds, 128, *shape), torch.randint(0, 10, (seeds, 128))
    params, buffers = stack_module_state(models)
    skeleton = copy.deepcopy(models[0]).to("meta")
    stacked_adam = torch.optim.Adam(list(params.values()), lr=1e-3, fused=True)
    adams = [torch.optim.Adam(model.parameters(), lr=1e-3, fused=True) for model in models]

    def loss(p, b, xi, yi):
        return F.cross_entropy(functional_call(skeleton, (p, b), (xi,)), yi)

    def batched():
        stacked_adam.zero_grad()
        vmap(loss)(params, buffers, x, y).sum().backward()
        stacked_adam.step()

    def one_by_one():
        for k, model in enumerate(models):
            adams[k].zero_grad()
            F.cross_entropy(model(x[k]), y[k]).backward()
            adams[k].step()

    alone, together = [], []
    for _ in range(rounds):
        alone.append(timed(one_by_one, updates) * 1e3)
        together.append(timed(batched, updates) * 1e3)
    return statistics.median(alone), statistics.median(together)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--sizes", default="2,4,8")
    parser.add_argument("--updates", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fill", type=int, default=2000, help="transitions in each seed's buffer")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--synthetic", action="store_true", help="also time the synthetic experiment's network, "
                        "4 seeds one by one vs under vmap (batch 128, CIFAR and digits shapes)")
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    sizes = [int(s) for s in args.sizes.split(",")]
    cases = args.cases.split(",")
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; allowed: {', '.join(CASES)}")
    out: dict[str, object] = {"threads": threads, "sizes": sizes, "cpu": torch.backends.cpu.get_cpu_capability(),
                              "load_before": round(os.getloadavg()[0], 2)}
    if os.getloadavg()[0] + max(threads) > (os.cpu_count() or 1) + 0.5:
        print(f"warning: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs: the {max(threads)}-thread "
              "figures will share cores with other work and mean little", flush=True)
    for count in threads:
        torch.set_num_threads(count)
        for case in cases:
            rates = measure(case, sizes, args.updates if "atari" not in case else max(args.updates // 4, 2),
                            args.rounds, args.fill)
            line = " | ".join(f"S={size}: {rate:.1f}/s ({rate / rates[1]:.2f}x)" for size, rate in rates.items())
            print(f"{case:16s} threads {count} | per-seed updates/s  {line}", flush=True)
            for size, rate in rates.items():
                out[f"{case}_ups_{size}_t{count}"] = round(rate, 2)
                if size > 1:
                    out[f"{case}_speedup_{size}_t{count}"] = round(rate / rates[1], 3)
        if args.synthetic:
            for name, shape in (("cifar", (3, 32, 32)), ("digits", (1, 8, 8))):
                alone, together = synthetic(shape, 4, args.updates, args.rounds)
                print(f"synthetic_{name:9s} threads {count} | 4 seeds one by one {alone:.1f} ms, under vmap "
                      f"{together:.1f} ms ({alone / together:.2f}x)", flush=True)
                out[f"synthetic_{name}_vmap_speedup_4_t{count}"] = round(alone / together, 3)
    first = threads[0]
    for case in ("minatar_base", "minatar_plastic", "atari_base"):
        if f"{case}_speedup_8_t{first}" in out:
            out[f"{case}_speedup_8"] = out[f"{case}_speedup_8_t{first}"]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
