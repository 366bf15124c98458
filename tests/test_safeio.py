"""Crash-safe writes: a full disk keeps the previous file whole; a run folder has one writer at a time."""

import errno
import json
import os
import subprocess
import sys

import pytest
import torch

from oneword import safeio
from oneword.errors import OnewordError


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


class _FullDiskFile:
    """A file object whose writes fail part-way, as on a full disk (some bytes land, then ENOSPC)."""

    def __init__(self, real):
        self.real = real

    def write(self, data):
        self.real.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name):
        return getattr(self.real, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.real.close()


@pytest.mark.parametrize("where", ["write", "fsync", "replace"])
def test_full_disk_keeps_the_previous_file(tmp_path, monkeypatch, where):
    target = tmp_path / "checkpoint.safetensors"
    safeio.atomic_write_bytes(target, b"previous good checkpoint")
    if where == "write":
        real_fdopen = os.fdopen
        monkeypatch.setattr(os, "fdopen", lambda *a, **k: _FullDiskFile(real_fdopen(*a, **k)))
    else:

        def boom(*a, **k):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, where, boom)
    with pytest.raises(OnewordError, match="disk full.*previous version is intact") as e:
        safeio.atomic_write_bytes(target, b"new data that does not fit" * 1000)
    assert "\n" not in str(e.value)
    monkeypatch.undo()
    assert target.read_bytes() == b"previous good checkpoint"
    assert _leftovers(tmp_path) == []


def test_quota_and_other_errors_are_one_line(tmp_path, monkeypatch):
    target = tmp_path / "x.json"
    for code, match in ((errno.EDQUOT, "disk full"), (errno.EROFS, "cannot write")):

        def boom(*a, **k):
            raise OSError(code, os.strerror(code))

        monkeypatch.setattr(os, "fsync", boom)
        with pytest.raises(OnewordError, match=match):
            safeio.atomic_write_json(target, {"a": 1})
        monkeypatch.undo()
    assert not target.exists() and _leftovers(tmp_path) == []


def test_interrupt_during_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "run.json"
    safeio.atomic_write_text(target, "old")

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        safeio.atomic_write_text(target, "new")
    monkeypatch.undo()
    assert target.read_text() == "old" and _leftovers(tmp_path) == []


def test_writes_are_whole(tmp_path):
    safeio.atomic_write_json(tmp_path / "a" / "b.json", {"k": [1, 2]})
    assert (tmp_path / "a" / "b.json").read_text().startswith("{")
    from PIL import Image

    safeio.atomic_save_image(tmp_path / "g.png", Image.new("RGB", (4, 4)))
    assert Image.open(tmp_path / "g.png").size == (4, 4)


def test_run_lock_allows_one_holder(tmp_path):
    with safeio.run_lock(tmp_path / "run"):
        with pytest.raises(OnewordError, match="in use by another oneword run"):
            with safeio.run_lock(tmp_path / "run"):
                pass
        # another process is refused too
        code = (
            "import sys; from oneword import safeio\n"
            "try:\n    safeio.run_lock(sys.argv[1]).__enter__()\nexcept Exception as e:\n"
            "    print(type(e).__name__); sys.exit(3)\n"
        )
        r = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / "run")],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(safeio.__file__))),
        )
        assert r.returncode == 3 and "OnewordError" in r.stdout
    with safeio.run_lock(tmp_path / "run"):  # released on exit: can be taken again
        pass


def test_lock_is_released_when_the_holder_dies(tmp_path):
    code = "import os, sys; from oneword import safeio\nsafeio.run_lock(sys.argv[1]).__enter__(); os._exit(0)\n"
    subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "run")],
        check=True,
        timeout=60,
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(safeio.__file__))),
    )
    with safeio.run_lock(tmp_path / "run"):
        pass


def test_stale_temporaries_are_removed_and_nothing_else(tmp_path):
    """A killed writer strands `.NAME.XXXX.tmp` beside its target; clean-up removes exactly those."""
    keep = ["checkpoint.safetensors", "run.json", "notes.tmp", ".lock", "previews"]
    for name in keep[:-1]:
        (tmp_path / name).write_text("x")
    (tmp_path / "previews").mkdir()
    stale = [".checkpoint.safetensors.ab12cd.tmp", ".run.json.x9.tmp"]
    for name in stale:
        (tmp_path / name).write_bytes(b"half a file")
    assert safeio.remove_stale_temporaries(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)


def test_learn_removes_a_stale_temporary_from_its_run_folder(tiny_model, photos, tmp_path):
    """A run folder a SIGKILL left a temporary file in is cleaned when learning starts (under its lock)."""
    from oneword.invert import LearnConfig, learn

    out = tmp_path / "run"
    out.mkdir()
    (out / ".checkpoint.safetensors.k1ll3d.tmp").write_bytes(b"\0" * 100)
    cfg = LearnConfig(token="<k>", init="ring", steps=1, batch_size=1, save_every=1, early_stop=False)
    learn(tiny_model, photos, cfg, out, progress=False)
    assert _leftovers(out) == [] and (out / "checkpoint.safetensors").is_file()


def test_a_checkpoint_write_that_fails_halfway_keeps_the_previous_checkpoint_and_resume_is_exact(
    tiny_model, photos, tmp_path, monkeypatch
):
    """The checkpoint is replaced whole or not at all: a save that fails after writing half its bytes (the kernel's
    file-size limit, as a disk filling up mid-write) leaves the previous checkpoint and word bit for bit, and resuming
    from them ends at the uninterrupted run's vector."""
    import resource
    import signal

    import safetensors.torch
    from safetensors import safe_open

    from oneword.invert import LearnConfig, learn

    def cfg(steps):
        return LearnConfig(
            token="<k>", init="ring", steps=steps, batch_size=2, lr=5e-2, save_every=3, early_stop=False, seed=0
        )

    whole = learn(tiny_model, photos, cfg(9), tmp_path / "whole", progress=False)
    out = tmp_path / "part"
    learn(tiny_model, photos, cfg(3), out, progress=False)
    names = ("checkpoint.safetensors", "learned_embeds.safetensors")
    before = {n: (out / n).read_bytes() for n in names}

    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    real_save, limited = safetensors.torch.save, []

    def save_then_limit(*a, **k):  # the checkpoint's bytes are ready: from here on a file stops at half their size
        data = real_save(*a, **k)
        if not limited:
            limited.append(len(data) // 2)
            resource.setrlimit(resource.RLIMIT_FSIZE, (len(data) // 2, hard))
        return data

    monkeypatch.setattr(safetensors.torch, "save", save_then_limit)
    xfsz = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing
    try:
        with pytest.raises((OSError, OnewordError)):
            learn(tiny_model, photos, cfg(9), out, resume=True, progress=False)  # its first save, at step 6, fails
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, xfsz)
        monkeypatch.undo()
    assert limited and limited[0] > 0  # the failing write did get that far
    assert {n: (out / n).read_bytes() for n in names} == before
    with safe_open(str(out / "checkpoint.safetensors"), "pt") as f:
        assert json.loads(f.metadata()["state"])["step"] == 3
    resumed = learn(tiny_model, photos, cfg(9), out, resume=True, progress=False)
    assert torch.equal(resumed.vectors, whole.vectors)
