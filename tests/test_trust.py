"""What a user can trust: nothing they did not name is replaced (and never the installed package), every bad
number, path, device, size or prompt is one `error:` line (exit 2) before anything runs, a learned word is never
silently dropped from a prompt, `--resume` continues exactly the run it names, and the command tells what it does."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import learn_args, one_line_error, run, write_photos

ROOT = Path(__file__).resolve().parent.parent


def word_file(folder, token="<w>", width=32, scale=0.1, seed=0):
    from oneword.concept import Concept
    from oneword.formats import save_concept

    g = torch.Generator().manual_seed(seed)
    path = Path(folder) / f"{token.strip('<>')}.safetensors"
    save_concept(Concept(token, torch.randn(1, width, generator=g) * scale, {}), path)
    return path


def gen(tiny_dir, prompt, out, *extra):
    return ("generate", prompt, "--model", tiny_dir, "-n", "1", "--steps", "1", "--out", out, *extra)


def evaluate_args(word, images, tiny_dir, out):
    """evaluate's cheapest run: one sample of one step per prompt, judged by the world judge."""
    cheap = ("--judge", "world", "-n", "1", "--steps", "1", "--bootstrap", "10")
    return ("evaluate", "--embeds", word, "--images", images, "--model", tiny_dir, *cheap, "--out", out)


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------ nothing the user did not name
def test_world_commands_never_write_into_the_package_unless_asked(capsys, tmp_path):
    from oneword.world import model_path

    package_world = model_path().parent
    before = {p: p.stat().st_mtime_ns for p in package_world.rglob("*") if p.is_file()}
    for argv in (
        ["world", "pretrain", "--tiny"],
        ["world", "tune-oracle", "--tiny"],
        ["world", "tune-clip", "--tiny"],
        ["world", "pretrain", "--tiny", "--out", package_world],
        ["world", "tune-oracle", "--tiny", "--out", package_world],
    ):
        code, _, err = run(capsys, *argv)
        one_line_error(code, err, "--into-package" if "--out" not in argv else "package")
    assert {p: p.stat().st_mtime_ns for p in package_world.rglob("*") if p.is_file()} == before


def test_the_writer_refuses_the_package_and_never_replaces_when_told(tmp_path):
    from oneword import safeio
    from oneword.errors import OnewordError

    inside = Path(safeio.__file__).parent / "world" / "not-here.json"
    with pytest.raises(OnewordError, match="package"):
        safeio.atomic_write_json(inside, {})
    assert not inside.exists()
    target = tmp_path / "kept.txt"
    target.write_text("mine")
    with pytest.raises(OnewordError, match="already exists"):
        safeio.atomic_write_bytes(target, b"theirs", replace=False)
    assert target.read_text() == "mine" and [p.name for p in tmp_path.iterdir()] == ["kept.txt"]


def test_existing_images_are_kept_unless_overwrite_which_also_clears_stale_numbered_ones(capsys, tiny_dir, tmp_path):
    out = tmp_path / "g.png"
    code, printed, err = run(capsys, *gen(tiny_dir, "a photo", out, "-n", "3"))
    assert code == 0, err
    assert "g_00.png ... g_02.png" in printed and "1 images" not in printed and " in " in printed  # with its timing
    before = snapshot(tmp_path)
    code, _, err = run(capsys, *gen(tiny_dir, "a photo", out, "-n", "3", "--seed", "5"))
    one_line_error(code, err, "--overwrite")
    assert snapshot(tmp_path) == before
    code, printed, err = run(capsys, *gen(tiny_dir, "a photo", out, "-n", "2", "--seed", "5", "--overwrite"))
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.png", "g_00.png", "g_01.png"]  # no stale g_02.png
    assert snapshot(tmp_path)[Path("g_00.png")] != before[Path("g_00.png")]


