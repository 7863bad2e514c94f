"""Optional `torch.compile` of an agent's hot passes (config key `compile`: on | off | auto).

Inductor fuses what eager PyTorch runs as separate memory-bound passes over the weights: the noisy layers' weight
materialisation mu + sigma * (eps_out eps_in^T) and its backward, the LayerNorms and the distributional head. The
convolutions and matmuls stay in oneDNN/MKL, so the gain is in the elementwise work (benchmarks/update_speed.py
prints eager and compiled figures side by side). Compiled code is deterministic on CPU: the same seed still gives
the same run, and exact resume holds (the same kernels are rebuilt from the cache).

The first call compiles (10-40 s cold); kernels are cached in `$TORCHINDUCTOR_CACHE_DIR`, by default
`~/.cache/plastic-rl/inductor`, so a second run starts in a few seconds. Compilation needs a C++ compiler and the
Python headers. When it fails, `strict=False` (compile = "auto") warns once and runs the eager function; `strict=True`
(compile = "on") raises a ValueError that says what to install or to set compile=off.

`compile_mode = "reduce-overhead"` (CUDA only) also captures each pass as a CUDA graph: one launch replays all of
its kernels, which matters on a GPU, where the Rainbow update at batch 32 is hundreds of small kernels. A graph
replays into the same output memory each time, so a pass's outputs are cloned before they are handed back (a few KB
at batch 32: the per-sample losses and the target distribution), and every call starts a new graph step: the first
SAM pass's losses then survive the second pass, and nothing else has to know that the pass is a graph. Parameters,
noise buffers and the optimizer state stay at fixed addresses (noise, resets and the EMA write in place), so the
graphs are captured once and replayed for the whole run.
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import Callable

import torch

from plastic.runtime import cache_dir


def default_cache_dir() -> Path:
    return cache_dir() / "inductor"


def cpp_compiler() -> str | None:
    """The C++ compiler inductor will use (its default is $CXX or g++), or None when there is none."""
    return shutil.which(os.environ.get("CXX", "g++"))


def check_mode(mode: str, device: torch.device) -> None:
    """ValueError (one line) when `mode` cannot run on `device`: CUDA graphs need a CUDA device."""
    if mode == "reduce-overhead" and device.type != "cuda":
        raise ValueError(f"compile_mode = 'reduce-overhead' captures CUDA graphs and needs a cuda device, not "
                         f"{device.type}; use compile_mode=default")


class MaybeCompiled:
    """`fn`, compiled on first use; falls back to `fn` itself (eager) when compilation fails and `strict` is off.
    `mode` is torch.compile's ("default" or "reduce-overhead"; the latter clones the outputs, see the module doc)."""

    def __init__(self, fn: Callable, *, strict: bool, mode: str = "default"):
        has_compiler = cpp_compiler() is not None
        if strict and not has_compiler:
            raise ValueError("compile = 'on' needs a C++ compiler for torch.compile (none found as $CXX or g++); "
                             "install g++ (e.g. apt install g++) or run with --set compile=off")
        if not has_compiler:
            warnings.warn("torch.compile skipped: no C++ compiler ($CXX or g++); running eagerly", stacklevel=2)
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(default_cache_dir()))
        self.eager = fn
        self.graphs = mode == "reduce-overhead"
        self.compiled = torch.compile(fn, dynamic=False, mode=None if mode == "default" else mode)
        self.strict = strict
        self.failed = not has_compiler

    def __call__(self, *args, **kwargs):
        if self.failed:
            return self.eager(*args, **kwargs)
        try:
            if not self.graphs:
                return self.compiled(*args, **kwargs)
            torch.compiler.cudagraph_mark_step_begin()
            return torch.utils._pytree.tree_map_only(torch.Tensor, torch.clone, self.compiled(*args, **kwargs))
        except Exception as error:  # dynamo/inductor failures come in many types (BackendCompilerFailed, ...)
            message = str(error).strip()
            reason = message.splitlines()[0] if message else type(error).__name__
            if self.strict:
                raise ValueError(f"torch.compile failed ({reason}); run with --set compile=off") from error
            warnings.warn(f"torch.compile failed ({reason}); running eagerly", stacklevel=2)
            self.failed = True
            return self.eager(*args, **kwargs)
