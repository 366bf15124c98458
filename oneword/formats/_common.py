"""What every container shares: untrusted JSON, the token a file names, and A1111's embedding record.

A1111's record ``{string_to_token, string_to_param, name, step, sd_checkpoint, sd_checkpoint_name}`` travels
in a ``.pt`` torch zip (tensors) and inside PNG/WebP images (JSON, ``{"TORCHTENSOR": [[...]]}``); the
same two functions write and read it for both.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..concept import Concept, check_meta
from ..errors import OnewordError


def json_object(raw: bytes | str, what: str) -> dict:
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


def settle_token(c: Concept, path: Path, source: str, name) -> Concept:
    """Settle the token (file key, metadata name, or file stem) and mirror it in meta (validated later).
    source "key": the file named the word by its key (c.token); "meta": ``name`` or else the file's stem."""
    if source == "meta":
        token = name if isinstance(name, str) and name else path.stem
    else:
        token = c.token
    meta = dict(c.meta)
    meta["token"] = token
    return Concept(token, c.vectors, meta, c.parts)


def a1111_record(c: Concept, vec) -> dict:
    """A1111's embedding record for ``c`` with ``vec`` as its tensor (a tensor, or the JSON form);
    ``oneword_meta`` carries our metadata exactly (A1111 ignores it)."""
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


def concept_from_a1111(obj: dict, path: Path, tensor) -> Concept:
    """The concept of an A1111 record; ``tensor(value, what)`` validates its one string_to_param value."""
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
        meta = check_meta(own, where)
    name = obj.get("name")
    return settle_token(Concept("", vec, meta), path, "meta", name if isinstance(name, str) else None)
