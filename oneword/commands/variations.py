"""`oneword variations`: the paper's image variations, a grid of "a photo of S*"."""

from __future__ import annotations

from .. import validate as check
from ..errors import OnewordError
from ._common import add_command, add_sampling_args, load_concepts_from, sample_and_save


def register(subparsers) -> None:
    p = add_command(subparsers, "variations", 'image variations: a grid of "a photo of S*"')
    p.add_argument(
        "--template",
        default=None,
        help='prompt with {} for the word (default: "a photo of {}", "a painting in the style of {}" for styles)',
    )
    add_sampling_args(p, 16)
    p.set_defaults(func=run)


def run(args) -> None:
    if args.template is not None:
        check.template(args.template)
    concepts = load_concepts_from(args.embeds)
    if len(concepts) != 1:
        raise OnewordError("variations takes exactly one --embeds file with one learned word")
    from ..templates import default_template

    c = concepts[0]
    template = args.template or default_template(c.meta.get("property"))
    sample_and_save(args, template.format(c.token), concepts)
