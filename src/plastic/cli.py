"""The `plastic` command line.

Each subcommand lives beside the code it drives and exposes `register(subparsers)`, which adds its parser and sets
`func(args) -> int` as the parser default. Heavy imports (torch, environments) happen inside `func`, so that
`plastic --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from plastic import __version__
from plastic.errors import UserError

# Modules that provide subcommands, in the order `plastic --help` lists them.
COMMAND_MODULES = (
    "plastic.training.commands",  # train, eval
    "plastic.synthetic.commands",  # synthetic
    "plastic.report.commands",  # report
    "plastic.sweep",  # sweep
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plastic",
        description="PLASTIC: sample-efficient off-policy RL that keeps its plasticity (Lee et al., NeurIPS 2023).",
    )
    parser.add_argument("--version", action="version", version=f"plastic-rl {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name is not None and (name == error.name or name.startswith(error.name + ".")):
                continue  # this part of the package is not installed/written yet
            raise
        if hasattr(module, "register"):
            module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    # Warnings reach users as one line each, like errors (no source line, no file:line of library code).
    warnings.showwarning = lambda message, category, *rest, **kw: print(
        f"plastic {args.command}: warning: {message}", file=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except UserError as error:
        print(f"plastic {args.command}: error: {error}", file=sys.stderr)
        return UserError.exit_code
    except KeyboardInterrupt:
        print(f"plastic {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
