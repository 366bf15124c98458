"""Load a frozen text-to-image model — a local diffusers folder, a hub id (from the local cache only
when offline), a single-file checkpoint, or the embedded world model — behind one small interface."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import OnewordError


def _dtype_keyword() -> str:
    """diffusers >= 0.41 names the argument `dtype` in from_pretrained (and warns on `torch_dtype`)."""
    import diffusers.utils as du

    return "dtype" if hasattr(du, "_resolve_dtype") else "torch_dtype"


_DTYPE_KW = _dtype_keyword()
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class FrozenModel:
    """A Stable Diffusion pipeline (SD1.x/2.x or SDXL) whose weights never change, plus what oneword needs to know
    of it; `family` (oneword.families) says how its text encoders, conditioning and VAE are used."""

    pipe: object
    identity: dict
    defaults: dict = field(
        default_factory=dict
    )  # oneword.json shipped with the model: {"learn": {..}, "generate": {..}}

    tokenizer = property(lambda self: self.pipe.tokenizer)
    text_encoder = property(lambda self: self.pipe.text_encoder)
    tokenizer_2 = property(lambda self: getattr(self.pipe, "tokenizer_2", None))  # SDXL's second encoder
    text_encoder_2 = property(lambda self: getattr(self.pipe, "text_encoder_2", None))
    unet = property(lambda self: self.pipe.unet)
    vae = property(lambda self: self.pipe.vae)
    scheduler = property(lambda self: self.pipe.scheduler)
    # the UNet's first weight, not diffusers' `unet.device` / `unet.dtype`: those walk every submodule (2.3 ms per
    # read on SD1.5's UNet, 0.9 ms on the world's; read on every learning step), and frozen weights share one of each
    device = property(lambda self: next(self.pipe.unet.parameters()).device)
    dtype = property(lambda self: next(self.pipe.unet.parameters()).dtype)
    hidden_size = property(lambda self: self.pipe.text_encoder.config.hidden_size)
    prediction_type = property(lambda self: self.pipe.scheduler.config.prediction_type)

    @property
    def family(self):
        from .families import family_of

        return family_of(self.pipe)

    @property
    def word_width(self) -> int:
        """Width of a learned word's vectors: the text encoder's, or for SDXL both encoders' side by side."""
        return self.family.word_width(self.pipe)

    @property
    def resolution(self) -> int:
        return self.pipe.unet.config.sample_size * self.pipe.vae_scale_factor

    @property
    def size_multiple(self) -> int:
        """Image sides must be multiples of this: the VAE's factor times the UNet's down-sampling."""
        return self.pipe.vae_scale_factor * 2 ** (len(self.pipe.unet.config.block_out_channels) - 1)

    def check_size(self, pixels: int, what: str = "--resolution") -> None:
        if pixels % self.size_multiple:
            m = self.size_multiple
            raise OnewordError(
                f"{what} {pixels} is not a multiple of {m} (this model's VAE factor "
                f"{self.pipe.vae_scale_factor} times its UNet's down-sampling); try "
                f"{max(m, pixels // m * m)}"
            )


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    """bf16 weights where the GPU supports it (no loss scaling needed), fp16 on older GPUs, fp32 on CPU."""
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def load_model(
    spec: str | os.PathLike | None = None,
    device=None,
    dtype=None,
    config: str | None = None,
    prediction_type: str | None = None,
) -> FrozenModel:
    """spec: None (embedded world model), a diffusers folder (SD1.x/2.x or SDXL), a hub id (local cache), or a
    .safetensors/.ckpt single-file checkpoint (family detected from its tensors, built from configs oneword
    ships). `config`: a diffusers folder or cached hub id that overrides a single file's shipped configs.
    `prediction_type` ("epsilon" or "v_prediction"): overrides what a single file says of itself."""
    from .validate import device as check_device

    device = check_device(device)  # one line for "tpu", "meta", or cuda where there is none
    dtype = dtype or default_dtype(device)
    kind, pipe = _load_pipeline(spec, dtype, config, prediction_type)
    pipe.to(device)
    for module in pipe.components.values():
        if isinstance(module, torch.nn.Module):
            module.requires_grad_(False)
            module.eval()
    from .families import family_of

    family = family_of(pipe)
    family.prepare(pipe)
    pipe.set_progress_bar_config(disable=True)
    _pick_cpu_threads(pipe, device)
    source = str(spec) if spec is not None else "world"
    identity = {
        "source": source,
        "kind": kind,
        "pipeline": type(pipe).__name__,
        "family": family.name,
        "text_width": pipe.text_encoder.config.hidden_size,
        "prediction_type": pipe.scheduler.config.prediction_type,
        "resolution": pipe.unet.config.sample_size * pipe.vae_scale_factor,
        "fingerprint": _fingerprint(pipe),
    }
    return FrozenModel(pipe=pipe, identity=identity, defaults=_shipped_defaults(spec))


