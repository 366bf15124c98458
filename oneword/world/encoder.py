"""How the world model's photo encoder (oneword.photo_encoder, behind `oneword learn --init encoder`; shipped at
`oneword.world.encoder_path()`) is trained: `oneword world train-encoder`.

Training data: concepts drawn from the world's pretraining scene distribution only -- an object concept is a
(shape, colour, pattern) of a pretraining scene (never a novel concept's: those are excluded from pretraining,
`concepts.pretraining_exclusions`), shown in photos that vary position, size and background as the novel concepts'
photos do; a style concept is a named style (the un-named styles are the novel style concepts and are never used).
The features are the world CLIP's (the world judge), the loss the diffusion loss through the frozen world model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..encoder_training import train_photo_encoder
from ..photo_encoder import MAX_NORM


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
    """Train the world model's photo encoder on pretraining concepts (see the module's docstring); write it to `out`
    (default: the shipped file). `judge`: a oneword.judges world judge. Returns the training record."""
    from ..judges import load_judge
    from ..models import load_model
    from . import encoder_path

    if threads:
        torch.set_num_threads(threads)
    model = model or load_model(None, device="cpu", dtype=torch.float32)
    judge = judge or load_judge("world")
    sets, props, _ = concept_sets(n_object, n_style, photos, seed)
    record = {"concepts": {"object": n_object, "style": n_style}}
    return train_photo_encoder(
        model,
        judge,
        sets,
        props,
        out or encoder_path(),
        "world",
        minutes,
        max_steps,
        batch,
        lr,
        seed=seed,
        max_norm=max_norm,
        record=record,
        log=log,
    )
