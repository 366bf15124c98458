"""The paper's quantitative analysis: reconstruction, editability, their bootstrap intervals, and a judge.

Definitions (Gal et al. 2022, section 5.1 and the official code):

- **Reconstruction**: generate n images of "A photo of S*" (64 samples, 50 DDIM steps, guidance 5) and take
  the mean pairwise CLIP image-image cosine between the generated images and the training photos.
  Per generated sample i the score is mean_j cos(gen_i, photo_j); the metric is the mean of those scores.
- **Editability**: for each prompt of a set of varying difficulty (background, style, composition), generate
  n images and take the mean CLIP text-image cosine between them and the prompt with S* removed
  ("a photo of S* on the moon" is scored against "a photo of on the moon"). The placeholder and all of
  its vector tokens (diffusers' `S*`, `S*_1`, ... convention) are stripped before the text is encoded.
- **Intervals**: 95% percentile bootstrap over generated samples (stratified by prompt for editability),
  with fixed seeds for sampling and resampling, so two runs can be compared honestly.

The learned word is put into a private copy of the tokenizer and an embedding wrapper for the duration of
sampling (`temporary_words`): the model itself is never changed. A human caption can be evaluated in place
of S* (the paper's baseline) with the same prompts, seeds and judge.

Judges (`oneword.judges`): any `transformers.CLIPModel` (local folder or a hub id found in the local cache;
the paper used openai/clip-vit-base-patch32), or the embedded world's own CLIP plus its attribute oracle, which
adds crisp accuracies: is the concept in the image, and was the edit applied. The scores, accuracies and
bootstrap intervals are `oneword.metrics`; this module holds the prompts, the sampling, `evaluate` and its
reports (and re-exports the judges' and metrics' names, so `oneword.evaluation` is the one import).
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import OnewordError
from .judges import DEFAULT_CLIP, ClipJudge, WorldJudgeAdapter, is_world_model, load_judge
from .metrics import (
    bootstrap_ci,
    concept_present,
    difference,
    edit_applied,
    entropy_bits,
    psnr,
    reconstruction_scores,
    self_similarity,
    summary,
    target_attributes,
    text_scores,
)
from .templates import default_template

__all__ = [  # the judges' and metrics' names too: `from oneword.evaluation import ...` is the one import
    "DEFAULT_CLIP",
    "PLACEHOLDER",
    "ClipJudge",
    "EvalConfig",
    "EvalPrompt",
    "Evaluator",
    "Subject",
    "WorldJudgeAdapter",
    "aggregate",
    "bootstrap_ci",
    "captioned",
    "concept_present",
    "custom_prompts",
    "difference",
    "edit_applied",
    "entropy_bits",
    "evaluate",
    "fmt",
    "is_world_model",
    "learned",
    "load_judge",
    "paper_prompts",
    "psnr",
    "reconstruction_scores",
    "sample",
    "sample_grid",
    "sampling_scheduler",
    "self_similarity",
    "strip_placeholder",
    "summary",
    "table",
    "target_attributes",
    "temporary_words",
    "text_scores",
    "world_prompts",
    "write_report",
]

PLACEHOLDER = "S*"


# ---------------------------------------------------------------------------------------------- prompts
@dataclass(frozen=True)
class EvalPrompt:
    """One evaluation prompt. `template` holds `{}` where the concept goes (S* or a caption).

    group: "reconstruction" | "background" | "style" | "composition" | "content" | "custom".
    caption_template: how a human caption is put in, when `template` does not read well with one
    (a style caption "a sketch" becomes "a sketch of a red star", not "a red star in the style of a sketch").
    expect: for the world oracle, what the edit should produce, e.g. {"background": "sky"},
    {"style": "sketch"}, {"second": ("star", "yellow")} (a second object), {"shape": .., "colour": ..}.
    """

    name: str
    group: str
    template: str
    caption_template: str | None = None
    expect: dict = field(default_factory=dict)

    def fill(self, phrase: str, caption: bool = False) -> str:
        template = self.caption_template if caption and self.caption_template else self.template
        if caption and re.match(r"^(a|an|the)\s", phrase.strip(), re.I):
            template = re.sub(r"\b(a|an|the)\s+\{\}", "{}", template, flags=re.I)  # "holding a a ring"
        return " ".join(template.format(phrase).split())


def _paper_object_prompts() -> list[EvalPrompt]:
    r = [EvalPrompt("reconstruction", "reconstruction", default_template("object"))]
    bg = [
        ("moon", "a photo of {} on the moon"),
        ("beach", "a photo of {} on the beach"),
        ("jungle", "a photo of {} in the jungle"),
        ("snow", "a photo of {} in the snow"),
    ]
    st = [
        ("oil painting", "an oil painting of {}"),
        ("watercolor", "a watercolor painting of {}"),
        ("pencil sketch", "a pencil sketch of {}"),
        ("banksy", "a graffiti of {} in the style of Banksy"),
    ]
    co = [("elmo", "Elmo holding a {}"), ("cat", "a cat playing with {}"), ("table", "{} on a table next to a cup")]
    return (
        r
        + [EvalPrompt(n, "background", t) for n, t in bg]
        + [EvalPrompt(n, "style", t) for n, t in st]
        + [EvalPrompt(n, "composition", t) for n, t in co]
    )


def _paper_style_prompts() -> list[EvalPrompt]:
    r = [EvalPrompt("reconstruction", "reconstruction", default_template("style"))]
    content = [
        ("dog", "a painting of a dog in the style of {}"),
        ("city", "a city street in the style of {}"),
        ("portrait", "a portrait of a woman in the style of {}"),
        ("mountain", "a mountain lake in the style of {}"),
        ("car", "a red car in the style of {}"),
        ("still life", "a still life of fruit in the style of {}"),
    ]
    return r + [EvalPrompt(n, "content", t) for n, t in content]


# The world's equivalents, in the world's own words (its tokenizer knows only these).
WORLD_BACKGROUNDS = ("sky", "black")
WORLD_STYLES = (("sketch", "a sketch of {}"), ("pixel", "pixel art of {}"), ("painting", "a painting of {}"))
WORLD_SECOND_OBJECTS = (("star", "yellow"), ("diamond", "green"), ("cross", "red"), ("square", "orange"))
WORLD_STYLE_CONTENT = (("star", "red"), ("heart", "yellow"), ("diamond", "green"), ("ring", "blue"))


def world_prompts(kind: str, attributes: dict | None = None) -> list[EvalPrompt]:
    """The world's prompt set. Objects: "a photo of S*", 2 backgrounds, 3 named styles, 2 second objects (never
    the concept's own shape). Styles: "a painting in the style of S*", 4 contents "a red star in the style of S*".
    Every word is a world word, and with 8 vectors each prompt fits the world's 20 tokens."""
    attributes = attributes or {}
    if kind == "style":
        out = [EvalPrompt("reconstruction", "reconstruction", default_template("style"), "{} of an object")]
        for shape, colour in WORLD_STYLE_CONTENT:  # short: 8 vectors must fit the world's 20 tokens
            thing = f"{_article(colour)} {colour} {shape}"
            out.append(
                EvalPrompt(
                    f"{colour} {shape}",
                    "content",
                    f"{thing} in the style of {{}}",
                    f"{{}} of {thing}",
                    {"shape": shape, "colour": colour},
                )
            )
        return out
    out = [EvalPrompt("reconstruction", "reconstruction", default_template("object"))]
    out += [
        EvalPrompt(
            f"on {bg}", "background", f"a photo of {{}} on {_article(bg)} {bg} background", expect={"background": bg}
        )
        for bg in WORLD_BACKGROUNDS
    ]
    out += [EvalPrompt(style, "style", t, expect={"style": style}) for style, t in WORLD_STYLES]
    seconds = [(s, c) for s, c in WORLD_SECOND_OBJECTS if s != attributes.get("shape")][:2]
    out += [
        EvalPrompt(
            f"and {c} {s}", "composition", f"a photo of {{}} and {_article(c)} {c} {s}", expect={"second": (s, c)}
        )
        for s, c in seconds
    ]
    return out


