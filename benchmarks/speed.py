"""Throughput and peak memory of oneword's engine, side by side with the loop the common scripts run.

For each model and batch size, in one process and on the same model (same architecture, same weights):

  oneword    `oneword.invert.learn` itself (early stopping off, no previews, no checkpoint inside the timed
             window): cached VAE posteriors, only the new vector trained through LearnedTokenEmbedding,
             AdamW over that vector, the model's default dtype (bf16 on a bf16 GPU, fp32 on CPU).
  reference  what diffusers' examples/textual_inversion/textual_inversion.py does per step: VAE encode with
             `latent_dist.sample()` every step, text encoder in fp32 (autocast fp16 inside it on CUDA, as
             accelerate wraps the prepared model), UNet/VAE weights fp16 on CUDA (fp32 on CPU),
             `resize_token_embeddings` + AdamW over the whole embedding matrix with every other row restored
             after each step, GradScaler on CUDA, `loss.item()` logged each step. Its data pipeline (resize,
             tokenisation) is precomputed, which favours the reference.

Warm-up steps are excluded. The oneword window is measured inside the real loop: the wall time between the
start of loop iteration W and the start of iteration W+N (CUDA synchronised at both marks), so it covers N
whole loop iterations and nothing else. Peak memory: CUDA `max_memory_allocated` over the timed window
(steady-state training); `peak_run` also covers setup (encoding the photos, the capture, the warm-up; the H200 rows
of benchmarks/results/h200-2026-11-28/ reset it at the window's start, so there it equals `peak`); `reserved` is
`max_memory_reserved` over the window, the allocator's whole holding. For a CUDA-graphed step `reserved` is the
footprint to read: the step's activations were allocated once, at capture, in the graph's private pool, which keeps
them for the replays (they allocate nothing), so the window's `peak` shows only the weights and the fixed tensors.
CPU: peak RSS of the process (VmHWM, reset through /proc/self/clear_refs at the same marks; includes the weights and
the Python runtime).

Systems: `oneword` (a CUDA graph per step where the device allows: oneword.cuda_graph), `oneword-eager` (the same
loop launching every kernel; identical to `oneword` on a CPU), `reference`. The `sd15` model is SD1.5's exact
architecture with random weights (oneword.tiny_models.build_sd15_architecture); its rows also give the achieved
TFLOP/s, from --flops's count of one image-step.

SDXL: `sdxl` is SDXL base's exact architecture with random weights (oneword.tiny_models.build_sdxl_architecture,
1024 px), `tiny-sdxl` the tiny random SDXL (real text widths 768 + 1280) for the CPU. oneword learns the word in
both encoders; the reference does what diffusers' examples/textual_inversion/textual_inversion_sdxl.py does per
step (`ReferenceLoopXL`): VAE encode with `latent_dist.sample()`, the first text encoder in fp32 under bf16
autocast (its README's --mixed_precision bf16), the second encoder, UNet and VAE in bf16 (fp32 on CPU), penultimate
hidden states of both encoders, the second's pooled output, add_time_ids, AdamW over the first encoder's whole
embedding matrix with every other row restored, `loss.item()` each step.

    .venv/bin/python -m benchmarks.speed --model tiny world --batch 1 4 16 --steps 30 --repeat 3    # CPU table
    .venv/bin/python -m benchmarks.speed --model sd15 --device cuda --batch 4 16 32    # GPU (benchmarks/gpu_session.sh)
    .venv/bin/python -m benchmarks.speed --model sd15 --device cuda --batch 1 4 --grad-checkpointing
    .venv/bin/python -m benchmarks.speed --flops     # where a step's FLOPs are (any machine, seconds)
    .venv/bin/python -m benchmarks.speed --model tiny-sdxl --batch 1 4 --steps 10    # SDXL, CPU rows
    .venv/bin/python -m benchmarks.speed --model sdxl --device cuda --batch 1 4 8    # SDXL at 1024 px (gpu_session.sh)
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import copy
import functools
import gc
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from oneword.commands import quiet_libraries

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # every model here is built or loaded locally
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

GiB = 1024**3
TOKEN = "<bench-concept>"


# ----------------------------------------------------------------------------------------------- models

_TINY_DIR: Path | None = None
_TINY_SDXL_DIR: Path | None = None
WORLD_DIR: Path | None = (
    None  # --world-dir: another pretraining's output folder (its model/) instead of the shipped one
)


def load(kind: str, device: torch.device, dtype: torch.dtype):
    """A fresh FrozenModel of `kind` on `device` with all weights in `dtype`."""
    from oneword.models import load_model

    global _TINY_DIR, _TINY_SDXL_DIR
    if kind == "tiny-sdxl":
        if _TINY_SDXL_DIR is None:
            from oneword.tiny_models import make_tiny_sdxl_pipeline

            _TINY_SDXL_DIR = Path(tempfile.mkdtemp(prefix="oneword-bench-tiny-sdxl-"))
            atexit.register(shutil.rmtree, _TINY_SDXL_DIR, True)
            make_tiny_sdxl_pipeline(_TINY_SDXL_DIR)
        return load_model(str(_TINY_SDXL_DIR), device=device, dtype=dtype)
    if kind == "sdxl":
        from oneword.tiny_models import build_sdxl_architecture

        return build_sdxl_architecture(device, dtype)
    if kind == "tiny":
        if _TINY_DIR is None:
            from oneword.tiny_models import make_tiny_pipeline

            _TINY_DIR = Path(tempfile.mkdtemp(prefix="oneword-bench-tiny-"))
            atexit.register(shutil.rmtree, _TINY_DIR, True)
            make_tiny_pipeline(_TINY_DIR)
        return load_model(str(_TINY_DIR), device=device, dtype=dtype)
    if kind == "world":
        if WORLD_DIR is not None:  # same architecture family: give it the shipped world model's defaults
            from oneword.world.defaults import WORLD_DEFAULTS

            model = load_model(str(WORLD_DIR / "model"), device=device, dtype=dtype)
            model.defaults = copy.deepcopy(WORLD_DEFAULTS)
            return model
        return load_model(None, device=device, dtype=dtype)
    if kind == "sd15":
        from oneword.tiny_models import build_sd15_architecture

        return build_sd15_architecture(device, dtype)
    raise SystemExit(f"unknown model {kind!r}")


def synthetic_photos(n: int, size: int, seed: int = 0) -> list[Image.Image]:
    """n smooth random RGB images (content does not change speed)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        out.append(Image.fromarray(small).resize((size, size), Image.BICUBIC))
    return out


