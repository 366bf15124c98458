"""Tiny random Stable Diffusion pipelines built in code, for tests and CPU benchmarks.

Same classes and code paths as a real SD1.x/2.x model (diffusers UNet2DConditionModel, AutoencoderKL,
transformers CLIPTextModel, the real CLIP tokenizer), only a few thousand times smaller.
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