def paper_prompts(kind: str) -> list[EvalPrompt]:
    return _paper_style_prompts() if kind == "style" else _paper_object_prompts()


def custom_prompts(texts: list[str], kind: str, world: bool = False) -> list[EvalPrompt]:
    """User prompts with S* (or {}) where the concept goes; the reconstruction prompt is kept first."""
    out = [(world_prompts if world else paper_prompts)(kind)[0]]
    for t in texts:
        template = t.replace(PLACEHOLDER, "{}")
        if template.count("{}") != 1:
            raise OnewordError(f"prompt {t!r} must contain {PLACEHOLDER} exactly once (where the concept goes)")
        out.append(EvalPrompt(t, "custom", template))
    return out


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def strip_placeholder(text: str, token: str, n_vectors: int | None = None) -> str:
    """The prompt with the learned word removed: `token` and every `token_<i>` vector token, then the
    spaces collapsed ("a photo of <c> <c>_1 on the moon" -> "a photo of on the moon")."""
    pattern = re.escape(token) + r"(?:_\d+)?"
    if n_vectors is not None:  # only the vector tokens that exist, in diffusers' naming
        from .concept import vector_token_names

        pattern = "|".join(re.escape(t) for t in sorted(vector_token_names(token, n_vectors), key=len, reverse=True))
    out = re.sub(rf"(?<!\S)(?:{pattern})(?!\S)", " ", text)
    return " ".join(out.split())


