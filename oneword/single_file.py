"""Single-file checkpoints (one .safetensors or .ckpt, as Civitai and the web UIs share them), loaded offline.

The model family is read from the tensor names and shapes, as AUTOMATIC1111 and ComfyUI do: SD1.x (CLIP ViT-L
text encoder, `cond_stage_model.transformer.*`, cross-attention width 768), SD2.x (OpenCLIP ViT-H,
`cond_stage_model.model.*`, width 1024) and SDXL base (`conditioner.embedders.0/1`, `label_emb`, width 2048).
The pipeline is built from the configs oneword ships (assets/model_configs/: model configs and tokenizer
settings; the CLIP vocabulary is written from the package's BPE merges), so nothing is downloaded. Sizes the
weights tell (channels, blocks, layers, text widths) are read from the file, so a distilled or reduced member
of a family loads too; what shapes cannot tell (attention heads, activations, image size, noise schedule) comes
from the family.

SD2.x comes in two kinds that share every shape: 512 px epsilon ("base") and 768 px v-prediction ("768-v").
The prediction type is taken, in order, from: the caller (`prediction_type`), the file's ModelSpec metadata
(`modelspec.prediction_type` / `modelspec.architecture`), a `v_pred` marker tensor, a `<name>.yaml` beside the
file (AUTOMATIC1111's convention, `parameterization: "v"`), and for SD2.x without any of these, ComfyUI's rule:
the trained 768-v weights have a spread-out `output_blocks.11.1.transformer_blocks.0.norm1.bias` (std > 0.09).
That last one is a guess and says so in a warning.

`original_layout` writes diffusers weights in the single-file layout (for tests and benchmarks).
"""

from __future__ import annotations

import inspect
import json
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import OnewordError

CONFIG_ROOT = Path(__file__).parent / "assets" / "model_configs"
UNET = "model.diffusion_model."
VAE_PREFIXES = ("first_stage_model.", "vae.")
CLIP_L_PREFIX = {"sd1": "cond_stage_model.transformer.", "sdxl": "conditioner.embedders.0.transformer."}
OPEN_CLIP_PREFIX = {"sd2": "cond_stage_model.model.", "sdxl": "conditioner.embedders.1.model."}
FAMILY_NAMES = {"sd1": "SD1.x", "sd2": "SD2.x", "sdxl": "SDXL"}
CLIP_VOCAB = 49408
HEAD_WIDTH = 64  # SD2.x and SDXL attention heads, and every CLIP text tower's heads, are 64 wide
V_PREDICTION_BIAS = "output_blocks.11.1.transformer_blocks.0.norm1.bias"
V_PREDICTION_STD = 0.09  # ComfyUI's threshold (comfy/supported_models.py, SD20.model_type)
MAX_HEADER = 100 * 1024 * 1024


# ---------------------------------------------------------------------------------------------------- reading


