"""Every embedding file format a learned word travels in, read by content and written atomically.

Files come from strangers, so reading one never runs code and never trusts a size it declares. Each
container has its own small parser:

* :mod:`.safetensors_layouts`  safetensors (diffusers, kohya/A1111 emb_params, SDXL clip_l/clip_g): the
  header is checked by hand before any tensor is allocated.
* :mod:`.torch_zip`            ``.pt`` / ``.bin``: only the zip-based torch format, only through
  ``torch.load(weights_only=True)``; raw pickles are refused; written with only the zip records
  AUTOMATIC1111's safe loader allows.
* :mod:`.a1111_image`          PNG / WebP with AUTOMATIC1111's embedding in a text chunk or in the pixels.

Every tensor read is validated by :func:`oneword.concept.check_vectors` (floating, 1..75 vectors of width
1..4096, finite), token names and metadata too. Every problem is one line of
:class:`~oneword.errors.OnewordError`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..concept import (
    KNOWN_WIDTHS,
    MAX_DIM,
    MAX_FILE_BYTES,
    MAX_HEADER_BYTES,
    MAX_IMAGE_PIXELS,
    MAX_JSON_BYTES,
    MAX_META_ITEMS,
    MAX_META_KEY_CHARS,
    MAX_TENSORS,
    MAX_TOKEN_CHARS,
    MAX_VECTORS,
    Concept,
    check_concept,
    check_sdxl_parts,
    check_token_name,
    width_name,
)
from ..errors import OnewordError
from ..safeio import atomic_write_bytes, read_regular_file
from ._common import a1111_record
from .a1111_image import PNG_SIG, a1111_image_bytes, load_image_embedding
from .safetensors_layouts import load_safetensors, safetensors_bytes
from .torch_zip import load_torch, load_torch_file, torch_bytes

FORMATS = ("diffusers", "a1111", "kohya", "onetrainer")

# `oneword convert --for TOOL`: the file each tool loads as it is (docs/compatibility.md says how each was
# verified): {tool: (its name, layout, extension)}. One emb_params .safetensors serves every tool that names
# the word after its file; diffusers reads the token from the key; OneTrainer reads only its own key.
TOOLS = {
    "automatic1111": ("AUTOMATIC1111", "kohya", ".safetensors"),
    "forge": ("Forge", "kohya", ".safetensors"),
    "comfyui": ("ComfyUI", "kohya", ".safetensors"),
    "invokeai": ("InvokeAI", "kohya", ".safetensors"),
    "kohya": ("kohya sd-scripts", "kohya", ".safetensors"),
    "diffusers": ("diffusers", "diffusers", ".safetensors"),
    "onetrainer": ("OneTrainer", "onetrainer", ".safetensors"),
}
TOOL_WIDTHS = (768, 1024)  # what a plain word must be for Stable Diffusion's tools (SDXL words have two parts)
EXTENSIONS = (".safetensors", ".bin", ".pt", ".png", ".webp", ".ckpt", ".sft", ".pth")

__all__ = [
    "FORMATS",
    "KNOWN_WIDTHS",
    "MAX_DIM",
    "MAX_FILE_BYTES",
    "MAX_HEADER_BYTES",
    "MAX_IMAGE_PIXELS",
    "MAX_JSON_BYTES",
    "MAX_META_ITEMS",
    "MAX_META_KEY_CHARS",
    "MAX_TENSORS",
    "MAX_TOKEN_CHARS",
    "MAX_VECTORS",
    "TOOLS",
    "a1111_image_bytes",
    "describe",
    "load_concepts",
    "save_concept",
    "save_for_tool",
    "sniff",
]


# ------------------------------------------------------------------------------------------- load
def sniff(data: bytes) -> str:
    """What the bytes are, by content: PNG, WEBP, torchzip, safetensors, pickle, image (another kind) or unknown."""
    if data.startswith(PNG_SIG):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:4] == b"PK\x03\x04" or data[:4] == b"PK\x05\x06":
        return "torchzip"
    if len(data) >= 9 and data[8:9] == b"{":
        return "safetensors"
    if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05") or data[:1] in (b"(", b"]", b"}"):
        return "pickle"
    if data[:3] == b"\xff\xd8\xff" or data[:6] in (b"GIF87a", b"GIF89a") or data[:2] == b"BM":
        return "image"
    return "unknown"


def load_concepts(path: str | Path, token: str | None = None) -> list[Concept]:
    """Read every concept in an embedding file, by content (the extension is only a hint).

    ``path`` may be a training output folder (its learned_embeds.safetensors or .bin). ``token`` renames
    the concept when the file holds one; when it holds several, it selects one.
    Raises OnewordError (one line) for anything that is not a valid embedding.
    """
    path = _resolve_input(Path(path))
    if token is not None:
        check_token_name(token, "--token")
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise OnewordError(f"{path}: no such file") from None
    except OSError as e:
        raise OnewordError(f"cannot read {path}: {e.strerror or e}") from None
    if size > MAX_FILE_BYTES:
        # a torch zip may be big only because a slice keeps its whole table's storage: mapped, not read
        concepts = load_torch_file(path, size) if _head(path) == "torchzip" else _refuse_big(path, size)
    else:
        data = read_regular_file(
            path, MAX_FILE_BYTES, "an embedding file", "an embedding is at most a few MB (is it a model checkpoint?)"
        )
        concepts = _load_bytes(data, path)
    if not concepts:
        raise OnewordError(f"{path} holds no embedding")
    concepts = _join_diffusers_sdxl(path, concepts)
    if token is not None:
        if len(concepts) == 1:
            c = concepts[0]
            concepts = [Concept(token, c.vectors, {**c.meta, "token": token}, c.parts)]
        else:
            chosen = [c for c in concepts if c.token == token]
            if not chosen:
                raise OnewordError(
                    f"{path} holds {len(concepts)} embeddings ({', '.join(c.token for c in concepts)}); "
                    f"none is called {token!r}"
                )
            concepts = chosen
    seen = set()
    for c in concepts:
        try:
            check_token_name(c.token, f"{path}: token name")
        except OnewordError as e:
            raise OnewordError(f"{e}; rename it: oneword convert {path} NEW_FILE --token NAME") from None
        if c.token.lower() in seen:
            raise OnewordError(f"{path} holds two embeddings called {c.token!r}")
        seen.add(c.token.lower())
    return concepts


def diffusers_second_file(path: Path) -> Path:
    """Where diffusers' SDXL textual inversion writes a word's second-encoder part: learned_embeds_2.safetensors
    beside learned_embeds.safetensors."""
    return path.with_name(f"{path.stem}_2{path.suffix}")


def _join_diffusers_sdxl(path: Path, concepts: list[Concept]) -> list[Concept]:
    """diffusers' SDXL output is two files, {token: [n, 768]} and {token: [n, 1280]} in <name>_2: read as one
    SDXL word (clip_l + clip_g) when the second file is there and names the same token."""
    second = diffusers_second_file(path)
    if len(concepts) != 1 or concepts[0].parts is not None or concepts[0].dim != 768 or not second.is_file():
        return concepts
    data = read_regular_file(second, MAX_FILE_BYTES, "an embedding file", "an embedding is at most a few MB")
    others = _load_bytes(data, second)
    c = concepts[0]
    if len(others) != 1 or others[0].token != c.token or others[0].parts is not None or others[0].dim != 1280:
        return concepts
    parts = {"clip_l": c.vectors, "clip_g": others[0].vectors}
    check_sdxl_parts(parts, f"{path} + {second.name}")
    return [Concept(c.token, c.vectors, {**others[0].meta, **c.meta}, parts)]


def _load_bytes(data: bytes, path: Path) -> list[Concept]:
    kind = sniff(data)
    if kind == "safetensors":
        return load_safetensors(data, path)
    if kind == "torchzip":
        return load_torch(data, path)
    if kind in ("PNG", "WEBP"):
        return load_image_embedding(data, path, kind)
    if kind == "pickle":
        raise OnewordError(
            f"{path} is a raw Python pickle (or pre-2020 torch file); oneword never unpickles "
            "code — re-save it with torch>=1.6 or as .safetensors in an environment you trust"
        )
    if kind == "image":
        raise OnewordError(f"{path} is an image without an embedding (A1111 embeds them only in PNG/WebP)")
    raise OnewordError(f"{path} is not an embedding file (not safetensors, torch zip, PNG or WebP)")


def _head(path: Path) -> str:
    """What a regular file is, from its first bytes (for files too big to read whole)."""
    import stat

    try:
        with open(path, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return "unknown"
            return sniff(f.read(16))
    except OSError as e:
        raise OnewordError(f"cannot read {path}: {e.strerror or e}") from None


def _resolve_input(path: Path) -> Path:
    if path.is_dir():
        for name in ("learned_embeds.safetensors", "learned_embeds.bin"):
            if (path / name).is_file():
                return path / name
        raise OnewordError(f"{path} is a folder without learned_embeds.safetensors or learned_embeds.bin")
    return path


def _refuse_big(path: Path, size: int) -> None:
    """Explain why a big file is refused without reading it: a model checkpoint, probably."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else 0
            if 2 <= n <= MAX_HEADER_BYTES and f.read(1) == b"{":
                f.seek(8)
                header = json.loads(f.read(n))
                count = len([k for k in header if k != "__metadata__"])
                raise OnewordError(
                    f"{path} holds {count} tensors in {size / 2**20:.0f} MB: a model checkpoint, not an embedding"
                )
    except (OSError, ValueError, RecursionError, TypeError):
        pass
    raise OnewordError(f"{path} is {size / 2**20:.0f} MB; an embedding is at most a few MB (is it a model checkpoint?)")


