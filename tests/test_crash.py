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
from safetensors.torch import load_file

STEPS = 60


def learn_cmd(photos, model, out, *extra):
    return [sys.executable, "-m", "oneword", "learn", str(photos), "--token", "<k>", "--init", "ring",
            "--model", str(model), "--out", str(out), "--steps", str(STEPS), "--batch-size", "2",
            "--save-every", "1", "--quiet", *extra]


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


def test_sigkill_at_random_points_then_resume_equals_uninterrupted(tiny_dir, photos, tmp_path):
    whole = tmp_path / "whole"
    subprocess.run(learn_cmd(photos, tiny_dir, whole), env=env(), check=True, timeout=300)
    expected = load_file(whole / "learned_embeds.safetensors")["<k>"]

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
    # SIG_DFL in the child: a shell without job control starts background commands with SIGINT ignored, and
    # Python then installs no KeyboardInterrupt handler (that is what a backgrounded CI run looks like)
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_for_step(out, 0, proc)
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert "oneword learn --resume" in err and err.strip().count("\n") == 0
    state = json.loads((out / "run.json").read_text())
    assert state["status"] == "interrupted" and (out / "checkpoint.safetensors").is_file()


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
