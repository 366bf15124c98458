"""`oneword convert`: move a learned word between formats, or write the file a given tool loads as it is."""

from __future__ import annotations

from pathlib import Path

from ..errors import OnewordError
from ._common import add_command

# the tools of oneword.formats.TOOLS (named here too: `oneword --help` must not import torch), and how each
# finds the word once the file is in place (docs/compatibility.md)
_USE = {
    "automatic1111": "put it in stable-diffusion-webui/embeddings/; the prompt word is the file name: {stem}",
    "forge": "put it in the embeddings/ folder; the prompt word is the file name: {stem}",
    "comfyui": "put it in ComfyUI/models/embeddings/; write embedding:{stem} in the prompt",
    "invokeai": "add it in the Model Manager; it is named after the file: {stem}",
    "kohya": "pass it with --textual_inversion_embeddings; the prompt word is the file name: {stem}",
    "diffusers": 'pipe.load_textual_inversion("{path}") adds the word {token}',
    "onetrainer": "give it as the embedding's base file in OneTrainer",
}


def register(subparsers) -> None:
    p = add_command(
        subparsers,
        "convert",
        "convert an embedding between formats, or for a given tool (--for)",
        description="Read any supported embedding (diffusers .safetensors/.bin incl. old 1-D files, A1111 "
        ".pt/.safetensors/PNG/WebP, kohya and OneTrainer files, SDXL clip_l/clip_g) and write it as "
        "OUT. With --for TOOL, OUT is the file that tool loads as it is (its layout; the extension is "
        "added when OUT has none). Never runs code from the input file.",
    )
    p.add_argument("input", metavar="IN", help="embedding file (or a folder with learned_embeds.safetensors)")
    p.add_argument("output", metavar="OUT", help="file to write (.safetensors, .bin, .pt, .png, .webp)")
    how = p.add_mutually_exclusive_group()
    how.add_argument(
        "--for",
        dest="tool",
        choices=tuple(_USE),
        default=None,
        help="write the file this tool loads as it is (layout and extension; see docs/compatibility.md)",
    )
    how.add_argument(
        "--format",
        choices=("diffusers", "a1111", "kohya", "onetrainer"),
        default=None,
        help="output layout (default: from OUT's extension: .safetensors/.bin diffusers, .pt a1111)",
    )
    p.add_argument("--token", default=None, help="rename the word (or pick one when IN holds several)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists (never IN)")
    p.set_defaults(func=run)


def run(args) -> None:
    from ..formats import TOOLS, diffusers_second_file, load_concepts, save_concept, save_for_tool

    src, dst = Path(args.input), Path(args.output)
    concepts = load_concepts(src, token=args.token)
    if len(concepts) != 1:
        names = ", ".join(c.token for c in concepts)
        raise OnewordError(f"{src} holds {len(concepts)} embeddings ({names}); pick one with --token NAME")
    c = concepts[0]
    _check_output(args, src, dst, c)
    shape = f"{c.n_vectors} x {c.dim}" if not c.parts else "SDXL clip_l + clip_g"
    if args.tool is not None:
        out = save_for_tool(c, dst, args.tool)
        use = _USE[args.tool].format(stem=out.stem, path=out, token=c.token)
        if args.tool == "diffusers" and c.parts:
            second = diffusers_second_file(out)
            use = (
                f"diffusers loads an SDXL word once per text encoder: load_textual_inversion({str(out)!r}, "
                f"text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer), then {second.name} with "
                "text_encoder_2 and tokenizer_2"
            )
            out = f"{out} and {second.name}"
        print(f"wrote {out}: {c.token} ({shape}) for {TOOLS[args.tool][0]}; {use}")
        return
    out = save_concept(c, dst, format=args.format)
    if c.parts and args.format == "diffusers":  # diffusers' two files, one per text encoder
        out = f"{out} and {diffusers_second_file(out).name}"
    print(f"wrote {out}: {c.token} ({shape}){' as ' + args.format if args.format else ''}")


def _check_output(args, src: Path, dst: Path, c) -> None:
    """OUT (and diffusers' second SDXL file beside it) is never IN, and replaces a file only with --overwrite."""
    from .. import validate
    from ..formats import diffusers_second_file, tool_output

    out = tool_output(dst, args.tool)[0] if args.tool is not None else dst
    two = c.parts and (args.tool == "diffusers" or args.format == "diffusers")
    also = [diffusers_second_file(out)] if two else []
    inputs = [src / "learned_embeds.safetensors" if src.is_dir() else src]
    validate.output_file(out, "OUT", overwrite=args.overwrite, inputs=inputs, also=also)
