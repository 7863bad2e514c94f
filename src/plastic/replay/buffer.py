"""Replay memory of the paper's agents: frame-deduplicated uint8 storage, n-step returns, prioritized sampling.

DrQ(eps)-Rainbow (paper Table 5) uses n-step 10, gamma 0.99, prioritized replay (exponent 0.5, IS 0.4 -> 1), 100k
transitions; DrQ-SAC (Table 6) n-step 1 with uniform sampling.

Storage. Each frame (C, H, W) is stored once, in a uint8 ring of frames addressed by a global frame counter. Within an
episode the stack of s_{t+1} is the stack of s_t shifted by one frame, so `start_episode` writes the k frames of the
first observation and every `add` writes one frame; the stack of any s_t is then k consecutive frames, rebuilt by
index exactly as the env returned it (the first stack may hold k distinct frames, e.g. after a life loss). Per
transition the ring of `capacity` slots keeps action, reward, terminated, truncated and the id of s_t's last frame.
(The public code stores two full stacks per transition, about 5.6 GB for 100k Atari transitions; this is ~0.7 GB.)

Each episode costs k - 1 frames more than its transitions, so the frame ring holds
`capacity + (k - 1) * ceil(capacity / MEAN_EPISODE_LENGTH) + k + n_step` frames: while episodes in the buffer average
at least `MEAN_EPISODE_LENGTH` steps all `capacity` transitions stay sampleable; with shorter episodes the oldest lose
their frames first and `len(buffer)` reports the smaller number.

Sampleable transitions. Transition t (a monotonic id; its slot is t % capacity) is sampleable when its n-step window
is complete (t + n - 1 already added, or its episode has ended) and neither its slot nor its frames were overwritten.
Those ids always form one contiguous range `[oldest, ready_end)`, so uniform sampling is one `integers` call.

n-step (Sutton & Barto 7.1), vectorised over batch and window with index arrays: with m = min(n, steps until the
episode ends), reward = sum_{i<m} gamma^i r_{t+i}, next_obs = s_{t+m}, discount = gamma^m, or 0 when the episode
terminated within the window (truncation bootstraps from the last observation).

Prioritized replay (Schaul et al., 2016). The sum tree holds (p + `PRIORITY_FLOOR`)^alpha (alpha =
`priority_exponent`; the floor keeps a transition with a zero TD error sampleable, as in Dopamine); new transitions
enter with the largest priority seen so far (initially 1.0), when their n-step window completes; transitions that
stop being sampleable get mass 0. Adds only move counters; the tree catches up in one vectorised update before it is
next read (sample, update_priorities, state_dict, the `sum_tree` property). Sampling is stratified over the total
mass (Dopamine / DrQ). IS weights are (N P(i))^-beta with N = len(buffer), normalised by the largest weight in the
batch (as Dopamine and DrQ do) so they only ever scale the loss down.

All randomness comes from the buffer's own seeded `np.random.Generator` (`seed`: an int or a `SeedSequence`, the
run's `replay` stream), which `state_dict` saves: the same seed and the same adds give the same samples, and
save/load mid-run continues exactly as if uninterrupted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from plastic.replay.sum_tree import SumTree

MEAN_EPISODE_LENGTH = 32  # episode length the frame ring is sized for (see module docstring)
# Added to every priority given to `update_priorities`, so that a zero TD error leaves the transition sampleable:
# with mass 0 it could never be drawn again, so its priority could never rise. Dopamine's Rainbow adds 1e-10.
PRIORITY_FLOOR = 1e-10


@dataclass
class ReplayBatch:
    """A batch of n-step transitions; all fields numpy arrays with leading batch dimension B."""

    obs: np.ndarray  # uint8 (B, k*C, H, W): s_t
    action: np.ndarray  # (B, *action_shape): a_t
    reward: np.ndarray  # float32 (B,): sum_{i<m} gamma^i r_{t+i}
    next_obs: np.ndarray  # uint8 (B, k*C, H, W): s_{t+m}
    discount: np.ndarray  # float32 (B,): gamma^m, 0 if the episode terminated within the m steps
    indices: np.ndarray  # int64 (B,): slots, to pass back to `update_priorities`
    weights: np.ndarray  # float32 (B,): importance-sampling weights, max 1 (all 1 for uniform sampling)


class ReplayBuffer:
    """n-step replay over frame-deduplicated uint8 storage, uniform or prioritized.

    Usage, per env episode: `start_episode(obs)` with the observation from `env.reset()`, then after each env step
    `add(action, reward, next_obs, terminated, truncated)`. Learners call `sample(batch_size, importance_exponent)`
    and, when prioritized, `update_priorities(batch.indices, priorities)`; probes call `sample_uniform(batch_size)`.
    Observations are uint8 `(frame_stack * C, H, W)`; `frame_shape` is one frame `(C, H, W)`.
    """

    def __init__(
        self,
        capacity: int,
        frame_shape: tuple[int, ...],
        frame_stack: int,
        *,
        action_shape: tuple[int, ...] = (),
        action_dtype=np.int64,
        n_step: int = 1,
        gamma: float = 0.99,
        prioritized: bool = False,
        priority_exponent: float = 0.5,
        seed: int | np.random.SeedSequence = 0,
    ):
        if not isinstance(capacity, (int, np.integer)) or capacity <= 0:
            raise ValueError(f"capacity must be a positive integer, got {capacity!r}")
        if len(frame_shape) != 3 or min(frame_shape) <= 0:
            raise ValueError(f"frame_shape must be (C, H, W) with positive sizes, got {frame_shape!r}")
        if not isinstance(frame_stack, (int, np.integer)) or frame_stack < 1:
            raise ValueError(f"frame_stack must be an integer >= 1, got {frame_stack!r}")
        if not isinstance(n_step, (int, np.integer)) or n_step < 1:
            raise ValueError(f"n_step must be an integer >= 1, got {n_step!r}")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must lie in [0, 1], got {gamma!r}")
        if priority_exponent < 0:
            raise ValueError(f"priority_exponent must be >= 0, got {priority_exponent!r}")
        self.capacity = int(capacity)
        self.frame_shape = tuple(int(s) for s in frame_shape)
        self.frame_stack = int(frame_stack)
        self.obs_shape = (self.frame_stack * self.frame_shape[0], *self.frame_shape[1:])
        self.action_shape = tuple(int(s) for s in action_shape)
        self.action_dtype = np.dtype(action_dtype)
        self.n_step = int(n_step)
        self.gamma = float(gamma)
        self.prioritized = bool(prioritized)
        self.priority_exponent = float(priority_exponent)
        self.seed = seed
        k = self.frame_stack
        self.frame_capacity = self.capacity + (k - 1) * math.ceil(self.capacity / MEAN_EPISODE_LENGTH) + k + self.n_step
        # gamma^i for i < n and gamma^m for m <= n, in float64 so the sums are exact to float32 precision.
        self._gamma_powers = self.gamma ** np.arange(self.n_step + 1, dtype=np.float64)

        # np.zeros maps pages lazily: memory grows with the frames actually written.
        self._frames = np.zeros((self.frame_capacity, *self.frame_shape), dtype=np.uint8)
        self._action = np.zeros((self.capacity, *self.action_shape), dtype=self.action_dtype)
        self._reward = np.zeros(self.capacity, dtype=np.float32)
        self._terminated = np.zeros(self.capacity, dtype=bool)
        self._truncated = np.zeros(self.capacity, dtype=bool)
        self._obs_frame = np.zeros(self.capacity, dtype=np.int64)  # global id of the last frame of s_t
        self._tree = SumTree(self.capacity) if self.prioritized else None
        self._rng = np.random.default_rng(seed)

        self._frames_written = 0  # global frame counter
        self._added = 0  # transitions added (the next transition id)
        self._oldest = 0  # oldest sampleable transition id
        self._ready_end = 0  # ids < ready_end have complete n-step windows
        self._episode_open = False
        self._episode_start = 0  # first transition id of the open episode
        self._max_priority = 1.0
        # The range the sum tree last gave mass to; adds only move counters, the tree catches up before it is read.
        self._tree_oldest = 0
        self._tree_ready_end = 0

    # ---------------------------------------------------------------- adding
    def __len__(self) -> int:
        return max(0, self._ready_end - self._oldest)

    @property
    def sum_tree(self) -> SumTree | None:
        """Prioritized replay's p^alpha per slot, 0 on slots not sampleable (None for uniform buffers)."""
        self._flush_priorities()
        return self._tree

    @property
    def nbytes(self) -> int:
        """Bytes of storage allocated (frames, transitions, sum tree)."""
        arrays = [self._frames, self._action, self._reward, self._terminated, self._truncated, self._obs_frame]
        return sum(a.nbytes for a in arrays) + (self._tree.tree.nbytes if self._tree is not None else 0)

    def start_episode(self, obs: np.ndarray) -> None:
        """Begin an episode with the observation from `env.reset()`. An episode still open is ended as truncated."""
        obs = self._check_obs(obs, "obs")
        if self._episode_open and self._added > self._episode_start:
            self._truncated[(self._added - 1) % self.capacity] = True
        k = self.frame_stack
        ids = self._frames_written + np.arange(k)
        self._frames[ids % self.frame_capacity] = obs.reshape(k, *self.frame_shape)
        self._frames_written += k
        self._episode_open = True
        self._episode_start = self._added
        self._refresh_sampleable()

    def add(self, action, reward: float, next_obs: np.ndarray, terminated: bool, truncated: bool) -> None:
        """Store the transition of one env step: a_t, r_t, s_{t+1} and how the episode continues."""
        if not self._episode_open:
            raise RuntimeError("call start_episode(obs) before add(): no episode is open")
        next_obs = self._check_obs(next_obs, "next_obs")
        action = np.asarray(action, dtype=self.action_dtype)
        if action.shape != self.action_shape:
            raise ValueError(f"action must have shape {self.action_shape}, got {action.shape}")
        k, c = self.frame_stack, self.frame_shape[0]
        last = self._frames_written - 1  # last frame of s_t
        if k > 1:
            # The stack must shift by one frame, otherwise it could not be rebuilt from single frames.
            previous = self._frames[(last - k + 2 + np.arange(k - 1)) % self.frame_capacity]
            if not np.array_equal(previous.reshape(-1), next_obs[: (k - 1) * c].reshape(-1)):
                raise ValueError(
                    "next_obs must be the previous observation shifted by one frame (its first frames must equal "
                    "the last frames of the previous observation); start a new episode for a discontinuity"
                )
        slot = self._added % self.capacity
        self._action[slot] = action
        self._reward[slot] = reward
        self._terminated[slot] = bool(terminated)
        self._truncated[slot] = bool(truncated)
        self._obs_frame[slot] = last
        self._frames[self._frames_written % self.frame_capacity] = next_obs[(k - 1) * c :]
        self._frames_written += 1
        self._added += 1
        if terminated or truncated:
            self._episode_open = False
        self._refresh_sampleable()

    def _check_obs(self, obs: np.ndarray, name: str) -> np.ndarray:
        obs = np.asarray(obs)
        if obs.dtype != np.uint8 or obs.shape != self.obs_shape:
            raise ValueError(f"{name} must be uint8 of shape {self.obs_shape}, got {obs.dtype} {obs.shape}")
        return obs

    def _refresh_sampleable(self) -> None:
        """Advance the sampleable range [oldest, ready_end) after a write."""
        oldest = max(self._oldest, self._added - self.capacity)
        # The oldest live frame id, shifted so it compares with the id of a stack's last frame.
        first_live_last_frame = self._frames_written - self.frame_capacity + self.frame_stack - 1
        # obs frames grow with the id, so the dead ones are a prefix; amortised O(1) per add.
        while oldest < self._added and self._obs_frame[oldest % self.capacity] < first_live_last_frame:
            oldest += 1
        if self._episode_open:
            ready_end = max(self._episode_start, self._added - self.n_step + 1)
        else:
            ready_end = self._added
        self._oldest = oldest
        self._ready_end = max(self._ready_end, ready_end)

    def _flush_priorities(self) -> None:
        """Give the sum tree's mass to exactly [oldest, ready_end): 0 to ids that left, max priority to new ones.

        Runs before the tree is read, so a step's adds cost one vectorised update instead of one each. The max
        priority only changes in `update_priorities`, which flushes first, so new ids get the max of their add time.
        """
        if self._tree is None or (self._tree_oldest, self._tree_ready_end) == (self._oldest, self._ready_end):
            return
        left_end = min(self._oldest, self._tree_ready_end)
        left = np.arange(max(self._tree_oldest, left_end - self.capacity), left_end)
        new = np.arange(max(self._tree_ready_end, self._oldest), self._ready_end)
        # Zeros first: a new id may reuse the slot of one that left.
        self._tree.update(left % self.capacity, 0.0)
        self._tree.update(new % self.capacity, self._max_priority**self.priority_exponent)
        self._tree_oldest, self._tree_ready_end = self._oldest, self._ready_end

    # ---------------------------------------------------------------- sampling
    def sampleable_indices(self) -> np.ndarray:
        """Slots of all sampleable transitions, oldest first."""
        return np.arange(self._oldest, self._oldest + len(self)) % self.capacity

    def sample(self, batch_size: int, importance_exponent: float = 0.4) -> ReplayBatch:
        """Prioritized (stratified) sample with IS weights when `prioritized`, else uniform with weights 1."""
        self._check_batch_size(batch_size)
        if importance_exponent < 0:
            raise ValueError(f"importance_exponent must be >= 0, got {importance_exponent!r}")
        if not self.prioritized:
            return self.sample_uniform(batch_size)
        tree = self.sum_tree
        slots = tree.sample(batch_size, self._rng)
        probabilities = tree.get(slots) / tree.total
        weights = (len(self) * probabilities) ** -float(importance_exponent)
        return self.gather(slots, (weights / weights.max()).astype(np.float32))

    def sample_uniform(self, batch_size: int, rng: np.random.Generator | None = None) -> ReplayBatch:
        """Uniform sample with replacement over sampleable transitions, ignoring priorities; weights are 1. `rng`
        (default: the buffer's own) lets a probe sample without advancing the learner's stream."""
        self._check_batch_size(batch_size)
        ids = (self._rng if rng is None else rng).integers(self._oldest, self._oldest + len(self), size=batch_size)
        return self.gather(ids % self.capacity)

    def _check_batch_size(self, batch_size: int) -> None:
        if not 1 <= batch_size <= len(self):
            raise ValueError(f"batch_size must lie in [1, len(buffer) = {len(self)}], got {batch_size}")

    def gather(self, indices: np.ndarray, weights: np.ndarray | None = None) -> ReplayBatch:
        """The n-step transitions at sampleable slots `indices` (weights default to 1)."""
        slots = np.asarray(indices, dtype=np.int64).reshape(-1)
        ids = self._ids_of(slots)
        if np.any(ids < 0):
            raise ValueError("indices must be sampleable slots (see sampleable_indices())")
        n, k = self.n_step, self.frame_stack
        window = (ids[:, None] + np.arange(n)) % self.capacity  # (B, n)
        ended = self._terminated[window] | self._truncated[window]
        # Step j of the window counts when no earlier step ended the episode; entries after the end are never read.
        in_window = np.ones(window.shape, dtype=bool)
        in_window[:, 1:] = ~np.logical_or.accumulate(ended[:, :-1], axis=1)
        m = in_window.sum(axis=1)
        reward = (self._reward[window] * in_window * self._gamma_powers[:n]).sum(axis=1)
        terminated = self._terminated[window[np.arange(len(slots)), m - 1]]
        discount = np.where(terminated, 0.0, self._gamma_powers[m])
        obs_last = self._obs_frame[slots]
        stack = np.arange(1 - k, 1)
        obs = self._frames[(obs_last[:, None] + stack) % self.frame_capacity]
        next_obs = self._frames[(obs_last[:, None] + m[:, None] + stack) % self.frame_capacity]
        return ReplayBatch(
            obs=obs.reshape(len(slots), *self.obs_shape),
            action=self._action[slots],
            reward=reward.astype(np.float32),
            next_obs=next_obs.reshape(len(slots), *self.obs_shape),
            discount=discount.astype(np.float32),
            indices=slots,
            weights=np.ones(len(slots), dtype=np.float32) if weights is None else weights,
        )

    def _ids_of(self, slots: np.ndarray) -> np.ndarray:
        """Transition ids of slots; -1 where a slot is not currently sampleable."""
        age = (slots - self._oldest) % self.capacity
        valid = (slots >= 0) & (slots < self.capacity) & (age < len(self))
        return np.where(valid, self._oldest + age, -1)

    def update_priorities(self, indices: np.ndarray, priorities: np.ndarray) -> None:
        """Set priorities p >= 0 (stored as (p + PRIORITY_FLOOR)^alpha, never 0) of sampled slots; slots no longer
        sampleable are skipped."""
        if self._tree is None:
            raise RuntimeError("update_priorities needs a buffer built with prioritized=True")
        slots = np.asarray(indices, dtype=np.int64).reshape(-1)
        priorities = np.asarray(priorities, dtype=np.float64).reshape(-1)
        if priorities.shape != slots.shape:
            raise ValueError(f"priorities must match indices in length, got {priorities.shape} vs {slots.shape}")
        if not np.all(np.isfinite(priorities)) or (priorities.size and priorities.min() < 0):
            raise ValueError("priorities must be finite and >= 0")
        valid = self._ids_of(slots) >= 0
        self.sum_tree.update(slots[valid], (priorities[valid] + PRIORITY_FLOOR) ** self.priority_exponent)  # flushes
        if priorities.size:
            self._max_priority = max(self._max_priority, float(priorities.max()))

    # ---------------------------------------------------------------- checkpointing
    _CONFIG = ("capacity", "frame_shape", "frame_stack", "action_shape", "n_step", "gamma", "prioritized",
               "priority_exponent")  # fmt: skip
    _COUNTERS = ("_frames_written", "_added", "_oldest", "_ready_end", "_episode_open", "_episode_start",
                 "_max_priority")  # fmt: skip
    _ARRAYS = ("_action", "_reward", "_terminated", "_truncated", "_obs_frame")

    def state_dict(self) -> dict:
        """Everything needed to continue exactly: contents, counters, sum tree and RNG state.

        Arrays are returned as torch tensors (copies) so `torch.load` with its default `weights_only=True` reads them.
        Only the frames written so far are included.
        """
        import torch

        state = {name: getattr(self, name) for name in self._CONFIG}
        state["action_dtype"] = self.action_dtype.name
        state.update({name: getattr(self, name) for name in self._COUNTERS})
        state.update({name: torch.from_numpy(getattr(self, name).copy()) for name in self._ARRAYS})
        state["_frames"] = torch.from_numpy(self._frames[: min(self._frames_written, self.frame_capacity)].copy())
        if self._tree is not None:
            state["_tree"] = torch.from_numpy(self.sum_tree.tree.copy())  # flushed: covers [oldest, ready_end)
        state["rng"] = self._rng.bit_generator.state
        return state

    def load_state_dict(self, state: dict) -> None:
        for name in self._CONFIG:
            if state[name] != getattr(self, name):
                raise ValueError(f"state has {name}={state[name]!r} but this buffer has {getattr(self, name)!r}")
        if state["action_dtype"] != self.action_dtype.name:
            raise ValueError(f"state has action_dtype={state['action_dtype']} but this buffer has {self.action_dtype}")
        for name in self._COUNTERS:
            setattr(self, name, state[name])
        for name in self._ARRAYS:
            getattr(self, name)[:] = _to_numpy(state[name])
        frames = _to_numpy(state["_frames"])
        self._frames[: len(frames)] = frames
        if self._tree is not None:
            self._tree.tree[:] = _to_numpy(state["_tree"])
        self._tree_oldest, self._tree_ready_end = self._oldest, self._ready_end
        self._rng.bit_generator.state = state["rng"]


def _to_numpy(array) -> np.ndarray:
    return array.numpy() if hasattr(array, "numpy") else np.asarray(array)
