"""Which held-out (shape, style) pairs the world model fails to draw in style, and what it draws instead.

24 samples of "STYLE a red SHAPE on a white background" per held-out pair (and three seen pairs for
comparison), read by the world oracle; seed 3, guidance 7.5, 25 steps.  About a minute on one core:
    HF_HUB_OFFLINE=1 .venv/bin/python -m experiments.world_probes.style_pairs [--model DIR --judge DIR]
"""

import collections

from oneword import generate
from oneword.world.judge import probe_setup
from oneword.world.render import HELD_OUT_SHAPE_STYLE, STYLE_PHRASES

SEEN = (("star", "photo"), ("circle", "pixel"), ("ring", "painting"))

args, model, judge = probe_setup(__doc__)
for kind, pairs in (("held out", HELD_OUT_SHAPE_STYLE), ("seen", SEEN)):
    for shape, style in pairs:
        prompt = f"{STYLE_PHRASES[style][0]} a red {shape} on a white background"
        labels = judge.oracle(generate(model, prompt, [], n=24, seed=3, guidance=7.5))
        print(
            f"{kind:8s} {prompt!r}: style {collections.Counter(labels['style']).most_common(3)}, "
            f"shape {collections.Counter(labels['shape']).most_common(2)}",
            flush=True,
        )
