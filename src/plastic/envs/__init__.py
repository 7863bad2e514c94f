"""Environments with the paper's protocols: Atari-100k (`atari:<Game>`) and MinAtar (`minatar:<game>`).

`make_env(env_id, seed=..., train=...)` gives one gymnasium env with uint8 observations shaped
(frame_stack * C, H, W), `frame_shape` / `frame_stack` attributes and exact `get_state()` / `set_state()`;
`make_vector_env` gives a vector of them for evaluation. See `registry.py` for ids, `atari.py` for the protocol.
"""

from plastic.envs.atari import ATARI_100K_GAMES
from plastic.envs.minatar import MINATAR_GAMES
from plastic.envs.registry import ENV_FACTORIES, make_env, make_vector_env, parse_env_id

__all__ = ["ATARI_100K_GAMES", "ENV_FACTORIES", "MINATAR_GAMES", "make_env", "make_vector_env", "parse_env_id"]
