"""Time to quality: reconstruction and editability against image-steps, on the embedded world; writes the
time-to-quality section of docs/benchmarks.md and docs/img/time_to_quality.png.

For each tuning concept (never a HELD_OUT one), one plain single-vector TI run at the paper's setting
(batch 4, lr 0.005, 5,000 steps = 20,000 image-steps, no early stopping) is stopped at several step counts
(one run resumed from its checkpoint: a resumed run is bit-identical to an uninterrupted one), and each
stop is evaluated exactly as in docs/quality.md (world CLIP reconstruction, editability, same sampling
seeds). `oneword learn` as shipped (the model's defaults, early stopping on) is evaluated beside it.
The claim checked: the default reaches the paper setting's final reconstruction in <= 1/4 of its
image-steps, with editability no worse (paired bootstrap over samples and concepts).

    .venv/bin/python -m benchmarks.time_to_quality                 # writes docs/img/time_to_quality.png and
                                                                   # the section of docs/benchmarks.md
    .venv/bin/python -m benchmarks.time_to_quality --quick --docs /tmp/ttq   # smoke run
    # two lanes on two cores (disjoint --names, own --work and --docs), then one section over both:
    .venv/bin/python -m benchmarks.time_to_quality --names teal_ring,... --work runs/time_to_quality --docs /tmp/a
    .venv/bin/python -m benchmarks.time_to_quality --names orange_hourglass,... --work runs/ttq_b --docs /tmp/b
    .venv/bin/python -m benchmarks.time_to_quality --merge runs/time_to_quality runs/ttq_b
    # learning seeds: one --work per --seed, then one table over them (prints, writes nothing)
    .venv/bin/python -m benchmarks.time_to_quality --compare-seeds runs/time_to_quality runs/ttq_seed1
    # learn-many: 8 concepts learned together against 8 sequential learn runs (wall time, reconstruction)
    .venv/bin/python -m benchmarks.time_to_quality --many 8 --repeat 2 --json runs/many.json

--starts also learns each concept from the other starts (oneword.init_words), all at the shipped defaults with early
stopping: `--init auto`, `--init-mode cross` (the concept's init word), `--init encoder`, the encoder's word with
no optimisation (zero-step: one step at lr 0), and the encoder's start with fixed budgets of 50, 100 and 250 steps; their image-steps and quality against the paper setting's final word,
the caption and the default's start. With --held-out: the final report on the held-out concepts (choose nothing there).

    .venv/bin/python -m benchmarks.time_to_quality --starts --work runs/ttq_starts --docs /tmp/starts
    .venv/bin/python -m benchmarks.time_to_quality --starts --held-out --work runs/ttq_starts_ho --docs /tmp/starts_ho

--held-out reports on the HELD_OUT concepts instead; nothing may be chosen from it (each report on them so far,
written down before it ran and dated: experiments/world_defaults/README.md).

--compare-seeds reads the results.json each `--seed S --work DIR` run leaves and reports over the concepts all
of them have, concepts resampled (95% bootstrap; the statistic is the mean over concepts of each concept's mean
over seeds): default - paper per seed (paired: the same sampling seeds) and pooled; the paper run's own word at
each earlier stop (--stops) against its final one, pooled (does the paper setting itself get there by then?);
and each setting against a rerun of itself with another seed. Runs made with --starts also give each start against
the default start and the paper's final word, pooled, and each start - the default start per concept and seed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import Bench, fmt_diff, fmt_summary, log, pooled_diff, save_figure, scores, summarise, write_json
from oneword import evaluation as E

PAPER_STEPS = 5000
# every tuning concept (never a HELD_OUT one): 8 objects (colour, shape, pattern un-named) and 2 styles
NAMES = (
    "teal_ring",
    "lime_star",
    "magenta_heart",
    "red_crescent",
    "blue_arrow",
    "orange_hourglass",
    "striped_square",
    "dotted_circle",
    "style_halftone",
    "style_hatched",
)
# --names late: the late tuning concepts (two un-named attributes each; concepts.LATE_CONCEPTS); --names unseen:
# concepts.UNSEEN_CONCEPTS (a (shape, colour) pair pretraining never drew, and an un-named pattern)


def tuning_names(text: str, ap) -> list[str]:
    """--names: comma-separated tuning concepts, or 'late' / 'unseen' (concepts.LATE_CONCEPTS / UNSEEN_CONCEPTS);
    never a HELD_OUT one."""
    from oneword.world.concepts import HELD_OUT, LATE_CONCEPTS, UNSEEN_CONCEPTS

    sets = {"late": LATE_CONCEPTS, "unseen": UNSEEN_CONCEPTS}
    names = list(sets[text]) if text in sets else text.split(",")
    if set(names) & set(HELD_OUT):
        ap.error(f"{sorted(set(names) & set(HELD_OUT))} are held out: never tune on them (--held-out: a final report)")
    return names


def paper_setting(model, steps: int = PAPER_STEPS, seed: int = 0):
    """Plain TI at the paper's setting (batch 4, lr 0.005, no warm-up, no early stopping), nothing saved on the way."""
    from oneword import LearnConfig

    return LearnConfig.with_defaults(
        model,
        steps=steps,
        batch_size=4,
        lr=5e-3,
        warmup=0,
        early_stop=False,
        save_every=10**9,
        preview_every=0,
        seed=seed,
    )


