"""Churn probe: how much an update changes the network's outputs on a fixed reference batch.

Churn (Schaul et al., 2022, "The phenomenon of policy churn"; Tang et al., 2025, C-CHAIN) is the change of outputs on
data the update did not train on. With f_θ the outputs (the model's, and optionally those of named sub-modules) on a
fixed reference batch X_ref:

    churn = mean over X_ref and output entries of |f_θ'(x) − f_θ(x)|

θ before and θ' after the update (or any span of updates). A reference batch drawn once (e.g. a uniform replay
sample) keeps the numbers comparable across a run.

Use: `probe = OutputChurn(model, reference_inputs)`; `probe.snapshot()` before the update; `probe.measure()` after it
returns `{"output": churn, <layer>: churn, ...}`. Forwards run without grad in the model's current train/eval mode
(put noisy layers at their means, e.g. `noisy=False`, so that the noise sample is not counted as churn).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from plastic.probes.activity import Inputs, capture_outputs

OUTPUT = "output"


class OutputChurn:
    """Mean |Δf| on `inputs` between `snapshot()` and `measure()`, for the model output and the named `layers`."""

    def __init__(self, model: nn.Module, inputs: Inputs, layers: Iterable[str] = ()):
        if isinstance(layers, str):
            raise ValueError(f"layers must be a list of module names, not the string {layers!r}")
        named = dict(model.named_modules())
        self.modules: dict[str, nn.Module] = {OUTPUT: model}
        for name in layers:
            if name == OUTPUT or name not in named or name == "":
                raise ValueError(f"layers: {name!r} is not a sub-module name of the model (nor {OUTPUT!r})")
            self.modules[name] = named[name]
        self.model = model
        self.inputs = inputs
        self.before: dict[str, torch.Tensor] | None = None

    def _outputs(self) -> dict[str, torch.Tensor]:
        def keep(module, output):
            if not isinstance(output, torch.Tensor):
                raise ValueError(f"churn: {type(module).__name__} returned {type(output).__name__}, not a tensor")
            return output.detach().clone()

        captured = capture_outputs(self.model, self.inputs, self.modules, keep)
        for name, calls in captured.items():
            if len(calls) != 1:
                raise ValueError(f"churn: module {name!r} ran {len(calls)} times in the forward; expected once")
        return {name: calls[0] for name, calls in captured.items()}

    def snapshot(self) -> None:
        """Record the outputs before the update."""
        self.before = self._outputs()

    def measure(self) -> dict[str, float]:
        """Mean |f_after − f_before| per output since `snapshot()`."""
        if self.before is None:
            raise ValueError("churn: call snapshot() before measure()")
        after = self._outputs()
        return {name: float((after[name] - self.before[name]).abs().float().mean()) for name in self.modules}
