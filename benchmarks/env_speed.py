"""Agent steps per second of the environments, random actions.

Measures one Atari env (Pong), the vector options for evaluation (gymnasium SyncVectorEnv / AsyncVectorEnv of
`plastic.envs` envs, and ale-py's C++ `AtariVectorEnv` with the closest settings), and one MinAtar env (breakout).
`AtariVectorEnv` is measured for reference only: it cannot reproduce the protocol exactly (its stack after a reset
is zero-padded instead of copies of the first frame, its no-op draws and seeding differ, and it gives no
`info["episode"]`), so `make_vector_env` uses gymnasium's vectors of our envs.

    python benchmarks/env_speed.py [--seconds 3] [--num-envs 8]

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def steps_per_second(step, seconds: float, steps_per_call: int = 1) -> float:
    step()  # warm-up
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        step()
        calls += 1
    return calls * steps_per_call / (time.perf_counter() - start)


def single_env(env_id: str, seconds: float) -> float:
    from plastic.envs import make_env

    env = make_env(env_id, seed=0, train=False)
    env.reset()
    rng = np.random.default_rng(0)
    actions = env.action_space.n

    def step():
        _, _, terminated, truncated, _ = env.step(rng.integers(actions))
        if terminated or truncated:
            env.reset()

    return steps_per_second(step, seconds)


def vector(make, seconds: float, num_envs: int) -> float:
    envs = make()
    envs.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = envs.single_action_space.n
    rate = steps_per_second(lambda: envs.step(rng.integers(actions, size=num_envs)), seconds, num_envs)
    envs.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per figure")
    parser.add_argument("--num-envs", type=int, default=8, help="sub-envs in each vector env")
    args = parser.parse_args()

    import ale_py

    from plastic.envs import make_vector_env

    n = args.num_envs
    figures = {
        "atari_pong_single": single_env("atari:Pong", args.seconds),
        "atari_pong_sync_vector": vector(lambda: make_vector_env("atari:Pong", n, seed=0), args.seconds, n),
        "atari_pong_async_vector": vector(
            lambda: make_vector_env("atari:Pong", n, seed=0, asynchronous=True), args.seconds, n
        ),
        "atari_pong_ale_vector_2_threads": vector(
            lambda: ale_py.AtariVectorEnv(
                "pong", n, num_threads=2, noop_max=30, use_fire_reset=False, reward_clipping=False
            ),
            args.seconds,
            n,
        ),
        "minatar_breakout_single": single_env("minatar:breakout", args.seconds),
    }
    for name, rate in figures.items():
        print(f"{name:34s} {rate:10.0f} agent steps/s")
    print(json.dumps({"num_envs": n, **{name: round(rate, 1) for name, rate in figures.items()}}))


if __name__ == "__main__":
    main()
