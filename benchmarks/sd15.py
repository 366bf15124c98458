"""Stable Diffusion 1.5's exact architecture with random weights, built from configs written here.

Speed and memory do not depend on weight values, so this stands in for runwayml/stable-diffusion-v1-5
without a download: UNet2DConditionModel (~860M parameters), AutoencoderKL (~84M), CLIPTextModel ViT-L/14
text tower (~123M) and the real CLIP tokenizer (49,408 ids). The configs below are SD1.5's own
(unet/config.json, vae/config.json, text_encoder/config.json, scheduler/scheduler_config.json).

    from benchmarks.sd15 import build_sd15
    model = build_sd15("cuda", torch.bfloat16)   # an oneword FrozenModel
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import torch

UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, center_input_sample=False, flip_sin_to_cos=True, freq_shift=0,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, downsample_padding=1, mid_block_scale_factor=1,
    act_fn="silu", norm_num_groups=32, norm_eps=1e-5, cross_attention_dim=768, attention_head_dim=8)

VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, act_fn="silu",
    norm_num_groups=32, sample_size=512, scaling_factor=0.18215)

TEXT = dict(
    vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
    max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=768,
    bos_token_id=0, eos_token_id=2, pad_token_id=1)  # SD1.5's text_encoder/config.json (legacy ids)

SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000,
                 skip_prk_steps=True, steps_offset=1, set_alpha_to_one=False)

# Parameter counts of the real checkpoints, checked by tests/test_engine.py on the meta device.
PARAMS = {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480}


def clip_tokenizer():
    """The real CLIP tokenizer (49,408 ids), from open_clip's vocabulary: SD1.5's tokenizer."""
    from transformers import CLIPTokenizer

    from oneword.clip_tokenizer import write_clip_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        return CLIPTokenizer.from_pretrained(write_clip_tokenizer(Path(tmp) / "tokenizer"))


def build_modules(device="cpu", dtype=torch.float32, seed: int = 0):
    """(unet, vae, text_encoder, tokenizer, scheduler), weights initialised directly on `device`."""
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    device = torch.device(device)
    if device.type != "meta":
        torch.manual_seed(seed)
        if device.type == "cuda":
            torch.cuda.manual_seed_all(seed)
    with torch.device(device):
        unet = UNet2DConditionModel(**UNET)
        vae = AutoencoderKL(**VAE)
        text = CLIPTextModel(CLIPTextConfig(**TEXT))
    tokenizer = clip_tokenizer()
    scheduler = PNDMScheduler(**SCHEDULER)
    if device.type != "meta":
        for m in (unet, vae, text):
            m.to(dtype=dtype)
    return unet, vae, text, tokenizer, scheduler


def build_sd15(device="cpu", dtype=torch.float32, seed: int = 0):
    """An oneword FrozenModel with SD1.5's architecture and random weights (frozen, eval)."""
    from diffusers import StableDiffusionPipeline

    from oneword.models import FrozenModel

    unet, vae, text, tokenizer, scheduler = build_modules(device, dtype, seed)
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    for m in (unet, vae, text):
        m.requires_grad_(False)
        m.eval()
    pipe.set_progress_bar_config(disable=True)
    identity = {"source": "sd15-architecture-random", "kind": "benchmark", "pipeline": type(pipe).__name__,
                "text_width": TEXT["hidden_size"], "prediction_type": "epsilon", "resolution": 512,
                "fingerprint": f"sd15-random-seed{seed}"}
    return FrozenModel(pipe=pipe, identity=identity)


def count_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


if __name__ == "__main__":
    unet, vae, text, _, _ = build_modules("meta")
    for name, m in (("unet", unet), ("vae", vae), ("text_encoder", text)):
        print(f"{name:13s} {count_params(m) / 1e6:8.1f} M parameters")
