"""Where one DrQ(ε)-Rainbow update's time goes: torch's profiler over a few updates, grouped by kind of work.

Builds the agent and filled buffer of `update_speed.py` (Atari-shaped data, batch 32), warms it up (compiling when
`--compile on`), then profiles `--updates` updates and prints ms per update and share for: convolutions forward and
backward, the head's matmuls forward and backward, elementwise kernels (inductor's fused kernels under compile;
the noisy layers' W and its gradient among them), fused Adam, the EMA target, norms, the other operators and the
time outside any operator (Python, the dispatcher); then the top operators by self time. One JSON line ends it (keys:
`preset`, `compile`, `precision`, `threads`, `update_ms`, `profiled_ms`, and `<group>_ms` for every group, spaces as
underscores). Shares are of the profiled time; the profiler slows an update by up to a quarter, and for compiled graphs
it overstates inductor's kernels and cannot show a second thread's idle time: `sample_update.py` samples both.

    python benchmarks/profile_update.py [--preset base] [--compile on|off] [--threads 2] [--updates 10] [--top 15]
"""

from __future__ import annotations

import argparse
import json
import time

from update_speed import build  # first: it enables huge pages before torch is imported

import torch  # noqa: E402

# Operator name -> group, by the first matching rule (substrings of torch's operator or kernel names).
GROUPS = (
    ("conv_backward", ("convolution_backward",)),
    ("conv_forward", ("convolution", "conv2d")),
    ("matmul_backward", ("aten::mm",)),
    ("matmul_forward", ("addmm", "aten::linear", "aten::matmul", "aten::bmm")),
    ("adam", ("fused_adam",)),
    ("ema", ("lerp",)),
    ("norms", ("linalg_vector_norm", "layer_norm", "aten::norm")),
    # Inductor's fused kernels run inside its compiled graphs, whose self time is theirs.
    ("elementwise", ("CompiledFxGraph", "cpp_fused", "triton_", "aten::mul", "aten::add", "aten::addcmul",
                     "aten::outer", "aten::relu", "threshold", "aten::where", "aten::clamp", "aten::sub", "aten::div",
                     "aten::copy_")),
)


def group_of(name: str) -> str:
    for group, patterns in GROUPS:
        if any(pattern in name for pattern in patterns):
            return group
    return "other"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="base")
    parser.add_argument("--compile", choices=("on", "off"), default="on")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--updates", type=int, default=10, help="profiled updates")
    parser.add_argument("--actions", type=int, default=18)
    parser.add_argument("--fill", type=int, default=5000, help="transitions in the buffer")
    parser.add_argument("--top", type=int, default=15, help="operators listed by self time")
    args = parser.parse_args()
    if args.updates < 1:
        parser.error(f"--updates must be at least 1, got {args.updates}")
    torch.set_num_threads(args.threads)
    from plastic.runtime import tune_allocator

    tune_allocator()
    try:
        agent, buffer = build(args.preset, args.actions, args.fill, torch.device("cpu"), compile=args.compile,
                              precision=args.precision)
    except (KeyError, ValueError) as error:
        parser.error(str(error).strip("'\""))
    for _ in range(5):
        agent.update(buffer, 0.5)
    started = time.perf_counter()
    for _ in range(args.updates):
        agent.update(buffer, 0.5)
    plain_ms = (time.perf_counter() - started) / args.updates * 1e3
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        started = time.perf_counter()
        for _ in range(args.updates):
            agent.update(buffer, 0.5)
        profiled_ms = (time.perf_counter() - started) / args.updates * 1e3
    events = [event for event in profiler.key_averages() if event.self_cpu_time_total > 0]
    # Operators' self times (microseconds over all profiled updates) leave out Python and the dispatcher between
    # them: that remainder is its own line, not spread over the groups.
    groups: dict[str, float] = {}
    for event in events:
        group = group_of(event.key)
        groups[group] = groups.get(group, 0.0) + event.self_cpu_time_total / 1e3 / args.updates
    groups["outside operators"] = max(0.0, profiled_ms - sum(groups.values()))
    print(f"{args.preset} ({'compiled' if args.compile == 'on' else 'eager'}, {args.precision}, {args.threads} "
          f"threads): {plain_ms:.2f} ms per update, {profiled_ms:.2f} under the profiler")
    for group, ms in sorted(groups.items(), key=lambda item: -item[1]):
        print(f"  {group:>17}: {ms:6.2f} ms  {100 * ms / profiled_ms:5.1f}%")
    print(f"top {args.top} operators by self time (ms per update):")
    for event in sorted(events, key=lambda event: -event.self_cpu_time_total)[:args.top]:
        print(f"  {event.self_cpu_time_total / 1e3 / args.updates:6.2f}  {event.count // args.updates:4d} calls  "
              f"[{group_of(event.key)}] {event.key[:90]}")
    figures = {"preset": args.preset, "compile": args.compile, "precision": args.precision, "threads": args.threads,
               "update_ms": round(plain_ms, 2), "profiled_ms": round(profiled_ms, 2)}
    figures.update({f"{group.replace(' ', '_')}_ms": round(ms, 2) for group, ms in sorted(groups.items())})
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
