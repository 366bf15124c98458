"""Which held-out (shape, style) pairs the world model fails to draw in style, and what it draws instead.

24 samples of "STYLE a red SHAPE on a white background" per held-out pair (and three seen pairs for
comparison), read by the world oracle; seed 3, guidance 7.5, 25 steps.  About a minute on one core:
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/style_pairs.py
"""
import argparse
import collections

import torch

from oneword.generate import generate
from oneword.models import load_model
from oneword.world.judge import load_judge
from oneword.world.render import HELD_OUT_SHAPE_STYLE, STYLE_PHRASES

SEEN = (("star", "photo"), ("circle", "pixel"), ("ring", "painting"))

torch.set_num_threads(1)
ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("--model", help="world model folder (default: the shipped one)")
ap.add_argument("--judge", help="world judge folder (default: the shipped one)")
args = ap.parse_args()
model, judge = load_model(args.model, device="cpu"), load_judge(args.judge)
for kind, pairs in (("held out", HELD_OUT_SHAPE_STYLE), ("seen", SEEN)):
    for shape, style in pairs:
        prompt = f"{STYLE_PHRASES[style][0]} a red {shape} on a white background"
        labels = judge.oracle(generate(model, prompt, [], n=24, seed=3, guidance=7.5))
        print(f"{kind:8s} {prompt!r}: style {collections.Counter(labels['style']).most_common(3)}, "
              f"shape {collections.Counter(labels['shape']).most_common(2)}", flush=True)
