"""The agent contract, stated in code (Dopamine's agent lifecycle and `bundle_and_checkpoint` are the model).

The training loop, the hooks (resets, shrink & perturb, ReDo, probes), fine-tuning from a pretrained backbone and
`plastic eval` see an agent only through `Agent` below; `RainbowAgent` (agents/rainbow.py) and `SACAgent`
(agents/sac.py) implement it. Also here: the Adam / SAM-around-Adam factory and the EMA target update both agents
use, and `count_parameters`.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Callable, Iterable, Protocol

import numpy as np
import torch
from torch import nn

# (online module, its target twin or None): what an intervention re-draws, with the copy that must follow it.
ModulePair = tuple[nn.Module, "nn.Module | None"]


class Agent(Protocol):
    generator: torch.Generator
    """The agent's torch stream (training/seeding.py): weights, noise, and every reset's fresh draw."""
    updates: int
    """Gradient updates so far; the reset and ReDo schedules count these (checkpointed)."""

    @property
    def learning_starts(self) -> int:
        """Agent steps of warm-up before the first update."""

    @property
    def optimizers(self) -> list[torch.optim.Optimizer]:
        """Every optimizer, for the optimizer-state policy of a reset."""

    @property
    def probe_model(self) -> nn.Module:
        """The online network the probes measure and whose parameters `num_parameters` counts."""

    # ---------------------------------------------------------------- acting and learning (Algorithm 1 / 2)
    def act(self, obs: np.ndarray, step: int) -> Any:
        """The training action for one observation at agent step `step`."""

    def transform_reward(self, reward: float) -> float:
        """The reward as stored in the replay buffer (Rainbow clips it)."""

    def update(self, buffer, progress: float) -> dict[str, float]:
        """One gradient update on a batch from `buffer`; `progress` in [0, 1] over the updates. Returns losses."""

    def evaluation_policy(self, rng: np.random.Generator) -> Callable[[np.ndarray], np.ndarray]:
        """A batched policy for evaluation, drawing its exploration from `rng` only."""

    def replay_options(self) -> dict:
        """Keyword arguments of the replay buffer (capacity, n-step, prioritisation, action shape)."""

    # ---------------------------------------------------------------- what interventions act on
    def reset_modules(self) -> list[ModulePair]:
        """What a hard reset re-draws (paper §4: the head), with target twins."""

    def shrink_perturb_modules(self) -> list[ModulePair]:
        """What shrink & perturb softens at each reset (PLASTIC†: the backbone), with target twins."""

    def backbone_modules(self) -> list[ModulePair]:
        """The encoder a pretrained backbone is loaded into (paper §4.4), with target twins."""

    def backbone_state(self, agent_state: dict) -> dict[str, torch.Tensor] | None:
        """The encoder's weights (keyed as the encoder's own) in this agent kind's `state_dict()`; None if the
        state is not from this kind of agent."""

    def reset_extra_(self) -> list[torch.Tensor]:
        """Renew what a hard reset renews outside `reset_modules` (SAC's temperature); returns those tensors."""

    def redo(self, inputs: Any, tau: float) -> dict[str, int]:
        """ReDo on the layers the agent exposes to it; returns units recycled per layer."""

    # ---------------------------------------------------------------- probes
    def probe_inputs(self, batch) -> Any:
        """What `probe_model` takes, from a replay batch."""

    def loss_closure(self, batch) -> AbstractContextManager[Callable[[], torch.Tensor]]:
        """A context giving a deterministic loss of the online weights on `batch` (for the Hessian probe); whatever
        it switches for that (noisy layers to their means) is switched back on exit."""

    # ---------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict:
        """Everything needed to continue exactly: weights, optimizers, generators, update count."""

    def load_state_dict(self, state: dict) -> None: ...


def make_adam(params: Iterable[torch.Tensor] | Iterable[dict], *, learning_rate: float, device: torch.device,
              eps: float | None = None, rho: float = 0.0, adaptive: bool = False) -> torch.optim.Optimizer:
    """Adam, or SAM (ASAM if `adaptive`) around Adam when `rho` > 0 (paper §3.3). Param groups may carry `perturb`
    flags: SAM's scope (App. B.4); plain Adam drops them. `eps`: None = Adam's default."""
    kwargs: dict[str, Any] = dict(lr=learning_rate)
    if eps is not None:
        kwargs["eps"] = eps
    if device.type in ("cpu", "cuda"):
        kwargs["fused"] = True  # one kernel for all parameters (docs/performance.md)
    params = list(params)
    if rho > 0:
        from plastic.plasticity import SAM

        return SAM(params, torch.optim.Adam, rho=rho, adaptive=adaptive, **kwargs)
    params = [{k: v for k, v in p.items() if k != "perturb"} if isinstance(p, dict) else p for p in params]
    return torch.optim.Adam(params, **kwargs)


@torch.no_grad()
def ema_update_(target: nn.Module | list[torch.Tensor], online: nn.Module | list[torch.Tensor], tau: float) -> None:
    """target <- tau * target + (1 - tau) * online, parameter by parameter (the momentum target, Tables 5 and 6);
    modules or matching lists of tensors."""
    targets, onlines = (list(x.parameters()) if isinstance(x, nn.Module) else x for x in (target, online))
    torch._foreach_lerp_(targets, onlines, 1.0 - tau)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def submodule_state(module_state: dict[str, torch.Tensor] | None, prefix: str) -> dict[str, torch.Tensor] | None:
    """The entries of a module's state_dict under submodule `prefix`, keyed without it (an agent's
    `backbone_state`: the encoder inside a saved network); None when there is no saved network."""
    if module_state is None:
        return None
    start = f"{prefix}."
    return {key[len(start):]: value for key, value in module_state.items() if key.startswith(start)}
