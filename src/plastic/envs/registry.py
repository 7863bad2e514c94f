"""Environment ids -> environments: `make_env` for one env (training), `make_vector_env` for evaluation.

An id is `<domain>:<game>`: `atari:Pong` (CamelCase, as in gymnasium's `ALE/Pong-v5`), `minatar:breakout` or
`dmc:cheetah-run`. The domains and what depends on them are the table in `domains.py`; each one registers a factory
in `ENV_FACTORIES` here, and its valid games in `VALID_GAMES` (DMC tasks are checked against dm_control's suite).

Every env made here has `frame_shape` (C, H, W of one frame), `frame_stack` (frames per observation), and exact
`get_state()` / `set_state(state)`; observations are `uint8` shaped (frame_stack * C, H, W).
"""

from __future__ import annotations

from typing import Any, Callable

import gymnasium

from plastic.envs.atari import ATARI_100K_GAMES, all_atari_games
from plastic.envs.minatar import MINATAR_GAMES


def _make_atari(game: str, *, seed: int | None, train: bool, **options: Any) -> gymnasium.Env:
    from plastic.envs.atari import AtariEnv

    return AtariEnv(game, seed=seed, train=train, **options)


def _make_minatar(game: str, *, seed: int | None, train: bool, **options: Any) -> gymnasium.Env:
    from plastic.envs.minatar import MinAtarEnv

    return MinAtarEnv(game, seed=seed, train=train, **options)


def _make_dmc(task: str, *, seed: int | None, train: bool, **options: Any) -> gymnasium.Env:
    try:
        from plastic.envs.dmc import make_dmc_env
    except ImportError as error:
        raise ValueError(f"dmc:{task} needs DeepMind Control: pip install 'plastic-rl[dmc]' ({error})") from None
    return make_dmc_env(task, seed=seed, train=train, **options)


# Domain prefix -> factory(game, *, seed, train, **options): one per row of `domains.DOMAINS`.
ENV_FACTORIES: dict[str, Callable[..., gymnasium.Env]] = {
    "atari": _make_atari,
    "minatar": _make_minatar,
    "dmc": _make_dmc,  # the task name is checked against dm_control.suite by make_dmc_env
}

def _check_dmc_task(env_id: str, task: str) -> None:
    try:
        from plastic.envs.dmc import parse_task
    except ImportError as error:
        raise ValueError(f"{env_id} needs DeepMind Control: pip install 'plastic-rl[dmc]' ({error})") from None
    try:
        parse_task(task)
    except ValueError as error:
        raise ValueError(f"unknown env id {env_id!r}: {error}") from None


# Domain prefix -> () -> the games it accepts. The Atari-100k 26 are the benchmark; any other ALE game also works.
VALID_GAMES: dict[str, Callable[[], tuple[str, ...]]] = {
    "atari": all_atari_games,
    "minatar": lambda: MINATAR_GAMES,
}


def _example_ids() -> str:
    return (
        f"atari:<Game> with the Atari-100k games {', '.join(ATARI_100K_GAMES)} (or any other ALE game); "
        f"minatar:<game> with {', '.join(MINATAR_GAMES)}"
        + "".join(f"; {domain}:<...>" for domain in ENV_FACTORIES if domain not in ("atari", "minatar"))
    )


def parse_env_id(env_id: str) -> tuple[str, str]:
    """`"atari:Pong"` -> `("atari", "Pong")`; an unknown domain or game raises ValueError listing the valid ids."""
    domain, separator, game = str(env_id).partition(":")
    if not separator or domain not in ENV_FACTORIES:
        raise ValueError(
            f"unknown env id {env_id!r}: expected <domain>:<game> with domain one of {', '.join(ENV_FACTORIES)}; "
            f"valid ids: {_example_ids()}"
        )
    if domain == "dmc":
        _check_dmc_task(env_id, game)
    valid = VALID_GAMES[domain]() if domain in VALID_GAMES else None
    if valid is not None and game not in valid:
        raise ValueError(f"unknown env id {env_id!r}: valid ids are {_example_ids()}")
    return domain, game


def make_env(env_id: str, *, seed: int | None, train: bool, **options: Any) -> gymnasium.Env:
    """One environment with the paper's protocol for its domain.

    `seed` seeds the first `reset()` called without a seed; identical seeds and actions give identical
    trajectories. `train=True` makes Atari life losses terminal (the game goes on at the next `reset()`).
    `options` go to the domain's env class (e.g. Atari `sticky=0.25`, `noop_max`, `max_episode_steps`).
    """
    domain, game = parse_env_id(env_id)
    return ENV_FACTORIES[domain](game, seed=seed, train=train, **options)


def make_vector_env(
    env_id: str, num_envs: int, *, seed: int, train: bool = False, asynchronous: bool = True, **options: Any
) -> gymnasium.vector.VectorEnv:
    """`num_envs` copies of `make_env(env_id)`, sub-env i seeded `seed + i`, for evaluation.

    Autoreset mode is NEXT_STEP (gymnasium's default): after a sub-env ends an episode, the *next* `step()` call
    resets it (ignoring that sub-env's action) and returns its first observation with reward 0 and
    terminated = truncated = False. `info["episode"]` and `info["_episode"]` (the mask) mark the sub-envs that
    ended a whole game on this step. Asynchronous (one subprocess per sub-env) by default: evaluation leaves the
    cores to the emulators, and usually ran more Atari steps/s than SyncVectorEnv (docs/performance.md);
    `asynchronous=False` keeps everything in this process. ale-py's `AtariVectorEnv` is not used: its stack after a reset is zero-padded rather than copies of
    the first frame, and its no-op draws, seeding and episode info differ from `make_env`.
    """
    if int(num_envs) != num_envs or num_envs < 1:
        raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
    parse_env_id(env_id)  # fail here, in the caller's process, on a bad id
    factories = [_EnvFactory(env_id, seed + index, train, options) for index in range(num_envs)]
    autoreset = gymnasium.vector.AutoresetMode.NEXT_STEP
    if asynchronous:
        # A process forked after it made a GL context hangs when it renders: DMC workers start by forkserver.
        context = "forkserver" if parse_env_id(env_id)[0] == "dmc" else None
        return gymnasium.vector.AsyncVectorEnv(factories, autoreset_mode=autoreset, context=context)
    return gymnasium.vector.SyncVectorEnv(factories, autoreset_mode=autoreset)


class _EnvFactory:
    """A picklable `make_env` call (AsyncVectorEnv sends its factories to subprocesses)."""

    def __init__(self, env_id: str, seed: int, train: bool, options: dict[str, Any]):
        self.env_id, self.seed, self.train, self.options = env_id, seed, train, options

    def __call__(self) -> gymnasium.Env:
        return make_env(self.env_id, seed=self.seed, train=self.train, **self.options)
