"""The learned word, and every embedding file format it travels in.

Files come from strangers, so reading one never runs code and never trusts a size it declares:

* safetensors: the header (first 8 bytes = its length, then JSON) is checked by hand *before* any tensor
  is allocated: header size, tensor count, dtypes, shapes, offsets, total size.
* ``.pt`` / ``.bin``: only the zip-based torch format, only through ``torch.load(weights_only=True)``;
  the legacy (pre-2020) raw-pickle format and anything else pickled is refused. Nothing here imports
  the pickle module or ever turns weights_only off.
* PNG / WebP: AUTOMATIC1111 hides the embedding in the "sd-ti-embedding" text chunk (base64 JSON) or in
  the low 4 bits of two pixel blocks (zlib JSON). Both are parsed as data (json.loads, bounded zlib).

Every tensor read is validated: floating dtype (fp16/bf16/fp64 -> fp32), 1-D or 2-D, 1..75 vectors of
width 1..4096, finite values; token names and metadata are validated too. Every problem is one line of
:class:`~oneword.errors.OnewordError`.
"""
from __future__ import annotations

import base64
import binascii
import io
import json
import re
import struct
import unicodedata
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import OnewordError
from .safeio import atomic_write_bytes, read_regular_file

# ----------------------------------------------------------------------------------------- limits
MAX_VECTORS = 75                 # CLIP's 77-token context minus BOS/EOS
MAX_DIM = 4096                   # SD1.x 768, SD2.x 1024, SDXL 768+1280; nothing real is wider
MAX_TENSORS = 16                 # an embedding file holds one to a few tensors; a model holds hundreds
MAX_HEADER_BYTES = 10_000_000    # safetensors JSON header
MAX_FILE_BYTES = 64 << 20        # any embedding file (the largest real one is ~1.2 MB; images a few MB)
MAX_JSON_BYTES = 16 << 20        # decoded A1111 image payload (75 x 4096 floats as JSON is ~8 MB)
MAX_IMAGE_PIXELS = 25_000_000    # PNG/WebP carrying an embedding (A1111's are < 1 MP)
MAX_TOKEN_CHARS = 100
MAX_META_ITEMS = 1000
MAX_META_KEY_CHARS = 256

FORMATS = ("diffusers", "a1111", "kohya")
KNOWN_WIDTHS = {768: "SD1.x / CLIP ViT-L", 1024: "SD2.x / OpenCLIP ViT-H", 1280: "SDXL's second encoder (ViT-bigG)"}
_SAFE_DTYPES = {"F16": (torch.float16, 2), "BF16": (torch.bfloat16, 2), "F32": (torch.float32, 4),
                "F64": (torch.float64, 8)}
_ALL_ST_DTYPES = {"BOOL", "U8", "I8", "I16", "U16", "I32", "U32", "I64", "U64", "F8_E4M3", "F8_E5M2",
                  "F16", "BF16", "F32", "F64", "F4", "F6_E2M3", "F6_E3M2", "F8_E8M0", "C64"}
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_META_RECORD = "oneword_meta.json"   # extra record in a diffusers .bin zip; torch.load ignores it
_A1111_KEYS = ("string_to_token", "string_to_param", "name", "step", "sd_checkpoint", "sd_checkpoint_name")


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


def _check_meta(meta, where: str, coerce: bool = False) -> dict[str, str]:
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
    kind = ("quantized" if t.is_quantized else "meta (no data)" if t.is_meta else "nested" if getattr(t, "is_nested", False)
            else str(t.layout).replace("torch.", "") if t.layout != torch.strided
            else f"on {t.device.type}" if t.device.type != "cpu" else None)
    if kind:
        raise OnewordError(f"{where}: {kind} tensor; expected a plain dense tensor")
    if t.is_complex() or not t.is_floating_point() or t.dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise OnewordError(f"{where}: tensor dtype {str(t.dtype).replace('torch.', '')}; embeddings are float16/bfloat16/float32")
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


def _check_concept(c: Concept, where: str = "concept") -> Concept:
    if not isinstance(c, Concept):
        raise OnewordError(f"{where}: expected a Concept, got {type(c).__name__}")
    def cpu(t):   # in-memory concepts may live on a GPU; files never do
        return t.detach().cpu() if isinstance(t, torch.Tensor) and not t.is_meta else t
    token = check_token_name(c.token, f"{where} token")
    vectors = check_vectors(cpu(c.vectors), f"{where} {token}")
    parts = None
    if c.parts:
        parts = {k: check_vectors(cpu(v), f"{where} {token} {k}") for k, v in c.parts.items()}
        _check_sdxl_parts(parts, where)
    return Concept(token, vectors, _check_meta(c.meta, where, coerce=True), parts)


