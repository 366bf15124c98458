"""A folder of photos -> clean square tensors -> VAE posteriors cached once.

The paper samples a fresh latent from the VAE posterior for every training step (LDM's
`get_first_stage_encoding`, diffusers' `latent_dist.sample()`). Encoding costs a VAE forward per image
per step, so we encode each photo and its mirror image once, keep the posterior's mean and std, and draw
the sample per step: the same distribution as the paper, without the VAE in the loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .errors import OnewordError


def square_crop(image: Image.Image, resolution: int) -> Image.Image:
    """Centre-crop to a square, then resize (bicubic) to resolution x resolution."""
    w, h = image.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return image.crop((left, top, left + side, top + side)).resize((resolution, resolution), Image.BICUBIC)


def to_tensor(images: list[Image.Image], resolution: int) -> torch.Tensor:
    """PIL images -> float tensor [N, 3, R, R] in [-1, 1]."""
    arrays = [np.asarray(square_crop(im.convert("RGB"), resolution), dtype=np.float32) for im in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2) / 127.5 - 1.0


def read_photos(source, min_count: int = 1, min_size: int = 32) -> list[Image.Image]:
    """A folder path, or a list of paths / PIL images -> RGB PIL images (validated by oneword.images)."""
    from .images import list_photos, load_image

    if isinstance(source, (str, Path)):
        paths = list_photos(source)
    else:
        paths = list(source)
    images = [p if isinstance(p, Image.Image) else load_image(p, min_size=min_size) for p in paths]
    if len(images) < min_count:
        raise OnewordError(f"need at least {min_count} photos, found {len(images)}")
    return [im.convert("RGB") for im in images]


def crop_sizes(images: list[Image.Image], resolution: int) -> torch.Tensor:
    """SDXL's micro-conditioning of each photo as `square_crop` prepares it, [N, 6]: original height and width,
    the centre crop's top-left corner once the shorter side is scaled to `resolution` (as diffusers' SDXL training
    scripts compute it: the longer side becomes int(resolution * long / short)), and the target size."""
    rows = []
    for im in images:
        w, h = im.size
        short = min(w, h)
        sh, sw = (int(resolution * side / short) if side != short else resolution for side in (h, w))
        top, left = max(0, int(round((sh - resolution) / 2.0))), max(0, int(round((sw - resolution) / 2.0)))
        rows.append([h, w, top, left, resolution, resolution])
    return torch.tensor(rows, dtype=torch.float32)


def photos_fingerprint(source) -> dict:
    """What a run learned from, to tell later whether the photos changed: {"count", "sha256"} over every photo's
    name and bytes in order (a folder: the photos `read_photos` reads from it; PIL images: their pixels)."""
    import hashlib

    from .images import list_photos

    paths = list_photos(source) if isinstance(source, (str, Path)) else list(source)
    h = hashlib.sha256()
    for p in paths:
        if isinstance(p, Image.Image):
            h.update(f"{p.mode} {p.size}".encode())
            h.update(p.tobytes())
        else:
            h.update(Path(p).name.encode() + b"\0")
            h.update(hashlib.sha256(Path(p).read_bytes()).digest())
    return {"count": len(paths), "sha256": h.hexdigest()}


@dataclass
class LatentCache:
    """Posterior mean and std of every photo and of its mirror: rows [0, N) photos, [N, 2N) mirrors; `sizes`,
    each row's original size, crop offset and target size (`crop_sizes`; a mirror's centre crop is the same)."""

    mean: torch.Tensor
    std: torch.Tensor
    scaling_factor: float
    sizes: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.mean.shape[0]

    def sample(self, index: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Scaled latents of the chosen rows, posterior-sampled with the given standard-normal noise."""
        return (self.mean[index] + self.std[index] * noise) * self.scaling_factor


@torch.no_grad()
def encode_photos(model, images: list[Image.Image], resolution: int, batch: int = 8) -> LatentCache:
    pixels = to_tensor(images, resolution)
    pixels = torch.cat([pixels, pixels.flip(-1)])  # mirrors: the paper's random horizontal flip, p = 0.5
    means, stds = [], []
    vae, dtype = model.vae, model.vae.dtype
    encode_dtype = model.family.vae_encode_dtype(vae)  # never float16 for a VAE that overflows there (SDXL's)
    if encode_dtype != dtype:
        vae.to(encode_dtype)
    try:
        for chunk in pixels.split(batch):
            dist = vae.encode(chunk.to(model.device, encode_dtype)).latent_dist
            means.append(dist.mean.float())
            stds.append(dist.std.float())
    finally:
        if encode_dtype != dtype:
            vae.to(dtype)
    if model.device.type == "cuda":
        # the encoder's full-resolution activations (GiBs for 8 photos at 512 px) would otherwise stay reserved by
        # the caching allocator for the whole run, beside the learning step's own
        torch.cuda.empty_cache()
    sizes = crop_sizes(images, resolution).repeat(2, 1).to(model.device)
    return LatentCache(torch.cat(means), torch.cat(stds), float(model.vae.config.scaling_factor), sizes)
