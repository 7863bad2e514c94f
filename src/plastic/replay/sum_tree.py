"""Sum tree for prioritized experience replay (Schaul et al., 2016), vectorised over a batch with numpy.

A complete binary tree stored in one float64 array: leaves at `[size, 2 * size)` (size = capacity rounded up to a
power of two), each inner node the sum of its two children, the root (`tree[1]`) the total mass. Every operation
touches one node per level for each batch element, as whole-array numpy ops: O(B log N) work, O(log N) numpy calls.

- `update(indices, values)` writes leaves then recomputes the touched parents level by level from their children
  (never by adding deltas), so the sums carry no accumulated rounding drift.
- `find(targets)` is the prefix-sum search: the leaf i with cumsum[i-1] <= target < cumsum[i]; leaves of mass 0 are
  never returned.
- `sample(batch_size, rng)` is stratified sampling as in Dopamine / DrQ: the total mass is split into `batch_size`
  equal segments and one target is drawn uniformly inside each.
"""

from __future__ import annotations

import numpy as np


class SumTree:
    def __init__(self, capacity: int):
        if capacity <= 0:
            raise ValueError(f"capacity must be a positive integer, got {capacity}")
        self.capacity = int(capacity)
        self.depth = max(1, int(np.ceil(np.log2(self.capacity))))
        self.size = 1 << self.depth  # number of leaves; leaves beyond `capacity` stay 0
        self.tree = np.zeros(2 * self.size, dtype=np.float64)

    @property
    def total(self) -> float:
        return float(self.tree[1])

    def get(self, indices: np.ndarray) -> np.ndarray:
        return self.tree[np.asarray(indices, dtype=np.int64) + self.size]

    def update(self, indices: np.ndarray, values: np.ndarray) -> None:
        """Set leaves `indices` to `values` (>= 0). With repeated indices the last value wins."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        values = np.broadcast_to(np.asarray(values, dtype=np.float64), indices.shape)
        if indices.size == 0:
            return
        if indices.min() < 0 or indices.max() >= self.capacity:
            raise ValueError(f"indices must lie in [0, {self.capacity}), got range [{indices.min()}, {indices.max()}]")
        if not np.all(np.isfinite(values)) or values.min() < 0:
            raise ValueError("values must be finite and >= 0")
        nodes = indices + self.size
        self.tree[nodes] = values
        for _ in range(self.depth):
            # Repeated parents are fine: each copy is assigned the same sum (cheaper than np.unique per level).
            nodes >>= 1
            self.tree[nodes] = self.tree[2 * nodes] + self.tree[2 * nodes + 1]

    def find(self, targets: np.ndarray) -> np.ndarray:
        """Leaf index whose cumulative-mass interval [cumsum[i-1], cumsum[i]) holds each target."""
        targets = np.array(targets, dtype=np.float64).reshape(-1)
        nodes = np.ones(targets.shape, dtype=np.int64)
        for _ in range(self.depth):
            left = self.tree[2 * nodes]
            # Go right when the target is past the left mass, unless the right subtree is empty (guards rounding at
            # the top end so a zero-mass leaf is never returned).
            go_right = (targets >= left) & (self.tree[2 * nodes + 1] > 0)
            targets -= np.where(go_right, left, 0.0)
            nodes = 2 * nodes + go_right
        return nodes - self.size

    def sample(self, batch_size: int, rng: np.random.Generator) -> np.ndarray:
        """Stratified draw: one leaf from each of `batch_size` equal slices of the total mass."""
        total = self.total
        if total <= 0:
            raise RuntimeError("cannot sample from a sum tree whose total mass is 0")
        segment = total / batch_size
        targets = (np.arange(batch_size) + rng.random(batch_size)) * segment
        return self.find(np.minimum(targets, np.nextafter(total, 0.0)))

    def state_dict(self) -> dict:
        return {"capacity": self.capacity, "tree": self.tree.copy()}

    def load_state_dict(self, state: dict) -> None:
        if int(state["capacity"]) != self.capacity:
            raise ValueError(f"state capacity {state['capacity']} does not match this tree's {self.capacity}")
        self.tree[:] = np.asarray(state["tree"], dtype=np.float64)
