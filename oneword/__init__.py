"""oneword: textual inversion (Gal et al. 2022) as a library and a command.

    from oneword import load_model, LearnConfig, learn, generate
    model = load_model("runwayml/stable-diffusion-v1-5")        # or None: the embedded world model
    word = learn(model, "photos/", LearnConfig(token="<my-cat>", init="cat"), "runs/my-cat")
    images = generate(model, "an oil painting of <my-cat> on the moon", [word], n=4)
"""
from importlib import import_module

_EXPORTS = {
    "load_model": "oneword.models", "FrozenModel": "oneword.models",
    "LearnConfig": "oneword.invert", "learn": "oneword.invert",
    "generate": "oneword.sampling", "save_grid": "oneword.sampling",
    "Concept": "oneword.concept", "load_concepts": "oneword.concept", "save_concept": "oneword.concept",
    "install_concepts": "oneword.install", "expand_prompt": "oneword.install",
    "OnewordError": "oneword.errors",
}
__all__ = list(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name):  # lazy: `import oneword` stays cheap, torch loads on first use
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'oneword' has no attribute {name!r}")