def test_convert_never_replaces_its_input_or_an_existing_file_unless_overwrite(capsys, tmp_path):
    w = word_file(tmp_path)
    out = tmp_path / "c.pt"
    assert run(capsys, "convert", w, out)[0] == 0
    before = snapshot(tmp_path)
    one_line_error(*run(capsys, "convert", w, out, "--token", "<v>")[::2], "--overwrite")
    for argv in ([w, w, "--overwrite"], [w, w, "--format", "kohya", "--overwrite"]):
        one_line_error(*run(capsys, "convert", *argv)[::2], "input")
    assert snapshot(tmp_path) == before
    assert run(capsys, "convert", w, out, "--token", "<v>", "--overwrite")[0] == 0
    assert snapshot(tmp_path)[Path("c.pt")] != before[Path("c.pt")]


def test_edit_never_replaces_its_photo_or_mask(capsys, tiny_dir, tmp_path):
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(photo)
    mask = tmp_path / "mask.png"
    m = np.zeros((32, 32), np.uint8)
    m[8:24, 8:24] = 255
    Image.fromarray(m).save(mask)
    before = snapshot(tmp_path)

    def edit_one_step(out, *extra):
        return run(
            capsys, "edit", photo, "a photo", "--mask", mask, "--model", tiny_dir, "--steps", "1", "--out", out, *extra
        )

    for out in (photo, mask):
        code, _, err = edit_one_step(out, "--overwrite")
        one_line_error(code, err, "input")
    code, _, err = run(
        capsys, "edit", photo, "a photo", "--mask", tmp_path, "--model", tiny_dir, "--out", tmp_path / "e.png"
    )
    one_line_error(code, err, "is a folder")  # not "not found"
    assert snapshot(tmp_path) == before
    code, printed, err = edit_one_step(tmp_path / "e.png")
    assert code == 0 and " s" in printed, err


def test_demo_never_replaces_another_demo_or_other_files(capsys, tmp_path):
    from oneword.world.concepts import NOVEL_CONCEPTS

    out = tmp_path / "demo"
    (out / "photos").mkdir(parents=True)
    for i, im in enumerate(NOVEL_CONCEPTS["teal_ring"].photos(5, seed=0)):
        im.save(out / "photos" / f"{i:02d}.png")
    before = snapshot(out)
    code, _, err = run(capsys, "demo", "--out", out, "--seed", "1")
    one_line_error(code, err, "another demo")
    assert snapshot(out) == before
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    code, _, err = run(capsys, "demo", "--out", other)
    one_line_error(code, err, "not empty")
    assert [p.name for p in other.iterdir()] == ["notes.txt"]


# ------------------------------------------------------------------------------ one line for every bad input
@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--height", "7"], "multiple of 4"),
        (["--height", "33"], "multiple of 4"),
        (["--height", "-32"], "--height"),
        (["--height", "0"], "--height"),
        (["--steps", "0"], "--steps"),
        (["--steps", "-1"], "--steps"),
        (["--steps", "100000000"], "--steps"),
        (["--steps", "5000"], "noise schedule"),
        (["--seed", "99999999999999999999"], "--seed"),
        (["--guidance", "inf"], "finite"),
        (["--guidance", "nan"], "finite"),
        (["--device", "tpu"], "tpu"),
        (["--device", "meta"], "meta"),
        (["--width", "100000"], "--width"),
        (["-n", "0"], "-n"),
        (["--out", "dir/"], "folder"),
        (["--out", "x.gif"], ".gif"),
    ],
)
def test_bad_sampling_arguments_are_one_line(capsys, tiny_dir, tmp_path, argv, needle):
    code, _, err = run(capsys, *gen(tiny_dir, "a photo", tmp_path / "g.png"), *argv)
    one_line_error(code, err, needle)
    assert not list(tmp_path.glob("*.png"))


