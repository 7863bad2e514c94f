"""Specification of the MinAtar environments: binary channel observations, seeding, episode info, save/restore."""

import pickle

import numpy as np
import pytest

pytest.importorskip("minatar")

from plastic.envs import MINATAR_GAMES, make_env, make_vector_env  # noqa: E402

# Channels and minimal action-set sizes of each game (MinAtar's README and its environments' source).
CHANNELS = {"asterix": 4, "breakout": 4, "freeway": 7, "seaquest": 10, "space_invaders": 6}
ACTIONS = {"asterix": 5, "breakout": 3, "freeway": 3, "seaquest": 6, "space_invaders": 4}


def play(env, actions):
    """Step through `actions`, resetting after each episode end; record everything the env returns."""
    trace = []
    for action in actions:
        observation, reward, terminated, truncated, info = env.step(action)
        trace.append((observation.tolist(), reward, terminated, truncated, info))
        if terminated or truncated:
            trace.append(("reset", env.reset()[0].tolist()))
    return trace


def random_actions(game, count, seed=0):
    return np.random.default_rng(seed).integers(ACTIONS[game], size=count)


@pytest.mark.parametrize("game", MINATAR_GAMES)
def test_observation_is_binary_channels_first_10x10_with_the_minimal_action_set(game):
    env = make_env(f"minatar:{game}", seed=0, train=True)
    assert env.frame_shape == (CHANNELS[game], 10, 10) and env.frame_stack == 1
    assert env.action_space.n == ACTIONS[game]
    observation, _ = env.reset()
    for action in random_actions(game, 20):
        assert observation.shape == (CHANNELS[game], 10, 10) and observation.dtype == np.uint8
        assert set(np.unique(observation)) <= {0, 1} and observation.any()
        observation, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            observation, _ = env.reset()


@pytest.mark.parametrize("game", ["breakout", "space_invaders"])
def test_identical_seeds_give_identical_trajectories_and_different_seeds_differ(game):
    actions = random_actions(game, 400, seed=1)
    runs = {}
    for seed in (3, 3, 4):
        env = make_env(f"minatar:{game}", seed=seed, train=True)
        runs.setdefault(seed, []).append([env.reset()[0].tolist()] + play(env, actions))
    assert runs[3][0] == runs[3][1]
    assert runs[3][0] != runs[4][0]


def test_episode_info_carries_the_raw_return_and_length_of_each_game():
    env = make_env("minatar:breakout", seed=0, train=False)
    env.reset()
    episodes, rewards = 0, []
    for action in random_actions("breakout", 2000, seed=2):
        _, reward, terminated, truncated, info = env.step(action)
        rewards.append(reward)
        assert ("episode" in info) == (terminated or truncated)
        if terminated or truncated:
            assert info["episode"] == {"return": sum(rewards), "length": len(rewards)}
            episodes += 1
            rewards = []
            env.reset()
    assert episodes >= 10


def test_time_cap_truncates():
    env = make_env("minatar:freeway", seed=0, train=False, max_episode_steps=25)
    env.reset()
    outcomes = [env.step(0)[2:4] for _ in range(25)]
    assert outcomes == [(False, False)] * 24 + [(False, True)]
    assert env.spec.max_episode_steps == 25  # where gymnasium users look for the cap
    assert make_env("minatar:freeway", seed=0, train=False).spec.max_episode_steps == 27_000
    assert make_env("minatar:freeway", seed=0, train=False, max_episode_steps=None).spec.max_episode_steps is None


@pytest.mark.parametrize("game", MINATAR_GAMES)
def test_state_restore_continues_exactly_including_sticky_actions_and_spawns(game):
    actions = random_actions(game, 600, seed=3)
    env = make_env(f"minatar:{game}", seed=5, train=True)
    env.reset()
    play(env, actions[:100])
    state = pickle.loads(pickle.dumps(env.get_state()))
    expected = play(env, actions[100:])

    restored = make_env(f"minatar:{game}", seed=123, train=True)
    restored.reset()
    play(restored, actions[:30])
    restored.set_state(state)
    assert play(restored, actions[100:]) == expected


def test_vector_env_seeds_sub_env_i_with_seed_plus_i_and_autoresets_on_the_next_step():
    vector = make_vector_env("minatar:breakout", 3, seed=40, asynchronous=False)
    observations, _ = vector.reset()
    singles = [make_env("minatar:breakout", seed=40 + index, train=False) for index in range(3)]
    for index, single in enumerate(singles):
        np.testing.assert_array_equal(observations[index], single.reset()[0])
    ended = np.zeros(3, dtype=bool)
    for action in random_actions("breakout", 300, seed=4):
        observations, rewards, terminated, truncated, infos = vector.step(np.full(3, action))
        for index, single in enumerate(singles):
            if ended[index]:  # NEXT_STEP autoreset: this step reset the sub-env
                expected_observation, _ = single.reset()
                expected = (expected_observation, 0.0, False, False)
            else:
                expected = single.step(action)[:4]
            np.testing.assert_array_equal(observations[index], expected[0])
            assert (rewards[index], terminated[index], truncated[index]) == tuple(expected[1:])
        ended = terminated | truncated
        if ended.any():
            assert infos["_episode"].tolist() == ended.tolist()
    vector.close()


def test_unknown_game_raises_value_error_listing_valid_games():
    with pytest.raises(ValueError, match="'minatar:pong'.*asterix, breakout, freeway, seaquest, space_invaders"):
        make_env("minatar:pong", seed=0, train=True)