# ----------------------------------------------------------------------------------------------- memory


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # Linux: reset the peak-RSS high-water mark to the current RSS
        except OSError:
            pass


def peak_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


# ----------------------------------------------------------------------------------------------- oneword


def apply_engine_flags(model, args) -> None:
    if args.channels_last:
        model.unet.to(memory_format=torch.channels_last)
    if args.compile:
        model.unet.compile(mode=args.compile_mode, backend=args.compile_backend)


def run_oneword(model, photos, batch: int, warmup: int, steps: int, args, cuda_graph: bool = True) -> dict:
    """Time `oneword.invert.learn` from inside: marks at the start of loop iteration `warmup` and
    `warmup + steps` (its `_set_lr` call; a CUDA graph is captured before the loop, outside the window)."""
    import oneword.invert as inv

    device = model.device
    marks: dict[str, float] = {}
    calls = {"n": 0}
    real = inv._set_lr

    profiler = kernel_profiler(args, device)

    def timed(*a, **k):
        i = calls["n"]
        calls["n"] += 1
        if i == warmup:
            sync(device)
            marks["setup_peak"] = peak_bytes(device)  # before the reset: setup, capture and warm-up
            reset_peak(device)
            if profiler:
                profiler.start()
            marks["start"] = time.perf_counter()
        elif i == warmup + steps:
            sync(device)
            marks["end"] = time.perf_counter()
            marks["peak"] = peak_bytes(device)
            if profiler:
                profiler.stop()
                write_profile(profiler, args, batch, "oneword" if cuda_graph else "oneword-eager", device, steps)
        return real(*a, **k)

    cfg = inv.LearnConfig.with_defaults(
        model,
        token=TOKEN,
        steps=warmup + steps + 1,
        batch_size=batch,
        early_stop=False,
        save_every=10**9,
        preview_every=0,
        seed=0,
        grad_checkpointing=args.grad_checkpointing,
        resolution=args.resolution,
        cuda_graph=cuda_graph,
    )
    inv._set_lr = timed
    try:
        with tempfile.TemporaryDirectory(prefix="oneword-bench-run-") as out, sdpa_context(args):
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            inv.learn(model, photos, cfg, out, progress=False)
            peak_run = max(marks["setup_peak"], peak_bytes(device)) if device.type == "cuda" else None
            reserved = torch.cuda.max_memory_reserved(device) if device.type == "cuda" else None
            engine = json.loads((Path(out) / "run.json").read_text())["engine"]
    finally:
        inv._set_lr = real
    return {
        "seconds": marks["end"] - marks["start"],
        "peak": marks["peak"],
        "peak_run": peak_run,
        "reserved": reserved,
        "engine": engine["step"],
        "setup_s": engine["setup_s"],
    }


