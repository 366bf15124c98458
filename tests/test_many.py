"""learn-many: several concepts in one batch, each as if learned alone; exact resume; bad input fails alone."""

import json

import pytest
import torch

from oneword import many
from oneword.commands import main
from oneword.errors import OnewordError
from oneword.formats import load_concepts
from oneword.invert import LearnConfig, learn
from oneword.many import Job, learn_many, read_jobs

from conftest import write_photos

SHARED = dict(batch_size=2, save_every=3, val_every=2, min_steps=1000, lr=5e-2)


def jobs_in(tmp_path, specs):
    """Photo folders with different photo counts, one job per spec (token, steps, seed, and optional fields)."""
    jobs = []
    for i, spec in enumerate(specs):
        folder = write_photos(tmp_path / "photos" / f"c{i}", n=3 + i, seed=i)
        jobs.append(Job(photos=str(folder), **spec))
    return jobs


SPECS = [
    dict(token="<ring>", init="ring", steps=7, seed=0),
    dict(token="<blob>", init="blue", vectors=2, property="style", steps=4, seed=1),
    dict(token="<dot>", init="dot", steps=9, seed=2),
    dict(token="<sq>", init="square", steps=5, seed=3),
]


def vectors(folder):
    return load_concepts(folder / "learned_embeds.safetensors")[0].vectors


def val_losses(folder):
    return json.loads((folder / "run.json").read_text())["early_stopping"]["val_losses"]


def test_each_concept_is_learned_as_if_alone(tiny_model, tmp_path):
    """Same seed alone (`learn`) or in a shared batch with words of other vector counts and properties: the same
    run folder, the same validation losses and vector within float batch effects (measured: ~1e-6 relative)."""
    jobs = jobs_in(tmp_path, SPECS)
    ended = []
    rows = learn_many(tiny_model, jobs, tmp_path / "many", slots=2, progress=False, callback=ended.append, **SHARED)
    assert [r["status"] for r in rows] == ["done"] * 4 and len(ended) == 4
    assert [r["steps"] for r in rows] == [7, 4, 9, 5]
    summary = json.loads((tmp_path / "many" / "summary.json").read_text())
    assert summary["failed"] == 0 and len(summary["concepts"]) == 4
    for job in jobs:
        cfg = LearnConfig(**{**SHARED, **job.overrides()})
        alone = learn(tiny_model, job.photos, cfg, tmp_path / "alone" / job.token.strip("<>"), progress=False)
        out = tmp_path / "many" / job.token.strip("<>")
        assert {"checkpoint.safetensors", "learned_embeds.safetensors", "run.json"} <= {p.name for p in out.iterdir()}
        together = vectors(out)
        assert together.shape == alone.vectors.shape
        assert torch.allclose(together, alone.vectors, rtol=1e-4, atol=1e-5)
        ours, theirs = val_losses(out), val_losses(tmp_path / "alone" / job.token.strip("<>"))
        assert len(ours) == len(theirs) > 0
        assert max(abs(a - b) for a, b in zip(ours, theirs)) < 1e-4
        run = json.loads((out / "run.json").read_text())
        assert run["status"] == "done" and run["engine"]["slots"] == 2


class Killed(BaseException):
    """Stands in for SIGKILL: nothing of the run's own cleanup saves anything."""


def test_a_kill_at_any_moment_then_resume_is_bit_identical(tiny_model, tmp_path, monkeypatch):
    jobs = jobs_in(tmp_path, SPECS)
    whole = learn_many(
        tiny_model,
        [Job(**{**j.__dict__, "out": None}) for j in jobs],
        tmp_path / "whole",
        slots=2,
        progress=False,
        **SHARED,
    )
    assert all(r["status"] == "done" for r in whole)
    original_iteration, original_save = many.Engine._iteration, many.Run.save

    def kill_at(n):
        def iteration(self):
            if self.iteration == n:
                raise Killed
            original_iteration(self)

        return iteration

    # killed between two snapshots (iteration 5: after concept <blob> ended and <dot> took its slot)
    monkeypatch.setattr(many.Engine, "_iteration", kill_at(5))
    with pytest.raises(Killed):
        learn_many(tiny_model, jobs_in(tmp_path / "a", SPECS), tmp_path / "part", slots=2, progress=False, **SHARED)
    monkeypatch.setattr(many.Engine, "_iteration", original_iteration)
    # killed inside a snapshot: one concept saved the new checkpoint, the next not yet, the state file is the old one
    saves = []

    def save(self, status, *a, **kw):
        saves.append(self.cfg.token)
        if len(saves) == 2:  # <ring> has saved its final checkpoint, <dot> not yet: the state file names the old one
            raise Killed
        return original_save(self, status, *a, **kw)

    monkeypatch.setattr(many.Run, "save", save)
    with pytest.raises(Killed):
        _resume(tiny_model, tmp_path / "part")
    monkeypatch.setattr(many.Run, "save", original_save)
    rows = _resume(tiny_model, tmp_path / "part")
    assert [r["status"] for r in rows] == ["done"] * 4
    for job in SPECS:
        name = job["token"].strip("<>")
        assert torch.equal(vectors(tmp_path / "part" / name), vectors(tmp_path / "whole" / name)), name
        assert val_losses(tmp_path / "part" / name) == val_losses(tmp_path / "whole" / name)


