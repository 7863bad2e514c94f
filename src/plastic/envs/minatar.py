"""MinAtar environments (Young & Tian 2019): 10x10 miniature Atari games, a fast test bed beside Atari-100k.

Not part of the paper's benchmarks; used for quick experiments and tests. The protocol is MinAtar's own:
sticky actions with probability 0.1 and difficulty ramping on (both options), the game's minimal action set, raw
rewards, no frame stacking (the state already shows motion through trail channels). Observations are the game's C
binary channels as `uint8` 0/1 shaped (C, 10, 10), C depending on the game. Each game end (MinAtar has no lives)
gives `terminated=True` and `info["episode"]`. Episodes are truncated after `max_episode_steps` (27,000 by default,
the Atari cap; MinAtar itself has none, and a good agent can play Breakout forever); `None` removes the cap. As in
gymnasium, `env.spec` is an `EnvSpec` whose `max_episode_steps` is that cap and whose `kwargs` rebuild the env.
"""

from __future__ import annotations

import pickle
from typing import Any

import gymnasium
import numpy as np

MINATAR_GAMES = ("asterix", "breakout", "freeway", "seaquest", "space_invaders")
STICKY_ACTION_PROBABILITY = 0.1  # MinAtar's default
MAX_EPISODE_STEPS = 27_000


class MinAtarEnv(gymnasium.Env):
    """One MinAtar game as a gymnasium env with exact `get_state()` / `set_state()`.

    Args:
        game: one of `MINATAR_GAMES`.
        seed: seed of the first `reset()` called without one (MinAtar draws everything from one RandomState).
        train: accepted for a uniform `make_env` signature; MinAtar games have no lives, so it changes nothing.
        sticky: probability of repeating the previous action.
        difficulty_ramping: MinAtar's speed-up of some games over time.
        max_episode_steps: truncate a game after this many steps (None: never).
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        game: str,
        *,
        seed: int | None = None,
        train: bool,
        sticky: float = STICKY_ACTION_PROBABILITY,
        difficulty_ramping: bool = True,
        max_episode_steps: int | None = MAX_EPISODE_STEPS,
    ):
        from minatar import Environment

        if game not in MINATAR_GAMES:
            raise ValueError(f"game={game!r} is not a MinAtar game; valid games: {', '.join(MINATAR_GAMES)}")
        if not 0.0 <= sticky <= 1.0:
            raise ValueError(f"sticky must be a probability in [0, 1], got {sticky}")
        if max_episode_steps is not None and max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1 or None, got {max_episode_steps}")
        self.game = game
        self.train = bool(train)
        self.max_episode_steps = max_episode_steps
        self._game = Environment(game, sticky_action_prob=float(sticky), difficulty_ramping=difficulty_ramping)
        self.spec = gymnasium.envs.registration.EnvSpec(
            id=f"minatar:{game}", entry_point="plastic.envs.minatar:MinAtarEnv", max_episode_steps=max_episode_steps,
            kwargs={"game": game, "train": self.train, "sticky": float(sticky),
                    "difficulty_ramping": bool(difficulty_ramping), "max_episode_steps": max_episode_steps},
        )  # fmt: skip
        self._action_set = list(self._game.minimal_action_set())
        height, width, channels = self._game.state_shape()
        self.frame_shape = (channels, height, width)  # (C, H, W) of one frame
        self.frame_stack = 1
        self.action_space = gymnasium.spaces.Discrete(len(self._action_set))
        self.observation_space = gymnasium.spaces.Box(0, 1, self.frame_shape, dtype=np.uint8)
        self._pending_seed = seed
        self._episode_return = 0.0
        self._episode_length = 0
        self._needs_reset = True

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is None:
            seed, self._pending_seed = self._pending_seed, None
        else:
            self._pending_seed = None
        if seed is not None:
            # One RandomState drives sticky actions and the game (Environment.seed shares it with the game).
            self._game.seed(int(np.random.SeedSequence(seed).generate_state(1)[0]))
        self._game.reset()
        self._episode_return = 0.0
        self._episode_length = 0
        self._needs_reset = False
        return self._observation(), {}

    def step(self, action):
        if self._needs_reset:
            raise RuntimeError("MinAtarEnv.step() called before reset() or after the episode ended; call reset()")
        reward, terminated = self._game.act(self._action_set[int(action)])
        reward = float(reward)
        terminated = bool(terminated)
        self._episode_return += reward
        self._episode_length += 1
        truncated = (
            not terminated and self.max_episode_steps is not None and self._episode_length >= self.max_episode_steps
        )
        info: dict[str, Any] = {}
        if terminated or truncated:
            info["episode"] = {"return": self._episode_return, "length": self._episode_length}
        self._needs_reset = terminated or truncated
        return self._observation(), reward, terminated, truncated, info

    def _observation(self) -> np.ndarray:
        return np.ascontiguousarray(self._game.state().transpose(2, 0, 1), dtype=np.uint8)

    def get_state(self) -> dict:
        """The game object (positions, timers, its RandomState) pickled, plus this wrapper's counters."""
        return {
            "game": self.game,
            "environment": pickle.dumps(self._game),
            "pending_seed": self._pending_seed,
            "episode_return": self._episode_return,
            "episode_length": self._episode_length,
            "needs_reset": self._needs_reset,
        }

    def set_state(self, state: dict) -> None:
        if state["game"] != self.game:
            raise ValueError(f"state is from game {state['game']!r}, this env plays {self.game!r}")
        self._game = pickle.loads(state["environment"])
        self._pending_seed = state["pending_seed"]
        self._episode_return = state["episode_return"]
        self._episode_length = state["episode_length"]
        self._needs_reset = state["needs_reset"]