@dataclass
class Checkpoint:
    """Names, shapes and metadata of a checkpoint's tensors, and a way to read one tensor."""

    path: Path
    shapes: dict[str, tuple]
    metadata: dict = field(default_factory=dict)
    _tensors: dict | None = None  # .ckpt: the loaded (memory-mapped) state dict

    def tensor(self, key: str) -> torch.Tensor:
        if self._tensors is not None:
            return self._tensors[key]
        from safetensors import safe_open

        with safe_open(str(self.path), framework="pt") as f:
            return f.get_tensor(key)

    def has(self, prefix: str) -> bool:
        return any(k.startswith(prefix) for k in self.shapes)


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Names and shapes without loading the weights (.safetensors: the header; .ckpt: torch.load with
    weights_only=True, memory-mapped). Refuses a file that is not a checkpoint or is truncated."""
    path = Path(path)
    if path.suffix.lower() == ".safetensors":
        shapes, meta = _safetensors_header(path)
        return Checkpoint(path, shapes, meta)
    if path.suffix.lower() == ".ckpt":
        sd = _load_ckpt(path)
        return Checkpoint(path, {k: tuple(v.shape) for k, v in sd.items()}, {}, sd)
    raise OnewordError(f"{path}: a model file must be .safetensors or .ckpt")


def _safetensors_header(path: Path) -> tuple[dict, dict]:
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if head.startswith(b"version"):
            raise OnewordError(f"{path} is a Git LFS pointer, not the weights (run `git lfs pull` where you cloned it)")
        if len(head) < 8:
            raise OnewordError(f"{path} is not a checkpoint: {size} bytes, too short for a safetensors header")
        n = int.from_bytes(head, "little")
        if n > MAX_HEADER:
            raise OnewordError(
                f"{path} is not a safetensors file (no valid header; a renamed .ckpt or another format?)"
            )
        if 8 + n > size:
            raise OnewordError(
                f"{path} is truncated: its header needs {8 + n:,} bytes, the file has {size:,} "
                f"(an interrupted download?)"
            )
        raw = f.read(n)
    try:
        header = json.loads(raw)
        assert isinstance(header, dict)
    except (ValueError, AssertionError, UnicodeDecodeError):
        raise OnewordError(f"{path} is not a safetensors file (its header is not JSON)") from None
    meta = header.pop("__metadata__", None) or {}
    shapes, end = {}, 0
    for key, info in header.items():
        try:
            shapes[key] = tuple(int(s) for s in info["shape"])
            end = max(end, int(info["data_offsets"][1]))
        except (TypeError, KeyError, IndexError, ValueError):
            raise OnewordError(f"{path} is not a valid safetensors file (bad entry for {key!r})") from None
    if 8 + n + end > size:
        raise OnewordError(
            f"{path} is truncated: its header promises {8 + n + end:,} bytes, the file has {size:,} "
            f"(an interrupted download?)"
        )
    return shapes, meta if isinstance(meta, dict) else {}


def _load_ckpt(path: Path) -> dict:
    import pickle
    import zipfile

    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) serialization
    except pickle.UnpicklingError as e:
        if "weights_only" in str(e) or "Weights only" in str(e):
            raise OnewordError(
                f"{path} holds Python objects besides tensors; oneword does not unpickle them "
                f"(weights_only). Convert it to .safetensors"
            ) from None
        raise OnewordError(f"{path} is not a PyTorch checkpoint ({_first_line(e)})") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as e:
        raise OnewordError(
            f"{path} cannot be read as a PyTorch checkpoint: truncated or another format ({_first_line(e)})"
        ) from None
    while isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise OnewordError(f"{path} is not a checkpoint (it holds a {type(obj).__name__}, not named tensors)")
    return {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}


# ---------------------------------------------------------------------------------------------------- families


def detect_family(ck: Checkpoint) -> str:
    """ "sd1", "sd2" or "sdxl"; anything else is refused in one line that says what the file is."""
    S, name = ck.shapes, ck.path.name
    if not S:
        raise OnewordError(f"{name} is not a checkpoint: it holds no tensors")
    if ck.has("double_blocks.") or ck.has(UNET + "double_blocks."):
        raise OnewordError(f"{name} is a Flux checkpoint; Flux is not supported yet (SD1.x, SD2.x and SDXL are)")
    if ck.has("joint_blocks.") or ck.has(UNET + "joint_blocks."):
        raise OnewordError(
            f"{name} is a Stable Diffusion 3 checkpoint; SD3 is not supported yet (SD1.x, SD2.x and SDXL are)"
        )
    if UNET + "input_blocks.0.0.weight" not in S:
        raise OnewordError(f"{name} is not a Stable Diffusion checkpoint: {_what_else(ck)}")
    if "edm_mean" in S:
        raise OnewordError(f"{name} is a Playground v2.5 checkpoint (EDM noise schedule); not supported yet")
    in_ch = S[UNET + "input_blocks.0.0.weight"][1]
    width = _cross_attention_width(S)
    if ck.has("conditioner.embedders.0.model.") and not ck.has("conditioner.embedders.1."):
        raise OnewordError(f"{name} is an SDXL refiner; refiners are not supported (use an SDXL base model)")
    if ck.has("conditioner.embedders.") or UNET + "label_emb.0.0.weight" in S:
        if ck.has("embedder.model.") or not (ck.has(CLIP_L_PREFIX["sdxl"]) and ck.has(OPEN_CLIP_PREFIX["sdxl"])):
            raise OnewordError(
                f"{name}: unknown model family (SDXL-like UNet, but not SDXL base's two text "
                f"encoders conditioner.embedders.0.transformer / conditioner.embedders.1.model)"
            )
        family = "sdxl"
        want = (
            S.get(CLIP_L_PREFIX["sdxl"] + "text_model.embeddings.token_embedding.weight", (0, 0))[1]
            + S.get(OPEN_CLIP_PREFIX["sdxl"] + "token_embedding.weight", (0, 0))[1]
        )
    elif ck.has(OPEN_CLIP_PREFIX["sd2"]):
        family, want = "sd2", S.get(OPEN_CLIP_PREFIX["sd2"] + "token_embedding.weight", (0, 0))[1]
        if ck.has("embedder.model.") or UNET + "label_emb.0.0.weight" in S:
            raise OnewordError(f"{name} is a Stable unCLIP (SD2.x image variation) checkpoint; not supported")
    elif ck.has(CLIP_L_PREFIX["sd1"]):
        family, want = "sd1", S.get(CLIP_L_PREFIX["sd1"] + "text_model.embeddings.token_embedding.weight", (0, 0))[1]
    elif ck.has("cond_stage_model.roberta."):
        raise OnewordError(f"{name} is an AltDiffusion checkpoint (XLM-RoBERTa text encoder); not supported")
    else:
        raise OnewordError(
            f"{name} has a Stable Diffusion UNet but no text encoder weights "
            f"(a UNet-only file? give a full checkpoint or a diffusers folder)"
        )
    if width != want:
        raise OnewordError(
            f"{name}: unknown model family (UNet cross-attention width {width}, text encoder width "
            f"{want}; {FAMILY_NAMES[family]} needs them equal)"
        )
    kinds = {9: "an inpainting", 8: "an InstructPix2Pix", 5: "a depth-to-image", 7: "an upscaler"}
    if in_ch != 4:
        raise OnewordError(
            f"{name} is {kinds.get(in_ch, 'a')} {FAMILY_NAMES[family]} checkpoint ({in_ch} UNet "
            f"input channels); only text-to-image checkpoints (4 channels) are supported"
        )
    if not any(ck.has(p + "encoder.") for p in VAE_PREFIXES):
        raise OnewordError(
            f"{name} has no VAE weights (first_stage_model.*); oneword needs a checkpoint with its VAE baked in"
        )
    return family


def _cross_attention_width(S: dict) -> int:
    for k, shape in S.items():
        if k.startswith(UNET) and k.endswith("attn2.to_k.weight"):
            return shape[1]
    return 0


def _what_else(ck: Checkpoint) -> str:
    keys = list(ck.shapes)
    if set(keys) <= {"clip_l", "clip_g", "emb_params", "string_to_param", "name", "step"} or any(
        k.startswith("string_to_param") for k in keys
    ):
        return "it is an embedding (a learned word); load it with the model it was made for"
    if any("lora" in k.lower() for k in keys[:50]) or any(k.endswith(".alpha") for k in keys[:200]):
        return "it is a LoRA"
    if any(k.startswith("encoder.down.") for k in keys) and any(k.startswith("decoder.up.") for k in keys):
        return "it is a VAE alone"
    if any(k.startswith(("down_blocks.", "encoder.down_blocks.", "text_model.", "conv_in.")) for k in keys):
        return "it holds one diffusers component; pass the diffusers model folder instead"
    return f"no UNet weights ({UNET}input_blocks.*) among its {len(keys)} tensors"


def prediction_type_of(ck: Checkpoint, family: str, asked: str | None = None) -> tuple[str, str]:
    """(prediction type, how it was decided). Warns when it is only a guess from the weights (SD2.x)."""
    if asked:
        return _normalise_prediction(asked), "asked"
    meta = ck.metadata
    spec = str(meta.get("modelspec.prediction_type", "")).strip().lower()
    if spec in ("v", "v_prediction", "epsilon"):
        return _normalise_prediction(spec), "the file's modelspec.prediction_type"
    arch = str(meta.get("modelspec.architecture", "")).lower().split("/")[0]  # e.g. stable-diffusion-v2-768-v
    if arch.startswith("stable-diffusion"):
        return ("v_prediction" if arch.endswith("-v") else "epsilon"), "the file's modelspec.architecture"
    if "v_pred" in ck.shapes:
        return "v_prediction", "the file's v_pred marker"
    beside = ck.path.with_suffix(".yaml")
    if beside.is_file():
        text = beside.read_text(errors="replace")
        found = re.search(r"^\s*parameterization:\s*[\"']?(\w+)", text, re.M)
        return ("v_prediction" if found and found.group(1) == "v" else "epsilon"), f"{beside.name} beside it"
    if family != "sd2":
        return "epsilon", "the family's default"
    key = UNET + V_PREDICTION_BIAS
    if key not in ck.shapes:
        return "epsilon", "the family's default"
    std = ck.tensor(key).float().std(unbiased=False).item()
    pred = "v_prediction" if std > V_PREDICTION_STD else "epsilon"
    kind = "768-v (v-prediction, 768 px)" if pred == "v_prediction" else "512 base (epsilon, 512 px)"
    warnings.warn(
        f"{ck.path.name}: an SD2.x checkpoint that does not say its prediction type; taken as {kind} "
        f"from its weights, as ComfyUI does; pass --prediction-type to override",
        stacklevel=2,
    )
    return pred, "guessed from the weights"


def _normalise_prediction(p: str) -> str:
    p = p.strip().lower().replace("-", "_")
    if p in ("v", "v_prediction", "vpred", "v_pred"):
        return "v_prediction"
    if p in ("epsilon", "eps", "noise"):
        return "epsilon"
    raise OnewordError(f"unknown prediction type {p!r}: use epsilon or v_prediction")


def zero_terminal_snr(ck: Checkpoint) -> bool:
    """Some v-prediction fine-tunes mark a zero-terminal-SNR noise schedule with a `ztsnr` tensor."""
    return "ztsnr" in ck.shapes


# ---------------------------------------------------------------------------------------------------- configs


def shipped_config(family: str, prediction_type: str = "epsilon") -> Path:
    """The shipped config folder of a family (SD2.x: the 768-v one for v-prediction, else the 512 base)."""
    name = {"sd1": "sd15", "sdxl": "sdxl_base"}.get(family)
    if family == "sd2":
        name = "sd2_768_v" if prediction_type == "v_prediction" else "sd2_512_base"
    if name is None:
        raise OnewordError(f"unknown model family {family!r}")
    return CONFIG_ROOT / name


def architecture(ck: Checkpoint, family: str) -> dict[str, dict]:
    """Config values the weights' shapes determine, per component (the rest comes from the shipped config)."""
    S = ck.shapes
    name = ck.path.name
    unet = _unet_architecture(S, family, name)
    out = {"unet": unet, "vae": _vae_architecture(ck, name)}
    if family == "sd1":
        out["text_encoder"] = _clip_l_architecture(S, CLIP_L_PREFIX["sd1"], name)
    elif family == "sd2":
        out["text_encoder"] = _open_clip_architecture(S, OPEN_CLIP_PREFIX["sd2"], name, drop_last=True)
    else:
        out["text_encoder"] = _clip_l_architecture(S, CLIP_L_PREFIX["sdxl"], name)
        g = _open_clip_architecture(S, OPEN_CLIP_PREFIX["sdxl"], name, drop_last=False)
        out["text_encoder_2"] = g
        extra = S[UNET + "label_emb.0.0.weight"][1] - g["projection_dim"]
        if extra <= 0 or extra % 6:
            raise OnewordError(
                f"{name}: unknown SDXL variant (label_emb input {extra + g['projection_dim']} does "
                f"not hold the pooled text vector plus six size/crop embeddings)"
            )
        unet["projection_class_embeddings_input_dim"] = S[UNET + "label_emb.0.0.weight"][1]
        unet["addition_time_embed_dim"] = extra // 6
    return out


