"""Time to quality over learning seeds (issue 5): is the default as close to the paper setting as the paper
setting is to a rerun of itself?

Reads the results.json that `time_to_quality.py --seed S --work DIR` leaves in each DIR (one per seed: new words
for both settings and new sampling seeds) and reports over the tuning concepts, concepts resampled (95%
bootstrap; the statistic is the mean over concepts of each concept's mean over seeds):

  default - paper     per seed (paired: the same sampling seeds) and pooled over the seeds
  paper - paper       one seed against another: what rerunning the paper's own setting changes
  default - default   likewise for the default
  paper at N - paper  the paper run's own word after N steps (time_to_quality.py --stops N,...) against its final
                      one, pooled over the seeds: does the paper setting itself get there within N steps?

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/ttq_seeds.py runs/time_to_quality runs/ttq_seed1 runs/ttq_seed2

--candidates: instead, the candidates.json that `default_candidates.py --seed S --work DIR` leaves in each DIR
(any mix of concept sets and seeds): each stopping rule against the paper setting and against a reference rule
(--reference: the shipped one unless named), pooled over every concept with each concept's mean over its seeds.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from oneword import evaluation as E  # noqa: E402

DEFAULT, PAPER = "oneword default", "ti"
SHIPPED = "stop: last 24 validations (600 steps)"  # default_candidates.py's name for the shipped rule (session 9)


def scores(per: dict, method: str, names) -> dict:
    """Per concept: reconstruction samples, and editability samples per edit prompt."""
    out = {"rec": [], "edit": []}
    for n in names:
        prompts = per[n]["results"][method]["prompts"]
        out["rec"].append(prompts[0]["samples"])
        out["edit"].append([p["samples"] for p in prompts[1:]])
    return out


def by_concept(runs: list[dict], what: str) -> list:
    """[concept][seed] -> samples: each concept's seeds nested under it, so concepts are the resampled clusters."""
    return [list(seeds) for seeds in zip(*(r[what] for r in runs))]


