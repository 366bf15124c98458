"""The command line as a user meets it: the main jobs work, bad input gets one line and exit code 2."""

import argparse
import json
import subprocess
import sys
from functools import partial

import pytest
import torch
from PIL import Image

from oneword.commands import main

from conftest import learn_args, one_line_error, run, write_photos

learn_args = partial(learn_args, token="<teal-ring>", steps=4, save_every=2)


def test_learn_then_generate_with_two_words(capsys, tiny_dir, photos, tmp_path):
    code, out, err = run(capsys, *learn_args(photos, tiny_dir, tmp_path / "a", "--preview-every", "2"))
    assert code == 0, err
    run_json = json.loads((tmp_path / "a" / "run.json").read_text())
    assert run_json["step"] == 4 and run_json["config"]["token"] == "<teal-ring>"
    assert (tmp_path / "a" / "previews" / "step_000004.png").is_file()
    other = write_photos(tmp_path / "other", seed=3)
    code, _, err = run(
        capsys,
        "learn",
        other,
        "--token",
        "<blob>",
        "--model",
        tiny_dir,
        "--out",
        tmp_path / "b",
        "--steps",
        "2",
        "--vectors",
        "2",
        "--quiet",
    )
    assert code == 0, err
    code, out, err = run(
        capsys,
        "generate",
        "a photo of <teal-ring> next to <blob>",
        "--model",
        tiny_dir,
        "--embeds",
        tmp_path / "a" / "learned_embeds.safetensors",
        "--embeds",
        tmp_path / "b" / "learned_embeds.safetensors",
        "-n",
        "2",
        "--steps",
        "2",
        "--out",
        tmp_path / "g.png",
    )
    assert code == 0, err
    assert Image.open(tmp_path / "g.png").size[0] > 16
    assert (tmp_path / "g_00.png").is_file() and (tmp_path / "g_01.png").is_file()


@pytest.mark.parametrize(
    "flag,value",
    [
        ("--save-every", "0"),
        ("--steps", "-3"),
        ("--batch-size", "0"),
        ("--lr", "-0.5"),
        ("--lr", "nan"),
        ("--warmup", "-1"),
        ("--vectors", "0"),
        ("--vectors", "76"),
        ("--steps", "1000001"),
        ("--resolution", "4"),
        ("--reg-weight", "-0.5"),
        ("--preview-every", "-1"),
    ],
)
def test_settings_that_cannot_run_are_refused_in_one_line_before_any_work(
    capsys, tiny_dir, photos, tmp_path, flag, value
):
    """learn's flag refuses the value in one line; LearnConfig.validate (Python, learn-many) refuses it in the same
    words, as both read validate.LEARN_SETTINGS."""
    from oneword.errors import OnewordError
    from oneword.invert import LearnConfig
    from oneword.validate import LEARN_SETTINGS, number

    code, _, err = run(capsys, *learn_args(photos, tiny_dir, tmp_path / "a", flag, value))
    one_line_error(code, err, flag)
    assert not (tmp_path / "a").exists()
    field = flag.removeprefix("--").replace("-", "_")
    typed = (float if LEARN_SETTINGS[field][0] is number else int)(value)
    with pytest.raises(OnewordError) as refused:
        LearnConfig(**{field: typed}).validate()
    assert str(refused.value).removeprefix(flag + " ") in err, (str(refused.value), err)


def test_existing_run_is_not_overwritten(capsys, tiny_dir, photos, tmp_path):
    assert run(capsys, *learn_args(photos, tiny_dir, tmp_path / "a"))[0] == 0
    before = (tmp_path / "a" / "learned_embeds.safetensors").read_bytes()
    code, _, err = run(capsys, *learn_args(photos, tiny_dir, tmp_path / "a"))
    one_line_error(code, err, "--resume")
    assert (tmp_path / "a" / "learned_embeds.safetensors").read_bytes() == before


def test_resume_from_the_cli_continues_to_more_steps(capsys, tiny_dir, photos, tmp_path):
    assert run(capsys, *learn_args(photos, tiny_dir, tmp_path / "a"))[0] == 0
    code, out, err = run(capsys, "learn", "--resume", tmp_path / "a", "--steps", "6", "--quiet")
    assert code == 0, err
    assert json.loads((tmp_path / "a" / "run.json").read_text())["step"] == 6


