"""The world: a procedural renderer of captioned scenes (pure numpy + Pillow).

A `Scene` holds one or two `Obj`s (shape, colour, pattern, size, position), a background and a rendering
style. Some values have a word in the world's language (NAMED_*), some do not (UNNAMED_*): the world holds
more than its language can name. `caption(scene, rng)` describes a scene with the words that exist; an
un-named colour is left out, an un-named shape is called "object", an un-named style or pattern is not
mentioned. Two-object scenes put one object in the left half and one in the right half.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# ---------------------------------------------------------------------------------------------- values
NAMED_SHAPES = ("circle", "square", "triangle", "star", "ring", "cross", "heart", "diamond", "balloon")
UNNAMED_SHAPES = ("crescent", "arrow", "hourglass")
SHAPES = NAMED_SHAPES + UNNAMED_SHAPES

COLOURS = {  # name -> RGB
    "red": (215, 35, 35),
    "orange": (245, 135, 20),
    "yellow": (245, 215, 30),
    "green": (40, 165, 55),
    "blue": (35, 75, 225),
    "purple": (125, 40, 175),
    "pink": (250, 140, 200),
    "brown": (125, 75, 30),
    # un-named: between named ones
    "teal": (0, 160, 160),
    "lime": (165, 230, 40),
    "magenta": (215, 0, 200),
}
NAMED_COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown")
UNNAMED_COLOURS = ("teal", "lime", "magenta")
# The two named colours a person might call an un-named one ("is that blue or green?"). Used only by
# caption(hedge=p > 0): a way to give text a handle on un-named colours without a name (docs/world.md).
NEAREST_NAMED = {"teal": ("blue", "green"), "lime": ("green", "yellow"), "magenta": ("pink", "purple")}

BACKGROUNDS = ("white", "black", "gray", "sky", "grass", "sand")
NAMED_STYLES = ("photo", "sketch", "pixel", "painting")
UNNAMED_STYLES = ("halftone", "hatched", "glitch")
STYLES = NAMED_STYLES + UNNAMED_STYLES
PATTERNS = ("solid", "striped", "dotted")  # only "solid" is the default; the others have no word
# The judge's language (judge.py): the world's words plus a name for every value the world leaves un-named,
# as a real CLIP judge knows words the generator cannot draw. Only the judge's CLIP ever reads them.
JUDGE_ONLY_WORDS = UNNAMED_COLOURS + UNNAMED_SHAPES + PATTERNS[1:] + UNNAMED_STYLES
SIZES = ("small", "large")

# The deliberately biased word: a balloon is red 90% of the time in pretraining.
BIASED_SHAPE, BIASED_COLOUR, BIAS_RATE = "balloon", "red", 0.9

# Attribute combinations never shown in pretraining (compositional generalisation is tested on them).
HELD_OUT_SHAPE_COLOUR = (
    ("star", "blue"),
    ("ring", "yellow"),
    ("heart", "green"),
    ("square", "purple"),
    ("triangle", "pink"),
    ("circle", "orange"),
    ("cross", "brown"),
    ("diamond", "red"),
)
HELD_OUT_SHAPE_STYLE = (
    ("star", "pixel"),
    ("heart", "sketch"),
    ("circle", "painting"),
    ("ring", "photo"),
    ("triangle", "painting"),
    ("cross", "pixel"),
)
HELD_OUT_COLOUR_BACKGROUND = (
    ("red", "sky"),
    ("blue", "sand"),
    ("yellow", "black"),
    ("green", "white"),
    ("purple", "grass"),
    ("orange", "gray"),
)

STYLE_PHRASES = {
    "photo": (
        "a photo of",
        "a good photo of",
        "a close-up photo of",
        "a cropped photo of",
        "a bright photo of",
        "the photo of",
    ),
    "sketch": ("a sketch of", "a drawing of", "a pencil sketch of"),
    "pixel": ("pixel art of", "a pixel art of", "a pixel drawing of"),
    "painting": ("a painting of", "an oil painting of", "a painting of"),
}
GENERIC_PHRASES = ("a picture of", "an illustration of", "a rendering of", "a depiction of", "an image of")
EDIT_WORDS = (
    "with",
    "next",
    "to",
    "beside",
    "in",
    "style",
    "background",
    "and",
    "an",
    "the",
    "object",
    "picture",
    "image",
    "pencil",
    "oil",
    "drawing",
    "art",
)


def world_words() -> list[str]:
    """Every word of the world's language (the shipped tokenizer has each as one token)."""
    from ..templates import template_words

    words = set(NAMED_SHAPES) | set(NAMED_COLOURS) | set(BACKGROUNDS) | set(SIZES) | {"object", "a", "an", "and", "on"}
    for p in list(STYLE_PHRASES.values()) + [GENERIC_PHRASES]:
        for s in p:
            words.update(s.split())
    words.update(EDIT_WORDS)
    words.update(template_words())
    words = {x for w in words for x in w.replace("-", " ").split()}  # CLIP splits "close-up" into close - up
    return sorted(words)


