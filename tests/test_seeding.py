"""Random streams: every consumer of randomness in a run draws from its own child of `SeedSequence(seed)`, so the
streams are pairwise different, and the same seed gives the same streams."""

from itertools import combinations
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from plastic.agents.rainbow import RainbowAgent
from plastic.agents.sac import SACAgent
from plastic.config import build, parse_overrides
from plastic.training.hooks import ProbeHook
from plastic.training.setup import make_buffer
from plastic.training.seeding import STREAMS, RandomStreams

CPU = torch.device("cpu")


def assert_pairwise_different(draws: dict[str, object]) -> None:
    for (a, x), (b, y) in combinations(draws.items(), 2):
        assert x != y, f"streams {a} and {b} start with the same draws"


def test_named_streams_are_pairwise_different_and_fixed_by_the_seed():
    def first_draws(seed):
        streams = RandomStreams(seed)
        return {name: tuple(streams.numpy_generator(name).integers(0, 2**63, 4).tolist()) for name in STREAMS}

    draws = first_draws(0)
    assert_pairwise_different(draws)
    assert first_draws(0) == draws
    assert all(first_draws(1)[name] != draws[name] for name in STREAMS)
    # The documented derivation: stream i is child i of SeedSequence(seed).
    child = np.random.SeedSequence(0).spawn(len(STREAMS))[STREAMS.index("replay")]
    assert draws["replay"] == tuple(np.random.default_rng(child).integers(0, 2**63, 4).tolist())


def test_torch_and_integer_seeds_differ_per_stream_and_evaluations_differ_per_step():
    streams = RandomStreams(0)
    torch_draws = {name: tuple(torch.rand(3, generator=streams.torch_generator(name)).tolist()) for name in STREAMS}
    assert_pairwise_different(torch_draws)
    seeds = {name: streams.int_seed(name) for name in STREAMS}
    assert_pairwise_different(seeds)
    assert all(0 <= seed < 2**31 for seed in seeds.values())
    (rng_0, env_0), (rng_1, env_1) = streams.evaluation(0), streams.evaluation(1000)
    assert env_0 != env_1 and env_0 != seeds["env"]
    assert rng_0.random() != rng_1.random()
    again_rng, again_env = RandomStreams(0).evaluation(1000)
    assert again_env == env_1 and again_rng.random() == streams.evaluation(1000)[0].random()
    with pytest.raises(KeyError, match="'agent'"):
        streams.sequence("agent")


def run_streams(env: str, seed: int) -> tuple[dict, dict]:
    """First draws of every generator a run builds (agent, replay buffer, probes), for the agent of `env`'s domain."""
    config = build(env, "base", overrides=parse_overrides([f"seed={seed}"]))
    if config.domain == "dmc":
        agent = SACAgent(config, (9, 64, 64), 1, CPU)
        frames = SimpleNamespace(frame_shape=(3, 64, 64), frame_stack=3)
    else:
        agent = RainbowAgent(config, (4, 10, 10), 3, CPU)
        frames = SimpleNamespace(frame_shape=(4, 10, 10), frame_stack=1)
    buffer, probes = make_buffer(config, frames, agent), ProbeHook(config)
    numpy_draws = {"agent": agent.rng, "replay": buffer._rng, "probe batches": probes.rng}
    torch_draws = {"agent": agent.generator, "augmentation": agent.augmentation_generator,
                   "probe hessian": probes.generator}
    return ({name: tuple(rng.integers(0, 2**63, 4).tolist()) for name, rng in numpy_draws.items()},
            {name: tuple(torch.rand(3, generator=g).tolist()) for name, g in torch_draws.items()})


@pytest.mark.parametrize("env", ["minatar:breakout", "dmc:cheetah-run"])
def test_a_runs_generators_are_independent_streams_of_one_seed(env):
    numpy_draws, torch_draws = run_streams(env, seed=0)
    # The agent's and the buffer's numpy RNGs were once both default_rng(seed): sampling replayed the actions' draws.
    assert_pairwise_different(numpy_draws)
    assert_pairwise_different(torch_draws)
    assert run_streams(env, seed=0) == (numpy_draws, torch_draws)
    other_numpy, other_torch = run_streams(env, seed=1)
    assert all(other_numpy[k] != v for k, v in numpy_draws.items())
    assert all(other_torch[k] != v for k, v in torch_draws.items())
