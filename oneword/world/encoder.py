"""The world model's photo encoder: the world CLIP's image features of a few photos -> a word vector in one
forward pass (E4T / ELITE style), so that `oneword learn --init encoder` starts where the photos point and early
stopping decides how much learning is left.

Network: the mean of the photos' L2-normalised world-CLIP image features (64) and the property (object/style)
-> MLP (2 hidden layers of 512, GELU) -> an offset added to the property's default init word ("object" /
"painting"); the last layer starts at zero, so an untrained encoder gives the paper's start. The word is scaled
down to at most `max_norm` (8): words learned on the world's tuning concepts at the shipped defaults have norms of
1-6; an encoder left free pushes its words to norms of 150-200, which drown the position embedding and leave
learning from them stuck (AdamW's steps of ~lr per coordinate barely turn such a vector).

Training (`train_encoder`, `oneword world train-encoder`): concepts drawn from the world's pretraining scene
distribution only -- an object concept is a (shape, colour, pattern) of a pretraining scene (never a novel
concept's: those are excluded from pretraining, `concepts.pretraining_exclusions`), shown in photos that vary
position, size and background as the novel concepts' photos do; a style concept is a named style (the un-named
styles are the novel style concepts and are never used). Per step: a batch of concepts, each encoded from a
random 1-5 of its photos, and the diffusion loss of one of its photos under a random prompt template holding the
encoded word, through the frozen world model (text encoder, UNet; VAE posteriors cached). Only the encoder learns.

The file (`encoder/encoder.safetensors`, fp32, ~1.5 MB) carries the fingerprint of the model it was trained
through (and of the judge whose features it reads): a word vector only means something in that text encoder, so
another model's encoder is refused.

For a real model the same recipe applies with that model's own parts: image features from a CLIP vision tower
(e.g. the one its judge or IP-Adapter uses), concepts from any captioned image collection grouped by subject
(several photos per subject), the diffusion loss through the frozen UNet and text encoder at its resolution, and
the word width of its text encoder (768 for SD 1.x, 1024 for SD 2.x); on a GPU, not on 2 CPU cores.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import OnewordError

PROPERTIES = ("object", "style")
MAX_NORM = 8.0  # the longest word the encoder gives (see the module's docstring)
TOKEN = "<encoded>"


def default_path() -> Path:
    """The shipped encoder file."""
    return Path(__file__).resolve().parent / "encoder" / "encoder.safetensors"


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


def _judge_identity(judge) -> str:
    from ..judges import judge_identity

    return judge_identity(judge)


def save_encoder(enc: PhotoEncoder, path: Path, model, judge, record: dict) -> None:
    from safetensors.torch import save

    from ..safeio import atomic_write_bytes

    meta = {
        "model_fingerprint": str(model.identity["fingerprint"]),
        "judge": _judge_identity(judge),
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
    tensors = {k: v.detach().float().contiguous() for k, v in enc.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, save(tensors, metadata=meta))


def load_encoder(path, model) -> tuple[PhotoEncoder, dict]:
    """The encoder in `path`, refused unless it was trained through this model (fingerprint)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise OnewordError(f"no photo encoder at {path} (build one with `oneword world train-encoder`)")
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
            f"an encoder trained for this model (`oneword world train-encoder` for the world model)"
        )
    enc = PhotoEncoder(cfg["feature_dim"], cfg["word_width"], tensors["base"], cfg["hidden"], cfg.get("max_norm"))
    enc.load_state_dict(tensors)
    enc.eval().requires_grad_(False)
    return enc, meta


@torch.no_grad()
def encoder_vectors(model, images, prop: str, n: int, path=None, judge=None) -> tuple[torch.Tensor, dict]:
    """--init encoder: the word vector the encoder gives for the photos, repeated for n vectors; and a record
    for run.json."""
    from .judge import load_judge

    path = Path(path) if path else default_path()
    enc, meta = load_encoder(path, model)
    judge = judge or load_judge()
    if meta.get("judge") not in (None, _judge_identity(_Adapter(judge))):
        raise OnewordError(
            f"the photo encoder {path} reads another judge's image features than the world judge "
            f"loaded; retrain it with `oneword world train-encoder`"
        )
    feats = judge.image_features(list(images)).float().mean(0, keepdim=True)
    v = enc(feats, torch.tensor([PROPERTIES.index(prop)]))
    return v.repeat(n, 1), {"method": "encoder", "file": str(path), "model_fingerprint": meta["model_fingerprint"]}