def _resume(model, out):
    jobs, settings, slots = many.resume_settings(out)
    return learn_many(model, jobs, out, slots=slots, resume=True, progress=False, **settings)


def test_bad_concepts_fail_alone_and_the_command_exits_2(tiny_dir, tmp_path, capsys):
    root = tmp_path / "jobs"
    write_photos(root / "good", n=3)
    write_photos(root / "also_good", n=4, seed=1)
    (root / "also_good" / "oneword.toml").write_text('init = "dot"\nseed = 5\n')
    (root / "broken").mkdir()
    (root / "broken" / "a.png").write_bytes(b"not a png at all")
    write_photos(root / "cat", n=3)
    (root / "cat" / "oneword.json").write_text('{"token": "cat"}')  # an ordinary word of the vocabulary
    write_photos(root / "auto", n=3, seed=2)
    (root / "auto" / "oneword.toml").write_text('init = "auto"\n')  # needs --clip on a real model
    code = main(
        [
            "learn-many",
            str(root),
            "--out",
            str(tmp_path / "out"),
            "--model",
            str(tiny_dir),
            "--device",
            "cpu",
            "--steps",
            "3",
            "--batch-size",
            "2",
            "--slots",
            "2",
            "--quiet",
        ]
    )
    assert code == 2
    out, err = capsys.readouterr()
    assert "3 of 5 concepts failed" in err
    summary = {r["token"]: r for r in json.loads((tmp_path / "out" / "summary.json").read_text())["concepts"]}
    assert summary["<good>"]["status"] == summary["<also_good>"]["status"] == "done"
    assert summary["<broken>"]["status"] == summary["cat"]["status"] == summary["<auto>"]["status"] == "failed"
    assert "pass --clip MODEL" in summary["<auto>"]["error"]
    for token in ("<broken>", "cat", "<auto>"):
        reason = summary[token]["error"]
        assert reason and "\n" not in reason and reason in out
        assert json.loads((tmp_path / "out" / token.strip("<>") / "run.json").read_text())["error"] == reason
    run = json.loads((tmp_path / "out" / "also_good" / "run.json").read_text())
    assert run["config"]["init"] == "dot" and run["config"]["seed"] == 5


def test_refused_before_anything_starts(tmp_path):
    write_photos(tmp_path / "p", n=3)
    with pytest.raises(OnewordError, match="both learn the token"):
        many.resolve_jobs(
            [{"photos": str(tmp_path / "p"), "token": "<a>"}, {"photos": str(tmp_path / "p"), "token": "<A>"}],
            tmp_path / "out",
        )
    with pytest.raises(OnewordError, match="both write to"):
        many.resolve_jobs(
            [
                {"photos": str(tmp_path / "p"), "token": "<a>", "out": str(tmp_path / "o")},
                {"photos": str(tmp_path / "p"), "token": "<b>", "out": str(tmp_path / "o")},
            ]
        )
    manifest = tmp_path / "jobs.jsonl"
    manifest.write_text('{"photos": "p", "token": "<a>"}\n\n{"photos": "p", "token": <b>}\n')
    with pytest.raises(OnewordError, match="line 3 is not valid JSON"):
        read_jobs(manifest, tmp_path / "out")
    manifest.write_text('{"photos": "p", "token": "<a>", "colour": "red"}\n')
    with pytest.raises(OnewordError, match="line 1: unknown field"):
        read_jobs(manifest, tmp_path / "out")
    manifest.write_text('{"photos": "p", "token": "<a>", "steps": 5}\n')
    [job] = read_jobs(manifest, tmp_path / "out")
    assert job.photos == str(tmp_path / "p") and job.steps == 5 and job.out == str(tmp_path / "out" / "a")