def _check_sdxl_parts(parts: dict, where: str) -> None:
    if set(parts) != {"clip_l", "clip_g"}:
        raise OnewordError(f"{where}: SDXL parts must be clip_l and clip_g, found {sorted(parts)}")
    if parts["clip_l"].shape[0] != parts["clip_g"].shape[0]:
        raise OnewordError(f"{where}: SDXL clip_l has {parts['clip_l'].shape[0]} vectors but clip_g "
                           f"{parts['clip_g'].shape[0]}")


def width_name(w: int) -> str:
    return f" ({KNOWN_WIDTHS[w]})" if w in KNOWN_WIDTHS else ""


# ------------------------------------------------------------------------------------------- save
def _infer_format(path: Path, fmt: str | None) -> tuple[str, str]:
    ext = path.suffix.lower()
    if fmt is not None:
        fmt = str(fmt).lower()
        if fmt not in FORMATS:
            raise OnewordError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if ext not in (".safetensors", ".bin", ".pt", ".png", ".webp"):
        raise OnewordError(f"cannot tell the embedding format from {path.name!r}; use .safetensors, .bin, .pt "
                           f"(or .png/.webp for A1111 images)")
    if fmt is None:
        fmt = {".safetensors": "diffusers", ".bin": "diffusers", ".pt": "a1111"}.get(ext, "a1111")
    if fmt == "kohya" and ext != ".safetensors":
        raise OnewordError(f"kohya embeddings are .safetensors files, not {ext}")
    if fmt == "diffusers" and ext in (".png", ".webp"):
        raise OnewordError(f"diffusers embeddings are .safetensors or .bin files, not {ext}")
    return fmt, ext


def save_concept(concept: Concept, path: str | Path, format: str | None = None) -> Path:
    """Write ``concept`` atomically; format from ``format`` (diffusers|a1111|kohya) or the extension.

    diffusers  .safetensors {token: [n,dim]} + metadata header; .bin/.pt torch zip {token: [n,dim]}
    a1111      .pt {string_to_token, string_to_param, name, step, sd_checkpoint, sd_checkpoint_name};
               .safetensors {"emb_params": [n,dim]} + header; .png/.webp image with the embedding inside
    kohya      .safetensors {"emb_params": [n,dim]} + header
    SDXL concepts (``parts``) are written as .safetensors {"clip_l", "clip_g"} whatever the format.
    """
    path = Path(path)
    c = _check_concept(concept, "concept to save")
    fmt, ext = _infer_format(path, format)
    meta = dict(c.meta)
    meta["token"] = c.token
    if c.parts:
        if ext != ".safetensors":
            raise OnewordError(f"SDXL embeddings (clip_l + clip_g) can only be written as .safetensors, not {ext}")
        data = _st_save({"clip_l": c.parts["clip_l"], "clip_g": c.parts["clip_g"]}, meta)
    elif ext == ".safetensors":
        key = c.token if fmt == "diffusers" else "emb_params"
        data = _st_save({key: c.vectors}, meta)
    elif ext in (".png", ".webp"):
        data = a1111_image_bytes(c, fmt="PNG" if ext == ".png" else "WEBP")
    elif fmt == "diffusers":
        data = _torch_bytes({c.token: c.vectors}, extra_meta=meta)
    else:
        data = _torch_bytes(_a1111_dict(c, c.vectors))
    return atomic_write_bytes(path, data)


def _st_save(tensors: dict, meta: dict) -> bytes:
    import safetensors.torch

    return safetensors.torch.save({k: v.contiguous() for k, v in tensors.items()}, metadata=meta)


def _a1111_dict(c: Concept, vec) -> dict:
    meta = dict(c.meta)
    meta["token"] = c.token
    step = meta.get("step", meta.get("steps"))
    try:
        step = int(step) if step is not None else None
    except ValueError:
        step = None
    return {"string_to_token": {"*": 265}, "string_to_param": {"*": vec}, "name": c.token, "step": step,
            "sd_checkpoint": meta.get("sd_checkpoint"), "sd_checkpoint_name": meta.get("sd_checkpoint_name"),
            "oneword_meta": meta}


