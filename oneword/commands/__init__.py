"""The `oneword` command line: one module per subcommand, each a thin shell over the library.

A subcommand module has `register(subparsers)`, which adds its parser and sets `func`, and `run(args)`, which
imports what it needs (torch, diffusers) only when it runs, so `oneword --help` stays fast. `main` is the one
place that turns a user's mistake (`OnewordError`) into one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import OnewordError
from . import convert, demo, edit, evaluate, generate, inspect, learn, learn_many, ui, variations, world
from ._common import HelpFormatter, quiet_libraries

SUBCOMMANDS = (learn, learn_many, generate, variations, edit, evaluate, convert, inspect, ui, demo, world)

__all__ = ["main", "build_parser", "register", "quiet_libraries"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oneword", description="Textual inversion: learn a new word for your photos.",
                                     formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    register(parser.add_subparsers(metavar="COMMAND"))
    return parser


def register(subparsers) -> None:
    """Add every subcommand to `subparsers` (an argparse sub-parsers action)."""
    for module in SUBCOMMANDS:
        module.register(subparsers)


def main(argv: list[str] | None = None) -> int:
    """Run `oneword ARGV...`; returns the exit code (0 done, 2 a one-line error on stderr)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        quiet_libraries()
        args.func(args)
    except OnewordError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 2
    return 0