def _load_pipeline(spec, dtype, config, prediction_type=None):
    kw = dict(safety_checker=None, requires_safety_checker=False)
    kw[_DTYPE_KW] = dtype
    if spec is None:
        from .world import model_path

        return "world", _from_folder(model_path(), kw)
    path = Path(spec).expanduser()
    if path.is_dir():
        return "folder", _from_folder(path, kw)
    if path.is_file():
        if path.suffix.lower() not in (".safetensors", ".ckpt"):
            raise OnewordError(f"{path}: a model file must be .safetensors or .ckpt (or give a diffusers folder)")
        return "single_file", _from_single_file(path, {**kw, "torch_dtype": kw.pop(_DTYPE_KW)}, config, prediction_type)
    if HUB_ID.match(str(spec)) and not str(spec).startswith((".", "/", "~")):
        index = _cached_model_index(str(spec))
        if index is None:
            raise OnewordError(
                f"model {spec!r} is not in the local Hugging Face cache and the network is not used; "
                f"download it where you have access (huggingface-cli download {spec} --local-dir DIR) "
                f"and pass --model DIR"
            )
        return "hub", _from_pretrained(str(spec), index, kw, f"model {spec!r}")
    raise OnewordError(f"unknown model {str(spec)!r}: not a folder, a .safetensors/.ckpt file or a hub id")


# model_index.json's _class_name -> the pipeline oneword loads it as (SDXL fine-tunes name the base class)
PIPELINES = {
    "StableDiffusionPipeline": "StableDiffusionPipeline",
    "StableDiffusionXLPipeline": "StableDiffusionXLPipeline",
}
NOT_YET = {
    "StableDiffusion3Pipeline": "Stable Diffusion 3",
    "FluxPipeline": "Flux",
    "StableDiffusionXLImg2ImgPipeline": "the SDXL refiner",
    "PixArtAlphaPipeline": "PixArt",
    "StableCascadeCombinedPipeline": "Stable Cascade",
    "KandinskyV22Pipeline": "Kandinsky",
}


def _cached_model_index(repo: str) -> dict | None:
    try:
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(repo, "model_index.json", local_files_only=True)).read_text())
    except Exception:
        return None


def _pipeline_class(index: dict, where: str):
    import diffusers

    name = str(index.get("_class_name", "StableDiffusionPipeline"))
    if name in NOT_YET:
        raise OnewordError(
            f"{where} is a {NOT_YET[name]} model ({name}); oneword supports Stable Diffusion "
            f"1.x/2.x and SDXL, not {NOT_YET[name]} (not supported yet)"
        )
    if name not in PIPELINES:
        raise OnewordError(
            f"{where} is a {name}; oneword supports Stable Diffusion 1.x/2.x "
            f"(StableDiffusionPipeline) and SDXL (StableDiffusionXLPipeline)"
        )
    cls = getattr(diffusers, PIPELINES[name])
    if name == "StableDiffusionXLPipeline" and not (index.get("text_encoder_2") or [None])[0]:
        raise OnewordError(
            f"{where} is an SDXL model without its second text encoder (text_encoder_2); "
            "oneword needs both of SDXL's encoders"
        )
    return cls