# ---------------------------------------------------------------------------------------------- sampling
@contextmanager
def temporary_words(model, concepts):
    """Give the model the learned words of `concepts` for the duration (tokens `tok, tok_1, ...` as diffusers
    names them); yields a tokenizer that knows them. The model and its tokenizer are left untouched."""
    from .install import _already_installed
    from .invert import learned_words

    # a word `generate` or `install_concepts` already put into this model with these very vectors is used as it is
    concepts = [c for c in concepts if not _already_installed(model.pipe, c)]
    if not concepts:
        yield model.family.tokenizer_for([e.tokenizer for e in model.family.encoders(model.pipe)])
        return
    words = [(c.token, model.family.word_vectors(model.pipe, c).float().to(model.device)) for c in concepts]
    with learned_words(model, words) as tokenizer:
        yield tokenizer


@contextmanager
def sampling_scheduler(model, name: str = "ddim"):
    """Temporarily sample with DDIM (the official evaluation), built from the model's own schedule."""
    if name == "model":
        yield
        return
    from diffusers import DDIMScheduler

    old = model.pipe.scheduler
    model.pipe.scheduler = DDIMScheduler.from_config(old.config)
    try:
        yield
    finally:
        model.pipe.scheduler = old


@torch.no_grad()
def sample(
    model,
    prompt: str,
    concepts=(),
    n: int = 64,
    steps: int = 50,
    guidance: float = 5.0,
    seed: int = 0,
    batch: int = 16,
    scheduler: str = "ddim",
    tokenizer=None,
) -> list:
    """n images of `prompt` (which may use the learned tokens of `concepts`); image i uses seed + i, as
    `oneword generate` does, so every prompt and every method sees the same noise. `tokenizer`: one yielded
    by an enclosing `temporary_words(model, concepts)` (saves installing the words for every prompt)."""
    from contextlib import nullcontext

    from .install import expand_prompt
    from .sampling import encode_prompts, finite_images, generators, per_seed

    words = nullcontext(tokenizer) if tokenizer is not None else temporary_words(model, concepts)
    with words as tok, sampling_scheduler(model, scheduler):
        text = expand_prompt(prompt, list(concepts))
        _check_length(tok, text, prompt)
        embeds = {k: v.to(model.dtype) for k, v in encode_prompts(model, tok, [text]).items()}

        def draw(seeds):
            k = len(seeds)
            images = model.pipe(
                **{name: e.expand(k, *e.shape[1:]) for name, e in embeds.items()},
                num_inference_steps=steps,
                guidance_scale=guidance,
                generator=generators(seeds),
                height=model.resolution,
                width=model.resolution,
                output_type="np",
            ).images
            finite_images(images, concepts)  # NaN pixels would be scored as black images
            return model.pipe.numpy_to_pil(images)

        return per_seed(n, seed, batch, draw)