def kernel_profiler(args, device):
    """--profile: torch.profiler over the timed window (kernel times; host overhead shows as the gap between
    the window's wall time and the kernels' sum)."""
    if not args.profile:
        return None
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    return profile(activities=activities)


def write_profile(profiler, args, batch: int, system: str, device, steps: int) -> None:
    """Every operation and kernel by device time, appended to the --profile file (one block per measurement;
    benchmarks/profile_bound.py reads it)."""
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = profiler.key_averages().table(sort_by=key, row_limit=-1, max_name_column_width=80)
    with open(args.profile, "a") as f:
        f.write(f"## {system} on {device}, batch {batch}, {steps} steps, sorted by {key}\n{table}\n")


# ----------------------------------------------------------------------------------------------- reference


class ReferenceLoop:
    """diffusers examples/textual_inversion/textual_inversion.py, step for step (single process,
    gradient_accumulation_steps=1, constant lr, mixed_precision fp16 on CUDA / no on CPU)."""

    def __init__(self, model, photos, resolution: int, init_word: str, grad_checkpointing: bool = False, seed: int = 0):
        from diffusers import DDPMScheduler

        from oneword.data import to_tensor
        from oneword.templates import OBJECT_TEMPLATES

        self.device = model.device
        self.cuda = self.device.type == "cuda"
        self.weight_dtype = torch.float16 if self.cuda else torch.float32
        self.tokenizer = copy.deepcopy(model.tokenizer)
        self.tokenizer.add_tokens([TOKEN])
        init_id = self.tokenizer.encode(init_word, add_special_tokens=False)[0]
        self.placeholder_id = self.tokenizer.convert_tokens_to_ids(TOKEN)
        self.text_encoder = model.text_encoder.float()  # trainable model kept in fp32
        self.text_encoder.resize_token_embeddings(len(self.tokenizer))
        embeds = self.text_encoder.get_input_embeddings().weight
        with torch.no_grad():
            embeds[self.placeholder_id] = embeds[init_id].clone()
        self.vae, self.unet = model.vae.to(self.weight_dtype), model.unet.to(self.weight_dtype)
        self.vae.requires_grad_(False)
        self.unet.requires_grad_(False)
        tm = getattr(self.text_encoder, "text_model", self.text_encoder)  # transformers 5 flattened it
        for m in (tm.encoder, tm.final_layer_norm, tm.embeddings.position_embedding):
            m.requires_grad_(False)
        self.text_encoder.get_input_embeddings().requires_grad_(True)
        if grad_checkpointing:
            self.unet.train()
            self.text_encoder.gradient_checkpointing_enable()
            self.unet.enable_gradient_checkpointing()
        self.text_encoder.train()
        self.optimizer = torch.optim.AdamW(
            self.text_encoder.get_input_embeddings().parameters(),
            lr=5e-3,
            betas=(0.9, 0.999),
            weight_decay=1e-2,
            eps=1e-8,
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.cuda)
        self.orig_embeds = embeds.data.clone()
        self.noise_scheduler = DDPMScheduler.from_config(model.scheduler.config)
        self.scaling = float(self.vae.config.scaling_factor)
        # the script's dataset, precomputed: pixel tensors in [-1, 1] and tokenised templates
        self.pixels = to_tensor(photos, resolution)
        texts = [t.format(TOKEN) for t in OBJECT_TEMPLATES]
        self.ids = self.tokenizer(
            texts,
            padding="max_length",
            truncation=True,
            max_length=self.tokenizer.model_max_length,
            return_tensors="pt",
        ).input_ids
        self.g = torch.Generator().manual_seed(seed)

    def batch(self, b: int):
        rows = torch.randint(0, len(self.pixels), (b,), generator=self.g)
        flip = torch.rand(b, generator=self.g) < 0.5
        px = self.pixels[rows]
        px = torch.where(flip[:, None, None, None], px.flip(-1), px)
        ids = self.ids[torch.randint(0, len(self.ids), (b,), generator=self.g)]
        return px.to(self.device), ids.to(self.device)

    def step(self, b: int) -> float:
        pixel_values, input_ids = self.batch(b)
        latents = self.vae.encode(pixel_values.to(dtype=self.weight_dtype)).latent_dist.sample().detach()
        latents = latents * self.scaling
        noise = torch.randn_like(latents)
        bsz = latents.shape[0]
        timesteps = torch.randint(
            0, self.noise_scheduler.config.num_train_timesteps, (bsz,), device=latents.device
        ).long()
        noisy_latents = self.noise_scheduler.add_noise(latents, noise, timesteps)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.cuda):
            encoder_hidden_states = self.text_encoder(input_ids)[0].to(dtype=self.weight_dtype)
        model_pred = self.unet(noisy_latents, timesteps, encoder_hidden_states).sample
        if self.noise_scheduler.config.prediction_type == "epsilon":
            target = noise
        else:
            target = self.noise_scheduler.get_velocity(latents, noise, timesteps)
        loss = F.mse_loss(model_pred.float(), target.float(), reduction="mean")
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad()
        index_no_updates = torch.ones((len(self.tokenizer),), dtype=torch.bool)
        index_no_updates[self.placeholder_id : self.placeholder_id + 1] = False
        with torch.no_grad():
            weight = self.text_encoder.get_input_embeddings().weight
            weight[index_no_updates] = self.orig_embeds[index_no_updates]
        return loss.detach().item()  # the script logs it every step


