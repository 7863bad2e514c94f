"""DrQ image augmentation (Yarats et al. 2021; paper Table 5): random shift ±pad pixels with replicate padding, and
intensity jitter x * (1 + scale * clip(N(0, 1), -2, 2)). All randomness comes from an explicit torch.Generator."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def random_shift(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Pad each image by `pad` (replicating the border) and crop back at a random offset per sample."""
    if pad == 0:
        return x
    batch, _, height, width = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    offsets = torch.randint(0, 2 * pad + 1, (batch, 2), generator=generator, device=generator.device).tolist()
    # A per-sample slice is faster on CPU than grid_sample or advanced indexing (PERF_NOTES.md).
    return torch.stack([padded[i, :, dy:dy + height, dx:dx + width] for i, (dy, dx) in enumerate(offsets)])


def intensity(x: torch.Tensor, scale: float, generator: torch.Generator) -> torch.Tensor:
    noise = torch.randn((x.shape[0], 1, 1, 1), generator=generator, device=generator.device, dtype=x.dtype)
    return x * (1.0 + scale * noise.clamp_(-2.0, 2.0))


def augment(x: torch.Tensor, pad: int, intensity_scale: float, generator: torch.Generator) -> torch.Tensor:
    x = random_shift(x, pad, generator)
    return intensity(x, intensity_scale, generator) if intensity_scale > 0 else x