# ------------------------------------------------------------------------------------------- save
def save_concept(concept: Concept, path: str | Path, format: str | None = None) -> Path:
    """Write ``concept`` atomically; format from ``format`` (diffusers|a1111|kohya|onetrainer) or the extension.

    diffusers  .safetensors {token: [n,dim]} + metadata header; .bin/.pt torch zip {token: [n,dim]}
               (metadata in the zip comment)
    a1111      .pt {string_to_token, string_to_param, name, step, sd_checkpoint, sd_checkpoint_name};
               .safetensors {"emb_params": [n,dim]} + header; .png/.webp image with the embedding inside
    kohya      .safetensors {"emb_params": [n,dim]} + header
    onetrainer .safetensors {"emp_params": [n,dim]} + header (OneTrainer's key for SD1.x/2.x)
    SDXL concepts (``parts``) are written as .safetensors {"clip_l", "clip_g"}; with ``format="diffusers"``
    asked for explicitly, as diffusers' two files {token: clip_l} and <name>_2 {token: clip_g}.
    Torch zips hold only the records AUTOMATIC1111's safe loader allows.
    """
    path = Path(path)
    c = check_concept(concept, "concept to save")
    fmt, ext = _infer_format(path, format)
    meta = dict(c.meta)
    meta["token"] = c.token
    if c.parts and format is not None and fmt == "diffusers" and ext == ".safetensors":
        return _save_diffusers_sdxl(c, path, meta)
    if c.parts and ext != ".safetensors":
        raise OnewordError(f"SDXL embeddings (clip_l + clip_g) can only be written as .safetensors, not {ext}")
    if ext == ".safetensors":
        data = safetensors_bytes(c, fmt, meta)
    elif ext in (".png", ".webp"):
        data = a1111_image_bytes(c, fmt="PNG" if ext == ".png" else "WEBP")
    elif fmt == "diffusers":
        data = torch_bytes({c.token: c.vectors}, extra_meta=meta)
    else:
        data = torch_bytes(a1111_record(c, c.vectors))
    return atomic_write_bytes(path, data)