def _count(S: dict, fmt: str) -> int:
    n = 0
    while fmt.format(n) in S:
        n += 1
    return n


def _unet_architecture(S: dict, family: str, name: str) -> dict:
    def bad(why):
        return OnewordError(f"{name}: unsupported {FAMILY_NAMES[family]} UNet layout ({why})")

    def depth(block: str) -> int:
        return _count(S, UNET + block + ".1.transformer_blocks.{}.attn1.to_q.weight")

    levels, current, i = [], [], 1
    while True:
        if UNET + f"input_blocks.{i}.0.op.weight" in S:
            levels.append(current)
            current = []
        elif UNET + f"input_blocks.{i}.0.out_layers.3.weight" in S:
            current.append((S[UNET + f"input_blocks.{i}.0.out_layers.3.weight"][0], depth(f"input_blocks.{i}")))
        else:
            break
        i += 1
    levels.append(current)
    per_level = {len(lv) for lv in levels}
    if 0 in per_level or len(per_level) != 1:
        raise bad(f"resnets per level {[len(lv) for lv in levels]}")
    layers = per_level.pop()
    channels = [lv[0][0] for lv in levels]
    depths = []
    for lv in levels:
        ds = {d for _, d in lv}
        if len(ds) != 1 or any(c != lv[0][0] for c, _ in lv):
            raise bad("blocks of one level differ")
        depths.append(ds.pop())
    model_channels, in_channels = S[UNET + "input_blocks.0.0.weight"][:2]
    if any(c % 32 for c in channels) or S.get(UNET + "time_embed.0.weight", (0,))[0] != 4 * model_channels:
        raise bad("channels not in groups of 32 or time embedding not 4x the first width")
    mid = depth("middle_block")
    attention = [d > 0 for d in depths]
    if mid == 0 or mid != max(depths[-1], 1) or not any(attention):
        raise bad(f"middle block attention depth {mid}")
    up_depths = [depth(f"output_blocks.{b * (layers + 1)}") for b in range(len(levels))]
    if up_depths != depths[::-1] or _count(S, UNET + "output_blocks.{}.0.out_layers.3.weight") != len(levels) * (
        layers + 1
    ):
        raise bad("decoder blocks do not mirror the encoder blocks")
    proj_in = next(S[k] for k in S if k.startswith(UNET) and k.endswith(".proj_in.weight"))
    cfg = {
        "in_channels": in_channels,
        "out_channels": S[UNET + "out.2.weight"][0],
        "layers_per_block": layers,
        "block_out_channels": channels,
        "cross_attention_dim": _cross_attention_width(S),
        "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attention],
        "up_block_types": ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in attention[::-1]],
        "use_linear_projection": len(proj_in) == 2,
    }
    if any(d > 1 for d in depths):
        cfg["transformer_layers_per_block"] = [max(d, 1) for d in depths]
    if family != "sd1":  # SD1.x has 8 heads at every width; SD2.x/SDXL heads are 64 wide
        cfg["attention_head_dim"] = [c // HEAD_WIDTH for c in channels]
    return cfg


def _vae_architecture(ck: Checkpoint, name: str) -> dict:
    S = ck.shapes
    p = next(p for p in VAE_PREFIXES if ck.has(p + "encoder."))
    levels = _count(S, p + "encoder.down.{}.block.0.conv1.weight")
    layers = _count(S, p + "encoder.down.0.block.{}.conv1.weight")
    try:
        return {
            "block_out_channels": [S[p + f"encoder.down.{i}.block.0.conv1.weight"][0] for i in range(levels)],
            "layers_per_block": layers,
            "down_block_types": ["DownEncoderBlock2D"] * levels,
            "up_block_types": ["UpDecoderBlock2D"] * levels,
            "in_channels": S[p + "encoder.conv_in.weight"][1],
            "out_channels": S[p + "decoder.conv_out.weight"][0],
            "latent_channels": S[p + "decoder.conv_in.weight"][1],
        }
    except KeyError as e:
        raise OnewordError(f"{name}: incomplete VAE weights (no {e.args[0]})") from None


def _text_common(name: str, what: str, emb: tuple, pos: tuple | None, layers: int, inter: tuple | None) -> dict:
    if emb[0] != CLIP_VOCAB:
        raise OnewordError(f"{name}: the {what} text encoder has {emb[0]} tokens, not CLIP's {CLIP_VOCAB:,}")
    if pos is None or inter is None or layers == 0:
        raise OnewordError(f"{name}: incomplete {what} text encoder weights")
    return {
        "hidden_size": emb[1],
        "vocab_size": emb[0],
        "max_position_embeddings": pos[0],
        "num_hidden_layers": layers,
        "intermediate_size": inter[0],
        "num_attention_heads": emb[1] // HEAD_WIDTH,
    }


def _clip_l_architecture(S: dict, prefix: str, name: str) -> dict:
    p = prefix + "text_model."
    return _text_common(
        name,
        "CLIP ViT-L",
        S.get(p + "embeddings.token_embedding.weight", (0, 0)),
        S.get(p + "embeddings.position_embedding.weight"),
        _count(S, p + "encoder.layers.{}.mlp.fc1.weight"),
        S.get(p + "encoder.layers.0.mlp.fc1.weight"),
    )


def _open_clip_architecture(S: dict, p: str, name: str, drop_last: bool) -> dict:
    layers = _count(S, p + "transformer.resblocks.{}.mlp.c_fc.weight")
    cfg = _text_common(
        name,
        "OpenCLIP",
        S.get(p + "token_embedding.weight", (0, 0)),
        S.get(p + "positional_embedding"),
        layers - int(drop_last),
        S.get(p + "transformer.resblocks.0.mlp.c_fc.weight"),
    )
    if not drop_last:
        proj = S.get(p + "text_projection")
        if proj is None:
            raise OnewordError(f"{name}: the OpenCLIP text encoder has no text_projection")
        cfg["projection_dim"] = proj[1]
    return cfg


def write_config_folder(
    family: str, dest: str | Path, prediction_type: str = "epsilon", overrides: dict[str, dict] | None = None
) -> Path:
    """A complete diffusers config folder (no weights) for `family` at `dest`: the shipped configs, the
    CLIP vocabulary written from the package, and `overrides` ({component: {key: value}}) applied."""
    from .clip_tokenizer import write_clip_tokenizer

    src, dest = shipped_config(family, prediction_type), Path(dest)
    for tok in sorted(p.name for p in src.iterdir() if p.name.startswith("tokenizer")):
        write_clip_tokenizer(dest / tok)  # vocab.json + merges.txt; the shipped settings are copied over below
    shutil.copytree(src, dest, dirs_exist_ok=True)
    for component, values in (overrides or {}).items():
        f = dest / component / "config.json"
        cfg = json.loads(f.read_text())
        cfg.update(values)
        f.write_text(json.dumps(cfg, indent=2))
    sched = dest / "scheduler" / "scheduler_config.json"
    cfg = json.loads(sched.read_text())
    cfg["prediction_type"] = prediction_type
    sched.write_text(json.dumps(cfg, indent=2))
    return dest


# ---------------------------------------------------------------------------------------------------- loading


def load_single_file(path: str | Path, kw: dict, config: str | None = None, prediction_type: str | None = None):
    """The diffusers pipeline (StableDiffusionPipeline or StableDiffusionXLPipeline) of a single-file checkpoint,
    offline. kw: from_single_file arguments (torch_dtype, safety_checker, ...). config: a diffusers folder or a
    cached hub id that overrides the shipped configs. prediction_type: overrides what the file says."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    path = Path(path)
    ck = read_checkpoint(path)
    family = detect_family(ck)
    cls = StableDiffusionXLPipeline if family == "sdxl" else StableDiffusionPipeline
    kw = dict(kw)
    if family == "sdxl":
        kw.pop("safety_checker", None)
        kw.pop("requires_safety_checker", None)
    extra = {} if path.suffix.lower() == ".safetensors" else {"use_safetensors": False}
    with tempfile.TemporaryDirectory(prefix="oneword-config-") as tmp:
        if config:
            folder = _local_config(config)
            pred = _normalise_prediction(prediction_type) if prediction_type else None
            zsnr = False
        else:
            pred, _ = prediction_type_of(ck, family, prediction_type)
            folder = write_config_folder(family, Path(tmp) / "config", pred, architecture(ck, family))
            zsnr = zero_terminal_snr(ck)
        _refuse_missing(ck, family, folder)
        ck._tensors = None  # diffusers reads the file itself; drop the .ckpt mapping first
        try:
            pipe = cls.from_single_file(str(path), config=str(folder), local_files_only=True, **extra, **kw)
        except Exception as e:
            raise OnewordError(
                f"cannot load single-file checkpoint {path} as {FAMILY_NAMES[family]}: {_first_line(e)}"
            ) from None
    _check_complete(pipe, path, family)
    if (pred and pipe.scheduler.config.prediction_type != pred) or zsnr:
        pipe.scheduler = _scheduler_with(pipe.scheduler, pred or pipe.scheduler.config.prediction_type, zsnr)
    return pipe


def _local_config(config: str) -> Path:
    """A --model-config folder, or a hub id resolved in the local cache only (never the network)."""
    p = Path(config).expanduser()
    if p.is_dir():
        if not (p / "model_index.json").is_file():
            raise OnewordError(f"--model-config {config}: not a diffusers folder (no model_index.json)")
        return p
    try:
        from huggingface_hub import snapshot_download

        return Path(
            snapshot_download(str(config), local_files_only=True, allow_patterns=["*.json", "*.txt", "tokenizer*/*"])
        )
    except Exception:
        raise OnewordError(
            f"--model-config {config!r}: not a folder, and not in the local Hugging Face cache "
            f"(the network is not used)"
        ) from None


def component_shapes(configs: dict[str, dict]) -> dict[str, dict[str, tuple]]:
    """{component: {diffusers tensor name: shape}} of the models `configs` ({component: config}) describe,
    built on the meta device (no memory)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    def text(cfg):
        projection = "CLIPTextModelWithProjection" in cfg.get("architectures", [])
        return (CLIPTextModelWithProjection if projection else CLIPTextModel)(CLIPTextConfig(**cfg))

    with torch.device("meta"):
        modules = {
            "unet": UNet2DConditionModel.from_config(configs["unet"]),
            "vae": AutoencoderKL.from_config(configs["vae"]),
        }
        modules.update({c: text(cfg) for c, cfg in configs.items() if c.startswith("text_encoder")})
    return {c: {k: tuple(v.shape) for k, v in m.state_dict().items()} for c, m in modules.items()}


def _refuse_missing(ck: Checkpoint, family: str, folder: Path) -> None:
    """Refuse a file that lacks tensors the architecture needs (diffusers would fail later on meta weights)."""
    configs = {
        p.name: json.loads((p / "config.json").read_text())
        for p in sorted(Path(folder).iterdir())
        if p.name in ("unet", "vae", "text_encoder", "text_encoder_2") and (p / "config.json").is_file()
    }
    shapes = component_shapes(configs)
    meta = {c: {k: torch.empty(s, device="meta") for k, s in d.items()} for c, d in shapes.items()}
    try:
        needed = original_layout(family, configs["unet"], meta)
    except (KeyError, ValueError) as e:
        raise OnewordError(
            f"{ck.path.name}: the config does not describe a {FAMILY_NAMES[family]} model ({e})"
        ) from None

    def part(key):
        return "UNet" if key.startswith(UNET) else "VAE" if key.startswith("first_stage_model.") else "text encoder"

    def present(key):  # the VAE may be stored as vae.* instead of first_stage_model.*
        return key if key in ck.shapes else "vae." + key[len("first_stage_model.") :]

    def squeezed(shape):  # 1x1 convolutions may be stored as linear weights
        return tuple(shape[:2]) + tuple(d for d in shape[2:] if d != 1)

    needed = {k: tuple(v.shape) for k, v in needed.items() if not k.endswith("position_ids")}
    for what in ("UNet", "VAE", "text encoder"):
        missing = [k for k in needed if part(k) == what and present(k) not in ck.shapes]
        if missing:
            raise OnewordError(
                f"{ck.path.name}: the checkpoint lacks {len(missing)} {what} tensors a "
                f"{FAMILY_NAMES[family]} model of its sizes has (e.g. {missing[0]})"
            )
        wrong = [k for k in needed if part(k) == what and squeezed(ck.shapes[present(k)]) != squeezed(needed[k])]
        if wrong:
            k = wrong[0]
            raise OnewordError(
                f"{ck.path.name}: {len(wrong)} {what} tensors have shapes {FAMILY_NAMES[family]} "
                f"does not (e.g. {k}: {ck.shapes[present(k)]}, expected {needed[k]})"
            )


def _check_complete(pipe, path: Path, family: str) -> None:
    """Weights the file lacked stay on the meta device in diffusers; refuse instead of failing later."""
    for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
        module = getattr(pipe, name, None)
        if module is None:
            continue
        missing = [n for n, p in module.named_parameters() if p.is_meta]
        if missing:
            raise OnewordError(
                f"{path.name}: the checkpoint lacks {len(missing)} {name} weights for "
                f"{FAMILY_NAMES[family]} (e.g. {missing[0]})"
            )
        emb = getattr(getattr(module, "text_model", module), "embeddings", None)
        if emb is not None and hasattr(emb, "position_ids"):  # some files store these as floats
            emb.position_ids = torch.arange(emb.position_ids.shape[-1]).expand(1, -1)


def _scheduler_with(scheduler, prediction_type: str, zero_snr: bool):
    from diffusers import DDIMScheduler

    changes = {"prediction_type": prediction_type}  # as keywords: from_config resets keys it saw defaulted
    cls = type(scheduler)
    if zero_snr:
        changes["rescale_betas_zero_snr"] = True
        if "rescale_betas_zero_snr" not in inspect.signature(cls.__init__).parameters:  # e.g. PNDM
            cls = DDIMScheduler
    return cls.from_config(scheduler.config, **changes)


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__


# ---------------------------------------------------------------------------------------------------- writing

_RESNET = (
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("time_emb_proj", "emb_layers.1"),
    ("conv_shortcut", "skip_connection"),
)
_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def original_layout(family: str, unet_config: dict, state_dicts: dict[str, dict]) -> dict[str, torch.Tensor]:
    """Diffusers weights ({"unet", "vae", "text_encoder"[, "text_encoder_2"]: state dict}) renamed and reshaped
    into the single-file layout of `family` ("sd1", "sd2", "sdxl"), as the original training code saves it.
    Every tensor is placed exactly once; an unknown name raises. SD2.x files also hold the OpenCLIP tower's
    last layer and text_projection, which SD2 does not use: this function does not invent them."""
    out: dict[str, torch.Tensor] = {}

    def put(key, value):
        if key in out:
            raise ValueError(f"two tensors map to {key}")
        out[key] = value

    layers = unet_config["layers_per_block"]
    up_attention = ["CrossAttn" in t for t in unet_config["up_block_types"]]
    for k, v in state_dicts["unet"].items():
        put(UNET + _unet_key(k, layers, up_attention), v)
    levels = _vae_levels(state_dicts["vae"])
    for k, v in state_dicts["vae"].items():
        key, v = _vae_key(k, v, levels)
        put("first_stage_model." + key, v)
    if family in ("sd1", "sdxl"):
        clip = {k.removeprefix("text_model."): v for k, v in state_dicts["text_encoder"].items()}
        if "embeddings.position_ids" not in clip:  # a buffer transformers no longer saves; released files hold it
            n = clip["embeddings.position_embedding.weight"].shape[0]
            clip["embeddings.position_ids"] = torch.arange(
                n, device=clip["embeddings.position_embedding.weight"].device
            )[None]
        for k, v in clip.items():
            put(CLIP_L_PREFIX[family] + "text_model." + k, v)
    open_clip = state_dicts.get("text_encoder_2" if family == "sdxl" else "text_encoder") if family != "sd1" else None
    if open_clip is not None:
        for key, v in _open_clip_items(open_clip):
            put(OPEN_CLIP_PREFIX[family] + key, v)
    return out


def _resnet(rest: str) -> str:
    for new, old in _RESNET:
        if rest.startswith(new + "."):
            return old + rest[len(new) :]
    raise ValueError(f"unknown resnet tensor {rest}")


def _unet_key(k: str, layers: int, up_attention: list[bool]) -> str:
    fixed = {
        "time_embedding.linear_1": "time_embed.0",
        "time_embedding.linear_2": "time_embed.2",
        "add_embedding.linear_1": "label_emb.0.0",
        "add_embedding.linear_2": "label_emb.0.2",
        "conv_in": "input_blocks.0.0",
        "conv_norm_out": "out.0",
        "conv_out": "out.2",
    }
    head, _, leaf = k.rpartition(".")
    if head in fixed:
        return f"{fixed[head]}.{leaf}"
    m = re.match(r"(down|up)_blocks\.(\d+)\.(resnets|attentions|downsamplers|upsamplers)\.(\d+)\.(.+)", k)
    if m:
        side, b, part, j, rest = m.group(1), int(m.group(2)), m.group(3), int(m.group(4)), m.group(5)
        if side == "down":
            if part == "downsamplers":
                return f"input_blocks.{(b + 1) * (layers + 1)}.0.op.{rest.removeprefix('conv.')}"
            i = 1 + b * (layers + 1) + j
            return f"input_blocks.{i}.0.{_resnet(rest)}" if part == "resnets" else f"input_blocks.{i}.1.{rest}"
        if part == "upsamplers":
            return f"output_blocks.{b * (layers + 1) + layers}.{2 if up_attention[b] else 1}.{rest}"
        i = b * (layers + 1) + j
        return f"output_blocks.{i}.0.{_resnet(rest)}" if part == "resnets" else f"output_blocks.{i}.1.{rest}"
    m = re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)", k)
    if m:
        j, rest = int(m.group(2)), m.group(3)
        return f"middle_block.{2 * j}.{_resnet(rest)}" if m.group(1) == "resnets" else f"middle_block.1.{rest}"
    raise ValueError(f"unknown UNet tensor {k}")


