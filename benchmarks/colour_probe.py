"""Probe: how often a learned word draws its concept's un-named colour (world oracle), per learning setting.

One learning run per setting and concept, 24 samples of "a photo of <word>" at guidance 5 and 7.5:
a quick, noisy look (about +-0.1), not a benchmark.   HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/colour_probe.py
"""
import tempfile

import torch

from oneword.generate import generate
from oneword.invert import LearnConfig, learn
from oneword.models import load_model
from oneword.world.concepts import NOVEL_CONCEPTS
from oneword.world.judge import load_judge

torch.set_num_threads(1)
model = load_model(None, device="cpu"); judge = load_judge()
settings = {"default": {}, "lr .02": {"lr": 0.02}, "vectors 2": {"vectors": 2}, "steps 1000": {"steps": 1000}, "batch 8": {"batch_size": 8}}
for name in ("teal_ring", "lime_star"):
    c = NOVEL_CONCEPTS[name]; photos = c.photos(5, seed=0); want = c.attributes
    for label, kw in settings.items():
        tok = f"<{name}-{label.replace(' ', '-').replace('.', '')}>"  # generate() installs words for good
        cfg = LearnConfig.with_defaults(model, token=tok, init=c.init_word, early_stop=False, save_every=10**6, seed=0, **kw)
        with tempfile.TemporaryDirectory() as run:
            w = learn(model, photos, cfg, run, progress=False)
        for g in (5.0, 7.5):
            ims = generate(model, f"a photo of {tok}", [w], n=24, seed=1, guidance=g)
            lab = judge.oracle(ims)
            rate = {a: sum(x == v for x in lab[a]) / len(ims) for a, v in want.items()}
            print(name, label, "guidance", g, {k: round(v, 2) for k, v in rate.items()}, flush=True)
