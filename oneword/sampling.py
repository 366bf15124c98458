"""Synthesis with learned words: prompts, composition of several words, variations, grids.

Every sampler here draws image i of a request from its own CPU generator seeded ``seed + i``
(:func:`per_seed`), so an image does not depend on the batch size or on how many images were asked for,
and the same seeds give the same images in ``generate``, ``variations``, ``edit`` and ``evaluate``.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from PIL import Image

from .errors import OnewordError
from .safeio import atomic_save_image
from .templates import default_template

SD_SAMPLING = {"steps": 50, "guidance": 7.5}


def sampling_defaults(model) -> dict:
    return {**SD_SAMPLING, **model.defaults.get("generate", {})}


def generators(seeds) -> list[torch.Generator]:
    """One CPU generator per seed."""
    return [torch.Generator().manual_seed(int(s)) for s in seeds]


def per_seed(n: int, seed: int, batch: int, draw) -> list:
    """The one sampling loop: n results in batches of at most ``batch``; ``draw(seeds)`` makes one batch, the
    result for image i from seed + i."""
    out = []
    for start in range(0, n, batch):
        out += draw(list(range(seed + start, seed + min(n, start + batch))))
    return out


def generate(
    model,
    prompt: str,
    concepts=(),
    n: int = 1,
    steps: int | None = None,
    guidance: float | None = None,
    seed: int = 0,
    negative: str | None = None,
    height: int | None = None,
    width: int | None = None,
    batch: int = 8,
) -> list[Image.Image]:
    """n images of `prompt`, which may use the tokens of any number of learned `concepts`; image i uses seed + i.
    Checked before anything runs (oneword.validate): the numbers, the size against the model and the device's free
    memory, and the prompt against what is loaded (an unknown <word>, a learned word cut off by the length limit)."""
    from . import validate as check
    from .install import expand_prompt, install_concepts

    d = sampling_defaults(model)
    steps = d["steps"] if steps is None else steps
    guidance = d["guidance"] if guidance is None else guidance
    check.sampling(n, steps, guidance, seed, batch)
    check.model_steps(model, steps)
    height, width = check.image_size(model, height, width)
    check.sampling_fits(model, height, width, min(n, batch), guidance > 1)
    install_concepts(model, list(concepts))
    check.prompt(model.tokenizer, expand_prompt(prompt, model.tokenizer))
    if negative:
        check.prompt(model.tokenizer, expand_prompt(negative, model.tokenizer), "negative prompt")

    def draw(seeds):
        images = model.pipe(
            prompt,
            negative_prompt=negative,
            num_images_per_prompt=len(seeds),
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=generators(seeds),
            height=height,
            width=width,
            output_type="np",
        ).images
        finite_images(images, concepts)
        return model.pipe.numpy_to_pil(images)

    return per_seed(n, seed, batch, draw)


def finite_images(images, concepts=()) -> None:
    """Refuse images with NaN/inf pixels (diffusers would write them black), saying where they came from."""
    import numpy as np

    if np.isfinite(np.asarray(images)).all():
        return
    big = [
        f"{c.token} holds values up to {float(c.vectors.abs().max()):.3g}"
        for c in concepts
        if c.parts is None and float(c.vectors.float().abs().max()) > 1e3
    ]
    why = "; ".join(big) if big else "the model overflowed in its precision"
    raise OnewordError(f"the model produced non-finite values (NaN/inf), which would be black images: {why}")


def variations(model, concept, n: int = 16, template: str | None = None, **kw) -> list[Image.Image]:
    """The paper's image variations: n samples of "a photo of S*" ("a painting in the style of S*" for a
    style word; ``template`` with {} for the word replaces it). Same as `oneword variations`; ``kw`` as
    :func:`generate`."""
    from .validate import template as check_template

    if template is None:
        template = default_template(concept.meta.get("property"))
    return generate(model, check_template(template).format(concept.token), [concept], n=n, **kw)


@torch.no_grad()
def generate_from_embeds(
    model, embeds: dict, n_per_prompt: int = 1, steps=None, guidance=None, seed: int = 0
) -> list[Image.Image]:
    """Sampling from already-encoded prompts (`encode_prompts`; used for previews while a word is being
    learned); image i of the result (prompt-major) uses seed + i."""
    d = sampling_defaults(model)
    k = embeds["prompt_embeds"].shape[0] * n_per_prompt
    return model.pipe(
        **embeds,
        num_images_per_prompt=n_per_prompt,
        num_inference_steps=steps or d["steps"],
        guidance_scale=d["guidance"] if guidance is None else guidance,
        generator=generators(range(seed, seed + k)),
        height=model.resolution,
        width=model.resolution,
    ).images


def encode_text(model, tokenizer, prompts: list[str]) -> torch.Tensor:
    """The first text encoder's last hidden state of `prompts` (SD1.x/2.x's conditioning)."""
    ids = tokenizer(
        prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids.to(model.device)
    return model.text_encoder(ids)[0]


def encode_prompts(model, tokenizer, prompts: list[str], negatives: list[str] | None = None) -> dict:
    """The pipeline's prompt-embedding arguments (prompt_embeds, negative_prompt_embeds and, for SDXL, the
    pooled ones) for prompts read by `tokenizer` (one that knows the learned words); negatives default to ""."""
    return model.family.pipe_embeds(model, tokenizer, list(prompts), list(negatives or [""] * len(prompts)))


@torch.no_grad()
def preview_grid(
    model,
    tokenizer,
    path: Path,
    token: str,
    n_vectors: int,
    prop: str = "object",
    prompts=(),
    steps: int = 25,
    seed: int = 0,
    per_prompt: int = 2,
) -> Path:
    """A grid of a word as learned so far, ``per_prompt`` images for each of ``prompts`` (default: the plain
    prompt of its property). ``tokenizer`` and the model's text encoder must already know the word's
    ``n_vectors`` tokens (the learning-time ones do)."""
    from .install import expand_prompt

    prompts = list(prompts) or [default_template(prop).format(token)]
    texts = expand_prompt(prompts, {token: n_vectors})
    images = generate_from_embeds(model, encode_prompts(model, tokenizer, texts), per_prompt, steps=steps, seed=seed)
    return save_grid(images, path, cols=per_prompt)


def make_grid(images: list[Image.Image], cols: int | None = None, pad: int = 2) -> Image.Image:
    cols = cols or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    w, h = images[0].size
    grid = Image.new("RGB", (cols * (w + pad) + pad, rows * (h + pad) + pad), "white")
    for i, im in enumerate(images):
        grid.paste(im, (pad + (i % cols) * (w + pad), pad + (i // cols) * (h + pad)))
    return grid


def save_grid(images: list[Image.Image], path, cols: int | None = None, replace: bool = True) -> Path:
    return atomic_save_image(path, make_grid(images, cols), replace=replace)


def save_images(images: list[Image.Image], path, replace: bool = True) -> list[Path]:
    """The grid at `path` and each image beside it as <stem>_<i><suffix>; ``replace=False`` never replaces a file."""
    path = Path(path)
    save_grid(images, path, replace=replace)
    return [
        atomic_save_image(path.with_name(f"{path.stem}_{i:02d}{path.suffix or '.png'}"), im, replace=replace)
        for i, im in enumerate(images)
    ]