def _check_length(tokenizer, text: str, prompt: str) -> None:
    n = len(tokenizer(text).input_ids)
    if n > tokenizer.model_max_length:
        raise OnewordError(
            f"prompt {prompt!r} needs {n} tokens with the learned word's vectors; this model reads "
            f"{tokenizer.model_max_length} (use a shorter prompt or fewer vectors)"
        )


# ---------------------------------------------------------------------------------------------- evaluate
@dataclass
class EvalConfig:
    n: int = 64  # samples per prompt (the paper: 64)
    steps: int = 50  # DDIM steps (the paper: 50)
    guidance: float = 5.0  # classifier-free guidance (the paper: 5)
    seed: int = 0
    scheduler: str = "ddim"  # "ddim" (official) or "model" (the model's own scheduler)
    batch: int = 16
    bootstrap: int = 2000
    grid_cols: int = 8


@dataclass
class Subject:
    """What is put in place of S*: a learned word (concept) or a human caption."""

    label: str
    concept: object = None
    caption: str | None = None

    @property
    def kind(self) -> str:
        return "caption" if self.concept is None else "learned"

    def phrase(self) -> str:
        return self.caption if self.concept is None else self.concept.token

    def concepts(self) -> list:
        return [] if self.concept is None else [self.concept]


def learned(concept) -> Subject:
    return Subject(concept.token, concept=concept)


def captioned(caption: str) -> Subject:
    if not caption or not caption.strip():
        raise OnewordError('--caption is empty; give the words you would use, e.g. --caption "a small teal ring"')
    return Subject(f'"{caption.strip()}"', caption=caption.strip())


