"""Training a photo encoder (oneword.photo_encoder) through a frozen model of any family: `train_photo_encoder`.
The recipe is in oneword.photo_encoder's docstring; `oneword train-encoder` and `oneword world train-encoder` call it."""

from __future__ import annotations

import copy
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from .init_words import init_vectors
from .invert import LearnedTokenEmbedding, _training_schedule, diffusion_loss
from .photo_encoder import BASE_WORDS, MAX_NORM, PROPERTIES, TOKEN, PhotoEncoder, save_encoder


def _subject_tensors(model, judge, sets: list[list]) -> dict:
    """Each subject's photos, padded to the largest set: judge features [S, K, d], VAE posteriors [S, K, ...],
    the family's size ids [S, K, 6] and photo counts [S]."""
    from .data import encode_photos

    counts = torch.tensor([len(s) for s in sets])
    S, K = len(sets), int(counts.max())
    feats, mean, std, sizes = None, None, None, None
    for i, photos in enumerate(sets):
        f = judge.image_features(list(photos)).float()
        cache = encode_photos(model, list(photos), model.resolution)  # photos, then their mirrors
        c = len(photos)
        if feats is None:
            feats = torch.zeros(S, K, f.shape[-1])
            mean = torch.zeros(S, K, *cache.mean.shape[1:], device=model.device)
            std = torch.zeros_like(mean)
            sizes = torch.zeros(S, K, cache.sizes.shape[1], device=model.device)
            scale = cache.scaling_factor
        feats[i, :c], mean[i, :c], std[i, :c], sizes[i, :c] = f, cache.mean[:c], cache.std[:c], cache.sizes[:c]
    return {"feats": feats, "mean": mean, "std": std, "sizes": sizes, "counts": counts, "scale": scale}


@contextmanager
def per_sample_words(model):
    """Inside, each text encoder's token embedding reads row b of a [batch, width] table for sample b's placeholder,
    as learn-many's slots do. Yields (set_words(table), the prompt templates per property, a function giving each
    sample its own placeholder id); the model's own embeddings are put back after."""
    from .templates import encode_templates

    encoders = model.family.encoders(model.pipe)
    tokenizers = [copy.deepcopy(e.tokenizer) for e in encoders]
    for t in tokenizers:
        t.add_tokens([TOKEN])
    first = torch.tensor([t.convert_tokens_to_ids(TOKEN) for t in tokenizers])
    templates = {p: encode_templates(model.family.tokenizer_for(tokenizers), p, TOKEN, 1) for p in PROPERTIES}
    originals = [e.text_encoder.get_input_embeddings() for e in encoders]
    embeddings = [
        LearnedTokenEmbedding(original, first_id, None, None if len(encoders) == 1 else e.columns)
        for e, original, first_id in zip(encoders, originals, first.tolist())
    ]

    def set_words(table: torch.Tensor) -> None:
        for embedding in embeddings:
            embedding.vectors = table

    def own_ids(ids: torch.Tensor) -> torch.Tensor:  # [B, L] or [B, E, L]: sample b's placeholder reads row b
        f = first.view(-1, 1) if ids.dim() == 3 else first[0]
        b = torch.arange(len(ids)).view(-1, *[1] * (ids.dim() - 1))
        return torch.where(ids >= f, ids + b, ids)

    for e, embedding in zip(encoders, embeddings):
        e.text_encoder.set_input_embeddings(embedding)
    try:
        yield set_words, templates, own_ids
    finally:
        for e, original in zip(encoders, originals):
            e.text_encoder.set_input_embeddings(original)


