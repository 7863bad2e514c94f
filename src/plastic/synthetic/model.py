"""The synthetic experiments' network (App. A.2): 3 convs 3x3 (32-64-64) and 3 FC layers (512-128-10).

Strides are `(3, 3, 1)` in the paper and `(3, 1, 1)` in the public code (`STRIDES`); no padding, so a 32x32 CIFAR
image gives 10x10 -> 3x3 -> 1x1 maps (paper) or 10x10 -> 8x8 -> 6x6 (public code). For the 8x8 digits the strides
are `(1, 1, 1)` (8x8 -> 6x6 -> 4x4 -> 2x2), the only stride-3 free choice that keeps three 3x3 convs on 8x8.

Switches from the toolkit (`plastic.plasticity`):
- `layer_norm`: LayerNorm after every conv (`ConvLayerNorm`) and every hidden FC layer, before the activation
  (paper App. A.3: "after each convolutional and fully-connected layer").
- `crelu`: every ReLU becomes CReLU and the next layer takes the doubled inputs (`crelu_widths(.., "double_input")`).
The head (`model.head`, the three FC layers) is what Reset re-initialises ("the last few layers", §3).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from plastic.plasticity import ConvLayerNorm, activation, crelu_widths

STRIDES = {"paper": (3, 3, 1), "code": (3, 1, 1), "digits": (1, 1, 1)}


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of `SyntheticNet`."""

    image_shape: tuple[int, int, int] = (3, 32, 32)
    """(channels, height, width) of the input."""
    channels: tuple[int, ...] = (32, 64, 64)
    strides: tuple[int, ...] = STRIDES["paper"]
    hidden: tuple[int, ...] = (512, 128)
    """Hidden FC widths; the output layer has `num_classes` units."""
    num_classes: int = 10
    layer_norm: bool = False
    crelu: bool = False


def default_strides(image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """The paper's strides where they fit (32x32 CIFAR), else `(1, 1, 1)` (8x8 digits)."""
    try:
        conv_output_size(min(image_shape[1:]), STRIDES["paper"])
    except ValueError:
        return STRIDES["digits"]
    return STRIDES["paper"]


def conv_output_size(size: int, strides: tuple[int, ...], kernel: int = 3) -> int:
    for stride in strides:
        size = (size - kernel) // stride + 1
        if size < 1:
            raise ValueError(f"strides={strides} shrink the image below 1 pixel; use smaller strides")
    return size


class SyntheticNet(nn.Module):
    """`backbone` (convs) -> flatten -> `head` (FC layers); input `(N, C, H, W)`, output logits `(N, classes)`."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        if len(config.channels) != len(config.strides):
            raise ValueError(f"channels={config.channels} and strides={config.strides} must have the same length")
        self.config = config
        in_channels, height, width = config.image_shape
        layers: list[nn.Module] = []
        for out_channels, stride in zip(config.channels, config.strides):
            out_channels, next_in = crelu_widths(out_channels, "double_input") if config.crelu else (out_channels,) * 2
            layers.append(nn.Conv2d(in_channels, out_channels, 3, stride))
            if config.layer_norm:
                layers.append(ConvLayerNorm(out_channels))
            layers.append(activation(config.crelu))
            in_channels = next_in
        self.backbone = nn.Sequential(*layers)
        features = in_channels * conv_output_size(height, config.strides) * conv_output_size(width, config.strides)
        head: list[nn.Module] = [nn.Flatten()]
        for units in config.hidden:
            units, next_in = crelu_widths(units, "double_input") if config.crelu else (units, units)
            head.append(nn.Linear(features, units))
            if config.layer_norm:
                head.append(nn.LayerNorm(units))
            head.append(activation(config.crelu))
            features = next_in
        head.append(nn.Linear(features, config.num_classes))
        self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def build_model(
    image_shape: tuple[int, int, int],
    num_classes: int = 10,
    strides: tuple[int, ...] | None = None,
    layer_norm: bool = False,
    crelu: bool = False,
) -> SyntheticNet:
    """The App. A.2 network for `image_shape` in channels_last memory format (faster convs on CPU).

    `strides=None` takes `default_strides(image_shape)`.
    """
    strides = default_strides(image_shape) if strides is None else strides
    model = SyntheticNet(
        ModelConfig(
            image_shape=tuple(image_shape), strides=tuple(strides), num_classes=num_classes,
            layer_norm=layer_norm, crelu=crelu,
        )
    )
    return model.to(memory_format=torch.channels_last)


def update_flops(model: SyntheticNet, batch_size: int = 128) -> float:
    """FLOPs of one training update (forward + backward = 3x the forward multiply-adds x 2), counted on the layers."""
    macs = 0
    shape = (1, *model.config.image_shape)
    x = torch.zeros(shape)
    with torch.no_grad():
        for module in [*model.backbone, *model.head]:
            y = module(x)
            if isinstance(module, nn.Conv2d):
                macs += y.numel() * module.in_channels * 9
            elif isinstance(module, nn.Linear):
                macs += module.in_features * module.out_features
            x = y
    return 3 * 2 * macs * batch_size
