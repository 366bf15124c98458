"""Probe: how often an edit puts a learned word's whole concept into the mask, per world concept and learning seed.

The setup of `tests/test_edit.py -k world` (a yellow circle on sky, box 5,5,27,27, 20 edit seeds, 25 DDIM
steps, guidance 5, or --guidances): every object concept of the world's tuning set (--held-out: the held-out ones instead),
each learned for --steps steps (300, early stopping off: the setting the figures in docs/applications.md were
measured with; 0 = `oneword learn`'s current defaults) with the paper's one vector and three learning seeds; the
oracle reads each edit's object. --caption-init adds words of two vectors initialised from the caption's words
("blue ring"), edited at guidance 5, 7.5 and 10.  ~20 min on one core:
    HF_HUB_OFFLINE=1 .venv/bin/python -m experiments.world_probes.edit_probe
"""

import tempfile

import numpy as np

from oneword import LearnConfig, learn
from oneword.world.concepts import HELD_OUT, NOVEL_CONCEPTS
from oneword.world.judge import probe_setup
from tests.test_edit import world_edit_figures  # the test's own setup and oracle reading


def probe_arguments(ap):
    ap.add_argument("--concepts", help="comma-separated concepts (default: the object concepts of the tuning set)")
    ap.add_argument("--held-out", action="store_true", help="the held-out object concepts (final reports only)")
    ap.add_argument("--caption-init", action="store_true", help="also two vectors initialised from the caption")
    ap.add_argument("--seeds", type=int, default=3, help="learning seeds per concept")
    ap.add_argument(
        "--guidances", default="5", help="comma-separated edit guidances for the one-vector words (default 5)"
    )
    ap.add_argument(
        "--steps",
        type=int,
        default=300,
        help="learning steps, early stopping off (0: oneword learn's defaults, early stopping on)",
    )


args, model, judge = probe_setup(__doc__, probe_arguments)
objects = [c for c in NOVEL_CONCEPTS.values() if c.kind == "object" and (c.name in HELD_OUT) == args.held_out]
names = args.concepts.split(",") if args.concepts else [c.name for c in objects]

rows = []
for name in names:
    c = NOVEL_CONCEPTS[name]
    variants = [("1 vector", {}, tuple(float(g) for g in args.guidances.split(",")))]
    if args.caption_init:
        variants.append(
            (f"2 vectors, init '{c.caption_words}'", {"vectors": 2, "init": c.caption_words}, (5.0, 7.5, 10.0))
        )
    for label, kw, guidances in variants:
        for seed in range(args.seeds):
            tok = f"<{name}-{len(kw)}-{seed}>"  # edit() installs words for good: one token per run
            fixed = {"steps": args.steps, "early_stop": False} if args.steps else {}
            cfg = LearnConfig.with_defaults(model, **{"token": tok, "init": c.init_word, "seed": seed, **fixed, **kw})
            with tempfile.TemporaryDirectory() as run:
                word = learn(model, c.photos(5), cfg, run, progress=False)
            word.meta["world_concept"] = c.name
            for g in guidances:
                f = world_edit_figures(model, word, judge, guidance=g)
                rows.append((name, label, g, f["oracle"], f["per_attribute"]))
                parts = ", ".join(f"{a} {c.attributes[a]} {v:.0%}" for a, v in f["per_attribute"].items())
                print(
                    f"{name} {label} seed {seed} guidance {g}: all attributes {f['oracle']:.0%} ({parts})", flush=True
                )

print("\n| concept | what has no word | word | guidance | all attributes in the mask, per learning seed | mean |")
print("|---|---|---|---|---|---|")
for key in dict.fromkeys((r[0], r[1], r[2]) for r in rows):
    hits = [r[3] for r in rows if (r[0], r[1], r[2]) == key]
    c = NOVEL_CONCEPTS[key[0]]
    print(
        f"| {key[0]} | {', '.join(c.unnamed)} | {key[1]} | {key[2]:g} | "
        f"{' / '.join(f'{h:.0%}' for h in hits)} | {np.mean(hits):.0%} |"
    )
