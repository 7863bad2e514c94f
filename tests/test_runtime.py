"""plastic.runtime: the opt-in MKL AVX-512 shim (`plastic --mkl-avx512`)."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from plastic import runtime
from plastic.cli import main

HAS_C_COMPILER = any(shutil.which(c) for c in ("cc", "gcc", "clang"))

# In a child process: which MKL path it takes, and matmul errors against float64 for the synthetic model's shapes.
PROBE = """
import json, torch
from plastic import runtime
torch.manual_seed(0)
errors = []
for m, k, n in [(10368, 27, 32), (1152, 288, 64), (128, 512, 128), (257, 300, 129)]:
    a, b = torch.randn(m, k), torch.randn(k, n)
    exact = a.double() @ b.double()
    errors.append(float((a @ b - exact).norm() / exact.norm()))
print(json.dumps({"loaded": runtime.mkl_shim_loaded(), "code": runtime.mkl_code_path(), "errors": errors}))
"""


def _probe(preload: str | None) -> dict:
    environment = {key: value for key, value in os.environ.items() if key != "LD_PRELOAD"}
    if preload:
        environment["LD_PRELOAD"] = preload
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=environment, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not HAS_C_COMPILER, reason="needs a C compiler")
def test_shim_changes_the_mkl_path_and_keeps_matmuls_exact_to_float_rounding(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    shim = runtime.build_mkl_shim()
    assert shim == tmp_path / "plastic-rl" / "mkl" / "libplastic_mkl_avx512.so" and shim.exists()
    assert runtime.build_mkl_shim() == shim  # built once
    plain, shimmed = _probe(None), _probe(str(shim))
    assert not plain["loaded"] and shimmed["loaded"]
    if plain["code"] is None:
        pytest.skip("this torch build has no bundled MKL")
    if "AuthenticAMD" in open("/proc/cpuinfo").read():  # the vendor check only bites on AMD
        assert shimmed["code"] != plain["code"]
    for errors in (plain["errors"], shimmed["errors"]):
        assert max(errors) < 1e-6  # float32 matmul vs float64: relative Frobenius error ~1e-7


def test_reexec_puts_the_shim_first_in_ld_preload_and_keeps_the_command_line(tmp_path, monkeypatch):
    shim = tmp_path / "libplastic_mkl_avx512.so"
    monkeypatch.setattr(runtime, "build_mkl_shim", lambda: shim)
    monkeypatch.setattr(runtime, "mkl_shim_loaded", lambda: False)
    monkeypatch.setenv("LD_PRELOAD", "/lib/other.so")
    monkeypatch.delenv("_PLASTIC_MKL_RESTARTED", raising=False)
    monkeypatch.setattr(sys, "orig_argv", ["python3", "-m", "plastic", "--mkl-avx512", "synthetic", "--seeds", "3"])
    calls = []
    monkeypatch.setattr(os, "execve", lambda path, argv, env: calls.append((path, argv, env)))
    runtime.reexec_with_mkl_shim()
    (path, argv, env), = calls
    assert path == sys.executable
    assert argv == [sys.executable, "-m", "plastic", "--mkl-avx512", "synthetic", "--seeds", "3"]
    assert env["LD_PRELOAD"] == f"{shim} /lib/other.so" and env[runtime.MKL_SHIM_ENV] == "1"


def test_reexec_refuses_to_loop_when_the_shim_does_not_load(monkeypatch):
    monkeypatch.setattr(runtime, "mkl_shim_loaded", lambda: False)
    monkeypatch.setenv("_PLASTIC_MKL_RESTARTED", "1")
    monkeypatch.setattr(os, "execve", lambda *args: pytest.fail("must not restart again"))
    with pytest.raises(ValueError, match="did not load"):
        runtime.reexec_with_mkl_shim()


def test_reexec_is_a_no_op_once_the_shim_is_loaded(monkeypatch):
    monkeypatch.setattr(runtime, "mkl_shim_loaded", lambda: True)
    monkeypatch.setattr(os, "execve", lambda *args: pytest.fail("must not restart"))
    runtime.reexec_with_mkl_shim()


def test_missing_c_compiler_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ValueError, match="needs a C compiler"):
        runtime.build_mkl_shim()
    monkeypatch.setattr(runtime, "mkl_shim_loaded", lambda: False)
    for argv in (["--mkl-avx512", "report", str(tmp_path)], ["report", str(tmp_path), "--mkl-avx512"]):
        assert main(argv) == 2  # the flag works before and after the command
        err = capsys.readouterr().err.strip()
        assert err.startswith("plastic: error: --mkl-avx512 needs a C compiler") and "\n" not in err


@pytest.mark.parametrize("value, expected", [("1", True), ("on", True), ("0", False), ("", False)])
def test_environment_variable_requests_the_shim(monkeypatch, value, expected):
    monkeypatch.setenv(runtime.MKL_SHIM_ENV, value)
    assert runtime.mkl_avx512_requested() is expected