def _torch_bytes(obj, extra_meta: dict | None = None) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    if extra_meta is not None:
        # diffusers .bin must hold exactly one key; metadata travels as an extra zip record that
        # torch.load ignores and we read as JSON.
        with zipfile.ZipFile(buf, "a") as z:
            prefix = z.namelist()[0].split("/")[0]
            z.writestr(f"{prefix}/{_META_RECORD}", json.dumps(extra_meta, sort_keys=True))
    return buf.getvalue()


# ------------------------------------------------------------------------- A1111 image embeddings
_LCG_A, _LCG_C, _LCG_M = 1664525, 1013904223, 2 ** 32
_lcg_cache = np.zeros(0, dtype=np.uint8)
MAX_LSB_VALUES = 3 * MAX_IMAGE_PIXELS


def _lcg_values(n: int) -> np.ndarray:
    """A1111's xor stream: seed=(a*seed+c) mod 2^32, yield seed % 255 -- vectorised by affine doubling."""
    global _lcg_cache
    if n <= len(_lcg_cache):
        return _lcg_cache[:n]
    s, first = 0, []
    for _ in range(min(n, 1024)):
        s = (_LCG_A * s + _LCG_C) % _LCG_M
        first.append(s)
    seeds = np.array(first, dtype=np.uint64)
    a_l = pow(_LCG_A, len(seeds), _LCG_M)
    c_l = _LCG_C * _geom(len(seeds)) % _LCG_M
    while len(seeds) < n:
        seeds = np.concatenate([seeds, (np.uint64(a_l) * seeds + np.uint64(c_l)) & np.uint64(0xFFFFFFFF)])
        a_l, c_l = a_l * a_l % _LCG_M, (a_l * c_l + c_l) % _LCG_M
    out = (seeds[:n] % np.uint64(255)).astype(np.uint8)
    if n <= 1 << 22:
        _lcg_cache = out
    return out


