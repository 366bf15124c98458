"""Probe: how often an edit puts a learned word's whole concept into the mask, per learning seed, word shape
(the paper's one vector vs two vectors initialised from the caption's words) and guidance.

The setup of `tests/test_edit.py -k world` (a yellow circle on sky, box 5,5,27,27, 20 edit seeds, 25 DDIM
steps), concept teal_ring (its colour has no word), 300 learning steps.  ~8 min on one core:
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/edit_probe.py
"""
import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_edit import world_edit_figures  # noqa: E402  the test's own setup and oracle reading

from oneword.invert import LearnConfig, learn  # noqa: E402
from oneword.models import load_model  # noqa: E402
from oneword.world.concepts import NOVEL_CONCEPTS  # noqa: E402
from oneword.world.judge import load_judge  # noqa: E402

torch.set_num_threads(1)
ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
ap.add_argument("--model", help="world model folder (default: the shipped one)")
ap.add_argument("--judge", help="world judge folder (default: the shipped one)")
args = ap.parse_args()
model, judge = load_model(args.model, device="cpu"), load_judge(args.judge)
c = NOVEL_CONCEPTS["teal_ring"]
caption_words = c.caption_words
for label, kw, guidances in (("1 vector", {}, (5.0,)),
                             (f"2 vectors, init '{caption_words}'", {"vectors": 2, "init": caption_words}, (5.0, 7.5, 10.0))):
    for seed in (0, 1, 2):
        tok = f"<teal-ring-{len(kw)}-{seed}>"  # edit() installs words for good: one token per run
        cfg = LearnConfig.with_defaults(model, **{"token": tok, "init": c.init_word, "early_stop": False,
                                                  "save_every": 10**6, "seed": seed, **kw})
        with tempfile.TemporaryDirectory() as run:
            word = learn(model, c.photos(5), cfg, run, progress=False)
        word.meta["world_concept"] = c.name
        for g in guidances:
            f = world_edit_figures(model, word, judge, guidance=g)
            pa = f["per_attribute"]
            print(f"teal_ring {label} seed {seed} guidance {g}: all attributes {f['oracle']:.0%}, colour teal "
                  f"{pa['colour']:.0%}, shape ring {pa['shape']:.0%}", flush=True)
