"""The public Python API: `from oneword import ...` gives the functions and classes (never a module), and the
README's "From Python" example runs as written on a tiny model."""

import importlib
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
PUBLIC = {
    "load_model",
    "FrozenModel",
    "learn",
    "LearnConfig",
    "learn_many",
    "generate",
    "variations",
    "edit",
    "evaluate",
    "load_concepts",
    "save_concept",
    "Concept",
    "install_concepts",
    "expand_prompt",
    "OnewordError",
}


def readme_example() -> str:
    """The one python block under the README's "From Python" heading."""
    text = (ROOT / "README.md").read_text()
    assert "\n## From Python\n" in text, "README.md has no '## From Python' section"
    section = re.split(r"^## ", text.split("\n## From Python\n", 1)[1], flags=re.M)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, f"expected one python block under 'From Python', found {len(blocks)}"
    return blocks[0]


def test_every_public_name_is_the_object_not_a_module():
    import oneword

    assert set(oneword.__all__) == PUBLIC | {"__version__"}
    for name in PUBLIC:
        value = getattr(oneword, name)
        assert not isinstance(value, types.ModuleType), name
        assert value.__name__ == name, (name, value)
        assert value.__module__ == oneword._EXPORTS[name], (name, value.__module__)  # the module that defines it
    # importing every submodule (which sets them as attributes of the package) changes nothing
    for path in sorted((ROOT / "oneword").glob("*.py")):
        if path.stem not in ("__init__", "__main__"):
            importlib.import_module(f"oneword.{path.stem}")
    from oneword import edit, evaluate, generate

    assert [f.__module__ for f in (generate, edit, evaluate)] == [
        "oneword.sampling",
        "oneword.editing",
        "oneword.evaluation",
    ]
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        oneword.nothing  # noqa: B018


def test_import_oneword_is_cheap_and_the_version_is_the_packages():
    code = "import sys, oneword; print(oneword.__version__); sys.exit('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    from importlib.metadata import version

    assert done.stdout.strip() == version("oneword")


# The README's values, and what this test runs instead: the tiny model, fewer steps and samples, the world judge
# (the README's default judge, openai CLIP, is not in an offline cache).
SMALLER = {
    'LearnConfig(token="<my-cat>", init="cat")': 'LearnConfig(token="<my-cat>", init="cat", steps=4, batch_size=2)',
    '[word, "a ginger cat"])': '[word, "a ginger cat"], judge=JUDGE, config=SMALL_EVAL)',
}
MODEL = '"runwayml/stable-diffusion-v1-5"'


def test_readme_example_runs(tiny_dir, tmp_path, monkeypatch, capsys):
    from oneword.evaluation import EvalConfig, load_judge

    code = readme_example()
    for old, new in {MODEL: repr(str(tiny_dir)), **SMALLER}.items():
        assert code.count(old) == 1, f"the README example no longer holds {old}: update SMALLER in this test"
        code = code.replace(old, new)
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    folder = tmp_path / "photos" / "my-cat"
    folder.mkdir(parents=True)
    for i in range(4):  # photos as a phone takes them: JPEGs larger than the edit's box
        pixels = rng.integers(0, 255, (480, 512, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:02d}.jpg")

    namespace = {"JUDGE": load_judge("world"), "SMALL_EVAL": EvalConfig(n=2, steps=2, bootstrap=50)}
    exec(compile(code, "README.md (From Python)", "exec"), namespace)

    assert (tmp_path / "runs" / "my-cat" / "learned_embeds.safetensors").is_file()
    assert Image.open("moon.png").size == (16, 16)
    assert Image.open("edited.png").size == (512, 480)
    printed = capsys.readouterr().out.splitlines()
    assert [line.split(" ", 1)[0] for line in printed] == ["<my-cat>", '"a']
    assert namespace["same"].token == "<my-cat>"
    assert np.array_equal(namespace["same"].vectors.numpy(), namespace["word"].vectors.numpy())
