"""The photo encoder behind `learn --init encoder`: a few photos -> a word vector in one forward pass (E4T / ELITE
style), so that learning starts where the photos point and early stopping decides how much learning is left.

Network: the mean of the photos' L2-normalised CLIP image features (the judge's) and the property (object/style)
-> MLP (2 hidden layers, GELU) -> an offset added to the property's default init word ("object" / "painting");
the last layer starts at zero, so an untrained encoder gives the paper's start. The word is scaled down to at most
`max_norm` (8): words learned on the world's tuning concepts at the shipped defaults have norms of 1-6; an encoder
left free pushes its words to norms of 150-200, which drown the position embedding and leave learning from them
stuck (AdamW's steps of ~lr per coordinate barely turn such a vector).

Training (oneword.encoder_training): photo sets of one subject each. Per step: a batch of subjects, each encoded
from a random subset of its photos, and the diffusion loss of one of its photos under a random prompt template
holding its encoded word, through the frozen model (the family's text encoders and UNet; VAE posteriors cached). Only the
encoder learns. Any model family: each sample of the batch reads its own word through the text encoders' token
embeddings, as learn-many's slots do (invert.LearnedTokenEmbedding). The world model ships an encoder trained on its
pretraining scenes (oneword/world/encoder.py); `oneword train-encoder SUBJECTS --model M --clip C` trains one for a
real model on folders of photos grouped by subject.

The file (safetensors, fp32) carries the fingerprint of the model it was trained through and the identity and
source of the judge whose features it reads: a word vector only means something in that text encoder, so another
model's encoder is refused, and so is another judge.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .errors import OnewordError

PROPERTIES = ("object", "style")
BASE_WORDS = ("object", "painting")  # the properties' default init words: an untrained encoder's words
MAX_NORM = 8.0  # the longest word the encoder gives (see the module's docstring)
TOKEN = "<encoded>"


class PhotoEncoder(nn.Module):
    def __init__(
        self, feature_dim: int, word_width: int, base: torch.Tensor, hidden: int = 512, max_norm: float | None = None
    ):
        super().__init__()
        self.feature_dim, self.word_width, self.hidden, self.max_norm = feature_dim, word_width, hidden, max_norm
        self.register_buffer("base", base.detach().float().clone())  # [2, width]: "object" / "painting"
        self.net = nn.Sequential(
            nn.Linear(feature_dim + len(PROPERTIES), hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, word_width),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, features: torch.Tensor, prop: torch.Tensor) -> torch.Tensor:
        """features [B, d] (the mean of a set's normalised image features), prop [B] (0 object, 1 style) -> [B, width]."""
        x = torch.cat([features * features.shape[-1] ** 0.5, F.one_hot(prop, len(PROPERTIES)).float()], -1)
        word = self.base[prop] + self.net(x)
        if self.max_norm is None:
            return word
        return word * (self.max_norm / word.norm(dim=-1, keepdim=True).clamp(min=self.max_norm))


# ------------------------------------------------------------------------------------------ the file
def save_encoder(enc: PhotoEncoder, path: Path, model, judge, record: dict, judge_source: str = "world") -> None:
    from safetensors.torch import save

    from .judges import judge_identity
    from .safeio import atomic_write_bytes

    meta = {
        "model_fingerprint": str(model.identity["fingerprint"]),
        "judge": judge_identity(judge),
        "judge_source": str(judge_source),  # what --clip loads it from (a folder or hub id), or "world"
        "config": json.dumps(
            {
                "feature_dim": enc.feature_dim,
                "word_width": enc.word_width,
                "hidden": enc.hidden,
                "max_norm": enc.max_norm,
            }
        ),
        "record": json.dumps(record),
    }
    tensors = {k: v.detach().float().contiguous().cpu() for k, v in enc.state_dict().items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, save(tensors, metadata=meta))


def load_encoder(path, model) -> tuple[PhotoEncoder, dict]:
    """The encoder in `path`, refused unless it was trained through this model (fingerprint)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise OnewordError(f"no photo encoder at {path} (train one with `oneword train-encoder`)")
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k).clone() for k in f.keys()}
        cfg = json.loads(meta["config"])
    except Exception as e:
        raise OnewordError(f"{path} is not a oneword photo encoder ({type(e).__name__})") from None
    mine, theirs = str(model.identity.get("fingerprint")), meta.get("model_fingerprint")
    if theirs != mine:
        raise OnewordError(
            f"the photo encoder {path} belongs to model {theirs}, not this one ({mine}): a word vector "
            f"means something only in the text encoder it was trained through; --init encoder needs "
            f"an encoder trained for this model (`oneword train-encoder`)"
        )
    enc = PhotoEncoder(cfg["feature_dim"], cfg["word_width"], tensors["base"], cfg["hidden"], cfg.get("max_norm"))
    enc.load_state_dict(tensors)
    enc.eval().requires_grad_(False)
    return enc, meta


def default_path(model) -> Path:
    """The encoder `--init encoder` uses without a path: the world model's shipped one (no real model ships one)."""
    from .judges import is_world_model

    if not is_world_model(model):
        raise OnewordError(
            "no photo encoder ships for this model: train one with `oneword train-encoder SUBJECTS --model MODEL "
            "--clip CLIP --out ENCODER.safetensors`, then pass --init encoder:ENCODER.safetensors"
        )
    from .world import encoder_path

    return encoder_path()


@torch.no_grad()
def encoder_vectors(model, images, prop: str, n: int, path=None, judge=None, clip=None) -> tuple[torch.Tensor, dict]:
    """--init encoder: the word vector the encoder gives for the photos, repeated for n vectors; and a record
    for run.json. The judge is `judge`, else --clip, else the one the encoder was trained with."""
    from .judges import judge_identity, load_judge

    path = Path(path) if path else default_path(model)
    enc, meta = load_encoder(path, model)
    judge = judge or load_judge(clip or meta.get("judge_source") or "world", model=model)
    if meta.get("judge") not in (None, judge_identity(judge)):
        raise OnewordError(
            f"the photo encoder {path} reads the image features of another judge than {judge.name}: pass the "
            f"--clip it was trained with ({meta.get('judge_source', 'world')}) or retrain it"
        )
    feats = judge.image_features(list(images)).float().mean(0, keepdim=True)
    v = enc(feats, torch.tensor([PROPERTIES.index(prop)]))
    return v.repeat(n, 1), {"method": "encoder", "file": str(path), "model_fingerprint": meta["model_fingerprint"]}