class _Adapter:
    """The world judge seen as oneword.judges does (for its identity)."""

    def __init__(self, judge):
        self.judge, self.name = judge, "world"


# ------------------------------------------------------------------------------------------ training data
def concept_sets(n_object: int, n_style: int, photos: int, seed: int) -> tuple[list[list], list[int], list[tuple]]:
    """Concepts of the pretraining distribution, `photos` renders each: object concepts (shape, colour, pattern of
    a pretraining scene's object, never a novel concept's) in photo style with varied position, size and
    background; style concepts (a named style) over varied scenes. No render has a held-out combination.
    Returns (photo sets, properties (0 object, 1 style), what each set shares: (shape, colour, pattern) or (style,))."""
    from .concepts import pretraining_exclusions
    from .render import (
        HELD_OUT_SHAPE_STYLE,
        NAMED_STYLES,
        held_out_pairs,
        pretraining_scene,
        random_scene,
        render_scene,
    )

    rng = np.random.default_rng([seed, 2813])
    excluded = pretraining_exclusions()
    sets, props, specs = [], [], []

    def draw(**fixed):
        for _ in range(10_000):
            s = random_scene(rng, **fixed)
            if not held_out_pairs(s) and not any((o.shape, o.colour, o.pattern) in excluded for o in s.objects):
                return render_scene(s, 32, rng)
        raise RuntimeError(f"no pretraining scene with {fixed}")

    for _ in range(n_object):
        o = pretraining_scene(rng, excluded).objects[0]
        # photo style, as user photos are; a shape whose photo style is a held-out combination: its first other style
        style = next(st for st in NAMED_STYLES if (o.shape, st) not in HELD_OUT_SHAPE_STYLE)
        sets.append(
            [draw(count=1, shape=o.shape, colour=o.colour, pattern=o.pattern, style=style) for _ in range(photos)]
        )
        props.append(0)
        specs.append((o.shape, o.colour, o.pattern))
    for i in range(n_style):
        style = NAMED_STYLES[i % len(NAMED_STYLES)]
        sets.append([draw(named_only=True, style=style) for _ in range(photos)])
        props.append(1)
        specs.append((style,))
    return sets, props, specs


class _PerSampleWord(nn.Module):
    """The text encoder's token embedding, except that the placeholder id reads each sample's own vector."""

    def __init__(self, base: nn.Embedding, first_id: int):
        super().__init__()
        self.base, self.first_id, self.vectors = base, first_id, None

    def forward(self, ids):
        is_new = ids == self.first_id
        out = self.base(ids.masked_fill(is_new, 0))
        return torch.where(is_new.unsqueeze(-1), self.vectors[:, None, :].to(out.dtype), out)


