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

from plastic import __version__, runtime
from plastic.errors import UserError

# Modules that provide subcommands, in the order `plastic --help` lists them.
COMMAND_MODULES = (
    "plastic.training.commands",  # train, eval
    "plastic.synthetic.commands",  # synthetic
    "plastic.report.commands",  # report
    "plastic.sweep",  # sweep
)


MKL_HELP = ("opt-in: restart with a one-line shim that lets torch's bundled MKL take its AVX-512 path on AMD CPUs "
            "(it checks the vendor and takes AVX2 there); matmuls ~1.2x (Zen 4) to 2.3x (Zen 5) faster, same results "
            "to float rounding. Needs a C compiler. Same as PLASTIC_MKL_AVX512=1")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plastic",
        description="PLASTIC: sample-efficient off-policy RL that keeps its plasticity (Lee et al., NeurIPS 2023).",
    )
    parser.add_argument("--version", action="version", version=f"plastic-rl {__version__}")
    parser.add_argument("--mkl-avx512", action="store_true", help=MKL_HELP)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name is not None and (name == error.name or name.startswith(error.name + ".")):
                continue  # a subcommand whose optional dependencies are not installed
            raise
        if hasattr(module, "register"):
            module.register(subparsers)
    for subparser in subparsers.choices.values():  # also accepted after the command; SUPPRESS keeps a
        # top-level --mkl-avx512 from being overwritten by the subcommand's default
        subparser.add_argument("--mkl-avx512", action="store_true", default=argparse.SUPPRESS, help=MKL_HELP)
    return parser


def main(argv: list[str] | None = None) -> int:
    runtime.enable_huge_pages()  # before anything imports torch
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    if args.mkl_avx512 or runtime.mkl_avx512_requested():
        try:
            runtime.reexec_with_mkl_shim()  # returns only when the shim is loaded already
        except ValueError as error:
            print(f"plastic: error: {error}", file=sys.stderr)
            return UserError.exit_code
        print("plastic: MKL AVX-512 path on (--mkl-avx512: vendor-check override, opt-in)", file=sys.stderr)
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
