"""Prompt templates of the official textual-inversion code (CLIP ImageNet style), verbatim.

OBJECT_TEMPLATES is `imagenet_templates_small` of rinongal/textual_inversion ldm/data/personalized.py
(81 entries, duplicates included, so the sampling frequencies match the paper's); STYLE_TEMPLATES is
`imagenet_style_templates_small` of personalized_style.py. A random template is drawn per sample.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from .errors import OnewordError
from .install import expand_prompt

if TYPE_CHECKING:
    import torch

OBJECT_TEMPLATES = (
    "a photo of a {}",
    "a rendering of a {}",
    "a cropped photo of the {}",
    "the photo of a {}",
    "a photo of a clean {}",
    "a photo of a dirty {}",
    "a dark photo of the {}",
    "a photo of my {}",
    "a photo of the cool {}",
    "a close-up photo of a {}",
    "a bright photo of the {}",
    "a cropped photo of a {}",
    "a photo of the {}",
    "a good photo of the {}",
    "a photo of one {}",
    "a close-up photo of the {}",
    "a rendition of the {}",
    "a photo of the clean {}",
    "a rendition of a {}",
    "a photo of a nice {}",
    "a good photo of a {}",
    "a photo of the nice {}",
    "a photo of the small {}",
    "a photo of the weird {}",
    "a photo of the large {}",
    "a photo of a cool {}",
    "a photo of a small {}",
    "an illustration of a {}",
    "a rendering of a {}",
    "a cropped photo of the {}",
    "the photo of a {}",
    "an illustration of a clean {}",
    "an illustration of a dirty {}",
    "a dark photo of the {}",
    "an illustration of my {}",
    "an illustration of the cool {}",
    "a close-up photo of a {}",
    "a bright photo of the {}",
    "a cropped photo of a {}",
    "an illustration of the {}",
    "a good photo of the {}",
    "an illustration of one {}",
    "a close-up photo of the {}",
    "a rendition of the {}",
    "an illustration of the clean {}",
    "a rendition of a {}",
    "an illustration of a nice {}",
    "a good photo of a {}",
    "an illustration of the nice {}",
    "an illustration of the small {}",
    "an illustration of the weird {}",
    "an illustration of the large {}",
    "an illustration of a cool {}",
    "an illustration of a small {}",
    "a depiction of a {}",
    "a rendering of a {}",
    "a cropped photo of the {}",
    "the photo of a {}",
    "a depiction of a clean {}",
    "a depiction of a dirty {}",
    "a dark photo of the {}",
    "a depiction of my {}",
    "a depiction of the cool {}",
    "a close-up photo of a {}",
    "a bright photo of the {}",
    "a cropped photo of a {}",
    "a depiction of the {}",
    "a good photo of the {}",
    "a depiction of one {}",
    "a close-up photo of the {}",
    "a rendition of the {}",
    "a depiction of the clean {}",
    "a rendition of a {}",
    "a depiction of a nice {}",
    "a good photo of a {}",
    "a depiction of the nice {}",
    "a depiction of the small {}",
    "a depiction of the weird {}",
    "a depiction of the large {}",
    "a depiction of a cool {}",
    "a depiction of a small {}",
)

STYLE_TEMPLATES = (
    "a painting in the style of {}",
    "a rendering in the style of {}",
    "a cropped painting in the style of {}",
    "the painting in the style of {}",
    "a clean painting in the style of {}",
    "a dirty painting in the style of {}",
    "a dark painting in the style of {}",
    "a picture in the style of {}",
    "a cool painting in the style of {}",
    "a close-up painting in the style of {}",
    "a bright painting in the style of {}",
    "a cropped painting in the style of {}",
    "a good painting in the style of {}",
    "a close-up painting in the style of {}",
    "a rendition in the style of {}",
    "a nice painting in the style of {}",
    "a small painting in the style of {}",
    "a weird painting in the style of {}",
    "a large painting in the style of {}",
)


# The plain prompt that shows a learned word (the paper's "a photo of S*"; for a style word, its first style
# template): image variations, previews while learning, the reconstruction prompt of the evaluation.
DEFAULT_TEMPLATES = {"object": "a photo of {}", "style": "a painting in the style of {}"}


def default_template(prop: str | None) -> str:
    """ "a photo of {}" for an object word, "a painting in the style of {}" for a style word; a word of unknown
    property (None) counts as an object."""
    return DEFAULT_TEMPLATES["style" if prop == "style" else "object"]


def templates_for(prop: str) -> tuple[str, ...]:
    """The template list for a learnable property: 'object' or 'style'."""
    if prop == "object":
        return OBJECT_TEMPLATES
    if prop == "style":
        return STYLE_TEMPLATES
    raise OnewordError(f"--property must be 'object' or 'style', not {prop!r}")


def template_words() -> set[str]:
    """Every word the templates use (a small vocabulary must contain them)."""
    words = set()
    for t in OBJECT_TEMPLATES + STYLE_TEMPLATES:
        words.update(t.replace("{}", " ").split())
    return words


def sample_prompts(prop: str, placeholder: str, n: int, rng: random.Random) -> list[str]:
    lst = templates_for(prop)
    return [rng.choice(lst).format(placeholder) for _ in range(n)]


def encode_templates(tokenizer, prop: str, token: str, n: int) -> torch.Tensor:
    """Token ids [T, L] of every template with the placeholder filled in (computed once); [T, E, L] for a
    family with E text encoders (its tokenizer gives one row per encoder)."""
    texts = expand_prompt([t.format(token) for t in templates_for(prop)], {token: n})
    ids = tokenizer(
        texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids
    first = tokenizer.convert_tokens_to_ids(token)
    if not bool((ids == first).flatten(1).any(1).all()):
        raise OnewordError(
            f"the prompt templates do not fit this tokenizer's {tokenizer.model_max_length} tokens with the placeholder"
        )
    return ids
