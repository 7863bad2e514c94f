"""What subnormal floats cost a DrQ(ε)-Rainbow update on this CPU, and what `flush_denormal` (on by default) saves.

Adam's moments of a unit whose gradient is zero decay by beta each update and pass through the subnormal range
(magnitude below 1.2e-38) on their way to zero; x86 cores handle subnormal operands in slow microcode unless
told to flush them. In the final checkpoint of an Atari-100k Boxing run (base, seed 0) 17-20% of the first moments
of the noisy head's 3136x512 layers and 2-3% of their second moments were subnormal.

This script gives a fresh Atari-shaped agent (batch 32, 18 actions) that state, either from a run's checkpoint
(`--checkpoint RUN_DIR/checkpoints/step_*.pt`, same preset and action count) or, by default, by making
`--fraction-m` / `--fraction-v` of every moment subnormal, restores it before every update (outside the timer) and
times the update under IEEE gradual underflow and under `torch.set_flush_denormal(True)`, the two interleaved round
by round. Prints ms per update and per Adam step alone, the ratios, and one JSON line (keys: ieee_update_ms,
flush_update_ms, ieee_adam_ms, flush_adam_ms, update_ratio, adam_ratio, subnormal_m, subnormal_v, ...).

    python benchmarks/denormals.py [--threads 2] [--compile on] [--preset base] [--checkpoint PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from update_speed import build  # noqa: E402  (enables huge pages before torch is imported, as a run does)

import torch  # noqa: E402

TINY = torch.finfo(torch.float32).tiny


def moments(agent) -> list[torch.Tensor]:
    return [state[key] for state in agent.optimizer.state.values() for key in ("exp_avg", "exp_avg_sq")]


def subnormal_fraction(tensors: list[torch.Tensor]) -> float:
    """Counted under IEEE arithmetic: with flushing on, comparisons read subnormals as zero."""
    torch.set_flush_denormal(False)
    count = sum(int(((t != 0) & (t.abs() < TINY)).sum()) for t in tensors)
    return count / sum(t.numel() for t in tensors)


def make_subnormal(agent, fraction_m: float, fraction_v: float, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    for state in agent.optimizer.state.values():
        for key, fraction, signed in (("exp_avg", fraction_m, True), ("exp_avg_sq", fraction_v, False)):
            tensor = state[key]
            chosen = torch.rand(tensor.shape, generator=generator) < fraction
            values = torch.rand(tensor.shape, generator=generator) * 1e-39  # (0, 1e-39): all subnormal
            if signed:
                values = values * torch.where(torch.rand(tensor.shape, generator=generator) < 0.5, -1.0, 1.0)
            tensor.copy_(torch.where(chosen, values, tensor))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compile", choices=("on", "off"), default="on")
    parser.add_argument("--preset", default="base")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--checkpoint", type=Path, help="a run's checkpoint whose agent state (weights, moments) to use")
    parser.add_argument("--fraction-m", type=float, default=0.16, help="subnormal share of the first moments")
    parser.add_argument("--fraction-v", type=float, default=0.02, help="subnormal share of the second moments")
    parser.add_argument("--updates", type=int, default=10, help="updates per mode per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from plastic.runtime import tune_allocator

    tune_allocator()
    agent, buffer = build(args.preset, 18, 5000, torch.device("cpu"), compile=args.compile, precision=args.precision)
    for _ in range(3):  # warm-up (compiles when compile is on) and creates Adam's state
        agent.update(buffer, 0.5)
    if args.checkpoint:
        agent.load_state_dict(torch.load(args.checkpoint, map_location="cpu", weights_only=False)["agent"])
    else:
        make_subnormal(agent, args.fraction_m, args.fraction_v)
    saved = [t.clone() for t in moments(agent)]
    figures = {"threads": args.threads, "preset": args.preset, "precision": args.precision, "compile": args.compile,
               "source": str(args.checkpoint) if args.checkpoint else "synthetic",
               "subnormal_m": round(subnormal_fraction(moments(agent)[0::2]), 4),
               "subnormal_v": round(subnormal_fraction(moments(agent)[1::2]), 4)}

    def restore() -> None:
        for tensor, value in zip(moments(agent), saved):
            tensor.copy_(value)  # a copy keeps subnormals under either mode: only arithmetic flushes

    times: dict[str, list[float]] = {f"{mode}_{what}": [] for mode in ("ieee", "flush") for what in ("update", "adam")}
    for _ in range(args.rounds):
        for mode, flush in (("ieee", False), ("flush", True)):
            torch.set_flush_denormal(flush)
            for what in ("update", "adam"):
                spent = 0.0
                for _ in range(args.updates):
                    restore()
                    started = time.perf_counter()
                    agent.update(buffer, 0.5) if what == "update" else agent.optimizer.step()
                    spent += time.perf_counter() - started
                times[f"{mode}_{what}"].append(spent / args.updates * 1e3)
    torch.set_flush_denormal(False)
    figures.update({f"{name}_ms": round(statistics.median(values), 2) for name, values in times.items()})
    figures["update_ratio"] = round(figures["ieee_update_ms"] / figures["flush_update_ms"], 2)
    figures["adam_ratio"] = round(figures["ieee_adam_ms"] / figures["flush_adam_ms"], 2)
    print(f"{args.preset} ({args.precision}, compile {args.compile}, {args.threads} threads), moments from "
          f"{figures['source']}: {100 * figures['subnormal_m']:.1f}% of first and {100 * figures['subnormal_v']:.1f}% "
          f"of second moments subnormal")
    for what in ("update", "adam"):
        label = "update" if what == "update" else "Adam step"
        print(f"  {label:>9}: IEEE {figures[f'ieee_{what}_ms']:.2f} ms, flushed {figures[f'flush_{what}_ms']:.2f} ms "
              f"({figures[f'{what}_ratio']:.2f}x)")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
