"""The ``attumamba-seg`` command line.

Each sub-command lives next to the code it drives and exposes ``register(subparsers)``,
which adds its parser and sets ``func``. This file only collects them and turns
:class:`~attumamba.errors.InputError` into a one-line message and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import CancelledError, InputError

# Modules that provide a sub-command, in the order ``--help`` lists them.
COMMAND_MODULES = (
    "attumamba.synth.command",
    "attumamba.training.command",
    "attumamba.inference.command",
    "attumamba.server.command",
    "attumamba.batch.command",
    "attumamba.response.command",
    "attumamba.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attumamba-seg",
        description="Whole-body PET/CT lesion segmentation with Mamba U-Nets (AttUMambaSeg backend).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except InputError as exc:
        print(f"attumamba-seg {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except CancelledError as exc:
        print(f"attumamba-seg {args.command}: cancelled: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"attumamba-seg {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
