"""The paper's quantitative analysis, reproduced on the embedded world; writes docs/quality.md and docs/img/
(and, with --ti-seeds, docs/ti_seeds.md).

On the world's novel concepts (HELD_OUT ones are never used for choosing anything: they are reported
separately, for the baseline and for the setting chosen on the tuning concepts), with one judge (the
world CLIP + attribute oracle) and the same sampling seeds for every method:

  1. the distortion-editability tradeoff (the paper's figure 10): a human caption in place of S*, single-
     vector TI, multi-vector TI (2, 4, 8), a higher learning rate, fewer / more steps, the embedding-
     regularised variant (L2 pull toward the init word) and early stopping; reconstruction vs editability
     with 95% bootstrap intervals, as a scatter plot;
  2. the claims: TI beats the caption on reconstruction (per concept, paired bootstrap); multi-vector raises
     reconstruction and lowers editability; a setting at least as good as single-vector TI on both axes
     and better on one (chosen on the tuning concepts, then checked on the held-out ones);
  3. bias reduction: a "fair" word learned from a small colour-balanced set for the world's biased word;
     colour distribution (entropy, histogram) of generations, biased word vs learned word;
  4. composition: two learned words in one prompt; how often both concepts appear (oracle).

--ti-seeds instead repeats plain TI with three learning seeds on every object concept against the caption
(reconstruction only): is TI's win over the caption a property of the concept or of one learning run?

Learned words are cached in --work (keyed by their full configuration), so an interrupted run resumes and
a second run only re-evaluates. CPU budget: the defaults fit ~25 minutes on 2 cores; scale with flags.

    .venv/bin/python -m benchmarks.tradeoff --threads 1             # the committed docs/quality.md
    .venv/bin/python -m benchmarks.tradeoff --concepts 8 --n 64 --eval-steps 50 --learn-steps 1000   # bigger
    .venv/bin/python -m benchmarks.tradeoff --model DIR --judge DIR --docs /tmp/q --quick            # smoke run
    .venv/bin/python -m benchmarks.tradeoff --ti-seeds              # docs/ti_seeds.md (~6 min on one core)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import (
    CAPTION_INIT,
    Bench,
    fmt_diff,
    fmt_share,
    fmt_summary,
    log,
    oracle_truth,
    save_figure,
    summarise,
    write_json,
)
from oneword import evaluation as E

# Tuning concepts in the order they are taken (objects of each un-named kind first, then styles).
TUNING_ORDER = (
    "teal_ring",
    "red_crescent",
    "striped_square",
    "style_halftone",
    "lime_star",
    "blue_arrow",
    "dotted_circle",
    "magenta_heart",
    "orange_hourglass",
    "style_hatched",
)


# Every novel concept outside the tuning set also gets the caption, plain TI (at the base steps and at the paper's
# 5,000) and the recommended way to learn an object whose value has no word (two vectors from the caption's words):
# the survey of TI vs caption. Composition uses the first two.
PAPER = "steps 5000 (paper)"
SURVEY = ("ti", "vectors=2 caption init", PAPER)
GROUPS = ("object concepts", "colour or shape concepts", "pattern concepts", "style concepts")  # pooled in the survey
TI_SEEDS = (0, 1, 2)  # --ti-seeds: learning seeds of each object concept's plain TI word


def variants(
    base_steps: int, base_lr: float, paper_steps: int = 5000, default_steps: int | None = None
) -> dict[str, dict]:
    """LearnConfig overrides of each method; "ti" is the plain paper method (fixed steps, one vector)."""
    return {
        "ti": {},
        "vectors=2": {"vectors": 2},
        "vectors=4": {"vectors": 4},
        "vectors=8": {"vectors": 8},
        "vectors=2 caption init": {"vectors": 2, "init": CAPTION_INIT},  # "blue ring": colour slot, shape slot
        "vectors=2 caption init + reg": {"vectors": 2, "init": CAPTION_INIT, "reg_weight": 3e-3},  # pulled to the words
        "lr x4": {"lr": base_lr * 4},
        "steps /3": {"steps": max(1, base_steps // 3)},
        "steps /2": {"steps": max(1, base_steps // 2)},
        "steps 2/3": {"steps": max(1, base_steps * 2 // 3)},
        "steps x2": {"steps": base_steps * 2},
        PAPER: {"steps": paper_steps},  # the paper's schedule in full (batch 4, lr 0.005)
        "reg": {"reg_weight": 1e-2},  # official code's embedding_reg_weight range; world vectors have norm ~0.5
        # `oneword learn` as shipped: early stopping with the model's own step cap (default_steps, from its defaults)
        "early stop": {"early_stop": True, **({"steps": default_steps} if default_steps else {})},
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="world model folder (default: the shipped one)")
    ap.add_argument("--judge", help="world judge folder (default: the shipped one)")
    ap.add_argument("--concepts", type=int, default=4, help="tuning concepts (of %d)" % len(TUNING_ORDER))
    ap.add_argument("--names", help="comma-separated tuning concepts instead of --concepts")
    ap.add_argument("--variants", help="comma-separated subset of the variants (default: all)")
    ap.add_argument("--n", type=int, default=16, help="samples per prompt")
    ap.add_argument("--eval-steps", type=int, default=25, help="DDIM steps per sample")
    ap.add_argument("--guidance", type=float, default=5.0)
    ap.add_argument(
        "--learn-steps",
        type=int,
        default=300,
        help="steps of plain TI, the base of every variant (300: the paper's schedule where the world's "
        "object words have converged, docs/benchmarks.md; the variants then differ in one thing each)",
    )
    ap.add_argument("--lr", type=float, help="base learning rate (default: the model's learn default)")
    ap.add_argument("--photos", type=int, default=5, help="user photos per concept")
    ap.add_argument("--bias-n", type=int, default=64, help="samples per prompt for the bias experiment")
    ap.add_argument("--no-held-out", action="store_true", help="skip the held-out confirmation")
    ap.add_argument(
        "--no-survey",
        action="store_true",
        help="skip the other novel concepts (caption, TI and 2 caption-initialised vectors on each)",
    )
    ap.add_argument("--work", default="runs/tradeoff", help="cache of learned words and raw results")
    ap.add_argument("--docs", default="docs", help="where quality.md and img/ go")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="smoke test: 2 concepts, n=4, 5 steps, 20 learn steps")
    ap.add_argument(
        "--from-results",
        action="store_true",
        help="re-choose the setting and rewrite quality.md and the plots from WORK/results.json (no sampling)",
    )
    ap.add_argument(
        "--ti-seeds",
        action="store_true",
        help="instead: plain TI with seeds 0, 1, 2 against the caption on every object concept "
        "(DOCS/ti_seeds.md; words cached in runs/ti_seeds unless --work is given)",
    )
    args = ap.parse_args(argv)
    if args.from_results:
        return rerender(Path(args.work), Path(args.docs))
    if args.ti_seeds:
        work = Path("runs/ti_seeds") if args.work == ap.get_default("work") else Path(args.work)
        return ti_seeds(args.model, args.judge, work, Path(args.docs))
    if args.quick:
        args.concepts, args.n, args.eval_steps, args.learn_steps, args.bias_n = 2, 4, 5, 20, 8
    torch.set_num_threads(args.threads)
    started = time.time()

    from oneword import LearnConfig, load_model
    from oneword.world.concepts import HELD_OUT, NOVEL_CONCEPTS

    model = load_model(args.model, device="cpu")
    judge = E.load_judge(args.judge or "world")
    base = LearnConfig.with_defaults(
        model, steps=args.learn_steps, lr=args.lr, early_stop=False, save_every=10**9, preview_every=0, seed=args.seed
    )
    all_variants = variants(
        base.steps,
        base.lr,
        paper_steps=40 if args.quick else 5000,
        default_steps=base.steps if args.quick else LearnConfig.with_defaults(model).steps,
    )
    chosen_variants = args.variants.split(",") if args.variants else list(all_variants)
    unknown = [v for v in chosen_variants if v not in all_variants]
    if unknown:
        ap.error(f"unknown variants {unknown}; choose from {list(all_variants)}")
    names = args.names.split(",") if args.names else list(TUNING_ORDER[: args.concepts])
    if set(names) & set(HELD_OUT):
        ap.error(f"{sorted(set(names) & set(HELD_OUT))} are held out: never tune on them")
    ecfg = E.EvalConfig(n=args.n, steps=args.eval_steps, guidance=args.guidance, seed=args.seed, bootstrap=2000)
    bench = QualityBench(model, judge, base, ecfg, Path(args.work), args.photos)
    log(
        f"model {model.identity['source']} ({model.identity['fingerprint']}), tuning concepts {names}, "
        f"variants {chosen_variants}, n={args.n}, {args.eval_steps} DDIM steps, learn {base.steps} steps lr {base.lr:g}"
    )

    # 1. the tradeoff on the tuning concepts
    tuning = {name: bench.concept(NOVEL_CONCEPTS[name], chosen_variants, all_variants) for name in names}
    summary = summarise(tuning, ["caption"] + chosen_variants)
    best = choose_setting(summary, chosen_variants)
    log(f"tuning done; chosen setting: {best['name'] if best else None}")

    # held-out: the baseline and the chosen setting, never used to choose anything
    held = {}
    keep = list(dict.fromkeys(["ti"] + ([best["name"]] if best else [])))
    if not args.no_held_out:
        held = {
            name: bench.concept(NOVEL_CONCEPTS[name], list(dict.fromkeys(keep + list(SURVEY))), all_variants)
            for name in HELD_OUT
        }
    held_summary = summarise(held, ["caption"] + keep) if held else {}

    # the survey: TI vs caption on every novel concept (the rest of the tuning order; the held-out ones above)
    others = [n for n in TUNING_ORDER if n not in names][: 2 if args.quick else None]
    survey = (
        {}
        if args.no_survey
        else {name: bench.concept(NOVEL_CONCEPTS[name], list(SURVEY), all_variants) for name in others}
    )
    everything = {**tuning, **survey, **held}
    versus = versus_caption(everything, judge)

    # 3. bias and 4. composition
    bias = bench.bias(args.bias_n)
    seen = {**tuning, **survey}
    composition = bench.composition(
        [n for n in seen if NOVEL_CONCEPTS[n].kind == "object"], [n for n in seen if NOVEL_CONCEPTS[n].kind == "style"]
    )

    docs = Path(args.docs)
    (docs / "img").mkdir(parents=True, exist_ok=True)
    plot_tradeoff(summary, docs / "img" / "tradeoff.png", held_summary)
    plot_bias(bias, docs / "img" / "bias.png")
    sample_sheet(bench, names, chosen_variants, docs / "img" / "tradeoff_samples.png")
    raw = {
        "args": vars(args),
        "learn_base": asdict(base),
        "eval": asdict(ecfg),
        "model": model.identity,
        "tuning": strip_samples(tuning),
        "summary": summary,
        "best": best,
        "held_out": strip_samples(held),
        "held_out_summary": held_summary,
        "survey": strip_samples(survey),
        "versus_caption": versus,
        "bias": bias,
        "composition": composition,
        "minutes": round((time.time() - started) / 60, 1),
        "argv": list(argv if argv is not None else sys.argv[1:]),
    }
    from oneword.safeio import atomic_write_text

    write_json(Path(args.work) / "results.json", raw)
    atomic_write_text(docs / "quality.md", render_markdown(raw, argv if argv is not None else sys.argv[1:]))
    log(f"wrote {docs / 'quality.md'} and {docs / 'img'} in {raw['minutes']} min")
    return 0


def rerender(work: Path, docs: Path) -> int:
    """quality.md and the plots again from a finished run's results.json, with the current choice rule.
    The held-out table keeps only the baseline and the (re)chosen setting; the sample sheet is not redrawn."""
    from oneword.safeio import atomic_write_text

    raw = _in_run_order(json.loads((work / "results.json").read_text()))
    raw["best"] = choose_setting(raw["summary"], [m for m in raw["summary"] if m != "caption"])
    keep = {"caption", "ti"} | ({raw["best"]["name"]} if raw["best"] else set())
    raw["held_out_summary"] = {m: v for m, v in raw["held_out_summary"].items() if m in keep}
    plot_tradeoff(raw["summary"], docs / "img" / "tradeoff.png", raw["held_out_summary"])
    plot_bias(raw["bias"], docs / "img" / "bias.png")
    write_json(work / "results.json", raw)
    atomic_write_text(docs / "quality.md", render_markdown(raw, raw.get("argv", [])))
    log(f"rewrote {docs / 'quality.md'}; chosen setting: {raw['best']['name'] if raw['best'] else None}")
    return 0


def _in_run_order(raw: dict) -> dict:
    """results.json is written with sorted keys; put methods and concepts back in the order a run takes them."""
    from oneword.world.concepts import HELD_OUT

    methods = ["caption", *variants(1, 1.0)]
    concepts = [*TUNING_ORDER, *HELD_OUT]

    def order(d: dict, keys: list) -> dict:
        return {k: d[k] for k in sorted(d, key=lambda k: keys.index(k) if k in keys else len(keys))}

    for key in ("summary", "held_out_summary"):
        raw[key] = order(raw[key], methods)
        for m in raw[key].values():
            if "per_concept" in m:
                m["per_concept"] = order(m["per_concept"], concepts)
    for key in ("tuning", "held_out", "survey"):
        if key in raw:
            raw[key] = order(raw[key], concepts)
    if "versus_caption" in raw:
        raw["versus_caption"]["per_concept"] = order(raw["versus_caption"]["per_concept"], concepts)
        raw["versus_caption"]["pooled"] = order(raw["versus_caption"]["pooled"], list(GROUPS))
    return raw


# ------------------------------------------------------------------------------------------ the runs
class QualityBench(Bench):
    """common.Bench plus the two experiments only docs/quality.md runs: bias and composition."""

    def bias(self, n: int) -> dict:
        """A fair word for the biased word, learned from a small colour-balanced set."""
        from oneword.world.concepts import BALANCED_SET, biased_word, fair_photos

        word, colour = biased_word()
        photos = fair_photos(len(BALANCED_SET), seed=0)
        fair, info = self.learn("fair_" + word, photos, "fair", {}, word, "object")
        runs = {f"a photo of a {word}": [], f"a photo of {fair.token}": [fair]}
        out = {
            "word": word,
            "biased_colour": colour,
            "balanced_set": list(BALANCED_SET),
            "n": n,
            "learn": info,
            "prompts": {},
        }
        for prompt, concepts in runs.items():
            images = E.sample(
                self.model,
                prompt,
                concepts,
                n=n,
                steps=self.ecfg.steps,
                guidance=self.ecfg.guidance,
                seed=self.ecfg.seed,
                scheduler=self.ecfg.scheduler,
            )
            labels = self.judge.oracle(images)
            colours = labels["colour"]
            is_word = np.array([s == word for s in labels["shape"]], float)
            ent = [
                E.entropy_bits([colours[i] for i in idx])
                for idx in np.random.default_rng(self.ecfg.seed).integers(0, n, (2000, n))
            ]
            counts = {c: colours.count(c) for c in sorted(set(colours), key=lambda c: -colours.count(c))}
            out["prompts"][prompt] = {
                "label": "learned fair word" if concepts else "biased word",
                "colour_counts": counts,
                "entropy_bits": E.entropy_bits(colours),
                "entropy_ci": [float(np.quantile(ent, 0.025)), float(np.quantile(ent, 0.975))],
                "share_biased": E.summary([float(c == colour) for c in colours], seed=1),
                "shape_is_word": E.summary(is_word.tolist(), seed=2),
            }
            self.images[("bias", prompt)] = images
        log(
            "bias: "
            + "; ".join(
                f"{p}: entropy {v['entropy_bits']:.2f} bits, {colour} {v['share_biased']['mean']:.0%}"
                for p, v in out["prompts"].items()
            )
        )
        return out

    def composition(self, names: list[str], styles: list[str]) -> dict:
        """Two learned words in one prompt: how often both concepts appear. Side by side: neighbouring object
        concepts of `names`, `a photo of S1 and S2`. In a style (the paper's composition figure): the first 4
        objects x each style concept, `S1 in the style of S2`. Each with plain TI words, with the survey's 2-vector
        words and with captions in their place."""
        from oneword.world.concepts import NOVEL_CONCEPTS

        side = [(a, b, "a photo of {} and {}", "a photo of {} and {}") for a, b in list(zip(names, names[1:]))[:7]]
        styled = [(a, b, "{} in the style of {}", "{1} of {0}") for a in names[:4] for b in styles]
        out = {"n": self.ecfg.n}
        for key, pairs in (("pairs", side), ("style_pairs", styled)):
            both = {label: [] for label in (*SURVEY[:2], "caption")}
            out[key] = []
            for a, b, template, caption_template in pairs:
                ca, cb = NOVEL_CONCEPTS[a], NOVEL_CONCEPTS[b]
                row = {"a": a, "b": b}
                for label in (*SURVEY[:2], "caption"):
                    concepts = [] if label == "caption" else [self.words.get((a, label)), self.words.get((b, label))]
                    if None in concepts:
                        continue
                    prompt = (
                        caption_template.format(ca.caption, cb.caption)
                        if label == "caption"
                        else template.format(*(w.token for w in concepts))
                    )
                    images = E.sample(
                        self.model,
                        prompt,
                        concepts,
                        n=self.ecfg.n,
                        steps=self.ecfg.steps,
                        guidance=self.ecfg.guidance,
                        seed=self.ecfg.seed,
                        scheduler=self.ecfg.scheduler,
                    )
                    labels = self.judge.oracle(images)
                    pa = E.concept_present(labels, oracle_truth(ca), "object")
                    pb = E.concept_present(labels, oracle_truth(cb), cb.kind)
                    two = np.array([c == "2" for c in labels["count"]], float)
                    row[label] = {
                        "prompt": prompt,
                        "both": E.summary((pa * pb).tolist(), seed=3),
                        "a": float(pa.mean()),
                        "b": float(pb.mean()),
                        "two_objects": float(two.mean()),
                    }
                    both[label].append((pa * pb).tolist())
                out[key].append(row)
            summary = {label: E.summary(v, seed=4) for label, v in both.items() if v}
            diff = {
                m: E.difference(both[m], both["caption"], seed=6)
                for m in SURVEY[:2]
                if both[m] and len(both[m]) == len(both["caption"])
            }
            out["both" if key == "pairs" else "style_both"] = summary
            out["difference" if key == "pairs" else "style_difference"] = diff
            log(f"composition ({key}): both present " + ", ".join(f"{k} {v['mean']:.0%}" for k, v in summary.items()))
        return out


def ti_seeds(model_dir, judge_dir, work: Path, docs: Path) -> int:
    """docs/ti_seeds.md: every object concept, plain TI as in docs/quality.md (300 steps, one vector, the concept's
    init word) learned with each of TI_SEEDS; reconstruction of `a photo of S*` minus the caption's, paired over
    samples; pooled over concepts and seeds (concepts resampled)."""
    from oneword import LearnConfig, load_model
    from oneword.safeio import atomic_write_text
    from oneword.world.concepts import HELD_OUT, NOVEL_CONCEPTS

    torch.set_num_threads(1)
    model, judge = load_model(model_dir, device="cpu"), E.load_judge(judge_dir or "world")
    cfg = E.EvalConfig(n=16, steps=25, guidance=5.0, bootstrap=2000)
    base = LearnConfig.with_defaults(
        model, steps=300, lr=5e-3, early_stop=False, save_every=10**9, preview_every=0, seed=0
    )
    bench = Bench(model, judge, base, cfg, work, 5)  # words cached by their whole configuration
    ti, cap = {}, {}
    lines = [
        "# Single-vector TI vs the caption, three learning seeds",
        "",
        "Generated by `benchmarks/tradeoff.py --ti-seeds` (do not edit by hand): `HF_HUB_OFFLINE=1 "
        ".venv/bin/python -m benchmarks.tradeoff --ti-seeds` (~6 min on one core). Every object concept, plain "
        "TI as in docs/quality.md (300 steps, lr 0.005, batch 4, one vector, the concept's init word) learned "
        "with three seeds; reconstruction of `a photo of S*` (16 samples, 25 DDIM steps, guidance 5, "
        "judge-language CLIP) minus the caption's, paired over samples.",
        "",
        "| concept | no word for | TI − caption, seed " + " | seed ".join(map(str, TI_SEEDS)) + " |",
        "|---|---|" + "---|" * len(TI_SEEDS),
    ]
    print("\n".join(lines[-2:]))
    for c in NOVEL_CONCEPTS.values():
        if c.kind != "object":
            continue
        photos = c.photos(5, seed=0)
        ev = E.Evaluator(model, photos, judge, c.kind, [E.world_prompts(c.kind)[0]], cfg, attributes=oracle_truth(c))
        cap[c.name] = ev.evaluate(E.captioned(c.caption))["prompts"][0]["samples"]
        words = [bench.learn(c.name, photos, f"seed{s}", {"seed": s}, c.init_word, c.kind)[0] for s in TI_SEEDS]
        ti[c.name] = [ev.evaluate(E.learned(w))["prompts"][0]["samples"] for w in words]
        held = " (held out)" if c.name in HELD_OUT else ""
        lines.append(
            f"| {c.name}{held} | {', '.join(c.unnamed)} | "
            + " | ".join(fmt_diff(E.difference(t, cap[c.name], seed=19)) for t in ti[c.name])
            + " |"
        )
        print(lines[-1], flush=True)
    names = list(ti)
    pooled = E.difference(
        [[x for t in ti[n] for x in t] for n in names], [cap[n] * len(TI_SEEDS) for n in names], seed=21, clusters=True
    )
    mean_d = {n: np.mean([np.mean(t) for t in ti[n]]) - np.mean(cap[n]) for n in names}
    lines += [
        "",
        f"Pooled over {len(names)} object concepts and {len(TI_SEEDS)} seeds (concepts resampled): "
        f"{fmt_diff(pooled)}; mean over seeds > 0 on {sum(v > 0 for v in mean_d.values())} of {len(names)} "
        "concepts. \\* marks an interval that excludes 0.",
        "",
    ]
    print("\n".join(lines[-2:]))
    atomic_write_text(docs / "ti_seeds.md", "\n".join(lines))
    return 0


# ------------------------------------------------------------------------------------------ statistics
def versus_caption(per_concept: dict, judge) -> dict:
    """TI (and the survey's other method) vs the caption on every concept evaluated: per concept the paired
    reconstruction difference (samples resampled), the oracle's un-named-drawn shares and what the judge's CLIP
    can see of the un-named value (judge.unnamed_visibility); pooled over groups of concepts (concepts resampled
    too). Pattern concepts (every pretraining caption hides the pattern) are pooled apart from the colour and
    shape ones as well as with them."""
    from oneword.world.concepts import NOVEL_CONCEPTS
    from oneword.world.judge import unnamed_visibility

    rows = {}
    for n, c in per_concept.items():
        res = c["results"]
        row = {"kind": c["kind"], "words": c["caption"], "unnamed": c["unnamed"]}
        for m in ("caption", *SURVEY):
            row[m] = {
                "reconstruction": res[m]["reconstruction"],
                "editability": res[m].get("editability"),
                "unnamed": res[m]["unnamed"]["mean"],
            }
            if m != "caption":
                row[m]["vs_caption"] = E.difference(
                    res[m]["prompts"][0]["samples"], res["caption"]["prompts"][0]["samples"], seed=19
                )
        if c["kind"] == "object":
            row["visibility"] = unnamed_visibility(judge, NOVEL_CONCEPTS[n])
        rows[n] = row
    objects = [n for n, r in rows.items() if r["kind"] == "object"]
    groups = dict(
        zip(
            GROUPS,
            (
                objects,
                [n for n in objects if "pattern" not in rows[n]["unnamed"]],
                [n for n in objects if "pattern" in rows[n]["unnamed"]],
                [n for n, r in rows.items() if r["kind"] == "style"],
            ),
        )
    )
    pooled = {}
    for g, names in groups.items():
        if not names:
            continue
        rec = {m: [per_concept[n]["results"][m]["prompts"][0]["samples"] for n in names] for m in ("caption", *SURVEY)}
        pooled[g] = {
            "concepts": names,
            **{m: E.difference(rec[m], rec["caption"], seed=21, clusters=True) for m in SURVEY},
        }
    return {"per_concept": rows, "pooled": pooled}


def choose_setting(summary: dict, chosen: list[str]) -> dict | None:
    """A setting at least as good as single-vector TI on both axes (means over concepts) and better on one:
    "significant" when the paired 95% interval of that difference, concepts resampled, is above zero; else
    "sampling" when it is above zero only with the concepts and words held fixed; else the best candidate
    by means alone ("means"). Among several at the same level, the largest summed gain."""
    levels = {"significant": [], "sampling": [], "means": []}
    for m in chosen:
        if m == "ti" or "vs_ti" not in summary.get(m, {}):
            continue
        d, ds = summary[m]["vs_ti"], summary[m]["vs_ti_sampling"]
        r, e = d["reconstruction"], d["editability"]
        if r["mean"] < 0 or e["mean"] < 0 or (r["mean"] <= 0 and e["mean"] <= 0):
            continue  # worse on one axis, or no better on either (e.g. early stopping that never fired)
        gain = r["mean"] + e["mean"]
        if r["ci"][0] > 0 or e["ci"][0] > 0:
            levels["significant"].append((gain, m))
        elif ds["reconstruction"]["ci"][0] > 0 or ds["editability"]["ci"][0] > 0:
            levels["sampling"].append((gain, m))
        else:
            levels["means"].append((gain, m))
    for level, cands in levels.items():
        if cands:
            m = max(cands)[1]
            return {"name": m, "level": level, **summary[m]["vs_ti"], "sampling": summary[m]["vs_ti_sampling"]}
    return None


def strip_samples(per_concept: dict) -> dict:
    out = {}
    for n, c in per_concept.items():
        res = {}
        for m, r in c["results"].items():
            res[m] = {k: v for k, v in r.items() if k != "prompts"}
            res[m]["prompts"] = [{k: v for k, v in p.items() if k not in ("labels",)} for p in r["prompts"]]
        out[n] = {**c, "results": res}
    return out


# ------------------------------------------------------------------------------------------ figures
COLOURS = {
    "caption": "#444444",
    "ti": "#d62728",
    "vectors=2": "#9ecae1",
    "vectors=4": "#4292c6",
    "vectors=8": "#08519c",
    "vectors=2 caption init": "#6a51a3",
    "vectors=2 caption init + reg": "#bcbddc",
    "lr x4": "#ff7f0e",
    "steps /3": "#c7e9c0",
    "steps /2": "#74c476",
    "steps 2/3": "#41ab5d",
    "steps x2": "#238b45",
    "reg": "#9467bd",
    "early stop": "#8c564b",
}


def _scatter(ax, summary: dict, title: str) -> None:
    for m, s in summary.items():
        x, y = s["editability"], s["reconstruction"]
        ax.errorbar(
            x["mean"],
            y["mean"],
            xerr=[[x["mean"] - x["ci"][0]], [x["ci"][1] - x["mean"]]],
            yerr=[[y["mean"] - y["ci"][0]], [y["ci"][1] - y["mean"]]],
            fmt="s" if m == "caption" else "o",
            color=COLOURS.get(m, "k"),
            capsize=2,
            ms=5,
            lw=1,
            label=m,
        )
        ax.annotate(m, (x["mean"], y["mean"]), textcoords="offset points", xytext=(4, 3), fontsize=7)
    ax.set_xlabel("editability: text-image similarity", fontsize=9)
    ax.set_ylabel("reconstruction: image-image similarity", fontsize=9)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=7)


def plot_tradeoff(summary: dict, path: Path, held: dict | None = None) -> None:
    """Reconstruction vs editability per method with 95% intervals (the paper's figure 10)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(summary, "tuning concepts")] + ([(held, "held-out concepts")] if held else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.3), dpi=90, squeeze=False)
    for ax, (s, title) in zip(axes[0], panels):
        _scatter(ax, s, f"{title} (world CLIP, 95% CIs)")
    axes[0][0].legend(fontsize=6, loc="best")
    fig.tight_layout()
    save_figure(fig, path)


def plot_bias(bias: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from oneword.world.render import COLOURS, NAMED_COLOURS

    colours = list(NAMED_COLOURS) + [c for c in COLOURS if c not in NAMED_COLOURS]
    fig, ax = plt.subplots(figsize=(6.4, 3.2), dpi=100)
    width = 0.4
    for i, (prompt, r) in enumerate(bias["prompts"].items()):
        counts = np.array([r["colour_counts"].get(c, 0) for c in colours], float) / bias["n"]
        xs = np.arange(len(colours)) + (i - 0.5) * width
        ax.bar(
            xs,
            counts,
            width,
            color=[np.array(COLOURS[c]) / 255 for c in colours],
            edgecolor="k",
            hatch="" if i == 0 else "//",
            linewidth=0.6,
            label=f"{prompt!r}: entropy {r['entropy_bits']:.2f} bits",
        )
    ax.axhline(1 / len(bias["balanced_set"]), color="gray", ls=":", lw=1)
    ax.set_xticks(range(len(colours)), colours, rotation=45, fontsize=8)
    ax.set_ylabel("share of generations")
    ax.set_title(
        f"colour of generated {bias['word']}s (oracle), n={bias['n']} each; plain = biased word, hatched = learned",
        fontsize=8,
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def sample_sheet(bench: QualityBench, names: list[str], chosen: list[str], path: Path, k: int = 6) -> None:
    """For the first tuning concept: the photos, then per method k samples of the reconstruction prompt
    and k of the first edit prompt."""
    from oneword.safeio import atomic_save_image
    from oneword.sampling import make_grid
    from oneword.world.concepts import NOVEL_CONCEPTS

    name = names[0]
    photos = NOVEL_CONCEPTS[name].photos(bench.n_photos, seed=0)
    from PIL import Image

    blank = Image.new("RGB", photos[0].size, "white")
    rows = [(photos + [blank] * (2 * k))[: 2 * k]]
    for m in ["caption"] + chosen:
        by_prompt = list(bench.images.get((name, m), {}).values())
        if len(by_prompt) < 2:
            continue
        rows.append(by_prompt[0][:k] + by_prompt[1][:k])
    atomic_save_image(path, make_grid([im for r in rows for im in r], cols=2 * k))


# ------------------------------------------------------------------------------------------ report
def versus_markdown(raw: dict) -> list[str]:
    """The section on TI vs the caption over every novel concept (raw["versus_caption"])."""
    v = raw.get("versus_caption")
    if not v:
        return []
    rows, pooled = v["per_concept"], v["pooled"]
    where = {**{n: "tuning" for n in raw["tuning"]}, **{n: "held out" for n in raw["held_out"]}}
    L = [
        "### TI vs the caption baseline on every novel concept (reconstruction)",
        "",
        "Every object concept has an attribute with no word (colour, shape or pattern); styles have no word at all. "
        "Besides the tuning concepts, every other novel concept (held-out ones included: nothing here chooses "
        "anything) gets the caption, plain TI (at the base steps and at the paper's full 5,000) and the way "
        "docs/applications.md recommends for an object whose value "
        'has no word: two vectors initialised from the caption\'s words (`--vectors 2 --init "blue ring"`). '
        "*judge sees it*: how much closer the judge's CLIP puts the concept's photos to renders of the object with its "
        "own values than with the caption's (`oneword.world.judge.unnamed_visibility`; 0 = reconstruction cannot "
        "reward the value).",
        "",
        "| concept | set | no word for | caption | caption rec. | TI rec. | TI − caption | TI 5,000 steps − caption | "
        "2 vectors − caption | un-named drawn: caption / TI / TI 5,000 / 2 vectors | judge sees it |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, r in rows.items():
        vis = f"{r['visibility']['difference']:+.3f}" if "visibility" in r else "-"
        L.append(
            f"| {n} | {where.get(n, 'survey')} | {', '.join(f'{k} {x}' for k, x in r['unnamed'].items())} | "
            f"{r['words']} | {fmt_summary(r['caption']['reconstruction'])} | {fmt_summary(r['ti']['reconstruction'])} | "
            f"{fmt_diff(r['ti']['vs_caption'])} | {fmt_diff(r[PAPER]['vs_caption'])} | {fmt_diff(r[SURVEY[1]]['vs_caption'])} | "
            f"{r['caption']['unnamed']:.0%} / {r['ti']['unnamed']:.0%} / {r[PAPER]['unnamed']:.0%} / "
            f"{r[SURVEY[1]]['unnamed']:.0%} | {vis} |"
        )
    L += [
        "",
        "Pooled (each concept weighs equally; concepts and samples resampled):",
        "",
        "| concepts | n | TI − caption | TI 5,000 steps − caption | 2 vectors − caption | TI wins (95%) per concept | "
        "TI 5,000 steps wins |",
        "|---|---|---|---|---|---|---|",
    ]
    for g, p in pooled.items():
        record = []
        for m in ("ti", PAPER):
            wins = sum(rows[n][m]["vs_caption"]["ci"][0] > 0 for n in p["concepts"])
            losses = sum(rows[n][m]["vs_caption"]["ci"][1] < 0 for n in p["concepts"])
            record.append(f"{wins} of {len(p['concepts'])} ({losses} lost)")
        L.append(
            f"| {g} | {len(p['concepts'])} | {fmt_diff(p['ti'])} | {fmt_diff(p[PAPER])} | {fmt_diff(p[SURVEY[1]])} | "
            f"{record[0]} | {record[1]} |"
        )
    kinds = {}
    for r in rows.values():
        if r["kind"] == "object" and len(r["unnamed"]) == 1:
            kinds.setdefault(next(iter(r["unnamed"])), []).append(r)
    if kinds:
        L += [
            "",
            "How often the learned words draw the value that has no word, by kind (mean share of `a photo of S*` "
            "samples, concepts with one un-named attribute; TI / 2 vectors): "
            + "; ".join(
                f"{k}s {np.mean([r['ti']['unnamed'] for r in rs]):.0%} / "
                f"{np.mean([r[SURVEY[1]]['unnamed'] for r in rs]):.0%} ({len(rs)} concepts)"
                for k, rs in kinds.items()
            )
            + ". The caption draws none of them, by construction.",
            "",
            "One learning run per word here; docs/ti_seeds.md (`benchmarks/tradeoff.py --ti-seeds`) repeats plain TI with three "
            "seeds on every object concept: each concept's sign holds across seeds.",
        ]
    return L + [""]


def composition_markdown(raw: dict) -> list[str]:
    c = raw["composition"]
    L = ["", "## Composition: two learned words in one prompt", ""]
    if not c.get("pairs"):
        return L + ["(needs at least two object concepts)"]
    name = {"ti": "TI words", SURVEY[1]: "2-vector words", "caption": "captions"}

    def table(rows, summary, diff, extra):
        labels = [m for m in (*SURVEY[:2], "caption") if m in summary]
        out = [
            "| pair | "
            + " | ".join(f"{name[m]}: both (a, b)" for m in labels)
            + (" | two objects drawn |" if extra else " |"),
            "|---|" + "---|" * (len(labels) + int(extra)),
        ]
        for r in rows:
            cells = [f"{fmt_share(r[m]['both'])} ({r[m]['a']:.0%}, {r[m]['b']:.0%})" if m in r else "-" for m in labels]
            two = " | " + "/".join(f"{r[m]['two_objects']:.0%}" for m in labels if m in r) if extra else ""
            out.append(f"| {r['a']} + {r['b']} | " + " | ".join(cells) + two + " |")
        return out + [
            "",
            "Over pairs, both present: "
            + "; ".join(f"{name[m]} {fmt_share(summary[m])}" for m in labels)
            + "".join(f"; {name[m]} − captions {fmt_diff(d, 2)}" for m, d in diff.items())
            + ".",
        ]

    L += [
        f"n={c['n']} samples per prompt; both present = the oracle finds each concept; a, b = each concept alone "
        "(an object: shape, colour and pattern of the left or only object, or shape and colour of the right one; a "
        "style: the rendering style). Captions in place of the words as the baseline.",
        "",
        "**In a style** (the paper's composition figure: an object word in a style word), `S1 in the style of S2` "
        "(caption: `a sketch of a blue ring`):",
        "",
    ]
    if c.get("style_pairs"):
        L += table(c["style_pairs"], c["style_both"], c["style_difference"], False)
        rows = raw.get("versus_caption", {}).get("per_concept", {})
        drawn = [rows[n][m]["unnamed"] for n in {r["b"] for r in c["style_pairs"]} if n in rows for m in SURVEY[:2]]
        if drawn:
            span = f"{min(drawn):.0%}" + (f"-{max(drawn):.0%}" if max(drawn) > min(drawn) else "")
            L += [
                "",
                f"The style words alone draw their style in {span} of `a painting in the "
                "style of S*` samples (the survey table above: *un-named drawn*), so an object in that style "
                "can hardly come out whole either.",
            ]
    else:
        L.append("(needs a style concept)")
    L += ["", "**Side by side**, `a photo of S1 and S2`, neighbouring object concepts:", ""]
    L += table(c["pairs"], c["both"], c["difference"], True)
    L += [
        "",
        "Two learned objects side by side rarely both come out whole: each word alone draws its un-named value "
        "in only part of its samples (the table above), and in a two-object scene the words' attributes spread over "
        "both objects (in a side probe with the 2-vector teal-ring and crescent words, both objects mostly came out "
        "rings, in mixed colours); articles (`a photo of a S1 and a S2`) did not change this there (4 pairs, TI and "
        "2-vector words: 0% both either way). The paper shows composition qualitatively and notes that relations "
        "between learned concepts (such as two side by side) are hard.",
    ]
    return L


def render_markdown(raw: dict, argv: list[str]) -> str:
    a = raw["args"]
    s, best = raw["summary"], raw["best"]
    cmd = " ".join([".venv/bin/python -m benchmarks.tradeoff"] + list(argv))
    L = [
        "# Quality: the paper's quantitative analysis on the embedded world",
        "",
        "Generated by `benchmarks/tradeoff.py` (do not edit by hand). Regenerate with:",
        "",
        "```",
        f"HF_HUB_OFFLINE=1 {cmd}",
        "```",
        "",
        f"Took {raw['minutes']} min on {raw['model'].get('source')} (fingerprint {raw['model'].get('fingerprint')}), "
        f"{a['threads']} CPU threads. Learned words are cached in `{a['work']}`, raw numbers in `{a['work']}/results.json`.",
        "",
        "## Protocol",
        "",
        f"- Concepts: the world's novel concepts. Tuning set ({len(raw['tuning'])}): {', '.join(raw['tuning'])}. "
        f"Held out (never used to choose anything, reported separately): {', '.join(raw['held_out']) or 'skipped'}.",
        f"- Each concept: {a['photos']} user photos (`NovelConcept.photos(n, seed=0)`).",
        f"- Learning: `oneword.invert.learn`, plain TI = {raw['learn_base']['steps']} steps, lr {raw['learn_base']['lr']:g}, "
        f"batch {raw['learn_base']['batch_size']}, one vector, init word of the concept, seed {raw['learn_base']['seed']}, "
        "no early stopping; each variant changes one thing.",
        f"- Evaluation (`oneword.evaluation`, the same as `oneword evaluate`): n={a['n']} samples per prompt, "
        f"{a['eval_steps']} DDIM steps, guidance {a['guidance']:g}, seeds 0..n-1 for every method and prompt; "
        "judge = the world CLIP (cosines as defined for real CLIP; it speaks the judge's language, which names "
        "every value the model's language leaves un-named, as OpenAI's CLIP knows words a generator may not draw: "
        "docs/world.md) + the attribute oracle.",
        "- Reconstruction: mean CLIP image-image cosine between samples of `a photo of S*` (styles: `a painting in "
        "the style of S*`) and the photos. Editability: mean CLIP text-image cosine between samples of each edit "
        "prompt and the prompt with S* removed. World edit prompts (`oneword.evaluation.world_prompts`): objects — 2 backgrounds "
        "(`a photo of S* on a sky background`, black), 3 styles (`a sketch of S*`, `pixel art of S*`, `a painting "
        "of S*`), 2 second objects (`a photo of S* and a yellow star`, a green diamond); styles — 4 contents "
        "(`a red star in the style of S*`, a yellow heart, a green diamond, a blue ring).",
        "- Caption baseline: the concept's best human words (`NovelConcept.caption`, e.g. `a blue ring` for the "
        "teal ring) in place of S*, same prompts and seeds; editability is scored against the same text.",
        "- Intervals: 95% percentile bootstrap (2000 resamples). Per concept: over samples (stratified by prompt), "
        "i.e. sampling noise for that concept and that learned word. Over a set of concepts (each weighs equally): "
        "the concepts are resampled too, so concept-to-concept spread — and with it the noise of each word's single "
        "learning run — widens the interval; with 4 concepts these intervals are wide and coarse. Differences are "
        "paired (same seeds, same concepts); \\* marks an interval that excludes 0.",
        "",
        "## The tradeoff (tuning concepts)",
        "",
        "![tradeoff](img/tradeoff.png)",
        "",
        "Oracle columns: *un-named drawn* = share of `a photo of S*` samples showing the concept's attribute(s) "
        "that have no word (e.g. the teal of the teal ring, the crescent shape, the stripes, the halftone style); "
        "*present* = the whole concept (shape, colour and pattern; styles: the style); *edit applied* = the "
        "edit prompts' background / style / second object / content is there.",
        "",
        "| method | reconstruction | editability | un-named drawn | present | edit applied | rec. vs TI | edit. vs TI |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m, r in s.items():
        vs = r.get("vs_ti")
        L.append(
            f"| {m} | {fmt_summary(r['reconstruction'])} | {fmt_summary(r['editability'])} | {fmt_share(r['unnamed'])} | {fmt_share(r['present'])} | "
            f"{fmt_share(r['edit_applied'])} | {fmt_diff(vs['reconstruction']) if vs else '-'} | "
            f"{fmt_diff(vs['editability']) if vs else '-'} |"
        )
    ceil = np.mean([c["reconstruction_ceiling"] for c in raw["tuning"].values()])
    L += [
        "",
        f"Reconstruction ceiling (mean similarity between a concept's own photos): {ceil:.3f}.",
        "",
        "Samples (first tuning concept): top row the photos; then per method (caption, then the variants in "
        "the table's order) 6 samples of the reconstruction prompt and 6 of the first edit prompt.",
        "",
        "![samples](img/tradeoff_samples.png)",
        "",
        "",
    ]
    L += versus_markdown(raw)
    L += ["### Claims", ""]
    mv = [m for m in ("vectors=2", "vectors=4", "vectors=8") if m in s]
    if mv:
        L.append(
            "- Multi-vector vs single-vector TI (the paper: more vectors, better reconstruction, worse editability): "
            + "; ".join(
                f"{m}: reconstruction {fmt_diff(s[m]['vs_ti']['reconstruction'])}, editability "
                f"{fmt_diff(s[m]['vs_ti']['editability'])}"
                for m in mv
            )
            + "."
        )
    if best:
        how = {
            "significant": "better on one axis with 95% confidence with concepts resampled",
            "sampling": "better on one axis with 95% confidence for these concepts and words (sampling noise only; "
            "not significant once concepts are resampled)",
            "means": "better on the means only (no interval excludes 0)",
        }[best["level"]]
        L.append(
            f"- A setting at least as good as single-vector TI on both axes and better on one, chosen on the tuning "
            f"concepts: **{best['name']}** ({how}) — reconstruction {fmt_diff(best['reconstruction'])}, editability "
            f"{fmt_diff(best['editability'])} (concepts resampled); with sampling noise only: reconstruction "
            f"{fmt_diff(best['sampling']['reconstruction'])}, editability {fmt_diff(best['sampling']['editability'])}. "
            "Its check on the held-out concepts is below."
        )
    else:
        L.append("- No variant was at least as good as single-vector TI on both axes (means) in this run.")
    pooled = raw.get("versus_caption", {}).get("pooled", {}).get("object concepts")
    if pooled:
        L.append(
            f"- TI vs the caption on the objects whose attributes have no word ({len(pooled['concepts'])} concepts, "
            f"held-out ones included; pooled, concepts and samples resampled): plain TI at "
            f"{raw['learn_base']['steps']} steps {fmt_diff(pooled['ti'])}; **at the paper's 5,000 steps "
            f"{fmt_diff(pooled[PAPER])}**; two vectors from the caption's words {fmt_diff(pooled[SURVEY[1]])} (per concept: "
            "the survey table above)."
        )
    L.append(
        "- Learning steps actually run: "
        + ", ".join(
            f"{m} {np.mean([pc['learn']['steps'] for pc in s[m]['per_concept'].values()]):.0f}"
            for m in s
            if m != "caption"
        )
        + "."
    )
    if raw["held_out_summary"]:
        h = raw["held_out_summary"]
        L += [
            "",
            "## Held-out concepts",
            "",
            f"{', '.join(raw['held_out'])}: never used in tuning; here the baseline and the chosen setting (the table of every novel concept above also has their 2-vector words).",
            "",
            "| method | reconstruction | editability | un-named drawn | present | edit applied | rec. vs TI | edit. vs TI | rec. vs caption |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for m, r in h.items():
            vs, vc = r.get("vs_ti"), r.get("vs_caption")
            L.append(
                f"| {m} | {fmt_summary(r['reconstruction'])} | {fmt_summary(r['editability'])} | {fmt_share(r['unnamed'])} | {fmt_share(r['present'])} | "
                f"{fmt_share(r['edit_applied'])} | {fmt_diff(vs['reconstruction']) if vs else '-'} | "
                f"{fmt_diff(vs['editability']) if vs else '-'} | {fmt_diff(vc['reconstruction']) if vc else '-'} |"
            )
        L += ["", "Per concept: the table of every novel concept above."]
    b = raw["bias"]
    L += [
        "",
        "## Bias reduction",
        "",
        f"The world's biased word is `{b['word']}` (pretraining draws it {b['biased_colour']} 90% of the time). A fair "
        f"word was learned (plain TI, init `{b['word']}`) from {len(b['balanced_set'])} photos of {b['word']}s, one per "
        f"named colour ({', '.join(b['balanced_set'])}; `fair_photos`). {b['n']} samples each, colour by the oracle:",
        "",
        "![bias](img/bias.png)",
        "",
        "| prompt | colour entropy (bits; max 3.0 over 8 colours) | share "
        + b["biased_colour"]
        + " | shape is a "
        + b["word"]
        + " | colour counts |",
        "|---|---|---|---|---|",
    ]
    for p, r in sorted(b["prompts"].items(), key=lambda pr: "<" in pr[0]):  # the biased word first
        counts = ", ".join(f"{k} {v}" for k, v in sorted(r["colour_counts"].items(), key=lambda kv: (-kv[1], kv[0])))
        L.append(
            f"| `{p}` | {r['entropy_bits']:.2f} [{r['entropy_ci'][0]:.2f}, {r['entropy_ci'][1]:.2f}] | "
            f"{fmt_share(r['share_biased'])} | {fmt_share(r['shape_is_word'])} | {counts} |"
        )
    L += composition_markdown(raw)
    L += [
        "",
        "## Measuring your own concept",
        "",
        "```",
        "oneword evaluate --embeds runs/x/learned_embeds.safetensors --images PHOTOS_DIR "
        '[--caption "your best words"] [--model M] [--judge CLIP_DIR] [-n 64] [--steps 50] [--guidance 5]',
        "```",
        "",
        "prints the table, and writes `evaluation.json` (every per-sample score, so runs can be compared), "
        "`table.txt` and `samples.png` (one row per prompt) into `--out`. Real models are judged by "
        "`openai/clip-vit-base-patch32` from the local Hugging Face cache (or `--judge DIR`) with the paper's "
        "prompt set; the world model by its own CLIP and oracle with the world prompt set.",
        "",
    ]
    return "\n".join(L)


if __name__ == "__main__":
    sys.exit(main())