def test_cuda_without_a_gpu_is_one_line(capsys, tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = run(capsys, *gen(tiny_dir, "a photo", tmp_path / "g.png", "--device", "cuda"))
    one_line_error(code, err, "--device cpu")


def test_edit_steps_zero_and_templates(capsys, tiny_dir, tmp_path):
    code, _, err = run(capsys, "edit", tmp_path / "p.png", "x", "--box", "0,0,4,4", "--steps", "0")
    one_line_error(code, err, "--steps")
    w = word_file(tmp_path)

    def variations(template, *extra):
        argv = ("variations", "--embeds", w, "--model", tiny_dir, "--template", template, "-n", "1", *extra)
        return run(capsys, *argv, "--out", tmp_path / "v.png")

    for template in ("a {x} of {}", "a sketch of {", "{} {}", "no word"):
        code, _, err = variations(template)
        one_line_error(code, err, "--template")
    code, _, err = variations("{{a}} {}", "--steps", "1")
    assert code == 0, err


@pytest.mark.parametrize("argv", [["--n", "0"], ["--steps", "0"], ["--n-oracle", "-1"]])
def test_world_check_numbers(capsys, argv):
    one_line_error(*run(capsys, "world", "check", *argv)[::2], argv[0])


def test_bad_out_and_resume_paths_are_one_line(capsys, tiny_dir, photos, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    for out, needle in (
        (afile, "is a file"),
        (tmp_path / "dangling", "symlink"),
        (tmp_path / "loop1", "symlink"),
        (afile / "sub", "is a file"),
    ):
        one_line_error(*run(capsys, *learn_args(photos, tiny_dir, out))[::2], needle)
        one_line_error(*run(capsys, *gen(tiny_dir, "a photo", Path(out) / "g.png"))[::2])
    one_line_error(*run(capsys, "learn", "--resume", afile)[::2], "is a file")
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for text in ("{bad", "[1, 2]", '{"config": 3}'):
        (damaged / "run.json").write_text(text)
        one_line_error(*run(capsys, "learn", "--resume", damaged)[::2], "damaged")
    assert afile.read_text() == "x"


def test_an_unwritable_out_folder_is_one_line(capsys, tiny_dir, photos, tmp_path, monkeypatch):
    """(As root every folder is writable, so the permission is taken away where oneword asks for it.)"""
    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == ro else real(p, mode, **kw))
    one_line_error(*run(capsys, *learn_args(photos, tiny_dir, ro / "run"))[::2], "permission")
    one_line_error(*run(capsys, *gen(tiny_dir, "a photo", ro / "g.png"))[::2], "permission")
    assert not list(ro.iterdir())


def test_memory_the_device_does_not_have_is_refused_before_allocating(capsys, tiny_dir, photos, tmp_path, monkeypatch):
    from oneword import validate

    monkeypatch.setattr(validate, "available_bytes", lambda dev: 2 << 30)  # a 2 GiB device, on any machine
    code, _, err = run(capsys, *gen(tiny_dir, "a photo", tmp_path / "g.png", "--width", "16384", "--height", "16384"))
    one_line_error(code, err, "GiB", "--height/--width")
    code, _, err = run(capsys, *learn_args(photos, tiny_dir, tmp_path / "a", "--resolution", "16384"))
    one_line_error(code, err, "GiB", "--resolution")
    code, _, err = run(
        capsys, *learn_args(photos, tiny_dir, tmp_path / "a", "--resolution", "2048", "--batch-size", "4096")
    )
    one_line_error(code, err, "GiB", "--batch-size")
    assert not (tmp_path / "a").exists() and not list(tmp_path.glob("*.png"))
    code, _, err = run(capsys, *gen(tiny_dir, "a photo", tmp_path / "g.png", "--width", "64"))  # what fits still runs
    assert code == 0, err


def test_an_out_of_memory_error_is_one_line(capsys, monkeypatch, tmp_path):
    from oneword.commands import inspect

    def oom(args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(inspect, "run", oom)
    one_line_error(*run(capsys, "inspect", tmp_path / "w.pt")[::2], "out of memory")


def test_inspect_into_a_closed_pipe_is_quiet(tmp_path):
    w = word_file(tmp_path)
    code = "import sys; from oneword.commands import main; sys.exit(main(['inspect', sys.argv[1]]))"
    p = subprocess.Popen([sys.executable, "-c", code, str(w)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # like `| head -0`: the reader has gone before anything is printed
    err = p.stderr.read().decode()
    p.wait(timeout=300)
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, err


def test_a_second_ctrl_c_while_exiting_prints_no_traceback(tmp_path):
    code = (
        "import atexit, os, signal, sys\n"
        "from oneword import commands\n"
        "from oneword.commands import inspect\n"
        "def interrupted(args): raise KeyboardInterrupt\n"
        "inspect.run = interrupted\n"
        "atexit.register(lambda: os.kill(os.getpid(), signal.SIGINT))  # Ctrl-C again while shutting down\n"
        "sys.argv = ['oneword', 'inspect', 'x.pt']\n"
        "sys.exit(commands.main())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.stderr == "error: interrupted\n" and done.returncode == 2, done.stderr


# ------------------------------------------------------------------------------ no learned word silently dropped
def test_a_prompt_that_would_cut_off_a_learned_word_is_refused(capsys, tiny_dir, tmp_path):
    w = word_file(tmp_path)
    long = "a photo of " + "very " * 80 + "big <w>"
    code, _, err = run(capsys, *gen(tiny_dir, long, tmp_path / "g.png", "--embeds", w))
    one_line_error(code, err, "<w>", "cut off")
    code, _, err = run(capsys, *gen(tiny_dir, "a photo of <w> " + "very " * 80, tmp_path / "g.png", "--embeds", w))
    assert code == 0 and "warning: prompt is" in err and "Traceback" not in err, err  # plain words past the limit


def test_a_word_no_embedding_defines_is_refused(capsys, tiny_dir, tmp_path):
    w = word_file(tmp_path)
    code, _, err = run(capsys, *gen(tiny_dir, "a photo of <foo>", tmp_path / "g.png", "--embeds", w))
    one_line_error(code, err, "<foo>", "--embeds", "<w>")
    photo = tmp_path / "p.png"
    Image.new("RGB", (32, 32), "white").save(photo)
    code, _, err = run(
        capsys,
        "edit",
        photo,
        "a photo of <foo>",
        "--box",
        "0,0,16,16",
        "--model",
        tiny_dir,
        "--steps",
        "1",
        "--out",
        tmp_path / "e.png",
    )
    one_line_error(code, err, "<foo>")
    assert not list(tmp_path.glob("g*.png")) and not (tmp_path / "e.png").exists()


def test_a_preview_prompt_is_checked_before_learning(capsys, tiny_dir, photos, tmp_path):
    for text, needle in (("a photo of <foo>", "<foo>"), ("a photo of " + "very " * 80 + "<r>", "cut off")):
        code, _, err = run(
            capsys, *learn_args(photos, tiny_dir, tmp_path / "a", "--preview-every", "1", "--preview-prompt", text)
        )
        one_line_error(code, err, "--preview-prompt", needle)
    assert not (tmp_path / "a").exists()
    code, _, err = run(
        capsys,
        *learn_args(photos, tiny_dir, tmp_path / "a", "--preview-every", "1", "--preview-prompt", "a sketch of <r>"),
    )
    assert code == 0, err


def test_vectors_that_do_not_fit_the_prompts_are_refused_before_any_file(capsys, tiny_dir, photos, tmp_path):
    code, _, err = run(capsys, *learn_args(photos, tiny_dir, tmp_path / "a", "--vectors", "70"))
    one_line_error(code, err, "--vectors 70", "fewer")
    code, _, err = run(capsys, *learn_args(photos, tiny_dir, tmp_path / "b", "--vectors", "1000"))
    one_line_error(code, err, "--vectors")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_huge_embedding_values_are_an_error_not_black_images(capsys, tiny_dir, tmp_path):
    w = word_file(tmp_path, scale=1e30)
    code, _, err = run(capsys, *gen(tiny_dir, "a photo of <w>", tmp_path / "g.png", "--embeds", w))
    one_line_error(code, err, "non-finite", "<w>")
    assert not list(tmp_path.glob("*.png"))
    code, _, err = run(capsys, *evaluate_args(w, write_photos(tmp_path / "photos"), tiny_dir, tmp_path / "eval"))
    one_line_error(code, err, "non-finite", "<w>")
    assert not (tmp_path / "eval" / "evaluation.json").exists()


# ------------------------------------------------------------------------------ resume continues the run it names
def test_resume_from_another_folder_and_its_rules(capsys, tiny_dir, tmp_path, monkeypatch):
    photos = write_photos(tmp_path / "photos")
    monkeypatch.chdir(tmp_path)
    assert run(capsys, *learn_args("photos", tiny_dir, "run"))[0] == 0  # relative paths, as typed
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for extra in (
        ["--lr", "0.1"],
        ["--batch-size", "1"],
        ["--vectors", "2"],
        ["--token", "<x>"],
        ["--out", "x"],
        ["--seed", "3"],
    ):
        code, _, err = run(capsys, "learn", "--resume", tmp_path / "run", "--steps", "3", "--quiet", *extra)
        one_line_error(code, err, extra[0], "--steps")
    code, _, err = run(capsys, "learn", tmp_path / "photos", "--resume", tmp_path / "run", "--quiet")
    one_line_error(code, err, "PHOTOS")
    assert not (elsewhere / "x").exists()
    code, _, err = run(capsys, "learn", "--resume", tmp_path / "run", "--steps", "3", "--quiet")
    assert code == 0, err
    assert json.loads((tmp_path / "run" / "run.json").read_text())["step"] == 3
    Image.new("RGB", (64, 64), "red").save(photos / "00.png")  # a photo changed since the run started
    code, _, err = run(capsys, "learn", "--resume", tmp_path / "run", "--steps", "4", "--quiet")
    one_line_error(code, err, "photos changed")
    assert json.loads((tmp_path / "run" / "run.json").read_text())["step"] == 3


# ------------------------------------------------------------------------------ messages whose advice works
def test_init_word_advice_names_a_word_the_model_knows(capsys, photos, tmp_path):
    code, _, err = run(
        capsys, "learn", photos, "--token", "<x>", "--init", "cat", "--out", tmp_path / "a", "--steps", "1", "--quiet"
    )  # the world model: no cat
    line = one_line_error(code, err, "'cat'")
    suggested = line.rsplit("--init ", 1)[1].split()[0]
    assert suggested != "cat"
    from oneword.models import load_model

    assert len(load_model(None, device="cpu").tokenizer(suggested, add_special_tokens=False).input_ids) == 1


def test_name_collisions_suggest_convert_token_and_no_missing_flag(capsys, tiny_dir, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    wa, wb = word_file(a), word_file(b, seed=1)
    code, _, err = run(capsys, *gen(tiny_dir, "a photo of <w>", tmp_path / "g.png", "--embeds", wa, "--embeds", wb))
    one_line_error(code, err, "oneword convert", "--token")
    from oneword.concept import Concept
    from oneword.errors import OnewordError
    from oneword.install import install_concepts
    from oneword.models import load_model

    model = load_model(str(tiny_dir), device="cpu")
    for name in ("cat", "Cat"):  # a vocabulary word as it is, and as the tokenizer reads it
        with pytest.raises(OnewordError) as e:
            install_concepts(model, [Concept(name, torch.zeros(1, 32), {})])
        assert "explicitly" not in str(e.value) and "--token" in str(e.value)


# ------------------------------------------------------------------------------ what a new user meets
def test_learn_reports_its_photos_and_warns_about_the_world_model(capsys, tmp_path):
    photos = write_photos(tmp_path / "photos", n=2, size=96)
    (photos / "IMG_0001.HEIC").write_bytes(b"\0\0\0\x18ftypheic" + b"\0" * 64)

    def learn_one_step(photos, token, out):  # on the world model (no --model)
        argv = ("learn", photos, "--token", token, "--init", "ring", "--out", out, "--steps", "1", "--save-every", "1")
        return run(capsys, *argv, "--quiet")

    code, printed, err = learn_one_step(photos, "<x>", tmp_path / "a")
    assert code == 0, err
    assert "learning from 2 photos" in printed and "IMG_0001.HEIC" in printed
    assert "world model" in printed and "--model" in printed
    code, printed, err = learn_one_step(write_photos(tmp_path / "one", n=1), "<y>", tmp_path / "b")
    assert code == 0 and "one photo" in printed and "world model" not in printed, err  # 64 px: a world-like photo


def test_run_folders_keep_no_lock_and_a_failed_run_leaves_no_folder(capsys, tiny_dir, photos, tmp_path):
    assert run(capsys, *learn_args(photos, tiny_dir, tmp_path / "a"))[0] == 0
    assert not (tmp_path / "a" / ".lock").exists()
    code, _, err = run(
        capsys,
        "learn",
        photos,
        "--token",
        "cat",
        "--model",
        tiny_dir,
        "--out",
        tmp_path / "b",
        "--steps",
        "1",
        "--quiet",
    )
    one_line_error(code, err, "already")
    assert not (tmp_path / "b").exists()


def test_help_shows_defaults_and_evaluate_says_what_it_does(capsys, tiny_dir, photos, tmp_path):
    texts = {name: _help(name) for name in ("generate", "learn", "variations")}
    assert "(default: 4)" in texts["generate"] and "(default: out.png)" in texts["generate"]
    assert "(default: 16)" in texts["variations"]
    for flag in ("--steps", "--lr", "--batch-size"):
        assert "default: " in texts["learn"].split(flag, 2)[-1].split("\n  --", 1)[0], flag
    code, printed, err = run(capsys, *evaluate_args(word_file(tmp_path), photos, tiny_dir, tmp_path / "eval"))
    assert code == 0, err
    assert printed.startswith("evaluating <w> on 4 photos") and "prompt 1/" in printed, printed


def _help(name):
    import argparse

    from oneword.commands import build_parser

    [sub] = [a for a in build_parser()._actions if a.dest == argparse.SUPPRESS and getattr(a, "choices", None)]
    return sub.choices[name].format_help()


# ------------------------------------------------------------------------------ the Python API
def test_learn_config_left_unset_takes_the_models_defaults(tiny_dir, photos, tmp_path):
    import shutil

    from oneword import LearnConfig, learn, load_model

    folder = tmp_path / "model"
    shutil.copytree(tiny_dir, folder)
    (folder / "oneword.json").write_text(json.dumps({"learn": {"steps": 3, "batch_size": 1, "min_steps": 1}}))
    model = load_model(str(folder), device="cpu")
    learn(model, photos, LearnConfig(token="<d>", init="ring", save_every=1), tmp_path / "run", progress=False)
    saved = json.loads((tmp_path / "run" / "run.json").read_text())
    assert saved["step"] == 3 and saved["config"]["batch_size"] == 1
    world = load_model(None, device="cpu")
    assert LearnConfig(token="<d>").for_model(world).steps == 1250 and LearnConfig(steps=7).for_model(world).steps == 7


def test_evaluate_after_generate_with_the_same_word(tiny_dir, photos, tmp_path):
    from oneword import evaluate, generate, load_concepts, load_model
    from oneword.evaluation import EvalConfig, load_judge

    model = load_model(str(tiny_dir), device="cpu")
    [word] = load_concepts(word_file(tmp_path))
    generate(model, "a photo of <w>", [word], n=1, steps=1)
    report = evaluate(model, photos, [word], judge=load_judge("world"), config=EvalConfig(n=1, steps=1, bootstrap=10))
    assert report["results"][0]["subject"] == "<w>"
    generate(model, "a photo of <w>", [word], n=1, steps=1)  # and again after it


def test_the_package_docstring_example_runs(tiny_dir, tmp_path, monkeypatch):
    import oneword

    lines = [ln.strip() for ln in oneword.__doc__.splitlines() if ln.startswith("    ")]
    code = "\n".join(ln.split("  #")[0] for ln in lines)
    code = code.replace('"runwayml/stable-diffusion-v1-5"', repr(str(tiny_dir)))
    code = code.replace('init="cat")', 'init="cat", steps=2, batch_size=2)').replace("n=4", "n=1, steps=1")
    write_photos(tmp_path / "photos")
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, "oneword/__init__.py", "exec"), namespace)
    assert len(namespace["images"]) == 1 and callable(namespace["generate"])


def test_a_models_fingerprint_does_not_depend_on_where_its_folder_lies(tmp_path):
    """Checkpoints, the shipped photo encoder and resume compare fingerprints: the same weights in another folder
    (another install, a moved checkout) must give the same one."""
    import shutil

    from oneword.models import load_model
    from oneword.world import model_path

    moved = shutil.copytree(model_path(), tmp_path / "moved")
    here = load_model(None, device="cpu").identity["fingerprint"]
    assert load_model(str(moved), device="cpu").identity["fingerprint"] == here
