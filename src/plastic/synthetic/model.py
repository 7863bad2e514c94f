"""The synthetic experiments' network (App. A.2): 3 convs 3x3 (32-64-64) and 3 FC layers (512-128-10).

Strides are `(3, 3, 1)` in the paper and `(3, 1, 1)` in the public code (`STRIDES`); no padding, so a 32x32 CIFAR
image gives 10x10 -> 3x3 -> 1x1 maps (paper) or 10x10 -> 8x8 -> 6x6 (public code). For the 8x8 digits the convs are
2x2 with strides `(2, 2, 2)` (8x8 -> 4x4 -> 2x2 -> 1x1): the same shape of network as the paper's (three convs whose
receptive fields tile the image, ending in one position with 64 channels), at about a third of its FLOPs per image.

With the paper's strides every conv's receptive fields tile its input without overlap (stride = kernel, or a single
output position), so a conv is exactly one matmul over the input's patches (`PatchConv2d`): same parameters, same
values to float rounding, and on CPU faster than oneDNN's backward of a small strided convolution where the matmul
is wide enough (conv2 and conv3; conv1, with 27 inputs per output, stays a convolution).

Switches from the toolkit (`plastic.plasticity`):
- `layer_norm`: LayerNorm after every conv (`ConvLayerNorm`) and every hidden FC layer, before the activation
  (paper App. A.3: "after each convolutional and fully-connected layer").
- `crelu`: every ReLU becomes CReLU and the next layer takes the doubled inputs (`crelu_widths(.., "double_input")`).
The head (`model.head`, the three FC layers) is what Reset re-initialises ("the last few layers", §3; App. A.2 calls
the three FC layers the head); `last_layers(k)` is the last k of them, for a reset of fewer (docs/deviations.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from plastic.plasticity import ConvLayerNorm, activation, crelu_widths

STRIDES = {"paper": (3, 3, 1), "code": (3, 1, 1), "digits": (2, 2, 2)}
KERNELS = {"paper": 3, "code": 3, "digits": 2}


# Below this many inputs per output (in_channels x kernel area) the matmul is too thin to beat oneDNN's convolution:
# the paper's conv1 (27 inputs) is faster as a convolution, conv2 (288) and conv3 (576) as matmuls
# (docs/performance.md, "Synthetic experiments").
PATCH_MIN_INPUTS = 64


class PatchConv2d(nn.Conv2d):
    """`nn.Conv2d` that computes itself as one matmul over non-overlapping patches when its receptive fields tile
    the input (stride = kernel along an axis, or one output position along it; no padding, dilation 1, groups 1) and
    the matmul is wide enough (`PATCH_MIN_INPUTS`); otherwise the ordinary convolution. Parameters and outputs are
    those of `nn.Conv2d` (output in channels_last memory). Twice differentiable, so the Hessian probe works."""

    def _tiles(self, height: int, width: int) -> tuple[int, int] | None:
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        if self.padding != (0, 0) or self.dilation != (1, 1) or self.groups != 1:
            return None
        if self.in_channels * kh * kw < PATCH_MIN_INPUTS:
            return None
        out_h, out_w = (height - kh) // sh + 1, (width - kw) // sw + 1
        if (sh == kh or out_h == 1) and (sw == kw or out_w == 1):
            return out_h, out_w
        return None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        tiles = self._tiles(height, width)
        if tiles is None:
            return super().forward(x)
        (out_h, out_w), (kh, kw) = tiles, self.kernel_size
        nhwc = x.permute(0, 2, 3, 1)[:, : out_h * kh, : out_w * kw]  # a view for channels_last input
        patches = nhwc.reshape(batch, out_h, kh, out_w, kw, channels).transpose(2, 3)
        patches = patches.reshape(batch * out_h * out_w, kh * kw * channels)
        weight = self.weight.permute(0, 2, 3, 1).reshape(self.out_channels, kh * kw * channels)
        out = F.linear(patches, weight, self.bias)
        return out.view(batch, out_h, out_w, self.out_channels).permute(0, 3, 1, 2)


class _FirstLinear(torch.autograd.Function):
    """`F.linear(x, weight, bias)` whose weight gradient is computed as `(x^T g)^T` instead of `g^T x`: for the patch
    path's first layer (x: 10,368 rows of 27 patch values for a CIFAR batch) MKL's kernel is faster in that order
    (docs/performance.md); for the later, wider layers the usual order is as fast or faster."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return F.linear(x, weight, bias)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = grad @ weight if ctx.needs_input_grad[0] else None
        grad_bias = grad.sum(0) if ctx.has_bias else None
        return grad_x, (x.t() @ grad).t(), grad_bias


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of `SyntheticNet`."""

    image_shape: tuple[int, int, int] = (3, 32, 32)
    """(channels, height, width) of the input."""
    channels: tuple[int, ...] = (32, 64, 64)
    strides: tuple[int, ...] = STRIDES["paper"]
    kernel: int = 3
    """Side of every conv's square kernel."""
    hidden: tuple[int, ...] = (512, 128)
    """Hidden FC widths; the output layer has `num_classes` units."""
    num_classes: int = 10
    layer_norm: bool = False
    crelu: bool = False


def default_architecture(image_shape: tuple[int, int, int]) -> tuple[int, tuple[int, ...]]:
    """(kernel, strides): the paper's where they fit (32x32 CIFAR), else the digits' 2x2 convs with strides 2."""
    try:
        conv_output_size(min(image_shape[1:]), STRIDES["paper"], KERNELS["paper"])
    except ValueError:
        return KERNELS["digits"], STRIDES["digits"]
    return KERNELS["paper"], STRIDES["paper"]


