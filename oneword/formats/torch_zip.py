"""``.pt`` / ``.bin`` embeddings: the zip-based torch format, read without running code.

Only the zip-based format (torch >= 1.6) is read, and only through ``torch.load(weights_only=True)``; the
legacy raw-pickle format and anything else pickled is refused. Nothing here imports the pickle module or
ever turns weights_only off. Before torch sees the bytes, :func:`zip_precheck` bounds the zip: record
count, expanded size, no compressed records (torch never writes those).

Layouts: a diffusers ``.bin`` is ``{token: [n, d]}`` (plus our metadata as an extra zip record that torch
ignores); an A1111 ``.pt`` is A1111's record (``string_to_param``, ...); a bare tensor is named after the file.
"""
from __future__ import annotations

import io
import json
import re
import struct
import warnings
import zipfile
from pathlib import Path

import torch

from ..concept import MAX_FILE_BYTES, MAX_TENSORS, Concept, check_meta, check_vectors
from ..errors import OnewordError
from ._common import concept_from_a1111, settle_token

META_RECORD = "oneword_meta.json"   # extra record in a diffusers .bin zip; torch.load ignores it


def torch_bytes(obj, extra_meta: dict | None = None) -> bytes:
    """``obj`` saved by torch (zip format); ``extra_meta`` goes in as the metadata record."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    if extra_meta is not None:
        # diffusers .bin must hold exactly one key; metadata travels as an extra zip record that
        # torch.load ignores and we read as JSON.
        with zipfile.ZipFile(buf, "a") as z:
            prefix = z.namelist()[0].split("/")[0]
            z.writestr(f"{prefix}/{META_RECORD}", json.dumps(extra_meta, sort_keys=True))
    return buf.getvalue()


def zip_precheck(data: bytes, where: str) -> dict | None:
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
    metas = [i for i in infos if i.filename.endswith("/" + META_RECORD)]
    if not metas:
        return None
    try:
        raw = z.open(metas[0]).read(1 << 20)
        meta = json.loads(raw)
    except Exception:  # zipfile/json on hostile bytes: any failure means the record is unusable
        raise OnewordError(f"{where}: corrupt oneword metadata record") from None
    return check_meta(meta, where)


def weights_only_load(data: bytes, where: str):
    """torch.load with weights_only=True: tensors and plain containers only; a refusal is one line."""
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


def load_torch(data: bytes, path: Path) -> list[Concept]:
    """Every concept of a torch zip embedding file."""
    where = str(path)
    extra = zip_precheck(data, where)
    obj = weights_only_load(data, where)
    if isinstance(obj, torch.Tensor):          # bare tensor: name it after the file
        return [settle_token(Concept("", check_vectors(obj, where), extra or {}), path, "meta",
                             (extra or {}).get("token"))]
    if not isinstance(obj, dict):
        raise OnewordError(f"{where}: torch file holds a {type(obj).__name__}, not an embedding")
    if "string_to_param" in obj:
        return [concept_from_a1111(obj, path, lambda t, what: check_vectors(t, f"{where}: {what}"))]
    if not obj or len(obj) > MAX_TENSORS:
        raise OnewordError(f"{where}: torch file holds {len(obj)} entries, not an embedding")
    out = []
    for k, v in obj.items():
        if not isinstance(k, str):
            raise OnewordError(f"{where}: torch file has a non-text key ({type(k).__name__})")
        if not isinstance(v, torch.Tensor):
            raise OnewordError(f"{where}: entry {ascii(k)[:60]} is a {type(v).__name__}, not a tensor")
        out.append(settle_token(Concept(k, check_vectors(v, f"{where}: {ascii(k)[:60]}"), dict(extra or {})),
                                path, "key", None))
    return out
