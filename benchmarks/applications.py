"""Make every picture of docs/applications.md with the commands printed there, and read them with the oracle.

Runs the documented `oneword` commands in this process (same code path as the shell), composes
docs/img/apps_*.png (32 px tiles enlarged 4x, nearest neighbour) and prints the world oracle's labels for
each picture, so the doc's "Oracle:" lines can be checked against a fresh run.

    .venv/bin/python -m benchmarks.applications            # runs/apps/ and docs/img/apps_*.png (~3 min, 2 cores)
    .venv/bin/python -m benchmarks.applications --skip-words --figures-only   # the edit table of docs/applications.md
"""

from __future__ import annotations

import argparse
import os
import shlex
import tempfile
from collections import Counter
from pathlib import Path

from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")

W = "runs/apps"
EMB = {c: f"{W}/{c}/run/learned_embeds.safetensors" for c in ("lime_star", "red_crescent", "style_hatched")}
WORDS = [f"demo --concept {c} --out {W}/{c}" for c in EMB]
# picture -> (rows of (label, command or photo folder)); a command's images are read from beside its --out
PICTURES = {
    "apps_variations.png": [
        ("photos", f"{W}/lime_star/photos"),
        ("samples", f"variations --embeds {EMB['lime_star']} -n 8 --out {W}/variations.png"),
    ],
    "apps_scenes.png": [
        (
            "sketch",
            f'generate "a sketch of <lime-star> on a sand background" --embeds {EMB["lime_star"]} '
            f"-n 4 --out {W}/scene_sketch.png",
        ),
        (
            "pixel",
            f'generate "pixel art of a small <lime-star> on a black background" '
            f"--embeds {EMB['lime_star']} -n 4 --out {W}/scene_pixel.png",
        ),
    ],
    "apps_style.png": [
        ("photos", f"{W}/style_hatched/photos"),
        (
            "samples",
            f'generate "a photo of a heart in the style of <style-hatched>" '
            f"--embeds {EMB['style_hatched']} -n 8 --out {W}/style.png",
        ),
    ],
    "apps_composition.png": [
        ("photos", [f"{W}/red_crescent/photos", f"{W}/lime_star/photos"]),
        (
            "samples",
            f'generate "a photo of <red-crescent> and <lime-star> on a grass background" '
            f"--embeds {EMB['lime_star']} --embeds {EMB['red_crescent']} -n 8 "
            f"--out {W}/composition.png",
        ),
    ],
    "apps_edit.png": [
        (
            "word",
            f'edit {W}/red_crescent/photos/04.png "a photo of <lime-star> on a sky background" '
            f"--box 10,8,28,26 --embeds {EMB['lime_star']} -n 8 --feather 3 --out {W}/edit_word.png",
        ),
        (
            "named",
            f'edit {W}/red_crescent/photos/04.png "a photo of a blue ring on a sky background" '
            f"--box 10,8,28,26 -n 8 --feather 3 --out {W}/edit_ring.png",
        ),
    ],
}
READ = ("shape", "colour", "style", "background", "count")


def is_command(source) -> bool:
    return isinstance(source, str) and source.split()[0] in ("variations", "generate", "edit")


def run(command: str) -> None:
    from oneword.commands import main

    print(f"$ oneword {command}", flush=True)
    if main(shlex.split(command)) != 0:
        raise SystemExit(f"command failed: oneword {command}")


def images_of(source) -> list[Image.Image]:
    """A photo folder (or several), or the single images a command wrote beside its --out grid."""
    if isinstance(source, list):
        return [im for s in source for im in images_of(s)]
    if not is_command(source):
        return [Image.open(p).convert("RGB") for p in sorted(Path(source).glob("*.png"))]
    out = Path(shlex.split(source)[shlex.split(source).index("--out") + 1])
    return [Image.open(p).convert("RGB") for p in sorted(out.parent.glob(f"{out.stem}_*.png"))]


def compose(
    rows: list[list[Image.Image]], extra: list[list[Image.Image]] | None = None, scale: int = 4, gap: int = 8
) -> Image.Image:
    """Rows of tiles, enlarged `scale`x (nearest), `gap` px apart, on white."""
    rows = [(e or []) + r for e, r in zip(extra or [[]] * len(rows), rows)]
    t = rows[0][0].width * scale
    width = max(len(r) for r in rows) * (t + gap) - gap
    sheet = Image.new("RGB", (width, len(rows) * (t + gap) - gap), "white")
    for y, row in enumerate(rows):
        for x, im in enumerate(row):
            sheet.paste(im.resize((t, t), Image.NEAREST), (x * (t + gap), y * (t + gap)))
    return sheet


