"""Bounded fuzzing of every embedding format: malformed input gives OnewordError and nothing else, fast,
and never runs code. The long run (>= 1000 files per format, crash/hang counts) is benchmarks/fuzz.py.

The cases differ from run to run: they are drawn from ONEWORD_FUZZ_SEED, which tests/conftest.py sets to a
random value when it is not given and prints in pytest's header; a failure names it, and
`ONEWORD_FUZZ_SEED=N pytest tests/test_fuzz.py` replays the same cases."""

import functools
import os
import random
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from benchmarks import fuzz
from oneword import commands
from oneword.concept import MAX_DIM, MAX_VECTORS
from oneword.errors import OnewordError
from oneword.formats import load_concepts

FUZZ_SEED = int(os.environ.get("ONEWORD_FUZZ_SEED") or random.SystemRandom().randrange(2**32))
EXAMPLES = 200
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=timedelta(seconds=10),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
WORK = Path(tempfile.mkdtemp(prefix="oneword-test-fuzz-"))
CANARY = WORK / "canary"
CANARY.mkdir()
SEEDS = None


def replayable(test):
    """Run `test` on cases drawn from FUZZ_SEED; a failure says how to draw the same cases again."""

    @functools.wraps(test)
    def run(*args, **kwargs):
        try:
            return test(*args, **kwargs)
        except BaseException as e:
            note = f"fuzz cases drawn from seed {FUZZ_SEED}: replay with ONEWORD_FUZZ_SEED={FUZZ_SEED}"
            print(note)  # pytest shows a failing test's output (Python < 3.11 has no exception notes)
            if hasattr(e, "add_note"):
                e.add_note(note)
            raise

    return run


def seeds():
    global SEEDS
    if SEEDS is None:
        SEEDS = fuzz.seed_files()
    return SEEDS


def check(data: bytes, ext: str) -> str:
    """Load `data` as a file: it must load as valid embeddings or raise one-line OnewordError, quickly."""
    path = WORK / f"case{ext}"
    path.write_bytes(data)
    t0 = time.perf_counter()
    try:
        concepts = load_concepts(path)
    except OnewordError as e:
        assert "\n" not in str(e) and str(e)
        outcome = "refused"
    else:
        for c in concepts:
            v = c.vectors
            assert v.dtype == torch.float32 and v.dim() == 2 and 1 <= v.shape[0] <= MAX_VECTORS
            assert 1 <= v.shape[1] <= MAX_DIM and bool(torch.isfinite(v).all())
            assert all(isinstance(k, str) and isinstance(x, str) for k, x in c.meta.items())
        outcome = "loaded"
    assert time.perf_counter() - t0 < 10, "took too long (hang?)"
    assert not any(CANARY.iterdir()), "code from the file ran"
    return outcome


@pytest.mark.parametrize("fmt", fuzz.FORMATS)
def test_seed_files_load(fmt):
    for data in seeds()[fmt]:
        assert check(data, fuzz.EXT[fmt]) == "loaded"


def test_a_name_with_a_line_break_in_a_corrupt_file_is_still_a_one_line_error():
    """The safetensors library quotes the bad tensor's name; a name read from the file may hold a line break
    (found by the fuzzer: ONEWORD_FUZZ_SEED=1917892111)."""
    import json
    import struct

    header = {
        "clip_g": {"dtype": "F32", "shape": [2, 1280], "data_offsets": [0, 10240]},
        "a\nb": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},  # overlaps clip_g's bytes
    }
    text = json.dumps(header).encode()
    data = struct.pack("<Q", len(text)) + text + bytes(10240)
    assert check(data, ".safetensors") == "refused"


def _fuzz_format(fmt):
    @hypothesis_seed(FUZZ_SEED)
    @SETTINGS
    @given(rng=st.randoms(use_true_random=False))
    def run(rng):
        data, _ = fuzz.make_case(fmt, rng, seeds(), CANARY / f"{fmt}-hit")
        check(data, fuzz.EXT[fmt])

    run()


@replayable
def test_fuzz_safetensors():
    _fuzz_format("safetensors")


@replayable
def test_fuzz_pt():
    _fuzz_format("pt")


@replayable
def test_fuzz_bin():
    _fuzz_format("bin")


@replayable
def test_fuzz_png():
    _fuzz_format("png")


@replayable
def test_fuzz_webp():
    _fuzz_format("webp")


@replayable
@hypothesis_seed(FUZZ_SEED)
@SETTINGS
@given(
    data=st.binary(max_size=4096),
    ext=st.sampled_from([".safetensors", ".pt", ".bin", ".png", ".webp"]),
    magic=st.sampled_from(
        [b"", b"\x89PNG\r\n\x1a\n", b"PK\x03\x04", b"RIFF\0\0\0\0WEBP", b"\x80\x02", b"\x10\0\0\0\0\0\0\0{"]
    ),
)
def test_fuzz_garbage_with_every_magic(data, ext, magic):
    check(magic + data, ext)


@replayable
@hypothesis_seed(FUZZ_SEED)
@settings(max_examples=60, deadline=timedelta(seconds=10), database=None)
@given(rng=st.randoms(use_true_random=False), where=st.sampled_from(["zip", "raw"]))
def test_fuzz_pickles_that_run_code(rng, where):
    payload, _ = fuzz.evil_pickle(rng, CANARY / "evil-hit")
    data = fuzz._zip_with(seeds()["pt"][0], replace={"data.pkl": payload}) if where == "zip" else payload
    assert check(data, ".pt") == "refused"


@replayable
def test_cli_gives_exit_2_and_one_line_on_malformed_files(capsys):
    rng = random.Random(FUZZ_SEED)
    for fmt in fuzz.FORMATS:
        for _ in range(4):
            data, kind = fuzz.make_case(fmt, rng, seeds(), CANARY / "cli-hit")
            path = WORK / f"cli{fuzz.EXT[fmt]}"
            path.write_bytes(data)
            rc = commands.main(["inspect", str(path)])
            out = capsys.readouterr()
            assert rc in (0, 2), (fmt, kind)
            if rc == 2:
                lines = [ln for ln in out.err.splitlines() if ln.startswith("error: ")]
                assert len(lines) == 1 and "Traceback" not in out.err, (fmt, kind, out.err)
    assert not any(CANARY.iterdir())
