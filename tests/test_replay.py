"""Replay buffer: n-step targets, exact frame-stack reconstruction, prioritized sampling, determinism, checkpoints."""

import io
import pickle

import numpy as np
import pytest
import torch

from plastic.replay import ReplayBuffer


def scalar_frame(value):
    return np.full((1, 1, 1), value, dtype=np.uint8)


def run_episode(buffer, rewards, end="terminated", first_value=0):
    """Stack-1 episode whose state s_t is the frame of value first_value + t; ends as `end` after the last reward."""
    buffer.start_episode(scalar_frame(first_value))
    for t, reward in enumerate(rewards):
        last = t == len(rewards) - 1
        terminated, truncated = last and end == "terminated", last and end == "truncated"
        buffer.add(t, reward, scalar_frame(first_value + t + 1), terminated, truncated)


def everything(buffer):
    return buffer.gather(buffer.sampleable_indices())


def test_n_step_targets_with_termination_inside_the_window():
    buffer = ReplayBuffer(16, (1, 1, 1), 1, n_step=3, gamma=0.5)
    run_episode(buffer, [1.0, 2.0, 3.0, 4.0, 5.0], end="terminated")
    batch = everything(buffer)
    # t=0: 1 + .5*2 + .25*3; t=2: 3 + .5*4 + .25*5 (window ends exactly at the terminal step, so discount 0);
    # t=3: 4 + .5*5 (m=2); t=4: 5 (m=1).
    np.testing.assert_allclose(batch.reward, [2.75, 4.5, 6.25, 6.5, 5.0])
    np.testing.assert_allclose(batch.discount, [0.125, 0.125, 0.0, 0.0, 0.0])
    assert batch.next_obs.reshape(-1).tolist() == [3, 4, 5, 5, 5]
    assert batch.obs.reshape(-1).tolist() == [0, 1, 2, 3, 4]
    assert batch.action.tolist() == [0, 1, 2, 3, 4]
    assert batch.reward.dtype == np.float32 and batch.discount.dtype == np.float32


def test_truncation_inside_the_window_bootstraps_from_the_last_observation():
    buffer = ReplayBuffer(16, (1, 1, 1), 1, n_step=3, gamma=0.5)
    run_episode(buffer, [1.0, 2.0, 3.0, 4.0, 5.0], end="truncated")
    batch = everything(buffer)
    np.testing.assert_allclose(batch.reward, [2.75, 4.5, 6.25, 6.5, 5.0])
    np.testing.assert_allclose(batch.discount, [0.125, 0.125, 0.125, 0.25, 0.5])
    assert batch.next_obs.reshape(-1).tolist() == [3, 4, 5, 5, 5]


def test_open_episode_only_exposes_complete_windows_and_a_new_episode_truncates_it():
    buffer = ReplayBuffer(16, (1, 1, 1), 1, n_step=3, gamma=0.5)
    buffer.start_episode(scalar_frame(0))
    for t in range(4):
        buffer.add(t, 1.0, scalar_frame(t + 1), False, False)
    assert len(buffer) == 2  # t=0, 1 have their 3 steps; t=2, 3 wait
    run_episode(buffer, [7.0], end="terminated", first_value=100)  # starting over ends the open one as truncated
    assert len(buffer) == 5
    batch = everything(buffer)
    np.testing.assert_allclose(batch.reward, [1.75, 1.75, 1.5, 1.0, 7.0])
    np.testing.assert_allclose(batch.discount, [0.125, 0.125, 0.25, 0.5, 0.0])
    assert batch.next_obs.reshape(-1).tolist() == [3, 4, 4, 4, 101]


def test_n_step_window_across_the_end_of_the_ring():
    buffer = ReplayBuffer(5, (1, 1, 1), 1, n_step=3, gamma=0.5)
    buffer.start_episode(scalar_frame(0))
    for t in range(12):
        buffer.add(t, float(t), scalar_frame(t + 1), False, False)
    # Ids 7..11 are stored (slots 2, 3, 4, 0, 1); ids 7, 8, 9 have complete windows.
    assert buffer.sampleable_indices().tolist() == [2, 3, 4]
    batch = everything(buffer)
    np.testing.assert_allclose(batch.reward, [7 + 4 + 2.25, 8 + 4.5 + 2.5, 9 + 5 + 2.75])  # id 8: slots 3, 4, 0
    np.testing.assert_allclose(batch.discount, [0.125] * 3)
    assert batch.obs.reshape(-1).tolist() == [7, 8, 9]
    assert batch.next_obs.reshape(-1).tolist() == [10, 11, 12]
    assert batch.action.tolist() == [7, 8, 9]