def conv_output_size(size: int, strides: tuple[int, ...], kernel: int = 3) -> int:
    for stride in strides:
        size = (size - kernel) // stride + 1
        if size < 1:
            raise ValueError(f"strides={strides} with {kernel}x{kernel} kernels shrink the image below 1 pixel; "
                             "use smaller strides")
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
            layers.append(PatchConv2d(in_channels, out_channels, config.kernel, stride))
            if config.layer_norm:
                layers.append(ConvLayerNorm(out_channels))
            layers.append(activation(config.crelu))
            in_channels = next_in
        self.backbone = nn.Sequential(*layers)
        features = in_channels * (conv_output_size(height, config.strides, config.kernel)
                                   * conv_output_size(width, config.strides, config.kernel))
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

    def last_layers(self, count: int) -> nn.Sequential:
        """The head's last `count` FC layers with the LayerNorms and activations between them (the same modules, not
        copies): `count` = all of them is the whole head; 1 is the output layer alone."""
        linears = [index for index, module in enumerate(self.head) if isinstance(module, nn.Linear)]
        if not 1 <= count <= len(linears):
            raise ValueError(f"reset_layers={count}: the head has {len(linears)} FC layers; allowed 1..{len(linears)}")
        return self.head[linears[-count]:]

    # ------------------------------------------------------------------ patch-rows training path
    @property
    def patch_rows(self) -> int | None:
        """Rows per image of `to_patches`, or None when the convs do not allow the patch path.

        When every conv but the last has stride = kernel and the last conv has a single output position (the paper's
        CIFAR model, the digits model), every conv's receptive fields tile its input and the logits depend only on
        the top-left `kernel ** depth` pixels. Laid out once as rows of first-conv patches in the right order
        (`to_patches`), the whole network is a chain of matmuls on views (`forward_patches`): conv 1 multiplies the
        rows, each later conv multiplies the previous output with `kernel ** 2` consecutive rows joined into one.
        No patch copies, no gradient scatter, no work on pixels the logits never see; same values as `forward`.
        """
        config = self.config
        kernel = config.kernel
        if any(stride != kernel for stride in config.strides[:-1]):
            return None
        _, height, width = config.image_shape
        if conv_output_size(height, config.strides, kernel) != 1 or conv_output_size(width, config.strides, kernel) != 1:
            return None
        return kernel ** (2 * (len(config.strides) - 1))

    def to_patches(self, images: torch.Tensor) -> torch.Tensor:
        """(N, H, W, C) images -> (N * patch_rows, kernel * kernel * C) contiguous rows, one per first-conv patch,
        features in (y, x, c) order; per image the rows are ordered by the last conv's kernel position first, then
        the previous conv's, down to the second conv's (the base-`kernel` digits of the patch's position)."""
        if self.patch_rows is None:
            raise ValueError("this model's convs do not tile the image; use forward()")
        kernel, depth = self.config.kernel, len(self.config.strides)
        count, _, _, channels = images.shape
        used = kernel ** depth
        digits = images[:, :used, :used].reshape(count, *[kernel] * depth, *[kernel] * depth, channels)
        # axes 1..depth: the row's digits, most significant first; depth+1..2*depth: the column's
        order = [0, *[axis for level in range(1, depth + 1) for axis in (level, depth + level)], 2 * depth + 1]
        return digits.permute(order).reshape(-1, kernel * kernel * channels).contiguous()

    def forward_patches(self, rows: torch.Tensor) -> torch.Tensor:
        """Logits from `to_patches` rows (`patch_rows` consecutive rows per image). ReLUs run in place here: the
        matmul or LayerNorm before each does not keep its output for the backward pass."""
        group = self.config.kernel ** 2
        h = rows
        for module in [*self.backbone, *self.head]:
            if isinstance(module, nn.Conv2d):
                weight = module.weight.permute(0, 2, 3, 1).reshape(module.out_channels, -1)
                if h is rows:  # the first conv multiplies the rows themselves
                    h = _FirstLinear.apply(h, weight, module.bias)
                else:  # the kernel*kernel rows of one position of this conv become its input features
                    h = F.linear(h.reshape(h.shape[0] // group, -1), weight, module.bias)
            elif isinstance(module, ConvLayerNorm):
                h = F.layer_norm(h, (module.num_channels,), module.weight, module.bias, module.eps)
            elif type(module) is nn.ReLU:
                h = torch.relu_(h)
            else:
                h = module(h)
        return h


def build_model(
    image_shape: tuple[int, int, int],
    num_classes: int = 10,
    strides: tuple[int, ...] | None = None,
    layer_norm: bool = False,
    crelu: bool = False,
    kernel: int | None = None,
) -> SyntheticNet:
    """The App. A.2 network for `image_shape` in channels_last memory format (faster convs on CPU).

    `strides=None` takes `default_architecture(image_shape)` (kernel and strides); `kernel=None` is 3 otherwise.
    """
    if strides is None:
        default_kernel, strides = default_architecture(image_shape)
        kernel = default_kernel if kernel is None else kernel
    model = SyntheticNet(
        ModelConfig(
            image_shape=tuple(image_shape), strides=tuple(strides), kernel=3 if kernel is None else kernel,
            num_classes=num_classes, layer_norm=layer_norm, crelu=crelu,
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
                macs += y.numel() * module.in_channels * module.kernel_size[0] * module.kernel_size[1]
            elif isinstance(module, nn.Linear):
                macs += module.in_features * module.out_features
            x = y
    return 3 * 2 * macs * batch_size
