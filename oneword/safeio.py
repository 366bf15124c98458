"""Crash-safe file writing: every file oneword writes appears whole or not at all.

Write to a temporary file in the same folder, fsync it, rename it over the target, fsync the folder.
A full disk or a kill at any point leaves the previous version of the target intact.

File modes are decided here, in :func:`_create_temporary`, for every file written through this module: a new
file gets ``0666`` less the umask, as a plain ``open()`` gives it; a file replaced keeps its permission bits.
"""

from __future__ import annotations

import errno
import io
import json
import os
import secrets
import stat
from contextlib import contextmanager
from pathlib import Path

from .errors import OnewordError


def read_regular_file(path: str | Path, limit: int, what: str = "file", too_big: str = "") -> bytes:
    """Read a whole regular file, refusing what could block or never end (FIFOs, devices), empty files and
    files over `limit` bytes, each with a one-line OnewordError naming the file."""
    import stat

    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise OnewordError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise OnewordError(f"{path} is a folder, not {what}") from None
    except OSError as e:
        raise OnewordError(f"cannot open {path}: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OnewordError(f"{path} is not a regular file")
        if st.st_size == 0:
            raise OnewordError(f"{path} is empty (0 bytes)")
        if st.st_size > limit:
            raise OnewordError(f"{path} is {st.st_size / 2**20:.0f} MB; {too_big or 'too big'}")
        chunks, left = [], st.st_size + 1
        while left > 0:
            b = os.read(fd, min(left, 1 << 20))
            if not b:
                break
            chunks.append(b)
            left -= len(b)
        data = b"".join(chunks)
        if len(data) > limit:
            raise OnewordError(f"{path} grew while being read (refused)")
        return data
    except OSError as e:
        raise OnewordError(f"cannot read {path}: {e.strerror or e}") from None
    finally:
        os.close(fd)


NEW_FILE_MODE = 0o666  # less the umask (the kernel applies it), as open() creates files


def _create_temporary(path: Path) -> tuple[int, str]:
    """A new temporary file beside ``path`` (``.NAME.RANDOM.tmp``, opened for writing) with the mode the
    finished file should have: that of the file it replaces, else ``NEW_FILE_MODE`` less the umask."""
    try:
        st = os.stat(path)
        keep = stat.S_IMODE(st.st_mode) & 0o777 if stat.S_ISREG(st.st_mode) else None
    except OSError:
        keep = None
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, flags, NEW_FILE_MODE)
        except FileExistsError:
            continue
        if keep is not None:
            try:
                os.fchmod(fd, keep)
            except OSError:
                os.close(fd)
                _unlink_quietly(tmp)
                raise
        return fd, tmp
    raise OSError(errno.EEXIST, "no free temporary file name", str(path.parent))


def atomic_write_bytes(path: str | Path, data: bytes, replace: bool = True) -> Path:
    """Write ``data`` to ``path`` whole or not at all. ``replace=False``: an existing ``path`` is never replaced
    (FileExistsError as a one-line OnewordError), even one created while this writes. Nothing is written inside
    the installed oneword package unless :func:`package_writes` allows it."""
    path = Path(path)
    _refuse_package(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _create_temporary(path)
    except OSError as e:
        raise OnewordError(f"cannot write {path}: {e.strerror or e}") from e
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if path exists: never replaces
            except FileExistsError:
                raise OnewordError(f"{path} already exists; it was not replaced") from None
            except OSError as e:  # a file system without hard links: check, then rename
                if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                    raise
                if os.path.lexists(path):
                    raise OnewordError(f"{path} already exists; it was not replaced") from None
                os.replace(tmp, path)
            _unlink_quietly(tmp)
    except OSError as e:
        _unlink_quietly(tmp)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OnewordError(f"disk full while writing {path}; the previous version is intact") from e
        raise OnewordError(f"cannot write {path}: {e.strerror or e}") from e
    except BaseException:
        _unlink_quietly(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_save_image(path: str | Path, image, replace: bool = True) -> Path:
    """Save a PIL image atomically, format from the extension."""
    buf = io.BytesIO()
    image.save(buf, format=_image_format(path))
    return atomic_write_bytes(path, buf.getvalue(), replace=replace)


_PACKAGE = Path(__file__).resolve().parent
_package_writes = [False]


@contextmanager
def package_writes():
    """Allow writing inside the installed oneword package for the duration (`oneword world pretrain --out` into
    the package's own folder, when the user asks for it by name)."""
    before = _package_writes[0]
    _package_writes[0] = True
    try:
        yield
    finally:
        _package_writes[0] = before


def _refuse_package(path: Path) -> None:
    if _package_writes[0]:
        return
    try:
        inside = Path(os.path.realpath(path)).is_relative_to(_PACKAGE)
    except (OSError, ValueError):
        inside = False
    if inside:
        raise OnewordError(
            f"{path} is inside the installed oneword package; oneword writes there only when asked explicitly"
        )


def _image_format(path) -> str:
    ext = Path(path).suffix.lower().lstrip(".")
    return {"jpg": "JPEG", "jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}.get(ext, "PNG")


def _unlink_quietly(p) -> None:
    try:
        os.unlink(p)
    except OSError:
        pass


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temporaries(folder: str | Path) -> int:
    """Delete temp files a killed writer left behind (call while holding the folder's run_lock)."""
    n = 0
    for p in Path(folder).glob(".*.tmp"):
        _unlink_quietly(p)
        n += 1
    return n


@contextmanager
def run_lock(folder: str | Path):
    """Hold an exclusive lock on a run folder so two runs cannot write into it at once. The lock file
    (``.lock``) is removed when the run ends, and so is the folder if this created it and nothing was written.

    Removing a lock file that others may have opened is safe because a holder checks, once locked, that the file
    it locked is still the one at ``.lock`` (else it locked a removed file, and tries again)."""
    import fcntl

    folder = Path(folder)
    _refuse_package(folder)
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OnewordError(f"cannot create the run folder {folder}: {e.strerror or e}") from None
    lock = folder / ".lock"
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as e:
            raise OnewordError(f"cannot lock {folder}: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OnewordError(
                f"{folder} is in use by another oneword run (remove nothing; wait for it to finish)"
            ) from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # locked a lock file its holder has just removed: lock the one there now
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield folder
    finally:
        _unlink_quietly(lock)  # while still locked: a waiter that opened it sees it gone and tries again
        os.close(fd)
        if created:
            try:
                folder.rmdir()  # only if empty: a run that failed before writing anything leaves nothing
            except OSError:
                pass