def _draw(g, data: dict, props: torch.Tensor, templates: dict, own_ids, batch: int, n_train_steps: int, dev) -> dict:
    """One step's batch, every draw from the CPU generator `g`: subjects, a random subset of each one's photos (at
    least one) whose mean feature the encoder reads, a target photo's latents, noise and timestep, a template."""
    S, K = data["feats"].shape[:2]
    rows = torch.randint(0, S, (batch,), generator=g)
    n = data["counts"][rows]
    keep = (torch.rand(batch, K, generator=g) < torch.rand(batch, 1, generator=g)) & (torch.arange(K) < n[:, None])
    keep[torch.arange(batch), (torch.rand(batch, generator=g) * n).long()] = True
    features = (data["feats"][rows] * keep[..., None]).sum(1) / keep.sum(1, keepdim=True)
    target = (torch.rand(batch, generator=g) * n).long()
    mean, std = data["mean"][rows, target], data["std"][rows, target]
    latents = (mean + std * torch.randn(mean.shape, generator=g).to(dev)) * data["scale"]
    noise = torch.randn(mean.shape, generator=g).to(dev)
    t = torch.randint(0, n_train_steps, (batch,), generator=g).to(dev)
    p = props[rows]
    prompts = [templates[PROPERTIES[q]] for q in p.tolist()]
    ids = torch.stack([ts[int(torch.randint(0, len(ts), (1,), generator=g))] for ts in prompts])
    return {
        "features": features.to(dev),
        "props": p.to(dev),
        "latents": latents,
        "noise": noise,
        "t": t,
        "ids": own_ids(ids).to(dev),
        "sizes": data["sizes"][rows, target],
    }


def train_photo_encoder(
    model,
    judge,
    sets: list[list],
    props: list[int],
    out,
    judge_source: str = "world",
    minutes: float = 10.0,
    max_steps: int = 4000,
    batch: int = 64,
    lr: float = 1e-3,
    hidden: int = 512,
    seed: int = 0,
    max_norm: float | None = MAX_NORM,
    record: dict | None = None,
    log=print,
) -> dict:
    """Train a photo encoder through the frozen `model` on `sets` (each a list of photos of one subject; `props`: 0
    object, 1 style), reading `judge`'s image features; write it to `out`. Returns the training record."""
    torch.manual_seed(seed)
    started, dev = time.time(), model.device
    with torch.no_grad():
        data = _subject_tensors(model, judge, sets)
    counts, props_t = data["counts"], torch.tensor(props)
    log(f"{len(sets)} subjects x up to {int(counts.max())} photos encoded in {time.time() - started:.0f} s")

    base = torch.cat([init_vectors(model, w, 1) for w in BASE_WORDS]).float()
    enc = PhotoEncoder(data["feats"].shape[-1], base.shape[-1], base, hidden=hidden, max_norm=max_norm).to(dev)
    opt = torch.optim.AdamW(enc.parameters(), lr=lr, weight_decay=0.01)
    schedule = _training_schedule(model)
    g = torch.Generator().manual_seed(seed)
    losses, step, budget, t0 = [], 0, minutes * 60, time.time()
    with per_sample_words(model) as (set_words, templates, own_ids):
        while step < max_steps and time.time() - t0 < budget:
            x = _draw(g, data, props_t, templates, own_ids, batch, schedule.config.num_train_timesteps, dev)
            lr_now = lr * 0.5 * (1 + np.cos(np.pi * min(1.0, (time.time() - t0) / budget, step / max_steps)))
            for group in opt.param_groups:
                group["lr"] = lr_now

            set_words(enc(x["features"], x["props"]))  # forward: each subject's word from its photos, then
            loss = diffusion_loss(model, schedule, x["latents"], x["noise"], x["t"], x["ids"], x["sizes"])  # its loss
            opt.zero_grad(set_to_none=True)
            loss.backward()  # backward: through the frozen model into the encoder alone
            opt.step()  # the update

            losses.append(float(loss.detach()))
            step += 1
            if step % 50 == 0:
                log(f"step {step}: loss {np.mean(losses[-50:]):.4f} ({time.time() - t0:.0f} s)")
    record = {
        **(record or {}),
        "steps": step,
        "batch": batch,
        "lr": lr,
        "subjects": {"object": props.count(0), "style": props.count(1)},
        "photos_per_subject": [int(counts.min()), int(counts.max())],
        "seed": seed,
        "max_norm": max_norm,
        "minutes": round((time.time() - started) / 60, 1),
        "loss_first_50": round(float(np.mean(losses[:50])), 4) if losses else None,
        "loss_last_50": round(float(np.mean(losses[-50:])), 4) if losses else None,
    }
    save_encoder(enc, Path(out), model, judge, record, judge_source)
    log(f"encoder written to {out}: {record}")
    return record