def _geom(L: int) -> int:
    """sum_{i<L} a^i mod 2^32 (so the affine map for L steps is x -> a^L x + c*geom(L))."""
    # binary splitting: G(2k) = G(k)(1 + a^k), G(k+1) = 1 + a G(k)
    def g(k):
        if k == 0:
            return 0, 1          # (G(k), a^k)
        if k % 2:
            gk, ak = g(k - 1)
            return (1 + _LCG_A * gk) % _LCG_M, ak * _LCG_A % _LCG_M
        gh, ah = g(k // 2)
        return gh * (1 + ah) % _LCG_M, ah * ah % _LCG_M
    return g(L)[0]


def _xor_block(block: np.ndarray) -> np.ndarray:
    rand = _lcg_values(block.size).reshape(block.shape) & np.uint8(0x0F)
    return np.bitwise_xor(block.astype(np.uint8), rand)


def _a1111_json(c: Concept) -> bytes:
    d = _a1111_dict(c, {"TORCHTENSOR": c.vectors.tolist()})
    return json.dumps(d).encode()


def a1111_image_bytes(concept: Concept, fmt: str = "PNG", text_chunk: bool = True, pixels: bool = True,
                      height: int = 64) -> bytes:
    """An image carrying ``concept`` the way AUTOMATIC1111 does: a base64-JSON "sd-ti-embedding" PNG text
    chunk and/or zlib-JSON in the low 4 bits of two pixel blocks left and right of a picture (readable by
    A1111's ``extract_image_data_embed``). WebP can only carry the pixel form (saved lossless)."""
    from PIL import Image, PngImagePlugin

    c = _check_concept(concept, "concept to save")
    payload = _a1111_json(c)
    if pixels:
        img = _lsb_image(zlib.compress(payload, 9), int(height))
    else:
        img = Image.new("RGB", (height, height), (128, 128, 128))
    buf = io.BytesIO()
    if fmt.upper() == "PNG":
        info = PngImagePlugin.PngInfo()
        if text_chunk:
            info.add_text("sd-ti-embedding", base64.b64encode(payload).decode("ascii"))
        img.save(buf, format="PNG", pnginfo=info)
    elif fmt.upper() == "WEBP":
        if not pixels:
            raise OnewordError("a WebP image can only carry an embedding in its pixels")
        img.save(buf, format="WEBP", lossless=True, quality=100, method=0, exact=True)
    else:
        raise OnewordError(f"cannot write an embedding image as {fmt}")
    return buf.getvalue()


def _lsb_image(blob: bytes, h: int = 64):
    """[low-nibble block | black column | grey picture | black column | high-nibble block], as A1111 lays
    it out; each nibble is xor-ed with A1111's stream; the high nibble of every data pixel is set so that
    no data column can be mistaken for a black border."""
    from PIL import Image

    d = 3
    data = np.frombuffer(blob, np.uint8)
    n = data.shape[0]
    size = n + (h - n % h)
    size = size + ((h * d) - size % (h * d))
    low = _xor_block(np.resize(data & 0x0F, size).reshape(h, -1, d)) | np.uint8(0x80)
    high = _xor_block(np.resize(data >> 4, size).reshape(h, -1, d)) | np.uint8(0x80)
    w = low.shape[1]
    canvas = np.zeros((h, w + 1 + h + 1 + w, 3), np.uint8)
    canvas[:, :w] = low
    canvas[:, w + 1:w + 1 + h] = 128          # the "picture": grey, low nibble 0
    canvas[:, w + 2 + h:] = high
    return Image.fromarray(canvas, "RGB")


def _png_text(data: bytes, key: bytes, where: str) -> str | None:
    """Walk PNG chunks (no pixel decoding) and return the text of tEXt/zTXt/iTXt chunk ``key``."""
    pos = len(_PNG_SIG)
    while pos + 8 <= len(data):
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        pos += 8
        if length > len(data) - pos:
            raise OnewordError(f"{where}: PNG is truncated or corrupt (chunk {ascii(ctype)[1:]} runs past the end)")
        body = data[pos:pos + length]
        pos += length + 4   # + CRC
        if ctype == b"IEND":
            break
        if ctype not in (b"tEXt", b"zTXt", b"iTXt"):
            continue
        k, sep, rest = body.partition(b"\0")
        if k != key or not sep:
            continue
        if ctype == b"tEXt":
            return rest.decode("latin-1")
        if ctype == b"zTXt":
            return _inflate(rest[1:], MAX_JSON_BYTES * 2, where).decode("latin-1")
        # iTXt: compression flag, method, language\0, translated keyword\0, text
        if len(rest) < 2:
            raise OnewordError(f"{where}: corrupt iTXt chunk")
        flag, rest = rest[0], rest[2:]
        _, _, rest = rest.partition(b"\0")
        _, _, text = rest.partition(b"\0")
        if flag:
            text = _inflate(text, MAX_JSON_BYTES * 2, where)
        try:
            return text.decode("utf-8")
        except UnicodeDecodeError:
            raise OnewordError(f"{where}: sd-ti-embedding text is not valid UTF-8") from None
    return None


def _inflate(data: bytes, limit: int, where: str) -> bytes:
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error as e:
        raise OnewordError(f"{where}: compressed embedding data is corrupt ({e})") from None
    if len(out) > limit:
        raise OnewordError(f"{where}: compressed embedding data expands past {limit >> 20} MB (refused)")
    if not d.eof:
        raise OnewordError(f"{where}: compressed embedding data is truncated")
    return out


def _lsb_payload(data: bytes, where: str) -> bytes | None:
    """A1111's extract_image_data_embed, with sizes bounded. None when the image has no pixel payload."""
    from PIL import Image

    Image.init()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=["PNG", "WEBP"])
            w, h = im.size
            if w * h > MAX_IMAGE_PIXELS:
                raise OnewordError(f"{where}: image is {w}x{h} pixels, over the {MAX_IMAGE_PIXELS // 10**6} MP "
                                   "limit for embedding images (refused)")
            if getattr(im, "n_frames", 1) > 1:
                return None
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except OnewordError:
        raise
    except Exception as e:  # Pillow raises many types on corrupt input; never let one escape
        raise OnewordError(f"{where}: image cannot be decoded ({type(e).__name__}: {str(e)[:80]})") from None
    mask = (arr > 0).all(2)
    if not mask.any():
        return None
    cols, rows = mask.any(0), mask.any(1)
    c0, c1 = int(cols.argmax()), arr.shape[1] - int(cols[::-1].argmax())
    r0, r1 = int(rows.argmax()), arr.shape[0] - int(rows[::-1].argmax())
    out = arr[r0:r1, c0:c1] & np.uint8(0x0F)
    black = np.where(out.sum(axis=(0, 2)) == 0)[0]
    if black.shape[0] < 2:
        return None
    lower, upper = out[:, :black.min()], out[:, black.max() + 1:]
    if lower.shape != upper.shape or lower.size == 0:
        return None
    block = (_xor_block(upper) << np.uint8(4)) | _xor_block(lower)
    return _inflate(block.tobytes(), MAX_JSON_BYTES, where)


