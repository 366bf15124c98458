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


def make_tiny_pipeline(
    dest: str | Path, prediction_type: str = "epsilon", seed: int = 0, sample_size: int = 8, hidden: int = 32
):
    """Save a tiny random StableDiffusionPipeline folder at `dest` and return the pipeline."""
    from diffusers import DDIMScheduler
    from transformers import CLIPTextModel

    # the modules are made in this order (tokenizer, unet, vae, text) so a seed gives the same weights as ever
    torch.manual_seed(seed)
    dest = Path(dest)
    tok = clip_vit_l_tokenizer(dest / "_tok")
    unet = _tiny_unet(
        sample_size,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=hidden,
        attention_head_dim=2,
    )
    vae = _tiny_vae(sample_size)
    text = CLIPTextModel(_tiny_text_config(tok, hidden_size=hidden, num_attention_heads=2, pad_token_id=49407))
    sched = DDIMScheduler(**SD_BETAS, clip_sample=False, set_alpha_to_one=False, prediction_type=prediction_type)
    pipe = _sd_pipeline(unet, vae, text, tok, sched)
    pipe.save_pretrained(dest)
    return pipe


# what the tiny SD and SDXL builders share: CLIP's token ids, SD's noise schedule, a small UNet trunk and VAE
CLIP_IDS = dict(max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407)
SD_BETAS = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)


def _tiny_text_config(tok, **widths):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(vocab_size=len(tok), intermediate_size=64, num_hidden_layers=2, **CLIP_IDS, **widths)


def _tiny_unet(sample_size: int, **blocks):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(16, 32),
        norm_num_groups=8,
        **blocks,
    )


def _tiny_vae(sample_size: int, **extra):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        norm_num_groups=8,
        sample_size=sample_size * 2,
        **extra,
    )


def _sd_pipeline(unet, vae, text, tokenizer, scheduler):
    """An SD1.x/2.x pipeline of these modules, without the safety checker."""
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _sdxl_pipeline(unet, vae, texts, tokenizers, scheduler):
    from diffusers import StableDiffusionXLPipeline

    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=texts[0],
        text_encoder_2=texts[1],
        tokenizer=tokenizers[0],
        tokenizer_2=tokenizers[1],
        unet=unet,
        scheduler=scheduler,
        force_zeros_for_empty_prompt=True,
    )


# Stable Diffusion 1.5's configs
SD15_UNET = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    center_input_sample=False,
    flip_sin_to_cos=True,
    freq_shift=0,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    downsample_padding=1,
    mid_block_scale_factor=1,
    act_fn="silu",
    norm_num_groups=32,
    norm_eps=1e-5,
    cross_attention_dim=768,
    attention_head_dim=8,
)
SD15_VAE = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    act_fn="silu",
    norm_num_groups=32,
    sample_size=512,
    scaling_factor=0.18215,
)
SD15_TEXT = dict(
    vocab_size=49408,
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
    projection_dim=768,
    bos_token_id=0,
    eos_token_id=2,
    pad_token_id=1,
)  # SD1.5's text_encoder/config.json (legacy ids)
SD15_SCHEDULER = dict(
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    num_train_timesteps=1000,
    skip_prk_steps=True,
    steps_offset=1,
    set_alpha_to_one=False,
)
# parameter counts of the real checkpoints (tests/test_engine.py checks the build against them on the meta device)
SD15_PARAMS = {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480}


def clip_vit_l_tokenizer(folder: str | Path | None = None, **options):
    """The real CLIP tokenizer (49,408 ids, open_clip's vocabulary): SD1.5's tokenizer. Its files are written to
    `folder` (kept) or to a temporary one; `options` go to from_pretrained (pad_token="!": SDXL's second)."""
    import tempfile

    from transformers import CLIPTokenizer

    if folder is not None:
        return CLIPTokenizer.from_pretrained(write_clip_tokenizer(Path(folder)), **options)
    with tempfile.TemporaryDirectory() as tmp:
        return CLIPTokenizer.from_pretrained(write_clip_tokenizer(Path(tmp) / "tokenizer"), **options)