def _save_diffusers_sdxl(c: Concept, path: Path, meta: dict) -> Path:
    """An SDXL word in diffusers' own two-file layout (what its textual_inversion_sdxl.py writes and
    ``load_textual_inversion`` reads, once per encoder): {token: clip_l} at ``path``, {token: clip_g} beside it
    as <name>_2 (:func:`diffusers_second_file`). Returns ``path``."""
    import safetensors.torch

    second = diffusers_second_file(path)
    for dest, part in ((second, "clip_g"), (path, "clip_l")):
        atomic_write_bytes(dest, safetensors.torch.save({c.token: c.parts[part].contiguous()}, metadata=meta))
    return path


def _infer_format(path: Path, fmt: str | None) -> tuple[str, str]:
    ext = path.suffix.lower()
    if fmt is not None:
        fmt = str(fmt).lower()
        if fmt not in FORMATS:
            raise OnewordError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if ext not in (".safetensors", ".bin", ".pt", ".png", ".webp"):
        raise OnewordError(
            f"cannot tell the embedding format from {path.name!r}; use .safetensors, .bin, .pt "
            f"(or .png/.webp for A1111 images)"
        )
    if fmt is None:
        fmt = {".safetensors": "diffusers", ".bin": "diffusers", ".pt": "a1111"}.get(ext, "a1111")
    if fmt in ("kohya", "onetrainer") and ext != ".safetensors":
        raise OnewordError(f"{fmt} embeddings are .safetensors files, not {ext}")
    if fmt == "diffusers" and ext in (".png", ".webp"):
        raise OnewordError(f"diffusers embeddings are .safetensors or .bin files, not {ext}")
    return fmt, ext


