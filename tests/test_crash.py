"""Interruption: SIGKILL at random points, and Ctrl-C, never lose work or change the result."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

STEPS = 60


def learn_cmd(photos, model, out, *extra):
    return [
        sys.executable,
        "-m",
        "oneword",
        "learn",
        str(photos),
        "--token",
        "<k>",
        "--init",
        "ring",
        "--model",
        str(model),
        "--out",
        str(out),
        "--steps",
        str(STEPS),
        "--batch-size",
        "2",
        "--save-every",
        "1",
        "--quiet",
        *extra,
    ]


def env():
    e = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    e["PYTHONPATH"] = os.pathsep.join([os.getcwd(), e.get("PYTHONPATH", "")])
    return e


def assert_consistent(run_dir, finished=False):
    """Whatever exists in the run folder is whole: it parses. (A SIGKILL can strand a temp file, which
    the next run removes; it never replaces a real file.)"""
    for name in ("checkpoint.safetensors", "learned_embeds.safetensors"):
        if (run_dir / name).exists():
            load_file(run_dir / name)
    if (run_dir / "run.json").exists():
        json.loads((run_dir / "run.json").read_text())
    if finished:
        assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]


def current_step(run_dir):
    try:
        return json.loads((run_dir / "run.json").read_text())["step"]
    except FileNotFoundError:
        return 0


def wait_for_step(run_dir, step, proc, timeout=120):
    start = time.time()
    while time.time() - start < timeout and proc.poll() is None:
        try:
            if json.loads((run_dir / "run.json").read_text())["step"] >= step:
                return
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            pass
        time.sleep(0.05)


@pytest.fixture(scope="module")
def uninterrupted(tiny_dir, tmp_path_factory):
    """The run the interrupted ones must end at: its photos, vector and run.json. (How often a run checkpoints
    does not change what it learns; early stopping is on but never stops before --steps: min_steps is 200.)"""
    from conftest import write_photos

    base = tmp_path_factory.mktemp("uninterrupted")
    photos = write_photos(base / "photos")
    subprocess.run(learn_cmd(photos, tiny_dir, base / "run", "--save-every", "5"), env=env(), check=True, timeout=600)
    run = json.loads((base / "run" / "run.json").read_text())
    assert run["step"] == STEPS and len(run["early_stopping"]["val_losses"]) == 2
    return photos, load_file(base / "run" / "learned_embeds.safetensors")["<k>"], run


def test_sigkill_at_random_points_then_resume_equals_uninterrupted(tiny_dir, uninterrupted, tmp_path):
    photos, expected, _ = uninterrupted
    part = tmp_path / "part"
    rng = random.Random(1)
    kills = 0
    cmd = learn_cmd(photos, tiny_dir, part)
    for _ in range(3):
        proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_step(part, current_step(part) + rng.randint(2, 12), proc)
        time.sleep(rng.uniform(0.0, 0.05))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
        assert_consistent(part)
        cmd = [sys.executable, "-m", "oneword", "learn", "--resume", str(part), "--quiet"]
    assert kills >= 2
    subprocess.run(cmd, env=env(), check=True, timeout=300)
    assert_consistent(part, finished=True)
    assert json.loads((part / "run.json").read_text())["step"] == STEPS
    assert torch.equal(load_file(part / "learned_embeds.safetensors")["<k>"], expected)


def test_ctrl_c_saves_a_checkpoint_and_says_how_to_resume(tiny_dir, photos, tmp_path):
    out = tmp_path / "run"
    # a run far too long to finish before the signal (the last --steps wins), so the test always tests
    cmd = learn_cmd(photos, tiny_dir, out, "--save-every", "1000", "--steps", "1000000", "--no-early-stop")
    proc = subprocess.Popen(
        cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint
    )
    wait_for_step(out, 0, proc)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert "Traceback" not in err and last_line(err).startswith("error: interrupted at step")
    assert "oneword learn --resume" in last_line(err)
    state = json.loads((out / "run.json").read_text())
    assert state["status"] == "interrupted" and (out / "checkpoint.safetensors").is_file()


def last_line(err: str) -> str:
    """The command's error line (the lines before it say what it learns from)."""
    return err.strip().splitlines()[-1] if err.strip() else ""


def default_sigint():
    """For the child: default SIGINT handling (a shell without job control starts background commands with SIGINT
    ignored, and Python then installs no KeyboardInterrupt handler: that is what a backgrounded CI run looks like)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_at_random_moments_then_resume_equals_uninterrupted(tiny_dir, uninterrupted, tmp_path):
    """Ctrl-C lands anywhere: inside a step (between the update and the step count), during a validation, while
    saving. Each time the run stops at a whole step with a checkpoint, and resuming ends bit for bit at the
    uninterrupted run's vector and validation history."""
    photos, expected, whole_run = uninterrupted
    part = tmp_path / "part"
    rng = random.Random(3)
    # most steps are not check points (a checkpoint every 5 steps, validations after 25 and 50)
    cmd, stops = learn_cmd(photos, tiny_dir, part, "--save-every", "5"), []
    for _ in range(3):
        proc = subprocess.Popen(
            cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint
        )
        wait_for_step(part, current_step(part) + rng.randint(1, 10), proc)  # after a checkpoint of this process
        time.sleep(rng.uniform(0.0, 0.3))  # then anywhere in the steps that follow
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        if proc.returncode == 0:
            break
        err = last_line(err)
        assert proc.returncode == 2 and err.startswith("error: interrupted at step "), err
        state = json.loads((part / "run.json").read_text())
        assert state["status"] == "interrupted" and f"at step {state['step']};" in err
        stops.append(state["step"])
        cmd = [sys.executable, "-m", "oneword", "learn", "--resume", str(part), "--quiet"]
    assert len(stops) >= 2 and stops == sorted(stops) and len(set(stops)) == len(stops)
    assert any(s % 5 for s in stops)  # stopped between check points, not only at them
    subprocess.run(cmd, env=env(), check=True, timeout=300)
    assert_consistent(part, finished=True)
    run = json.loads((part / "run.json").read_text())
    assert run["step"] == STEPS and run["status"] == "done"
    assert run["early_stopping"]["val_losses"] == whole_run["early_stopping"]["val_losses"]
    assert torch.equal(load_file(part / "learned_embeds.safetensors")["<k>"], expected)


