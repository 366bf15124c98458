"""What `oneword ui` lets in: where it listens, who may use it, which files and folders it reads.

* It listens on loopback unless told otherwise; any other --host needs --auth user:password (or --auth-file) and
  prints a warning. No share links are ever made.
* Uploads are read only through oneword's safe loaders: photos with oneword.images.load_image (formats it
  names, decompression bombs and truncated files refused), words with load_concepts (no pickle is ever run).
  What is kept is re-written by oneword (photos as PNG, words as .safetensors), under names the server chose,
  never the uploader's.
* A folder typed into the page is read only inside the server's photos root; files are served only from the
  server's run folder.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

from ..errors import OnewordError

MAX_UPLOAD_BYTES = 64 << 20  # per file, enforced by the web server before a handler sees it
MAX_PHOTOS = 64
LOOPBACK_NAMES = ("localhost",)


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_auth(auth: str | None = None, auth_file: str | os.PathLike | None = None) -> list[tuple[str, str]] | None:
    """`user:password`, or a file of such lines (blank lines and # comments skipped) -> [(user, password)]."""
    if auth is None and auth_file is None:
        return None
    lines = []
    if auth is not None:
        lines.append(("--auth", auth))
    if auth_file is not None:
        path = Path(auth_file)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise OnewordError(f"cannot read --auth-file {path}: {e.strerror or e}") from None
        lines += [(str(path), x.strip()) for x in text.splitlines() if x.strip() and not x.strip().startswith("#")]
    pairs = []
    for where, line in lines:
        user, sep, password = line.partition(":")
        if not sep or not user or not password:
            raise OnewordError(f"{where}: expected user:password")
        pairs.append((user, password))
    if not pairs:
        raise OnewordError(f"--auth-file {auth_file} holds no user:password line")
    return pairs


def check_listen(host: str, credentials) -> str | None:
    """Refuse a non-loopback address without credentials; return the warning to print for one with them."""
    if is_loopback(host):
        return None
    if not credentials:
        raise OnewordError(
            f"--host {host} would let other machines use this server: that needs "
            "--auth user:password (or --auth-file FILE)"
        )
    return (
        f"warning: listening on {host}: anyone who can reach this machine and knows a password can learn, "
        "generate and read the words in the run folder (plain HTTP: use it on a network you trust)"
    )


def inside(root: Path, path: str | os.PathLike) -> Path:
    """`path` (relative to `root`, or absolute) resolved, symlinks included; refused unless it lies in `root`."""
    root = Path(root).resolve()
    raw = str(path).strip()
    if not raw or "\x00" in raw:
        raise OnewordError("empty folder name")
    p = Path(raw).expanduser()
    resolved = (p if p.is_absolute() else root / p).resolve()
    if resolved != root and root not in resolved.parents:
        raise OnewordError(f"{raw} is outside the folder this server may read ({root})")
    return resolved


def upload_path(file) -> Path:
    """The server-side path of a gradio upload (a str, a dict or a FileData-like object)."""
    if file is None:
        raise OnewordError("no file")
    if isinstance(file, (str, os.PathLike)):
        return Path(file)
    if isinstance(file, dict):
        return Path(file.get("path") or file.get("name"))
    return Path(getattr(file, "path", None) or file.name)


def upload_name(file) -> str:
    """The uploader's file name, for messages only (never used as a path)."""
    name = None
    if isinstance(file, dict):
        name = file.get("orig_name")
    else:
        name = getattr(file, "orig_name", None)
    name = name or upload_path(file).name
    return "".join(ch if ch.isprintable() else "?" for ch in os.path.basename(str(name)))[:80]


def read_photos(files) -> list:
    """Uploaded photos -> RGB PIL images, each through oneword's safe image loader; one clear line per refusal."""
    from ..images import load_image

    files = list(files or [])
    if not files:
        raise OnewordError("drop 3-5 photos of the concept (or name a folder)")
    if len(files) > MAX_PHOTOS:
        raise OnewordError(f"{len(files)} photos: at most {MAX_PHOTOS} (3-5 is what the method needs)")
    images = []
    for f in files:
        try:
            images.append(load_image(upload_path(f)).convert("RGB"))
        except OnewordError as e:
            raise OnewordError(f"photo {upload_name(f)}: {_without_path(str(e), upload_path(f))}") from None
    return images


def read_words(file) -> list:
    """An uploaded embedding file -> its concepts, through oneword's safe loaders (every format it reads)."""
    from .. import load_concepts

    path = upload_path(file)
    try:
        return load_concepts(path)
    except OnewordError as e:
        raise OnewordError(f"{upload_name(file)}: {_without_path(str(e), path)}") from None


def _without_path(message: str, path: Path) -> str:
    """A loader's message names the server's temporary path; the page shows the uploader's name instead."""
    return message.replace(str(path), "the file").replace(path.name, "the file")
