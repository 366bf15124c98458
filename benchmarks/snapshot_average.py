"""Is the centre of a run's late wandering a better word than any one point of it? (issue 5, a probe)

Every stopping rule of one concept and seed stops the same run (default_candidates.py), so DIR/candidates.json
holds several snapshots of it. This averages the distinct snapshots between 600 and 1,250 steps (2-5 per run) into
one word and measures it exactly as the others (same judge, same sampling seeds), against the shipped rule's word
and the paper setting's 5,000-step word. Not a deployable rule (it uses snapshots after the shipped rule stopped):
it asks whether averaging iterates (an EMA, a tail average) is worth building.
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/snapshot_average.py runs/ttq_seed2:2 runs/ttq_seed3:3 \
        runs/ttq_late_seed0:0 runs/ttq_late_seed1:1 runs/ttq_unseen_seed0:0 runs/ttq_unseen_seed1:1
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import stopping_signals as S  # noqa: E402
import tradeoff as T  # noqa: E402  (sets HF_HUB_OFFLINE and the import path)
import ttq_seeds  # noqa: E402
from oneword import evaluation as E  # noqa: E402

SHIPPED, PAPER = ttq_seeds.SHIPPED, ttq_seeds.PAPER


def main(argv=None) -> int:
    from oneword.concept import Concept, load_concepts
    from oneword.models import load_model
    from oneword.world.concepts import concept

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="DIR:SEED (the seed of that DIR's runs)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", help="write every sample's score here (json)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, judge = load_model(None, device="cpu"), E.load_judge("world")
    rows = {}
    for spec in args.runs:
        work, seed = spec.rsplit(":", 1)
        per = json.loads((Path(work) / "candidates.json").read_text())["per_concept"]
        ecfg = E.EvalConfig(n=16, steps=25, guidance=5.0, seed=int(seed), bootstrap=2000)
        for name, v in per.items():
            c = concept(name)
            late = [w for w in S.concept_words(Path(work), name, v) if 600 <= w[1] <= 1250 and w[0] != PAPER]
            if len(late) < 2:
                continue
            words = [load_concepts(f)[0] for *_, f in late]
            mean = Concept(words[0].token, torch.stack([w.vectors for w in words]).mean(0), dict(words[0].meta))
            ev = E.Evaluator(model, c.photos(5, seed=0), judge, c.kind, "world", ecfg, attributes=T._truth(c))
            r = ev.evaluate(E.learned(mean))
            rows.setdefault(name, []).append({
                "snapshots": [w[1] for w in late], "average": r["prompts"][0]["samples"],
                "shipped": v["results"][SHIPPED]["prompts"][0]["samples"],
                "paper": v["results"][PAPER]["prompts"][0]["samples"],
                "edit_average": [p["samples"] for p in r["prompts"][1:]],
                "edit_shipped": [p["samples"] for p in v["results"][SHIPPED]["prompts"][1:]]})
            T.log(f"{work} {name}: average of steps {[w[1] for w in late]}: rec {r['reconstruction']['mean']:.3f}; "
                  f"shipped {v['results'][SHIPPED]['reconstruction']['mean']:.3f}; paper "
                  f"{v['results'][PAPER]['reconstruction']['mean']:.3f}")
    if args.out:
        T._write_json(Path(args.out), rows)
    nested = {k: [[s[k] for s in rows[n]] for n in rows] for k in ("average", "shipped", "paper", "edit_average",
                                                                     "edit_shipped")}
    n_runs = sum(len(v) for v in rows.values())
    print(f"\n{len(rows)} concepts, {n_runs} runs (each concept's mean over its runs; concepts resampled):\n")
    print("| comparison | reconstruction |\n|---|---|")
    for label, a, b, seed in (("average of snapshots - shipped rule's word", "average", "shipped", 51),
                              ("average of snapshots - paper 5,000", "average", "paper", 52),
                              ("shipped rule's word - paper 5,000", "shipped", "paper", 53),
                              ("editability: average - shipped", "edit_average", "edit_shipped", 54)):
        print(f"| {label} | {ttq_seeds.fmt(ttq_seeds.diff(nested[a], nested[b], seed))} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