def sdxl_tokenizers() -> tuple:
    """SDXL's two tokenizers: CLIP's, and the same vocabulary padding with "!" (as SDXL's second does)."""
    return clip_vit_l_tokenizer(), clip_vit_l_tokenizer(pad_token="!")


def _seed(device: torch.device, seed: int) -> None:
    torch.manual_seed(seed)
    if device.type == "cuda":
        torch.cuda.manual_seed_all(seed)


def _frozen_model(pipe, name: str, seed: int, text_width: int, resolution: int, **family):
    """The FrozenModel of a random-weight benchmark pipeline: modules frozen in eval mode, no progress bar."""
    from .models import FrozenModel

    for m in pipe.components.values():
        if isinstance(m, torch.nn.Module):
            m.requires_grad_(False)
            m.eval()
    pipe.set_progress_bar_config(disable=True)
    identity = {
        "source": f"{name}-architecture-random",
        "kind": "benchmark",
        "pipeline": type(pipe).__name__,
        **family,
        "text_width": text_width,
        "prediction_type": "epsilon",
        "resolution": resolution,
        "fingerprint": f"{name}-random-seed{seed}",
    }
    return FrozenModel(pipe=pipe, identity=identity)


def sd15_modules(device="cpu", dtype=torch.float32, seed: int = 0):
    """SD1.5's (unet, vae, text_encoder, tokenizer, scheduler) with random weights initialised directly on `device`
    (the meta device: shapes only, no memory, for counting parameters and FLOPs)."""
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    device = torch.device(device)
    if device.type != "meta":
        _seed(device, seed)
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
    pipe = _sd_pipeline(*sd15_modules(device, dtype, seed))
    return _frozen_model(pipe, "sd15", seed, text_width=SD15_TEXT["hidden_size"], resolution=512)


def count_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def make_tiny_sdxl_pipeline(dest: str | Path, seed: int = 0, sample_size: int = 8):
    """Save a tiny random StableDiffusionXLPipeline folder at `dest` and return the pipeline.

    SDXL's real text widths (CLIP ViT-L 768 + OpenCLIP bigG 1280, with bigG's 1280-wide text projection) and
    both real tokenizers (the second pads with "!", as SDXL's does), so words learned on it have SDXL's shapes;
    two layers per encoder and a small UNet with SDXL's micro-conditioning (add_embedding of the pooled text
    vector and six size/crop numbers) keep it fast on the CPU."""
    from diffusers import EulerDiscreteScheduler
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    # the modules are made in this order (text, text2, unet, vae) so a seed gives the same weights as ever
    torch.manual_seed(seed)
    dest = Path(dest)
    tok, tok2 = sdxl_tokenizers()
    text = CLIPTextModel(
        _tiny_text_config(
            tok,
            hidden_size=768,
            num_attention_heads=12,
            hidden_act="quick_gelu",
            projection_dim=768,
            pad_token_id=49407,
        )
    )
    text2 = CLIPTextModelWithProjection(
        _tiny_text_config(
            tok2, hidden_size=1280, num_attention_heads=20, hidden_act="gelu", projection_dim=1280, pad_token_id=0
        )
    )
    time_dim = 8
    unet = _tiny_unet(
        sample_size,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        cross_attention_dim=768 + 1280,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_dim,
        projection_class_embeddings_input_dim=1280 + 6 * time_dim,
    )
    vae = _tiny_vae(sample_size, scaling_factor=0.13025, force_upcast=True)
    sched = EulerDiscreteScheduler(**SD_BETAS, timestep_spacing="leading", prediction_type="epsilon")
    pipe = _sdxl_pipeline(unet, vae, (text, text2), (tok, tok2), sched)
    pipe.save_pretrained(dest)
    return pipe