def edit_inputs(command: str) -> list[Image.Image]:
    """The photo and its box mask, shown at the start of an edit row."""
    args = shlex.split(command)
    photo = Image.open(args[1]).convert("RGB")
    x0, y0, x1, y1 = (int(v) for v in args[args.index("--box") + 1].split(","))
    mask = Image.new("RGB", photo.size, "black")
    mask.paste((255, 255, 255), (x0, y0, x1, y1))
    return [photo, mask]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", default="docs")
    ap.add_argument("--skip-words", action="store_true", help="reuse the learned words in runs/apps")
    ap.add_argument("--figures-only", action="store_true", help="only the edit figures, no pictures")
    args = ap.parse_args(argv)
    from oneword.world.judge import load_judge

    judge = load_judge()
    if not args.skip_words:
        for command in WORDS:
            run(command)
    if not args.figures_only:
        pictures(judge, args.docs)
    edit_figures(judge)
    return 0


def edit_figures(judge, n: int = 20) -> None:
    """The table "Measured on the world model" of docs/applications.md: the yellow-circle photo of
    tests/test_edit.py, its box, n seeds, world defaults."""
    import numpy as np

    from oneword import LearnConfig, edit, generate, learn, load_concepts, load_model
    from oneword.world.concepts import NOVEL_CONCEPTS
    from tests.test_edit import world_edit_case, world_edit_figures  # the tests' own setup and figures

    model = load_model(None)
    truth = NOVEL_CONCEPTS["lime_star"].attributes

    def rates(images):
        lab = judge.oracle(images)
        hit = lambda a, v: [x == v for x in lab[a]]  # noqa: E731
        return (
            f"lime {sum(hit('colour', 'lime'))}/{n}, star {sum(hit('shape', 'star'))}/{n}, all attributes "
            f"{sum(all(lab[a][i] == v for a, v in truth.items()) for i in range(n))}/{n}"
        )

    demo = load_concepts(EMB["lime_star"])[0]
    fig = world_edit_figures(model, demo, judge, n=n)
    print(
        f"PSNR outside the mask: restored min {fig['psnr_restored_min']:.1f} dB; latent blending only (mean) "
        f"{fig['psnr_latent_only_mean']:.1f} dB"
    )
    print(
        f"demo <lime-star> edit: {rates(fig['images'])}; plain generate of '{fig['prompt']}': "
        f"{rates(generate(model, fig['prompt'], [demo], n=n, seed=0))}"
    )
    cfg = LearnConfig.with_defaults(
        model, token="<lime-star>", init="star", steps=150, early_stop=False, save_every=10**6
    )

    model = load_model(None)  # a fresh one: generate() above installed the demo's <lime-star> into the last
    short = learn(
        model, NOVEL_CONCEPTS["lime_star"].photos(5), cfg, tempfile.mkdtemp(prefix="lime150-"), progress=False
    )
    print(
        f"<lime-star> learned 150 steps (as in the test) edit: {rates(world_edit_figures(model, short, judge, n=n)['images'])}"
    )
    photo, box = world_edit_case()
    for shape, colour in (("ring", "blue"), ("heart", "pink")):
        prompt = f"a photo of a {colour} {shape} on a sky background"
        counts = []
        for label, images in (
            ("edit", edit(model, photo, box, prompt, n=n)),
            ("plain generate", generate(model, prompt, n=n, seed=0)),
            ("edit --no-fill", edit(model, photo, box, prompt, n=n, fill=False)),
        ):
            lab = judge.oracle(images)
            ok = int(np.sum([lab["shape"][i] == shape and lab["colour"][i] == colour for i in range(n)]))
            counts.append(f"{label} {ok}/{n} (colour {lab['colour'].count(colour)}/{n})")
        print(f"'{prompt}': " + "; ".join(counts))


def pictures(judge, docs: str) -> None:
    for name, rows in PICTURES.items():
        tiles = []
        for label, source in rows:
            if is_command(source):
                run(source)
            ims = images_of(source)
            tiles.append(ims)
            if label != "photos":
                labels = judge.oracle(ims)
                print(
                    f"  {name} {label}: "
                    + "; ".join(
                        f"{k} " + ", ".join(f"{v} {c}" for v, c in Counter(labels[k]).most_common(3)) for k in READ
                    )
                )
        extra = [edit_inputs(s) for _, s in rows] if name == "apps_edit.png" else None
        dest = Path(docs) / "img" / name
        compose(tiles, extra).save(dest)
        print(f"wrote {dest}")


if __name__ == "__main__":
    raise SystemExit(main())
