"""C-CHAIN, continual churn approximated reduction (Tang et al., ICML 2025, "Mitigating plasticity loss in continual
reinforcement learning by reducing churn").

Churn is the change of the network's outputs on data outside the training batch caused by an update. C-CHAIN adds a
churn-reduction term, computed on a separate reference batch B_ref drawn from the replay buffer at every update
(value-based form, as in the authors' DoubleDQN code):

    L(θ_t) = L_RL(θ_t) + λ_t L_churn(θ_t),     L_churn(θ_t) = mean_{s ∈ B_ref, a} (Q_θt(s, a) − Q_θ(t−k)(s, a))²

with θ_(t−k) the parameters k = `lag` updates ago, held fixed (k = 1: the network before the previous update; the
authors' code keeps a history of networks and uses the one before the last, `reg_his_idx = 2`). k = 0 would be the
current network, whose churn term has zero gradient, so k >= 1. The term is absent until k updates have happened.

The coefficient adapts so that the churn term stays a fixed fraction of the RL loss (the authors' "target relative
loss scale" c):

    λ_t = c · mean|L_RL| / (mean L_churn + 1e-8)      (means over the last `window` updates; from update `warmup` on)

and λ = `initial_coefficient` before that. Authors' defaults: c = 0.01, window 50,000, warmup 10,000 updates,
initial λ = 50.

Hook into training, per update:

    loss = rl_loss + c_chain.penalty(reference_batch)   # reference_batch: a second replay sample (inputs only)
    loss.backward(); optimizer.step()
    c_chain.after_step(rl_loss)                         # records the losses, adapts λ, snapshots θ_t+1

`output_fn(module, inputs)` maps the network and a reference batch to the values whose churn is penalised (default
`module(inputs)`; for a distributional head pass a function returning Q-values). The reference network is a copy of
the model (same class, same train/eval mode at each call) loaded with the old parameters and buffers.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

OutputFn = Callable[[nn.Module, Any], torch.Tensor]


def _call(module: nn.Module, inputs: Any) -> torch.Tensor:
    return module(*inputs) if isinstance(inputs, tuple) else module(inputs)


class _RunningMean:
    """Mean of the last `window` values, in O(1) per value."""

    def __init__(self, window: int):
        self.values: deque[float] = deque(maxlen=window)
        self.total = 0.0

    def append(self, value: float) -> None:
        if len(self.values) == self.values.maxlen:
            self.total -= self.values[0]
        self.values.append(value)
        self.total += value

    def mean(self) -> float:
        return self.total / len(self.values) if self.values else 0.0


class CChain:
    """C-CHAIN's churn-reduction loss and its adaptive coefficient (see the module docstring).

    Args:
        model: the trained network (the Q-network).
        relative_loss_scale: c, the target ratio λ L_churn / |L_RL|; 0.01 (authors' default).
        initial_coefficient: λ before `warmup` updates; 50 (authors' code).
        warmup: updates before λ starts adapting; 10,000 (authors' code).
        window: updates the running means cover; 50,000 (authors' code).
        lag: k, how many updates old the reference parameters are; 1 (authors' code).
        output_fn: `output_fn(module, inputs) -> tensor`, the penalised outputs; default `module(inputs)`.
    """

    def __init__(
        self,
        model: nn.Module,
        relative_loss_scale: float = 0.01,
        initial_coefficient: float = 50.0,
        warmup: int = 10_000,
        window: int = 50_000,
        lag: int = 1,
        output_fn: OutputFn | None = None,
    ):
        for name, value in (("relative_loss_scale", relative_loss_scale), ("initial_coefficient", initial_coefficient)):
            if not value >= 0:
                raise ValueError(f"{name}={value} must be >= 0")
        for name, value, low in (("warmup", warmup, 0), ("window", window, 1), ("lag", lag, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name}={value!r} must be an integer >= {low}")
        self.model = model
        self.relative_loss_scale = relative_loss_scale
        self.warmup = warmup
        self.lag = lag
        self.output_fn = output_fn or _call
        self.coefficient = float(initial_coefficient)
        self.updates = 0
        self._rl_losses = _RunningMean(window)
        self._churn_losses = _RunningMean(window)
        self._last_churn: float | None = None
        self._reference = copy.deepcopy(model)
        for p in self._reference.parameters():
            p.requires_grad_(False)
        self._history: deque[dict[str, torch.Tensor]] = deque([self._snapshot()], maxlen=lag + 1)

    def _snapshot(self) -> dict[str, torch.Tensor]:
        return {name: t.detach().clone() for name, t in self.model.state_dict().items()}

    def churn_loss(self, reference_inputs: Any) -> torch.Tensor:
        """L_churn(θ_t) on `reference_inputs` (unscaled, with its graph), or a zero tensor before `lag` updates."""
        if len(self._history) <= self.lag:
            return torch.zeros((), device=next(self.model.parameters()).device)
        self._reference.load_state_dict(self._history[0])
        self._reference.train(self.model.training)
        current = self.output_fn(self.model, reference_inputs)
        with torch.no_grad():
            old = self.output_fn(self._reference, reference_inputs)
        if current.shape != old.shape:
            raise ValueError(f"C-CHAIN: output shapes differ, {tuple(current.shape)} vs {tuple(old.shape)}")
        return F.mse_loss(current, old)

    def penalty(self, reference_inputs: Any) -> torch.Tensor:
        """λ_t L_churn(θ_t): add it to the RL loss of this update."""
        loss = self.churn_loss(reference_inputs)
        self._last_churn = float(loss.detach()) if len(self._history) > self.lag else None
        return self.coefficient * loss

    def after_step(self, rl_loss: float | torch.Tensor) -> None:
        """After the optimizer step: record |L_RL| and L_churn, adapt λ, snapshot the new parameters."""
        self.updates += 1
        self._rl_losses.append(abs(float(rl_loss.detach() if isinstance(rl_loss, torch.Tensor) else rl_loss)))
        if self._last_churn is not None:
            self._churn_losses.append(self._last_churn)
            self._last_churn = None
        if self.updates >= self.warmup:
            self.coefficient = self.relative_loss_scale * self._rl_losses.mean() / (self._churn_losses.mean() + 1e-8)
        self._history.append(self._snapshot())

    def state_dict(self) -> dict:
        return {
            "coefficient": self.coefficient,
            "updates": self.updates,
            "rl_losses": list(self._rl_losses.values),
            "churn_losses": list(self._churn_losses.values),
            "history": [{n: t.clone() for n, t in snapshot.items()} for snapshot in self._history],
        }

    def load_state_dict(self, state: dict) -> None:
        self.coefficient = float(state["coefficient"])
        self.updates = int(state["updates"])
        for running, values in ((self._rl_losses, state["rl_losses"]), (self._churn_losses, state["churn_losses"])):
            running.values.clear()
            running.total = 0.0
            for value in values:
                running.append(float(value))
        self._history = deque(state["history"], maxlen=self.lag + 1)
