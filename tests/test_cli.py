"""The `plastic` command itself: version, help, and exit codes."""

import subprocess
import sys

import plastic
from plastic.cli import main


def test_version_flag_prints_package_version(capsys):
    try:
        main(["--version"])
    except SystemExit as exit_:
        assert exit_.code == 0
    assert plastic.__version__ in capsys.readouterr().out


def test_help_runs_as_a_module():
    result = subprocess.run([sys.executable, "-m", "plastic", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "usage: plastic" in result.stdout