@pytest.mark.parametrize("case", ["empty", "not_images", "corrupt", "missing"])
def test_bad_photo_folders(capsys, tiny_dir, tmp_path, case):
    folder = tmp_path / "photos"
    if case != "missing":
        folder.mkdir()
    if case == "not_images":
        (folder / "notes.txt").write_text("hello")
    if case == "corrupt":
        write_photos(folder, n=2)
        (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    code, _, err = run(capsys, *learn_args(folder, tiny_dir, tmp_path / "out"))
    one_line_error(code, err)
    assert not (tmp_path / "out" / "learned_embeds.safetensors").exists()


def test_token_in_vocabulary_and_unknown_init(capsys, tiny_dir, photos, tmp_path):
    code, _, err = run(
        capsys, "learn", photos, "--token", "cat", "--model", tiny_dir, "--out", tmp_path / "a", "--quiet"
    )
    one_line_error(code, err, "already")
    code, _, err = run(
        capsys,
        "learn",
        photos,
        "--token",
        "<x>",
        "--init",
        "zqxjvbkw",
        "--model",
        tiny_dir,
        "--out",
        tmp_path / "b",
        "--quiet",
    )
    one_line_error(code, err, "zqxjvbkw")


def test_unknown_models(capsys, photos, tmp_path):
    code, _, err = run(capsys, *learn_args(photos, tmp_path / "nowhere", tmp_path / "a"))
    one_line_error(code, err, "unknown model")
    code, _, err = run(capsys, *learn_args(photos, "someone/not-cached-model", tmp_path / "a"))
    one_line_error(code, err, "--model")
    (tmp_path / "empty_model").mkdir()
    code, _, err = run(capsys, *learn_args(photos, tmp_path / "empty_model", tmp_path / "a"))
    one_line_error(code, err, "model_index.json")


def test_wrong_width_embedding_is_refused(capsys, tiny_dir, tmp_path):
    from oneword.concept import Concept
    from oneword.formats import save_concept

    save_concept(Concept("<wide>", torch.randn(1, 768), {}), tmp_path / "wide.safetensors")
    code, _, err = run(
        capsys,
        "generate",
        "a photo of <wide>",
        "--model",
        tiny_dir,
        "--embeds",
        tmp_path / "wide.safetensors",
        "-n",
        "1",
        "--steps",
        "1",
        "--out",
        tmp_path / "x.png",
    )
    one_line_error(code, err, "768", "32")
    assert not (tmp_path / "x.png").exists()


# ------------------------------------------------------------------------------------- help and entry points
def subparser(name):
    from oneword.commands import build_parser

    [sub] = [a for a in build_parser()._actions if a.dest == argparse.SUPPRESS and getattr(a, "choices", None)]
    return sub.choices[name]


def help_of(parser, dest):
    [action] = [a for a in parser._actions if a.dest == dest]
    return action.help


def test_every_subcommand_is_there_and_help_shows_defaults(capsys):
    from oneword.commands import build_parser

    parser = build_parser()
    text = parser.format_help()
    for name in ("learn", "generate", "variations", "edit", "evaluate", "convert", "inspect", "ui", "demo", "world"):
        assert name in text
        sub = subparser(name).format_help()
        assert "%%" not in sub and "%(" not in sub, name
    assert "95% bootstrap" in subparser("evaluate").format_help()
    assert "(default: 0)" in subparser("generate").format_help()  # --seed, which has no help text of its own
    assert "(default: out.png)" in subparser("generate").format_help()
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    from oneword import __version__

    assert capsys.readouterr().out.strip() == f"oneword {__version__}"


def test_defaults_named_in_help_are_the_librarys():
    from oneword.commands import evaluate
    from oneword.demo import DEMO_CONCEPT
    from oneword.evaluation import DEFAULT_CLIP
    from oneword.invert import BASE_DEFAULTS, LearnConfig
    from oneword.sampling import SD_SAMPLING
    from oneword.world.defaults import WORLD_DEFAULTS

    learn = subparser("learn")
    base, world = LearnConfig(), WORLD_DEFAULTS["learn"]
    for dest in (
        "steps",
        "batch_size",
        "lr",
        "warmup",
        "vectors",
        "property",
        "seed",
        "save_every",
        "preview_every",
        "reg_weight",
    ):
        text = help_of(learn, dest)
        default = BASE_DEFAULTS[dest] if getattr(base, dest) is None else getattr(base, dest)
        assert f"default: {default}" in text, (dest, text)
        if dest in world and world[dest] != default:
            assert f"world model: {world[dest]}" in text, (dest, text)
    for command in ("generate", "variations", "edit"):
        for dest in ("steps", "guidance"):
            text = help_of(subparser(command), dest)
            shipped = WORLD_DEFAULTS["generate"][dest]
            assert f"else {SD_SAMPLING[dest]}" in text and f"world model: {shipped:g}" in text, (command, text)
    assert evaluate.DEFAULT_CLIP == DEFAULT_CLIP
    assert f"default: {DEMO_CONCEPT}" in help_of(subparser("demo"), "concept")


def test_python_dash_m_oneword_is_the_command(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "oneword", "inspect", str(tmp_path / "missing.pt")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr


def test_ctrl_c_is_one_line_and_exit_2(capsys, monkeypatch, tmp_path):
    from oneword.commands import inspect

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(inspect, "run", interrupted)
    code, _, err = run(capsys, "inspect", tmp_path / "w.pt")
    assert code == 2 and err == "error: interrupted\n"
    code, out, _ = run(capsys)  # no command: the help, and exit 2
    assert code == 2 and "COMMAND" in out