def reference_transitions(episodes, n_step, gamma):
    """Brute-force n-step transitions from recorded episodes: (obs, action, return, next_obs, discount)."""
    out = []
    for observations, actions, rewards, terminated in episodes:
        steps = len(rewards)
        for t in range(steps):
            m = min(n_step, steps - t)
            ret = sum(gamma**i * rewards[t + i] for i in range(m))
            discount = 0.0 if (terminated and t + m == steps) else gamma**m
            out.append((observations[t], actions[t], ret, observations[t + m], discount))
    return out


def fill_random(buffer, num_steps, episode_lengths, seed, end_open=True):
    """Random frames, distinct start stacks, random episode ends; returns the episodes as passed in."""
    rng = np.random.default_rng(seed)
    k, (c, h, w) = buffer.frame_stack, buffer.frame_shape
    episodes, steps = [], 0
    while steps < num_steps:
        length = int(rng.integers(*episode_lengths))
        obs = rng.integers(0, 256, (k * c, h, w), dtype=np.uint8)  # k distinct frames, as after a life loss
        buffer.start_episode(obs)
        observations, actions, rewards = [obs], [], []
        terminated = bool(rng.random() < 0.5)
        for t in range(length):
            next_obs = np.concatenate([obs[c:], rng.integers(0, 256, (c, h, w), dtype=np.uint8)])
            action = rng.normal(size=buffer.action_shape).astype(buffer.action_dtype)
            reward = float(rng.normal())
            last = t == length - 1 and not (end_open and steps + t + 1 >= num_steps)
            buffer.add(action, reward, next_obs, last and terminated, last and not terminated)
            observations.append(next_obs)
            actions.append(action)
            rewards.append(reward)
            obs = next_obs
        steps += length
        closed = not (end_open and steps >= num_steps)
        episodes.append((observations, actions, rewards, terminated and closed))
    return episodes


@pytest.mark.parametrize(
    "capacity, frame_stack, n_step, episode_lengths",
    [(30, 4, 3, (1, 8)), (50, 4, 10, (20, 60)), (25, 3, 1, (1, 5)), (40, 1, 5, (1, 12))],
)
def test_every_sampleable_transition_is_rebuilt_exactly_as_passed_in(capacity, frame_stack, n_step, episode_lengths):
    buffer = ReplayBuffer(capacity, (2, 3, 4), frame_stack, action_shape=(2,), action_dtype=np.float32,
                          n_step=n_step, gamma=0.9)  # fmt: skip
    episodes = fill_random(buffer, 5 * capacity, episode_lengths, seed=capacity)  # wraps the ring several times
    # The last episode is still open: its transitions without a full window are not sampleable yet.
    *closed, last = episodes
    open_steps = len(last[2])
    expected = reference_transitions(closed, n_step, 0.9)
    expected += reference_transitions([last], n_step, 0.9)[: max(0, open_steps - n_step + 1)]
    assert 0 < len(buffer) <= capacity
    batch = everything(buffer)
    for i, (obs, action, ret, next_obs, discount) in enumerate(expected[-len(buffer) :]):
        np.testing.assert_array_equal(batch.obs[i], obs)
        np.testing.assert_array_equal(batch.next_obs[i], next_obs)
        np.testing.assert_array_equal(batch.action[i], action)
        assert batch.reward[i] == pytest.approx(ret, rel=1e-5, abs=1e-5)
        assert batch.discount[i] == pytest.approx(discount, rel=1e-6)


def test_all_capacity_transitions_stay_sampleable_with_long_episodes():
    buffer = ReplayBuffer(50, (1, 2, 2), 4, n_step=3)
    fill_random(buffer, 300, (32, 40), seed=0)
    assert len(buffer) >= 50 - 2  # only the open episode's last n - 1 steps wait for their window


def test_frames_are_stored_once():
    buffer = ReplayBuffer(100_000, (1, 84, 84), 4, n_step=10, prioritized=True)
    frame_bytes = 84 * 84
    assert buffer.frame_capacity * frame_bytes == buffer._frames.nbytes
    assert buffer.frame_capacity < 1.1 * 100_000
    assert buffer.nbytes < 2**30  # 100k Atari transitions well under 1 GiB (two stacks each would be 5.6 GB)


def prioritized_buffer(priorities, alpha=0.5, seed=0):
    buffer = ReplayBuffer(8, (1, 1, 1), 1, prioritized=True, priority_exponent=alpha, seed=seed)
    run_episode(buffer, [0.0] * len(priorities))
    buffer.update_priorities(buffer.sampleable_indices(), priorities)
    return buffer


