"""`oneword demo`: the whole method offline on the embedded world, in a few minutes on a CPU."""

from __future__ import annotations

from pathlib import Path

from .. import validate as check
from ._common import add_command


def register(subparsers) -> None:
    p = add_command(subparsers, "demo", "learn a novel concept of the embedded world, offline, in a few minutes")
    p.add_argument("--concept", help="which world concept (default: teal_ring)")
    p.add_argument(
        "--out",
        default="runs/demo",
        help="output folder (an interrupted demo in it is continued; another demo or other files are never replaced)",
    )
    p.add_argument("--seed", type=check.arg(check.seed_arg), default=0)
    p.set_defaults(func=run)


def run(args) -> None:
    from ..demo import run_demo

    run_demo(args.concept, Path(args.out), args.seed)