def _load_image_embedding(data: bytes, path: Path, kind: str) -> list[Concept]:
    where = str(path)
    b64 = _png_text(data, b"sd-ti-embedding", where) if kind == "PNG" else None
    if b64 is not None:
        if len(b64) > MAX_JSON_BYTES * 4 // 3 + 16:
            raise OnewordError(f"{where}: sd-ti-embedding text is {len(b64) >> 20} MB (refused)")
        try:
            raw = base64.b64decode(b64)
        except (binascii.Error, ValueError) as e:
            raise OnewordError(f"{where}: sd-ti-embedding text is not valid base64 ({e})") from None
    else:
        raw = _lsb_payload(data, where)
        if raw is None:
            raise OnewordError(f"{where}: this {kind} holds no embedding (no sd-ti-embedding text chunk and no "
                               "A1111 pixel data)")
    obj = _json_object(raw, f"{where}: embedding JSON")

    def tensor(x, what):
        if not (isinstance(x, dict) and set(x) == {"TORCHTENSOR"}):
            raise OnewordError(f"{where}: {what} is not a TORCHTENSOR")
        return check_vectors(_json_matrix(x["TORCHTENSOR"], f"{where}: {what}"), f"{where}: {what}")

    if "string_to_param" in obj:
        return [_a1111_concept(obj, path, tensor)]
    if len(obj) == 1:
        (k, v), = obj.items()
        return [_finish(Concept(k, tensor(v, "embedding"), {}), path, "key", None)]
    raise OnewordError(f"{where}: embedding JSON has no string_to_param")


def _json_matrix(x, where: str) -> torch.Tensor:
    """A list of numbers or a list of equal-length lists of numbers -> float64 tensor (no object arrays)."""
    def row(r):
        if not isinstance(r, list) or not r or len(r) > MAX_DIM:
            raise OnewordError(f"{where}: tensor data is not a list of up to {MAX_DIM} numbers")
        for v in r:
            if type(v) not in (int, float):
                raise OnewordError(f"{where}: tensor data contains {type(v).__name__}, expected numbers")
        return r
    if not isinstance(x, list) or not x:
        raise OnewordError(f"{where}: tensor data is empty or not a list")
    if isinstance(x[0], list):
        if len(x) > MAX_VECTORS:
            raise OnewordError(f"{where}: {len(x)} vectors (expected 1 to {MAX_VECTORS})")
        rows = [row(r) for r in x]
        if len({len(r) for r in rows}) != 1:
            raise OnewordError(f"{where}: vectors have different lengths")
    else:
        rows = [row(x)]
    try:
        return torch.tensor(np.array(rows, dtype=np.float64))
    except (OverflowError, ValueError) as e:
        raise OnewordError(f"{where}: tensor data has a bad number ({str(e)[:60]})") from None


# ------------------------------------------------------------------------------------------- load
def _resolve_input(path: Path) -> Path:
    if path.is_dir():
        for name in ("learned_embeds.safetensors", "learned_embeds.bin"):
            if (path / name).is_file():
                return path / name
        raise OnewordError(f"{path} is a folder without learned_embeds.safetensors or learned_embeds.bin")
    return path


