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


class MaybeCompiled:
    """`fn`, compiled on first use; falls back to `fn` itself (eager) when compilation fails and `strict` is off."""

    def __init__(self, fn: Callable, *, strict: bool):
        has_compiler = cpp_compiler() is not None
        if strict and not has_compiler:
            raise ValueError("compile = 'on' needs a C++ compiler for torch.compile (none found as $CXX or g++); "
                             "install g++ (e.g. apt install g++) or run with --set compile=off")
        if not has_compiler:
            warnings.warn("torch.compile skipped: no C++ compiler ($CXX or g++); running eagerly", stacklevel=2)
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(default_cache_dir()))
        self.eager = fn
        self.compiled = torch.compile(fn, dynamic=False)
        self.strict = strict
        self.failed = not has_compiler

    def __call__(self, *args, **kwargs):
        if self.failed:
            return self.eager(*args, **kwargs)
        try:
            return self.compiled(*args, **kwargs)
        except Exception as error:  # dynamo/inductor failures come in many types (BackendCompilerFailed, ...)
            message = str(error).strip()
            reason = message.splitlines()[0] if message else type(error).__name__
            if self.strict:
                raise ValueError(f"torch.compile failed ({reason}); run with --set compile=off") from error
            warnings.warn(f"torch.compile failed ({reason}); running eagerly", stacklevel=2)
            self.failed = True
            return self.eager(*args, **kwargs)
