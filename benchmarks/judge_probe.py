"""Probe: what the world CLIP judge can see. Reconstruction (the paper's CLIP image-image cosine) can only
reward a learned word for an attribute the judge's image embedding distinguishes.

For each object concept of the tuning set, the mean cosine between its five photos and 32 fresh renders of
the same object with the concept's un-named value (right) and with the caption's value instead (as the caption
baseline would draw it: solid, blue, circle...). A judge trained contrastively on captions sees what captions
mention; patterns are never mentioned.  Seconds on one core:
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/judge_probe.py
"""
import argparse

import numpy as np
import torch

from oneword.world.concepts import HELD_OUT, NOVEL_CONCEPTS
from oneword.world.judge import load_judge
from oneword.world.render import random_scene, render_scene

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("--judge", help="world judge folder (default: the shipped one)")
args = ap.parse_args()
torch.set_num_threads(1)
judge = load_judge(args.judge)
print("| concept | no word for | right value | caption's value | cosine to the photos: right / caption's | difference |")
print("|---|---|---|---|---|---|")
for c in NOVEL_CONCEPTS.values():
    if c.kind != "object" or c.name in HELD_OUT:
        continue
    photos = judge.image_features(c.photos(5))
    words = c.caption.split()[1:]  # "a blue ring" -> blue, ring: the caption's colour and shape
    said = {"colour": words[0] if len(words) > 1 else c.attributes["colour"], "shape": words[-1], "pattern": "solid"}
    sims = {}
    for label, attrs in (("right", c.attributes), ("caption", {**c.attributes, **{k: said[k] for k in c.unnamed}})):
        rng = np.random.default_rng(1)
        renders = [render_scene(random_scene(rng, count=1, style="photo", **attrs), 32, rng) for _ in range(32)]
        sims[label] = float((judge.image_features(renders) @ photos.T).mean())
    (k, v), = list(c.unnamed.items())[:1]
    print(f"| {c.name} | {k} | {v} | {said[k]} | {sims['right']:.3f} / {sims['caption']:.3f} | "
          f"{sims['right'] - sims['caption']:+.3f} |", flush=True)