def load_concepts(path: str | Path, token: str | None = None) -> list[Concept]:
    """Read every concept in an embedding file, by content (the extension is only a hint).

    ``token`` renames the concept when the file holds one; when it holds several, it selects one.
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
        _refuse_big(path, size)
    data = read_regular_file(path, MAX_FILE_BYTES, "an embedding file",
                             "an embedding is at most a few MB (is it a model checkpoint?)")
    kind = _sniff(data)
    if kind == "safetensors":
        concepts = _load_safetensors(data, path)
    elif kind == "torchzip":
        concepts = _load_torch(data, path)
    elif kind in ("PNG", "WEBP"):
        concepts = _load_image_embedding(data, path, kind)
    elif kind == "pickle":
        raise OnewordError(f"{path} is a raw Python pickle (or pre-2020 torch file); oneword never unpickles "
                           "code — re-save it with torch>=1.6 or as .safetensors in an environment you trust")
    elif kind == "image":
        raise OnewordError(f"{path} is an image without an embedding (A1111 embeds them only in PNG/WebP)")
    else:
        raise OnewordError(f"{path} is not an embedding file (not safetensors, torch zip, PNG or WebP)")
    if not concepts:
        raise OnewordError(f"{path} holds no embedding")
    if token is not None:
        if len(concepts) == 1:
            c = concepts[0]
            concepts = [Concept(token, c.vectors, {**c.meta, "token": token}, c.parts)]
        else:
            chosen = [c for c in concepts if c.token == token]
            if not chosen:
                raise OnewordError(f"{path} holds {len(concepts)} embeddings ({', '.join(c.token for c in concepts)}); "
                                   f"none is called {token!r}")
            concepts = chosen
    seen = set()
    for c in concepts:
        try:
            check_token_name(c.token, f"{path}: token name")
        except OnewordError as e:
            raise OnewordError(f"{e}; pass --token NAME to rename it") from None
        if c.token.lower() in seen:
            raise OnewordError(f"{path} holds two embeddings called {c.token!r}")
        seen.add(c.token.lower())
    return concepts


def _sniff(data: bytes) -> str:
    if data.startswith(_PNG_SIG):
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
                raise OnewordError(f"{path} holds {count} tensors in {size / 2**20:.0f} MB: a model checkpoint, "
                                   "not an embedding")
    except (OSError, ValueError, RecursionError, TypeError):
        pass
    raise OnewordError(f"{path} is {size / 2**20:.0f} MB; an embedding is at most a few MB (is it a model checkpoint?)")


def _parse_st_header(data: bytes, where: str) -> tuple[dict, dict]:
    n = int.from_bytes(data[:8], "little")
    if n > MAX_HEADER_BYTES:
        raise OnewordError(f"{where}: safetensors header claims {n} bytes (limit {MAX_HEADER_BYTES}; refused)")
    if 8 + n > len(data):
        raise OnewordError(f"{where}: safetensors file is truncated (header runs past the end)")
    header = _json_object(data[8:8 + n], f"{where}: safetensors header")
    meta = header.pop("__metadata__", None)
    meta = _check_meta(meta, where)
    if not header:
        raise OnewordError(f"{where}: safetensors file holds no tensors")
    if len(header) > MAX_TENSORS:
        raise OnewordError(f"{where}: holds {len(header)} tensors: a model checkpoint, not an embedding")
    body = len(data) - 8 - n
    for name, info in header.items():
        what = f"{where}: tensor {ascii(name)[:60]}"
        if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
            raise OnewordError(f"{what} has a malformed header entry")
        dt, shape, offs = info["dtype"], info["shape"], info["data_offsets"]
        if not isinstance(dt, str) or dt not in _ALL_ST_DTYPES:
            raise OnewordError(f"{what} has unknown dtype {ascii(dt)[:20]}")
        if dt not in _SAFE_DTYPES:
            raise OnewordError(f"{what} has dtype {dt}; embeddings are floating point (F16/BF16/F32)")
        if not isinstance(shape, list) or not all(type(s) is int and s >= 0 for s in shape):
            raise OnewordError(f"{what} has a malformed shape")
        if len(shape) not in (1, 2):
            raise OnewordError(f"{what} has shape {shape[:8]}; expected [vectors, width] or [width]")
        rows, width = (1, shape[0]) if len(shape) == 1 else shape
        if not 1 <= rows <= MAX_VECTORS or not 1 <= width <= MAX_DIM:
            raise OnewordError(f"{what} has shape {shape}; expected 1-{MAX_VECTORS} vectors of width 1-{MAX_DIM} (refused)")
        if not (isinstance(offs, list) and len(offs) == 2 and all(type(o) is int and o >= 0 for o in offs)
                and offs[0] <= offs[1] <= body):
            raise OnewordError(f"{what} has data offsets outside the file (truncated or corrupt)")
        if offs[1] - offs[0] != rows * width * _SAFE_DTYPES[dt][1]:
            raise OnewordError(f"{what}: byte size does not match its shape (corrupt)")
    return header, meta


def _load_safetensors(data: bytes, path: Path) -> list[Concept]:
    import safetensors.torch

    where = str(path)
    header, meta = _parse_st_header(data, where)
    try:
        tensors = safetensors.torch.load(data)
    except Exception as e:  # SafetensorError and friends: the header passed our checks, the body did not
        raise OnewordError(f"{where}: corrupt safetensors file ({str(e)[:100]})") from None
    keys = set(tensors)
    if keys != set(header):
        raise OnewordError(f"{where}: corrupt safetensors file (tensor names do not match the header)")
    vec = {k: check_vectors(v, f"{where}: tensor {ascii(k)[:60]}") for k, v in tensors.items()}
    if keys == {"clip_l", "clip_g"}:
        parts = {"clip_l": vec["clip_l"], "clip_g": vec["clip_g"]}
        _check_sdxl_parts(parts, where)
        return [_finish(Concept("", parts["clip_l"], meta, parts), path, "meta", meta.get("token"))]
    if keys == {"emb_params"} or keys == {"string_to_param.*"}:
        return [_finish(Concept("", vec.popitem()[1], meta), path, "meta", meta.get("token") or meta.get("name"))]
    if {"clip_l", "clip_g"} & keys:
        raise OnewordError(f"{where}: an SDXL embedding needs exactly clip_l and clip_g, found {sorted(keys)[:6]}")
    if "emb_params" in keys:
        raise OnewordError(f"{where}: emb_params mixed with other tensors {sorted(keys)[:6]}")
    # diffusers: {token: tensor}, possibly several words in one file
    out = []
    for k in sorted(keys):
        m = dict(meta)
        out.append(_finish(Concept(k, vec[k], m), path, "key", None))
    return out


def _finish(c: Concept, path: Path, source: str, name) -> Concept:
    """Settle the token (file key, metadata name, or file stem) and mirror it in meta (validated later)."""
    if source == "meta":
        token = name if isinstance(name, str) and name else path.stem
    else:
        token = c.token
    meta = dict(c.meta)
    meta["token"] = token
    return Concept(token, c.vectors, meta, c.parts)


def _zip_precheck(data: bytes, where: str) -> dict | None:
    """Bound a torch zip before torch reads it; return the oneword metadata record if present."""
    try:
        z = zipfile.ZipFile(io.BytesIO(data))
        infos = z.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError, struct.error,
            UnicodeDecodeError, NotImplementedError) as e:
        raise OnewordError(f"{where}: corrupt torch file (bad zip: {str(e)[:80]})") from None
    if len(infos) > 4 * MAX_TENSORS + 16:
        raise OnewordError(f"{where}: torch file has {len(infos)} records: a model, not an embedding")
    total = sum(i.file_size for i in infos)
    if total > MAX_FILE_BYTES:
        raise OnewordError(f"{where}: torch file expands to {total >> 20} MB (refused)")
    for i in infos:
        if i.compress_type != zipfile.ZIP_STORED:
            raise OnewordError(f"{where}: torch file has a compressed record {ascii(i.filename)[:60]} "
                               "(torch never writes those; refused)")
    metas = [i for i in infos if i.filename.endswith("/" + _META_RECORD)]
    if not metas:
        return None
    try:
        raw = z.open(metas[0]).read(1 << 20)
        meta = json.loads(raw)
    except Exception:  # zipfile/json on hostile bytes: any failure means the record is unusable
        raise OnewordError(f"{where}: corrupt oneword metadata record") from None
    return _check_meta(meta, where)


def _torch_load(data: bytes, where: str):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True, mmap=False)
    except Exception as e:
        if type(e).__name__ != "UnpicklingError":  # torch raises RuntimeError/ValueError/EOFError/... too
            first = (str(e).splitlines() or [""])[0]
            raise OnewordError(f"{where}: corrupt torch file ({type(e).__name__}: {first[:100]})") from None
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        reasons = [ln for ln in lines if not ln.startswith(("Weights only load failed", "Check the documentation",
                                                             "Please file an issue", "(1)", "(2)"))]
        why = (reasons or lines or ["unpickling refused"])[0]
        why = why.replace("WeightsUnpickler error: ", "")
        if re.search(r"global|blocked|reduce|class|function|allowlist|safe_globals", why, re.IGNORECASE):
            raise OnewordError(f"{where}: refused — the file contains pickled Python code or objects beyond "
                               f"tensors ({why[:120]}); oneword never runs code from a file") from None
        raise OnewordError(f"{where}: corrupt torch file ({why[:120]})") from None


def _load_torch(data: bytes, path: Path) -> list[Concept]:
    where = str(path)
    extra = _zip_precheck(data, where)
    obj = _torch_load(data, where)
    if isinstance(obj, torch.Tensor):          # bare tensor: name it after the file
        return [_finish(Concept("", check_vectors(obj, where), extra or {}), path, "meta",
                        (extra or {}).get("token"))]
    if not isinstance(obj, dict):
        raise OnewordError(f"{where}: torch file holds a {type(obj).__name__}, not an embedding")
    if "string_to_param" in obj:
        return [_a1111_concept(obj, path, lambda t, what: check_vectors(t, f"{where}: {what}"))]
    if not obj or len(obj) > MAX_TENSORS:
        raise OnewordError(f"{where}: torch file holds {len(obj)} entries, not an embedding")
    out = []
    for k, v in obj.items():
        if not isinstance(k, str):
            raise OnewordError(f"{where}: torch file has a non-text key ({type(k).__name__})")
        if not isinstance(v, torch.Tensor):
            raise OnewordError(f"{where}: entry {ascii(k)[:60]} is a {type(v).__name__}, not a tensor")
        out.append(_finish(Concept(k, check_vectors(v, f"{where}: {ascii(k)[:60]}"), dict(extra or {})),
                           path, "key", None))
    return out


def _a1111_concept(obj: dict, path: Path, tensor) -> Concept:
    where = str(path)
    params = obj["string_to_param"]
    if not isinstance(params, dict) or len(params) != 1:
        n = len(params) if isinstance(params, dict) else type(params).__name__
        raise OnewordError(f"{where}: string_to_param must hold exactly one embedding (found {n})")
    (key, t), = params.items()
    vec = tensor(t, f"string_to_param[{ascii(key)[:20]}]")
    meta: dict[str, str] = {}
    for k in ("step", "sd_checkpoint", "sd_checkpoint_name", "name"):
        v = obj.get(k)
        if v is None:
            continue
        if k == "step":
            if type(v) is not int:
                raise OnewordError(f"{where}: field 'step' is {type(v).__name__}, expected an integer")
        elif not isinstance(v, str):
            raise OnewordError(f"{where}: field {k!r} is {type(v).__name__}, expected text")
        if k != "name":
            meta[k] = str(v)
    own = obj.get("oneword_meta")
    if own is not None:          # our own exact record wins over the fields derived from A1111's keys
        meta = _check_meta(own, where)
    name = obj.get("name")
    return _finish(Concept("", vec, meta), path, "meta", name if isinstance(name, str) else None)


# --------------------------------------------------------------------------------------- describe
def describe(concept: Concept, tokenizer=None, text_encoder=None, k: int = 5) -> str:
    """Human summary for ``oneword inspect``: token, shape, norms, metadata and, given a model, the ``k``
    nearest vocabulary words (cosine) of each vector."""
    c = concept
    lines = [f"token: {c.token}", f"shape: {c.n_vectors} x {c.dim} (float32){width_name(c.dim)}"]
    if c.parts:
        lines[-1] = "shape: SDXL " + ", ".join(f"{k2} {v.shape[0]} x {v.shape[1]}" for k2, v in c.parts.items())
    norms = c.vectors.norm(dim=1)
    lines.append("norms: " + ", ".join(f"{x:.4f}" for x in norms.tolist()))
    shown = {k2: v for k2, v in c.meta.items() if k2 != "token"}
    for k2 in sorted(shown):
        v = shown[k2].replace("\n", " ")
        lines.append(f"meta {k2}: {v[:200]}{'...' if len(v) > 200 else ''}")
    if tokenizer is not None and text_encoder is not None:
        table = text_encoder.get_input_embeddings().weight.detach().float().cpu()
        if table.shape[1] != c.dim:
            lines.append(f"nearest words: not comparable — this embedding has width {c.dim}{width_name(c.dim)}, "
                         f"the model {table.shape[1]}")
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


def _json_object(raw: bytes | str, what: str) -> dict:
    """Parse untrusted JSON that must be an object; every failure is one clear OnewordError."""
    try:
        obj = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except RecursionError:
        raise OnewordError(f"{what} is nested too deeply (refused)") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise OnewordError(f"{what} is not valid JSON ({str(e)[:80]})") from None
    if not isinstance(obj, dict):
        raise OnewordError(f"{what} is a {type(obj).__name__}, expected a JSON object")
    return obj
