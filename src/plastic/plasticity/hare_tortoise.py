"""Hare & Tortoise (Lee et al., ICML 2024, "Slow and steady wins the race: maintaining plasticity with Hare and
Tortoise networks").

The trained network is the fast "hare" θ_H. A slow "tortoise" θ_T tracks it by an exponential moving average after
every optimizer step, and every `reset_interval` updates the hare is reset to the tortoise (instead of to a random
initialisation, as a hard reset would):

    θ_T <- ρ θ_T + (1 − ρ) θ_H                      after every update  (ρ = `ema`, 0.999 in the authors' code)
    θ_H <- θ_T                                      every `reset_interval` updates

Floating-point buffers (BatchNorm statistics) are averaged and copied the same way, as in the authors' code; other
buffers (counters, noise samples) are copied. The tortoise starts as a copy of the hare.

Hook into training: an after-optimizer-step call, `hare_tortoise.after_step(optimizer)`. The authors' code keeps
the optimizer state across a hare reset; `reset_optimizer_state=True` clears the hare's moments instead (a choice).
The authors' image-classification scripts reset every 10 epochs; the reset interval in updates for an RL agent is
a hyperparameter of the experiment, so `reset_interval` has no default.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from plastic.plasticity.reset import reset_optimizer_state_


class HareTortoise:
    """The tortoise (an EMA of `hare`) and the periodic reset of the hare to it.

    `tortoise` is a full module (same class as the hare), usable for evaluation. `updates` counts `after_step` calls.
    """

    def __init__(self, hare: nn.Module, reset_interval: int, ema: float = 0.999, reset_optimizer_state: bool = False):
        if not 0.0 <= ema <= 1.0:
            raise ValueError(f"ema={ema} must be in [0, 1]")
        if isinstance(reset_interval, bool) or not isinstance(reset_interval, int) or reset_interval < 1:
            raise ValueError(f"reset_interval={reset_interval!r} must be an integer >= 1")
        self.hare = hare
        self.tortoise = copy.deepcopy(hare)
        for p in self.tortoise.parameters():
            p.requires_grad_(False)
        self.ema = ema
        self.reset_interval = reset_interval
        self.reset_optimizer_state = reset_optimizer_state
        self.updates = 0

    def _pairs(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(tortoise tensor, hare tensor) for every parameter and buffer, by name."""
        hare = dict(self.hare.named_parameters()) | dict(self.hare.named_buffers())
        tortoise = dict(self.tortoise.named_parameters()) | dict(self.tortoise.named_buffers())
        if hare.keys() != tortoise.keys():
            raise ValueError("HareTortoise: the hare's parameters/buffers changed since the tortoise was made")
        return [(tortoise[name], hare[name]) for name in hare]

    @torch.no_grad()
    def after_step(self, optimizer: torch.optim.Optimizer | None = None) -> bool:
        """Advance the tortoise; reset the hare when the interval is reached. Returns True when it reset."""
        if self.reset_optimizer_state and optimizer is None:
            raise ValueError("HareTortoise(reset_optimizer_state=True) needs the optimizer in after_step(optimizer)")
        pairs = self._pairs()
        for slow, fast in pairs:
            if slow.is_floating_point():
                slow.mul_(self.ema).add_(fast.detach(), alpha=1.0 - self.ema)
            else:
                slow.copy_(fast)
        self.updates += 1
        if self.updates % self.reset_interval:
            return False
        for slow, fast in pairs:
            fast.copy_(slow)
        if self.reset_optimizer_state:
            reset_optimizer_state_(optimizer, [p for p in self.hare.parameters() if p.requires_grad])
        return True

    def state_dict(self) -> dict:
        return {"tortoise": copy.deepcopy(self.tortoise.state_dict()), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.tortoise.load_state_dict(state["tortoise"])
        self.updates = int(state["updates"])
