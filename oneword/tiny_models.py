"""Stable Diffusion pipelines with random weights, built in code: no download.

`make_tiny_pipeline`: tiny ones for tests and CPU benchmarks. Same classes and code paths as a real SD1.x/2.x
model (diffusers UNet2DConditionModel, AutoencoderKL, transformers CLIPTextModel, the real CLIP tokenizer), only
a few thousand times smaller.

`build_sd15_architecture`: Stable Diffusion 1.5's exact architecture (UNet ~860M parameters, VAE ~84M, CLIP
ViT-L/14 text tower ~123M, the real 49,408-id CLIP tokenizer) from SD1.5's own configs (unet/config.json,
vae/config.json, text_encoder/config.json, scheduler/scheduler_config.json). Speed and memory do not depend on
weight values, so it stands in for runwayml/stable-diffusion-v1-5 in throughput and memory measurements
(benchmarks/speed.py).
"""
from __future__ import annotations

from pathlib import Path

import torch

from .clip_tokenizer import write_clip_tokenizer


def make_tiny_pipeline(dest: str | Path, prediction_type: str = "epsilon", seed: int = 0,
                       sample_size: int = 8, hidden: int = 32):
    """Save a tiny random StableDiffusionPipeline folder at `dest` and return the pipeline."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(seed)
    dest = Path(dest)
    tok = CLIPTokenizer.from_pretrained(write_clip_tokenizer(dest / "_tok"))
    unet = UNet2DConditionModel(
        sample_size=sample_size, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(16, 32), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=hidden,
        attention_head_dim=2, norm_num_groups=8)
    vae = AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(8, 16), latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        norm_num_groups=8, sample_size=sample_size * 2)
    text = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407,
        pad_token_id=49407))
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                          clip_sample=False, set_alpha_to_one=False, steps_offset=1,
                          prediction_type=prediction_type)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tok, unet=unet, scheduler=sched,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(dest)
    return pipe


# Stable Diffusion 1.5's configs
SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, center_input_sample=False, flip_sin_to_cos=True, freq_shift=0,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, downsample_padding=1, mid_block_scale_factor=1,
    act_fn="silu", norm_num_groups=32, norm_eps=1e-5, cross_attention_dim=768, attention_head_dim=8)
SD15_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, act_fn="silu",
    norm_num_groups=32, sample_size=512, scaling_factor=0.18215)
SD15_TEXT = dict(
    vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
    max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=768,
    bos_token_id=0, eos_token_id=2, pad_token_id=1)  # SD1.5's text_encoder/config.json (legacy ids)
SD15_SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                      skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)
# parameter counts of the real checkpoints (tests/test_engine.py checks the build against them on the meta device)
SD15_PARAMS = {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480}


def clip_vit_l_tokenizer():
    """The real CLIP tokenizer (49,408 ids, open_clip's vocabulary): SD1.5's tokenizer."""
    import tempfile

    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        return CLIPTokenizer.from_pretrained(write_clip_tokenizer(Path(tmp) / "tokenizer"))


def sd15_modules(device="cpu", dtype=torch.float32, seed: int = 0):
    """SD1.5's (unet, vae, text_encoder, tokenizer, scheduler) with random weights initialised directly on `device`
    (the meta device: shapes only, no memory, for counting parameters and FLOPs)."""
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    device = torch.device(device)
    if device.type != "meta":
        torch.manual_seed(seed)
        if device.type == "cuda":
            torch.cuda.manual_seed_all(seed)
    with torch.device(device):
        unet = UNet2DConditionModel(**SD15_UNET)
        vae = AutoencoderKL(**SD15_VAE)
        text = CLIPTextModel(CLIPTextConfig(**SD15_TEXT))
    if device.type != "meta":
        for m in (unet, vae, text):
            m.to(dtype=dtype)
    return unet, vae, text, clip_vit_l_tokenizer(), PNDMScheduler(**SD15_SCHEDULER)


def build_sd15_architecture(device="cpu", dtype=torch.float32, seed: int = 0):
    """A FrozenModel with SD1.5's architecture and random weights (frozen, eval), on `device` in `dtype`."""
    from diffusers import StableDiffusionPipeline

    from .models import FrozenModel

    unet, vae, text, tokenizer, scheduler = sd15_modules(device, dtype, seed)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    for m in (unet, vae, text):
        m.requires_grad_(False)
        m.eval()
    pipe.set_progress_bar_config(disable=True)
    identity = {"source": "sd15-architecture-random", "kind": "benchmark", "pipeline": type(pipe).__name__,
                "text_width": SD15_TEXT["hidden_size"], "prediction_type": "epsilon", "resolution": 512,
                "fingerprint": f"sd15-random-seed{seed}"}
    return FrozenModel(pipe=pipe, identity=identity)


def count_params(module) -> int:
    return sum(p.numel() for p in module.parameters())