class ReferenceLoopXL:
    """diffusers examples/textual_inversion/textual_inversion_sdxl.py, step for step (single process, constant lr,
    mixed_precision bf16 on CUDA as its README / no on CPU): only the first encoder's embedding matrix is trained."""

    def __init__(self, model, photos, resolution: int, init_word: str, grad_checkpointing: bool = False, seed: int = 0):
        from diffusers import DDPMScheduler

        from oneword.data import to_tensor
        from oneword.templates import OBJECT_TEMPLATES

        self.device = model.device
        self.cuda = self.device.type == "cuda"
        self.weight_dtype = torch.bfloat16 if self.cuda else torch.float32
        self.tokenizers, self.encoders, self.ids = [], [], []
        texts = [t.format(TOKEN) for t in OBJECT_TEMPLATES]
        for i, (tok, te) in enumerate(
            ((model.tokenizer, model.text_encoder), (model.tokenizer_2, model.text_encoder_2))
        ):
            tok = copy.deepcopy(tok)
            tok.add_tokens([TOKEN])
            init_id, new_id = tok.encode(init_word, add_special_tokens=False)[0], tok.convert_tokens_to_ids(TOKEN)
            te = te.float() if i == 0 else te.to(self.weight_dtype)  # the trained encoder in fp32
            te.resize_token_embeddings(len(tok))
            with torch.no_grad():
                te.get_input_embeddings().weight[new_id] = te.get_input_embeddings().weight[init_id].clone()
            te.requires_grad_(False)
            self.tokenizers.append(tok)
            self.encoders.append(te)
            self.ids.append(
                tok(
                    texts, padding="max_length", truncation=True, max_length=tok.model_max_length, return_tensors="pt"
                ).input_ids
            )
        self.placeholder_id = self.tokenizers[0].convert_tokens_to_ids(TOKEN)
        te1 = self.encoders[0]
        te1.get_input_embeddings().requires_grad_(True)
        self.vae, self.unet = model.vae.to(self.weight_dtype), model.unet.to(self.weight_dtype)
        if grad_checkpointing:
            self.unet.train()
            te1.gradient_checkpointing_enable()
            self.unet.enable_gradient_checkpointing()
        te1.train()
        self.optimizer = torch.optim.AdamW(
            te1.get_input_embeddings().parameters(),
            lr=5e-4 * 4,  # --scale_lr
            betas=(0.9, 0.999),
            weight_decay=1e-2,
            eps=1e-8,
        )
        self.orig_embeds = te1.get_input_embeddings().weight.data.clone()
        self.noise_scheduler = DDPMScheduler.from_config(model.scheduler.config)
        self.scaling = float(self.vae.config.scaling_factor)
        self.pixels = to_tensor(photos, resolution)
        self.sizes = [(p.height, p.width) for p in photos]
        self.resolution = resolution
        self.g = torch.Generator().manual_seed(seed)

    def step(self, b: int) -> float:
        rows = torch.randint(0, len(self.pixels), (b,), generator=self.g)
        flip = torch.rand(b, generator=self.g) < 0.5
        px = torch.where(flip[:, None, None, None], self.pixels[rows].flip(-1), self.pixels[rows]).to(self.device)
        pick = torch.randint(0, len(self.ids[0]), (b,), generator=self.g)
        ids1, ids2 = (ids[pick].to(self.device) for ids in self.ids)
        latents = self.vae.encode(px.to(dtype=self.weight_dtype)).latent_dist.sample().detach() * self.scaling
        noise = torch.randn_like(latents)
        timesteps = torch.randint(
            0, self.noise_scheduler.config.num_train_timesteps, (b,), device=latents.device
        ).long()
        noisy_latents = self.noise_scheduler.add_noise(latents, noise, timesteps)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cuda):
            hidden_1 = self.encoders[0](ids1, output_hidden_states=True).hidden_states[-2].to(self.weight_dtype)
        out_2 = self.encoders[1](ids2.reshape(b, -1), output_hidden_states=True)
        hidden_2 = out_2.hidden_states[-2].to(self.weight_dtype)
        time_ids = torch.cat(
            [torch.tensor(self.sizes[int(r)] + (0, 0) + (self.resolution, self.resolution))[None] for r in rows]
        ).to(self.device, dtype=self.weight_dtype)
        model_pred = self.unet(
            noisy_latents,
            timesteps,
            torch.cat([hidden_1, hidden_2], dim=-1),
            added_cond_kwargs={"text_embeds": out_2[0], "time_ids": time_ids},
        ).sample
        if self.noise_scheduler.config.prediction_type == "epsilon":
            target = noise
        else:
            target = self.noise_scheduler.get_velocity(latents, noise, timesteps)
        loss = F.mse_loss(model_pred.float(), target.float(), reduction="mean")
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad()
        index_no_updates = torch.ones((len(self.tokenizers[0]),), dtype=torch.bool)
        index_no_updates[self.placeholder_id : self.placeholder_id + 1] = False
        with torch.no_grad():
            weight = self.encoders[0].get_input_embeddings().weight
            weight[index_no_updates] = self.orig_embeds[index_no_updates]
        return loss.detach().item()  # the script logs it every step


