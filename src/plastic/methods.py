"""The method grammar of `plastic train --method`, `plastic sweep --methods` and `plastic synthetic --methods`.

A method is `FIRST[+SWITCH...]`. FIRST is a preset (`plastic/presets/<name>.toml`: `base`, `plastic`,
`plastic-dagger`, `plastic-official`, `reset-dagger`, or a single-method preset) or a switch; each further term is a
switch (`plastic.config.METHODS`) turned on top of it. Every switch has a single-method preset of the same name, so
`sam` is the preset `sam`, as `plastic train --preset sam`. A comma separates methods in a list (`base,plastic,
base+sam`). Names are checked against the real presets and switches; a bad one is a one-line `ValueError` naming
the term and listing what is allowed.

`parse_method` returns a `MethodSpec`: the preset and the switches added on top (each once, in the order written).
`MethodSpec.spelling` is the method as written, normalised (terms stripped, repeats dropped); sweep trial
directories are named by it. `MethodSpec.label` is what the run's `TrainConfig.method_label` will be (the preset,
plus the switches it does not already turn on, in the paper's order): result.json's `method`, how reports group runs.

`plastic train --preset P --methods a,b` (or `a+b`), the older spelling, is the same method as `--method P+a+b`
(`from_preset_and_switches`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from plastic.config import METHODS
from plastic.config_machinery import flat
from plastic.presets import available_presets, load_preset


def preset_switches(preset: str) -> tuple[str, ...]:
    """The switches the preset turns on, in `METHODS` order."""
    settings = load_preset(preset)
    return tuple(name for name in METHODS if settings.get(name, {}).get("enabled"))


def method_label(preset: str, enabled: Iterable[str]) -> str:
    """The preset, plus each enabled switch it does not turn on itself, in `METHODS` order (`base+ln+sam`)."""
    on, own = set(enabled), set(preset_switches(preset))
    return "+".join([preset, *(name for name in METHODS if name in on and name not in own)])


@dataclass(frozen=True)
class MethodSpec:
    """A parsed method: a preset and the switches added on top of it."""

    preset: str = "base"
    switches: tuple[str, ...] = ()

    @property
    def spelling(self) -> str:
        """`PRESET+SWITCH...` as written (sweep trial ids)."""
        return "+".join([self.preset, *self.switches])

    @property
    def enabled(self) -> tuple[str, ...]:
        """Every switch the method turns on (the preset's and the added ones), in `METHODS` order."""
        on = set(preset_switches(self.preset)) | set(self.switches)
        return tuple(name for name in METHODS if name in on)

    @property
    def label(self) -> str:
        """The run's `TrainConfig.method_label`."""
        return method_label(self.preset, self.enabled)


def _allowed(presets: Sequence[str], switches: Sequence[str]) -> str:
    named = [name for name in presets if name not in switches]  # a single-method preset is listed as its switch
    return f"a preset ({', '.join(named)}) or a switch ({', '.join(switches)}), then +SWITCH..."


def parse_method(text: str, flag: str = "--method", *, switches: Sequence[str] = METHODS,
                 presets: Sequence[str] | None = None, where: str = "") -> MethodSpec:
    """`FIRST[+SWITCH...]` -> MethodSpec. `switches` and `presets` narrow what is allowed (default: all of them); a
    real preset or switch outside them is refused as not available `where` (e.g. " in plastic synthetic")."""
    every_preset = available_presets()
    presets = every_preset if presets is None else list(presets)
    terms = [term.strip() for term in text.split("+")]
    if not text.strip() or "" in terms:
        raise ValueError(f"{flag} {text!r}: empty method term; use PRESET or PRESET+SWITCH+... (e.g. base+sam)")
    first, *rest = terms
    if first in presets:
        preset, added = first, []
    elif first in switches:  # a switch without a preset of its own: on top of base
        preset, added = "base", [first]
    elif first in every_preset or first in METHODS:
        raise ValueError(f"{flag} {text!r}: {first!r} is not available{where}; allowed: {_allowed(presets, switches)}")
    else:
        raise ValueError(f"{flag} {text!r}: unknown method {first!r}; allowed: {_allowed(presets, switches)}")
    for term in rest:
        if term in switches:
            added.append(term)
            continue
        if term in METHODS:
            why = f"switch {term!r} is not available{where}"
        elif term in every_preset:
            why = f"{term!r} is a preset, allowed only as the first term"
        else:
            why = f"unknown method {term!r}"
        raise ValueError(f"{flag} {text!r}: {why}; after '+' only switches: {', '.join(switches)}")
    return MethodSpec(preset, tuple(dict.fromkeys(added)))


def parse_method_list(text: str, flag: str = "--methods", **allowed) -> list[MethodSpec]:
    """A comma list of methods, in order, each once (by spelling); empty items are skipped."""
    specs = [parse_method(item, flag, **allowed) for item in text.split(",") if item.strip()]
    return list({spec.spelling: spec for spec in specs}.values())


def from_preset_and_switches(preset: str, methods: str) -> MethodSpec:
    """`plastic train --preset P --methods a,b` (commas or `+` between switches) as a MethodSpec."""
    presets = available_presets()
    if preset not in presets:
        raise ValueError(f"--preset {preset!r}: unknown preset; allowed: {', '.join(presets)}")
    added = []
    for term in (part.strip() for part in methods.replace("+", ",").split(",")):
        if not term:
            continue
        if term not in METHODS:
            why = (f"{term!r} is a preset, give it as --preset or --method {term}" if term in presets
                   else f"unknown method {term!r}")
            raise ValueError(f"--methods {methods!r}: {why}; allowed switches: {', '.join(METHODS)}")
        added.append(term)
    return MethodSpec(preset, tuple(dict.fromkeys(added)))


def switch_only_presets(switches: Sequence[str]) -> list[str]:
    """The presets that only turn on switches among `switches` (no other setting): those a consumer that knows only
    these switches (the synthetic experiments) can run as they are meant."""
    chosen = []
    for name in available_presets():
        settings = flat(load_preset(name))
        if all(key.endswith(".enabled") and value is True and key[:-len(".enabled")] in switches
               for key, value in settings.items()):
            chosen.append(name)
    return chosen
