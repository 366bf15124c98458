"""The world's judge: a small CLIP (image and text encoders, contrastive) and an attribute oracle.

`load_judge(path=None)` loads the shipped judge (oneword/world/judge/). `image_features` / `text_features`
are L2-normalised, so CLIP image-image and text-image cosines are defined exactly as for real CLIP.
`oracle(images)` classifies each image's attributes; labels include the un-named values.

Oracle attributes: shape, colour, pattern, size (of the only object, or of the LEFT object of a two-object
scene; size is "none" for two objects), shape2/colour2 (the RIGHT object, "none" for one object),
background, style, count ("1"/"2").
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import OnewordError
from .render import BACKGROUNDS, COLOURS, PATTERNS, SHAPES, SIZES, STYLES

ORACLE_LABELS: dict[str, tuple[str, ...]] = {
    "shape": SHAPES,
    "colour": tuple(COLOURS),
    "pattern": PATTERNS,
    "size": SIZES + ("none",),
    "background": BACKGROUNDS,
    "style": STYLES,
    "count": ("1", "2"),
    "shape2": SHAPES + ("none",),
    "colour2": tuple(COLOURS) + ("none",),
}


def images_to_tensor(images, size: int = 32) -> torch.Tensor:
    """PIL images (or a uint8 array [n,h,w,3]) -> float tensor [n,3,size,size] in [-1, 1]."""
    if isinstance(images, np.ndarray):
        arr = images
    else:
        arr = np.stack(
            [
                np.asarray(im.convert("RGB").resize((size, size)) if im.size != (size, size) else im.convert("RGB"))
                for im in images
            ]
        )
    return torch.from_numpy(arr).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


class Oracle(nn.Module):
    """A small CNN with one classification head per attribute."""

    def __init__(self, labels: dict[str, tuple[str, ...]] = ORACLE_LABELS, width: int = 48):
        super().__init__()
        self.labels = {k: tuple(v) for k, v in labels.items()}
        w = width

        def block(i, o):
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(inplace=True))

        self.body = nn.Sequential(
            block(3, w),
            block(w, w),
            nn.MaxPool2d(2),
            block(w, 2 * w),
            block(2 * w, 2 * w),
            nn.MaxPool2d(2),
            block(2 * w, 3 * w),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(3 * w * 16, 256),
            nn.ReLU(inplace=True),
            nn.Dropout(0.1),
        )
        self.heads = nn.ModuleDict({k: nn.Linear(256, len(v)) for k, v in self.labels.items()})

    def forward(self, x):
        h = self.body(x)
        return {k: head(h) for k, head in self.heads.items()}


class WorldJudge:
    def __init__(self, clip, tokenizer, oracle: Oracle, path: Path):
        self.clip, self.tokenizer, self.oracle_net, self.path = clip, tokenizer, oracle, path

    @torch.no_grad()
    def image_features(self, images) -> torch.Tensor:
        x = images_to_tensor(images)
        f = self.clip.get_image_features(pixel_values=x)
        f = getattr(f, "pooler_output", f)
        return torch.nn.functional.normalize(f.float(), dim=-1)

    @torch.no_grad()
    def text_features(self, texts: list[str]) -> torch.Tensor:
        ids = self.tokenizer(
            list(texts),
            padding="max_length",
            truncation=True,
            max_length=self.tokenizer.model_max_length,
            return_tensors="pt",
        ).input_ids
        f = self.clip.get_text_features(input_ids=ids)
        f = getattr(f, "pooler_output", f)
        return torch.nn.functional.normalize(f.float(), dim=-1)

    @torch.no_grad()
    def oracle(self, images, batch: int = 256) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {k: [] for k in self.oracle_net.labels}
        x = images_to_tensor(images)
        for i in range(0, len(x), batch):
            logits = self.oracle_net(x[i : i + batch])
            for k, v in logits.items():
                out[k] += [self.oracle_net.labels[k][j] for j in v.argmax(-1).tolist()]
        return out


def save_oracle(oracle: Oracle, dest: Path) -> None:
    from safetensors.torch import save_file

    dest.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.detach().float().contiguous() for k, v in oracle.state_dict().items()}, str(dest / "oracle.safetensors")
    )
    (dest / "oracle.json").write_text(
        json.dumps({"labels": oracle.labels, "width": oracle.body[0][0].out_channels}, indent=1)
    )


def unnamed_visibility(judge: WorldJudge, concept, n: int = 32, seed: int = 1) -> dict[str, float]:
    """How much the judge's CLIP can reward an object concept's un-named value: the mean image cosine between the
    concept's photos and n fresh renders of the object with its own values ("right") and with the caption's
    values in place of the un-named ones ("caption": what the caption baseline draws, e.g. a blue ring for the
    teal ring). A difference near 0 means reconstruction cannot tell a word that draws the value from one that
    does not."""
    from .render import NAMED_SHAPES, random_scene, render_scene

    words = concept.caption_words.split()  # "blue ring" -> the caption's colour and shape
    a = concept.attributes
    said = {
        "colour": words[0] if len(words) > 1 else a["colour"],
        "pattern": "solid",
        "shape": words[-1] if words[-1] in NAMED_SHAPES else a["shape"],
    }  # "object": any un-named shape
    photos = judge.image_features(concept.photos(5))
    out = {}
    for label, attrs in (("right", a), ("caption", {**concept.attributes, **{k: said[k] for k in concept.unnamed}})):
        rng = np.random.default_rng(seed)
        renders = [render_scene(random_scene(rng, count=1, style="photo", **attrs), 32, rng) for _ in range(n)]
        out[label] = float((judge.image_features(renders) @ photos.T).mean())
    out["difference"] = out["right"] - out["caption"]
    return out


def probe_setup(doc: str, add_arguments=None):
    """The command line of a world probe script (benchmarks/*_probe.py, style_pairs.py): --model and --judge
    (default: the shipped ones) plus whatever add_arguments(parser) adds; one torch thread (probes run side by
    side). Returns (args, model, judge)."""
    import argparse

    from ..models import load_model

    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--model", help="world model folder (default: the shipped one)")
    ap.add_argument("--judge", help="world judge folder (default: the shipped one)")
    if add_arguments:
        add_arguments(ap)
    args = ap.parse_args()
    torch.set_num_threads(1)
    return args, load_model(args.model, device="cpu"), load_judge(args.judge)


def load_judge(path: str | Path | None = None) -> WorldJudge:
    """Load the world judge (CLIP + oracle) from `path` (default: the shipped judge)."""
    from safetensors.torch import load_file
    from transformers import CLIPModel, CLIPTokenizer

    from . import judge_path

    path = Path(path) if path is not None else judge_path()
    if not (path / "oracle.json").is_file() or not (path / "clip").is_dir():
        raise OnewordError(f"no world judge at {path} (run `oneword world pretrain`)")
    cfg = json.loads((path / "oracle.json").read_text())
    oracle = Oracle({k: tuple(v) for k, v in cfg["labels"].items()}, cfg["width"])
    oracle.load_state_dict(load_file(str(path / "oracle.safetensors")))
    oracle.eval()
    clip = CLIPModel.from_pretrained(str(path / "clip"), dtype=torch.float32).eval()
    tok = CLIPTokenizer.from_pretrained(str(path / "clip"))
    for m in (clip, oracle):
        m.requires_grad_(False)
    return WorldJudge(clip, tok, oracle, path)
