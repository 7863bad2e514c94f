"""Evaluation on a vector of envs (paper §4.1: 100 episodes at the end of training; DMC: 10).

Episodes run side by side on `num_envs` sub-envs. Each sub-env is given a fixed quota of episodes up front
(episodes // num_envs, plus one for the first episodes % num_envs), and finishes its quota before it is ignored:
keeping the first N episodes to finish instead would favour short episodes and bias the score.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def episode_quotas(episodes: int, num_envs: int) -> np.ndarray:
    num_envs = min(num_envs, episodes)
    quotas = np.full(num_envs, episodes // num_envs)
    quotas[: episodes % num_envs] += 1
    return quotas


def evaluate(policy: Callable[[np.ndarray], np.ndarray], env_id: str, *, episodes: int, num_envs: int,
             seed: int, env_options: dict | None = None) -> list[float]:
    """Raw returns of `episodes` whole episodes, in sub-env order. `policy` maps a batch of observations to actions."""
    from plastic.envs import make_vector_env

    quotas = episode_quotas(episodes, num_envs)
    envs = make_vector_env(env_id, len(quotas), seed=seed, train=False, **(env_options or {}))
    returns: list[list[float]] = [[] for _ in quotas]
    try:
        obs, _ = envs.reset(seed=seed)
        while any(len(r) < q for r, q in zip(returns, quotas)):
            obs, _, _, _, infos = envs.step(policy(obs))
            if "episode" in infos:
                finished = np.flatnonzero(infos["_episode"])
                for index in finished:
                    if len(returns[index]) < quotas[index]:
                        returns[index].append(float(infos["episode"]["return"][index]))
    finally:
        envs.close()
    return [value for per_env in returns for value in per_env]


def random_policy_score(env_id: str, num_actions: int | None, *, episodes: int, seed: int,
                        env_options: dict | None = None) -> float | None:
    """The score a uniformly random policy gets, to read a trained agent's score against, as the env's domain says
    (`Domain.random_score`): on the 26 Atari-100k games the published random score (paper Table 7; None for other
    games); on MinAtar the mean over `episodes` whole episodes played here with uniform random actions, on one
    evaluation-protocol env in this process (a second or two: MinAtar steps take microseconds); None on DMC."""
    from plastic.envs.domains import domain_of

    source = domain_of(env_id).random_score
    if source == "reference":
        from plastic.report.reference import atari_game, atari_reference_scores

        try:
            return float(atari_reference_scores()[atari_game(env_id)][0])
        except ValueError:
            return None
    if source != "played" or num_actions is None:
        return None
    from plastic.envs import make_env

    rng = np.random.default_rng(seed)
    env = make_env(env_id, seed=seed, train=False, **(env_options or {}))
    total = 0.0
    try:
        for _ in range(episodes):
            env.reset()
            while True:
                _, reward, terminated, truncated, _ = env.step(int(rng.integers(num_actions)))
                total += float(reward)
                if terminated or truncated:
                    break
    finally:
        env.close()
    return total / episodes
