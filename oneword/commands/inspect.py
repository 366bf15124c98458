"""`oneword inspect`: what an embedding file holds, and (with --model) the words nearest its vectors."""

from __future__ import annotations

from pathlib import Path

from ._common import add_command


def register(subparsers) -> None:
    p = add_command(
        subparsers,
        "inspect",
        "show an embedding's token, shape, norms and (with --model) nearest words",
        description="Print what an embedding file holds. With --model, also the 5 nearest vocabulary words "
        "of each vector (cosine over the model's token embedding table; for SDXL, in both "
        "encoders).",
    )
    p.add_argument("file", metavar="FILE", help="embedding file")
    p.add_argument("--model", default=None, help="model to compare with (local folder, hub id, or checkpoint)")
    p.add_argument("--token", default=None, help="pick one word when FILE holds several")
    p.set_defaults(func=run)


def run(args) -> None:
    from ..formats import describe, load_concepts

    concepts = load_concepts(Path(args.file), token=args.token)
    encoders = []
    if args.model is not None:
        from ..models import load_model

        model = load_model(args.model)
        encoders = model.family.encoders(model.pipe)
    blocks = [_describe(c, encoders, describe) for c in concepts]
    print(f"{args.file}: {len(concepts)} embedding{'s' if len(concepts) != 1 else ''}")
    print("\n\n".join(blocks))


def _describe(c, encoders, describe) -> str:
    """describe(), with the nearest words of each part in its own encoder (SDXL: clip_l and clip_g)."""
    from ..concept import Concept

    if not encoders:
        return describe(c)
    if c.parts is None or len(encoders) == 1:
        return describe(c, encoders[0].tokenizer, encoders[0].text_encoder)
    text = describe(c)
    for e in encoders:
        if e.part in c.parts:
            part = Concept(c.token, c.parts[e.part], {})
            near = [
                line
                for line in describe(part, e.tokenizer, e.text_encoder).splitlines()
                if line.startswith(("vector", "nearest", "vocabulary"))
            ]
            text += "\n" + "\n".join(f"{e.part} {line}" for line in near)
    return text
