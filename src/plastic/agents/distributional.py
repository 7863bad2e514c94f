"""Categorical (C51) distributional RL (Bellemare et al. 2017), as used by Rainbow (paper Table 5).

The projection of the n-step target distribution onto the fixed support is written in closed form, vectorised over
the batch (no Python loop, unlike the public code): for support z_1..z_K with spacing dz, the projected mass on atom
i is sum_j clip(1 - |clip(r + d z_j, v_min, v_max) - z_i| / dz, 0, 1) p_j (Dopamine's formula).
"""

from __future__ import annotations

import torch


def support(v_min: float, v_max: float, num_atoms: int, device=None) -> torch.Tensor:
    return torch.linspace(v_min, v_max, num_atoms, device=device)


def project_distribution(probs: torch.Tensor, rewards: torch.Tensor, discounts: torch.Tensor,
                         atoms: torch.Tensor) -> torch.Tensor:
    """Project the distribution of r + d * Z (Z ~ probs on `atoms`) back onto `atoms`.

    probs: (B, K); rewards, discounts: (B,); atoms: (K,) evenly spaced. Returns (B, K), rows summing to 1.
    """
    v_min, v_max = atoms[0], atoms[-1]
    delta = (v_max - v_min) / (atoms.numel() - 1)
    target_atoms = (rewards[:, None] + discounts[:, None] * atoms[None, :]).clamp(v_min, v_max)  # (B, K_j)
    weights = (1.0 - (target_atoms[:, None, :] - atoms[None, :, None]).abs() / delta).clamp(0.0, 1.0)  # (B, K_i, K_j)
    return torch.bmm(weights, probs[:, :, None]).squeeze(-1)
