"""The random streams of a run: one seed, one `numpy.random.SeedSequence(seed)`, one spawned child per consumer.

Children of one `SeedSequence` are independent streams (NumPy's recommended way to seed parallel generators), so no
consumer replays another's draws, as two generators seeded with the same integer would (the warm-up actions and the
replay buffer's sampling did, before). All of them are still fixed by the seed. The streams, in spawn order:

- `parameters`: the agent's torch generator: initial weights, noisy-layer noise, resets, ReDo, SAC's policy noise;
- `actions`: the agent's numpy RNG: warm-up and epsilon-greedy actions;
- `augmentation`: the agent's torch generator for DrQ's random shift and intensity jitter;
- `replay`: the replay buffer's sampling (prioritized and uniform);
- `env`: the training env's seed;
- `evaluation`: each evaluation gets its own child (by the step it runs at) for the policy's epsilon and the eval
  envs' seeds, so evaluating never touches the training run's streams;
- `probe_batches`, `probe_hessian`: the probes' transitions and the power iteration's start vector, so probing
  leaves the training run's streams untouched too;
- `probe_reference`: the churn probe's reference batches and the Hessian-trace probe's Rademacher vectors (added
  after the others, so that every earlier stream is unchanged).

A stream's identity is its position in `STREAMS`: add new streams at the end, never reorder, or every seed would
give a different run.
"""

from __future__ import annotations

import numpy as np
import torch

STREAMS = ("parameters", "actions", "augmentation", "replay", "env", "evaluation", "probe_batches", "probe_hessian",
           "probe_reference")


class RandomStreams:
    """The named streams of `seed`; two instances with the same seed give identical generators."""

    def __init__(self, seed: int):
        self.seed = int(seed)
        self._sequences = dict(zip(STREAMS, np.random.SeedSequence(self.seed).spawn(len(STREAMS)), strict=True))

    def sequence(self, name: str) -> np.random.SeedSequence:
        if name not in self._sequences:
            raise KeyError(f"unknown random stream {name!r}; streams are {', '.join(STREAMS)}")
        return self._sequences[name]

    def numpy_generator(self, name: str) -> np.random.Generator:
        return np.random.default_rng(self.sequence(name))

    def torch_generator(self, name: str, device: torch.device | str = "cpu") -> torch.Generator:
        return torch.Generator(device=device).manual_seed(_word(self.sequence(name), np.uint64))

    def int_seed(self, name: str) -> int:
        """A 31-bit integer seed (envs take ints; `seed + i` for a vector env's sub-envs stays below 2**32)."""
        return _word(self.sequence(name), np.uint32) >> 1

    def evaluation(self, step: int) -> tuple[np.random.Generator, int]:
        """(policy RNG, env seed) of the evaluation run at agent step `step` (0 = the final evaluation)."""
        parent = self.sequence("evaluation")
        child = np.random.SeedSequence(parent.entropy, spawn_key=(*parent.spawn_key, int(step)))
        policy, env = child.spawn(2)
        return np.random.default_rng(policy), _word(env, np.uint32) >> 1


def _word(sequence: np.random.SeedSequence, dtype) -> int:
    return int(sequence.generate_state(1, dtype)[0])