def _vae_levels(sd: dict) -> int:
    return 1 + max(int(m.group(1)) for k in sd if (m := re.match(r"decoder\.up_blocks\.(\d+)\.", k)))


def _vae_key(k: str, v: torch.Tensor, levels: int) -> tuple[str, torch.Tensor]:
    m = re.match(r"(encoder|decoder)\.(.+)", k)
    if not m:
        if k.split(".")[0] in ("quant_conv", "post_quant_conv"):
            return k, v
        raise ValueError(f"unknown VAE tensor {k}")
    side, rest = m.groups()
    if rest.startswith("conv_norm_out."):
        return f"{side}.norm_out.{rest.split('.', 1)[1]}", v
    if rest.split(".")[0] in ("conv_in", "conv_out"):
        return k, v
    m = re.match(r"(down|up)_blocks\.(\d+)\.(resnets\.(\d+)|downsamplers\.0|upsamplers\.0)\.(.+)", rest)
    if m:
        i = int(m.group(2)) if m.group(1) == "down" else levels - 1 - int(m.group(2))
        tail = m.group(5).replace("conv_shortcut", "nin_shortcut")
        if m.group(4) is not None:
            return f"{side}.{m.group(1)}.{i}.block.{m.group(4)}.{tail}", v
        return f"{side}.{m.group(1)}.{i}.{'downsample' if m.group(1) == 'down' else 'upsample'}.{tail}", v
    m = re.match(r"mid_block\.resnets\.(\d+)\.(.+)", rest)
    if m:
        return f"{side}.mid.block_{int(m.group(1)) + 1}.{m.group(2).replace('conv_shortcut', 'nin_shortcut')}", v
    m = re.match(r"mid_block\.attentions\.0\.(.+)\.(weight|bias)", rest)
    if m and m.group(1) in _VAE_ATTN:
        if m.group(2) == "weight" and m.group(1) != "group_norm":
            v = v[:, :, None, None]  # 1x1 convolutions in the original layout
        return f"{side}.mid.attn_1.{_VAE_ATTN[m.group(1)]}.{m.group(2)}", v
    raise ValueError(f"unknown VAE tensor {k}")