# Single-file checkpoints with random weights in the original (web UI) layout, for tests and benchmarks.
# "full": the family's real architecture (oneword's shipped configs); "small": the same key layout and family
# rules (SD1.x 8 attention heads, SD2.x/SDXL/CLIP 64-wide heads, groups of 32 channels), reduced widths and blocks.
SMALL_CHECKPOINT = {
    "sd1": {
        "unet": dict(
            block_out_channels=[32, 64],
            layers_per_block=1,
            cross_attention_dim=64,
            down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
            up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"],
        ),
        "text_encoder": dict(hidden_size=64, num_attention_heads=1, intermediate_size=128, num_hidden_layers=2),
    },
    "sd2": {
        "unet": dict(
            block_out_channels=[64, 64, 128, 128],
            cross_attention_dim=64,  # SD2's four levels:
            attention_head_dim=[1, 1, 2, 2],
        ),  # output_blocks.11 exists, read to tell 768-v from base
        "text_encoder": dict(hidden_size=64, num_attention_heads=1, intermediate_size=128, num_hidden_layers=2),
    },
    "sdxl": {
        "unet": dict(
            block_out_channels=[64, 128],
            layers_per_block=1,
            cross_attention_dim=64 + 128,
            attention_head_dim=[1, 2],
            transformer_layers_per_block=[1, 2],
            down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"],
            up_block_types=["CrossAttnUpBlock2D", "UpBlock2D"],
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=128 + 6 * 8,
        ),
        "text_encoder": dict(hidden_size=64, num_attention_heads=1, intermediate_size=128, num_hidden_layers=2),
        "text_encoder_2": dict(
            hidden_size=128, num_attention_heads=2, intermediate_size=256, num_hidden_layers=2, projection_dim=128
        ),
    },
}
SMALL_VAE = dict(
    block_out_channels=[32, 64],
    layers_per_block=1,
    down_block_types=["DownEncoderBlock2D"] * 2,
    up_block_types=["UpDecoderBlock2D"] * 2,
)


def checkpoint_configs(family: str, size: str = "small") -> dict[str, dict]:
    """Diffusers configs ({component: config}) of a random single-file checkpoint ("sd1", "sd2", "sdxl")."""
    import json

    from .single_file import shipped_config

    folder = shipped_config(family, "v_prediction" if family == "sd2" else "epsilon")
    configs = {
        p.name: json.loads((p / "config.json").read_text())
        for p in sorted(folder.iterdir())
        if (p / "config.json").is_file()
    }
    if size == "small":
        for component, values in {**SMALL_CHECKPOINT[family], "vae": SMALL_VAE}.items():
            configs[component].update(values)
    elif size != "full":
        raise ValueError(f"size must be 'small' or 'full', not {size!r}")
    return configs


def checkpoint_shapes(configs: dict[str, dict]) -> dict[str, dict[str, tuple]]:
    """{component: {diffusers tensor name: shape}}, built on the meta device (no memory, no time)."""
    from .single_file import component_shapes

    return component_shapes(configs)


_POOL: list = []


