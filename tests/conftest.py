import os
import random

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# tests/test_fuzz.py draws its cases from this seed: a new one each run unless given (then the same cases again)
os.environ.setdefault("ONEWORD_FUZZ_SEED", str(random.SystemRandom().randrange(2**32)))

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

torch.set_num_threads(1)  # tiny models: one thread is fastest (see models._pick_cpu_threads)


def pytest_report_header(config):
    seed = os.environ["ONEWORD_FUZZ_SEED"]
    return f"fuzz cases: ONEWORD_FUZZ_SEED={seed} (set it to replay them)"


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """A tiny random SD pipeline folder (epsilon prediction), built once per test session."""
    from oneword.tiny_models import make_tiny_pipeline

    path = tmp_path_factory.mktemp("tiny-sd")
    make_tiny_pipeline(path)
    return path


@pytest.fixture(scope="session")
def tiny_v_dir(tmp_path_factory):
    from oneword.tiny_models import make_tiny_pipeline

    path = tmp_path_factory.mktemp("tiny-sd-v")
    make_tiny_pipeline(path, prediction_type="v_prediction")
    return path


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    """A tiny random CLIPModel folder: the code path of a real CLIP judge."""
    from oneword.tiny_models import make_tiny_clip

    return make_tiny_clip(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture
def tiny_model(tiny_dir):
    from oneword.models import load_model

    return load_model(str(tiny_dir), device="cpu")


def write_photos(folder, n=4, size=64, seed=0):
    """n synthetic 'photos' of one object (a teal ring) at varied positions."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        im = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(150, 255, 3)))
        d = ImageDraw.Draw(im)
        x, y = rng.integers(8, size - 40, 2)
        d.ellipse([x, y, x + 30, y + 30], outline=(0, 128, 128), width=6)
        im.save(folder / f"{i:02d}.png")
    return folder


@pytest.fixture
def photos(tmp_path):
    return write_photos(tmp_path / "photos")


# ------------------------------------------------------------------ the command line, as the CLI tests run it
def run(capsys, *argv):
    """`oneword ARGV` in this process (paths as text): (exit code, stdout, stderr)."""
    from oneword.commands import main

    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(code, err, *needles):
    """A refusal as every command makes one: exit 2 and one `error:` line naming each needle; returns the line."""
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def learn_args(photos, tiny_dir, out, *extra, token="<r>", steps=2, save_every=1):
    """learn's argv on the tiny model: the word `token` from "ring", batch 2, no progress bar."""
    flags = ("--steps", str(steps), "--batch-size", "2", "--save-every", str(save_every), "--quiet")
    return ("learn", photos, "--token", token, "--init", "ring", "--model", tiny_dir, "--out", out, *flags, *extra)
