"""The `oneword` command line: one module per subcommand, each a thin shell over the library.

A subcommand module has `register(subparsers)`, which adds its parser and sets `func`, and `run(args)`, which
imports what it needs (torch, diffusers) only when it runs, so `oneword --help` stays fast. `main` is the one
place that turns a user's mistake (`OnewordError`, a bad argument, memory the device does not have) into one
line on stderr and exit code 2; warnings print as one `warning: ...` line each; a closed output pipe
(`oneword inspect F | head -3`) ends the command quietly.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from .. import __version__
from ..errors import OnewordError
from . import (
    convert,
    demo,
    edit,
    evaluate,
    generate,
    inspect,
    learn,
    learn_many,
    train_encoder,
    ui,
    variations,
    world,
)
from ._common import HelpFormatter, Parser, quiet_libraries

SUBCOMMANDS = (
    learn,
    learn_many,
    generate,
    variations,
    edit,
    evaluate,
    convert,
    inspect,
    ui,
    demo,
    train_encoder,
    world,
)

__all__ = ["main", "build_parser", "register", "quiet_libraries"]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="oneword",
        description="Textual inversion: learn a new word for your photos.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    register(parser.add_subparsers(metavar="COMMAND"))
    return parser


def register(subparsers) -> None:
    """Add every subcommand to `subparsers` (an argparse sub-parsers action)."""
    for module in SUBCOMMANDS:
        module.register(subparsers)


def main(argv: list[str] | None = None) -> int:
    """Run `oneword ARGV...`; returns the exit code (0 done, 2 a one-line error on stderr, 1 the reader of the
    output went away)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning
            quiet_libraries()
            args.func(args)
    except OnewordError as e:
        if isinstance(e.__context__, KeyboardInterrupt):  # Ctrl-C, handled (learn: checkpoint saved)
            _ignore_ctrl_c(argv)
        return _error(str(e))
    except KeyboardInterrupt:
        _ignore_ctrl_c(argv)
        return _error("interrupted")
    except BrokenPipeError:
        _silence_stdout()
        return 1
    except (MemoryError, RuntimeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        if not (
            isinstance(e, MemoryError)
            or type(e).__name__ == "OutOfMemoryError"
            or "out of memory" in first.lower()
            or "can't allocate memory" in first.lower()
        ):
            raise
        return _error(f"out of memory ({first[:160]}); use smaller images, --batch-size or -n, or another --device")
    finally:
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            _silence_stdout()
        except (OSError, ValueError):
            pass
    return 0


def _ignore_ctrl_c(argv) -> None:
    """After Ctrl-C, in the real command: another Ctrl-C while the interpreter shuts down prints nothing."""
    if argv is None:
        import signal

        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    text = " ".join(str(message).split())
    print(f"warning: {text}", file=sys.stderr)


def _silence_stdout() -> None:
    """The reader of stdout has gone (`| head`): point stdout at /dev/null so that the interpreter's last flush
    does not raise again (the recipe in Python's signal documentation)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
