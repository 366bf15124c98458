"""Local edits of a real photo with learned words: Blended Latent Diffusion (Avrahami et al., 2022).

    oneword edit PHOTO --mask MASK.png "a photo of <my-cat>" --embeds learned_embeds.safetensors --out edited.png

The model is not changed. The photo is encoded with the model's VAE; a DDIM sampling loop with
classifier-free guidance runs the model's own UNet on the prompt (encoded by the pipeline's own
`encode_prompt`, so learned words installed by `install_concepts` work, multi-vector ones included); after
every step the latents outside the (downsampled) mask are replaced by the photo's latents noised to the
current timestep, so only the masked region is generated and it is generated to fit its surroundings.
At the end the latents outside the mask are the photo's own; the result is decoded and, by default, the
unmasked pixels are copied back from the original photo (the paper's background reconstruction), blended
over a feathered edge. The photo keeps its size: the model works at its native resolution and the edited
region is resized back into the original pixels.

One addition to the paper (on by default, `fill=False` / `--no-fill` turns it off): the background latents
are encoded from the photo with the masked region filled smoothly from its surroundings. A VAE latent sees
beyond its own pixels, so otherwise the object being replaced leaks back into the edit through the latents
around the mask (on a 4-channel world VAE, "a blue ring" replacing a yellow circle: 0/20 rings without the
fill, 10/20 with it; CHANGELOG.md. The shipped 8-channel world VAE does not leak; docs/applications.md).

Masks: white = edit. A PNG/JPEG/WebP of any size (resized to the photo), a box (x0, y0, x1, y1) in photo
pixels, a PIL image or a 2-D array. `dilate` grows the edit region by that many photo pixels; `feather`
blends the outermost pixels *inside* the region into the photo, so pixels outside the (dilated) mask are
the photo's own, bit for bit, whenever `restore` is on.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .errors import OnewordError


# ------------------------------------------------------------------------------------------ masks
def parse_box(text: str) -> tuple[int, int, int, int]:
    """ "x0,y0,x1,y1" (photo pixels, x1/y1 exclusive) -> a tuple of ints."""
    parts = [p.strip() for p in str(text).replace(" ", ",").split(",") if p.strip()]
    try:
        box = tuple(int(round(float(p))) for p in parts)
    except ValueError:
        box = ()
    if len(box) != 4:
        raise OnewordError(f"--box must be four numbers x0,y0,x1,y1 in photo pixels, got {text!r}")
    return box  # type: ignore[return-value]


def box_mask(box, size: tuple[int, int]) -> np.ndarray:
    """A boolean mask [h, w] of `size` (w, h) that is True inside box = (x0, y0, x1, y1), x1/y1 exclusive."""
    w, h = size
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    if x1 <= x0 or y1 <= y0:
        raise OnewordError(f"box {x0},{y0},{x1},{y1} is empty: it needs x0 < x1 and y0 < y1")
    m = np.zeros((h, w), bool)
    m[max(0, y0) : max(0, min(h, y1)), max(0, x0) : max(0, min(w, x1))] = True
    if not m.any():
        raise OnewordError(f"box {x0},{y0},{x1},{y1} lies outside the {w}x{h} photo")
    return m


def load_mask(mask, size: tuple[int, int]) -> np.ndarray:
    """Any mask form -> a boolean array [h, w] at the photo's `size` (w, h); True = edit.

    `mask`: a path to an image (white = edit; transparent pixels count as black), a PIL image, a 2-D array
    (non-zero = edit) or a box (x0, y0, x1, y1). A mask of another size is resized to the photo."""
    if isinstance(mask, (tuple, list)) and len(mask) == 4 and all(np.isscalar(v) for v in mask):
        return _checked(box_mask(mask, size), "box")
    if isinstance(mask, (str, Path)):
        name = str(mask)
        mask = _open_mask(Path(mask))
    else:
        name = "mask"
    if isinstance(mask, Image.Image):
        img = mask
        if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
            img = Image.alpha_composite(black, rgba)
        grey = img.convert("L")
        if grey.size != tuple(size):
            grey = grey.resize(tuple(size), Image.BILINEAR)
        arr = np.asarray(grey) >= 128
    else:
        arr = np.asarray(mask)
        if arr.ndim == 3 and arr.shape[-1] in (1, 3, 4):
            arr = arr[..., :3].mean(-1) if arr.shape[-1] != 1 else arr[..., 0]
        if arr.ndim != 2:
            raise OnewordError(f"a mask array must be 2-D (height, width), got shape {tuple(arr.shape)}")
        arr = arr.astype(np.float32) / (255.0 if arr.dtype != bool and arr.max(initial=0) > 1 else 1.0)
        if arr.shape != (size[1], size[0]):
            arr = (
                np.asarray(Image.fromarray(np.uint8(np.clip(arr, 0, 1) * 255)).resize(tuple(size), Image.BILINEAR))
                / 255.0
            )
        arr = arr >= 0.5
    return _checked(arr, name)


def _open_mask(path: Path) -> Image.Image:
    if path.is_dir():
        raise OnewordError(f"mask {path} is a folder; give one mask image (a PNG, white = edit)")
    if not path.exists():
        raise OnewordError(f"mask {path} not found")
    if not path.is_file():
        raise OnewordError(f"mask {path} is not a regular file")
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except Exception:
        raise OnewordError(f"{path} is not a readable image (a mask is a PNG, white = edit)") from None


def _checked(m: np.ndarray, name: str) -> np.ndarray:
    if not m.any():
        raise OnewordError(f"{name} is empty (no white pixels): paint the region to edit in white")
    if m.all():
        raise OnewordError(
            f"{name} covers the whole photo, so nothing of it would be kept; leave the part to keep "
            f"black (or use `oneword generate` for a new image)"
        )
    return m


def dilate_mask(m: torch.Tensor, px: int) -> torch.Tensor:
    """Grow a [h, w] {0,1} mask by `px` pixels (square neighbourhood)."""
    if px <= 0:
        return m
    return F.max_pool2d(m[None, None], 2 * px + 1, stride=1, padding=px)[0, 0]


def feather_mask(m: torch.Tensor, px: int) -> torch.Tensor:
    """Soft alpha that ramps from 1/px at the mask's edge to 1 at `px` pixels inside it; exactly 0 outside.
    The photo's border does not count as an edge. Thin parts of the mask keep a small, non-zero alpha."""
    if px <= 0:
        return m
    acc, cur = m.clone(), m
    for _ in range(px - 1):
        cur = -F.max_pool2d(-cur[None, None], 3, stride=1, padding=1)[0, 0]  # erode by one pixel
        acc = acc + cur
    return acc / px


