"""Presets: one small TOML file per paper variant, listing only its differences from `base` (the paper's defaults).

`base` is DrQ(ε)-Rainbow / DrQ-SAC with no plasticity method; single-method presets switch one on; `plastic` and
`plastic-dagger` are the paper's PLASTIC and PLASTIC† (§4); `plastic-official` reproduces the public code's effective
settings (docs/deviations.md), minus its bugs. Any combination is `--method base+ln+sam+...` (`plastic.methods`).
"""

from __future__ import annotations

import sys
from functools import cache
from importlib import resources

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def available_presets() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(__name__).iterdir() if p.name.endswith(".toml"))


@cache
def load_preset(name: str) -> dict:
    presets = available_presets()
    if name not in presets:
        raise ValueError(f"unknown preset {name!r}; available: {', '.join(presets)}")
    return tomllib.loads(resources.files(__name__).joinpath(f"{name}.toml").read_text())