def _open_clip_items(sd: dict):
    sd = {k.removeprefix("text_model."): v for k, v in sd.items()}
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    names = {
        "embeddings.token_embedding.weight": "token_embedding.weight",
        "embeddings.position_embedding.weight": "positional_embedding",
        "final_layer_norm.weight": "ln_final.weight",
        "final_layer_norm.bias": "ln_final.bias",
    }
    for k, v in sd.items():
        if k in names:
            yield names[k], v
        elif k == "text_projection.weight":
            yield "text_projection", v.T.contiguous()
        elif k == "embeddings.position_ids":
            continue  # OpenCLIP has no such buffer
        else:
            m = re.match(r"encoder\.layers\.(\d+)\.(.+)", k)
            if not m:
                raise ValueError(f"unknown text encoder tensor {k}")
            n, rest = m.groups()
            base = f"transformer.resblocks.{n}."
            q = re.match(r"self_attn\.([qkv])_proj\.(weight|bias)", rest)
            if q:
                qkv.setdefault(f"{base}attn.in_proj_{q.group(2)}", {})[q.group(1)] = v
                continue
            rest = (
                rest.replace("layer_norm1", "ln_1")
                .replace("layer_norm2", "ln_2")
                .replace("mlp.fc1", "mlp.c_fc")
                .replace("mlp.fc2", "mlp.c_proj")
                .replace("self_attn.", "attn.")
            )
            yield base + rest, v
    for key, parts in qkv.items():
        yield key, torch.cat([parts["q"], parts["k"], parts["v"]])
