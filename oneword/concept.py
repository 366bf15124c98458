"""The learned word (:class:`Concept`) and the checks every word passes, wherever it comes from.

A word is a token name standing for 1..75 vectors of width 1..4096 (:func:`check_token_name`,
:func:`check_vectors`), with free text metadata. Once installed it occupies the tokenizer entries
:func:`vector_token_names` gives. Reading and writing files is :mod:`oneword.formats`; putting words
into a model is :mod:`oneword.install`. Every problem is one line of :class:`~oneword.errors.OnewordError`.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

import torch

from .errors import OnewordError

# ----------------------------------------------------------------------------------------- limits
MAX_VECTORS = 75  # CLIP's 77-token context minus BOS/EOS
MAX_DIM = 4096  # SD1.x 768, SD2.x 1024, SDXL 768+1280; nothing real is wider
MAX_TOKEN_CHARS = 100
MAX_META_ITEMS = 1000
MAX_META_KEY_CHARS = 256
# what a file from a stranger may hold or claim (oneword.formats)
MAX_TENSORS = 16  # an embedding file holds one to a few tensors; a model holds hundreds
MAX_HEADER_BYTES = 10_000_000  # safetensors JSON header
MAX_FILE_BYTES = 64 << 20  # any embedding file (the largest real one is ~1.2 MB; images a few MB)
MAX_JSON_BYTES = 16 << 20  # decoded A1111 image payload (75 x 4096 floats as JSON is ~8 MB)
MAX_IMAGE_PIXELS = 25_000_000  # PNG/WebP carrying an embedding (A1111's are < 1 MP)

KNOWN_WIDTHS = {768: "SD1.x / CLIP ViT-L", 1024: "SD2.x / OpenCLIP ViT-H", 1280: "SDXL's second encoder (ViT-bigG)"}


@dataclass
class Concept:
    """A learned word: ``token`` stands for ``vectors`` ([n, dim] float32, CPU).

    ``meta`` is free text metadata (all str). After loading, ``meta["token"]`` mirrors ``token``.
    ``parts`` is only set for SDXL files: {"clip_l": [n,768], "clip_g": [n,1280]}; ``vectors`` is then
    the clip_l part (for inspection) and the concept can only be installed into an SDXL pipeline.
    """

    token: str
    vectors: torch.Tensor
    meta: dict[str, str] = field(default_factory=dict)
    parts: dict[str, torch.Tensor] | None = None

    @property
    def n_vectors(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def tokens(self) -> list[str]:
        """The tokenizer entries this word occupies once installed: tok, tok_1, ..., tok_{n-1}."""
        return vector_token_names(self.token, self.n_vectors)


def vector_token_names(token: str, n: int) -> list[str]:
    """The tokenizer entries of an n-vector word, as diffusers' ``load_textual_inversion`` names them:
    ``tok``, ``tok_1``, ..., ``tok_{n-1}``. The one place this rule is spelled."""
    return [token] + [f"{token}_{i}" for i in range(1, n)]


# ------------------------------------------------------------------------------------- validation
def check_token_name(name, where: str = "token") -> str:
    """Return ``name`` if it can be a prompt token, else raise a one-line OnewordError."""
    if not isinstance(name, str):
        raise OnewordError(f"{where} must be text, not {type(name).__name__}")
    shown = ascii(name[:40]) + ("..." if len(name) > 40 else "")
    if not name or not name.strip():
        raise OnewordError(f"{where} is empty")
    if len(name) > MAX_TOKEN_CHARS:
        raise OnewordError(f"{where} {shown} is {len(name)} characters long (at most {MAX_TOKEN_CHARS})")
    for ch in name:
        cat = unicodedata.category(ch)
        if ch.isspace() or cat[0] == "Z":
            raise OnewordError(f"{where} {shown} contains whitespace; prompt tokens must be one word (e.g. <my-cat>)")
        if cat[0] == "C":
            raise OnewordError(f"{where} {shown} contains a control or invisible character (U+{ord(ch):04X})")
    return name


def check_meta(meta, where: str, coerce: bool = False) -> dict[str, str]:
    """Metadata as {text: text}; ``coerce`` turns numbers and booleans into text (in-memory concepts)."""
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise OnewordError(f"{where}: metadata must be a mapping of text to text, not {type(meta).__name__}")
    if len(meta) > MAX_META_ITEMS:
        raise OnewordError(f"{where}: {len(meta)} metadata entries (at most {MAX_META_ITEMS})")
    out: dict[str, str] = {}
    for k, v in meta.items():
        if not isinstance(k, str) or len(k) > MAX_META_KEY_CHARS:
            raise OnewordError(f"{where}: metadata key {ascii(k)[:60]} is not short text")
        if coerce and isinstance(v, (bool, int, float)):
            v = str(v)
        if not isinstance(v, str):
            raise OnewordError(f"{where}: metadata {k!r} is {type(v).__name__}, expected text")
        out[k] = v
    return out


def check_vectors(t, where: str) -> torch.Tensor:
    """Validate one embedding tensor and return it as a fresh contiguous float32 CPU [n, dim] tensor."""
    if not isinstance(t, torch.Tensor):
        raise OnewordError(f"{where}: expected a tensor, found {type(t).__name__}")
    kind = (
        "quantized"
        if t.is_quantized
        else "meta (no data)"
        if t.is_meta
        else "nested"
        if getattr(t, "is_nested", False)
        else str(t.layout).replace("torch.", "")
        if t.layout != torch.strided
        else f"on {t.device.type}"
        if t.device.type != "cpu"
        else None
    )
    if kind:
        raise OnewordError(f"{where}: {kind} tensor; expected a plain dense tensor")
    if (
        t.is_complex()
        or not t.is_floating_point()
        or t.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64)
    ):
        raise OnewordError(
            f"{where}: tensor dtype {str(t.dtype).replace('torch.', '')}; embeddings are float16/bfloat16/float32"
        )
    if t.dim() == 1:
        t = t.unsqueeze(0)
    if t.dim() != 2:
        raise OnewordError(f"{where}: tensor shape {list(t.shape)}; expected [vectors, width] or [width]")
    n, dim = (int(s) for s in t.shape)
    if not 1 <= n <= MAX_VECTORS:
        raise OnewordError(f"{where}: {n} vectors (expected 1 to {MAX_VECTORS})")
    if not 1 <= dim <= MAX_DIM:
        raise OnewordError(f"{where}: vector width {dim} (expected 1 to {MAX_DIM}; SD1.x=768, SD2.x=1024)")
    out = t.detach().to(torch.float32).contiguous().clone()
    if not bool(torch.isfinite(out).all()):
        raise OnewordError(f"{where}: contains NaN or infinite values (or values too large for float32)")
    return out


def check_concept(c: Concept, where: str = "concept") -> Concept:
    """A validated copy of ``c``: CPU float32 vectors (and SDXL parts), checked token and metadata."""
    if not isinstance(c, Concept):
        raise OnewordError(f"{where}: expected a Concept, got {type(c).__name__}")

    def cpu(t):  # in-memory concepts may live on a GPU; files never do
        return t.detach().cpu() if isinstance(t, torch.Tensor) and not t.is_meta else t

    token = check_token_name(c.token, f"{where} token")
    vectors = check_vectors(cpu(c.vectors), f"{where} {token}")
    parts = None
    if c.parts:
        parts = {k: check_vectors(cpu(v), f"{where} {token} {k}") for k, v in c.parts.items()}
        check_sdxl_parts(parts, where)
    return Concept(token, vectors, check_meta(c.meta, where, coerce=True), parts)


def check_sdxl_parts(parts: dict, where: str) -> None:
    if set(parts) != {"clip_l", "clip_g"}:
        raise OnewordError(f"{where}: SDXL parts must be clip_l and clip_g, found {sorted(parts)}")
    if parts["clip_l"].shape[0] != parts["clip_g"].shape[0]:
        raise OnewordError(
            f"{where}: SDXL clip_l has {parts['clip_l'].shape[0]} vectors but clip_g {parts['clip_g'].shape[0]}"
        )


def width_name(w: int) -> str:
    """' (SD1.x / CLIP ViT-L)' for a known text width, else ''."""
    return f" ({KNOWN_WIDTHS[w]})" if w in KNOWN_WIDTHS else ""