STOPS = (50, 100, 150, 300, 600, 1250, 2500, PAPER_STEPS)
# --starts: where the word starts (oneword.init_words), each at the shipped defaults with early stopping
STARTS = {"start auto": {"init": "auto"}, "start cross": {"init_mode": "cross"}, "start encoder": {"init": "encoder"}}
ZERO_STEP = {"encoder zero-step": {"init": "encoder", "steps": 1, "lr": 0.0, "early_stop": False}}
# a word in seconds: the encoder's start and a fixed short budget at the shipped lr (early stopping's 24-validation
# window cannot end a run before ~600 steps); 250 steps of 4 photos are 1/20 of the paper's 20,000 image-steps
BUDGETS = {f"encoder + {n} steps": {"init": "encoder", "steps": n, "early_stop": False} for n in (50, 100, 250)}
MARK = ("<!-- time-to-quality: written by benchmarks/time_to_quality.py -->", "<!-- /time-to-quality -->")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="world model folder (default: the shipped one)")
    ap.add_argument("--judge", help="world judge folder (default: the shipped one)")
    ap.add_argument("--names", default=",".join(NAMES), help="tuning concepts (comma-separated, 'late' or 'unseen')")
    ap.add_argument(
        "--stops", default=",".join(map(str, STOPS)), help="step counts evaluated (the last is the paper's)"
    )
    ap.add_argument("--n", type=int, default=16, help="samples per prompt")
    ap.add_argument("--eval-steps", type=int, default=25)
    ap.add_argument("--guidance", type=float, default=5.0)
    ap.add_argument("--work", default="runs/time_to_quality")
    ap.add_argument("--docs", default="docs")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="smoke test: 1 concept, n=4, 5 DDIM steps, stops 5,10,20")
    ap.add_argument(
        "--held-out",
        action="store_true",
        help="a final report on the HELD_OUT concepts instead (nothing may be chosen from it)",
    )
    ap.add_argument(
        "--starts",
        action="store_true",
        help="also the other starts: --init auto, --init-mode cross, --init encoder, and the encoder's "
        "word with no optimisation",
    )
    ap.add_argument(
        "--merge",
        nargs="+",
        metavar="WORK",
        help="learn nothing: one report over the concepts of earlier runs' --work folders (lanes run in "
        "parallel on disjoint --names, same --seed and --stops)",
    )
    ap.add_argument(
        "--compare-seeds",
        nargs="+",
        metavar="WORK",
        help="learn nothing: compare the --work folders of runs with different --seed (printed only)",
    )
    ap.add_argument(
        "--many",
        type=int,
        metavar="N",
        help="instead: the first N tuning concepts with the defaults, learned one after another (learn) and "
        "together (learn_many), alternating --repeat rounds in this process: wall-time ratio and each "
        "word's reconstruction against the sequential word's bootstrap interval (printed, --json)",
    )
    ap.add_argument("--repeat", type=int, default=1, help="--many: rounds (the two sides alternate)")
    ap.add_argument("--slots", type=int, help="--many: concepts per batch (default: learn_many's)")
    ap.add_argument("--json", help="--many: also write the results here")
    args = ap.parse_args(argv)
    if args.compare_seeds:
        return compare_seeds(args.compare_seeds)
    if args.many:
        return many_vs_sequential(args)
    if args.quick:
        args.names, args.n, args.eval_steps, args.stops = "teal_ring", 4, 5, "5,10,20"
    torch.set_num_threads(args.threads)
    started = time.time()

    from oneword import LearnConfig, load_model
    from oneword.world.concepts import HELD_OUT, concept

    names = list(HELD_OUT) if args.held_out else tuning_names(args.names, ap)
    stops = sorted(int(s) for s in args.stops.split(","))
    model = load_model(args.model, device="cpu")
    default = LearnConfig.with_defaults(model)  # `oneword learn` as shipped
    paper = paper_setting(model, stops[-1], args.seed)
    variants = {
        "ti": {},
        **{f"steps {s}": {"steps": s} for s in stops if s != paper.steps},
        "oneword default": {
            "early_stop": True,
            "steps": default.steps,
            "batch_size": default.batch_size,
            "lr": default.lr,
            "warmup": default.warmup,
        },
    }
    if args.starts:
        base = variants["oneword default"]
        variants.update({k: {**base, **v} for k, v in STARTS.items()})
        variants.update(ZERO_STEP)
        variants.update({k: {**base, **v} for k, v in BUDGETS.items()})
    if args.merge:  # the lanes' saved concepts, in the order of NAMES where they are tuning concepts
        per, minutes = {}, 0.0
        for work in args.merge:
            saved = json.loads((Path(work) / "results.json").read_text())
            per.update(saved["per_concept"])
            minutes = max(minutes, saved["res"]["minutes"])  # the lanes ran side by side
        names = sorted(per, key=lambda n: NAMES.index(n) if n in NAMES else len(NAMES))
        return report(per, names, model, default, paper, stops, variants, args, argv, minutes)
    judge = E.load_judge(args.judge or "world")  # only learning and evaluating need the judge
    ecfg = E.EvalConfig(n=args.n, steps=args.eval_steps, guidance=args.guidance, seed=args.seed, bootstrap=2000)
    bench = Bench(model, judge, paper, ecfg, Path(args.work), 5)
    log(
        f"model {model.identity['fingerprint']}, concepts {names}, stops {stops}, default: {default.steps} steps "
        f"max, batch {default.batch_size}, lr {default.lr:g}, early stopping from step {default.min_steps}"
    )
    per = {n: bench.concept(concept(n), list(variants), variants) for n in names}
    return report(per, names, model, default, paper, stops, variants, args, argv, (time.time() - started) / 60)


