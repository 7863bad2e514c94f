"""Environments with the paper's protocols: Atari-100k (`atari:<Game>`), MinAtar (`minatar:<game>`) and DeepMind
Control from pixels (`dmc:<domain>-<task>`).

`make_env(env_id, seed=..., train=...)` gives one gymnasium env with uint8 observations shaped
(frame_stack * C, H, W), `frame_shape` / `frame_stack` attributes and exact `get_state()` / `set_state()`;
`make_vector_env` gives a vector of them for evaluation. `domains.py` is the table of domains and the env-id parser,
`registry.py` maps ids to envs, `atari.py`, `minatar.py`, `dmc.py` hold each protocol.

The names below are imported on first use, so that `plastic.envs.domains` (pure Python) can be read without
gymnasium.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ATARI_100K_GAMES": "plastic.envs.atari",
    "MINATAR_GAMES": "plastic.envs.minatar",
    "ENV_FACTORIES": "plastic.envs.registry",
    "make_env": "plastic.envs.registry",
    "make_vector_env": "plastic.envs.registry",
    "parse_env_id": "plastic.envs.registry",
}

__all__ = ["ATARI_100K_GAMES", "ENV_FACTORIES", "MINATAR_GAMES", "make_env", "make_vector_env", "parse_env_id"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'plastic.envs' has no attribute {name!r}")
