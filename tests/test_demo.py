"""`oneword demo` on the shipped world model: it runs end to end, and a rerun never resumes a word that was
learned on other weights (it would silently reuse a word of another world model)."""
import json
from pathlib import Path

import pytest

WORLD = Path(__file__).resolve().parents[1] / "oneword" / "world" / "model" / "model_index.json"


@pytest.mark.skipif(not WORLD.is_file(), reason="the world model has not shipped yet")
def test_demo_runs_and_never_resumes_onto_another_model(tmp_path, capsys):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from oneword.demo import run_demo
    from oneword.models import load_model
    from oneword.run import checkpoint_fingerprint

    out = tmp_path / "demo"
    results = run_demo("red_crescent", out)
    assert set(results) == {"word", "edit", "caption"} and all(Path(p).is_file() for p in results.values())
    assert len(list((out / "photos").glob("*.png"))) == 5
    ckpt = out / "run" / "checkpoint.safetensors"
    fingerprint = load_model(None).identity["fingerprint"]
    assert checkpoint_fingerprint(ckpt) == fingerprint

    # pretend the run was learned on another model: the demo must learn afresh, not resume it
    with safe_open(str(ckpt), "pt") as f:
        meta = dict(f.metadata())
    tensors = load_file(str(ckpt))
    save_file(tensors, str(ckpt), metadata={**meta, "model_fingerprint": "0123456789abcdef"})
    run_demo("red_crescent", out)
    assert checkpoint_fingerprint(ckpt) == fingerprint
    run = json.loads((out / "run" / "run.json").read_text())
    assert run["status"] in ("done", "early_stopped") and run["image_steps_per_s"] > 0 and run["step"] >= 100
