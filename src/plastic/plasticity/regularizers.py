"""Loss-term regularisers against plasticity loss: L2-init and Parseval regularisation.

- `L2Init`, "regenerative regularisation" (Kumar, Marklund & Van Roy, 2023, "Maintaining plasticity in continual
  learning via regenerative regularization"): pull every parameter towards its initial value,

      L(θ) = L_train(θ) + λ ‖θ − θ₀‖²₂,      ∇ = ∇L_train + 2λ (θ − θ₀),

  θ₀ the parameters when the regulariser is created (a snapshot, kept in `state_dict()` for exact resume).
- `Parseval` (Chung, Cherif, Meger & Precup, 2024, "Parseval regularization for continual reinforcement learning"):
  keep each layer's weight rows near-orthogonal,

      L(θ) = L_train(θ) + λ Σ_l ‖W_l W_lᵀ − s I‖²_F,      ∇_{W_l} = 4λ (W_l W_lᵀ − s I) W_l,

  W_l the (out, in) weight of a linear layer (a conv kernel is flattened to (out_channels, in_channels·kh·kw); a
  NoisyLinear contributes its mean weight). The paper regularises every layer but the output layer; λ = 1e-3 and
  s = 1 are its defaults.

Hook into training: each update adds `regulariser.penalty()` (a scalar tensor with its graph) to the loss before
`backward()`; nothing else. Both work with SAM: the penalty is part of the loss SAM perturbs.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from plastic.nets.noisy import NoisyLinear
from plastic.plasticity.layers import CReLU

LINEAR_LAYERS = (nn.Linear, nn.Conv2d, NoisyLinear)


class L2Init:
    """λ‖θ − θ₀‖²₂ over the trainable parameters of `model`, θ₀ snapshotted at construction (Kumar et al., 2023).

    Per update: `loss = loss + l2_init.penalty()`. `coefficient` is λ: the paper tunes it per benchmark, so it has
    no default. After a reset that should move the anchor (a design choice, e.g. resetting the head to a fresh draw),
    call `snapshot_()` to re-take θ₀.
    """

    def __init__(self, model: nn.Module, coefficient: float):
        if not coefficient >= 0:
            raise ValueError(f"coefficient={coefficient} must be >= 0")
        self.model = model
        self.coefficient = coefficient
        self.snapshot_()

    def _parameters(self) -> dict[str, torch.Tensor]:
        params = {name: p for name, p in self.model.named_parameters() if p.requires_grad}
        if not params:
            raise ValueError("L2Init: the model has no trainable parameters")
        return params

    @torch.no_grad()
    def snapshot_(self) -> None:
        """θ₀ <- the current parameters."""
        self.initial = {name: p.detach().clone() for name, p in self._parameters().items()}

    def penalty(self) -> torch.Tensor:
        params = self._parameters()
        if params.keys() != self.initial.keys():
            raise ValueError("L2Init: the model's trainable parameters changed since the snapshot; call snapshot_()")
        names = list(params)
        differences = torch._foreach_sub([params[n] for n in names], [self.initial[n] for n in names])
        return self.coefficient * sum(d.pow(2).sum() for d in differences)

    def state_dict(self) -> dict:
        return {"coefficient": self.coefficient, "initial": {n: t.clone() for n, t in self.initial.items()}}

    def load_state_dict(self, state: dict) -> None:
        params = self._parameters()
        initial = state["initial"]
        if initial.keys() != params.keys() or any(initial[n].shape != params[n].shape for n in params):
            raise ValueError("L2Init state does not match the model's trainable parameters")
        self.coefficient = float(state["coefficient"])
        self.initial = {n: initial[n].detach().to(params[n]).clone() for n in params}


def output_layers(model: nn.Module) -> list[str]:
    """Linear/Conv2d/NoisyLinear layers not followed by a nonlinearity (nn.ReLU / CReLU) before the next such layer.

    Read from registration order (`named_modules()`, as ReDo does): the Q-value layers of both dueling streams, the
    last layer of an actor or critic MLP.
    """
    outputs, pending = [], None
    for name, module in model.named_modules():
        if isinstance(module, LINEAR_LAYERS):
            if pending is not None:
                outputs.append(pending)
            pending = name
        elif isinstance(module, (nn.ReLU, CReLU)):
            pending = None
    if pending is not None:
        outputs.append(pending)
    if not outputs:
        raise ValueError("Parseval: the model has no nn.Linear / nn.Conv2d / NoisyLinear layer")
    return outputs


class Parseval:
    """λ Σ_l ‖W_l W_lᵀ − s I‖²_F over the linear and conv layers of `model` (Chung et al., 2024).

    Per update: `loss = loss + parseval.penalty()`.

    Args:
        model: the network.
        coefficient: λ, default 1e-3 (the paper's).
        scale: s, the target W Wᵀ = s I, default 1 (the paper's).
        exclude: names of layers left unregularised. None (default) excludes the output layers (the paper leaves the
            output layer free), found by `output_layers`: every layer with no ReLU/CReLU after it before the next
            layer. Note that this also frees a layer followed by another nonlinearity (tanh) or none; pass the names
            explicitly where that is not wanted.
        include_conv: regularise conv kernels too, flattened to (out_channels, in_channels·kh·kw). The paper's
            networks are MLPs, so this is a choice; default True.
    """

    def __init__(
        self,
        model: nn.Module,
        coefficient: float = 1e-3,
        scale: float = 1.0,
        exclude: Iterable[str] | None = None,
        include_conv: bool = True,
    ):
        if not coefficient >= 0:
            raise ValueError(f"coefficient={coefficient} must be >= 0")
        if not scale > 0:
            raise ValueError(f"scale={scale} must be > 0")
        if isinstance(exclude, str):
            raise ValueError(f"exclude must be a list of layer names, not the string {exclude!r}")
        exclude = set(output_layers(model)) if exclude is None else set(exclude)
        modules = dict(model.named_modules())
        for name in exclude:
            if not isinstance(modules.get(name), LINEAR_LAYERS):
                raise ValueError(f"exclude: {name!r} is not a Linear/Conv2d/NoisyLinear layer of the model")
        self.coefficient = coefficient
        self.scale = scale
        self.layers = {
            name: m
            for name, m in model.named_modules()
            if isinstance(m, LINEAR_LAYERS) and name not in exclude and (include_conv or not isinstance(m, nn.Conv2d))
        }
        if not self.layers:
            raise ValueError("Parseval: no layer left to regularise")

    @staticmethod
    def weight_matrix(module: nn.Module) -> torch.Tensor:
        """The layer's weight as an (out, in) matrix."""
        weight = module.weight_mu if isinstance(module, NoisyLinear) else module.weight
        return weight.reshape(weight.shape[0], -1)

    def penalty(self) -> torch.Tensor:
        total = 0.0
        for module in self.layers.values():
            w = self.weight_matrix(module)
            gram = w @ w.T
            identity = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
            total = total + (gram - self.scale * identity).pow(2).sum()
        return self.coefficient * total