def test_prioritized_sampling_frequencies_follow_p_to_the_alpha():
    buffer = prioritized_buffer([1.0, 4.0, 9.0, 16.0])  # p^0.5 = 1, 2, 3, 4 -> P = 0.1, 0.2, 0.3, 0.4
    draws = np.concatenate([buffer.sample(4).indices for _ in range(5000)])
    frequencies = np.bincount(draws, minlength=4) / draws.size
    np.testing.assert_allclose(frequencies, [0.1, 0.2, 0.3, 0.4], atol=0.01)
    uniform = np.concatenate([buffer.sample_uniform(4).indices for _ in range(5000)])
    np.testing.assert_allclose(np.bincount(uniform, minlength=4) / uniform.size, [0.25] * 4, atol=0.015)


def test_importance_weights_equal_the_formula():
    buffer = prioritized_buffer([1.0, 4.0, 9.0, 16.0])
    probability = np.array([0.1, 0.2, 0.3, 0.4])
    for beta in (0.4, 1.0):
        batch = buffer.sample(4, importance_exponent=beta)
        raw = (4 * probability[batch.indices]) ** -beta
        np.testing.assert_allclose(batch.weights, raw / raw.max(), rtol=1e-6)
    batch = buffer.sample_uniform(4)
    np.testing.assert_array_equal(batch.weights, np.ones(4, dtype=np.float32))
    # A batch holding the least likely item gives it weight 1 and (0.4 / 1.6)^0.4 to the most likely one.
    buffer.update_priorities([0, 1, 2, 3], [1.0, 1.0, 1.0, 9.0])  # p^alpha 1, 1, 1, 3 -> P = 1/6, 1/6, 1/6, 1/2
    batch = buffer.sample(2, importance_exponent=1.0)  # segments of mass 3: one of 0-2, then 3
    assert batch.indices[1] == 3
    np.testing.assert_allclose(batch.weights, [1.0, 1 / 3], rtol=1e-6)


def test_new_transitions_enter_with_the_largest_priority_seen():
    buffer = ReplayBuffer(8, (1, 1, 1), 1, prioritized=True, priority_exponent=0.5)
    run_episode(buffer, [0.0, 0.0])
    np.testing.assert_array_equal(buffer.sum_tree.get([0, 1]), [1.0, 1.0])  # initial max priority 1
    buffer.update_priorities([0, 1], [9.0, 0.25])
    run_episode(buffer, [0.0])
    np.testing.assert_allclose(buffer.sum_tree.get([0, 1, 2]), [3.0, 0.5, 3.0])  # 9^0.5 for the new one


def test_a_zero_td_error_leaves_the_transition_sampleable():
    from plastic.replay.buffer import PRIORITY_FLOOR

    assert PRIORITY_FLOOR == 1e-10  # Dopamine's Rainbow: priority sqrt(loss + 1e-10)
    buffer = prioritized_buffer([0.0, 0.0, 0.0, 4.0])
    np.testing.assert_allclose(buffer.sum_tree.get([0, 1, 2, 3]), [1e-5, 1e-5, 1e-5, 2.0], rtol=1e-9)  # (p + 1e-10)^0.5
    buffer.update_priorities([3], [0.0])  # every priority 0: without the floor the tree would have no mass at all
    draws = np.concatenate([buffer.sample(4).indices for _ in range(200)])
    assert set(draws.tolist()) == {0, 1, 2, 3}  # all equally likely again
    np.testing.assert_allclose(buffer.sample(4, importance_exponent=1.0).weights, np.ones(4), rtol=1e-6)


def test_overwritten_transitions_lose_their_priority():
    buffer = ReplayBuffer(4, (1, 1, 1), 1, n_step=2, prioritized=True)
    run_episode(buffer, [0.0] * 6)  # ids 2..5 in slots 2, 3, 0, 1
    assert len(buffer) == 4
    assert buffer.sum_tree.total == pytest.approx(4.0)
    buffer.update_priorities([0, 1], [4.0, 4.0])
    buffer.start_episode(scalar_frame(0))
    buffer.add(0, 0.0, scalar_frame(1), False, False)  # overwrites slot 2; not sampleable until its window completes
    assert len(buffer) == 3
    np.testing.assert_allclose(buffer.sum_tree.get([0, 1, 2, 3]), [2.0, 2.0, 0.0, 1.0])


@pytest.mark.parametrize("episode_lengths", [(1, 6), (20, 50)])
def test_priority_mass_lies_exactly_on_the_sampleable_transitions(episode_lengths):
    buffer = ReplayBuffer(30, (1, 2, 2), 4, n_step=3, prioritized=True, seed=0)
    rng = np.random.default_rng(0)
    for chunk in range(8):  # adds between reads wrap the ring, overwrite slots and drop transitions with dead frames
        fill_random(buffer, 17, episode_lengths, seed=chunk)
        batch = buffer.sample(4)
        buffer.update_priorities(batch.indices, rng.random(4) + 0.5)
        mass = buffer.sum_tree.get(np.arange(30))
        assert set(np.flatnonzero(mass)) == set(buffer.sampleable_indices())
        assert buffer.sum_tree.total == pytest.approx(mass.sum())