def many_vs_sequential(args) -> int:
    """N tuning concepts, same seeds and defaults: N sequential `learn` runs against one `learn_many`, the two
    alternating (round r: sequential first when r is even), then each word's world-CLIP reconstruction."""
    import shutil

    from oneword import LearnConfig, learn, load_model
    from oneword.formats import load_concepts
    from oneword.many import Job, learn_many
    from oneword.world.concepts import concept

    torch.set_num_threads(args.threads)
    names = list(NAMES)[: args.many]
    model = load_model(args.model, device="cpu")
    work = Path(args.work) / "many"
    shutil.rmtree(work, ignore_errors=True)
    jobs = []
    for i, name in enumerate(names):
        c, folder = concept(name), work / "photos" / name
        folder.mkdir(parents=True)
        for j, im in enumerate(c.photos(5, seed=0)):
            im.save(folder / f"{j}.png")
        jobs.append(Job(token=f"<{name}>", photos=str(folder), init=c.init_word, property=c.kind, seed=args.seed))
    times = {"sequential": [], "many": []}
    for r in range(args.repeat):
        for side in ("sequential", "many") if r % 2 == 0 else ("many", "sequential"):
            out = work / f"{side}{r}"
            started = time.perf_counter()
            if side == "many":
                learn_many(
                    model, [Job(**{**j.__dict__, "out": None}) for j in jobs], out, slots=args.slots, progress=False
                )
            else:
                for j in jobs:
                    learn(
                        model,
                        j.photos,
                        LearnConfig.with_defaults(model, **j.overrides()),
                        out / j.token.strip("<>"),
                        progress=False,
                    )
            times[side].append(time.perf_counter() - started)
            log(f"round {r} {side}: {times[side][-1]:.1f} s")
    ratio = float(np.median(times["sequential"]) / np.median(times["many"]))
    judge = E.load_judge(args.judge or "world")
    ecfg = E.EvalConfig(n=args.n, steps=args.eval_steps, guidance=args.guidance, seed=args.seed, bootstrap=2000)
    rows = []
    for j, name in zip(jobs, names):
        c = concept(name)
        photos = sorted((work / "photos" / name).glob("*.png"))
        words = [
            load_concepts(work / f"{side}0" / name / "learned_embeds.safetensors")[0] for side in ("sequential", "many")
        ]
        steps = [
            json.loads((work / f"{side}0" / name / "run.json").read_text())["step"] for side in ("sequential", "many")
        ]
        res = E.evaluate(model, [str(p) for p in photos], words, judge, kind=c.kind, config=ecfg)["results"]
        seq, mny = res[0]["reconstruction"], res[1]["reconstruction"]
        inside = seq["ci"][0] <= mny["mean"] <= seq["ci"][1]
        rows.append({"concept": name, "steps": steps, "sequential": seq, "many": mny, "within_interval": inside})
        log(
            f"{name}: steps {steps[0]} / {steps[1]}; reconstruction sequential {E.fmt(seq)}, many {E.fmt(mny)}"
            f"{'' if inside else '  OUTSIDE'}"
        )
    log(
        f"wall time: sequential {np.median(times['sequential']):.1f} s, learn-many {np.median(times['many']):.1f} s "
        f"(medians of {args.repeat}): {ratio:.2f}x; reconstruction within the sequential interval: "
        f"{sum(r['within_interval'] for r in rows)}/{len(rows)}"
    )
    if args.json:
        write_json(Path(args.json), {"times": times, "ratio": ratio, "concepts": rows, "threads": args.threads})
    return 0


