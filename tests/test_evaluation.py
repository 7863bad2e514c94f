"""Evaluation protocol: fixed episode quotas per sub-env, and the random-policy score a run is read against."""

import numpy as np
import pytest

from plastic.envs import make_env
from plastic.training.evaluation import episode_quotas, random_policy_score


def test_episode_quotas_split_the_episodes_up_front():
    assert episode_quotas(100, 10).tolist() == [10] * 10
    assert episode_quotas(7, 3).tolist() == [3, 2, 2]
    assert episode_quotas(2, 10).tolist() == [1, 1]  # never more sub-envs than episodes


def test_random_score_on_atari_is_the_papers_table_7_value():
    assert random_policy_score("atari:Boxing", 18, episodes=100, seed=0) == pytest.approx(0.1)
    assert random_policy_score("atari:Pong", 6, episodes=100, seed=0) == pytest.approx(-20.7)
    assert random_policy_score("atari:Tennis", 18, episodes=100, seed=0) is None  # not one of the 26 games
    assert random_policy_score("dmc:cheetah-run", None, episodes=10, seed=0) is None


def test_random_score_on_minatar_is_the_mean_return_of_uniform_actions():
    env_id, episodes, seed = "minatar:space_invaders", 5, 3
    score = random_policy_score(env_id, 4, episodes=episodes, seed=seed)
    assert score == random_policy_score(env_id, 4, episodes=episodes, seed=seed)  # fixed by the seed
    # The same episodes played by hand: one eval-protocol env, actions from the same generator.
    rng, env, total = np.random.default_rng(seed), make_env(env_id, seed=seed, train=False), 0.0
    for _ in range(episodes):
        env.reset()
        done = False
        while not done:
            _, reward, terminated, truncated, _ = env.step(int(rng.integers(4)))
            total, done = total + reward, terminated or truncated
    assert score == pytest.approx(total / episodes) and score > 0  # invaders are hit even at random
