"""How often each world concept's exact (shape, colour, pattern) appears in the shipped model's pretraining scenes.

The shipped model was pretrained on 4 x 24,000 scenes (data seeds 0-3, oneword/world/model/oneword_world.json),
drawn by `render.pretraining_scene` with the novel concepts excluded. This redraws them (seconds, no rendering):
NOVEL_CONCEPTS and UNSEEN_CONCEPTS must count 0; the late tuning concepts (concepts.LATE_CONCEPTS) were not excluded.
    HF_HUB_OFFLINE=1 .venv/bin/python -m experiments.world_probes.pretraining_counts
"""

from __future__ import annotations

import sys
from collections import Counter

import numpy as np

from oneword.world.concepts import LATE_CONCEPTS, NOVEL_CONCEPTS, UNSEEN_CONCEPTS, pretraining_exclusions
from oneword.world.render import pretraining_scene

SEEDS, SCENES_PER_SEED = (0, 1, 2, 3), 24000


def counts() -> Counter:
    excluded, seen = pretraining_exclusions(), Counter()
    for seed in SEEDS:
        rng = np.random.default_rng(seed)  # as pretrain() draws its scenes
        for _ in range(SCENES_PER_SEED):
            seen.update((o.shape, o.colour, o.pattern) for o in pretraining_scene(rng, excluded).objects)
    return seen


def main() -> int:
    seen, total = counts(), len(SEEDS) * SCENES_PER_SEED
    print(f"| concept | kind | (shape, colour, pattern) | pretraining scenes with it (of {total:,}) |")
    print("|---|---|---|---|")
    for group, concepts in (
        ("novel", NOVEL_CONCEPTS),
        ("late tuning", LATE_CONCEPTS),
        ("unseen tuning", UNSEEN_CONCEPTS),
    ):
        for c in concepts.values():
            if c.kind == "object":
                key = (c.attributes["shape"], c.attributes["colour"], c.attributes["pattern"])
                print(f"| {c.name} | {group} | {', '.join(key)} | {seen[key]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
