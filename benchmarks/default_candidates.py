"""Candidate world defaults against the paper setting's final word (issue 5, time to quality).

Each candidate is `oneword learn` with early stopping on and one change to its stopping rule; each is compared,
paired and with concepts resampled, to plain TI at the paper's setting (5,000 steps, batch 4, lr 0.005), on the
tuning concepts of benchmarks/time_to_quality.py (its cached words are reused; --seed S --work DIR: the words of
`time_to_quality.py --seed S --work DIR`). About 15 minutes on 2 cores for two candidates:
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/default_candidates.py
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/default_candidates.py --seed 1 --work runs/ttq_seed1 --threads 1 \
        --candidates 16 24 z1
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/default_candidates.py --names late --seed 0 \
        --work runs/ttq_late_seed0 --threads 1 --candidates 16 24 m800
Every sample's score goes to DIR/candidates.json; `ttq_seeds.py --candidates DIR...` pools them over seeds.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import time_to_quality as Q  # noqa: E402
import tradeoff as T  # noqa: E402  (sets HF_HUB_OFFLINE and the import path)
from oneword import evaluate as E  # noqa: E402

CANDIDATES = {  # all: at most 1,250 steps (5,000 image-steps, the 1/4 of the paper's 20,000), lr 0.005
    "stop: last 8 validations (200 steps)": {"steps": 1250, "val_window": 8},  # the first form of the rule
    "stop: last 16 validations (400 steps)": {"steps": 1250, "val_window": 16},  # shipped
    "stop: last 24 validations (600 steps)": {"steps": 1250, "val_window": 24},  # more conservative
    "stop: last 16 validations, 1 standard error": {"steps": 1250, "val_window": 16, "val_z": 1.0},
    "stop: last 16 validations, not before step 800": {"steps": 1250, "val_window": 16, "min_steps": 800},
    "stop: last 24 validations, not before step 1,000": {"steps": 1250, "val_window": 24, "min_steps": 1000},
    # the validation batch's timesteps in the noisier half only (t >= 500 of 1000), where the text decides the
    # content: that loss orders a concept's words by reconstruction better than the whole-schedule one
    # (benchmarks/stopping_signals.py)
    "stop: last 24 validations of the loss at t >= 500": {"steps": 1250, "val_window": 24, "val_t_min": 0.5},
}
SHORT = dict(zip(("8", "16", "24", "z1", "m800", "m1000", "hi24"), CANDIDATES))


def main(argv=None) -> int:
    from oneword.models import load_model
    from oneword.world.concepts import concept

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0, help="learning and sampling seed (as time_to_quality.py --seed)")
    ap.add_argument("--work", default="runs/time_to_quality", help="the word cache of that seed's time_to_quality run")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--candidates", nargs="+", default=["8", "16"], choices=list(SHORT))
    ap.add_argument("--names", default=",".join(Q.NAMES), help="tuning concepts (comma-separated, 'late' or 'unseen')")
    args = ap.parse_args(argv)
    names = Q.tuning_names(args.names, ap)
    chosen = {SHORT[c]: CANDIDATES[SHORT[c]] for c in args.candidates}
    torch.set_num_threads(args.threads)
    model, judge = load_model(None, device="cpu"), E.load_judge("world")
    paper = Q.paper_setting(model, seed=args.seed)
    variants = {"ti": {}, **{k: {"early_stop": True, "min_steps": 150, **v} for k, v in chosen.items()}}
    ecfg = E.EvalConfig(n=16, steps=25, guidance=5.0, seed=args.seed, bootstrap=2000)
    bench = T.Bench(model, judge, paper, ecfg, Path(args.work), 5)
    per = {n: bench.concept(concept(n), list(variants), variants) for n in names}
    T._write_json(Path(args.work) / "candidates.json", {"per_concept": per})  # for candidates_seeds.py
    s = T.summarise(per, ["caption", *variants])
    print(f"paper setting (5,000 steps): reconstruction {T.f3(s['ti']['reconstruction'])}, editability "
          f"{T.f3(s['ti']['editability'])}")
    print("| candidate | steps run | learning s | reconstruction | editability | rec. vs paper | edit. vs paper |")
    print("|---|---|---|---|---|---|---|")
    for m in chosen:
        r = [per[n]["results"][m]["learn"] for n in names]
        steps, secs = ", ".join(str(x["steps"]) for x in r), ", ".join(f"{x['seconds']:.0f}" for x in r)
        print(f"| {m} | {steps} | {secs} | "
              f"{T.f3(s[m]['reconstruction'])} | {T.f3(s[m]['editability'])} | {T.dfmt(s[m]['vs_ti']['reconstruction'])} | "
              f"{T.dfmt(s[m]['vs_ti']['editability'])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