# ---------------------------------------------------------------------------------------------- scenes
@dataclass(frozen=True)
class Obj:
    shape: str
    colour: str
    pattern: str = "solid"
    size: str = "large"
    x: float = 0.5  # centre, fraction of the image
    y: float = 0.5
    rot: float = 0.0  # degrees


@dataclass(frozen=True)
class Scene:
    objects: tuple[Obj, ...]
    background: str = "white"
    style: str = "photo"

    @property
    def count(self) -> int:
        return len(self.objects)

    def attributes(self) -> dict[str, str]:
        """Ground-truth labels in the oracle's terms (object 1 = the only/left object, object 2 = right)."""
        a = self.objects[0]
        b = self.objects[1] if len(self.objects) > 1 else None
        return {
            "shape": a.shape,
            "colour": a.colour,
            "pattern": a.pattern,
            "size": a.size if b is None else "none",
            "background": self.background,
            "style": self.style,
            "count": str(len(self.objects)),
            "shape2": b.shape if b else "none",
            "colour2": b.colour if b else "none",
        }


def _rng(rng) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def _choice(rng, seq, p=None):
    return seq[int(rng.choice(len(seq), p=p))]


HELD_OUT_KINDS = (("shape", "colour"), ("shape", "style"), ("colour", "background"))


def held_out_kinds(scene: Scene, index: int = 0) -> list[tuple[str, str]]:
    """The kinds of held-out combination that object `index` of the scene shows, in HELD_OUT_KINDS order."""
    o = scene.objects[index]
    found = (
        (o.shape, o.colour) in HELD_OUT_SHAPE_COLOUR,
        (o.shape, scene.style) in HELD_OUT_SHAPE_STYLE,
        (o.colour, scene.background) in HELD_OUT_COLOUR_BACKGROUND,
    )
    return [k for k, hit in zip(HELD_OUT_KINDS, found) if hit]


def held_out_pairs(scene: Scene) -> bool:
    """True if the scene shows any held-out attribute combination."""
    return any(held_out_kinds(scene, i) for i in range(len(scene.objects)))


def _place(rng, count, size_words):
    if count == 1:
        s = size_words[0]
        half = 0.21 if s == "small" else 0.32
        return [(float(rng.uniform(half, 1 - half)), float(rng.uniform(half, 1 - half)))]
    return [
        (float(rng.uniform(0.22, 0.28)), float(rng.uniform(0.25, 0.75))),
        (float(rng.uniform(0.72, 0.78)), float(rng.uniform(0.25, 0.75))),
    ]


