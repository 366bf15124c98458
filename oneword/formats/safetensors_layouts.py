"""safetensors embeddings: the header checked by hand before anything is allocated, and the layouts.

A safetensors file is 8 bytes (the header's length, little-endian), a JSON header
``{name: {"dtype", "shape", "data_offsets"}, "__metadata__": {str: str}}``, then the raw tensor bytes.
:func:`parse_header` checks all of it (header size, tensor count, dtypes, shapes, offsets, byte sizes)
before ``safetensors`` reads a single tensor.

Layouts, told apart by their tensor names:

* diffusers          ``{token: [n, d]}`` (several words may share a file)
* kohya / A1111      ``{"emb_params": [n, d]}`` (A1111 also reads ``string_to_param.*``); the token is
                     the metadata's ``token`` or ``name``, else the file's stem
* OneTrainer         ``{"emp_params": [n, d]}`` (its spelling), named the same way
* SDXL               ``{"clip_l": [n, 768], "clip_g": [n, 1280]}``
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..concept import (
    MAX_DIM,
    MAX_HEADER_BYTES,
    MAX_TENSORS,
    MAX_VECTORS,
    Concept,
    check_meta,
    check_vectors,
)
from ..errors import OnewordError
from ._common import concepts_from_tensors, json_object

SAFE_DTYPES = {
    "F16": (torch.float16, 2),
    "BF16": (torch.bfloat16, 2),
    "F32": (torch.float32, 4),
    "F64": (torch.float64, 8),
}
ALL_DTYPES = {
    "BOOL",
    "U8",
    "I8",
    "I16",
    "U16",
    "I32",
    "U32",
    "I64",
    "U64",
    "F8_E4M3",
    "F8_E5M2",
    "F16",
    "BF16",
    "F32",
    "F64",
    "F4",
    "F6_E2M3",
    "F6_E3M2",
    "F8_E8M0",
    "C64",
}


def parse_header(data: bytes, where: str) -> tuple[dict, dict]:
    """(tensor entries, metadata) of a safetensors file, every entry checked; nothing allocated."""
    n = int.from_bytes(data[:8], "little")
    if n > MAX_HEADER_BYTES:
        raise OnewordError(f"{where}: safetensors header claims {n} bytes (limit {MAX_HEADER_BYTES}; refused)")
    if 8 + n > len(data):
        raise OnewordError(f"{where}: safetensors file is truncated (header runs past the end)")
    header = json_object(data[8 : 8 + n], f"{where}: safetensors header")
    meta = header.pop("__metadata__", None)
    meta = check_meta(meta, where)
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
        if not isinstance(dt, str) or dt not in ALL_DTYPES:
            raise OnewordError(f"{what} has unknown dtype {ascii(dt)[:20]}")
        if dt not in SAFE_DTYPES:
            raise OnewordError(f"{what} has dtype {dt}; embeddings are floating point (F16/BF16/F32)")
        if not isinstance(shape, list) or not all(type(s) is int and s >= 0 for s in shape):
            raise OnewordError(f"{what} has a malformed shape")
        if len(shape) not in (1, 2):
            raise OnewordError(f"{what} has shape {shape[:8]}; expected [vectors, width] or [width]")
        rows, width = (1, shape[0]) if len(shape) == 1 else shape
        if not 1 <= rows <= MAX_VECTORS or not 1 <= width <= MAX_DIM:
            raise OnewordError(
                f"{what} has shape {shape}; expected 1-{MAX_VECTORS} vectors of width 1-{MAX_DIM} (refused)"
            )
        if not (
            isinstance(offs, list)
            and len(offs) == 2
            and all(type(o) is int and o >= 0 for o in offs)
            and offs[0] <= offs[1] <= body
        ):
            raise OnewordError(f"{what} has data offsets outside the file (truncated or corrupt)")
        if offs[1] - offs[0] != rows * width * SAFE_DTYPES[dt][1]:
            raise OnewordError(f"{what}: byte size does not match its shape (corrupt)")
    return header, meta


def load_safetensors(data: bytes, path: Path) -> list[Concept]:
    """Every concept of a safetensors embedding file (its header first passes :func:`parse_header`)."""
    import safetensors.torch

    where = str(path)
    header, meta = parse_header(data, where)
    try:
        tensors = safetensors.torch.load(data)
    except Exception as e:  # SafetensorError and friends: the header passed our checks, the body did not
        raise OnewordError(f"{where}: corrupt safetensors file ({str(e)[:100]})") from None
    keys = set(tensors)
    if keys != set(header):
        raise OnewordError(f"{where}: corrupt safetensors file (tensor names do not match the header)")
    vec = {k: check_vectors(tensors[k], f"{where}: tensor {ascii(k)[:60]}") for k in sorted(keys)}
    return concepts_from_tensors(vec, meta, path)


def safetensors_bytes(c: Concept, fmt: str, meta: dict) -> bytes:
    """``c`` (already validated) as a safetensors file in layout ``fmt`` with ``meta`` in its header:
    SDXL concepts as clip_l + clip_g whatever ``fmt``; diffusers as {token}; a1111/kohya as emb_params;
    onetrainer as emp_params."""
    import safetensors.torch

    if c.parts:
        tensors = {"clip_l": c.parts["clip_l"], "clip_g": c.parts["clip_g"]}
    else:
        key = {"diffusers": c.token, "onetrainer": "emp_params"}.get(fmt, "emb_params")
        tensors = {key: c.vectors}
    return safetensors.torch.save({k: v.contiguous() for k, v in tensors.items()}, metadata=meta)
