"""Methods of the synthetic experiments: a method is a set of the toolkit's switches (LN, SAM, CReLU, Reset, ReDo, and
the later interventions of docs/toolkit.md: l2_init, parseval, nap, hare_tortoise, c_chain, regrama).

Methods are written in the grammar of `plastic train --method` (`plastic.methods`): a preset or a switch, then
`+SWITCH...` (`"ln+sam"`, `"plastic+redo"`), limited to the presets that only turn on switches these experiments have
(`base`, `plastic` = LN + SAM + CReLU + Reset, the single-method ones); a comma list (`"base,crelu,ln+sam,plastic"`)
names several, and `"combinations"` all 16 on/off combinations of LN, SAM, CReLU, Reset. Names are canonical: the
switches joined with `+` in `SWITCHES` order (`"sam+ln"` is `"ln+sam"`), `"base"` for none, `"plastic"` for the four.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from plastic.methods import parse_method, switch_only_presets

SWITCHES = ("ln", "sam", "crelu", "reset", "redo", "l2_init", "hare_tortoise", "nap", "regrama", "parseval", "c_chain")
PLASTIC = ("ln", "sam", "crelu", "reset")


@dataclass(frozen=True)
class Method:
    """A method = a set of switches; its name joins them with `+` in `SWITCHES` order (`"base"` for none)."""

    switches: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        unknown = set(self.switches) - set(SWITCHES)
        if unknown:
            raise ValueError(f"unknown method switch(es) {sorted(unknown)}; allowed: base, plastic, {', '.join(SWITCHES)}")

    @classmethod
    def parse(cls, text: str) -> Method:
        """`"base"`, `"plastic"` (= ln+sam+crelu+reset), a switch, then `+SWITCH...` (`"ln+sam"`); a switch or preset
        of `plastic train` that these experiments lack (shrink_perturb, plastic-dagger) is a one-line ValueError."""
        spec = parse_method(text.strip().lower(), "--methods", switches=SWITCHES,
                            presets=switch_only_presets(SWITCHES), where=" in plastic synthetic")
        return cls(frozenset(spec.enabled))

    @property
    def name(self) -> str:
        if self.switches == frozenset(PLASTIC):
            return "plastic"
        return "+".join(s for s in SWITCHES if s in self.switches) or "base"

    def __contains__(self, switch: str) -> bool:
        return switch in self.switches


def parse_methods(text: str) -> list[Method]:
    """A comma list of methods (`"base,crelu,ln+sam,plastic"`); `"combinations"` = all 16 on/off combinations of
    LN, SAM, CReLU, Reset. Duplicates are dropped, order kept."""
    methods: list[Method] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if item == "combinations":
            found = [Method(frozenset(c)) for k in range(5) for c in itertools.combinations(PLASTIC, k)]
        else:
            found = [Method.parse(item)]
        methods.extend(m for m in found if m not in methods)
    if not methods:
        raise ValueError(f"no method in {text!r}")
    return methods
