"""`oneword generate`: images from a prompt that uses learned words."""

from __future__ import annotations

from ._common import add_command, add_sampling_args, sample_and_save


def register(subparsers) -> None:
    p = add_command(subparsers, "generate", "generate images from a prompt that uses learned words")
    p.add_argument("prompt")
    add_sampling_args(p, 4)
    p.set_defaults(func=run)


def run(args) -> None:
    sample_and_save(args, args.prompt)