def test_same_seed_gives_identical_samples():
    def samples(seed):
        buffer = ReplayBuffer(40, (1, 2, 2), 2, n_step=3, prioritized=True, seed=seed)
        fill_random(buffer, 100, (5, 15), seed=1)
        out = []
        for _ in range(5):
            batch = buffer.sample(8)
            buffer.update_priorities(batch.indices, np.abs(batch.reward) + 0.1)
            out.append(batch.indices)
        return np.concatenate(out)

    np.testing.assert_array_equal(samples(3), samples(3))
    assert not np.array_equal(samples(3), samples(4))


@pytest.mark.parametrize("serialise", ["pickle", "torch"])
@pytest.mark.parametrize("prioritized", [False, True])
def test_state_dict_round_trip_continues_exactly(serialise, prioritized):
    def make():
        return ReplayBuffer(30, (1, 2, 2), 4, n_step=3, prioritized=prioritized, seed=5)

    def continue_run(buffer, seed):
        fill_random(buffer, 40, (3, 9), seed=seed)
        out = []
        for _ in range(4):
            batch = buffer.sample(6, importance_exponent=0.7)
            if prioritized:
                buffer.update_priorities(batch.indices, np.abs(batch.reward) + 0.01)
            out.append(batch)
        return out

    original = make()
    continue_run(original, seed=0)
    if serialise == "pickle":
        state = pickle.loads(pickle.dumps(original.state_dict()))
    else:
        stream = io.BytesIO()
        torch.save(original.state_dict(), stream)
        stream.seek(0)
        state = torch.load(stream)  # default weights_only=True must accept it
    restored = make()
    restored.load_state_dict(state)
    for a, b in zip(continue_run(original, seed=1), continue_run(restored, seed=1)):
        for field in ("obs", "action", "reward", "next_obs", "discount", "indices", "weights"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_load_state_dict_rejects_a_different_configuration():
    state = ReplayBuffer(30, (1, 2, 2), 4).state_dict()
    with pytest.raises(ValueError, match="frame_stack"):
        ReplayBuffer(30, (1, 2, 2), 3).load_state_dict(state)


def test_continuous_actions_round_trip():
    buffer = ReplayBuffer(10, (3, 4, 4), 3, action_shape=(6,), action_dtype=np.float32)
    actions = np.random.default_rng(0).uniform(-1, 1, (5, 6)).astype(np.float32)
    obs = np.zeros((9, 4, 4), dtype=np.uint8)
    buffer.start_episode(obs)
    for action in actions:
        buffer.add(action, 0.0, obs, False, False)
    buffer.add(actions[0], 0.0, obs, True, False)
    batch = everything(buffer)
    assert batch.action.dtype == np.float32 and batch.action.shape == (6, 6)
    np.testing.assert_array_equal(batch.action[:5], actions)


def test_bad_arguments_raise_value_errors_naming_them():
    for kwargs, name in [
        (dict(capacity=0), "capacity"),
        (dict(n_step=0), "n_step"),
        (dict(gamma=1.5), "gamma"),
        (dict(gamma=-0.1), "gamma"),
    ]:
        with pytest.raises(ValueError, match=name):
            ReplayBuffer(**{"capacity": 10, "frame_shape": (1, 2, 2), "frame_stack": 2, **kwargs})
    buffer = ReplayBuffer(10, (1, 2, 2), 2, prioritized=True)
    with pytest.raises(ValueError, match="obs"):
        buffer.start_episode(np.zeros((2, 2, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="obs"):
        buffer.start_episode(np.zeros((1, 2, 2), dtype=np.uint8))
    with pytest.raises(RuntimeError, match="start_episode"):
        buffer.add(0, 0.0, np.zeros((2, 2, 2), dtype=np.uint8), False, False)
    buffer.start_episode(np.arange(8, dtype=np.uint8).reshape(2, 2, 2))
    with pytest.raises(ValueError, match="next_obs"):
        buffer.add(0, 0.0, np.zeros((2, 2, 2), dtype=np.uint8), False, False)  # not the previous stack shifted
    with pytest.raises(ValueError, match="action"):
        buffer.add([0, 1], 0.0, np.arange(4, 12, dtype=np.uint8).reshape(2, 2, 2), False, False)
    buffer.add(0, 0.0, np.arange(4, 12, dtype=np.uint8).reshape(2, 2, 2), True, False)
    with pytest.raises(ValueError, match="batch_size"):
        buffer.sample(2)
    with pytest.raises(ValueError, match="priorities"):
        buffer.update_priorities([0], [-1.0])