def test_ctrl_c_checkpoints_every_concept_and_the_cli_resumes_them(tiny_model, tiny_dir, tmp_path, monkeypatch, capsys):
    jobs = jobs_in(tmp_path, SPECS)
    learn_many(
        tiny_model,
        [Job(**{**j.__dict__, "out": None}) for j in jobs],
        tmp_path / "whole",
        slots=2,
        progress=False,
        **SHARED,
    )
    original = many.Engine._iteration

    def interrupted_at_5(self):
        if self.iteration == 5:
            raise KeyboardInterrupt
        original(self)

    monkeypatch.setattr(many.Engine, "_iteration", interrupted_at_5)
    with pytest.raises(
        OnewordError,
        match="interrupted; every running concept saved its checkpoint. Resume with: oneword learn-many --resume",
    ):
        learn_many(tiny_model, jobs, tmp_path / "part", slots=2, progress=False, **SHARED)
    monkeypatch.setattr(many.Engine, "_iteration", original)
    status = {
        s["token"]: json.loads((tmp_path / "part" / s["token"].strip("<>") / "run.json").read_text())["status"]
        for s in SPECS[:3]
    }
    assert status == {"<ring>": "interrupted", "<blob>": "done", "<dot>": "interrupted"}
    # the command finds the model in learn-many.json, as `learn --resume` finds it in run.json
    assert main(["learn-many", "--resume", str(tmp_path / "part"), "--device", "cpu", "--quiet"]) == 0
    assert "<sq>" in capsys.readouterr().out
    for s in SPECS:
        name = s["token"].strip("<>")
        assert torch.equal(vectors(tmp_path / "part" / name), vectors(tmp_path / "whole" / name)), name


def test_fixed_shapes_a_word_does_not_depend_on_its_batch_mates(tiny_model, tmp_path):
    """Fixed shapes (a GPU's CUDA graph, Ray workers): every slot computed every step, idle ones on a dummy group, job
    i in slot i % K. A word is then bit for bit the same whatever the other slots learn, which is what lets a Ray
    worker resume another's concept exactly."""
    jobs = jobs_in(tmp_path, SPECS)
    first = learn_many(
        tiny_model,
        [Job(**{**j.__dict__, "out": None}) for j in jobs],
        tmp_path / "a",
        slots=2,
        fixed_shapes=True,
        progress=False,
        **SHARED,
    )
    assert [r["status"] for r in first] == ["done"] * 4
    # other batch mates for <ring> (slot 0) and <blob> (slot 1): other photos, seeds, step counts, vector counts
    others = jobs_in(tmp_path / "b", [SPECS[0], SPECS[1], dict(token="<zig>", init="dot", vectors=3, steps=3, seed=9)])
    others = [
        Job(**{**j.__dict__, "photos": jobs[i].photos if i < 2 else j.photos, "out": None})
        for i, j in enumerate(others)
    ]
    second = learn_many(
        tiny_model, others, tmp_path / "b" / "out", slots=2, fixed_shapes=True, progress=False, **SHARED
    )
    assert [r["status"] for r in second] == ["done"] * 3
    for name in ("ring", "blob"):
        assert torch.equal(vectors(tmp_path / "a" / name), vectors(tmp_path / "b" / "out" / name)), name
        assert val_losses(tmp_path / "a" / name) == val_losses(tmp_path / "b" / "out" / name)
    # and close to the compact (CPU) batches' words
    compact = learn_many(
        tiny_model,
        [Job(**{**j.__dict__, "out": None}) for j in jobs],
        tmp_path / "c",
        slots=2,
        progress=False,
        **SHARED,
    )
    assert [r["steps"] for r in compact] == [r["steps"] for r in first]
    for s in SPECS:
        name = s["token"].strip("<>")
        assert torch.allclose(vectors(tmp_path / "a" / name), vectors(tmp_path / "c" / name), rtol=1e-4, atol=1e-5)