def diff(a: list, b: list, seed: int) -> dict:
    return E.difference(a, b, seed=seed, clusters=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("work", nargs="+", help="time_to_quality.py --work folders, one per seed")
    ap.add_argument("--candidates", action="store_true", help="pool default_candidates.py results instead")
    ap.add_argument("--reference", default=SHIPPED, help="--candidates: the rule the others are compared with")
    args = ap.parse_args(argv)
    if args.candidates:
        return candidates(args.work, args.reference)
    pers = [json.loads((Path(w) / "results.json").read_text())["per_concept"] for w in args.work]
    names = [n for n in pers[0] if all(n in p for p in pers)]
    default = [scores(p, DEFAULT, names) for p in pers]
    paper = [scores(p, PAPER, names) for p in pers]
    rows = []
    for i, w in enumerate(args.work):
        rows.append((f"default - paper, {w}", diff(default[i]["rec"], paper[i]["rec"], 31),
                     diff(default[i]["edit"], paper[i]["edit"], 32)))
    rows.append((f"default - paper, pooled over {len(pers)} seeds",
                 diff(by_concept(default, "rec"), by_concept(paper, "rec"), 33),
                 diff(by_concept(default, "edit"), by_concept(paper, "edit"), 34)))
    stops = earlier_stops(pers, names)  # the paper run's own earlier words: does its budget suffice?
    early = {stop: [scores(p, stop, names) for p in pers] for stop in stops}
    for stop in stops:
        rows.append((f"paper at {stop} - paper final, pooled over {len(pers)} seeds",
                     diff(by_concept(early[stop], "rec"), by_concept(paper, "rec"), 45),
                     diff(by_concept(early[stop], "edit"), by_concept(paper, "edit"), 46)))
    for (i, a), (j, b) in itertools.combinations(enumerate(args.work), 2):
        for label, runs in (("paper", paper), ("default", default)):
            rows.append((f"{label} {b} - {label} {a}", diff(runs[j]["rec"], runs[i]["rec"], 35),
                         diff(runs[j]["edit"], runs[i]["edit"], 36)))
    print(f"concepts: {', '.join(names)}\n")
    print("| comparison | reconstruction | editability |\n|---|---|---|")
    for label, rec, edit in rows:
        print(f"| {label} | {fmt(rec)} | {fmt(edit)} |")
    print(f"\nPer concept, default - paper over the {len(pers)} seeds (seeds and samples resampled: with so few seeds a\n"
          "rough interval, but one that holds each word's learning luck, not only the sampling noise):\n")
    print("| concept | steps the default ran | reconstruction, per seed | pooled | editability, pooled |"
          + "".join(f" paper at {stop} - final, rec. |" for stop in stops) + "\n|---|---|---|---|---|" + "---|" * len(stops))
    for i, n in enumerate(names):
        rec = [E.difference(d["rec"][i], q["rec"][i], seed=37)["mean"] for d, q in zip(default, paper)]
        steps = [p[n]["results"][DEFAULT]["learn"]["steps"] for p in pers]
        pooled = diff([d["rec"][i] for d in default], [q["rec"][i] for q in paper], 38)
        pooled_edit = diff([d["edit"][i] for d in default], [q["edit"][i] for q in paper], 39)
        own = "".join(f" {fmt(diff([e['rec'][i] for e in early[stop]], [q['rec'][i] for q in paper], 47))} |"
                      for stop in stops)
        print(f"| {n} | {', '.join(map(str, steps))} | {', '.join(f'{r:+.3f}' for r in rec)} | {fmt(pooled)} | "
              f"{fmt(pooled_edit)} |{own}")
    return 0


def earlier_stops(pers: list[dict], names) -> list[str]:
    """The paper run's intermediate stops ("steps N", time_to_quality.py --stops) that every run evaluated."""
    stops = [m for m in pers[0][names[0]]["results"] if m.startswith("steps ")]
    return sorted((m for m in stops if all(m in p[n]["results"] for p in pers for n in names)),
                  key=lambda m: int(m.split()[1]))


def candidates(work: list[str], reference: str = SHIPPED) -> int:
    pers = [json.loads((Path(w) / "candidates.json").read_text())["per_concept"] for w in work]
    names = list(dict.fromkeys(n for p in pers for n in p))
    methods = [m for m in next(iter(pers[0].values()))["results"] if m not in ("caption", PAPER)
               and all(m in p[n]["results"] for p in pers for n in p)]  # the candidates every run has

    def nested(method: str, what: str) -> list:  # [concept][seed] -> samples; seeds per concept may differ
        return [[scores(p, method, [n])[what][0] for p in pers if n in p] for n in names]

    with_paper = all(PAPER in p[n]["results"] for p in pers for n in p)  # default_candidates.py --no-paper: none
    paper = {w: nested(PAPER, w) for w in ("rec", "edit")} if with_paper else None
    shipped = {w: nested(reference, w) for w in ("rec", "edit")}
    seeds = [sum(n in p for p in pers) for n in names]
    print(f"{len(names)} concepts ({', '.join(f'{n} x{k}' for n, k in zip(names, seeds))}); each concept's value is "
          f"its mean over its seeds; concepts resampled\n")
    print(f"reference rule: {reference}\n")
    print("| rule | mean steps | rec. vs paper | edit. vs paper | rec. vs reference | edit. vs reference | words > 0.05 short |")
    print("|---|---|---|---|---|---|---|")
    for m in methods:
        mine = {w: nested(m, w) for w in ("rec", "edit")}
        steps = [p[n]["results"][m]["learn"]["steps"] for p in pers for n in p]
        if paper:
            short = sum(np.mean(p[n]["results"][m]["prompts"][0]["samples"])
                        - np.mean(p[n]["results"][PAPER]["prompts"][0]["samples"]) < -0.05 for p in pers for n in p)
            vs_paper = [fmt(diff(mine["rec"], paper["rec"], 41)), fmt(diff(mine["edit"], paper["edit"], 42)),
                        f"{short} of {len(steps)}"]
        else:
            vs_paper = ["-", "-", "-"]
        vs_ref = ["-", "-"] if m == reference else [fmt(diff(mine["rec"], shipped["rec"], 43)),
                                                     fmt(diff(mine["edit"], shipped["edit"], 44))]
        print(f"| {m} | {sum(steps) / len(steps):.0f} | {vs_paper[0]} | {vs_paper[1]} | {vs_ref[0]} | {vs_ref[1]} | "
              f"{vs_paper[2]} |")
    print(trajectory_jitter(pers, [m for m in methods if m.startswith("stop:")]))  # the lr candidates: other runs
    return 0


def trajectory_jitter(pers: list[dict], methods: list[str]) -> str:
    """The rules of one concept and seed stop one trajectory at different steps (validation draws nothing from
    the step's random generator), so their words are snapshots of one run: how much does reconstruction differ
    between snapshots close together, and far apart?"""
    near, far = [], []
    for p in pers:
        for r in (p[n]["results"] for n in p):
            at = {r[m]["learn"]["steps"]: r[m]["reconstruction"]["mean"] for m in methods}
            for (s1, r1), (s2, r2) in itertools.combinations(sorted(at.items()), 2):
                (near if s2 - s1 <= 75 else far if s2 - s1 >= 300 else []).append(abs(r1 - r2))
    if not near or not far:
        return ""
    return (f"\nSnapshots of one run: reconstruction differs by {np.mean(near):.3f} on average (median "
            f"{np.median(near):.3f}, {len(near)} pairs) between words <= 75 steps apart, {np.mean(far):.3f} (median "
            f"{np.median(far):.3f}, {len(far)} pairs) between words >= 300 steps apart.")


def fmt(d: dict) -> str:
    star = " \\*" if d["ci"][0] > 0 or d["ci"][1] < 0 else ""  # markdown: a literal star
    return f"{d['mean']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]{star}"


if __name__ == "__main__":
    raise SystemExit(main())