def tool_output(path: str | Path, tool: str) -> tuple[Path, str]:
    """(file to write, layout) for ``tool`` (a key of :data:`TOOLS`): ``path`` with the tool's extension added
    when it has none; a different embedding extension is refused."""
    key = str(tool).lower()
    if key not in TOOLS:
        raise OnewordError(f"unknown tool {tool!r}; choose one of {', '.join(TOOLS)}")
    label, fmt, ext = TOOLS[key]
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ext:
        return path, fmt
    if suffix in EXTENSIONS:
        raise OnewordError(
            f"{label} takes a {ext} file, not {path.name!r}: name it {path.stem}{ext} (or leave the extension out)"
        )
    return path.with_name(path.name + ext), fmt


def save_for_tool(concept: Concept, path: str | Path, tool: str) -> Path:
    """Write ``concept`` as the file ``tool`` loads as it is (:data:`TOOLS`); returns the path written."""
    dest, fmt = tool_output(path, tool)
    c = check_concept(concept, "concept to save")
    if not c.parts and c.dim not in TOOL_WIDTHS:
        raise OnewordError(
            f"{c.token} is {c.dim} wide{width_name(c.dim)}; {TOOLS[str(tool).lower()][0]} loads words "
            "of Stable Diffusion's text encoders (768 SD1.x, 1024 SD2.x, SDXL's 768 + 1280): this one "
            "works only in oneword"
        )
    return save_concept(c, dest, fmt)


# --------------------------------------------------------------------------------------- describe
def describe(concept: Concept, tokenizer=None, text_encoder=None, k: int = 5) -> str:
    """Human summary for ``oneword inspect``: token, shape, norms, metadata and, given a model, the ``k``
    nearest vocabulary words (cosine) of each vector."""
    c = concept
    lines = [f"token: {c.token}", f"shape: {c.n_vectors} x {c.dim} (float32){width_name(c.dim)}"]
    if c.parts:
        lines[-1] = "shape: SDXL " + ", ".join(f"{k2} {v.shape[0]} x {v.shape[1]}" for k2, v in c.parts.items())
    norms = c.vectors.double().norm(dim=1)  # float64: huge (finite) float32 vectors do not print inf
    lines.append("norms: " + ", ".join(f"{x:.4f}" for x in norms.tolist()))
    shown = {k2: v for k2, v in c.meta.items() if k2 != "token"}
    for k2 in sorted(shown):
        v = shown[k2].replace("\n", " ")
        lines.append(f"meta {k2}: {v[:200]}{'...' if len(v) > 200 else ''}")
    if tokenizer is not None and text_encoder is not None:
        table = text_encoder.get_input_embeddings().weight.detach().float().cpu()
        if table.shape[1] != c.dim:
            lines.append(
                f"nearest words: not comparable — this embedding has width {c.dim}{width_name(c.dim)}, "
                f"the model {table.shape[1]}"
            )
            return "\n".join(lines)
        own = {i for i in tokenizer.convert_tokens_to_ids(c.tokens) if isinstance(i, int) and i >= 0}
        added = set(getattr(tokenizer, "added_tokens_encoder", {}).values())
        skip = sorted((own | added) & set(range(table.shape[0])))
        lines.append(f"vocabulary norm (median): {table.norm(dim=1).median().item():.4f}")
        unit = torch.nn.functional.normalize(table, dim=1)
        if skip:
            unit[skip] = 0.0
        for i, v in enumerate(c.vectors):
            sims = unit @ torch.nn.functional.normalize(v, dim=0)
            top = torch.topk(sims, min(k, sims.shape[0]))
            words = tokenizer.convert_ids_to_tokens(top.indices.tolist())
            pretty = ", ".join(f"{str(w).replace('</w>', '')} ({s:.2f})" for w, s in zip(words, top.values.tolist()))
            lines.append(f"vector {i} nearest: {pretty}")
    return "\n".join(lines)
