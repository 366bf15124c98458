"""Fuzz every embedding format oneword reads, through the real CLI, with crash / hang / code-execution counts.

For each format (safetensors, .pt, .bin, PNG, WebP) it makes N malformed files from valid seeds -- truncated,
bit-flipped, spliced, garbage with the right magic, huge or lying headers, wrong types and shapes, weird JSON,
zlib bombs, oversize images, nested pickles and pickles that try to run ``touch CANARY`` through os, posix,
subprocess, builtins.exec/eval/__import__ or getattr chains -- and runs ``oneword inspect FILE`` on each in
long-lived worker processes (``oneword.commands.main`` in-process, stdout/stderr captured), one file at a time
with a per-file timeout. A worker that dies (signal, OOM) is a crash; one that overruns is killed and
counted as a hang; a file in the canary folder means code ran. Each worker has an 8 GB address-space limit.

    .venv/bin/python -m benchmarks.fuzz                # 1000 files per format, 2 workers
    .venv/bin/python -m benchmarks.fuzz --n 200 --timeout 10 --seed 1

Outcomes per file: ``loaded`` (exit 0: the mutation left a valid embedding, which is re-validated),
``refused`` (exit 2 with exactly one ``error:`` line), anything else is a crash.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import pickle
import random
import selectors
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from collections import Counter, OrderedDict, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORMATS = ("safetensors", "pt", "bin", "png", "webp")
EXT = {"safetensors": ".safetensors", "pt": ".pt", "bin": ".bin", "png": ".png", "webp": ".webp"}


# ------------------------------------------------------------------------------------------ seeds
def seed_files() -> dict[str, list[bytes]]:
    """Valid files of every format and layout oneword reads (1 and 3 vectors, a few widths)."""
    import safetensors.torch
    import torch

    from oneword import Concept
    from oneword.formats import a1111_image_bytes, torch_bytes

    g = torch.Generator().manual_seed(0)
    cs = [
        Concept("<cat-toy>", torch.randn(1, 32, generator=g), {"init": "cat", "steps": "500"}),
        Concept("easyneg", torch.randn(3, 16, generator=g), {}),
        Concept("<w>", torch.randn(2, 768, generator=g).half().float(), {"base_model": "sd15"}),
    ]
    seeds: dict[str, list[bytes]] = defaultdict(list)
    for c in cs:
        seeds["safetensors"].append(safetensors.torch.save({c.token: c.vectors}, metadata={"token": c.token, **c.meta}))
        seeds["safetensors"].append(
            safetensors.torch.save({"emb_params": c.vectors.half()}, metadata={"name": c.token})
        )
        seeds["pt"].append(
            torch_bytes(
                {
                    "string_to_token": {"*": 265},
                    "string_to_param": {"*": c.vectors},
                    "name": c.token,
                    "step": 100,
                    "sd_checkpoint": None,
                    "sd_checkpoint_name": None,
                }
            )
        )
        seeds["bin"].append(torch_bytes({c.token: c.vectors}, extra_meta={"token": c.token}))
        seeds["bin"].append(torch_bytes({c.token: c.vectors[0]}))
        if c.dim <= 32:
            seeds["png"].append(a1111_image_bytes(c, "PNG"))
            seeds["png"].append(a1111_image_bytes(c, "PNG", text_chunk=False))
            seeds["webp"].append(a1111_image_bytes(c, "WEBP", text_chunk=False))
    seeds["safetensors"].append(safetensors.torch.save({"clip_l": torch.randn(2, 768), "clip_g": torch.randn(2, 1280)}))
    return dict(seeds)


# ------------------------------------------------------------------------------ generic mutations
def mutate_bytes(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    b = bytearray(data)
    op = rng.choice(["truncate", "flip", "overwrite", "insert", "delete", "dup", "zero-tail", "magic-garbage"])
    n = len(b)
    if op == "truncate":
        b = b[: rng.randrange(0, n)]
    elif op == "flip":
        for _ in range(rng.randint(1, 24)):
            b[rng.randrange(n)] ^= 1 << rng.randrange(8)
    elif op == "overwrite":
        i = rng.randrange(n)
        k = rng.randint(1, 64)
        b[i : i + k] = bytes(
            rng.choice([0, 0xFF, rng.randrange(256)]) if rng.random() < 0.5 else rng.randrange(256) for _ in range(k)
        )
    elif op == "insert":
        i = rng.randrange(n + 1)
        b[i:i] = rng.randbytes(rng.randint(1, 256))
    elif op == "delete":
        i = rng.randrange(n)
        del b[i : i + rng.randint(1, 256)]
    elif op == "dup":
        i = rng.randrange(n)
        chunk = b[i : i + rng.randint(1, 512)]
        j = rng.randrange(n)
        b[j:j] = chunk * rng.randint(1, 8)
    elif op == "zero-tail":
        i = rng.randrange(n)
        b[i:] = bytes(n - i)
    else:
        keep = rng.choice([4, 8, 12, 16, 33])
        b = b[:keep] + rng.randbytes(rng.randint(0, 4096))
    return bytes(b), op


WEIRD_VALUES = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2**31,
    2**63,
    -(2**63),
    2**64 + 1,
    10**30,
    1.5,
    float("nan"),
    "F32",
    "",
    "x" * 1000,
    [],
    {},
    [1, 2],
    [[1]],
    {"a": 1},
    [-1, 4],
    [0, 2**62],
    [10**9],
    [10**9, 10**9],
    [1, 2, 3],
    "\x00",
    "\u202e",
    [[]],
    1e308,
]


def _weird(rng):
    v = rng.choice(WEIRD_VALUES)
    return v


def _nested(depth: int, leaf="1") -> str:
    return "[" * depth + leaf + "]" * depth


# ------------------------------------------------------------------------------------ safetensors
def mutate_safetensors(data: bytes, rng: random.Random, seeds) -> tuple[bytes, str]:
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])
    body = data[8 + n :]
    op = rng.choice(
        [
            "length",
            "length",
            "field",
            "field",
            "field",
            "huge-shape",
            "meta",
            "keys",
            "deep",
            "bytes",
            "bytes",
            "bytes",
            "body",
            "splice",
            "dtype",
        ]
    )
    if op == "length":
        v = rng.choice(
            [
                0,
                1,
                2,
                7,
                n - 1,
                n + 1,
                n + 8,
                len(data),
                2**32,
                2**63,
                2**64 - 1,
                10**9,
                10_000_001,
                rng.randrange(2**64),
            ]
        )
        return struct.pack("<Q", v) + data[8:], op
    if op == "bytes":
        return mutate_bytes(data, rng)[0], "st-bytes"
    if op == "body":
        return data[: 8 + n] + mutate_bytes(body or b"\0", rng)[0], op
    if op == "splice":
        other = rng.choice(seeds)
        m = struct.unpack("<Q", other[:8])[0]
        return data[: 8 + n] + other[8 + m :], op
    tensors = [k for k in header if k != "__metadata__"]
    if op == "field":
        k = rng.choice(tensors)
        field = rng.choice(["dtype", "shape", "data_offsets", "extra", "whole"])
        if field == "whole":
            header[k] = _weird(rng)
        elif field == "extra":
            header[k]["zzz"] = _weird(rng)
        else:
            header[k][field] = _weird(rng)
    elif op == "dtype":
        k = rng.choice(tensors)
        header[k]["dtype"] = rng.choice(["I64", "U8", "BOOL", "F8_E4M3", "F64", "BF16", "F16", "C64", "F4", "Q4"])
    elif op == "huge-shape":
        k = rng.choice(tensors)
        header[k]["shape"] = rng.choice(
            [
                [10**9],
                [1, 10**9],
                [10**6, 768],
                [75, 4097],
                [76, 768],
                [2**31, 2**31],
                [0, 768],
                [1, 1, 768],
                [],
                [2**62, 4],
            ]
        )
        if rng.random() < 0.5:
            import math

            header[k]["data_offsets"] = [0, 4 * math.prod(header[k]["shape"] or [1])]
    elif op == "meta":
        header["__metadata__"] = rng.choice(
            [
                {"token": _weird(rng)},
                {"a": {"b": 1}},
                _weird(rng),
                {f"k{i}": "v" for i in range(2000)},
                {"token": "bad\ntoken"},
                {"x" * 300: "y"},
            ]
        )
    elif op == "keys":
        k = rng.choice(tensors)
        new = rng.choice(["", " ", "\x00", "a\nb", "clip_l", "clip_g", "emb_params", "x" * 500, "__metadata__2"])
        header[new] = header.pop(k)
        if rng.random() < 0.5:
            for i in range(rng.choice([2, 20, 400])):
                header[f"extra{i}"] = dict(header[new]) if isinstance(header[new], dict) else 1
    elif op == "deep":
        raw = '{"a":' + _nested(rng.choice([100, 5000, 200_000])) + "}"
        return struct.pack("<Q", len(raw)) + raw.encode() + body, op
    try:
        raw = json.dumps(header, allow_nan=True).encode()
    except (TypeError, ValueError):
        raw = b"{"
    return struct.pack("<Q", len(raw)) + raw + body, "st-" + op


# --------------------------------------------------------------------------------- torch / pickle
EVIL_TARGETS = [
    ("os", "system"),
    ("posix", "system"),
    ("nt", "system"),
    ("subprocess", "call"),
    ("subprocess", "Popen"),
    ("subprocess", "check_output"),
    ("builtins", "eval"),
    ("builtins", "exec"),
    ("builtins", "__import__"),
    ("builtins", "getattr"),
    ("builtins", "open"),
    ("runpy", "run_path"),
    ("pty", "spawn"),
    ("webbrowser", "open"),
    ("torch", "load"),
    ("torch.serialization", "load"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy", "load"),
    ("pickle", "loads"),
    ("_pickle", "loads"),
    ("copyreg", "_reconstructor"),
    ("torch._C", "_set_print_stack_traces_on_fatal_signal"),
    ("torch.jit", "load"),
    ("importlib", "import_module"),
    ("code", "interact"),
]


def _str_op(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def evil_pickle(rng: random.Random, canary: Path) -> tuple[bytes, str]:
    cmd = f"touch {canary}"
    py = f"open({str(canary)!r}, 'w').close()"
    mod, name = rng.choice(EVIL_TARGETS)
    arg = py if name in ("eval", "exec") else cmd
    style = rng.choice(
        ["proto0", "proto2", "inst", "stack", "getattr-chain", "reduce-obj", "nested-bytes", "build", "import-exec"]
    )
    if style == "proto0":
        return f"c{mod}\n{name}\n(S'{arg}'\ntR.".encode(), f"evil-{mod}.{name}"
    if style == "inst":
        return f"(S'{arg}'\ni{mod}\n{name}\n.".encode(), f"evil-inst-{mod}.{name}"
    if style == "stack":
        return (
            b"\x80\x04" + _str_op(mod) + _str_op(name) + b"\x93" + _str_op(arg) + b"\x85R."
        ), f"evil-stack-{mod}.{name}"
    if style == "getattr-chain":
        return (
            b"\x80\x02cbuiltins\ngetattr\n"
            + b"cbuiltins\n__import__\n"
            + _str_op("os")
            + b"\x85R"
            + _str_op("system")
            + b"\x86R"
            + _str_op(cmd)
            + b"\x85R."
        ), "evil-getattr-chain"
    if style == "import-exec":
        return (b"\x80\x02cbuiltins\nexec\n" + _str_op(f"import os; os.system({cmd!r})") + b"\x85R."), "evil-exec"
    if style == "build":
        return (
            b"\x80\x02ccollections\nOrderedDict\n)R}"
            + _str_op("__setstate__")
            + b"cos\nsystem\ns"
            + b"b"
            + _str_op(cmd)
            + b"b."
        ), "evil-build"
    if style == "nested-bytes":  # a pickle inside a pickle (as bytes): must stay data
        inner = f"cos\nsystem\n(S'{cmd}'\ntR.".encode()
        return pickle.dumps({"<x>": inner}, protocol=2), "nested-pickle-bytes"

    class Evil:
        def __reduce__(self):
            import os as _os

            return (_os.system, (cmd,))

    return pickle.dumps(
        {"string_to_param": {"*": Evil()}, "name": "x"}, protocol=rng.choice([2, 3, 4, 5])
    ), "evil-reduce"


def _zip_with(
    seed_zip: bytes,
    replace: dict[str, bytes] | None = None,
    mutate_name=None,
    rng=None,
    extra: dict[str, bytes] | None = None,
    compress=None,
) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(seed_zip))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compress or zipfile.ZIP_STORED) as z:
        for info in src.infolist():
            data = src.read(info)
            short = info.filename.split("/", 1)[-1]
            if replace and short in replace:
                data = replace[short]
            if mutate_name is not None and short == mutate_name:
                data = mutate_bytes(data or b"\0", rng)[0]
            z.writestr(info.filename, data)
        prefix = src.namelist()[0].split("/")[0]
        for k, v in (extra or {}).items():
            z.writestr(f"{prefix}/{k}", v)
    return out.getvalue()


def _torch_obj_bytes(obj) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def structured_torch(rng: random.Random) -> tuple[bytes, str]:
    """Valid torch zips whose content is wrong: odd dtypes, layouts, shapes, containers, lying views."""
    import warnings

    import torch

    warnings.simplefilter("ignore")
    kind = rng.choice(
        [
            "dtype",
            "sparse",
            "quant",
            "shape",
            "container",
            "a1111-types",
            "lying-view",
            "many-keys",
            "deep",
            "nonfinite",
            "meta-record",
            "param",
        ]
    )
    t = torch.randn(2, 8)
    if kind == "dtype":
        dt = rng.choice(
            [
                torch.int64,
                torch.int8,
                torch.bool,
                torch.complex64,
                torch.float8_e4m3fn,
                torch.uint8,
                torch.float64,
                torch.bfloat16,
                torch.float16,
            ]
        )
        obj = {"<t>": t.to(dt)}
    elif kind == "sparse":
        obj = {"<t>": t.to_sparse()}
    elif kind == "quant":
        obj = {"<t>": torch.quantize_per_tensor(t, 0.1, 0, torch.qint8)}
    elif kind == "shape":
        obj = {"<t>": torch.randn(rng.choice([(0,), (1, 0), (76, 8), (1, 5000), (2, 2, 2), (), (1, 1, 8)]))}
    elif kind == "container":
        obj = rng.choice(
            [
                [t],
                (t,),
                {"a": [t]},
                {1: t},
                {"<t>": "text"},
                {"<t>": None},
                {},
                t.tolist(),
                {"<t>": {"<u>": t}},
                {"string_to_param": [t]},
                {"string_to_param": {}},
                b"bytes",
                {"<t>": torch.Size([1, 2])},
                OrderedDict(a=t),
                {"<t>": t, 3.5: t},
                set([1, 2]),
            ]
        )
    elif kind == "a1111-types":
        obj = {
            "string_to_token": {"*": 265},
            "string_to_param": {"*": t},
            "name": _weird(rng),
            "step": _weird(rng),
            "sd_checkpoint": _weird(rng),
            "oneword_meta": _weird(rng),
        }
        try:
            _torch_obj_bytes(obj)
        except Exception:
            obj["name"] = "x"
    elif kind == "lying-view":
        size = rng.choice([(10**9,), (1, 10**9), (2**31, 2**31), (75, 4096), (4, 4)])
        stride = rng.choice([(1,) * len(size), (0,) * len(size), (-1,) * len(size), (2**40,) * len(size)])
        offset = rng.choice([0, 10**12, -5, 3])
        st = t.storage()

        class Lying:
            def __reduce__(self):
                return (torch._utils._rebuild_tensor_v2, (st, offset, size, stride, False, OrderedDict()))

        obj = {"<t>": Lying()}
    elif kind == "many-keys":
        obj = {f"<t{i}>": torch.randn(1, 4) for i in range(rng.choice([2, 17, 300]))}
    elif kind == "deep":
        obj = t
        for _ in range(rng.choice([10, 200, 900])):
            obj = {"string_to_param": obj} if rng.random() < 0.5 else [obj]
    elif kind == "nonfinite":
        t[0, 0] = rng.choice([float("nan"), float("inf"), -float("inf")])
        obj = {"<t>": t}
    elif kind == "param":
        obj = {"string_to_param": torch.nn.ParameterDict({"*": torch.nn.Parameter(t)}), "name": "x"}
    else:
        base = _torch_obj_bytes({"<t>": t})
        rec = rng.choice(
            [
                b"{not json",
                json.dumps({"token": 5}).encode(),
                json.dumps([1]).encode(),
                b"[" * 100_000,
                json.dumps({"k": "v" * 2_000_000}).encode(),
                b"\xff\xfe",
            ]
        )
        return _zip_with(base, extra={"oneword_meta.json": rec}), f"torch-{kind}"
    try:
        return _torch_obj_bytes(obj), f"torch-{kind}"
    except Exception:
        return _torch_obj_bytes({"<t>": t}), "torch-valid-fallback"


def mutate_torch(data: bytes, rng: random.Random, canary: Path) -> tuple[bytes, str]:
    op = rng.choice(
        [
            "bytes",
            "bytes",
            "record",
            "record",
            "pkl",
            "pkl",
            "evil-zip",
            "evil-zip",
            "evil-raw",
            "structured",
            "structured",
            "structured",
            "deflate",
            "legacy",
        ]
    )
    if op == "bytes":
        return mutate_bytes(data, rng)[0], "zip-bytes"
    if op == "record":
        names = [n.split("/", 1)[-1] for n in zipfile.ZipFile(io.BytesIO(data)).namelist()]
        name = rng.choice(names)
        return _zip_with(data, mutate_name=name, rng=rng), f"record-{name.split('/')[0]}"
    if op == "pkl":
        pkl = zipfile.ZipFile(io.BytesIO(data)).read(zipfile.ZipFile(io.BytesIO(data)).namelist()[0])
        return _zip_with(data, replace={"data.pkl": mutate_bytes(pkl, rng)[0]}), "pkl-mutated"
    if op == "evil-zip":
        payload, kind = evil_pickle(rng, canary)
        return _zip_with(data, replace={"data.pkl": payload}), "zip-" + kind
    if op == "evil-raw":
        payload, kind = evil_pickle(rng, canary)
        return payload, "raw-" + kind
    if op == "deflate":
        return _zip_with(data, compress=zipfile.ZIP_DEFLATED), "zip-deflated"
    if op == "legacy":
        import torch

        buf = io.BytesIO()
        torch.save({"<t>": torch.randn(1, 8)}, buf, _use_new_zipfile_serialization=False)
        b = buf.getvalue()
        return (mutate_bytes(b, rng)[0] if rng.random() < 0.5 else b), "legacy-format"
    return structured_torch(rng)


# --------------------------------------------------------------------------------------- images
def _chunks(png: bytes):
    pos, out = 8, []
    while pos + 8 <= len(png):
        length, ctype = struct.unpack(">I4s", png[pos : pos + 8])
        out.append([ctype, png[pos + 8 : pos + 8 + length]])
        pos += 12 + length
    return out


def _png(chunks) -> bytes:
    out = b"\x89PNG\r\n\x1a\n"
    for ctype, body in chunks:
        out += struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body) & 0xFFFFFFFF)
    return out


def weird_json(rng: random.Random) -> bytes:
    v = [[rng.random() for _ in range(8)]]
    choice = rng.choice(
        ["types", "ragged", "deep", "bigint", "nan", "huge", "tensor-shape", "list-top", "empty", "two-params", "name"]
    )
    if choice == "deep":
        return (
            '{"string_to_param": {"*": {"TORCHTENSOR": ' + _nested(rng.choice([50, 3000, 100_000])) + "}}}"
        ).encode()
    if choice == "bigint":
        return ('{"string_to_param": {"*": {"TORCHTENSOR": [[' + "9" * rng.choice([20, 400, 5000]) + "]]}}}").encode()
    if choice == "huge":
        n = rng.choice([76, 4097, 100_000])
        return json.dumps({"string_to_param": {"*": {"TORCHTENSOR": [[0.5] * n]}}}).encode()
    d = {"string_to_token": {"*": 265}, "string_to_param": {"*": {"TORCHTENSOR": v}}, "name": "w", "step": 1}
    if choice == "types":
        d["string_to_param"]["*"]["TORCHTENSOR"] = rng.choice(
            [[["a"] * 8], [[True] * 8], [[None]], "x", 5, [[{"a": 1}]], [[[1.0]]]]
        )
    elif choice == "ragged":
        d["string_to_param"]["*"]["TORCHTENSOR"] = [[1.0, 2.0], [1.0]]
    elif choice == "nan":
        d["string_to_param"]["*"]["TORCHTENSOR"] = [[float("nan"), float("inf"), 1e39]]
    elif choice == "tensor-shape":
        d["string_to_param"]["*"] = rng.choice([{"TORCHTENSOR": v, "x": 1}, v, {"TENSOR": v}, None])
    elif choice == "list-top":
        return json.dumps([d]).encode()
    elif choice == "empty":
        return rng.choice([b"", b"{}", b"null", b"[]", b"\xff\xfe", b"{" * 10])
    elif choice == "two-params":
        d["string_to_param"]["#"] = {"TORCHTENSOR": v}
    else:
        d["name"] = _weird(rng)
        d["step"] = _weird(rng)
    return json.dumps(d, allow_nan=True).encode()


_BOMB = None


def _zlib_bomb() -> bytes:
    global _BOMB
    if _BOMB is None:
        _BOMB = zlib.compress(b"[" * (40 << 20), 9)
    return _BOMB


def mutate_png(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    op = rng.choice(
        [
            "bytes",
            "bytes",
            "chunk",
            "chunk",
            "text-json",
            "text-json",
            "text-b64",
            "ztxt",
            "lsb",
            "lsb",
            "ihdr",
            "order",
        ]
    )
    chunks = _chunks(data)
    if op == "bytes":
        return mutate_bytes(data, rng)[0], "png-bytes"
    if op == "chunk":
        i = rng.randrange(len(chunks))
        chunks[i][1] = mutate_bytes(chunks[i][1] or b"\0", rng)[0]
        return _png(chunks), f"png-chunk-{chunks[i][0].decode('latin-1')}"
    if op in ("text-json", "text-b64", "ztxt"):
        chunks = [c for c in chunks if c[0] != b"tEXt"]
        if op == "text-json":
            body = b"sd-ti-embedding\0" + base64.b64encode(weird_json(rng))
            ctype = b"tEXt"
        elif op == "text-b64":
            body = b"sd-ti-embedding\0" + rng.choice([b"!!!notbase64", rng.randbytes(300), b"QUJD", b"=" * 50])
            ctype = b"tEXt"
        else:
            payload = rng.choice([_zlib_bomb(), zlib.compress(base64.b64encode(weird_json(rng))), b"\x78\x9c garbage"])
            body = b"sd-ti-embedding\0\0" + payload
            ctype = b"zTXt"
        chunks.insert(1, [ctype, body])
        return _png(chunks), f"png-{op}"
    if op == "lsb":
        return _lsb_case(rng, "PNG"), "png-lsb"
    if op == "ihdr":
        w, h = rng.choice([(2**31 - 1, 2**31 - 1), (100_000, 100_000), (6000, 6000), (0, 10), (1, 1), (10**6, 1)])
        chunks[0][1] = struct.pack(">II", w, h) + chunks[0][1][8:]
        return _png(chunks), "png-ihdr-size"
    rng.shuffle(chunks)
    return _png(chunks), "png-chunk-order"


def _lsb_case(rng: random.Random, fmt: str) -> bytes:
    from oneword.formats.a1111_image import _lsb_image

    choice = rng.choice(["json", "bytes", "bomb", "random"])
    if choice == "json":
        blob = zlib.compress(weird_json(rng))
    elif choice == "bytes":
        good = zlib.compress(
            json.dumps({"string_to_param": {"*": {"TORCHTENSOR": [[0.25] * 8]}}, "name": "w"}).encode()
        )
        blob = mutate_bytes(good, rng)[0] or b"\0"
    elif choice == "bomb":
        blob = _zlib_bomb()
    else:
        blob = rng.randbytes(rng.randint(1, 4000))
    img = _lsb_image(blob, rng.choice([8, 32, 64]))
    buf = io.BytesIO()
    if fmt == "PNG":
        img.save(buf, "PNG")
    else:
        img.save(buf, "WEBP", lossless=True, quality=100, method=0, exact=True)
    return buf.getvalue()


def mutate_webp(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    op = rng.choice(["bytes", "bytes", "lsb", "lsb", "riff", "lossy"])
    if op == "bytes":
        return mutate_bytes(data, rng)[0], "webp-bytes"
    if op == "lsb":
        return _lsb_case(rng, "WEBP"), "webp-lsb"
    if op == "riff":
        b = bytearray(data)
        b[4:8] = struct.pack("<I", rng.choice([0, 1, 2**32 - 1, len(data) * 100]))
        if rng.random() < 0.5 and len(b) > 30:
            b[26:30] = rng.randbytes(4)  # VP8L image-size bits
        return bytes(b), "webp-riff"
    from PIL import Image

    im = Image.open(io.BytesIO(data)).convert("RGB")
    buf = io.BytesIO()
    im.save(buf, "WEBP", quality=rng.choice([10, 80]))  # lossy: the pixel payload is destroyed
    return buf.getvalue(), "webp-lossy"


def make_case(fmt: str, rng: random.Random, seeds: dict, canary: Path) -> tuple[bytes, str]:
    seed = rng.choice(seeds[fmt])
    if rng.random() < 0.04:
        return rng.randbytes(rng.randint(0, 2048)), "garbage"
    if rng.random() < 0.03:
        other = rng.choice(seeds[rng.choice(FORMATS)])
        cut = rng.randrange(1, len(other))
        return seed[: rng.randrange(1, len(seed))] + other[cut:], "splice-formats"
    if fmt == "safetensors":
        return mutate_safetensors(seed, rng, seeds["safetensors"])
    if fmt in ("pt", "bin"):
        return mutate_torch(seed, rng, canary)
    if fmt == "png":
        return mutate_png(seed, rng)
    return mutate_webp(seed, rng)


# ---------------------------------------------------------------------------------------- worker
WORKER = r"""
import contextlib, io, json, os, resource, sys, time, traceback
resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import torch
torch.set_num_threads(1)
from oneword.commands import main
from oneword.formats import load_concepts, MAX_VECTORS, MAX_DIM
import safetensors.torch, tempfile
with tempfile.TemporaryDirectory() as d, contextlib.redirect_stdout(io.StringIO()):
    open(d + "/warm.safetensors", "wb").write(safetensors.torch.save({"<w>": torch.ones(1, 4)}))
    main(["inspect", d + "/warm.safetensors"])   # imports every library now, not inside the first timed file
