"""`oneword demo`: the whole method offline on the embedded world, in a few minutes on two CPU cores.

Renders a novel concept's "user photos" (something the world model can draw but no word names),
learns its word with the core engine, and writes previews of the word in a plain prompt and an edit.
"""
from __future__ import annotations

import time
from pathlib import Path

from .errors import OnewordError
from .safeio import atomic_save_image

DEMO_CONCEPT = "teal_ring"


def run_demo(name: str | None, out: Path, seed: int = 0) -> dict:
    from .invert import LearnConfig, learn
    from .models import load_model
    from .run import CHECKPOINT, checkpoint_fingerprint
    from .sampling import generate, save_grid
    from .templates import default_template
    from .world.concepts import NOVEL_CONCEPTS

    name = name or DEMO_CONCEPT
    if name not in NOVEL_CONCEPTS:
        raise OnewordError(f"unknown world concept {name!r}; choose one of: {', '.join(NOVEL_CONCEPTS)}")
    concept = NOVEL_CONCEPTS[name]
    started = time.perf_counter()
    photos = concept.photos(5, seed=seed)
    for i, im in enumerate(photos):
        atomic_save_image(out / "photos" / f"{i:02d}.png", im)
    print(f"demo: 5 photos of the world concept '{name}' ({concept.kind}; no word names it) in {out / 'photos'}")
    print(f"      the closest words a person could use: '{concept.caption}'")

    model = load_model(None)
    token = f"<{name.replace('_', '-')}>"
    cfg = LearnConfig.with_defaults(model, token=token, init=concept.init_word, property=concept.kind, seed=seed)
    run = out / "run"
    ckpt = run / CHECKPOINT  # resume an interrupted demo, but never onto another model
    same_model = ckpt.exists() and checkpoint_fingerprint(ckpt) == model.identity.get("fingerprint")
    learned = learn(model, out / "photos", cfg, run, resume=same_model)

    plain = default_template(concept.kind)
    edit = "a star in the style of {}" if concept.kind == "style" else "a sketch of {} on a sky background"
    results = {}
    for label, template in (("word", plain), ("edit", edit)):
        prompt = template.format(token)
        images = generate(model, prompt, [learned], n=8, seed=seed)
        results[label] = save_grid(_upscale(images), out / f"{label}.png", cols=4)
        print(f"      '{prompt}' -> {results[label]}")
    baseline = generate(model, plain.format(concept.caption), n=8, seed=seed)
    results["caption"] = save_grid(_upscale(baseline), out / "caption.png", cols=4)
    print(f"      caption baseline '{plain.format(concept.caption)}' -> {results['caption']}")
    save_grid(_upscale(photos), out / "photos.png", cols=5)
    print(f"demo finished in {time.perf_counter() - started:.0f} s")
    return results


def _upscale(images, factor: int = 4):
    """World images are 32 px: enlarge (nearest) so a person can see them."""
    from PIL import Image

    return [im.resize((im.width * factor, im.height * factor), Image.NEAREST) for im in images]
