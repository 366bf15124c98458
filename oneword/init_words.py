"""Where a word starts: `--init auto` (words chosen from the photos by a CLIP judge), `--init-mode cross`
(CrossInit: the text encoder's output for the init words) and `--init encoder` (a photo encoder,
oneword.photo_encoder: the world model's, or one trained for a real model by `oneword train-encoder`).

`start(model, cfg, photos)` is what `learn` calls: it returns the config with the init resolved (the chosen
words in `init`, how they were chosen in `init_choice`, which run.json records) and the start vectors [n, width].

* `--init auto`: the model's whole-word vocabulary is ranked by the judge's image-text cosine to the photos
  (each word in a few of the paper's prompt templates for the property, their text features averaged; words the
  templates already say, and function words, are left out). One vector starts from the best word; N vectors
  from the N best, vector i from word i (the multi-word init's rule). The judge must match the model: the world
  judge's CLIP for the world model, `--clip MODEL` (a transformers CLIPModel) for a real one. Text features are
  computed once per judge and vocabulary and kept in memory and in the cache folder (`cache_dir()`).
* `--init-mode cross` (Pang et al., CVPR 2024, "Cross Initialization for Personalized Text-to-Image Generation"):
  the word starts at the text encoder's final-layer hidden state (after its final layer norm) for the init words
  in a plain prompt (start token, the words, end token), rather than at their input embeddings, and is pulled
  toward that start by an L2 term of weight `CROSS_REG_WEIGHT` (the paper's 1e-5) unless --reg-weight is given.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

import torch

from . import validate
from .errors import OnewordError
from .judges import judge_identity
from .validate import example_word

INIT_MODES = ("word", "cross")
CROSS_REG_WEIGHT = 1e-5  # CrossInit's regularisation weight (the paper and its official code)
AUTO_TEMPLATES = 4  # prompt templates per word (the property's first ones): text features averaged;
LARGE_VOCABULARY = 5000  # a vocabulary larger than this (a real CLIP's ~32k whole words): the first template only
WEAK_MATCH_REF = 1.0  # weak match: the best word's margin over typical images below this many of its std devs
WEAK_MATCH_Z = 3.0  # weak match without reference images: the best word below this z over the vocabulary
# function words: never a description of what photos show
STOPWORDS = frozenset(
    "a an the and or of on in at to up by for from with without into onto over under next beside my your his her "
    "its our their this that these those it is are was were be been being has have had do does did not no one two "
    "some any all each very more most less few".split()
)


def start(model, cfg, photos):
    """(cfg, vectors): the config with its init resolved and the word's start vectors [cfg.vectors, width]."""
    mode = getattr(cfg, "init_mode", "word") or "word"
    if mode not in INIT_MODES:
        raise OnewordError(f"--init-mode must be one of {', '.join(INIT_MODES)}, not {mode!r}")
    init = (cfg.init or "").strip()
    if init == "encoder" or init.startswith("encoder:"):
        if mode != "word":
            raise OnewordError("--init encoder gives vectors, not words: it cannot be combined with --init-mode cross")
        from .data import read_photos
        from .photo_encoder import encoder_vectors

        path = init.partition(":")[2] or None
        clip = getattr(cfg, "init_clip", None)
        vectors, record = encoder_vectors(model, read_photos(photos), cfg.property, cfg.vectors, path=path, clip=clip)
        return replace(cfg, init_choice=record), vectors
    if init == "auto":
        from .data import read_photos

        choice = auto_words(model, read_photos(photos), cfg.property, cfg.vectors, clip=getattr(cfg, "init_clip", None))
        cfg = replace(cfg, init=" ".join(choice["words"]), init_choice=choice)
    if mode == "cross":
        vectors = cross_vectors(model, cfg.init_word(), cfg.vectors)
        choice = dict(cfg.init_choice or {}, mode="cross")
        reg = cfg.reg_weight if cfg.reg_weight else CROSS_REG_WEIGHT
        return replace(cfg, reg_weight=reg, init_choice=choice), vectors
    return cfg, init_vectors(model, cfg.init_word(), cfg.vectors)