def report(per, names, model, default, paper, stops, variants, args, argv, minutes: float) -> int:
    """The curve, the default's point and the per-concept table: JSON in --work, plot and section in --docs."""
    summary = summarise(per, ["caption"] + list(variants))

    curve = []
    for s in stops:
        m = "ti" if s == paper.steps else f"steps {s}"
        curve.append(
            {
                "steps": s,
                "image_steps": s * paper.batch_size,
                "reconstruction": summary[m]["reconstruction"],
                "editability": summary[m]["editability"],
            }
        )
    d = summary["oneword default"]
    used = [per[n]["results"]["oneword default"]["learn"]["steps"] for n in names]
    seconds = [per[n]["results"]["oneword default"]["learn"]["seconds"] for n in names]
    final = curve[-1]["reconstruction"]["mean"]
    reach = next((c["image_steps"] for c in curve if c["reconstruction"]["mean"] >= final), None)
    res = {
        "curve": curve,
        "default": {
            "reconstruction": d["reconstruction"],
            "editability": d["editability"],
            "vs_paper": d["vs_ti"],
            "steps": used,
            "seconds": seconds,
            "image_steps": float(np.mean(used)) * default.batch_size,
            "batch": default.batch_size,
            "lr": default.lr,
        },
        "paper_image_steps": curve[-1]["image_steps"],
        "first_stop_reaching_final": reach,
        "caption": {k: summary["caption"][k] for k in ("reconstruction", "editability")},
        "per_concept": per_concept_rows(per, names),
        "minutes": round(minutes, 1),
    }
    if any(v in summary for v in STARTS):
        res["starts"] = starts_table(per, names, summary, default)
    if not args.merge:
        write_json(Path(args.work) / "results.json", {"res": res, "per_concept": per})  # for later reading
    docs = Path(args.docs)
    plot(res, docs / "img" / "time_to_quality.png")
    section = render(res, names, model, default, args, argv if argv is not None else sys.argv[1:])
    write_section(docs / "benchmarks.md", section)
    print(section)
    log(f"done in {res['minutes']} min")
    return 0


def starts_table(per: dict, names, summary: dict, default) -> list[dict]:
    """Each start (the default's init word, auto, cross, encoder, the encoder's zero-step word): image-steps,
    learning seconds, quality, and paired differences (concepts resampled) to the paper setting's final word, the
    caption and the default."""

    def samples(m, what):
        return [
            per[n]["results"][m]["prompts"][0]["samples"]
            if what == "rec"
            else [q["samples"] for q in per[n]["results"][m]["prompts"][1:]]
            for n in names
        ]

    rows = []
    for m in ["oneword default", *STARTS, *ZERO_STEP, *BUDGETS]:
        if m not in summary:
            continue
        learned = [per[n]["results"][m]["learn"] for n in names]
        steps = 0 if m in ZERO_STEP else float(np.mean([x["steps"] for x in learned]))
        row = {
            "start": m,
            "image_steps": steps * default.batch_size,
            "seconds": [x["seconds"] for x in learned],
            "steps": [x["steps"] for x in learned],
            "reconstruction": summary[m]["reconstruction"],
            "editability": summary[m]["editability"],
        }
        for other, key in (("ti", "vs_paper"), ("caption", "vs_caption"), ("oneword default", "vs_default")):
            if other != m:
                row[key] = {
                    "reconstruction": pooled_diff(samples(m, "rec"), samples(other, "rec"), 51),
                    "editability": pooled_diff(samples(m, "edit"), samples(other, "edit"), 52),
                }
        rows.append(row)
    return rows


