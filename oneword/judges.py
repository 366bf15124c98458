"""Judges: what scores generated images. Each gives L2-normalised ``image_features(images)`` and
``text_features(texts)``; the world judge also has ``oracle(images)``, the attributes it reads off each image.

* any ``transformers.CLIPModel`` with its processor: a local folder, or a hub id found in the local cache
  (the paper used openai/clip-vit-base-patch32); the network is never used;
* the embedded world's own CLIP plus its attribute oracle ("world").
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from .errors import OnewordError
from .metrics import normalise

DEFAULT_CLIP = "openai/clip-vit-base-patch32"


class ClipJudge:
    """A transformers CLIPModel + processor: L2-normalised image and text features."""

    oracle = None

    def __init__(self, model, processor, name: str, device="cpu", batch: int = 32):
        self.model, self.processor, self.name, self.device, self.batch = model, processor, name, device, batch

    @torch.no_grad()
    def image_features(self, images) -> torch.Tensor:
        out = []
        for i in range(0, len(images), self.batch):
            px = self.processor(images=[im.convert("RGB") for im in images[i : i + self.batch]], return_tensors="pt")
            f = self.model.get_image_features(pixel_values=px["pixel_values"].to(self.device))
            out.append(normalise(getattr(f, "pooler_output", f)).cpu())
        return torch.cat(out)

    @torch.no_grad()
    def text_features(self, texts: list[str]) -> torch.Tensor:
        tok = self.processor.tokenizer
        ids = tok(
            list(texts), padding="max_length", truncation=True, max_length=tok.model_max_length, return_tensors="pt"
        )
        f = self.model.get_text_features(
            input_ids=ids["input_ids"].to(self.device), attention_mask=ids["attention_mask"].to(self.device)
        )
        return normalise(getattr(f, "pooler_output", f)).cpu()


class WorldJudgeAdapter:
    """The world judge (world CLIP + attribute oracle) behind the same interface."""

    def __init__(self, judge, name: str):
        self.judge, self.name = judge, name

    def image_features(self, images):
        return self.judge.image_features(images)

    def text_features(self, texts):
        return self.judge.text_features(list(texts))

    def oracle(self, images) -> dict[str, list[str]]:
        return self.judge.oracle(images)


def load_judge(spec: str | None = None, model=None, device=None):
    """spec: None (the world judge for the world model, else openai/clip-vit-base-patch32), "world",
    a world judge folder, a CLIPModel folder, or a hub id in the local cache."""
    if spec is None:
        spec = "world" if model is not None and is_world_model(model) else DEFAULT_CLIP
    spec = str(spec)
    if spec == "world":
        return _world_judge(None)
    path = Path(spec).expanduser()
    if path.is_dir():
        if (path / "oracle.json").is_file() and (path / "clip").is_dir():
            return _world_judge(path)
        return _clip_judge(str(path), str(path), device, local=True)
    from .models import HUB_ID

    if HUB_ID.match(spec) and not spec.startswith((".", "/", "~")):
        return _clip_judge(spec, spec, device, local=False)
    raise OnewordError(
        f"judge {spec!r} is not a folder, a hub id or 'world' (give a CLIPModel folder with --judge DIR)"
    )


def _world_judge(path):
    from .world.judge import load_judge as load_world_judge

    judge = load_world_judge(path)
    return WorldJudgeAdapter(judge, "world" if path is None else str(path))


def _clip_judge(source: str, name: str, device, local: bool):
    from transformers import CLIPModel, CLIPProcessor

    device = torch.device(device) if device is not None else torch.device("cpu")
    try:
        model = CLIPModel.from_pretrained(source, local_files_only=True, dtype=torch.float32).to(device).eval()
        processor = CLIPProcessor.from_pretrained(source, local_files_only=True)
    except Exception as e:
        if local:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise OnewordError(
                f"cannot load a CLIP judge from {source}: {first} (give a folder holding a "
                f"transformers CLIPModel and its processor)"
            ) from None
        raise OnewordError(
            f"judge {source!r} is not in the local Hugging Face cache and the network is not used; "
            f"download it where you have access (huggingface-cli download {source} --local-dir DIR) "
            f"and pass --judge DIR"
        ) from None
    model.requires_grad_(False)
    return ClipJudge(model, processor, name, device)


def is_world_model(model) -> bool:
    if model.identity.get("kind") == "world":
        return True
    try:
        from .world import model_path

        return Path(model.identity.get("source", "")).resolve() == model_path().resolve()
    except Exception:
        return False


def judge_identity(judge) -> str:
    """A judge's weights, cheaply: its name, config and a few sampled text-tower values."""
    inner = getattr(judge, "judge", None)
    model = getattr(inner, "clip", None) if inner is not None else getattr(judge, "model", None)
    h = hashlib.sha256(str(getattr(judge, "name", "")).encode())
    if model is not None:
        from .models import weights_config

        config = weights_config(model.config.to_dict())  # not where the judge lies
        h.update(json.dumps(config, sort_keys=True, default=str).encode())
        params = [p for n, p in model.named_parameters() if n.startswith("text")]
        for p in params[:: max(1, len(params) // 8)]:
            h.update(p.detach().float().flatten()[:64].cpu().numpy().tobytes())
    return h.hexdigest()[:16]
