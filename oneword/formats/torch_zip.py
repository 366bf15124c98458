"""``.pt`` / ``.bin`` embeddings: the zip-based torch format, read without running code, written as every
loader accepts it.

Reading: only the zip-based format (torch >= 1.6), only through ``torch.load(weights_only=True)``; the
legacy raw-pickle format and anything else pickled is refused. Nothing here imports the pickle module or
ever turns weights_only off. Before torch sees a file, :func:`zip_precheck` bounds the zip: record count,
expanded size, pickle size, no compressed records (torch never writes those). A file too big to read
whole (a slice saved with the whole embedding table behind it, as diffusers' example script does on the
CPU) is memory-mapped, so that only the slice's pages are read.

Writing: torch's own zip, re-packed with only the records AUTOMATIC1111's safe loader allows
(``<dir>/data.pkl``, ``<dir>/data/<n>``, ``<dir>/version``); torch >= 2.1 adds ``byteorder``,
``.format_version``, ``.storage_alignment`` and ``.data/serialization_id``, which it refuses (torch reads
the file the same without them). Data records stay 64-byte aligned as torch writes them. oneword's
metadata travels in the zip comment, which no loader reads as a record.

Layouts: a diffusers ``.bin`` is ``{token: [n, d]}``; an A1111 ``.pt`` is A1111's record
(``string_to_param``, ...); kohya's ``.pt`` ``{"emb_params": ...}`` and SDXL ``{"clip_l", "clip_g"}`` read
as their safetensors twins (:func:`._common.concepts_from_tensors`); a bare tensor is named after the file.
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
from ._common import concept_from_a1111, concepts_from_tensors, settle_token

META_RECORD = "oneword_meta.json"  # where older oneword versions put a .bin's metadata (still read)
META_COMMENT = b"oneword-meta "  # the zip comment's prefix when it holds oneword's metadata (JSON)
KEPT_RECORDS = re.compile(r"[^/]+/(data\.pkl|version|data/\d+)")  # what AUTOMATIC1111's safe loader allows
ALIGN = 64  # torch aligns every record's data to 64 bytes (mmap needs it)
MAX_PICKLE_BYTES = 1 << 20  # an embedding's data.pkl is well under 1 KB
MAX_TABLE_FILE_BYTES = 1 << 30  # a slice saved with its whole table: SDXL's 49408 x 1280 float32 is 253 MB


def torch_bytes(obj, extra_meta: dict | None = None) -> bytes:
    """``obj`` saved by torch, re-packed with only the records AUTOMATIC1111 allows; ``extra_meta`` goes in
    the zip comment (JSON)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as src:
        records = [(i.filename, src.read(i)) for i in src.infolist() if KEPT_RECORDS.fullmatch(i.filename)]
    comment = b""
    if extra_meta is not None:
        comment = META_COMMENT + json.dumps(extra_meta, sort_keys=True, ensure_ascii=False).encode("utf-8")
        if len(comment) > 0xFFFF:
            raise OnewordError(
                f"metadata is {len(comment)} bytes; a .bin/.pt carries at most 65535 (write .safetensors instead)"
            )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED, allowZip64=False) as z:
        for name, data in records:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 0
            # local header (30 bytes) + name + one padding extra field (4-byte head) ends on a 64-byte boundary
            pad = -(out.tell() + 30 + len(name.encode("utf-8")) + 4) % ALIGN
            info.extra = struct.pack("<HH", 0x4246, pad) + b"Z" * pad  # "FB": the padding field torch writes
            z.writestr(info, data)
        z.comment = comment
    return out.getvalue()


def zip_precheck(f, where: str, limit: int = MAX_FILE_BYTES) -> dict | None:
    """Bound a torch zip (bytes or an open binary file) before torch reads it; return oneword's metadata
    (from the zip comment, or the record older versions wrote) if present."""
    try:
        z = zipfile.ZipFile(io.BytesIO(f) if isinstance(f, (bytes, bytearray)) else f)
        infos = z.infolist()
        comment = z.comment
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        ValueError,
        EOFError,
        OSError,
        struct.error,
        UnicodeDecodeError,
        NotImplementedError,
    ) as e:
        raise OnewordError(f"{where}: corrupt torch file (bad zip: {str(e)[:80]})") from None
    if len(infos) > 4 * MAX_TENSORS + 16:
        raise OnewordError(f"{where}: torch file has {len(infos)} records: a model, not an embedding")
    total = sum(i.file_size for i in infos)
    if total > limit:
        raise OnewordError(f"{where}: torch file expands to {total >> 20} MB (refused)")
    for i in infos:
        if i.compress_type != zipfile.ZIP_STORED:
            raise OnewordError(
                f"{where}: torch file has a compressed record {ascii(i.filename)[:60]} "
                "(torch never writes those; refused)"
            )
        if i.filename.endswith("data.pkl") and i.file_size > MAX_PICKLE_BYTES:
            raise OnewordError(f"{where}: torch file's pickle is {i.file_size >> 10} KB: not an embedding (refused)")
    if comment.startswith(META_COMMENT):
        raw = comment[len(META_COMMENT) :]
    else:
        metas = [i for i in infos if i.filename.endswith("/" + META_RECORD)]
        if not metas:
            return None
        try:
            raw = z.open(metas[0]).read(1 << 20)
        except Exception:  # zipfile on hostile bytes: any failure means the record is unusable
            raise OnewordError(f"{where}: corrupt oneword metadata record") from None
    try:
        meta = json.loads(raw)
    except Exception:  # json on hostile bytes (bad UTF-8, nesting): the metadata is unusable
        raise OnewordError(f"{where}: corrupt oneword metadata") from None
    return check_meta(meta, where)