def per_concept_rows(per: dict, names) -> list[dict]:
    """Each concept: where the default stopped, and its word against the paper setting's final word (paired,
    samples resampled)."""
    rows = []
    for n in names:
        r = per[n]["results"]
        d, p, c = r["oneword default"]["prompts"], r["ti"]["prompts"], r["caption"]["prompts"]
        rows.append(
            {
                "concept": n,
                "steps": r["oneword default"]["learn"]["steps"],
                "paper": r["ti"]["reconstruction"]["mean"],
                "default": r["oneword default"]["reconstruction"]["mean"],
                "reconstruction": E.difference(d[0]["samples"], p[0]["samples"], seed=21),
                "editability": E.difference([q["samples"] for q in d[1:]], [q["samples"] for q in p[1:]], seed=22),
                "paper_vs_caption": E.difference(p[0]["samples"], c[0]["samples"], seed=23),
                "default_vs_caption": E.difference(d[0]["samples"], c[0]["samples"], seed=24),
            }
        )
    return rows


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    xs = [c["image_steps"] for c in res["curve"]]
    for ax, key, title in (
        (axes[0], "reconstruction", "reconstruction (CLIP image-image)"),
        (axes[1], "editability", "editability (CLIP text-image)"),
    ):
        mean = [c[key]["mean"] for c in res["curve"]]
        lo, hi = [c[key]["ci"][0] for c in res["curve"]], [c[key]["ci"][1] for c in res["curve"]]
        ax.plot(xs, mean, "o-", color="#d62728", label="plain TI, paper setting (batch 4, lr 0.005)")
        ax.fill_between(xs, lo, hi, color="#d62728", alpha=0.15)
        dft = res["default"]
        ax.errorbar(
            [dft["image_steps"]],
            [dft[key]["mean"]],
            yerr=[[dft[key]["mean"] - dft[key]["ci"][0]], [dft[key]["ci"][1] - dft[key]["mean"]]],
            fmt="*",
            ms=14,
            color="#2ca02c",
            label=f"oneword learn default (batch {res['default']['batch']}, lr {res['default']['lr']:g}, "
            "early stopping)",
        )
        ax.axhline(res["caption"][key]["mean"], color="#444444", ls=":", label="human caption")
        ax.axvline(res["paper_image_steps"] / 4, color="#999999", ls="--", lw=1, label="1/4 of the paper's image-steps")
        ax.set_xscale("log")
        ax.set_xlabel("image-steps (steps x batch)")
        ax.set_title(title)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    save_figure(fig, path)