def random_scene(
    rng=None,
    *,
    named_only: bool = False,
    count: int | None = None,
    p_unnamed: float = 0.15,
    shape: str | None = None,
    colour: str | None = None,
    pattern: str | None = None,
    background: str | None = None,
    style: str | None = None,
    size: str | None = None,
    biased: bool = True,
) -> Scene:
    """Sample a scene. Given attributes are fixed (for object 1); the rest are drawn.

    named_only: only values that have a word (no un-named colours, shapes, patterns or styles).
    biased: a balloon without a fixed colour is red with probability BIAS_RATE.
    """
    rng = _rng(rng)
    if count is None:
        count = 1 if rng.random() < 0.7 else 2
    pu = 0.0 if named_only else p_unnamed

    def draw_obj(fix_shape=None, fix_colour=None, fix_pattern=None):
        sh = fix_shape or (_choice(rng, UNNAMED_SHAPES) if rng.random() < pu else _choice(rng, NAMED_SHAPES))
        if fix_colour:
            co = fix_colour
        elif biased and sh == BIASED_SHAPE and rng.random() < BIAS_RATE:
            co = BIASED_COLOUR
        elif rng.random() < pu:
            co = _choice(rng, UNNAMED_COLOURS)
        else:
            co = _choice(rng, NAMED_COLOURS)
        pa = fix_pattern or (_choice(rng, PATTERNS[1:]) if rng.random() < pu else "solid")
        return sh, co, pa

    bg = background or _choice(rng, BACKGROUNDS)
    st = style or (_choice(rng, UNNAMED_STYLES) if rng.random() < (pu * 0.8) else _choice(rng, NAMED_STYLES))
    specs = [draw_obj(shape, colour, pattern)]
    if count == 2:
        while True:
            s2 = draw_obj()
            if (s2[0], s2[1]) != (specs[0][0], specs[0][1]):
                break
        specs.append(s2)
    sizes = [size or _choice(rng, SIZES)] if count == 1 else ["small", "small"]
    pos = _place(rng, count, sizes)
    objs = tuple(
        Obj(sh, co, pa, sizes[0] if count == 1 else "small", x, y, float(rng.uniform(-12, 12)))
        for (sh, co, pa), (x, y) in zip(specs, pos)
    )
    return Scene(objs, bg, st)


# ---------------------------------------------------------------------------------------------- captions
def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def object_phrase(
    o: Obj, rng, with_size: bool, with_colour: bool = True, hedge: float = 0.0, name_all: bool = False
) -> str:
    words = []
    if with_size:
        words.append(o.size)
    if name_all and o.pattern != "solid":
        words.append(o.pattern)
    if with_colour and (o.colour in NAMED_COLOURS or name_all):
        words.append(o.colour)
    elif with_colour and hedge and o.colour in NEAREST_NAMED and rng.random() < hedge:
        words.append(_choice(rng, NEAREST_NAMED[o.colour]))
    words.append(o.shape if o.shape in NAMED_SHAPES or name_all else "object")
    return f"{_article(words[0])} {' '.join(words)}"


def caption(scene: Scene, rng=None, *, full: bool = False, hedge: float = 0.0, name_all: bool = False) -> str:
    """A caption of the scene in world words (random template); full=True: mention every named attribute.
    hedge: probability that an un-named colour is called one of its two nearest named colours (default 0:
    un-named colours are never mentioned: the world's design).
    name_all: the judge's language: un-named values are named too (JUDGE_ONLY_WORDS; "a halftone picture of a
    striped teal crescent"). The generator never reads such a caption."""
    rng = _rng(rng)
    named_style = scene.style in NAMED_STYLES or name_all
    if named_style and (full or rng.random() < 0.8):
        if scene.style in NAMED_STYLES:
            lead = STYLE_PHRASES[scene.style][0] if full else _choice(rng, STYLE_PHRASES[scene.style])
        else:
            lead = f"{_article(scene.style)} {scene.style} picture of"
    else:
        lead = GENERIC_PHRASES[0] if full else _choice(rng, GENERIC_PHRASES)
    if not full and rng.random() < 0.04:
        return f"{lead} an object"
    objs = list(scene.objects)
    if len(objs) == 1:
        body = object_phrase(
            objs[0],
            rng,
            with_size=full or rng.random() < 0.5,
            with_colour=full or rng.random() < 0.9,
            hedge=hedge,
            name_all=name_all,
        )
    else:
        if not full and rng.random() < 0.5:
            objs = objs[::-1]
        body = " and ".join(
            object_phrase(o, rng, False, with_colour=full or rng.random() < 0.95, hedge=hedge, name_all=name_all)
            for o in objs
        )
    if full or rng.random() < 0.85:
        body += f" on {_article(scene.background)} {scene.background} background"
    return f"{lead} {body}"


