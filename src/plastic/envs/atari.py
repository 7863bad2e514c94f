"""Atari-100k environments with the paper's protocol (Table 5, §4.1) and exact save/restore for checkpoints.

One `AtariEnv` drives `ale_py.ALEInterface` directly (no stack of gymnasium wrappers), so that its whole state
(emulator, RNGs, max-pool buffers, frame stack, counters) lives in one place and `get_state()` / `set_state()` are
exact. The protocol is the DER / DrQ(eps) one the paper follows:

- frame skip 4: an agent step repeats the action for 4 emulator frames and sums the raw rewards;
- each observed frame is the pixel-wise max of the last two raw frames of the step (removes Atari flicker), taken on
  ALE's own grayscale screen (210x160) and then resized to 84x84 by *area* interpolation (`area_resize`, the same
  result as OpenCV's INTER_AREA used by Dopamine, and identical to ale-py's `AtariVectorEnv` frames);
- observations stack the last 4 frames: `uint8` shaped (4, 84, 84). After a full reset the stack holds 4 copies of
  the first frame (not zeros);
- no sticky actions (`repeat_action_probability=0.0`; `sticky=0.25` gives the v5 setting), minimal action set;
- a full reset plays a uniform number of NOOP emulator frames in {0, ..., 30} (drawn from `env.np_random`);
- episodes are capped at 108,000 frames = 27,000 agent steps (`truncated=True`);
- no FIRE at reset: neither Dopamine nor DrQ uses a FireReset wrapper, so games such as Breakout need the agent to
  learn to press FIRE;
- rewards are the raw game score (the learner clips them).

`train=True` ends an *episode* on every life loss without resetting the game (EpisodicLifeEnv semantics of the
OpenAI baselines): that step returns `terminated=True`; the next `reset()` keeps playing the same game from the
current frame stack, with no no-ops. Only a real game over (or the time cap) makes the next `reset()` restart the
emulator. `train=False` plays whole games. On the step that ends a whole game, `info["episode"]` holds the game's raw
score summed over all its lives and its length in agent steps.

Gymnasium conventions: `env.unwrapped.ale` is the `ale_py.ALEInterface` (as in gymnasium's own `AtariEnv`; read it,
e.g. `lives()` or `getScreenRGB()`, but act only through `step()`, which keeps the counters and the frame stack), and
`env.spec` is a gymnasium `EnvSpec` with `id` the env id (`atari:Pong`), `max_episode_steps` the episode cap in agent
steps (27,000 = 108,000 frames) and `kwargs` the constructor's arguments, so `gymnasium.make(env.spec)` builds the
same env (seed it with `reset(seed=...)`).
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium
import numpy as np
from gymnasium.utils import seeding

# The 26 games of Atari-100k (Kaiser et al. 2020), in the CamelCase spelling of gymnasium's `ALE/<Game>-v5` ids.
ATARI_100K_GAMES = (
    "Alien", "Amidar", "Assault", "Asterix", "BankHeist", "BattleZone", "Boxing", "Breakout", "ChopperCommand",
    "CrazyClimber", "DemonAttack", "Freeway", "Frostbite", "Gopher", "Hero", "Jamesbond", "Kangaroo", "Krull",
    "KungFuMaster", "MsPacman", "Pong", "PrivateEye", "Qbert", "RoadRunner", "Seaquest", "UpNDown",
)  # fmt: skip

FRAME_SKIP = 4
FRAME_STACK = 4
FRAME_SIZE = 84
NOOP_MAX = 30
MAX_EPISODE_FRAMES = 108_000
MAX_EPISODE_STEPS = MAX_EPISODE_FRAMES // FRAME_SKIP  # 27,000 agent steps
_NOOP = 0  # ale_py.Action.NOOP


def all_atari_games() -> tuple[str, ...]:
    """Every game whose ROM ships with ale-py, CamelCase (`ms_pacman` -> `MsPacman`, as gymnasium names them)."""
    from ale_py import roms

    return tuple(sorted(_rom_id_to_name(rom) for rom in roms.get_all_rom_ids()))


def _rom_id_to_name(rom_id: str) -> str:
    return rom_id.title().replace("_", "")  # the rule of ale_py.registration


def _name_to_rom_id(game: str) -> str:
    from ale_py import roms

    by_name = {_rom_id_to_name(rom): rom for rom in roms.get_all_rom_ids()}
    if game not in by_name:
        raise ValueError(f"game={game!r} is not an ALE game; valid games: {', '.join(sorted(by_name))}")
    return by_name[game]


def _area_matrix(size_in: int, size_out: int) -> np.ndarray:
    """(size_out, size_in) weights of area interpolation: each output pixel averages the input span it covers."""
    scale = size_in / size_out
    weights = np.zeros((size_out, size_in))
    for out in range(size_out):
        low, high = out * scale, (out + 1) * scale
        for pixel in range(math.floor(low), math.ceil(high)):
            weights[out, pixel] = max(0.0, min(high, pixel + 1) - max(low, pixel)) / scale
    return weights


class _AreaResizer:
    """Area resize of a 2-D uint8 image as two small matrix products.

    The weights repeat with period gcd(size_in, size_out) (210 -> 84: 5 rows make 2; 160 -> 84: 40 columns make 21),
    so one block of weights applied to a reshaped image does the whole resize (fewer multiply-adds than full
    matrices; docs/performance.md).
    float32 arithmetic: frames equal OpenCV's INTER_AREA (as used by Dopamine and ale-py's `AtariVectorEnv`) up to
    +-1 gray level on a few pixels where the exact average is a rounding tie.
    """

    def __init__(self, height_in: int, width_in: int, size_out: int):
        self.row_blocks = math.gcd(height_in, size_out)
        self.col_blocks = math.gcd(width_in, size_out)
        self.height_in, self.width_in, self.size_out = height_in, width_in, size_out
        rows = _area_matrix(height_in // self.row_blocks, size_out // self.row_blocks)
        cols = _area_matrix(width_in // self.col_blocks, size_out // self.col_blocks)
        self.row_weights = rows.astype(np.float32)
        self.col_weights = cols.T.astype(np.float32).copy()

    def __call__(self, image: np.ndarray) -> np.ndarray:
        blocks = image.astype(np.float32).reshape(self.row_blocks, -1, self.width_in)
        rows = self.row_weights @ blocks  # (row_blocks, rows out per block, width_in)
        out = rows.reshape(self.size_out, self.col_blocks, -1) @ self.col_weights
        return np.rint(out.reshape(self.size_out, self.size_out)).astype(np.uint8)


_RESIZERS: dict[tuple[int, int, int], _AreaResizer] = {}


def area_resize(image: np.ndarray, size: int = FRAME_SIZE) -> np.ndarray:
    """Resize a 2-D uint8 image to (size, size) by area interpolation, rounding to the nearest integer."""
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D (H, W), got shape {image.shape}")
    key = (image.shape[0], image.shape[1], size)
    if key not in _RESIZERS:
        _RESIZERS[key] = _AreaResizer(*key)
    return _RESIZERS[key](image)


class AtariEnv(gymnasium.Env):
    """One Atari game under the Atari-100k protocol (see the module docstring).

    Args:
        game: CamelCase game name, e.g. "Pong", "MsPacman" (any ALE game; the 26 of Atari-100k are the benchmark).
        seed: seed of the first `reset()` called without one.
        train: terminal on life loss without resetting the game (training); False plays whole games (evaluation).
        sticky: probability that the emulator repeats the previous action (0.0 here; 0.25 is gymnasium's v5).
        noop_max: the largest number of NOOP frames played after a full reset.
        frame_skip, frame_stack, frame_size: agent step length in frames, frames per observation, frame side.
        max_episode_steps: agent steps after which a game is truncated (108,000 frames / frame_skip).
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        game: str,
        *,
        seed: int | None = None,
        train: bool,
        sticky: float = 0.0,
        noop_max: int = NOOP_MAX,
        frame_skip: int = FRAME_SKIP,
        frame_stack: int = FRAME_STACK,
        frame_size: int = FRAME_SIZE,
        max_episode_steps: int | None = None,
    ):
        import ale_py
        from ale_py import roms

        if not 0.0 <= sticky <= 1.0:
            raise ValueError(f"sticky must be a probability in [0, 1], got {sticky}")
        for name, value, low in (("noop_max", noop_max, 0), ("frame_skip", frame_skip, 1),
                                 ("frame_stack", frame_stack, 1), ("frame_size", frame_size, 1)):  # fmt: skip
            if int(value) != value or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if max_episode_steps is None:
            max_episode_steps = MAX_EPISODE_FRAMES // frame_skip
        if max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1, got {max_episode_steps}")

        self.game = game
        self.train = bool(train)
        self.sticky = float(sticky)
        self.noop_max = int(noop_max)
        self.frame_skip = int(frame_skip)
        self.frame_stack = int(frame_stack)
        self.max_episode_steps = int(max_episode_steps)
        self._rom_path = roms.get_rom_path(_name_to_rom_id(game))
        self.spec = gymnasium.envs.registration.EnvSpec(
            id=f"atari:{game}", entry_point="plastic.envs.atari:AtariEnv", max_episode_steps=self.max_episode_steps,
            kwargs={"game": game, "train": self.train, "sticky": self.sticky, "noop_max": self.noop_max,
                    "frame_skip": self.frame_skip, "frame_stack": self.frame_stack, "frame_size": int(frame_size),
                    "max_episode_steps": self.max_episode_steps},
        )  # fmt: skip

        ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
        self._ale = ale_py.ALEInterface()
        self._ale.setFloat("repeat_action_probability", self.sticky)
        self._seed_emulator(seed)
        self._action_set = list(self._ale.getMinimalActionSet())
        height, width = self._ale.getScreenDims()

        self.frame_shape = (1, int(frame_size), int(frame_size))  # (C, H, W) of one frame
        self.action_space = gymnasium.spaces.Discrete(len(self._action_set))
        self.observation_space = gymnasium.spaces.Box(
            0, 255, (self.frame_stack, frame_size, frame_size), dtype=np.uint8
        )
        # The last two raw grayscale screens of a step; the observed frame is their max.
        self._screens = np.zeros((2, height, width), dtype=np.uint8)
        self._latest_screen = 0
        self._stack = np.zeros(self.observation_space.shape, dtype=np.uint8)
        self._pending_seed = seed  # used by the first reset() called without a seed
        self._lives = 0
        self._episode_return = 0.0
        self._episode_length = 0
        self._game_finished = True  # the next reset() restarts the emulator
        self._needs_reset = True

    # ---- gymnasium API -------------------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is None:
            seed, self._pending_seed = self._pending_seed, None
        else:
            self._pending_seed = None
        if seed is not None:
            self._seed_emulator(seed)
            self._game_finished = True
        if self._game_finished:
            self._restart_game()
        # else: the last episode ended on a life loss (train mode): keep playing from the current frame stack.
        self._needs_reset = False
        return self._stack.copy(), self._info()

    def step(self, action):
        if self._needs_reset:
            raise RuntimeError("AtariEnv.step() called before reset() or after the episode ended; call reset()")
        ale_action = self._action_set[int(action)]
        reward = 0.0
        game_over = False
        for frame in range(self.frame_skip):
            reward += self._ale.act(ale_action)
            game_over = self._ale.game_over()
            if game_over or frame >= self.frame_skip - 2:
                self._grab_screen()
            if game_over:
                break
        self._push_frame()
        self._episode_return += reward
        self._episode_length += 1

        lives = self._ale.lives()
        life_lost = lives < self._lives
        self._lives = lives
        truncated = not game_over and self._episode_length >= self.max_episode_steps
        terminated = game_over or (self.train and life_lost)
        info = self._info()
        if game_over or truncated:
            info["episode"] = {"return": self._episode_return, "length": self._episode_length}
            self._game_finished = True
        self._needs_reset = terminated or truncated
        return self._stack.copy(), reward, terminated, truncated, info

    def close(self):
        self._ale = None

    @property
    def ale(self):
        """The emulator, `ale_py.ALEInterface` (gymnasium's `AtariEnv.ale`); act through `step()`, not on it."""
        return self._ale

    # ---- exact save / restore -------------------------------------------------------------------------------------
    def get_state(self) -> dict:
        """Everything needed to continue exactly from here: emulator (with its RNG), RNG, buffers, counters."""
        return {
            "game": self.game,
            "ale": self._ale.cloneState(include_rng=True).serialize(),
            "np_random": self.np_random.bit_generator.state,
            "screens": self._screens.copy(),
            "latest_screen": self._latest_screen,
            "stack": self._stack.copy(),
            "pending_seed": self._pending_seed,
            "lives": self._lives,
            "episode_return": self._episode_return,
            "episode_length": self._episode_length,
            "game_finished": self._game_finished,
            "needs_reset": self._needs_reset,
        }

    def set_state(self, state: dict) -> None:
        """Continue from a `get_state()` of an env of the same game (its seed and history do not matter)."""
        from ale_py import ALEState

        if state["game"] != self.game:
            raise ValueError(f"state is from game {state['game']!r}, this env plays {self.game!r}")
        self._ale.restoreState(ALEState(state["ale"]))
        self.np_random.bit_generator.state = state["np_random"]
        self._screens[...] = state["screens"]
        self._latest_screen = state["latest_screen"]
        self._stack[...] = state["stack"]
        self._pending_seed = state["pending_seed"]
        self._lives = state["lives"]
        self._episode_return = state["episode_return"]
        self._episode_length = state["episode_length"]
        self._game_finished = state["game_finished"]
        self._needs_reset = state["needs_reset"]

    # ---- internals ------------------------------------------------------------------------------------------------
    def _seed_emulator(self, seed: int | None) -> None:
        # As ale_py's AtariEnv.seed_game: one seed gives the no-op RNG and the emulator's RNG; ALE reads its seed
        # when the ROM is loaded.
        np_seed, ale_seed = np.random.SeedSequence(seed).generate_state(n_words=2)
        self._np_random, _ = seeding.np_random(int(np_seed))
        self._ale.setInt("random_seed", np.int32(ale_seed))
        self._ale.loadROM(self._rom_path)

    def _restart_game(self) -> None:
        self._ale.reset_game()
        self._grab_screen()
        self._screens[self._latest_screen ^ 1] = self._screens[self._latest_screen]  # no frame before the first
        for _ in range(int(self.np_random.integers(0, self.noop_max + 1))):
            self._ale.act(_NOOP)
            if self._ale.game_over():
                self._ale.reset_game()
            self._grab_screen()
        frame = self._observed_frame()
        self._stack[...] = frame  # k copies of the first frame
        self._lives = self._ale.lives()
        self._episode_return = 0.0
        self._episode_length = 0
        self._game_finished = False

    def _grab_screen(self) -> None:
        self._latest_screen ^= 1  # overwrite the older of the two screens
        self._ale.getScreenGrayscale(self._screens[self._latest_screen])

    def _observed_frame(self) -> np.ndarray:
        return area_resize(np.maximum(self._screens[0], self._screens[1]), self.frame_shape[1])

    def _push_frame(self) -> None:
        self._stack[:-1] = self._stack[1:]
        self._stack[-1] = self._observed_frame()

    def _info(self) -> dict:
        return {"lives": self._lives, "episode_frame_number": self._ale.getEpisodeFrameNumber()}