def random_weight(component: str, key: str, shape: tuple) -> torch.Tensor:
    """The fp16 value of tensor `key` in a random checkpoint: a window of one fixed N(0, 1) pool at an offset
    hashed from the name (distinct per tensor, reproducible without storing it, ~1 GB/s)."""
    import zlib

    if key.endswith("position_ids"):
        return torch.arange(shape[-1]).expand(shape).contiguous()
    if not _POOL:
        _POOL.append(torch.randn(1_000_003, generator=torch.Generator().manual_seed(0), dtype=torch.float16))
    pool = _POOL[0]
    n = int(torch.Size(shape).numel())
    offset = zlib.crc32(f"{component}/{key}".encode()) % pool.numel()
    reps = -(-(n + offset) // pool.numel())
    return pool.repeat(reps)[offset : offset + n].view(shape).clone()


def random_checkpoint_tensors(
    family: str, size: str = "small", v_prediction_weights: bool = True, weight=random_weight
) -> tuple[dict, dict]:
    """(tensors in the original single-file layout, their diffusers shapes {component: {name: shape}}), where
    diffusers tensor `name` of `component` holds `weight(component, name, shape)`. SD2.x gets the unused last
    OpenCLIP layer and text_projection, as released SD2 files have. v_prediction_weights=False (SD2.x): the one
    tensor ComfyUI reads to tell 768-v from 512 base is scaled down like a base model's (so it is not weight's)."""
    from .single_file import OPEN_CLIP_PREFIX, UNET, V_PREDICTION_BIAS, original_layout

    configs = checkpoint_configs(family, size)
    shapes = checkpoint_shapes(configs)
    weights = {c: {k: weight(c, k, s) for k, s in d.items()} for c, d in shapes.items()}
    tensors = original_layout(family, configs["unet"], weights)
    del weights
    if family == "sd2":
        cfg = configs["text_encoder"]
        w, inner, last = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
        extra = {
            "attn.in_proj_weight": (3 * w, w),
            "attn.in_proj_bias": (3 * w,),
            "attn.out_proj.weight": (w, w),
            "attn.out_proj.bias": (w,),
            "ln_1.weight": (w,),
            "ln_1.bias": (w,),
            "ln_2.weight": (w,),
            "ln_2.bias": (w,),
            "mlp.c_fc.weight": (inner, w),
            "mlp.c_fc.bias": (inner,),
            "mlp.c_proj.weight": (w, inner),
            "mlp.c_proj.bias": (w,),
        }
        extra = {f"transformer.resblocks.{last}.{k}": s for k, s in extra.items()} | {"text_projection": (w, w)}
        for k, s in extra.items():
            tensors[OPEN_CLIP_PREFIX["sd2"] + k] = weight("unused", k, s)
        if not v_prediction_weights:
            tensors[UNET + V_PREDICTION_BIAS] = tensors[UNET + V_PREDICTION_BIAS] * 0.01
    return tensors, shapes


def write_random_checkpoint(
    dest: str | Path, family: str, size: str = "small", v_prediction_weights: bool = True, metadata: dict | None = None
) -> dict[str, dict[str, tuple]]:
    """Write a single-file checkpoint of random fp16 weights in the original layout (.safetensors, or .ckpt as
    {"state_dict": ...}); return its diffusers shapes: tensor `name` of `component` is
    `random_weight(component, name, shape)` (see random_checkpoint_tensors)."""
    dest = Path(dest)
    tensors, shapes = random_checkpoint_tensors(family, size, v_prediction_weights)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.suffix == ".ckpt":
        torch.save({"state_dict": tensors, "global_step": 0}, dest)
    else:
        from safetensors.torch import save_file

        save_file(tensors, str(dest), metadata={"format": "pt", **(metadata or {})})
    return shapes


def build_sdxl_architecture(device="cpu", dtype=torch.float32, seed: int = 0):
    """A FrozenModel with SDXL base's exact architecture (UNet ~2.57B parameters, VAE ~84M, CLIP ViT-L ~123M and
    OpenCLIP ViT-bigG ~695M text towers, both real tokenizers) and random weights initialised directly on `device`,
    from the configs oneword ships. Speed and memory do not depend on weight values: it stands in for
    stabilityai/stable-diffusion-xl-base-1.0 in throughput and memory measurements (benchmarks/speed.py)."""
    import json

    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from .families import family_of
    from .single_file import shipped_config

    configs = checkpoint_configs("sdxl", "full")
    scheduler = json.loads((shipped_config("sdxl") / "scheduler" / "scheduler_config.json").read_text())
    device = torch.device(device)
    _seed(device, seed)
    tokenizers = sdxl_tokenizers()
    with torch.device(device):
        unet = UNet2DConditionModel.from_config(configs["unet"])
        vae = AutoencoderKL.from_config(configs["vae"])
        text = CLIPTextModel(CLIPTextConfig.from_dict(configs["text_encoder"]))
        text2 = CLIPTextModelWithProjection(CLIPTextConfig.from_dict(configs["text_encoder_2"]))
    for m in (unet, vae, text, text2):
        m.to(dtype=dtype)
    pipe = _sdxl_pipeline(unet, vae, (text, text2), tokenizers, EulerDiscreteScheduler.from_config(scheduler))
    family_of(pipe).prepare(pipe)
    return _frozen_model(pipe, "sdxl", seed, family="sdxl", text_width=768, resolution=1024)


def make_tiny_clip(dest) -> Path:
    """A tiny random transformers CLIPModel + CLIPProcessor folder with the real CLIP tokenizer (a real judge's
    code path: `judges.load_judge(str(dest))`)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    dest = Path(dest)
    tok = clip_vit_l_tokenizer(dest / "_tok")
    text = dict(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=2,
        pad_token_id=49407,
        **CLIP_IDS,
    )
    vision = dict(
        hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8
    )
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(dest)
    CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tok,
    ).save_pretrained(dest)
    return dest