class Evaluator:
    """Holds the judge's view of the training photos; evaluates any number of subjects on the same
    prompts, seeds and judge."""

    def __init__(
        self,
        model,
        photos,
        judge,
        kind: str = "object",
        prompts: list[EvalPrompt] | str = "auto",
        config: EvalConfig | None = None,
        attributes: dict | None = None,
    ):
        if kind not in ("object", "style"):
            raise OnewordError(f"unknown concept kind {kind!r}: object or style")
        self.model, self.judge, self.kind = model, judge, kind
        self.cfg = config or EvalConfig()
        if self.cfg.n < 1:
            raise OnewordError("-n must be at least 1")
        self.photos = _read_photos(photos)
        self.photo_features = judge.image_features(self.photos)
        self.ceiling = self_similarity(self.photo_features)
        self.has_oracle = callable(getattr(judge, "oracle", None))
        self.attributes = attributes
        if self.has_oracle and self.attributes is None:
            self.attributes = target_attributes(judge.oracle(self.photos), kind)
        if prompts is None or isinstance(prompts, str):  # a named set: "auto", "paper" or "world"
            world = prompts == "world" or (prompts in (None, "auto") and is_world_model(model))
            prompts = world_prompts(kind, self.attributes) if world else paper_prompts(kind)
        if not prompts or prompts[0].group != "reconstruction":
            raise OnewordError("the prompt set must start with the reconstruction prompt")
        self.prompts = prompts
        self._texts: dict[str, torch.Tensor] = {}  # encoded edit texts (the same for every subject)

    def evaluate(self, subject: Subject, keep_images: bool = False) -> dict:
        cfg = self.cfg
        rows, images_by_prompt = [], {}
        text_cache = self._texts
        with temporary_words(self.model, subject.concepts()) as tokenizer:
            for i, p in enumerate(self.prompts):
                if getattr(self, "on_prompt", None):  # progress for a person waiting (oneword evaluate)
                    self.on_prompt(subject, i, p)
                rows.append(self._one(subject, i, p, tokenizer, text_cache, images_by_prompt, keep_images))
        result = {
            "subject": subject.label,
            "kind": subject.kind,
            "phrase": subject.phrase(),
            "vectors": 0 if subject.concept is None else int(len(subject.concept.vectors)),
            "prompts": rows,
            **aggregate(rows, cfg.bootstrap, cfg.seed),
        }
        if keep_images:
            result["images"] = images_by_prompt
        return result

    def _one(self, subject, i, p, tokenizer, text_cache, images_by_prompt, keep_images) -> dict:
        """Sample one prompt for one subject and score it."""
        cfg = self.cfg
        prompt = p.fill(subject.phrase(), caption=subject.kind == "caption")
        images = sample(
            self.model,
            prompt,
            subject.concepts(),
            n=cfg.n,
            steps=cfg.steps,
            guidance=cfg.guidance,
            seed=cfg.seed,
            batch=cfg.batch,
            scheduler=cfg.scheduler,
            tokenizer=tokenizer,
        )
        feats = self.judge.image_features(images)
        row = {"name": p.name, "group": p.group, "prompt": prompt}
        if p.group == "reconstruction":
            scores = reconstruction_scores(feats, self.photo_features)
            row["metric"] = "image-image"
        else:
            text = strip_placeholder(p.template.format(PLACEHOLDER), PLACEHOLDER)  # the same text for every subject
            if text not in text_cache:
                text_cache[text] = self.judge.text_features([text])[0]
            scores = text_scores(feats, text_cache[text])
            row["metric"] = "text-image"
            row["text"] = text
        row["score"] = summary(scores, n_boot=cfg.bootstrap, seed=cfg.seed + i)
        row["samples"] = [round(float(s), 6) for s in scores]
        if self.has_oracle:
            labels = self.judge.oracle(images)
            present = concept_present(labels, self.attributes, self.kind)
            row["present"] = summary(present, n_boot=cfg.bootstrap, seed=cfg.seed + i)
            row["present_samples"] = present.astype(int).tolist()
            applied = edit_applied(labels, p.expect)
            if applied is not None:
                row["edit_applied"] = summary(applied, n_boot=cfg.bootstrap, seed=cfg.seed + i)
                row["edit_samples"] = applied.astype(int).tolist()
            row["labels"] = labels
        if keep_images:
            images_by_prompt[p.name] = images
        return row

    def header(self) -> dict:
        return {
            "config": asdict(self.cfg),
            "kind": self.kind,
            "photos": len(self.photos),
            "reconstruction_ceiling": self.ceiling,
            "target_attributes": self.attributes,
            "judge": getattr(self.judge, "name", type(self.judge).__name__),
            "model": self.model.identity,
            "prompts": [{"name": p.name, "group": p.group, "template": p.template} for p in self.prompts],
        }


def aggregate(rows: list[dict], n_boot: int = 2000, seed: int = 0) -> dict:
    """Reconstruction (the reconstruction prompt), editability (mean over the edit prompts, stratified
    bootstrap) and, with an oracle, presence and edit accuracies."""
    rec = rows[0]
    edits = rows[1:]
    out = {"reconstruction": rec["score"]}
    if edits:
        out["editability"] = summary([r["samples"] for r in edits], n_boot=n_boot, seed=seed + 101)
    if "present" in rec:
        out["present_reconstruction"] = rec["present"]
        if edits:
            out["present_edits"] = summary([r["present_samples"] for r in edits], n_boot=n_boot, seed=seed + 102)
        applied = [r["edit_samples"] for r in edits if "edit_samples" in r]
        if applied:
            out["edit_applied"] = summary(applied, n_boot=n_boot, seed=seed + 103)
            both = [
                (np.asarray(r["edit_samples"]) * np.asarray(r["present_samples"])).tolist()
                for r in edits
                if "edit_samples" in r
            ]
            out["edit_and_present"] = summary(both, n_boot=n_boot, seed=seed + 104)
    return out


def _read_photos(photos) -> list:
    from PIL import Image

    if isinstance(photos, (list, tuple)) and photos and all(isinstance(p, Image.Image) for p in photos):
        return [p.convert("RGB") for p in photos]
    from .data import read_photos

    return read_photos(photos)


