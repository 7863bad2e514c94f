"""Factorised Gaussian noisy linear layer (Fortunato et al., 2018), the exploration of Rainbow's head (paper Table 5).

y = (mu_w + sigma_w * eps_w) x + mu_b + sigma_b * eps_b with eps_w = f(eps_out) f(eps_in)^T, f(x) = sign(x) sqrt|x|.
Parameters are initialised as in the paper: mu ~ U(-1/sqrt(p), 1/sqrt(p)), sigma = sigma0 / sqrt(p) (sigma0 = 0.5).
The noise lives in buffers; `reset_noise(generator)` draws a new sample, and `noisy=False` (evaluation) uses the means;
`noise_at_means(*modules)` sets that for a block.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn
from torch.nn import functional as F


# A no-grad forward of at most this many rows (acting: batch 1 per env) takes the factorised form: memory-bound there,
# it reads mu and sigma once instead of also writing and reading W (docs/performance.md, "Noisy layers").
FACTORISED_MAX_ROWS = 8


class NoisyLinear(nn.Module):
    def __init__(self, in_features: int, out_features: int, sigma0: float = 0.5):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.sigma0 = sigma0
        self.weight_mu = nn.Parameter(torch.empty(out_features, in_features))
        self.weight_sigma = nn.Parameter(torch.empty(out_features, in_features))
        self.bias_mu = nn.Parameter(torch.empty(out_features))
        self.bias_sigma = nn.Parameter(torch.empty(out_features))
        self.register_buffer("epsilon_in", torch.zeros(in_features))
        self.register_buffer("epsilon_out", torch.zeros(out_features))
        self.noisy = True
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.in_features)
        nn.init.uniform_(self.weight_mu, -bound, bound)
        nn.init.uniform_(self.bias_mu, -bound, bound)
        nn.init.constant_(self.weight_sigma, self.sigma0 * bound)
        nn.init.constant_(self.bias_sigma, self.sigma0 * bound)

    @staticmethod
    def _scaled_noise(size: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
        x = torch.randn(size, generator=generator, device=device)
        return x.sign() * x.abs().sqrt()

    @torch.no_grad()
    def reset_noise(self, generator: torch.Generator | None = None) -> None:
        device = self.weight_mu.device
        self.epsilon_in.copy_(self._scaled_noise(self.in_features, generator, device))
        self.epsilon_out.copy_(self._scaled_noise(self.out_features, generator, device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.noisy:
            return F.linear(x, self.weight_mu, self.bias_mu)
        bias = torch.addcmul(self.bias_mu, self.bias_sigma, self.epsilon_out)
        if not torch.is_grad_enabled() and x.numel() <= FACTORISED_MAX_ROWS * self.in_features:
            return torch.addcmul(F.linear(x, self.weight_mu, bias), self.epsilon_out,
                                 F.linear(x * self.epsilon_in, self.weight_sigma))
        # Materialising W = mu + sigma * (eps_out eps_in^T) costs elementwise passes over the weights but one GEMM
        # forward and two backward, versus two and four for the factorised x mu^T + eps_out * ((x * eps_in) sigma^T),
        # which never forms W. At batch 32 on CPU the GEMMs cost more than the passes, eager and compiled alike
        # (docs/performance.md, "Noisy layers").
        weight = torch.addcmul(self.weight_mu, self.weight_sigma, torch.outer(self.epsilon_out, self.epsilon_in))
        return F.linear(x, weight, bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, sigma0={self.sigma0}"


@contextlib.contextmanager
def noise_at_means(*modules: nn.Module):
    """Within the block, every `NoisyLinear` inside `modules` computes with its means (evaluation, probes, churn);
    each layer's own setting is restored on exit. A no-op for modules without noisy layers."""
    layers = [layer for module in modules for layer in module.modules() if isinstance(layer, NoisyLinear)]
    previous = [layer.noisy for layer in layers]
    for layer in layers:
        layer.noisy = False
    try:
        yield
    finally:
        for layer, noisy in zip(layers, previous):
            layer.noisy = noisy
