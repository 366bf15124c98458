"""oneword: textual inversion (Gal et al. 2022) as a library and a command.

    from oneword import LearnConfig, generate, learn, load_model
    model = load_model("runwayml/stable-diffusion-v1-5")        # None: the embedded world model (its shapes only)
    word = learn(model, "photos/", LearnConfig(token="<my-cat>", init="cat"), "runs/my-cat")
    images = generate(model, "an oil painting of <my-cat> on the moon", [word], n=4)

Settings left out of `LearnConfig` take the model's recommended ones, as `oneword learn` does.

`import oneword` is cheap: each name below is imported (with torch) the first time it is used.
"""

from importlib import import_module

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "load_model": "oneword.models",
    "FrozenModel": "oneword.models",
    "learn": "oneword.invert",
    "LearnConfig": "oneword.invert",
    "learn_many": "oneword.many",
    "generate": "oneword.sampling",
    "variations": "oneword.sampling",
    "edit": "oneword.editing",
    "evaluate": "oneword.evaluation",
    "Concept": "oneword.concept",
    "load_concepts": "oneword.formats",
    "save_concept": "oneword.formats",
    "install_concepts": "oneword.install",
    "expand_prompt": "oneword.install",
    "OnewordError": "oneword.errors",
}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'oneword' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