def fill_region(photo: Image.Image, hole: torch.Tensor) -> Image.Image:
    """The photo with the pixels under `hole` ({0,1} [h, w] at the photo's size) replaced by a smooth fill from
    their surroundings (push-pull: masked averages down a pyramid, then back up). Encoding this instead of the
    photo keeps what is under the mask out of the background latents: a VAE latent sees beyond its own
    pixels, so the object being replaced would otherwise leak back into the edit through the mask's border."""
    x = torch.from_numpy(np.asarray(photo.convert("RGB"), np.float32)).permute(2, 0, 1)[None]
    k = (1.0 - hole.float())[None, None]
    levels = [(x * k, k)]
    while not bool((levels[-1][1] > 0).all()):
        img, kk = levels[-1]
        levels.append((F.avg_pool2d(img, 2, ceil_mode=True), F.avg_pool2d(kk, 2, ceil_mode=True)))
    img, kk = levels[-1]
    filled = img / kk.clamp_min(1e-8)
    for img, kk in reversed(levels[:-1]):
        up = F.interpolate(filled, size=img.shape[-2:], mode="bilinear", align_corners=False)
        w = kk.clamp(0, 1)
        filled = w * (img / kk.clamp_min(1e-8)) + (1 - w) * up
    out = torch.where(k > 0, x, filled)[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy()
    return Image.fromarray(out, "RGB")


def latent_mask(m: torch.Tensor, latent_hw: tuple[int, int]) -> torch.Tensor:
    """Downsample a photo-size {0,1} mask to the latent grid: a latent cell is edited if it touches the mask
    (a thin mask never vanishes; the pixel restore keeps what lies outside the mask)."""
    return F.adaptive_max_pool2d(m[None, None], latent_hw)[0, 0]


# ------------------------------------------------------------------------------------------ sizes
def working_size(model, size: tuple[int, int]) -> tuple[int, int]:
    """The size (w, h) the model edits at: shorter side at the model's native resolution, both sides a
    multiple of what the VAE and UNet need; the aspect ratio as close as that allows."""
    pipe = model.pipe
    mult = pipe.vae_scale_factor * 2 ** (len(pipe.unet.config.block_out_channels) - 1)
    w, h = size
    s = model.resolution / min(w, h)
    return (max(mult, int(w * s) // mult * mult), max(mult, int(h * s) // mult * mult))


# ------------------------------------------------------------------------------------------ edit
def edit(
    model,
    photo,
    mask,
    prompt: str,
    concepts=(),
    strength: float = 1.0,
    steps: int | None = None,
    guidance: float | None = None,
    seed: int = 0,
    n: int = 1,
    dilate: int = 0,
    feather: int = 0,
    restore: bool = True,
    negative: str | None = None,
    start_step: int | None = None,
    fill: bool = True,
    batch: int = 8,
) -> list[Image.Image]:
    """Edit the masked region of `photo` to show `prompt`; returns n images of the photo's size.

    photo: a PIL image or a path. mask: see `load_mask` (white = edit) or a box (x0, y0, x1, y1).
    concepts: learned words used in the prompt (installed into the model). strength in (0, 1]: 1 starts the
    masked region from pure noise; less starts from the photo noised part-way (like img2img) and runs that
    fraction of the steps. start_step (0..steps-1) is the same thing counted in steps (overrides strength).
    Output i uses seed + i. restore=False returns the decoded image without copying back the photo's pixels.
    fill=False encodes the background latents from the photo as it is (the paper's way); by default they come
    from the photo with the region filled from its surroundings, so the replaced object cannot leak back."""
    from . import validate as check
    from .install import expand_prompt, install_concepts
    from .sampling import finite_images, per_seed, sampling_defaults

    photo = _open_photo(photo)
    d = sampling_defaults(model)
    steps = d["steps"] if steps is None else steps
    guidance = d["guidance"] if guidance is None else guidance
    check.sampling(n, steps, guidance, seed, batch)
    steps, guidance = check.model_steps(model, steps), float(guidance)
    dilate = check.whole("--dilate", dilate, 0, check.MAX_PIXELS_ARG)
    feather = check.whole("--feather", feather, 0, check.MAX_PIXELS_ARG)
    first = _first_step(steps, strength, start_step)

    m_full = torch.from_numpy(load_mask(mask, photo.size).astype(np.float32))
    region = dilate_mask(m_full, int(dilate))
    alpha = feather_mask(region, int(feather))
    work = working_size(model, photo.size)
    check.sampling_fits(model, work[1], work[0], min(n, batch), guidance > 1, what="editing")
    # a word already installed with these vectors is kept: one model, many edits
    install_concepts(model, list(concepts))
    check.prompt(model.tokenizer, expand_prompt(prompt, model.tokenizer))
    if negative:
        check.prompt(model.tokenizer, expand_prompt(negative, model.tokenizer), "negative prompt")
    small = photo.resize(work, Image.LANCZOS) if photo.size != work else photo

    def draw(seeds):
        latents, _, _ = blended_latents(model, small, region, prompt, negative, steps, first, guidance, seeds, fill)
        finite_images(latents.float().cpu().numpy(), concepts)
        out = []
        for im in _decode(model, latents):
            im = im.resize(photo.size, Image.LANCZOS) if im.size != photo.size else im
            out.append(composite(photo, im, alpha) if restore else im)
        return out

    return per_seed(n, seed, batch, draw)


def composite(photo: Image.Image, edited: Image.Image, alpha) -> Image.Image:
    """alpha * edited + (1 - alpha) * photo, rounded; where alpha is 0 the photo's pixels are kept exactly."""
    a = torch.as_tensor(alpha, dtype=torch.float32).numpy()[..., None]
    src = np.asarray(photo.convert("RGB"), np.float32)
    out = a * np.asarray(edited.convert("RGB"), np.float32) + (1.0 - a) * src
    out = np.where(a > 0, out, src)
    return Image.fromarray(np.uint8(np.clip(np.rint(out), 0, 255)), "RGB")


def _first_step(steps: int, strength: float, start_step: int | None) -> int:
    if start_step is not None:
        if not 0 <= int(start_step) < steps:
            raise OnewordError(f"--start-step must be between 0 and {steps - 1} (of {steps} steps), got {start_step}")
        return int(start_step)
    if not 0.0 < float(strength) <= 1.0:
        raise OnewordError(f"--strength must be in (0, 1], got {strength}")
    init = min(steps, max(1, int(round(steps * float(strength)))))
    return steps - init


def _open_photo(photo) -> Image.Image:
    if isinstance(photo, Image.Image):
        return photo.convert("RGB")
    from .images import load_image

    return load_image(photo, min_size=8)


def _scheduler(model):
    """A DDIM scheduler on the model's own noise schedule and prediction type (epsilon or v)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler.from_config(model.scheduler.config)


@contextmanager
def _vae(model):
    """The VAE in the precision the model family encodes and decodes in (never float16 for SDXL's)."""
    vae, dtype = model.vae, model.vae.dtype
    safe = model.family.vae_encode_dtype(vae)
    if safe != dtype:
        vae.to(safe)
    try:
        yield vae, safe
    finally:
        if safe != dtype:
            vae.to(dtype)


@torch.no_grad()
def _encode(model, image: Image.Image) -> torch.Tensor:
    pipe = model.pipe
    with _vae(model) as (vae, dtype):
        x = pipe.image_processor.preprocess(image).to(model.device, dtype)
        z = vae.encode(x).latent_dist.mean
    shift = getattr(model.vae.config, "shift_factor", None) or 0.0
    return ((z - shift) * model.vae.config.scaling_factor).to(model.dtype)


@torch.no_grad()
def _decode(model, z: torch.Tensor) -> list[Image.Image]:
    shift = getattr(model.vae.config, "shift_factor", None) or 0.0
    with _vae(model) as (vae, dtype):
        x = vae.decode(z.to(dtype) / model.vae.config.scaling_factor + shift).sample
    return model.pipe.image_processor.postprocess(x.float(), output_type="pil")


@torch.no_grad()
def blended_latents(
    model,
    photo: Image.Image,
    region: torch.Tensor,
    prompt: str,
    negative: str | None,
    steps: int,
    first: int,
    guidance: float,
    seeds: list[int],
    fill: bool = True,
):
    """The Blended Latent Diffusion loop. photo is at the working size, region a {0,1} mask of any size.
    fill: take the background latents from the photo with the region filled from its surroundings
    (`fill_region`), so that what is being replaced does not leak into the edit.
    Returns (final latents [k,4,h,w], background source latents [1,4,h,w], latent mask [h,w])."""
    from diffusers.utils.torch_utils import randn_tensor

    from .sampling import generators

    k = len(seeds)
    hole = F.adaptive_max_pool2d(region[None, None].float(), (photo.height, photo.width))[0, 0]
    original = _encode(model, photo) if first > 0 or not fill else None
    src = _encode(model, fill_region(photo, hole)) if fill else original
    m = latent_mask(region, tuple(src.shape[-2:])).to(model.device, src.dtype)
    cfg = guidance > 1.0
    # the prompt as the model family conditions its UNet (SDXL: both encoders, pooled text, sizes)
    conditioning = model.family.sampling_conditioning(model, prompt, negative, k, cfg, (photo.height, photo.width))

    sched = _scheduler(model)
    sched.set_timesteps(steps, device=model.device)
    timesteps = sched.timesteps[first:]
    noise = randn_tensor((k, *src.shape[1:]), generator=generators(seeds), device=model.device, dtype=src.dtype)
    src_k = src.expand(k, -1, -1, -1)

    def noised(z, t):  # latents noised to timestep t (one fixed noise: a coherent trajectory)
        return sched.add_noise(z.expand(k, -1, -1, -1), noise, t.reshape(1).to(model.device))

    # strength < 1 starts the region from the photo itself (what is under the mask), noised part-way
    latents = noise * sched.init_noise_sigma if first == 0 else noised(original, timesteps[0])
    latents = m * latents + (1 - m) * noised(src, timesteps[0])
    for i, t in enumerate(timesteps):
        inp = torch.cat([latents] * 2) if cfg else latents
        inp = sched.scale_model_input(inp, t)
        pred = model.unet(inp, t, **conditioning).sample
        if cfg:
            pred_u, pred_c = pred.chunk(2)
            pred = pred_u + guidance * (pred_c - pred_u)
        latents = sched.step(pred, t, latents).prev_sample
        outside = noised(src, timesteps[i + 1]) if i + 1 < len(timesteps) else src_k
        latents = m * latents + (1 - m) * outside
    return latents, src, m
