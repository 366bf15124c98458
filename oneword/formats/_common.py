"""What every container shares: untrusted JSON, the token a file names, the layouts a dict of tensors
comes in, and A1111's embedding record.

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


# one-word layouts that name no token: the word is named by the metadata, else after the file
#   emb_params          kohya's and A1111's .safetensors (kohya's .pt too)
#   emp_params          OneTrainer's SD1.x/2.x embeddings (its spelling)
#   string_to_param.*   A1111's record flattened into safetensors
NAMELESS_KEYS = ("emb_params", "emp_params", "string_to_param.*")
# OneTrainer's output embeddings: vectors applied after the text encoder, not input words
OUTPUT_KEYS = ("emp_params_out", "clip_l_out", "clip_g_out")


def concepts_from_tensors(vec: dict, meta: dict, path: Path) -> list[Concept]:
    """The words in ``{name: validated [n, d] tensor}``, by its layout, whatever container held it:
    SDXL ``{clip_l, clip_g}``; one of :data:`NAMELESS_KEYS`; else diffusers' ``{token: tensor}`` (several
    words may share a file)."""
    from ..concept import check_sdxl_parts

    where = str(path)
    keys = set(vec)
    if keys & set(OUTPUT_KEYS):
        raise OnewordError(
            f"{where}: holds OneTrainer output embeddings ({', '.join(sorted(keys & set(OUTPUT_KEYS)))}), "
            "which act after the text encoder; oneword reads input words only"
        )
    if keys == {"clip_l", "clip_g"}:
        parts = {"clip_l": vec["clip_l"], "clip_g": vec["clip_g"]}
        check_sdxl_parts(parts, where)
        return [settle_token(Concept("", parts["clip_l"], meta, parts), path, "meta", meta.get("token"))]
    if len(keys) == 1 and keys <= set(NAMELESS_KEYS):
        (v,) = vec.values()
        return [settle_token(Concept("", v, meta), path, "meta", meta.get("token") or meta.get("name"))]
    if {"clip_l", "clip_g"} & keys:
        raise OnewordError(f"{where}: an SDXL embedding needs exactly clip_l and clip_g, found {sorted(keys)[:6]}")
    mixed = keys & set(NAMELESS_KEYS)
    if mixed:
        raise OnewordError(f"{where}: {sorted(mixed)[0]} mixed with other tensors {sorted(keys)[:6]}")
    return [settle_token(Concept(k, v, dict(meta)), path, "key", None) for k, v in vec.items()]


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
    return {
        "string_to_token": {"*": 265},
        "string_to_param": {"*": vec},
        "name": c.token,
        "step": step,
        "sd_checkpoint": meta.get("sd_checkpoint"),
        "sd_checkpoint_name": meta.get("sd_checkpoint_name"),
        "oneword_meta": meta,
    }


def concept_from_a1111(obj: dict, path: Path, tensor) -> Concept:
    """The concept of an A1111 record; ``tensor(value, what)`` validates its one string_to_param value."""
    where = str(path)
    params = obj["string_to_param"]
    if not isinstance(params, dict) or len(params) != 1:
        n = len(params) if isinstance(params, dict) else type(params).__name__
        raise OnewordError(f"{where}: string_to_param must hold exactly one embedding (found {n})")
    ((key, t),) = params.items()
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
    if own is not None:  # our own exact record wins over the fields derived from A1111's keys
        meta = check_meta(own, where)
    name = obj.get("name")
    return settle_token(Concept("", vec, meta), path, "meta", name if isinstance(name, str) else None)