def weights_only_load(source, where: str, mmap: bool = False):
    """torch.load with weights_only=True: tensors and plain containers only; a refusal is one line.
    ``source`` is the file's bytes, or its path with ``mmap`` (only the pages a tensor uses are read)."""
    src = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else str(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(src, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:
        if type(e).__name__ != "UnpicklingError":  # torch raises RuntimeError/ValueError/EOFError/... too
            first = (str(e).splitlines() or [""])[0]
            raise OnewordError(f"{where}: corrupt torch file ({type(e).__name__}: {first[:100]})") from None
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        reasons = [
            ln
            for ln in lines
            if not ln.startswith(
                ("Weights only load failed", "Check the documentation", "Please file an issue", "(1)", "(2)")
            )
        ]
        why = (reasons or lines or ["unpickling refused"])[0]
        why = why.replace("WeightsUnpickler error: ", "")
        if re.search(r"global|blocked|reduce|class|function|allowlist|safe_globals", why, re.IGNORECASE):
            raise OnewordError(
                f"{where}: refused — the file contains pickled Python code or objects beyond "
                f"tensors ({why[:120]}); oneword never runs code from a file"
            ) from None
        raise OnewordError(f"{where}: corrupt torch file ({why[:120]})") from None


def load_torch(data: bytes, path: Path) -> list[Concept]:
    """Every concept of a torch zip embedding file (its bytes)."""
    where = str(path)
    extra = zip_precheck(data, where)
    return _concepts(weights_only_load(data, where), path, extra)


def load_torch_file(path: Path, size: int) -> list[Concept]:
    """Every concept of a torch zip too big to read whole: at most a few records (a model checkpoint has
    hundreds), memory-mapped, so only the pages of the tensors it names are read; each is copied out."""
    where = str(path)
    if size > MAX_TABLE_FILE_BYTES:
        raise OnewordError(
            f"{path} is {size / 2**20:.0f} MB; an embedding, even saved with its whole embedding "
            f"table, is at most {MAX_TABLE_FILE_BYTES >> 20} MB (is it a model checkpoint?)"
        )
    try:
        with open(path, "rb") as f:
            extra = zip_precheck(f, where, limit=size)
    except OSError as e:
        raise OnewordError(f"cannot read {path}: {e.strerror or e}") from None
    return _concepts(weights_only_load(path, where, mmap=True), path, extra)


def _concepts(obj, path: Path, extra: dict | None) -> list[Concept]:
    where = str(path)
    if isinstance(obj, torch.Tensor):  # bare tensor: name it after the file
        return [
            settle_token(Concept("", check_vectors(obj, where), extra or {}), path, "meta", (extra or {}).get("token"))
        ]
    if not isinstance(obj, dict):
        raise OnewordError(f"{where}: torch file holds a {type(obj).__name__}, not an embedding")
    if "string_to_param" in obj:
        return [concept_from_a1111(obj, path, lambda t, what: check_vectors(t, f"{where}: {what}"))]
    if not obj or len(obj) > MAX_TENSORS:
        raise OnewordError(f"{where}: torch file holds {len(obj)} entries, not an embedding")
    vec = {}
    for k, v in obj.items():
        if not isinstance(k, str):
            raise OnewordError(f"{where}: torch file has a non-text key ({type(k).__name__})")
        if not isinstance(v, torch.Tensor):
            raise OnewordError(f"{where}: entry {ascii(k)[:60]} is a {type(v).__name__}, not a tensor")
        vec[k] = check_vectors(v, f"{where}: {ascii(k)[:60]}")
    return concepts_from_tensors(vec, dict(extra or {}), path)
