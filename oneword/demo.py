"""`oneword demo`: the whole method offline on the embedded world, in a few minutes on two CPU cores.

Renders a novel concept's "user photos" (something the world model can draw but no word names),
learns its word with the core engine, and writes previews of the word in a plain prompt and an edit.
"""

from __future__ import annotations

import time
from pathlib import Path

from . import validate
from .errors import OnewordError
from .safeio import atomic_write_bytes

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
    out = validate.output_folder(out)
    photos = concept.photos(5, seed=seed)
    _write_photos(out, photos, name, seed)
    print(f"demo: 5 photos of the world concept '{name}' ({concept.kind}; no word names it) in {out / 'photos'}")
    print(f"      the closest words a person could use: '{concept.caption}'")

    model = load_model(None)
    token = f"<{name.replace('_', '-')}>"
    cfg = LearnConfig.with_defaults(model, token=token, init=concept.init_word, property=concept.kind, seed=seed)
    run = out / "run"
    ckpt = run / CHECKPOINT  # resume an interrupted demo, but never onto another model
    if ckpt.exists() and checkpoint_fingerprint(ckpt) != model.identity.get("fingerprint"):
        raise OnewordError(f"{run} was learned on another world model; choose another --out (it is kept)")
    learned = learn(model, out / "photos", cfg, run, resume=ckpt.exists())

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


def _write_photos(out: Path, photos, name: str, seed: int) -> None:
    """The demo's photos in out/photos, written once: a folder that holds this same demo (an interrupted one) is
    continued, and anything else is refused before a file changes (another concept or --seed, or a folder that is
    not a demo's)."""
    import io

    def png(im) -> bytes:
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        return buf.getvalue()

    folder = out / "photos"
    wanted = {f"{i:02d}.png": png(im) for i, im in enumerate(photos)}
    if folder.is_dir():
        have = {p.name: p for p in folder.iterdir()}
        if set(have) != set(wanted) or any(have[k].read_bytes() != v for k, v in wanted.items()):
            raise OnewordError(
                f"{out} holds another demo (other photos: another concept or --seed); choose another "
                f"--out for '{name}' with --seed {seed} (nothing was changed)"
            )
        return
    if out.is_dir() and any(out.iterdir()):
        raise OnewordError(f"{out} is not empty and holds no demo; choose another --out (nothing was changed)")
    for file, data in wanted.items():
        atomic_write_bytes(folder / file, data, replace=False)


def _upscale(images, factor: int = 4):
    """World images are 32 px: enlarge (nearest) so a person can see them."""
    from PIL import Image

    return [im.resize((im.width * factor, im.height * factor), Image.NEAREST) for im in images]
