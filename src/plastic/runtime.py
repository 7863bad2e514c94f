"""Process-wide runtime tuning shared by every long job (training, the synthetic experiments, benchmarks).

Also see `plastic/__init__.py`, which sets `THP_MEM_ALLOC_ENABLE=1` (transparent huge pages for torch's large CPU
allocations) before torch can read it; spawned workers inherit it through the environment.
"""

from __future__ import annotations

import ctypes


def tune_allocator() -> None:
    """Keep glibc from mapping, zeroing and unmapping multi-MB temporaries on every call: raise the mmap threshold to
    32 MiB and the trim threshold to 1 GiB. PERF_NOTES.md: a Rainbow update 64-69 -> 46-52 ms with the MKL fix; the
    synthetic CIFAR update ~7 -> ~5 ms (benchmarks/synthetic_speed.py). Harmless elsewhere; a no-op off glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 32 << 20)
    libc.mallopt(m_trim_threshold, 1 << 30)