def run_reference(model, photos, batch: int, warmup: int, steps: int, args) -> dict:
    import oneword.invert as inv

    init_word = inv.LearnConfig.with_defaults(model).init or inv.DEFAULT_INIT["object"]
    loop = ReferenceLoopXL if model.family.name == "sdxl" else ReferenceLoop
    ref = loop(model, photos, args.resolution or model.resolution, init_word, args.grad_checkpointing)
    with sdpa_context(args):
        for i in range(warmup + steps):
            if i == warmup:
                sync(ref.device)
                reset_peak(ref.device)
                start = time.perf_counter()
            ref.step(batch)
        sync(ref.device)
    return {"seconds": time.perf_counter() - start, "peak": peak_bytes(ref.device), "peak_run": None}


# ----------------------------------------------------------------------------------------------- driver


def sdpa_context(args):
    if args.sdpa == "auto":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backends = {
        "flash": SDPBackend.FLASH_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
        "cudnn": SDPBackend.CUDNN_ATTENTION,
        "math": SDPBackend.MATH,
    }
    chosen = backends[args.sdpa]
    # preferred, not exclusive: where it has no kernel for a shape (say, the VAE's one 512-wide head) the usual
    # backends take over, so the variant measures the step instead of failing in the photos' encoding
    fallback = [b for b in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH) if b != chosen]
    return sdpa_kernel([chosen, *fallback], set_priority=True)


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def measure(kind: str, system: str, batch: int, args, device: torch.device) -> dict:
    from oneword.models import default_dtype

    began = time.perf_counter()  # the whole measurement: building the model, encoding, capture, warm-up, window
    if system.startswith("oneword"):
        dtype = {"auto": default_dtype(device), "bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[
            args.dtype
        ]
        model = load(kind, device, dtype)
        apply_engine_flags(model, args)
    else:
        dtype = torch.float32  # the script loads fp32, then casts UNet/VAE to the fp16 weight dtype on CUDA
        model = load(kind, device, dtype)
    photos = synthetic_photos(args.photos, args.resolution or model.resolution)
    warmup = args.warmup if args.warmup is not None else (10 if args.compile and system == "oneword" else 3)
    if system == "reference":
        r = run_reference(model, photos, batch, warmup, args.steps, args)
    else:  # "oneword-eager": the same loop without the CUDA graph (identical to "oneword" on a CPU)
        r = run_oneword(model, photos, batch, warmup, args.steps, args, cuda_graph=system == "oneword")
    r["threads"] = torch.get_num_threads()  # oneword.models runs small models on one CPU thread
    del model
    free(device)
    r.update(
        model=kind,
        system=system,
        batch=batch,
        steps=args.steps,
        dtype=str(dtype).replace("torch.", ""),
        image_steps_per_s=batch * args.steps / r["seconds"],
        measure_s=round(time.perf_counter() - began, 1),
    )
    if kind == "sd15":  # achieved model FLOP rate (image_step_gflop's count of one image-step)
        r["tflops"] = r["image_steps_per_s"] * sd15_gflop(args.resolution or 512) / 1e3
    return r


