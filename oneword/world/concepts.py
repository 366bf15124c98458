"""Novel concepts: things the world model can draw but no prompt can ask for (what textual inversion solves).

Each concept is a generator of "user photos" (varied position, size, background) plus its ground truth.
Object concepts have an attribute with no word (a colour between named ones, a shape with no word, a
pattern with no word); style concepts are un-named rendering styles. The exact (shape, colour, pattern)
of an object concept is never shown in pretraining (`pretraining_exclusions()`); its parts are.

HELD_OUT concepts are kept out of every test and tuning loop: use them only for final reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .render import NAMED_COLOURS, NAMED_SHAPES, NAMED_STYLES, Obj, Scene, random_scene, render_scene


@dataclass(frozen=True)
class NovelConcept:
    name: str
    kind: str  # "object" | "style"
    init_word: str
    caption: str  # best human description in world words (object: "a blue ring"; style: "a photo")
    attributes: dict = field(default_factory=dict)

    @property
    def caption_words(self) -> str:
        """The caption without its article ("blue ring"): an init text with one word per vector."""
        words = self.caption.split()
        return " ".join(words[1:] if words[0] in ("a", "an", "the") else words)

    @property
    def unnamed(self) -> dict:
        """The attributes that have no word (what the caption cannot say and the learned word must carry)."""
        a = self.attributes
        if self.kind == "style":
            return {"style": a["style"]} if a["style"] not in NAMED_STYLES else {}
        out = {"colour": a["colour"]} if a["colour"] not in NAMED_COLOURS else {}
        if a["shape"] not in NAMED_SHAPES:
            out["shape"] = a["shape"]
        if a["pattern"] != "solid":
            out["pattern"] = a["pattern"]
        return out

    def scene(self, rng) -> Scene:
        a = self.attributes
        if self.kind == "object":
            return random_scene(rng, count=1, shape=a["shape"], colour=a["colour"], pattern=a["pattern"], style="photo")
        return random_scene(rng, named_only=True, style=a["style"])

    def photos(self, n: int = 5, seed: int = 0, size: int = 32) -> list:
        """n "user photos" of the concept (PIL RGB), varied position, size and background; deterministic."""
        rng = np.random.default_rng([seed, 7919, _stable_hash(self.name)])
        out, bgs = [], []
        while len(out) < n:
            s = self.scene(rng)
            if s.background in bgs[-2:]:  # vary the backgrounds
                continue
            bgs.append(s.background)
            out.append(render_scene(s, size, rng))
        return out


def _stable_hash(s: str) -> int:
    return sum((i + 1) * ord(c) for i, c in enumerate(s)) % 100003


def _obj(name, shape, colour, pattern, init, cap):
    return NovelConcept(name, "object", init, cap, {"shape": shape, "colour": colour, "pattern": pattern})


def _style(name, style, init, cap):
    return NovelConcept(name, "style", init, cap, {"style": style})


NOVEL_CONCEPTS: dict[str, NovelConcept] = {
    c.name: c
    for c in (
        _obj("teal_ring", "ring", "teal", "solid", "ring", "a blue ring"),
        _obj("lime_star", "star", "lime", "solid", "star", "a green star"),
        _obj("magenta_heart", "heart", "magenta", "solid", "heart", "a pink heart"),
        _obj("red_crescent", "crescent", "red", "solid", "object", "a red circle"),
        _obj("blue_arrow", "arrow", "blue", "solid", "object", "a blue triangle"),
        _obj("orange_hourglass", "hourglass", "orange", "solid", "object", "an orange triangle"),
        _obj("striped_square", "square", "red", "striped", "square", "a red square"),
        _obj("dotted_circle", "circle", "blue", "dotted", "circle", "a blue circle"),
        _obj("striped_heart", "heart", "purple", "striped", "heart", "a purple heart"),
        _obj("teal_crescent", "crescent", "teal", "solid", "object", "a green object"),
        _style("style_halftone", "halftone", "painting", "a photo"),
        _style("style_hatched", "hatched", "painting", "a sketch"),
        _style("style_glitch", "glitch", "painting", "a photo"),
    )
}

# Kept out of every test and tuning loop (final reports only).
HELD_OUT: tuple[str, ...] = ("striped_heart", "teal_crescent", "style_glitch")

# More tuning concepts, added after the shipped model was pretrained, each with two un-named attributes like the
# held-out teal_crescent (every concept above has one). Unlike those above, their exact combination was not kept out
# of pretraining (that would change the pretraining data): the model saw each in 35-360 of its 96,000 pretraining
# scenes, captioned without the un-named words (experiments/world_probes/pretraining_counts.py), so they may be easier than a
# never-seen combination. Not in NOVEL_CONCEPTS: only the time-to-quality tuning uses them (`concept(name)`).
LATE_CONCEPTS: dict[str, NovelConcept] = {
    c.name: c
    for c in (
        _obj("lime_arrow", "arrow", "lime", "solid", "object", "a green object"),
        _obj("magenta_hourglass", "hourglass", "magenta", "solid", "object", "a pink object"),
        _obj("dotted_arrow", "arrow", "blue", "dotted", "object", "a blue object"),
        _obj("striped_lime_circle", "circle", "lime", "striped", "circle", "a green circle"),
        _obj("dotted_magenta_star", "star", "magenta", "dotted", "star", "a pink star"),
    )
}


# Tuning concepts as new to the model as the held-out ones: each shows a (shape, colour) pair that
# pretraining never draws (render.HELD_OUT_SHAPE_COLOUR), so the exact object occurs in 0 of the 96,000 pretraining
# scenes, and its pattern has no word. The caption names the pair; the word must carry the pattern and render a
# combination the model has never drawn. Not in NOVEL_CONCEPTS: only the time-to-quality tuning uses them.
UNSEEN_CONCEPTS: dict[str, NovelConcept] = {
    c.name: c
    for c in (
        _obj("dotted_blue_star", "star", "blue", "dotted", "star", "a blue star"),
        _obj("striped_green_heart", "heart", "green", "striped", "heart", "a green heart"),
        _obj("dotted_brown_cross", "cross", "brown", "dotted", "cross", "a brown cross"),
        _obj("striped_yellow_ring", "ring", "yellow", "striped", "ring", "a yellow ring"),
        _obj("dotted_orange_circle", "circle", "orange", "dotted", "circle", "an orange circle"),
    )
}


def concept(name: str) -> NovelConcept:
    """A novel, late or unseen tuning concept by name."""
    found = NOVEL_CONCEPTS.get(name) or LATE_CONCEPTS.get(name) or UNSEEN_CONCEPTS.get(name)
    if found is None:
        raise KeyError(f"no world concept {name!r}")
    return found


def pretraining_exclusions() -> set:
    """(shape, colour, pattern) of every object concept: never rendered as such in pretraining."""
    return {
        (c.attributes["shape"], c.attributes["colour"], c.attributes["pattern"])
        for c in NOVEL_CONCEPTS.values()
        if c.kind == "object"
    }


# ------------------------------------------------------------------------------- the biased word
BALANCED_SET = NAMED_COLOURS  # colours the fair photos cycle through


def biased_word() -> tuple[str, str]:
    """(word, colour it is biased towards in pretraining)."""
    from .render import BIASED_COLOUR, BIASED_SHAPE

    return BIASED_SHAPE, BIASED_COLOUR


def fair_photos(n: int = 8, seed: int = 0, size: int = 32) -> list:
    """Photos of the biased word's object in balanced colours (BALANCED_SET in turn), varied backgrounds."""
    word, _ = biased_word()
    rng = np.random.default_rng([seed, 4243])
    out = []
    for i in range(n):
        colour = BALANCED_SET[i % len(BALANCED_SET)]
        s = random_scene(rng, count=1, shape=word, colour=colour, pattern="solid", style="photo")
        out.append(render_scene(s, size, rng))
    return out


__all__ = [
    "NovelConcept",
    "NOVEL_CONCEPTS",
    "HELD_OUT",
    "LATE_CONCEPTS",
    "UNSEEN_CONCEPTS",
    "concept",
    "BALANCED_SET",
    "biased_word",
    "fair_photos",
    "pretraining_exclusions",
    "NAMED_STYLES",
    "Obj",
]
