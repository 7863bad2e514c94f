"""Opt-in mixed precision for the Rainbow update (config key `precision`: fp32 | bf16; docs/performance.md).

`bf16` runs the update's convolutions and matmuls in bfloat16 (`torch.autocast`), nothing else: the master weights,
their gradients and Adam's moments stay float32, and so do the losses, the softmax/log-softmax over atoms (the head
casts its logits back to float32) and the C51 projection (`full_precision` around it). Acting and evaluation stay
float32 (at batch 1, casting the weights would cost more than the matmul saves). bfloat16 keeps float32's exponent
range, so no loss scaling is needed.

bf16 is worth it only on hardware with bf16 units: CPUs with AVX512-BF16 (AMD Zen 4 and later, Intel Cooper Lake)
or AMX (Intel Sapphire Rapids and later), and CUDA GPUs that support it (Ampere and later). Elsewhere
`check_supported` refuses it with the reason, rather than emulating it slower than float32.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Callable

import torch

PRECISIONS = ("fp32", "bf16")
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of native bf16 dot products


def cpu_flags() -> set[str]:
    """The CPU feature flags from /proc/cpuinfo (Linux); empty where it cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def bf16_unsupported_reason(device: torch.device) -> str | None:
    """Why `device` has no native bf16 units, or None when it has them."""
    if device.type == "cuda":
        return None if torch.cuda.is_bf16_supported() else f"CUDA device {torch.cuda.get_device_name(device)} has no bf16 support"
    if device.type == "cpu":
        if cpu_flags() & set(CPU_BF16_FLAGS):
            return None
        return f"this CPU has no bf16 units (none of the CPU flags {', '.join(CPU_BF16_FLAGS)})"
    return f"bf16 is implemented for cpu and cuda devices, not {device.type}"


def check_supported(precision: str, device: torch.device) -> None:
    """ValueError (one line, with the reason) when `precision` is bf16 and `device` cannot run it natively."""
    if precision == "bf16":
        reason = bf16_unsupported_reason(device)
        if reason is not None:
            raise ValueError(f"precision = 'bf16' needs bf16 hardware: {reason}; use --set precision=fp32")


def mixed(fn: Callable, precision: str, device: torch.device) -> Callable:
    """`fn` run under bf16 autocast when `precision` is bf16; `fn` itself for fp32."""
    if precision == "fp32":
        return fn

    @functools.wraps(fn)
    def run(*args, **kwargs):
        with torch.autocast(device.type, dtype=torch.bfloat16):
            return fn(*args, **kwargs)

    return run


def full_precision(device: torch.device):
    """A context in which autocast is off (float32 math inside a bf16 region); a no-op outside autocast."""
    if torch.is_autocast_enabled(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()