@functools.lru_cache
def sd15_gflop(resolution: int) -> float:
    return sum(image_step_gflop(resolution // 8))


# ----------------------------------------------------------------------------------------------- FLOPs


def image_step_gflop(latent: int = 64) -> tuple[float, float, float]:
    """(text encoder forward, text encoder backward, UNet forward + backward to the conditioning) GFLOP of one
    SD1.5 image-step with latents latent x latent (64: 512 px), counted by torch.utils.flop_counter on the meta
    device (no weights, no compute: seconds on any machine)."""
    from torch.utils.flop_counter import FlopCounterMode

    from oneword.tiny_models import sd15_modules

    unet, _, text, tokenizer, _ = sd15_modules("meta")
    for m in (unet, text):
        m.requires_grad_(False)  # frozen, as in learning: the backward computes input gradients only
    ids = tokenizer(["a photo of a dog"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    v = torch.zeros(1, text.config.hidden_size, device="meta", requires_grad=True)
    table = text.get_input_embeddings()

    class WithVector(torch.nn.Module):  # the new vector enters the text encoder (so its backward is counted)
        def forward(self, i):
            return table(i) + v

    text.set_input_embeddings(WithVector())
    with FlopCounterMode(display=False) as text_fwd:
        hidden = text(ids.to("meta"))[0]
    with FlopCounterMode(display=False) as text_bwd:
        hidden.float().sum().backward()
    cond = torch.zeros(1, 77, text.config.hidden_size, device="meta", requires_grad=True)
    x = torch.zeros(1, 4, latent, latent, device="meta")
    with FlopCounterMode(display=False) as unet_both:
        unet(x, torch.tensor([500], device="meta"), cond).sample.float().mean().backward()
    return tuple(m.get_total_flops() / 1e9 for m in (text_fwd, text_bwd, unet_both))


def print_flops() -> int:
    """--flops: where one SD1.5 learning step's FLOPs are (the UNet's forward and its backward to the conditioning,
    against the text encoder's), and the share of text-encoder positions before the placeholder, the only work that
    does not depend on the new vector (CLIP's text attention is causal): does caching that work pay?"""
    from oneword.templates import OBJECT_TEMPLATES, STYLE_TEMPLATES
    from oneword.tiny_models import clip_vit_l_tokenizer

    t_f, t_b, u = image_step_gflop()
    tokenizer = clip_vit_l_tokenizer()
    total = t_f + t_b + u
    print(
        f"one image-step at 512 px: {total:,.0f} GFLOP = UNet forward + backward to the conditioning {u:,.0f} "
        f"({u / total:.1%}) + text encoder forward {t_f:.1f} and backward {t_b:.1f} ({(t_f + t_b) / total:.1%})"
    )
    for name, templates in (("object", OBJECT_TEMPLATES), ("style", STYLE_TEMPLATES)):
        before = [tokenizer(t.split("{}")[0].strip()).input_ids[:-1] for t in templates]  # BOS + words, no EOS
        share = sum(len(b) for b in before) / len(before) / 77
        print(
            f"{name} templates: {share:.1%} of the 77 text positions precede the placeholder; caching them "
            f"would save {share * (t_f + t_b) / total:.2%} of a step's FLOPs"
        )
    return 0


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def fmt_mem(b) -> str:
    return "-" if b is None else f"{b / GiB:.2f} GiB" if b >= GiB / 4 else f"{b / 2**20:.0f} MiB"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--model",
        nargs="+",
        default=None,
        choices=["tiny", "world", "sd15", "sdxl", "tiny-sdxl"],
        help="default: tiny and world on CPU, sd15 on CUDA",
    )
    p.add_argument("--batch", nargs="+", type=int, default=None, help="default: 1 4 16 (CPU), 4 16 32 (CUDA)")
    p.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3; 10 with --compile)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument(
        "--systems", nargs="+", default=["oneword", "reference"], choices=["oneword", "oneword-eager", "reference"]
    )
    p.add_argument("--repeat", type=int, default=1, help="rounds (alternating systems); the median is reported")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--photos", type=int, default=5)
    p.add_argument("--resolution", type=int, default=None, help="pixels (default: the model's, 512 for sd15)")
    p.add_argument("--grad-checkpointing", action="store_true", help="UNet gradient checkpointing (both systems)")
    p.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp16", "fp32"], help="oneword's weights")
    p.add_argument("--compile", action="store_true", help="oneword: torch.compile the UNet")
    p.add_argument("--compile-mode", default=None, help="torch.compile mode, e.g. max-autotune-no-cudagraphs")
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend (aot_eager: a quick check)")
    p.add_argument("--channels-last", action="store_true", help="oneword: channels-last UNet")
    p.add_argument(
        "--sdpa",
        default="auto",
        choices=["auto", "flash", "efficient", "cudnn", "math"],
        help="prefer one PyTorch SDPA backend where it supports the shape (both systems)",
    )
    p.add_argument("--json", help="also write the results here")
    p.add_argument(
        "--profile",
        help="append torch.profiler's table over each oneword window to this file "
        "(benchmarks/profile_bound.py reads it)",
    )
    p.add_argument(
        "--flops",
        action="store_true",
        help="instead: where an SD1.5 learning step's FLOPs are (meta device, seconds, any machine)",
    )
    p.add_argument("--world-dir", help="a `oneword world pretrain --out DIR` folder instead of the shipped world")
    p.add_argument(
        "--many",
        type=int,
        metavar="N",
        help="instead: concepts per hour learning N concepts with learn_many (--many-steps each, batch "
        "--batch[0] per concept) against sequential learn (--many-sequential of them, extrapolated) "
        "and the diffusers example run once per concept (3,000 steps of 4 images, its README)",
    )
    p.add_argument("--many-steps", type=int, default=200, help="--many: steps per concept (no early stopping)")
    p.add_argument("--many-sequential", type=int, default=2, help="--many: sequential learn runs timed")
    p.add_argument("--slots", type=int, help="--many: concepts per batch (default: learn_many's, from free memory)")
    args = p.parse_args(argv)
    global WORLD_DIR
    WORLD_DIR = Path(args.world_dir) if args.world_dir else None
    quiet_libraries()
    if args.flops:
        return print_flops()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    models = args.model or (["sd15"] if device.type == "cuda" else ["tiny", "world"])
    batches = args.batch or ([4, 16, 32] if device.type == "cuda" else [1, 4, 16])
    if args.many:
        return many_per_hour(models[0], batches[0], args, device)
    flags = [
        f
        for f, on in (
            ("grad-ckpt", args.grad_checkpointing),
            ("compile", args.compile),
            ("channels-last", args.channels_last),
            (f"sdpa={args.sdpa}", args.sdpa != "auto"),
        )
        if on
    ]
    print(
        f"# {machine(device)}; {time.strftime('%Y-%m-%d %H:%M')}; steps {args.steps}; "
        f"flags: {', '.join(flags) or 'none'}",
        flush=True,
    )
    print(
        f"{'model':9s} {'batch':>5s} {'system':13s} {'dtype':8s} {'img-steps/s':>11s} {'s/step':>8s} "
        f"{'peak':>10s} {'peak(run)':>10s} {'reserved':>10s} {'threads':>7s} engine",
        flush=True,
    )
    results = []
    for kind in models:
        for b in batches:
            rows = {s: [] for s in args.systems}
            for _ in range(args.repeat):
                for system in args.systems:
                    rows[system].append(measure(kind, system, b, args, device))
            best = {}
            for system, rs in rows.items():
                r = dict(rs[0])
                r["image_steps_per_s"] = statistics.median(x["image_steps_per_s"] for x in rs)
                r["all_image_steps_per_s"] = [round(x["image_steps_per_s"], 3) for x in rs]
                r["peak"] = max(x["peak"] for x in rs)
                best[system] = r
                results.append(r)
                write_json(args, device, flags, results)  # after every row: a stopped run keeps what it measured
                engine = (
                    f"{r['engine']} (capture {r['setup_s']:.1f} s)"
                    if r.get("engine") == "cuda-graph"
                    else r.get("engine", "")
                )
                if "tflops" in r:
                    engine += f" {r['tflops']:.0f} TFLOP/s"
                engine += f" [{r['measure_s']:.0f} s in all]"
                print(
                    f"{kind:9s} {b:5d} {system:13s} {r['dtype']:8s} {r['image_steps_per_s']:11.2f} "
                    f"{b / r['image_steps_per_s']:8.3f} {fmt_mem(r['peak']):>10s} {fmt_mem(r['peak_run']):>10s} "
                    f"{fmt_mem(r.get('reserved')):>10s} {r['threads']:7d} {engine}",
                    flush=True,
                )
            for other in ("oneword-eager", "reference"):
                if "oneword" in best and other in best:
                    ratio = best["oneword"]["image_steps_per_s"] / best[other]["image_steps_per_s"]
                    print(f"{kind:9s} {b:5d} {'ratio/' + other:13s} {'':8s} {ratio:10.2f}x", flush=True)
    return 0


def many_per_hour(kind: str, batch: int, args, device) -> int:
    """Concepts per device-hour: learn_many on N concepts, sequential learn, and the diffusers example's loop
    (its step rate measured here as "reference", times its README's 3,000 steps of 4 images, plus a model load)."""
    import tempfile as tf

    from oneword import LearnConfig, learn
    from oneword.many import Job, learn_many

    dtype = {"auto": None, "bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    started = time.perf_counter()
    model = load(kind, device, dtype or (torch.float16 if device.type == "cuda" else torch.float32))
    load_s = time.perf_counter() - started
    work = Path(tf.mkdtemp(prefix="oneword-many-"))
    atexit.register(shutil.rmtree, work, True)
    size = args.resolution or model.resolution
    jobs = []
    for i in range(args.many):
        folder = work / "photos" / f"c{i}"
        folder.mkdir(parents=True)
        for j, im in enumerate(synthetic_photos(args.photos, max(size, 64), seed=i)):
            im.save(folder / f"{j}.png")
        jobs.append(Job(token=f"<c{i}>", photos=str(folder), init="object", seed=i))
    common = dict(steps=args.many_steps, batch_size=batch, early_stop=False, save_every=10**9)
    t = time.perf_counter()
    for job in jobs[: args.many_sequential]:
        learn(
            model,
            job.photos,
            LearnConfig.with_defaults(model, **{**common, **job.overrides(), "steps": args.many_steps}),
            work / "seq" / job.token.strip("<>"),
            progress=False,
        )
    sync(device)
    seq_s = (time.perf_counter() - t) / args.many_sequential
    t = time.perf_counter()
    rows = learn_many(
        model,
        [Job(**{**j.__dict__, "out": None}) for j in jobs],
        work / "many",
        slots=args.slots,
        progress=False,
        **common,
    )
    sync(device)
    many_s = (time.perf_counter() - t) / args.many
    slots = json.loads((Path(rows[0]["out"]) / "run.json").read_text())["engine"]["slots"]
    ref = measure(kind, "reference", 4, args, device)
    example_s = 3000 * 4 / ref["image_steps_per_s"] + load_s
    print(
        f"# {machine(device)}; {kind}; {args.many} concepts x {args.many_steps} steps at batch {batch} each; "
        f"{slots} slots (batch {slots * batch})"
    )
    for name, per in (("learn-many", many_s), ("sequential learn", seq_s + load_s), ("diffusers example", example_s)):
        print(f"{name:18s} {per:8.2f} s/concept {3600 / per:9.1f} concepts/hour")
    print(
        f"learn-many / sequential learn: {(seq_s + load_s) / many_s:.2f}x; / diffusers example: {example_s / many_s:.1f}x "
        f"(sequential learn and the example each load the model once per concept: {load_s:.1f} s here; "
        f"the example runs 3,000 steps, learn-many {args.many_steps})"
    )
    if args.json:
        from oneword.safeio import atomic_write_json

        atomic_write_json(
            args.json,
            {
                "kind": kind,
                "n": args.many,
                "steps": args.many_steps,
                "batch": batch,
                "slots": slots,
                "many_s_per_concept": many_s,
                "sequential_s_per_concept": seq_s,
                "load_s": load_s,
                "reference_image_steps_per_s": ref["image_steps_per_s"],
                "example_s_per_concept": example_s,
                "machine": machine(device),
            },
        )
    return 0


def write_json(args, device, flags, results) -> None:
    if args.json:
        meta = {"machine": machine(device), "date": time.strftime("%Y-%m-%d %H:%M"), "argv": sys.argv, "flags": flags}
        tmp = Path(args.json).with_suffix(".tmp")
        tmp.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
        tmp.replace(args.json)


if __name__ == "__main__":
    sys.exit(main())
