"""Probe: how often a learned word draws its concept's un-named colour (world oracle), and why.

1. What the model draws for "a photo of a SHAPE" with no colour word: the un-named colours share one
   caption ("no colour word"), so the text can say "un-named" but never which one. And what the named
   neighbours of teal and lime draw ("a photo of a blue ring"; see `world pretrain --caption-hedge`).
2. Per learning seed, the rate at which "a photo of S*" draws the concept's colour and shape, for the
   paper's single vector (init word = shape) and for a 2-vector word initialised from the caption's words
   ("green star": the first vector starts in the colour-word slot).
One learning run per (setting, seed), 48 samples at guidance 5: noisy by about +-0.07.  ~6 min on one core:
    HF_HUB_OFFLINE=1 .venv/bin/python -m experiments.world_probes.colour_probe [--model DIR --judge DIR]
"""

import collections
import tempfile

from oneword import LearnConfig, generate, learn
from oneword.world.concepts import NOVEL_CONCEPTS
from oneword.world.judge import probe_setup

args, model, judge = probe_setup(__doc__)


def colours(images) -> str:
    return ", ".join(f"{c} {k}" for c, k in collections.Counter(judge.oracle(images)["colour"]).most_common(4))


for shape in ("ring", "star"):
    print(
        f"'a photo of a {shape}' (no colour word), 48 samples: {colours(generate(model, f'a photo of a {shape}', n=48, seed=1, guidance=5.0))}",
        flush=True,
    )
# The named neighbours of teal and lime: with --caption-hedge in pretraining they also cover them sometimes.
for words in ("blue ring", "green ring", "green star", "yellow star"):
    print(
        f"'a photo of a {words}', 48 samples: {colours(generate(model, f'a photo of a {words}', n=48, seed=1, guidance=5.0))}",
        flush=True,
    )

for name in ("teal_ring", "lime_star"):
    c = NOVEL_CONCEPTS[name]
    photos, caption_words = c.photos(5, seed=0), c.caption_words
    for label, kw in {
        "1 vector": {},
        f"2 vectors, init '{caption_words}'": {"vectors": 2, "init": caption_words},
    }.items():
        for seed in (0, 1, 2):
            tok = f"<{name}-{len(kw)}-{seed}>"  # generate() installs words for good: one token per run
            cfg = LearnConfig.with_defaults(
                model,
                **{"token": tok, "init": c.init_word, "early_stop": False, "save_every": 10**6, "seed": seed, **kw},
            )
            with tempfile.TemporaryDirectory() as run:
                word = learn(model, photos, cfg, run, progress=False)
            ims = generate(model, f"a photo of {tok}", [word], n=48, seed=1, guidance=5.0)
            lab = judge.oracle(ims)
            rate = {a: sum(x == c.attributes[a] for x in lab[a]) / len(ims) for a in ("colour", "shape")}
            print(
                f"{name} {label} seed {seed}: {c.attributes['colour']} {rate['colour']:.0%}, {c.attributes['shape']} "
                f"{rate['shape']:.0%} (colours: {colours(ims)})",
                flush=True,
            )
