"""`oneword convert`: move a learned word between the diffusers, AUTOMATIC1111 and kohya formats."""
from __future__ import annotations

from pathlib import Path

from ..errors import OnewordError
from ._common import add_command


def register(subparsers) -> None:
    p = add_command(
        subparsers, "convert", "convert an embedding between diffusers, AUTOMATIC1111 and kohya formats",
        description="Read any supported embedding (diffusers .safetensors/.bin incl. old 1-D files, A1111 "
                    ".pt/.safetensors/PNG/WebP, kohya emb_params, SDXL clip_l/clip_g) and write it as OUT. "
                    "Never runs code from the input file.")
    p.add_argument("input", metavar="IN", help="embedding file (or a folder with learned_embeds.safetensors)")
    p.add_argument("output", metavar="OUT", help="file to write (.safetensors, .bin, .pt, .png, .webp)")
    p.add_argument("--format", choices=("diffusers", "a1111", "kohya"), default=None,
                   help="output layout (default: from OUT's extension: .safetensors/.bin diffusers, .pt a1111)")
    p.add_argument("--token", default=None, help="rename the word (or pick one when IN holds several)")
    p.set_defaults(func=run)


def run(args) -> None:
    from ..formats import load_concepts, save_concept

    src, dst = Path(args.input), Path(args.output)
    concepts = load_concepts(src, token=args.token)
    if len(concepts) != 1:
        names = ", ".join(c.token for c in concepts)
        raise OnewordError(f"{src} holds {len(concepts)} embeddings ({names}); pick one with --token NAME")
    c = concepts[0]
    out = save_concept(c, dst, format=args.format)
    print(f"wrote {out}: {c.token} ({c.n_vectors} x {c.dim}){' as ' + args.format if args.format else ''}")