def train_encoder(
    out: str | Path | None = None,
    minutes: float = 10.0,
    max_steps: int = 4000,
    batch: int = 64,
    lr: float = 1e-3,
    n_object: int = 1500,
    n_style: int = 300,
    photos: int = 6,
    seed: int = 0,
    max_norm: float | None = MAX_NORM,
    threads: int | None = None,
    log=print,
    model=None,
    judge=None,
) -> dict:
    """Train the photo encoder through the frozen world model (see the module's docstring); write it to `out`
    (default: the shipped file). Returns the training record."""
    from diffusers import DDPMScheduler

    from ..models import load_model
    from ..templates import encode_templates
    from .judge import images_to_tensor, load_judge

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    started = time.time()
    model = model or load_model(None, device="cpu", dtype=torch.float32)
    judge = judge or load_judge()
    te, unet, vae = model.pipe.text_encoder, model.unet, model.vae
    table = te.get_input_embeddings().weight.detach()
    tok = copy.deepcopy(model.tokenizer)
    tok.add_tokens([TOKEN])
    first_id = tok.convert_tokens_to_ids(TOKEN)
    base = torch.stack(
        [table[tok(w, add_special_tokens=False).input_ids].float().mean(0) for w in ("object", "painting")]
    )

    sets, props, _ = concept_sets(n_object, n_style, photos, seed)
    flat = [im for s in sets for im in s]
    with torch.no_grad():
        feats = torch.cat([judge.image_features(flat[i : i + 512]) for i in range(0, len(flat), 512)]).float()
        px = images_to_tensor(flat)
        dists = [vae.encode(px[i : i + 256]).latent_dist for i in range(0, len(px), 256)]
    mean = torch.cat([d.mean for d in dists]).float()
    std = torch.cat([d.std for d in dists]).float()
    scale = float(vae.config.scaling_factor)
    k, n_sets = photos, len(sets)
    feats, mean, std = (
        feats.view(n_sets, k, -1),
        mean.view(n_sets, k, *mean.shape[1:]),
        std.view(n_sets, k, *std.shape[1:]),
    )
    props_t = torch.tensor(props)
    ids = {p: encode_templates(tok, p, TOKEN, 1) for p in PROPERTIES}
    log(f"{n_sets} concepts x {k} photos rendered and encoded in {time.time() - started:.0f} s")

    sched = DDPMScheduler.from_config(model.scheduler.config)
    enc = PhotoEncoder(feats.shape[-1], table.shape[1], base, max_norm=max_norm)
    opt = torch.optim.AdamW(enc.parameters(), lr=lr, weight_decay=0.01)
    emb = _PerSampleWord(te.get_input_embeddings(), first_id)
    original = te.get_input_embeddings()
    te.set_input_embeddings(emb)
    g = torch.Generator().manual_seed(seed)
    losses, step, budget = [], 0, minutes * 60
    t0 = time.time()
    try:
        while step < max_steps and time.time() - t0 < budget:
            rows = torch.randint(0, n_sets, (batch,), generator=g)
            # each concept encoded from a random subset of 1..k of its photos
            keep = torch.rand(batch, k, generator=g) < torch.rand(batch, 1, generator=g)
            keep[torch.arange(batch), torch.randint(0, k, (batch,), generator=g)] = True
            f = (feats[rows] * keep[..., None]).sum(1) / keep.sum(1, keepdim=True)
            target = torch.randint(0, k, (batch,), generator=g)
            z = (mean[rows, target] + std[rows, target] * torch.randn((batch, *mean.shape[2:]), generator=g)) * scale
            noise = torch.randn(z.shape, generator=g)
            t = torch.randint(0, sched.config.num_train_timesteps, (batch,), generator=g)
            p = props_t[rows]
            prompt = torch.stack(
                [
                    ids[PROPERTIES[int(q)]][int(torch.randint(0, len(ids[PROPERTIES[int(q)]]), (1,), generator=g))]
                    for q in p
                ]
            )
            lr_now = lr * 0.5 * (1 + np.cos(np.pi * min(1.0, (time.time() - t0) / budget, step / max_steps)))
            for group in opt.param_groups:
                group["lr"] = lr_now
            emb.vectors = enc(f, p)
            hidden = te(prompt).last_hidden_state
            pred = unet(sched.add_noise(z, noise, t), t, encoder_hidden_states=hidden).sample
            loss = F.mse_loss(pred, noise)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            step += 1
            if step % 50 == 0:
                log(f"step {step}: loss {np.mean(losses[-50:]):.4f} ({time.time() - t0:.0f} s)")
    finally:
        te.set_input_embeddings(original)
        emb.vectors = None
    record = {
        "steps": step,
        "batch": batch,
        "lr": lr,
        "concepts": {"object": n_object, "style": n_style},
        "photos_per_concept": k,
        "seed": seed,
        "max_norm": max_norm,
        "minutes": round((time.time() - started) / 60, 1),
        "loss_first_50": round(float(np.mean(losses[:50])), 4) if losses else None,
        "loss_last_50": round(float(np.mean(losses[-50:])), 4) if losses else None,
    }
    path = Path(out) if out else default_path()
    save_encoder(enc, path, model, _Adapter(judge), record)
    log(f"encoder written to {path}: {record}")
    return record
