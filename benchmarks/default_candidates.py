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

Session 11 (faster learning, not a later stop), written before any result was read: the shipped rule at lr 0.01,
0.02 and 0.04 (`--candidates 24 lr01 lr02 lr04 --no-paper`) on the 20 tuning concepts x 2 seeds of session 10
(the original 10 with seeds 2 and 3, the late and the unseen 5 with seeds 0 and 1). A candidate replaces the
shipped default only if it beats the shipped rule in reconstruction with a 95% interval above zero, its
editability is on average no more than 0.01 worse, and its mean steps stay within the 1,250 cap; of several, the
largest reconstruction gain. Only then do the held-out concepts get a third look, labelled so.

Session 12 (a replication of session 11's closest candidate, lr 0.02: +0.015 [-0.003, +0.036]), written before any
result was read: `--candidates 24 lr02 --no-paper` on the same 20 tuning concepts with two new seeds each (the
original 10: seeds 4 and 5; the late and the unseen 5: seeds 2 and 3). lr 0.02 replaces the shipped lr 0.005 only
if (1) on the new seeds alone its reconstruction is on average above the shipped rule's, and (2) over all four
seeds of each concept (session 11's and these; each concept's mean over its seeds, concepts resampled) it beats
the shipped rule in reconstruction with a 95% interval above zero, with editability on average no more than 0.01
worse and mean steps within the 1,250 cap. Nothing else is chosen from these runs.
(Result: (1) met, +0.013; (2) missed, +0.014 [-0.001, +0.031]: lr stays 0.005.)

Next (written at the end of session 12, before any of these runs started): the session-12 gain sat in the harder
tuning concepts (late and unseen: +0.025 [+0.000, +0.053], read after the fact), so it is tested afresh there:
`--candidates 24 lr02 --no-paper --names late|unseen` with seeds 4 and 5 (new words). lr 0.02 replaces lr 0.005 only
if, on these 10 concepts x 2 new seeds alone, it beats the shipped rule in reconstruction with a 95% interval above
zero, its editability is on average no more than 0.01 worse and its mean steps stay within the cap (on the original
10 it is already measured as no worse on average: +0.004 [-0.016, +0.025] over 4 seeds). Then the held-out concepts
get a fourth look, labelled so.
(Result, session 13: +0.021 [+0.003, +0.042] in reconstruction, editability -0.000 [-0.008, +0.008], mean steps 912
against 899: met. lr 0.02 is the world default now.)
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

import time_to_quality as Q  # noqa: E402
import tradeoff as T  # noqa: E402  (sets HF_HUB_OFFLINE and the import path)
from oneword import evaluation as E  # noqa: E402

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
    # faster learning rather than a later stop (session 11): the shipped rule at a higher learning rate; 0.04 is
    # the paper's effective rate (base 0.005 x 2 GPUs x batch 4, LDM's scale_lr), the others lie between
    "shipped rule, lr 0.01": {"steps": 1250, "val_window": 24, "lr": 1e-2},
    "shipped rule, lr 0.02": {"steps": 1250, "val_window": 24, "lr": 2e-2},
    "shipped rule, lr 0.04 (the paper's effective rate)": {"steps": 1250, "val_window": 24, "lr": 4e-2},
}
SHORT = dict(zip(("8", "16", "24", "z1", "m800", "m1000", "hi24", "lr01", "lr02", "lr04"), CANDIDATES))


def main(argv=None) -> int:
    from oneword.models import load_model
    from oneword.world.concepts import concept

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, default=0, help="learning and sampling seed (as time_to_quality.py --seed)")
    ap.add_argument("--work", default="runs/time_to_quality", help="the word cache of that seed's time_to_quality run")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--candidates", nargs="+", default=["8", "16"], choices=list(SHORT))
    ap.add_argument("--names", default=",".join(Q.NAMES), help="tuning concepts (comma-separated, 'late' or 'unseen')")
    ap.add_argument("--no-paper", action="store_true",
                    help="skip the paper setting's 5,000-step words (compare the candidates with each other only)")
    args = ap.parse_args(argv)
    names = Q.tuning_names(args.names, ap)
    chosen = {SHORT[c]: CANDIDATES[SHORT[c]] for c in args.candidates}
    torch.set_num_threads(args.threads)
    model, judge = load_model(None, device="cpu"), E.load_judge("world")
    paper = Q.paper_setting(model, seed=args.seed)
    rules = {k: {"early_stop": True, "min_steps": 150, **v} for k, v in chosen.items()}
    variants = {**({} if args.no_paper else {"ti": {}}), **rules}
    ecfg = E.EvalConfig(n=16, steps=25, guidance=5.0, seed=args.seed, bootstrap=2000)
    bench = T.Bench(model, judge, paper, ecfg, Path(args.work), 5)
    per = {n: bench.concept(concept(n), list(variants), variants) for n in names}
    T._write_json(Path(args.work) / "candidates.json", {"per_concept": per})  # for ttq_seeds.py --candidates
    s = T.summarise(per, ["caption", *variants])
    if "ti" in s:
        print(f"paper setting (5,000 steps): reconstruction {T.f3(s['ti']['reconstruction'])}, editability "
              f"{T.f3(s['ti']['editability'])}")
    print("| candidate | steps run | learning s | reconstruction | editability | rec. vs paper | edit. vs paper |")
    print("|---|---|---|---|---|---|---|")
    for m in chosen:
        r = [per[n]["results"][m]["learn"] for n in names]
        steps, secs = ", ".join(str(x["steps"]) for x in r), ", ".join(f"{x['seconds']:.0f}" for x in r)
        vs = s[m].get("vs_ti")  # absent with --no-paper
        print(f"| {m} | {steps} | {secs} | {T.f3(s[m]['reconstruction'])} | {T.f3(s[m]['editability'])} | "
              f"{T.dfmt(vs['reconstruction']) if vs else '-'} | {T.dfmt(vs['editability']) if vs else '-'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