out = sys.stdout
print(json.dumps({"ready": True}), file=out, flush=True)
for line in sys.stdin:
    path = line.rstrip("\n")
    t0 = time.perf_counter()
    o, e = io.StringIO(), io.StringIO()
    res = {}
    try:
        with contextlib.redirect_stdout(o), contextlib.redirect_stderr(e):
            rc = main(["inspect", path])
        err = e.getvalue()
        errors = [l for l in err.splitlines() if l.startswith("error: ")]
        if rc == 2 and len(errors) == 1 and "Traceback" not in err:
            res = {"status": "refused", "msg": errors[0][7:][:300]}
        elif rc == 0:
            cs = load_concepts(path)
            for c in cs:
                v = c.vectors
                assert v.dtype == torch.float32 and v.dim() == 2 and 1 <= v.shape[0] <= MAX_VECTORS
                assert 1 <= v.shape[1] <= MAX_DIM and bool(torch.isfinite(v).all())
                assert all(isinstance(k, str) and isinstance(x, str) for k, x in c.meta.items())
            res = {"status": "loaded"}
        else:
            res = {"status": "crash", "msg": f"rc={rc} stderr={err[-300:]!r}"}
    except BaseException as ex:
        res = {"status": "crash", "msg": f"{type(ex).__name__}: {str(ex)[:200]} @ {traceback.format_exc().splitlines()[-3][:200]}"}
    res["ms"] = (time.perf_counter() - t0) * 1000
    res["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(res), file=out, flush=True)
"""


class Worker:
    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.buf = b""
        self.task = None
        self.started = 0.0
        line = self.readline(timeout=300)
        if line is None or not json.loads(line).get("ready"):
            raise RuntimeError("fuzz worker did not start")

    def readline(self, timeout: float):
        fd = self.proc.stdout.fileno()
        sel = selectors.DefaultSelector()
        sel.register(fd, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        try:
            while b"\n" not in self.buf:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    return None
                chunk = os.read(fd, 65536)
                if not chunk:
                    return ""
                self.buf += chunk
        finally:
            sel.close()
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def send(self, path: str):
        self.proc.stdin.write((path + "\n").encode())
        self.proc.stdin.flush()

    def kill(self):
        try:
            self.proc.kill()
        except ProcessLookupError:
            pass
        self.proc.wait()


def run(n: int, workers: int, timeout: float, seed: int, keep: bool, verbose: bool) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="oneword-fuzz-"))
    canary = workdir / "canary"
    canary.mkdir()
    t_gen = time.perf_counter()
    seeds = seed_files()
    cases = []
    for fmt in FORMATS:
        rng = random.Random(f"{seed}-{fmt}")
        (workdir / fmt).mkdir()
        for i in range(n):
            case_canary = canary / f"{fmt}-{i}"
            data, kind = make_case(fmt, rng, seeds, case_canary)
            p = workdir / fmt / f"{i:05d}{EXT[fmt]}"
            p.write_bytes(data)
            cases.append((fmt, kind, str(p)))
    t_gen = time.perf_counter() - t_gen
    print(f"generated {len(cases)} files in {t_gen:.0f}s under {workdir}", flush=True)

    results = {}
    pool = [Worker() for _ in range(workers)]
    todo = list(reversed(cases))
    t_run = time.perf_counter()
    while todo or any(w.task for w in pool):
        for w in pool:
            if w.task is None and todo:
                w.task = todo.pop()
                w.started = time.monotonic()
                w.send(w.task[2])
        busy = [w for w in pool if w.task]
        sel = selectors.DefaultSelector()
        for w in busy:
            if b"\n" not in w.buf:
                sel.register(w.proc.stdout.fileno(), selectors.EVENT_READ, w)
        ready = {key.data for key, _ in sel.select(0.5)} if sel.get_map() else set()
        ready |= {w for w in busy if b"\n" in w.buf}
        sel.close()
        for i, w in enumerate(pool):
            if w not in busy:
                continue
            if w in ready:
                line = w.readline(timeout=0.01)
                if line is None:
                    continue
                if line == "":
                    code = w.proc.wait()
                    results[w.task[2]] = (w.task, {"status": "crash", "msg": f"worker died (exit {code})", "ms": 0})
                    w.kill()
                    pool[i] = Worker()
                    continue
                results[w.task[2]] = (w.task, json.loads(line))
                w.task = None
            elif time.monotonic() - w.started > timeout:
                results[w.task[2]] = (w.task, {"status": "hang", "msg": f"> {timeout}s", "ms": timeout * 1000})
                w.kill()
                pool[i] = Worker()
    for w in pool:
        w.kill()
    t_run = time.perf_counter() - t_run
    executed = sorted(p.name for p in canary.iterdir())

    table = defaultdict(Counter)
    times = defaultdict(list)
    crashes, rss = [], 0.0
    for (fmt, kind, path), res in results.values():
        table[fmt][res["status"]] += 1
        table[fmt]["files"] += 1
        times[fmt].append(res.get("ms", 0))
        rss = max(rss, res.get("rss_mb", 0))
        if res["status"] in ("crash", "hang"):
            crashes.append((fmt, kind, path, res.get("msg")))
    for name in executed:
        table[name.split("-")[0]]["code executed"] += 1

    cols = ["files", "loaded", "refused", "crash", "hang", "code executed"]
    print(f"\n{'format':<12}" + "".join(f"{c:>15}" for c in cols) + f"{'median ms':>11}{'max ms':>9}")
    total = Counter()
    for fmt in FORMATS:
        ts = sorted(times[fmt]) or [0]
        print(f"{fmt:<12}" + "".join(f"{table[fmt][c]:>15}" for c in cols) + f"{ts[len(ts) // 2]:>11.1f}{ts[-1]:>9.0f}")
        total.update(table[fmt])
    print(f"{'total':<12}" + "".join(f"{total[c]:>15}" for c in cols))
    print(
        f"\nrun {t_run:.0f}s with {workers} workers, timeout {timeout:.0f}s/file, seed {seed}; "
        f"peak worker RSS {rss:.0f} MB"
    )
    if verbose:
        kinds = defaultdict(Counter)
        for (fmt, kind, path), res in results.values():
            kinds[f"{fmt}:{kind}"][res["status"]] += 1
        for k in sorted(kinds):
            print(f"  {k:<40} {dict(kinds[k])}")
        msgs = Counter(
            res.get("msg", "").replace(task[2], "FILE")[:100]
            for task, res in results.values()
            if res["status"] == "refused"
        )
        print("\nmost common refusals:")
        for m, c in msgs.most_common(25):
            print(f"  {c:>5}  {m}")
    for fmt, kind, path, msg in crashes[:30]:
        print(f"CRASH/HANG {fmt} {kind} {path}: {msg}")
    if executed:
        print("CODE EXECUTED:", executed)
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    bad = total["crash"] + total["hang"] + len(executed)
    return 1 if bad else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1000, help="files per format")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per file before it counts as a hang")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    ap.add_argument("-v", "--verbose", action="store_true", help="outcomes per mutation kind, common messages")
    a = ap.parse_args(argv)
    return run(a.n, a.workers, a.timeout, a.seed, a.keep, a.verbose)


if __name__ == "__main__":
    sys.exit(main())
