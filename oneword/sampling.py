"""Synthesis with learned words: prompts, composition of several words, variations, grids."""
from __future__ import annotations

import math
from pathlib import Path

import torch
from PIL import Image

from .safeio import atomic_save_image

SD_SAMPLING = {"steps": 50, "guidance": 7.5}


def sampling_defaults(model) -> dict:
    return {**SD_SAMPLING, **model.defaults.get("generate", {})}


def generate(model, prompt: str, concepts=(), n: int = 1, steps: int | None = None, guidance: float | None = None,
             seed: int = 0, negative: str | None = None, height: int | None = None, width: int | None = None,
             batch: int = 8) -> list[Image.Image]:
    """n images of `prompt`, which may use the tokens of any number of learned `concepts`."""
    from .install import install_concepts

    install_concepts(model, list(concepts))
    d = sampling_defaults(model)
    images = []
    for start in range(0, n, batch):
        k = min(batch, n - start)
        gens = [torch.Generator().manual_seed(seed + start + i) for i in range(k)]
        images += model.pipe(prompt, negative_prompt=negative, num_images_per_prompt=k,
                             num_inference_steps=steps or d["steps"],
                             guidance_scale=d["guidance"] if guidance is None else guidance,
                             generator=gens, height=height or model.resolution, width=width or model.resolution).images
    return images


@torch.no_grad()
def generate_from_embeds(model, prompt_embeds, negative_embeds, n_per_prompt: int = 1, steps=None, guidance=None,
                         seed: int = 0) -> list[Image.Image]:
    """Sampling from already-encoded prompts (used for previews while a word is being learned)."""
    d = sampling_defaults(model)
    k = prompt_embeds.shape[0] * n_per_prompt
    gens = [torch.Generator().manual_seed(seed + i) for i in range(k)]
    return model.pipe(prompt_embeds=prompt_embeds, negative_prompt_embeds=negative_embeds,
                      num_images_per_prompt=n_per_prompt, num_inference_steps=steps or d["steps"],
                      guidance_scale=d["guidance"] if guidance is None else guidance, generator=gens,
                      height=model.resolution, width=model.resolution).images


def encode_text(model, tokenizer, prompts: list[str]) -> torch.Tensor:
    ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids.to(model.device)
    return model.text_encoder(ids)[0]


@torch.no_grad()
def preview_grid(model, tokenizer, cfg, path: Path, per_prompt: int = 2) -> Path:
    """A grid of the word as learned so far, for a few prompts (uses the learning-time text encoder)."""
    from .install import expand_prompt

    default = "a painting in the style of {}" if cfg.property == "style" else "a photo of {}"
    prompts = list(cfg.preview_prompts) or [default.format(cfg.token)]
    texts = expand_prompt(prompts, {cfg.token: cfg.vectors})
    cond = encode_text(model, tokenizer, texts)
    uncond = encode_text(model, tokenizer, [""] * len(texts))
    images = generate_from_embeds(model, cond, uncond, per_prompt, steps=cfg.preview_steps, seed=cfg.seed)
    return save_grid(images, path, cols=per_prompt)


def make_grid(images: list[Image.Image], cols: int | None = None, pad: int = 2) -> Image.Image:
    cols = cols or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    w, h = images[0].size
    grid = Image.new("RGB", (cols * (w + pad) + pad, rows * (h + pad) + pad), "white")
    for i, im in enumerate(images):
        grid.paste(im, (pad + (i % cols) * (w + pad), pad + (i // cols) * (h + pad)))
    return grid


def save_grid(images: list[Image.Image], path, cols: int | None = None) -> Path:
    return atomic_save_image(path, make_grid(images, cols))


def save_images(images: list[Image.Image], path) -> list[Path]:
    """The grid at `path` and each image beside it as <stem>_<i><suffix>."""
    path = Path(path)
    save_grid(images, path)
    return [atomic_save_image(path.with_name(f"{path.stem}_{i:02d}{path.suffix or '.png'}"), im)
            for i, im in enumerate(images)]