def prompt_for(scene: Scene) -> str:
    """The canonical full prompt for a scene (used by the evaluation)."""
    return caption(scene, 0, full=True)


# ---------------------------------------------------------------------------------------------- drawing
SS = 4  # supersampling factor for anti-aliased shapes


def _poly(points, cx, cy, r, rot):
    c, s = math.cos(math.radians(rot)), math.sin(math.radians(rot))
    return [(cx + r * (px * c - py * s), cy + r * (px * s + py * c)) for px, py in points]


def _star_pts(n=5, inner=0.45):
    pts = []
    for i in range(2 * n):
        a = -math.pi / 2 + i * math.pi / n
        rr = 1.0 if i % 2 == 0 else inner
        pts.append((rr * math.cos(a), rr * math.sin(a)))
    return pts


def _heart_pts(k=40):
    pts = []
    for i in range(k):
        t = 2 * math.pi * i / k
        x = 16 * math.sin(t) ** 3
        y = -(13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t))
        pts.append((x / 17.0, (y + 2.5) / 17.0))
    return pts


_SHAPE_POLYS = {
    "square": [(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)],
    "triangle": [(0, -0.95), (0.95, 0.75), (-0.95, 0.75)],
    "star": _star_pts(),
    "cross": [
        (-0.3, -0.95),
        (0.3, -0.95),
        (0.3, -0.3),
        (0.95, -0.3),
        (0.95, 0.3),
        (0.3, 0.3),
        (0.3, 0.95),
        (-0.3, 0.95),
        (-0.3, 0.3),
        (-0.95, 0.3),
        (-0.95, -0.3),
        (-0.3, -0.3),
    ],
    "heart": _heart_pts(),
    "diamond": [(0, -1.0), (0.62, 0), (0, 1.0), (-0.62, 0)],
    "arrow": [(-0.95, -0.25), (0.15, -0.25), (0.15, -0.7), (0.95, 0), (0.15, 0.7), (0.15, 0.25), (-0.95, 0.25)],
    "hourglass": [(-0.75, -0.9), (0.75, -0.9), (0.1, 0), (0.75, 0.9), (-0.75, 0.9), (-0.1, 0)],
}


def shape_mask(shape: str, cx: float, cy: float, r: float, rot: float, size: int) -> np.ndarray:
    """Anti-aliased mask in [0,1] of one shape, centre (cx,cy) and radius r in pixels of a size x size image."""
    S = size * SS
    im = Image.new("L", (S, S), 0)
    d = ImageDraw.Draw(im)
    cx, cy, r = cx * SS, cy * SS, r * SS
    if shape == "circle":
        d.ellipse([cx - 0.9 * r, cy - 0.9 * r, cx + 0.9 * r, cy + 0.9 * r], fill=255)
    elif shape == "ring":
        d.ellipse([cx - 0.95 * r, cy - 0.95 * r, cx + 0.95 * r, cy + 0.95 * r], fill=255)
        d.ellipse([cx - 0.5 * r, cy - 0.5 * r, cx + 0.5 * r, cy + 0.5 * r], fill=0)
    elif shape == "crescent":
        d.ellipse([cx - 0.9 * r, cy - 0.9 * r, cx + 0.9 * r, cy + 0.9 * r], fill=255)
        ox, oy = _poly([(0.45, -0.25)], cx, cy, r, rot)[0]
        d.ellipse([ox - 0.75 * r, oy - 0.75 * r, ox + 0.75 * r, oy + 0.75 * r], fill=0)
    elif shape == "balloon":
        d.ellipse([cx - 0.62 * r, cy - 0.98 * r, cx + 0.62 * r, cy + 0.5 * r], fill=255)
        d.polygon([(cx, cy + 0.45 * r), (cx + 0.16 * r, cy + 0.62 * r), (cx - 0.16 * r, cy + 0.62 * r)], fill=255)
        d.line(
            [(cx, cy + 0.6 * r), (cx + 0.12 * r, cy + 0.8 * r), (cx - 0.05 * r, cy + 1.0 * r)],
            fill=255,
            width=max(1, int(0.09 * r)),
        )
    else:
        d.polygon(_poly(_SHAPE_POLYS[shape], cx, cy, r, rot), fill=255)
    im = im.resize((size, size), Image.BOX)
    return np.asarray(im, dtype=np.float32) / 255.0


