"""The update-time interventions of one trained network, built from the config's switches (docs/toolkit.md).

An agent builds one `Interventions` per network it trains with its own loss and optimizer (Rainbow: the online
network; SAC: the critic with its encoder, and the actor) and uses it at two points of its update, whatever is on:

    loss = rl_loss + interventions.penalty(reference)    # L2-init, Parseval, C-CHAIN's churn term (both SAM passes)
    ... optimizer step ...
    interventions.after_step(optimizer, rl_loss)         # Hare & Tortoise, NaP's projection, C-CHAIN's bookkeeping

`reference` is a second replay sample's network inputs, drawn only when `needs_reference` (C-CHAIN). The periodic
ReGraMa is a hook (`training/hooks.py`), like ReDo. Every object's state (θ₀, the tortoise, NaP's initial norms,
C-CHAIN's history and running means) is in `state_dict()`, which the agent's checkpoint holds, so resume is exact.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

# The order the after-step calls run in: the hare is reset to the tortoise first, then projected, and C-CHAIN
# snapshots the parameters the next update starts from.
AFTER_STEP_ORDER = ("hare_tortoise", "nap", "c_chain")


class Interventions:
    """The switched-on loss terms and after-step calls for `model` (see the module docstring).

    `sections` maps switch names to their config sections (`plastic.config`); only those with `enabled` are built.
    `output_fn(module, inputs)`: what C-CHAIN compares (e.g. the Q-values of a distributional head).
    `hare_interval`: Hare & Tortoise's reset interval in updates (its section's `interval` when None).
    """

    def __init__(self, model: nn.Module, sections: dict[str, Any], output_fn: Callable | None = None,
                 hare_interval: int | None = None):
        on = {name: section for name, section in sections.items() if getattr(section, "enabled", False)}
        self.objects: dict[str, Any] = {}
        self._terms: list[Callable[[Any], torch.Tensor]] = []
        self._after: list[tuple[str, Callable[[torch.optim.Optimizer, Any], Any]]] = []
        if "l2_init" in on:
            from plastic.plasticity.regularizers import L2Init

            l2 = self.objects["l2_init"] = L2Init(model, on["l2_init"].coefficient)
            self._terms.append(lambda reference: l2.penalty())
        if "parseval" in on:
            from plastic.plasticity.regularizers import Parseval

            section = on["parseval"]
            parseval = Parseval(model, section.coefficient, section.scale, include_conv=section.include_conv)
            self._terms.append(lambda reference: parseval.penalty())
        if "c_chain" in on:
            from plastic.plasticity.churn import CChain

            s = on["c_chain"]
            c_chain = self.objects["c_chain"] = CChain(model, s.relative_loss_scale, s.initial_coefficient, s.warmup,
                                                       s.window, s.lag, output_fn=output_fn)
            self._terms.append(c_chain.penalty)
            self._after.append(("c_chain", lambda optimizer, rl_loss: c_chain.after_step(rl_loss)))
        if "nap" in on:
            from plastic.plasticity.nap import NaP

            nap = self.objects["nap"] = NaP(model, scope=on["nap"].scope)
            self._after.append(("nap", lambda optimizer, rl_loss: nap.project_()))
        if "hare_tortoise" in on:
            from plastic.plasticity.hare_tortoise import HareTortoise

            s = on["hare_tortoise"]
            hare = self.objects["hare_tortoise"] = HareTortoise(
                model, hare_interval or s.interval, ema=s.ema, reset_optimizer_state=s.reset_optimizer)
            self._after.append(("hare_tortoise", lambda optimizer, rl_loss: hare.after_step(optimizer)))
        self._after.sort(key=lambda item: AFTER_STEP_ORDER.index(item[0]))
        self.needs_reference = "c_chain" in on

    @property
    def has_after_step(self) -> bool:
        """Whether any switched-on intervention acts after the optimizer step."""
        return bool(self._after)

    def penalty(self, reference: Any = None) -> torch.Tensor | float:
        """The sum of the loss terms (0.0 when none is on): add it to the loss of each SAM pass."""
        return sum((term(reference) for term in self._terms), 0.0)

    def after_step(self, optimizer: torch.optim.Optimizer, rl_loss: torch.Tensor) -> None:
        for _, call in self._after:
            call(optimizer, rl_loss)

    def metrics(self) -> dict[str, float]:
        """Logged scalars of the adaptive ones: C-CHAIN's λ_t."""
        c_chain = self.objects.get("c_chain")
        return {} if c_chain is None else {"plasticity/c_chain_coefficient": float(c_chain.coefficient)}

    def state_dict(self) -> dict:
        return {name: obj.state_dict() for name, obj in self.objects.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, obj in self.objects.items():
            if name not in state:
                raise ValueError(f"the checkpoint holds no state of {name!r}, which this run has switched on")
            obj.load_state_dict(state[name])


def sections(config) -> dict[str, Any]:
    """The config sections `Interventions` reads."""
    return {name: getattr(config, name) for name in ("l2_init", "parseval", "c_chain", "nap", "hare_tortoise")}


def ln_placement(config) -> str | None:
    """Where the builders put LayerNorm: NaP needs one before every nonlinearity ("all"); else `ln.*`."""
    if config.nap.enabled:
        return "all"
    return config.ln.placement if config.ln.enabled else None
