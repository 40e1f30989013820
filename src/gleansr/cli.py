"""The ``gleansr`` command line: one module per sub-command under ``gleansr.commands``.

Each command module exposes ``NAME``, ``HELP``, ``add_arguments(parser)`` and ``run(args) -> int``.
User errors (:class:`gleansr.errors.GleanError`) become one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from .errors import GleanError

# Explicit, ordered list: no import-time discovery.
COMMANDS = (
    "demo",
    "data",
    "verify",
    "upscale",
    "models",
    "eval",
    "make_lr",
    "train",
    "export",
    "bank",
    "convert",
    "serve",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gleansr", description="GLEAN large-factor super-resolution.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"gleansr.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"gleansr.commands.{name}":
                continue  # command not built yet
            raise
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except GleanError as exc:
        print(f"gleansr: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gleansr: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