def evaluate(
    model,
    photos,
    subjects,
    judge=None,
    kind: str = "object",
    config: EvalConfig | None = None,
    prompts: list[EvalPrompt] | str = "auto",
    attributes: dict | None = None,
    keep_images: bool = False,
) -> dict:
    """Evaluate learned words and/or captions (`Subject`s, or Concepts, or caption strings) on one concept's
    training photos. Returns {header..., "results": [per subject]}."""
    judge = judge if judge is not None else load_judge(None, model)
    ev = Evaluator(model, photos, judge, kind, prompts, config, attributes)
    subs = [s if isinstance(s, Subject) else captioned(s) if isinstance(s, str) else learned(s) for s in subjects]
    return {**ev.header(), "results": [ev.evaluate(s, keep_images) for s in subs]}


# ---------------------------------------------------------------------------------------------- reports
def fmt(s: dict | None, digits: int = 3) -> str:
    if not s:
        return "-"
    return f"{s['mean']:.{digits}f} [{s['ci'][0]:.{digits}f}, {s['ci'][1]:.{digits}f}]"


def table(report: dict) -> str:
    """The terminal table: one summary line per subject, then per-prompt scores."""
    results = report["results"]
    oracle = any("present_reconstruction" in r for r in results)
    head = ["subject", "reconstruction", "editability"] + (["present", "edit applied"] if oracle else [])
    lines = [head]
    for r in results:
        row = [r["subject"], fmt(r["reconstruction"]), fmt(r.get("editability"))]
        if oracle:
            row += [fmt(r.get("present_reconstruction"), 2), fmt(r.get("edit_applied"), 2)]
        lines.append(row)
    out = [_columns(lines)]
    out.append(
        f"(reconstruction: mean CLIP image-image cosine to the {report['photos']} training photos; "
        f"their own mutual similarity is {report['reconstruction_ceiling']:.3f}. "
        f"95% bootstrap intervals; n={report['config']['n']} per prompt, {report['config']['steps']} "
        f"{report['config']['scheduler'].upper()} steps, guidance {report['config']['guidance']:g}, "
        f"judge {report['judge']})"
    )
    per = [["prompt"] + [r["subject"] for r in results]]
    for i, p in enumerate(results[0]["prompts"]):
        cells = [f"{p['group']}: {p['name']}" if p["group"] != "reconstruction" else "reconstruction"]
        for r in results:
            q = r["prompts"][i]
            extra = ""
            if "present" in q:
                extra = f"  present {q['present']['mean']:.2f}"
                if "edit_applied" in q:
                    extra += f" edit {q['edit_applied']['mean']:.2f}"
            cells.append(fmt(q["score"]) + extra)
        per.append(cells)
    out.append("")
    out.append(_columns(per))
    return "\n".join(out)


def _columns(rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def sample_grid(result: dict, cols: int = 8):
    """One row per prompt, up to `cols` samples each."""
    from .sampling import make_grid

    rows = list(result["images"].values())
    k = min(cols, min(len(r) for r in rows))
    return make_grid([im for r in rows for im in r[:k]], cols=k)


def write_report(report: dict, out_dir) -> dict[str, Path]:
    """evaluation.json, table.txt and one sample grid per subject (samples.png, samples_<i>.png)."""
    from .safeio import atomic_save_image, atomic_write_json, atomic_write_text

    out = Path(out_dir)
    paths = {}
    for i, r in enumerate(report["results"]):
        if "images" in r:
            p = out / ("samples.png" if i == 0 else f"samples_{i}.png")
            atomic_save_image(p, sample_grid(r, report["config"].get("grid_cols", 8)))
            r["grid"] = str(p)
            paths[f"grid_{i}"] = p
    clean = {**report, "results": [{k: v for k, v in r.items() if k != "images"} for r in report["results"]]}
    paths["json"] = atomic_write_json(out / "evaluation.json", clean)
    paths["table"] = atomic_write_text(out / "table.txt", table(report) + "\n")
    return paths
