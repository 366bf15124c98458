"""`oneword demo` on the shipped world model: it runs end to end, and a rerun resumes an interrupted demo but
never a word that was learned on other weights (it would silently reuse a word of another world model)."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file


def test_demo_runs_end_to_end(tmp_path):
    from oneword.demo import run_demo
    from oneword.models import load_model
    from oneword.run import checkpoint_fingerprint

    out = tmp_path / "demo"
    results = run_demo("red_crescent", out)
    assert set(results) == {"word", "edit", "caption"} and all(Path(p).is_file() for p in results.values())
    assert len(list((out / "photos").glob("*.png"))) == 5
    assert checkpoint_fingerprint(out / "run" / "checkpoint.safetensors") == load_model(None).identity["fingerprint"]
    run = json.loads((out / "run" / "run.json").read_text())
    assert run["status"] in ("done", "early_stopped") and run["image_steps_per_s"] > 0 and run["step"] >= 100


class _Stop(Exception):
    pass


@pytest.mark.parametrize("learned_on, resumes", [("this model", True), ("0123456789abcdef", False)])
def test_a_rerun_resumes_only_a_checkpoint_of_the_same_model(tmp_path, monkeypatch, learned_on, resumes):
    """The decision alone, without learning: the demo asks `learn` to resume a checkpoint of this model, and
    refuses (keeping it) one learned on another."""
    import oneword.invert
    from oneword.demo import run_demo
    from oneword.errors import OnewordError
    from oneword.models import load_model
    from oneword.world.concepts import NOVEL_CONCEPTS

    fingerprint = load_model(None).identity["fingerprint"]
    ckpt = tmp_path / "demo" / "run" / "checkpoint.safetensors"
    ckpt.parent.mkdir(parents=True)
    (tmp_path / "demo" / "photos").mkdir()
    for i, im in enumerate(NOVEL_CONCEPTS["red_crescent"].photos(5, seed=0)):  # the demo was interrupted after these
        im.save(tmp_path / "demo" / "photos" / f"{i:02d}.png")
    save_file(
        {"vectors": torch.zeros(1, 4)},
        str(ckpt),
        metadata={"model_fingerprint": fingerprint if learned_on == "this model" else learned_on},
    )
    before = ckpt.read_bytes()
    asked = []

    def learn(model, photos, cfg, out_dir, resume=False, progress=True):
        asked.append((Path(out_dir), resume))
        raise _Stop

    monkeypatch.setattr(oneword.invert, "learn", learn)
    with pytest.raises(_Stop if resumes else OnewordError):
        run_demo("red_crescent", tmp_path / "demo")
    assert asked == ([(ckpt.parent, True)] if resumes else [])
    assert ckpt.read_bytes() == before
