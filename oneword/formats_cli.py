"""``oneword convert`` and ``oneword inspect``: move a learned word between formats, and look inside one."""
from __future__ import annotations

from pathlib import Path

from .errors import OnewordError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "convert", help="convert an embedding between diffusers, AUTOMATIC1111 and kohya formats",
        description="Read any supported embedding (diffusers .safetensors/.bin incl. old 1-D files, A1111 "
                    ".pt/.safetensors/PNG/WebP, kohya emb_params, SDXL clip_l/clip_g) and write it as OUT. "
                    "Never runs code from the input file.")
    p.add_argument("input", metavar="IN", help="embedding file (or a folder with learned_embeds.safetensors)")
    p.add_argument("output", metavar="OUT", help="file to write (.safetensors, .bin, .pt, .png, .webp)")
    p.add_argument("--format", choices=("diffusers", "a1111", "kohya"), default=None,
                   help="output layout (default: from OUT's extension: .safetensors/.bin diffusers, .pt a1111)")
    p.add_argument("--token", default=None,
                   help="rename the word (or pick one when IN holds several)")
    p.set_defaults(func=cmd_convert)

    q = subparsers.add_parser(
        "inspect", help="show an embedding's token, shape, norms and (with --model) nearest words",
        description="Print what an embedding file holds. With --model, also the 5 nearest vocabulary words "
                    "of each vector (cosine over the model's token embedding table).")
    q.add_argument("file", metavar="FILE", help="embedding file")
    q.add_argument("--model", default=None, help="model to compare with (local folder, hub id, or checkpoint)")
    q.add_argument("--token", default=None, help="pick one word when FILE holds several")
    q.set_defaults(func=cmd_inspect)


def cmd_convert(args) -> int:
    from .concept import load_concepts, save_concept

    src, dst = Path(args.input), Path(args.output)
    concepts = load_concepts(src, token=args.token)
    if len(concepts) != 1:
        names = ", ".join(c.token for c in concepts)
        raise OnewordError(f"{src} holds {len(concepts)} embeddings ({names}); pick one with --token NAME")
    c = concepts[0]
    out = save_concept(c, dst, format=args.format)
    print(f"wrote {out}: {c.token} ({c.n_vectors} x {c.dim}){' as ' + args.format if args.format else ''}")
    return 0


def cmd_inspect(args) -> int:
    from .concept import describe, load_concepts

    concepts = load_concepts(Path(args.file), token=args.token)
    tokenizer = text_encoder = None
    if args.model is not None:
        try:
            from .models import load_model
        except ImportError:
            raise OnewordError("--model needs oneword.models, which this installation lacks") from None
        model = load_model(args.model)
        tokenizer, text_encoder = model.tokenizer, model.text_encoder
    blocks = [describe(c, tokenizer, text_encoder) for c in concepts]
    print(f"{args.file}: {len(concepts)} embedding{'s' if len(concepts) != 1 else ''}")
    print("\n\n".join(blocks))
    return 0
