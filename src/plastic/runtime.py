"""Process-wide runtime tuning shared by every long job (training, the synthetic experiments, benchmarks).

`enable_huge_pages()` is called by the `plastic` command before anything imports torch; spawned workers inherit it
through the environment. Python users call it themselves, before importing torch.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def enable_huge_pages() -> None:
    """Ask torch's CPU allocator for transparent huge pages on allocations of 2 MB and more: fewer TLB misses on the
    Rainbow update's multi-MB weights, gradients and Adam moments (docs/performance.md). torch reads the variable
    when it first allocates, so call this before that; a value the user set wins (`THP_MEM_ALLOC_ENABLE=0` opts
    out). Memory placement only: results are unchanged."""
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")


def tune_allocator() -> None:
    """Keep glibc from mapping, zeroing and unmapping multi-MB temporaries on every call: raise the mmap threshold to
    32 MiB and the trim threshold to 1 GiB. The measured gains are in docs/performance.md
    (benchmarks/update_speed.py, benchmarks/synthetic_speed.py). Harmless elsewhere; a no-op off glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 32 << 20)
    libc.mallopt(m_trim_threshold, 1 << 30)


# ------------------------------------------------------------------------------------------------ MKL code path
# torch's bundled MKL takes its AVX2 path on AMD CPUs whatever they support (a vendor check). The well-known
# workaround is a one-line `mkl_serv_intel_cpu_true` returning 1, loaded before torch with LD_PRELOAD. It is a hack,
# so it is opt-in only (`plastic --mkl-avx512 ...` or PLASTIC_MKL_AVX512=1), never on by default. Its measured
# effect is in docs/performance.md. Results agree with the AVX2 path to float rounding (tested against
# float64). No effect on Intel CPUs (already on their best path) or builds without MKL.

MKL_SHIM_ENV = "PLASTIC_MKL_AVX512"
_MKL_RESTARTED_ENV = "_PLASTIC_MKL_RESTARTED"
_MKL_SHIM_NAME = "libplastic_mkl_avx512.so"
_MKL_SHIM_SOURCE = "int mkl_serv_intel_cpu_true(void) { return 1; }\n"


def available_memory_bytes() -> int | None:
    """Memory the system can give a new allocation without swapping (Linux's MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def cache_dir() -> Path:
    """The user cache of plastic-rl: `$XDG_CACHE_HOME/plastic-rl`, by default `~/.cache/plastic-rl`."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "plastic-rl"


def mkl_shim_path() -> Path:
    return cache_dir() / "mkl" / _MKL_SHIM_NAME


def build_mkl_shim() -> Path:
    """Compile the one-line shim into the user cache (once; atomic) and return its path. ValueError without a C
    compiler."""
    path = mkl_shim_path()
    if path.exists():
        return path
    compiler = next((c for c in (os.environ.get("CC"), "cc", "gcc", "clang") if c and shutil.which(c)), None)
    if compiler is None:
        raise ValueError("--mkl-avx512 needs a C compiler ($CC, cc, gcc or clang) to build its one-line shim; "
                         "install one (e.g. apt install gcc) or drop the option")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as folder:
        source, library = Path(folder) / "shim.c", Path(folder) / _MKL_SHIM_NAME
        source.write_text(_MKL_SHIM_SOURCE)
        result = subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", str(library), str(source)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise ValueError(f"building the MKL shim with {compiler} failed: {result.stderr.strip()[:300]}")
        os.replace(library, path)
    return path


def mkl_shim_loaded() -> bool:
    """Whether this process runs with the shim preloaded."""
    try:
        return _MKL_SHIM_NAME in Path("/proc/self/maps").read_text()
    except OSError:
        return False


def mkl_code_path() -> int | None:
    """MKL's CPU dispatch code (`mkl_serv_cpu_detect`) in torch's bundled MKL, or None without one. It changes when
    the shim takes effect (0 -> 7 on the AMD machines here); a diagnostic, not a stable scale."""
    import torch

    library = Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"
    try:
        return int(ctypes.CDLL(str(library)).mkl_serv_cpu_detect())
    except (OSError, AttributeError):
        return None


def mkl_avx512_would_help() -> bool:
    """True on an AMD CPU with AVX-512 whose bundled MKL runs without the shim: where `--mkl-avx512` speeds up
    matmuls (used for a one-line hint, never to switch it on)."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return ("AuthenticAMD" in cpuinfo and " avx512f" in cpuinfo and not mkl_shim_loaded()
            and mkl_code_path() is not None)


def mkl_avx512_requested() -> bool:
    return os.environ.get(MKL_SHIM_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def reexec_with_mkl_shim() -> None:
    """Restart this process (same interpreter and command line) with the shim in LD_PRELOAD, unless it is loaded
    already. Worker processes inherit LD_PRELOAD through the environment. Raises ValueError when the shim cannot be
    built."""
    if mkl_shim_loaded():
        return
    if os.environ.get(_MKL_RESTARTED_ENV) == "1":  # restarted once already and still not loaded: do not loop
        raise ValueError(f"the MKL shim did not load (LD_PRELOAD={os.environ.get('LD_PRELOAD', '')!r}); "
                         "drop --mkl-avx512 / PLASTIC_MKL_AVX512")
    shim = str(build_mkl_shim())
    environment = dict(os.environ)
    environment["LD_PRELOAD"] = " ".join(filter(None, [shim, environment.get("LD_PRELOAD", "")]))
    environment[MKL_SHIM_ENV] = "1"
    environment[_MKL_RESTARTED_ENV] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], environment)
