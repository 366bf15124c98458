"""Probe: what the world CLIP judge can see. Reconstruction (the paper's CLIP image-image cosine) can only
reward a learned word for an attribute the judge's image embedding distinguishes.

For each object concept, the mean cosine between its five photos and 32 fresh renders of the same object with
the concept's un-named value (right) and with the caption's value instead (as the caption baseline would draw
it: solid, blue, circle...): `oneword.world.judge.unnamed_visibility`. A judge trained contrastively on the
model's captions sees only what those captions mention (never a pattern); the shipped judge's CLIP learned the
judge's language, which names every value (`oneword world tune-clip`). Seconds on one core:
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/judge_probe.py [--judge DIR]
"""
import argparse

import torch

from oneword.world.concepts import NOVEL_CONCEPTS
from oneword.world.judge import load_judge, unnamed_visibility

ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("--judge", help="world judge folder (default: the shipped one)")
args = ap.parse_args()
torch.set_num_threads(1)
judge = load_judge(args.judge)
print("| concept | no word for | cosine to the photos: right / caption's values | difference |")
print("|---|---|---|---|")
for c in NOVEL_CONCEPTS.values():
    if c.kind == "object":
        v = unnamed_visibility(judge, c)
        print(f"| {c.name} | {', '.join(f'{k} {x}' for k, x in c.unnamed.items())} | {v['right']:.3f} / "
              f"{v['caption']:.3f} | {v['difference']:+.3f} |", flush=True)