def _from_pretrained(source, index: dict, kw, where: str):
    cls = _pipeline_class(index, where)
    if cls.__name__ != "StableDiffusionPipeline":
        kw = {k: v for k, v in kw.items() if k not in ("safety_checker", "requires_safety_checker")}
    try:
        return cls.from_pretrained(source, local_files_only=True, **kw)
    except Exception as e:
        raise OnewordError(f"cannot load {where}: {_first_line(e)}") from None


def _from_folder(path: Path, kw):
    if not (path / "model_index.json").is_file():
        raise OnewordError(f"{path} is not a diffusers model folder (no model_index.json)")
    try:
        index = json.loads((path / "model_index.json").read_text())
    except (OSError, ValueError):
        raise OnewordError(f"{path / 'model_index.json'} is not valid JSON") from None
    if not isinstance(index, dict):
        raise OnewordError(f"{path / 'model_index.json'} is not a diffusers model index")
    if (
        index.get("text_encoder_2")
        and (index["text_encoder_2"] or [None])[0]
        and not (path / "text_encoder_2").is_dir()
    ):
        raise OnewordError(
            f"{path} is an SDXL model without its second text encoder (no text_encoder_2 folder); "
            "oneword needs both of SDXL's encoders"
        )
    return _from_pretrained(path, index, kw, f"the model in {path}")


def _from_single_file(path: Path, kw, config, prediction_type=None):
    from .single_file import load_single_file  # family from the keys, configs shipped with oneword, offline

    return load_single_file(path, kw, config, prediction_type)


SMALL_MODEL_PARAMS = 50_000_000


def _pick_cpu_threads(pipe, device) -> None:
    """A small model on the CPU is bound by per-op latency, not arithmetic: one thread avoids OpenMP
    spin-waits, which cost 30x when the other cores are busy (measured: 3.5 vs 128 image-steps/s on the
    tiny test model under load). Users who set OMP_NUM_THREADS keep their choice."""
    if device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        if sum(p.numel() for p in pipe.unet.parameters()) < SMALL_MODEL_PARAMS:
            torch.set_num_threads(1)


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__


def _shipped_defaults(spec) -> dict:
    """Recommended settings: a model folder may carry oneword.json; the world model's are in code."""
    if spec is None:
        from .world.defaults import WORLD_DEFAULTS

        return WORLD_DEFAULTS
    f = Path(spec) / "oneword.json" if Path(spec).is_dir() else None
    if f and f.is_file():
        try:
            return json.loads(f.read_text())
        except (OSError, ValueError):
            raise OnewordError(f"{f} is not valid JSON") from None
    return {}


def weights_config(config):
    """A config without its "_"-keys ("_name_or_path", "_diffusers_version", ...: where and by what it was
    saved, not what the weights are), nested configs included: identities that do not move with the folder."""
    if isinstance(config, dict):
        return {k: weights_config(v) for k, v in config.items() if not str(k).startswith("_")}
    return config


def _fingerprint(pipe) -> str:
    """A cheap identity of the weights: configs plus a few sampled parameter values."""
    h = hashlib.sha256()
    second = [pipe.text_encoder_2] if getattr(pipe, "text_encoder_2", None) is not None else []
    for m in (pipe.unet, pipe.vae, pipe.text_encoder, *second):
        cfg = m.config.to_dict() if hasattr(m.config, "to_dict") else dict(m.config)
        cfg = weights_config(cfg)
        h.update(json.dumps(cfg, sort_keys=True, default=str).encode())
        params = list(m.parameters())
        for p in params[:: max(1, len(params) // 8)]:
            h.update(p.detach().float().flatten()[:64].cpu().numpy().tobytes())
    return h.hexdigest()[:16]