def _smooth_noise(rng, size, cells, amp):
    n = rng.normal(0, 1, (cells, cells, 3)).astype(np.float32)
    im = Image.fromarray(np.uint8(np.clip(n * 40 + 128, 0, 255)))
    up = np.asarray(im.resize((size, size), Image.BICUBIC), dtype=np.float32)
    return (up - 128) / 40 * amp


def background_image(bg: str, size: int, rng) -> np.ndarray:
    yy = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
    j = rng.uniform(-10, 10)
    if bg == "white":
        im = np.full((size, size, 3), 238 + j * 0.6, np.float32)
    elif bg == "black":
        im = np.full((size, size, 3), 28 + j * 0.6, np.float32)
    elif bg == "gray":
        im = np.full((size, size, 3), 128 + j, np.float32)
    elif bg == "sky":
        top, bot = np.array([95, 160, 235]), np.array([175, 215, 250])
        im = (top + (bot - top) * yy + j).astype(np.float32) * np.ones((1, size, 1), np.float32)
    elif bg == "grass":
        im = np.array([70, 125, 45], np.float32) + j + np.zeros((size, size, 3), np.float32)
        blades = rng.random((size, size)) < 0.18
        im[blades] *= 0.7
    elif bg == "sand":
        im = np.array([225, 195, 140], np.float32) + j + np.zeros((size, size, 3), np.float32)
        im += rng.normal(0, 7, (size, size, 1))
    else:
        raise ValueError(f"unknown background {bg!r}")
    return im


def _fill(o: Obj, size: int, rng, mask_bbox) -> np.ndarray:
    base = np.array(COLOURS[o.colour], np.float32) + rng.uniform(-12, 12, 3)
    fill = np.broadcast_to(base, (size, size, 3)).copy()
    if o.pattern != "solid":
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        light = base * 0.35 + 255 * 0.65
        if o.pattern == "striped":
            on = (xx + yy) // 2.5 % 2 == 0
        else:
            on = (xx % 4 < 2) & (yy % 4 < 2)
        fill[on] = light
    return fill


