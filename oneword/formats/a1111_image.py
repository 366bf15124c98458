"""AUTOMATIC1111's embedding images: the embedding inside a PNG or WebP picture.

A1111 hides the embedding (its record as JSON, tensors as ``{"TORCHTENSOR": [[...]]}``) in two ways:

* a PNG text chunk "sd-ti-embedding" holding the JSON in base64; chunks are walked without decoding pixels;
* the low 4 bits of the pixels of two blocks left and right of the picture (low and high nibbles of the
  zlib-compressed JSON, each xor-ed with a linear congruential stream), which survives in WebP too.

Both are parsed as data (json.loads, zlib inflated with a bound); image size, text length and inflated
size are capped before anything big is allocated.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch

from ..concept import MAX_DIM, MAX_IMAGE_PIXELS, MAX_JSON_BYTES, MAX_VECTORS, Concept, check_concept, check_vectors
from ..errors import OnewordError
from ._common import a1111_record, concept_from_a1111, json_object, settle_token

PNG_SIG = b"\x89PNG\r\n\x1a\n"
_LCG_A, _LCG_C, _LCG_M = 1664525, 1013904223, 2**32
_lcg_cache = np.zeros(0, dtype=np.uint8)


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
            return 0, 1  # (G(k), a^k)
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
    d = a1111_record(c, {"TORCHTENSOR": c.vectors.tolist()})
    return json.dumps(d).encode()


def a1111_image_bytes(
    concept: Concept, fmt: str = "PNG", text_chunk: bool = True, pixels: bool = True, height: int = 64
) -> bytes:
    """An image carrying ``concept`` the way AUTOMATIC1111 does: a base64-JSON "sd-ti-embedding" PNG text
    chunk and/or zlib-JSON in the low 4 bits of two pixel blocks left and right of a picture (readable by
    A1111's ``extract_image_data_embed``). WebP can only carry the pixel form (saved lossless)."""
    from PIL import Image, PngImagePlugin

    c = check_concept(concept, "concept to save")
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
    canvas[:, w + 1 : w + 1 + h] = 128  # the "picture": grey, low nibble 0
    canvas[:, w + 2 + h :] = high
    return Image.fromarray(canvas, "RGB")


def _png_text(data: bytes, key: bytes, where: str) -> str | None:
    """Walk PNG chunks (no pixel decoding) and return the text of tEXt/zTXt/iTXt chunk ``key``."""
    pos = len(PNG_SIG)
    while pos + 8 <= len(data):
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        pos += 8
        if length > len(data) - pos:
            raise OnewordError(f"{where}: PNG is truncated or corrupt (chunk {ascii(ctype)[1:]} runs past the end)")
        body = data[pos : pos + length]
        pos += length + 4  # + CRC
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
                raise OnewordError(
                    f"{where}: image is {w}x{h} pixels, over the {MAX_IMAGE_PIXELS // 10**6} MP "
                    "limit for embedding images (refused)"
                )
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
    lower, upper = out[:, : black.min()], out[:, black.max() + 1 :]
    if lower.shape != upper.shape or lower.size == 0:
        return None
    block = (_xor_block(upper) << np.uint8(4)) | _xor_block(lower)
    return _inflate(block.tobytes(), MAX_JSON_BYTES, where)


def load_image_embedding(data: bytes, path: Path, kind: str) -> list[Concept]:
    """The concept in an A1111 PNG (text chunk, else pixels) or WebP (pixels); ``kind`` is PNG or WEBP."""
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
            raise OnewordError(
                f"{where}: this {kind} holds no embedding (no sd-ti-embedding text chunk and no A1111 pixel data)"
            )
    obj = json_object(raw, f"{where}: embedding JSON")

    def tensor(x, what):
        if not (isinstance(x, dict) and set(x) == {"TORCHTENSOR"}):
            raise OnewordError(f"{where}: {what} is not a TORCHTENSOR")
        return check_vectors(_json_matrix(x["TORCHTENSOR"], f"{where}: {what}"), f"{where}: {what}")

    if "string_to_param" in obj:
        return [concept_from_a1111(obj, path, tensor)]
    if len(obj) == 1:
        ((k, v),) = obj.items()
        return [settle_token(Concept(k, tensor(v, "embedding"), {}), path, "key", None)]
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