def test_repeated_ctrl_c_stops_at_once_keeps_the_last_checkpoint_and_prints_one_line(tiny_dir, uninterrupted, tmp_path):
    """A second Ctrl-C does not wait for the step to finish: the run stops at once, keeps its last checkpoint
    (the step in flight is not saved half done) and says so in one line; Ctrl-C pressed again and again while the
    command shuts down prints no traceback. Resuming still ends at the uninterrupted run's vector."""
    photos, expected, _ = uninterrupted
    part = tmp_path / "part"
    cmd = learn_cmd(photos, tiny_dir, part, "--save-every", "5")
    for gap in (0.005, 0.03):
        proc = subprocess.Popen(
            cmd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint
        )
        wait_for_step(part, current_step(part) + 3, proc)
        while proc.poll() is None:  # Ctrl-C, again and again until the command has ended
            proc.send_signal(signal.SIGINT)
            time.sleep(gap)
        err = proc.stderr.read()
        assert "Traceback" not in err and "Exception ignored" not in err, err
        err = last_line(err)
        assert proc.returncode == 2 and err.startswith("error: interrupted"), err
        with safe_open(part / "checkpoint.safetensors", "pt") as f:
            saved_at = json.loads(f.metadata()["state"])["step"]
        assert json.loads((part / "run.json").read_text())["step"] == saved_at
        if "during step" in err:  # stopped inside a step: the last periodic checkpoint stands
            assert saved_at % 5 == 0 and f"the checkpoint of step {saved_at} is kept" in err
        cmd = [sys.executable, "-m", "oneword", "learn", "--resume", str(part), "--quiet"]
    subprocess.run(cmd, env=env(), check=True, timeout=300)
    assert json.loads((part / "run.json").read_text())["step"] == STEPS
    assert torch.equal(load_file(part / "learned_embeds.safetensors")["<k>"], expected)


def test_full_disk_while_checkpointing_keeps_the_previous_checkpoint(tiny_model, photos, tmp_path, monkeypatch):
    import errno

    from oneword.errors import OnewordError
    from oneword.invert import LearnConfig, learn

    cfg = LearnConfig(token="<k>", init="ring", steps=4, batch_size=2, save_every=2, early_stop=False)
    out = tmp_path / "run"
    learn(tiny_model, photos, cfg, out, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".lock"}

    import os

    real_fsync, calls = os.fsync, []

    def no_space_after_run_json(fd):
        calls.append(fd)
        if len(calls) > 2:  # run.json at the start (file + folder) succeeds; the checkpoint hits a full disk
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", no_space_after_run_json)
    cfg.steps = 8
    with pytest.raises(OnewordError, match="disk full"):
        learn(tiny_model, photos, cfg, out, resume=True, progress=False)
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != ".lock"}
    assert len(calls) > 2  # the failure happened while checkpointing, after steps ran
    assert after.keys() == before.keys()  # no temp files left
    for name in ("checkpoint.safetensors", "learned_embeds.safetensors"):
        assert after[name] == before[name]  # the previous checkpoint is intact


def test_ctrl_c_while_the_step_is_prepared_saves_too_and_resumes_exactly(tiny_model, photos, tmp_path, monkeypatch):
    """Ctrl-C before the first step (on a GPU: while the step's CUDA graph is captured) is handled as between steps:
    a checkpoint, the resume hint, gradient checkpointing switched off again; resuming equals a run never stopped."""
    import oneword.invert as inv
    from oneword.errors import OnewordError

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    cfg = inv.LearnConfig(token="<k>", init="ring", steps=4, batch_size=2, early_stop=False, grad_checkpointing=True)
    with monkeypatch.context() as m:
        m.setattr(inv, "loss_runner", interrupted)
        with pytest.raises((OnewordError, KeyboardInterrupt)) as caught:  # (a bare KeyboardInterrupt would end pytest)
            inv.learn(tiny_model, photos, cfg, tmp_path / "part", progress=False)
    assert caught.type is OnewordError and "interrupted at step 0; checkpoint saved. Resume with" in str(caught.value)
    assert json.loads((tmp_path / "part" / "run.json").read_text())["status"] == "interrupted"
    assert not tiny_model.unet.is_gradient_checkpointing
    resumed = inv.learn(tiny_model, photos, cfg, tmp_path / "part", resume=True, progress=False)
    whole = inv.learn(tiny_model, photos, cfg, tmp_path / "whole", progress=False)
    assert torch.equal(resumed.vectors, whole.vectors)
