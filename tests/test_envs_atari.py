"""Specification of the Atari-100k environments (paper Table 5): preprocessing, life loss, seeding, save/restore."""

import pickle

import numpy as np
import pytest

pytest.importorskip("ale_py")

from plastic.envs import ATARI_100K_GAMES, make_env, make_vector_env  # noqa: E402
from plastic.envs.atari import area_resize  # noqa: E402

BREAKOUT_ACTIONS = 4  # NOOP, FIRE, RIGHT, LEFT


def random_actions(count, seed=0, num_actions=BREAKOUT_ACTIONS):
    return np.random.default_rng(seed).integers(num_actions, size=count)


def play(env, actions):
    """Step through `actions`, resetting after every episode end; record everything the env returns."""
    trace = []
    for action in actions:
        observation, reward, terminated, truncated, info = env.step(action)
        trace.append((observation, reward, terminated, truncated, info))
        if terminated or truncated:
            observation, info = env.reset()
            trace.append(("reset", observation, info))
    return trace


def assert_same_trace(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            if isinstance(x, np.ndarray):
                np.testing.assert_array_equal(x, y)
            else:
                assert x == y


def test_the_26_games_of_atari_100k_are_listed():
    assert len(ATARI_100K_GAMES) == 26
    assert {"Pong", "Breakout", "MsPacman", "UpNDown", "KungFuMaster"} <= set(ATARI_100K_GAMES)


def test_observation_is_4_stacked_84x84_grayscale_and_reset_stacks_copies_of_the_first_frame():
    env = make_env("atari:Breakout", seed=0, train=True)
    assert env.frame_shape == (1, 84, 84) and env.frame_stack == 4
    assert env.action_space.n == 4  # minimal action set
    observation, _ = env.reset()
    assert observation.shape == (4, 84, 84) and observation.dtype == np.uint8
    assert env.observation_space.contains(observation)
    for k in range(1, 4):
        np.testing.assert_array_equal(observation[k], observation[0])
    next_observation, *_ = env.step(1)
    np.testing.assert_array_equal(next_observation[:3], observation[1:])  # the stack shifts by one frame


def test_frames_match_ale_py_vector_env_which_uses_opencv_area_resize():
    import ale_py

    vector = ale_py.AtariVectorEnv("pong", 1, noop_max=0, use_fire_reset=False, reward_clipping=False)
    expected = vector.reset(seed=0)[0][0, -1]
    vector.close()
    observation, _ = make_env("atari:Pong", seed=0, train=False, noop_max=0).reset()
    np.testing.assert_array_equal(observation[-1], expected)


def test_area_resize_averages_the_covered_pixels():
    # Rows hold their index: output row 0 covers rows 0, 1 and half of 2 -> (0 + 1 + 0.5 * 2) / 2.5 = 0.8 -> 1;
    # output row 1 covers half of 2, rows 3, 4 -> (1 + 3 + 4) / 2.5 = 3.2 -> 3; output row 83 covers half of 207,
    # rows 208, 209 -> (103.5 + 208 + 209) / 2.5 = 208.2 -> 208. Columns are uniform, so they do not change.
    image = np.repeat(np.arange(210, dtype=np.uint8)[:, None], 160, axis=1)
    resized = area_resize(image)
    assert resized.shape == (84, 84)
    assert resized[0, 0] == 1 and resized[1, 0] == 3 and resized[83, 83] == 208
    np.testing.assert_array_equal(area_resize(np.full((210, 160), 77, np.uint8)), np.full((84, 84), 77))


def test_each_frame_is_the_max_of_the_last_two_raw_frames_with_frame_skip_4_and_raw_rewards():
    from ale_py import ALEInterface, roms

    env = make_env("atari:Breakout", seed=3, train=False, noop_max=0)
    env.reset()
    ale = ALEInterface()
    ale.setFloat("repeat_action_probability", 0.0)
    ale.loadROM(roms.get_rom_path("breakout"))
    ale.reset_game()
    action_set = ale.getMinimalActionSet()
    total_raw = 0.0
    for action in random_actions(120, seed=1):
        observation, reward, terminated, *_ = env.step(action)
        raw_reward = 0.0
        screens = []
        for _ in range(4):
            raw_reward += ale.act(action_set[action])
            screens.append(ale.getScreenGrayscale())
        np.testing.assert_array_equal(observation[-1], area_resize(np.maximum(screens[-2], screens[-1])))
        assert reward == raw_reward
        total_raw += raw_reward
        assert not terminated
    assert total_raw > 0  # this action sequence scores, so reward accounting was exercised


def test_sticky_actions_are_off_by_default_and_on_with_the_option():
    actions = random_actions(100, seed=2)

    def frames(seed, **options):
        env = make_env("atari:Breakout", seed=seed, train=False, noop_max=0, **options)
        env.reset()
        return np.stack([env.step(action)[0][-1] for action in actions])

    # Without sticky actions the emulator is deterministic: the seed changes nothing when no no-ops are played.
    np.testing.assert_array_equal(frames(0), frames(1))
    assert not np.array_equal(frames(0, sticky=0.25), frames(1, sticky=0.25))


def test_noop_starts_are_between_0_and_30_frames_and_reproducible_per_seed():
    env = make_env("atari:Breakout", seed=0, train=False)
    counts = [env.reset(seed=seed)[1]["episode_frame_number"] for seed in range(8)]  # ALE counts no-op frames
    assert all(0 <= count <= 30 for count in counts)
    assert len(set(counts)) > 2  # random, not fixed
    assert counts[:2] == [make_env("atari:Breakout", seed=seed, train=False).reset()[1]["episode_frame_number"]
                          for seed in range(2)]


def test_life_loss_ends_training_episodes_but_the_game_continues_and_returns_sum_over_the_game():
    train_env = make_env("atari:Breakout", seed=7, train=True)
    eval_env = make_env("atari:Breakout", seed=7, train=False)
    train_observation, _ = train_env.reset()
    eval_observation, _ = eval_env.reset()
    np.testing.assert_array_equal(train_observation, eval_observation)
    rewards, life_losses = [], 0
    for step, action in enumerate(random_actions(3000, seed=3), start=1):
        train_out = train_env.step(action)
        eval_out = eval_env.step(action)
        np.testing.assert_array_equal(train_out[0], eval_out[0])  # the same game underneath
        assert train_out[1] == eval_out[1]
        rewards.append(train_out[1])
        lives = eval_out[4]["lives"]
        if eval_out[2]:  # game over: both end the whole game
            assert train_out[2] and lives == 0
            for info in (train_out[4], eval_out[4]):
                assert info["episode"] == {"return": sum(rewards), "length": step}
            break
        if train_out[2]:
            life_losses += 1
            assert "episode" not in train_out[4]
            assert lives == 5 - life_losses and not eval_out[2]  # eval mode plays on
            observation, info = train_env.reset()  # continues the game: same frames, no no-ops
            np.testing.assert_array_equal(observation, train_out[0])
            assert info["episode_frame_number"] == eval_out[4]["episode_frame_number"]
    else:
        pytest.fail("Breakout game did not end within 3000 random steps")
    assert life_losses == 4 and sum(rewards) > 0


def test_time_cap_truncates_with_episode_info():
    env = make_env("atari:Pong", seed=0, train=False, max_episode_steps=30)
    env.reset()
    for step in range(1, 31):
        _, _, terminated, truncated, info = env.step(0)
        assert not terminated
        assert truncated == (step == 30)
    assert info["episode"]["length"] == 30
    assert make_env("atari:Pong", seed=0, train=False).max_episode_steps == 27_000  # 108k frames


def test_gymnasium_conventions_the_emulator_is_unwrapped_ale_and_the_cap_is_spec_max_episode_steps():
    import ale_py
    import gymnasium

    env = gymnasium.wrappers.RecordEpisodeStatistics(make_env("atari:Breakout", seed=0, train=True))
    ale = env.unwrapped.ale
    assert isinstance(ale, ale_py.ALEInterface)
    _, info = env.reset()
    assert ale.lives() == 5  # Breakout's five lives
    start = ale.getEpisodeFrameNumber()
    for _ in range(10):
        _, _, _, _, info = env.step(0)
    assert ale.getEpisodeFrameNumber() == start + 40 == info["episode_frame_number"]  # 10 steps x frame skip 4
    assert env.spec.id == "atari:Breakout"
    assert env.spec.max_episode_steps == 27_000 and env.spec.max_episode_steps * 4 == 108_000  # Atari-100k's cap
    assert make_env("atari:Pong", seed=0, train=False, max_episode_steps=30).spec.max_episode_steps == 30

    remade = gymnasium.make(env.unwrapped.spec)  # the spec's kwargs rebuild the same env
    first = make_env("atari:Breakout", seed=3, train=True)
    observations = [remade.reset(seed=3)[0], first.reset()[0]]
    np.testing.assert_array_equal(*observations)
    actions = random_actions(300, seed=4)
    assert_same_trace(play(remade, actions), play(first, actions))


def test_identical_seeds_give_identical_trajectories():
    actions = random_actions(600, seed=5)
    runs = []
    for _ in range(2):
        env = make_env("atari:Breakout", seed=11, train=True)
        runs.append([("reset", *env.reset())] + play(env, actions))
    assert_same_trace(runs[0], runs[1])


def test_state_restore_continues_exactly_including_no_ops_and_sticky_action_rng():
    actions = random_actions(700, seed=6)
    env = make_env("atari:Breakout", seed=1, train=True, sticky=0.25)  # sticky actions use the emulator's RNG
    env.reset()
    play(env, actions[:200])
    state = pickle.loads(pickle.dumps(env.get_state()))
    expected = play(env, actions[200:])
    assert sum(1 for entry in expected if isinstance(entry[0], str)) >= 3  # crosses life losses ...
    assert any("episode" in entry[-1] for entry in expected)  # ... and a game over, then no-ops at the reset

    restored = make_env("atari:Breakout", seed=999, train=True, sticky=0.25)
    restored.reset()
    play(restored, actions[:50])  # whatever happened before does not matter
    restored.set_state(state)
    assert_same_trace(play(restored, actions[200:]), expected)


def test_vector_env_seeds_sub_env_i_with_seed_plus_i_in_its_subprocess():
    vector = make_vector_env("atari:Breakout", 2, seed=20)  # asynchronous by default
    observations, _ = vector.reset()
    for index in range(2):
        single, _ = make_env("atari:Breakout", seed=20 + index, train=False).reset()
        np.testing.assert_array_equal(observations[index], single)
    vector.close()


def test_unknown_ids_raise_value_error_listing_valid_ids():
    with pytest.raises(ValueError, match="'atari:pong'.*Pong.*UpNDown.*space_invaders"):
        make_env("atari:pong", seed=0, train=True)
    with pytest.raises(ValueError, match="'gym:Pong'.*atari.*minatar"):
        make_env("gym:Pong", seed=0, train=True)
