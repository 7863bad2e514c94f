"""DrQ image augmentation (Yarats et al. 2021; paper Table 5): random shift ±pad pixels with replicate padding, and
intensity jitter x * (1 + scale * clip(N(0, 1), -2, 2)). All randomness comes from an explicit torch.Generator."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def random_shift(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Pad each image by `pad` (replicating the border) and crop back at a random offset per sample. Any dtype, so
    uint8 frames can be shifted before they are converted to float."""
    if pad == 0:
        return x
    batch, _, height, width = x.shape
    if x.is_floating_point():
        padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")  # one kernel; the concatenation is slower on floats
    else:  # replication_pad2d has no integer kernels in older torch releases
        padded = torch.cat([x[:, :, :1].expand(-1, -1, pad, -1), x, x[:, :, -1:].expand(-1, -1, pad, -1)], dim=2)
        padded = torch.cat([padded[..., :1].expand(-1, -1, -1, pad), padded,
                            padded[..., -1:].expand(-1, -1, -1, pad)], dim=3)
    offsets = torch.randint(0, 2 * pad + 1, (batch, 2), generator=generator, device=generator.device).tolist()
    # A per-sample slice is faster on CPU than grid_sample or advanced indexing (docs/performance.md).
    return torch.stack([padded[i, :, dy:dy + height, dx:dx + width] for i, (dy, dx) in enumerate(offsets)])


def intensity_noise(batch: int, generator: torch.Generator, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One N(0, 1) draw per sample, shaped to scale whole images."""
    return torch.randn((batch, 1, 1, 1), generator=generator, device=generator.device, dtype=dtype)


def jitter(x: torch.Tensor, noise: torch.Tensor, scale: float) -> torch.Tensor:
    """x * (1 + scale * clip(noise, -2, 2))."""
    return x * (1.0 + scale * noise.clamp(-2.0, 2.0))


def intensity(x: torch.Tensor, scale: float, generator: torch.Generator) -> torch.Tensor:
    return jitter(x, intensity_noise(x.shape[0], generator, x.dtype), scale)


def augment(x: torch.Tensor, pad: int, intensity_scale: float, generator: torch.Generator) -> torch.Tensor:
    x = random_shift(x, pad, generator)
    return intensity(x, intensity_scale, generator) if intensity_scale > 0 else x


def shift_frames(frames: torch.Tensor, pad: int, intensity_scale: float,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The random half of `augment_frames`: the shifted uint8 frames and the intensity noise (None when the scale is
    0), drawn in `augment`'s order."""
    shifted = random_shift(frames, pad, generator)
    if intensity_scale <= 0:
        return shifted, None
    return shifted, intensity_noise(frames.shape[0], generator)


def frames_to_float(shifted: torch.Tensor, noise: torch.Tensor | None, intensity_scale: float, high: float,
                    memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """The deterministic half: float conversion, intensity jitter and the layout, one elementwise pass over the batch
    when compiled (agents/rainbow.py compiles it with the update), bit for bit what the eager ops give."""
    x = shifted.float() / high
    if noise is not None:
        x = jitter(x, noise, intensity_scale)
    return x.contiguous(memory_format=memory_format)


def augment_frames(frames: torch.Tensor, pad: int, intensity_scale: float, generator: torch.Generator,
                   high: float = 255.0) -> torch.Tensor:
    """`augment(frames / high)` for uint8 frames (`high`: the observation space's upper bound, 255 for pixels), bit
    for bit and with the same draws, but shifting the uint8 frames before the float conversion, which is cheaper."""
    return frames_to_float(*shift_frames(frames, pad, intensity_scale, generator), intensity_scale, high)