def render(res: dict, names, model, default, args, argv) -> str:
    f = fmt_summary
    rows = "\n".join(
        f"| {c['steps']} | {c['image_steps']:,} | {f(c['reconstruction'])} | {f(c['editability'])} |"
        for c in res["curve"]
    )
    d = res["default"]
    vs = d["vs_paper"]
    ratio = d["image_steps"] / res["paper_image_steps"]
    reach = res["first_stop_reaching_final"]
    per_rows = "\n".join(
        f"| {r['concept']} | {r['steps']} | {r['paper']:.3f} | {r['default']:.3f} | "
        f"{fmt_diff(r['reconstruction'])} | {fmt_diff(r['editability'])} | {fmt_diff(r['paper_vs_caption'])} | "
        f"{fmt_diff(r['default_vs_caption'])} |"
        for r in res["per_concept"]
    )
    return f"""{MARK[0]}
## Time to quality: `benchmarks/time_to_quality.py`

```
HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.time_to_quality {" ".join(argv)}
```

World model `{model.identity["fingerprint"]}`, concepts {", ".join(names)} (tuning concepts; the held-out ones
are not used), 5 photos each; evaluation as in docs/quality.md ({args.n} samples per prompt, {args.eval_steps}
DDIM steps, guidance {args.guidance:g}, world CLIP in the judge's language); means over concepts with 95% bootstrap intervals
(samples and concepts resampled). {res["minutes"]} min on 2 CPU cores.

Plain TI at the paper's setting (batch 4, lr 0.005, no early stopping), stopped along the way:

| steps | image-steps | reconstruction | editability |
|---|---|---|---|
{rows}
| human caption | - | {f(res["caption"]["reconstruction"])} | {f(res["caption"]["editability"])} |

`oneword learn` as shipped (world defaults: at most {default.steps} steps, batch {default.batch_size}, lr
{default.lr:g}, early stopping from step {default.min_steps} on a {default.val_window}-validation window): stopped after {", ".join(map(str, d["steps"]))} steps
= **{d["image_steps"]:,.0f} image-steps, {ratio:.1%} of the paper's {res["paper_image_steps"]:,}**
({", ".join(f"{s:.0f}" for s in d["seconds"])} s of learning per concept on 2 CPU cores).
Reconstruction {f(d["reconstruction"])}, editability {f(d["editability"])}; against the paper setting's
final word: reconstruction {fmt_diff(vs["reconstruction"])}, editability {fmt_diff(vs["editability"])}
(paired, concepts resampled). The paper run's own curve first reaches its final reconstruction at
{f"{reach:,} image-steps" if reach else "its last stop"}.

Per concept (default against the paper setting's final word, samples resampled):

| concept | default stopped at | paper final rec. | default rec. | rec. difference | edit. difference | paper final − caption | default − caption |
|---|---|---|---|---|---|---|---|
{per_rows}

![time to quality](img/time_to_quality.png)
{render_starts(res, names)}{MARK[1]}
"""


def render_starts(res: dict, names) -> str:
    """The --starts table (empty without it)."""
    if "starts" not in res:
        return ""
    rows = []
    for r in res["starts"]:
        d = {k: r.get(k) for k in ("vs_paper", "vs_caption", "vs_default")}
        rows.append(
            f"| {r['start']} | {r['image_steps']:,.0f} ({r['image_steps'] / res['paper_image_steps']:.1%}) | "
            f"{', '.join(f'{s:.0f}' for s in r['seconds'])} | {fmt_summary(r['reconstruction'])} | "
            f"{fmt_summary(r['editability'])} | "
            + " | ".join(
                f"{fmt_diff(d[k]['reconstruction'])}, {fmt_diff(d[k]['editability'])}" if d[k] else "-"
                for k in ("vs_paper", "vs_caption", "vs_default")
            )
            + " |"
        )
    return (
        f"""
Where the word starts (`--starts`; concepts {", ".join(names)}; each at the shipped defaults with early stopping,
except the encoder's zero-step word (no optimisation) and "encoder + N steps" (the encoder's start, N steps, no
early stopping)). Differences are (reconstruction, editability), paired, concepts resampled:

| start | image-steps (of the paper's) | seconds per word | reconstruction | editability | − paper's final word | − caption | − default start |
|---|---|---|---|---|---|---|---|
"""
        + "\n".join(rows)
        + "\n"
    )


