"""Sum tree: totals and prefix-sum search equal a brute-force cumsum + searchsorted; stratified sampling."""

import numpy as np
import pytest

from plastic.replay import SumTree


def random_tree(capacity, seed, zero_fraction=0.3):
    rng = np.random.default_rng(seed)
    values = rng.random(capacity) * 10
    values[rng.random(capacity) < zero_fraction] = 0.0
    tree = SumTree(capacity)
    tree.update(np.arange(capacity), values)
    return tree, values


@pytest.mark.parametrize("capacity", [1, 2, 7, 64, 1000])
def test_total_and_leaves_equal_the_values(capacity):
    tree, values = random_tree(capacity, seed=capacity, zero_fraction=0.0)
    assert tree.total == pytest.approx(values.sum(), rel=1e-12)
    np.testing.assert_array_equal(tree.get(np.arange(capacity)), values)


@pytest.mark.parametrize("capacity", [5, 100, 1000])
def test_find_matches_cumsum_searchsorted(capacity):
    tree, values = random_tree(capacity, seed=1)
    targets = np.random.default_rng(2).random(5000) * values.sum()
    expected = np.searchsorted(np.cumsum(values), targets, side="right")
    np.testing.assert_array_equal(tree.find(targets), expected)
    assert np.all(values[tree.find(targets)] > 0)


def test_find_at_the_top_end_never_returns_an_empty_leaf():
    tree = SumTree(8)
    tree.update(np.arange(4), [1.0, 2.0, 3.0, 0.0])  # leaves 3..7 empty
    assert tree.find([0.0, 0.999, 1.0, 3.0, 5.999, 6.0, 100.0]).tolist() == [0, 0, 1, 2, 2, 2, 2]


def test_vectorised_update_keeps_sums_consistent_after_many_partial_updates():
    tree, values = random_tree(300, seed=3)
    rng = np.random.default_rng(4)
    for _ in range(50):
        indices = rng.integers(0, 300, size=32)
        new = rng.random(32)
        tree.update(indices, new)
        values[indices] = new  # numpy: the last of repeated indices wins, as in the tree
    assert tree.total == pytest.approx(values.sum(), rel=1e-12)
    # Every inner node equals the sum of its children.
    inner = np.arange(1, tree.size)
    np.testing.assert_allclose(tree.tree[inner], tree.tree[2 * inner] + tree.tree[2 * inner + 1], rtol=1e-12)


def test_stratified_sample_draws_one_leaf_from_each_segment_of_the_mass():
    tree = SumTree(4)
    tree.update(np.arange(4), [1.0, 1.0, 1.0, 1.0])
    rng = np.random.default_rng(0)
    for _ in range(20):
        assert tree.sample(4, rng).tolist() == [0, 1, 2, 3]  # segment i covers exactly leaf i's mass
    tree.update([0], [3.0])  # masses 3, 1, 1, 1; segments of 2: [0, 2) -> leaf 0, [2, 4) -> leaf 0 or 1
    draws = np.stack([tree.sample(3, rng) for _ in range(200)])
    assert np.all(draws[:, 0] == 0)
    assert set(draws[:, 1]) == {0, 1}
    assert set(draws[:, 2]) == {2, 3}


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="capacity"):
        SumTree(0)
    tree = SumTree(4)
    with pytest.raises(ValueError, match="values"):
        tree.update([0], [-1.0])
    with pytest.raises(ValueError, match="indices"):
        tree.update([4], [1.0])
    with pytest.raises(RuntimeError, match="total mass is 0"):
        tree.sample(2, np.random.default_rng(0))
