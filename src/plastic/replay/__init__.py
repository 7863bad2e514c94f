"""Replay memory: frame-deduplicated uint8 storage, vectorised n-step returns, prioritized replay (sum tree)."""

from plastic.replay.buffer import ReplayBatch, ReplayBuffer
from plastic.replay.sum_tree import SumTree

__all__ = ["ReplayBatch", "ReplayBuffer", "SumTree"]