def init_vectors(model, word: str, n: int) -> torch.Tensor:
    """Start vectors from the init text; a word the tokenizer splits into two pieces counts as their mean.
    One vector: the mean of the words (the paper's init word). n vectors from k > 1 words: vector i starts from
    word i*k//n (A1111's rule, by words rather than by pieces), so "green star" gives a 2-vector word whose
    first vector sits in the colour-word slot; from a single word, every vector starts from it.
    A model with several text encoders (SDXL) gets each encoder's part from the word in its own table."""
    return torch.cat(
        [_init_part(e.tokenizer, e.text_encoder, word, n) for e in model.family.encoders(model.pipe)], dim=-1
    )


def _init_part(tokenizer, text_encoder, word: str, n: int) -> torch.Tensor:
    table = text_encoder.get_input_embeddings().weight
    rows = []
    for part in word.split():
        pieces = tokenizer(part, add_special_tokens=False).input_ids
        if not pieces or len(pieces) > 2:
            shown = tokenizer.convert_ids_to_tokens(pieces)
            raise OnewordError(
                f"init word {part!r} is not a word this model knows (it splits into {shown}); "
                f"choose a common word for the concept, e.g. --init {validate.example_word(tokenizer)}"
            )
        rows.append(table[pieces].float().mean(0))
    if not rows:
        raise OnewordError(
            f"--init is empty; give a word that describes the concept, e.g. --init {validate.example_word(tokenizer)}"
        )
    words = torch.stack(rows).detach().cpu()
    if n > 1 and len(words) > 1:
        return words[[i * len(words) // n for i in range(n)]]
    return words.mean(0, keepdim=True).repeat(n, 1)


# ------------------------------------------------------------------------------------------ --init-mode cross
@torch.no_grad()
def cross_vectors(model, text: str, n: int) -> torch.Tensor:
    """CrossInit's start: each init word's final-layer hidden state in the plain prompt "<start> words <end>"
    (a word of two pieces: the mean of its positions), combined over words as the paper's init is (one vector:
    their mean; n vectors from k > 1 words: vector i from word i*k//n). One part per text encoder (SDXL)."""
    return torch.cat(
        [_cross_part(e.tokenizer, e.text_encoder, text, n) for e in model.family.encoders(model.pipe)], dim=-1
    )


def _cross_part(tokenizer, text_encoder, text: str, n: int) -> torch.Tensor:
    pieces = []
    for part in text.split():
        ids = tokenizer(part, add_special_tokens=False).input_ids
        if not ids or len(ids) > 2:
            raise OnewordError(
                f"init word {part!r} is not a word this model knows (it splits into "
                f"{tokenizer.convert_ids_to_tokens(ids)}); choose a common word, e.g. --init "
                f"{example_word(tokenizer)}"
            )
        pieces.append(ids)
    if not pieces:
        raise OnewordError(
            f"--init is empty; give a word that describes the concept, e.g. --init {example_word(tokenizer)}"
        )
    ids = [tokenizer.bos_token_id] + [i for p in pieces for i in p] + [tokenizer.eos_token_id]
    device = text_encoder.get_input_embeddings().weight.device
    hidden = text_encoder(torch.tensor([ids], device=device)).last_hidden_state[0].float().cpu()
    rows, at = [], 1
    for p in pieces:
        rows.append(hidden[at : at + len(p)].mean(0))
        at += len(p)
    words = torch.stack(rows)
    if n > 1 and len(words) > 1:
        return words[[i * len(words) // n for i in range(n)]]
    return words.mean(0, keepdim=True).repeat(n, 1)


# ------------------------------------------------------------------------------------------ --init auto
def auto_judge(model, clip: str | None):
    """The judge `--init auto` ranks words with: `clip` if given, the world judge for the world model, else an
    error that says what to pass."""
    from .judges import is_world_model, load_judge

    if clip:
        return load_judge(clip)
    if is_world_model(model):
        return load_judge("world")
    raise OnewordError(
        "--init auto needs a CLIP judge that matches this model: pass --clip MODEL (a transformers "
        "CLIPModel folder or cached hub id, e.g. openai/clip-vit-large-patch14 for SD 1.x)"
    )


def auto_words(model, images, prop: str, n: int, clip: str | None = None, judge=None, top: int = 5) -> dict:
    """Rank the model's whole-word vocabulary by the judge's image-text cosine to the photos; the n best words
    start the word. With reference images for the judge (`reference_features`: the world judge's are renders of
    the world's pretraining scenes), each word's score is its cosine to the photos less its mean cosine to the
    references (how much better than typical images the photos match it: filler words that match everything drop
    out), and the match strength is that margin in units of the word's spread over the references; without
    (a real CLIP), the plain cosine ranks and the strength is the best word's z-score over the vocabulary.
    Returns {"words", "scores", "top", "strength", "strength_unit", "weak", "judge", "candidates"}."""
    judge = judge if judge is not None else auto_judge(model, clip)
    words = candidate_words(model, _judge_tokenizer(judge), prop)
    if len(words) < n:
        raise OnewordError(f"--init auto found only {len(words)} candidate words for {n} vectors")
    text = vocabulary_features(judge, words, prop)
    scores = (judge.image_features(list(images)).float() @ text.T).mean(0)  # mean cosine over the photos, per word
    ref = reference_features(judge)
    if ref is not None:
        ref_scores = ref @ text.T
        scores = scores - ref_scores.mean(0)
        spread = ref_scores.std(0).clamp_min(1e-6)
    order = torch.argsort(scores, descending=True).tolist()
    best = order[:n]
    if ref is not None:
        strength, unit, weak_below = float(scores[best[0]] / spread[best[0]]), "reference", WEAK_MATCH_REF
    else:
        strength = float((scores[best[0]] - scores.mean()) / scores.std().clamp_min(1e-8))
        unit, weak_below = "vocabulary", WEAK_MATCH_Z
    return {
        "method": "auto",
        "words": [words[i] for i in best],
        "scores": [round(float(scores[i]), 4) for i in best],
        "top": [[words[i], round(float(scores[i]), 4)] for i in order[:top]],
        "strength": round(strength, 2),
        "strength_unit": unit,
        "weak": strength < weak_below,
        "judge": str(getattr(judge, "name", "")),
        "candidates": len(words),
    }


def describe_choice(choice: dict) -> str:
    """One line for the user: the words chosen and how strongly the photos match them."""
    if choice.get("method") == "encoder":
        return f"init: the photo encoder's word ({choice.get('file')})"
    words = ", ".join(f"{w} ({s:+.3f})" for w, s in zip(choice["words"], choice["scores"]))
    if choice.get("strength_unit") == "reference":
        how = f"match strength {choice['strength']:.2f} (standard deviations above typical images)"
        weak = WEAK_MATCH_REF
    else:
        how = f"match strength z = {choice['strength']:.1f} over {choice['candidates']} words"
        weak = WEAK_MATCH_Z
    line = f"init auto: {words}; {how}"
    if choice["weak"]:
        line += f": WEAK (below {weak:g}): the photos match no word well; --init WORD may start better"
    if choice.get("mode") == "cross":
        line += "; cross init"
    return line


_REFERENCE: dict[int, torch.Tensor] = {}


def reference_features(judge, n: int = 256, seed: int = 123) -> torch.Tensor | None:
    """Image features of typical images for the judge, or None: the world judge's are n renders of the world's
    pretraining scene distribution (fixed seed); a real CLIP has none."""
    if getattr(judge, "judge", None) is None or not hasattr(judge.judge, "oracle_net"):
        return None
    if id(judge) not in _REFERENCE:
        import numpy as np

        from .world.render import random_scene, render_scene

        rng = np.random.default_rng(seed)
        _REFERENCE[id(judge)] = judge.image_features([render_scene(random_scene(rng), 32, rng) for _ in range(n)])
    return _REFERENCE[id(judge)].float()


def _judge_tokenizer(judge):
    inner = getattr(judge, "judge", None)  # the world judge behind its adapter
    if inner is not None and hasattr(inner, "tokenizer"):
        return inner.tokenizer
    return judge.processor.tokenizer


def candidate_words(model, judge_tokenizer, prop: str) -> list[str]:
    """Whole words (letters only, 3+ characters) that are one token in the judge's tokenizer and in each of the
    model's tokenizers (so the init is the word itself), less function words and the words the property's prompt
    templates already say. Sorted."""
    from .templates import templates_for

    said = {w.strip(".,").lower() for t in templates_for(prop) for w in t.replace("{}", " ").split()}
    judge_words = {t[:-4] for t in judge_tokenizer.get_vocab() if t.endswith("</w>")}
    out = []
    tokenizers = [e.tokenizer for e in model.family.encoders(model.pipe)]
    vocabs = [t.get_vocab() for t in tokenizers]
    for w in sorted(judge_words):
        if len(w) < 3 or not w.isascii() or not w.isalpha() or w in STOPWORDS or w in said:
            continue
        if all(w + "</w>" in v for v in vocabs):
            out.append(w)
    return out


_MEMORY: dict[str, torch.Tensor] = {}


def cache_dir() -> Path:
    """Where judges' vocabulary text features are kept: $ONEWORD_CACHE, else ~/.cache/oneword."""
    return Path(os.environ.get("ONEWORD_CACHE") or Path.home() / ".cache" / "oneword") / "init_auto"


def vocabulary_features(judge, words: list[str], prop: str, batch: int = 512) -> torch.Tensor:
    """[len(words), d] L2-normalised text features, each word's mean over the property's first AUTO_TEMPLATES
    prompt templates (a large vocabulary: the first, "a photo of a {}" for objects, CLIP's own zero-shot prompt);
    computed once per judge, property and word list (memory and disk cache)."""
    from .templates import templates_for

    templates = list(dict.fromkeys(templates_for(prop)))[: 1 if len(words) > LARGE_VOCABULARY else AUTO_TEMPLATES]
    key = hashlib.sha256(json.dumps([judge_identity(judge), templates, words]).encode()).hexdigest()[:20]
    if key in _MEMORY:
        return _MEMORY[key]
    f = cache_dir() / f"{key}.safetensors"
    if f.is_file():
        from safetensors.torch import load_file

        try:
            feats = load_file(str(f))["features"]
            if feats.shape[0] == len(words):
                _MEMORY[key] = feats
                return feats
        except Exception:
            pass  # a damaged cache file is recomputed
    total = None
    for t in templates:
        texts = [t.format(w) for w in words]
        part = torch.cat([_text_features(judge, texts[i : i + batch]) for i in range(0, len(texts), batch)])
        total = part if total is None else total + part
    feats = torch.nn.functional.normalize(total, dim=-1).contiguous()
    _MEMORY[key] = feats
    try:
        from safetensors.torch import save

        from .safeio import atomic_write_bytes

        f.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(f, save({"features": feats}))
    except OSError:
        pass  # a read-only home: the memory cache still holds it
    return feats


@torch.no_grad()
def _text_features(judge, texts: list[str]) -> torch.Tensor:
    """The judge's text features; a transformers CLIP padded to the batch's longest text (its causal mask and
    end-token pooling make that equal to padding to 77, and several times faster)."""
    model = getattr(judge, "model", None)
    if model is None or not hasattr(judge, "processor"):
        return judge.text_features(texts).float()
    tok = judge.processor.tokenizer
    ids = tok(list(texts), padding=True, truncation=True, max_length=tok.model_max_length, return_tensors="pt")
    f = model.get_text_features(
        input_ids=ids["input_ids"].to(judge.device), attention_mask=ids["attention_mask"].to(judge.device)
    )
    f = getattr(f, "pooler_output", f)
    return torch.nn.functional.normalize(f.float(), dim=-1).cpu()
