"""The embedded world: a procedural renderer, novel concepts, and the shipped tiny text-to-image model.

`model_path()` is a standard diffusers StableDiffusionPipeline folder (32x32 px images, 8x8x8 latents);
`judge_path()` holds the world CLIP and the attribute oracle (`oneword.world.judge.load_judge`);
`encoder_path()` the photo encoder behind `learn --init encoder` (`oneword.world.encoder` trains it).
See docs/world.md.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def model_path() -> Path:
    """The shipped world model (a diffusers StableDiffusionPipeline folder)."""
    return _HERE / "model"


def judge_path() -> Path:
    """The shipped world judge (world CLIP in clip/, attribute oracle in oracle.safetensors)."""
    return _HERE / "judge"


def encoder_path() -> Path:
    """The shipped photo encoder (oneword.photo_encoder) of the world model."""
    return _HERE / "encoder" / "encoder.safetensors"


__all__ = ["model_path", "judge_path", "encoder_path"]
