"""`oneword inspect`: what an embedding file holds, and (with --model) the words nearest its vectors."""
from __future__ import annotations

from pathlib import Path

from ._common import add_command


def register(subparsers) -> None:
    p = add_command(
        subparsers, "inspect", "show an embedding's token, shape, norms and (with --model) nearest words",
        description="Print what an embedding file holds. With --model, also the 5 nearest vocabulary words "
                    "of each vector (cosine over the model's token embedding table).")
    p.add_argument("file", metavar="FILE", help="embedding file")
    p.add_argument("--model", default=None, help="model to compare with (local folder, hub id, or checkpoint)")
    p.add_argument("--token", default=None, help="pick one word when FILE holds several")
    p.set_defaults(func=run)


def run(args) -> None:
    from ..formats import describe, load_concepts

    concepts = load_concepts(Path(args.file), token=args.token)
    tokenizer = text_encoder = None
    if args.model is not None:
        from ..models import load_model

        model = load_model(args.model)
        tokenizer, text_encoder = model.tokenizer, model.text_encoder
    blocks = [describe(c, tokenizer, text_encoder) for c in concepts]
    print(f"{args.file}: {len(concepts)} embedding{'s' if len(concepts) != 1 else ''}")
    print("\n\n".join(blocks))