def compare_seeds(work: list[str]) -> int:
    """The --compare-seeds tables (see the module's docstring)."""
    default_m, paper_m = "oneword default", "ti"
    pers = [json.loads((Path(w) / "results.json").read_text())["per_concept"] for w in work]
    names = [n for n in pers[0] if all(n in p for p in pers)]
    default = [scores(p, default_m, names) for p in pers]
    paper = [scores(p, paper_m, names) for p in pers]

    def by_concept(runs: list[dict], what: str) -> list:  # [concept][seed] -> samples: concepts are the clusters
        return [list(seeds) for seeds in zip(*(r[what] for r in runs))]

    rows = [
        (
            f"default - paper, {w}",
            pooled_diff(default[i]["rec"], paper[i]["rec"], 31),
            pooled_diff(default[i]["edit"], paper[i]["edit"], 32),
        )
        for i, w in enumerate(work)
    ]
    rows.append(
        (
            f"default - paper, pooled over {len(pers)} seeds",
            pooled_diff(by_concept(default, "rec"), by_concept(paper, "rec"), 33),
            pooled_diff(by_concept(default, "edit"), by_concept(paper, "edit"), 34),
        )
    )
    # the paper run's intermediate stops that every run evaluated: does its own budget suffice?
    stops = sorted(
        (
            m
            for m in pers[0][names[0]]["results"]
            if m.startswith("steps ") and all(m in p[n]["results"] for p in pers for n in names)
        ),
        key=lambda m: int(m.split()[1]),
    )
    early = {stop: [scores(p, stop, names) for p in pers] for stop in stops}
    for stop in stops:
        rows.append(
            (
                f"paper at {stop} - paper final, pooled over {len(pers)} seeds",
                pooled_diff(by_concept(early[stop], "rec"), by_concept(paper, "rec"), 45),
                pooled_diff(by_concept(early[stop], "edit"), by_concept(paper, "edit"), 46),
            )
        )
    # --starts runs: each start against the default start and the paper's final word, pooled over the seeds
    starts = [m for m in (*STARTS, *ZERO_STEP, *BUDGETS) if all(m in p[n]["results"] for p in pers for n in names)]
    started = {m: [scores(p, m, names) for p in pers] for m in starts}
    for m in starts:
        for label, ref in (("the default start", default), ("paper final", paper)):
            rows.append(
                (
                    f"{m} - {label}, pooled over {len(pers)} seeds",
                    pooled_diff(by_concept(started[m], "rec"), by_concept(ref, "rec"), 48),
                    pooled_diff(by_concept(started[m], "edit"), by_concept(ref, "edit"), 49),
                )
            )
    for (i, a), (j, b) in itertools.combinations(enumerate(work), 2):
        for label, runs in (("paper", paper), ("default", default)):
            rows.append(
                (
                    f"{label} {b} - {label} {a}",
                    pooled_diff(runs[j]["rec"], runs[i]["rec"], 35),
                    pooled_diff(runs[j]["edit"], runs[i]["edit"], 36),
                )
            )
    print(f"concepts: {', '.join(names)}\n")
    print("| comparison | reconstruction | editability |\n|---|---|---|")
    for label, rec, edit in rows:
        print(f"| {label} | {fmt_diff(rec)} | {fmt_diff(edit)} |")
    print(
        f"\nPer concept, default - paper over the {len(pers)} seeds (seeds and samples resampled: with so few seeds a\n"
        "rough interval, but one that holds each word's learning luck, not only the sampling noise):\n"
    )
    print(
        "| concept | steps the default ran | reconstruction, per seed | pooled | editability, pooled |"
        + "".join(f" paper at {stop} - final, rec. |" for stop in stops)
        + "\n|---|---|---|---|---|"
        + "---|" * len(stops)
    )
    for i, n in enumerate(names):
        rec = [E.difference(d["rec"][i], q["rec"][i], seed=37)["mean"] for d, q in zip(default, paper)]
        steps = [p[n]["results"][default_m]["learn"]["steps"] for p in pers]
        pooled = pooled_diff([d["rec"][i] for d in default], [q["rec"][i] for q in paper], 38)
        pooled_edit = pooled_diff([d["edit"][i] for d in default], [q["edit"][i] for q in paper], 39)
        own = "".join(
            f" {fmt_diff(pooled_diff([e['rec'][i] for e in early[stop]], [q['rec'][i] for q in paper], 47))} |"
            for stop in stops
        )
        print(
            f"| {n} | {', '.join(map(str, steps))} | {', '.join(f'{r:+.3f}' for r in rec)} | {fmt_diff(pooled)} | "
            f"{fmt_diff(pooled_edit)} |{own}"
        )
    if starts:
        print(f"\nPer concept, each start - the default start in reconstruction, per seed ({', '.join(work)}):\n")
        print("| concept | " + " | ".join(starts) + " |\n|---|" + "---|" * len(starts))
        for i, n in enumerate(names):
            cells = [
                ", ".join(
                    f"{E.difference(s['rec'][i], d['rec'][i], seed=50)['mean']:+.3f}"
                    for s, d in zip(started[m], default)
                )
                for m in starts
            ]
            print(f"| {n} | " + " | ".join(cells) + " |")
    return 0


def write_section(path: Path, section: str) -> None:
    """Replace the marked section of docs/benchmarks.md (or append it)."""
    from oneword.safeio import atomic_write_text

    text = path.read_text() if path.is_file() else ""
    pattern = re.compile(re.escape(MARK[0]) + ".*?" + re.escape(MARK[1]) + "\n?", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    atomic_write_text(path, text)


if __name__ == "__main__":
    raise SystemExit(main())