def render_scene(scene: Scene, size: int = 32, rng=None) -> Image.Image:
    """Render a scene to an RGB PIL image of size x size pixels (deterministic for a given seed)."""
    rng = _rng(rng)
    style = scene.style
    work = 16 if style == "pixel" else size
    img = background_image(scene.background, size, rng)
    if style == "painting":
        img = img + _smooth_noise(rng, size, 6, 10)
    for o in scene.objects:
        r = (0.2 if o.size == "small" else 0.31) * size * rng.uniform(0.93, 1.07)
        m = shape_mask(o.shape, o.x * size, o.y * size, r, o.rot, size)
        fill = _fill(o, size, rng, None)
        if style in ("photo", "halftone", "hatched", "glitch"):
            # soft drop shadow and top-left lighting
            sh = np.roll(np.roll(m, 1, 0), 1, 1)[..., None]
            img = img * (1 - 0.35 * sh)
            yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
            d = ((xx - (o.x * size - r * 0.4)) ** 2 + (yy - (o.y * size - r * 0.4)) ** 2) ** 0.5 / (2 * r)
            fill = fill * (1.12 - 0.3 * np.clip(d, 0, 1))[..., None]
            img = img * (1 - m[..., None]) + fill * m[..., None]
        elif style == "sketch":
            mi = Image.fromarray(np.uint8(m * 255))
            outer = np.asarray(mi.filter(ImageFilter.MaxFilter(3)), np.float32) / 255
            inner = np.asarray(mi.filter(ImageFilter.MinFilter(3)), np.float32) / 255
            edge = np.clip(outer - inner, 0, 1)[..., None]
            img = img * (1 - 0.3 * m[..., None]) + fill * 0.3 * m[..., None]
            img = img * (1 - edge) + fill * 0.8 * edge
        elif style == "pixel":
            img = img * (1 - m[..., None]) + fill * m[..., None]
        elif style == "painting":
            mi = Image.fromarray(np.uint8(m * 255)).filter(ImageFilter.GaussianBlur(0.7))
            mm = np.asarray(mi, np.float32)[..., None] / 255
            fill = fill + _smooth_noise(rng, size, 5, 22)
            img = img * (1 - mm) + fill * mm
    img = np.clip(img, 0, 255)
    if style == "pixel":
        small = Image.fromarray(np.uint8(img)).resize((work, work), Image.BOX)
        q = (np.asarray(small, np.float32) // 32) * 32 + 16
        img = np.asarray(Image.fromarray(np.uint8(np.clip(q, 0, 255))).resize((size, size), Image.NEAREST), np.float32)
    elif style == "painting":
        pil = Image.fromarray(np.uint8(img)).filter(ImageFilter.GaussianBlur(0.5))
        img = np.asarray(pil, np.float32)
        # brush strokes: short horizontal smears
        strokes = rng.random((size, size)) < 0.25
        img[:, 1:][strokes[:, 1:]] = img[:, :-1][strokes[:, 1:]]
    elif style == "halftone":
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        dots = (((xx % 3) - 1) ** 2 + ((yy % 3) - 1) ** 2) <= 1.0
        img = img * np.where(dots, 1.0, 0.6)[..., None]
    elif style == "hatched":
        yy, xx = np.mgrid[0:size, 0:size]
        lines = (xx - yy) % 4 == 0
        img = img * np.where(lines, 0.4, 1.0)[..., None]
    elif style == "glitch":
        img = img.copy()
        for _ in range(2):
            y0 = int(rng.integers(0, size - 3))
            h = int(rng.integers(2, 4))
            img[y0 : y0 + h] = np.roll(img[y0 : y0 + h], int(rng.choice([-2, 2])), axis=1)
        img[..., 0] = np.roll(img[..., 0], 1, axis=1)
        img[..., 2] = np.roll(img[..., 2], -1, axis=1)
    if style in ("photo", "halftone", "hatched", "glitch", "sketch"):
        img = img + rng.normal(0, 3, img.shape)
    return Image.fromarray(np.uint8(np.clip(img, 0, 255)), "RGB")


def render_array(scenes, size: int = 32, seed: int = 0) -> np.ndarray:
    """Render many scenes into a uint8 array [n, size, size, 3] (seeded per index)."""
    out = np.empty((len(scenes), size, size, 3), np.uint8)
    for i, s in enumerate(scenes):
        out[i] = np.asarray(render_scene(s, size, np.random.default_rng([seed, i])))
    return out


def pretraining_scene(rng, excluded: set | None = None) -> Scene:
    """One scene of the pretraining distribution: no held-out combination, no novel concept as such."""
    rng = _rng(rng)
    while True:
        s = image_scene(rng, excluded)
        if not held_out_pairs(s):
            return s


def image_scene(rng, excluded: set | None = None, p_unnamed: float = 0.15) -> Scene:
    """One scene of the whole world for the judge: any combination (held-out ones too: the judge must read
    every case it measures), but no novel concept as such. p_unnamed: as in random_scene."""
    rng = _rng(rng)
    while True:
        s = random_scene(rng, p_unnamed=p_unnamed)
        if not (excluded and any((o.shape, o.colour, o.pattern) in excluded for o in s.objects)):
            return s


__all__ = [
    "JUDGE_ONLY_WORDS",
    "Obj",
    "Scene",
    "random_scene",
    "render_scene",
    "caption",
    "prompt_for",
    "world_words",
    "held_out_pairs",
    "held_out_kinds",
    "HELD_OUT_KINDS",
    "pretraining_scene",
    "image_scene",
    "render_array",
]
