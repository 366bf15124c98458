"""What the world-model benchmarks share: learning words with a cache, evaluating them, pooling and printing.

Used by benchmarks/tradeoff.py, benchmarks/time_to_quality.py and the scripts under experiments/. Run every
script from the repository root as a module (`python -m benchmarks.tradeoff`), so that `benchmarks` and `oneword`
import without touching sys.path.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from dataclasses import asdict, replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from oneword import evaluation as E  # noqa: E402

CAPTION_INIT = "caption"  # a variant's init: the caption baseline's words, one per vector


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def write_json(path: Path, obj) -> None:
    from oneword.safeio import atomic_write_json

    atomic_write_json(path, obj)


def save_figure(fig, path: Path) -> None:
    """A matplotlib figure as a PNG at `path` (written atomically), then closed."""
    import matplotlib.pyplot as plt

    from oneword.safeio import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


# ------------------------------------------------------------------------------------------ formatting
def fmt_summary(s, digits: int = 3) -> str:
    """A mean with its 95% interval: `0.541 [0.453, 0.622]`."""
    return E.fmt(s, digits)


def fmt_share(s) -> str:
    """A share with its interval, in percent; '-' for none."""
    return f"{s['mean']:.0%} [{s['ci'][0]:.0%}, {s['ci'][1]:.0%}]" if s else "-"


def fmt_diff(d, digits: int = 3) -> str:
    """A paired difference with its interval; a markdown `\\*` where the interval excludes 0."""
    star = " \\*" if d["ci"][0] > 0 or d["ci"][1] < 0 else ""
    return f"{d['mean']:+.{digits}f} [{d['ci'][0]:+.{digits}f}, {d['ci'][1]:+.{digits}f}]{star}"


def pooled_diff(a: list, b: list, seed: int) -> dict:
    """Paired difference over concepts (each concept a cluster: concepts and samples resampled)."""
    return E.difference(a, b, seed=seed, clusters=True)


# ------------------------------------------------------------------------------------------ world concepts
def oracle_truth(c) -> dict:
    """A world concept's ground truth in the oracle's terms (objects: shape, colour, pattern; styles: style)."""
    a = c.attributes
    return {"style": a["style"]} if c.kind == "style" else {k: a[k] for k in ("shape", "colour", "pattern")}


def unnamed_hits(labels: dict, c) -> list[float]:
    """Per image: does the (only / left) object show every un-named attribute of the concept?"""
    n = len(labels["shape"])
    return [float(all(labels[k][i] == v for k, v in c.unnamed.items())) for i in range(n)]


def init_text(c, overrides: dict) -> tuple[str, dict]:
    """The init text of a variant and its other overrides: the concept's init word, (init=CAPTION_INIT) its
    caption's words, one per vector, or "auto" / "encoder" (the start chosen from the photos)."""
    rest = {k: v for k, v in overrides.items() if k != "init"}
    if overrides.get("init") in ("auto", "encoder"):  # chosen from the photos (oneword.init_words)
        return overrides["init"], rest
    return (c.caption_words if overrides.get("init") == CAPTION_INIT else c.init_word), rest


# ------------------------------------------------------------------------------------------ the word cache
STOPPING_FIELDS = ("val_every", "val_window", "val_z", "val_samples", "val_threshold", "min_steps", "val_t_min")
ENGINE_FIELDS = ("cuda_graph",)  # how a step runs, not what it computes (and the CPU never graphs)
# LearnConfig fields added after words were cached, with the value every earlier run had: left out of the key at
# that value, so that a new option does not throw away the words learned before it existed
ADDED_FIELDS = {"val_t_min": 0.05}


def cache_key(config: dict, fingerprint: str, n_photos: int) -> str:
    """A learned word's cache key: everything that can change it. Without early stopping the stopping rule's
    fields cannot, so they are left out (a new rule does not throw away words learned without one); nor can the
    engine's fields."""
    drop = ENGINE_FIELDS + (() if config["early_stop"] else STOPPING_FIELDS)
    config = {k: v for k, v in config.items() if k not in drop and not (k in ADDED_FIELDS and ADDED_FIELDS[k] == v)}
    return hashlib.sha256(
        json.dumps([config, fingerprint, n_photos], sort_keys=True, default=str).encode()
    ).hexdigest()[:12]


def variant_slug(variant: str) -> str:
    """A variant's name as the start of its word folder's name (the cache key follows it)."""
    return variant.replace(" ", "_").replace("/", "d")


class Bench:
    """Learns words on world concepts (cached in `work`, keyed by their whole configuration) and evaluates them
    with one judge and one EvalConfig; keeps every sample image for sample sheets."""

    def __init__(self, model, judge, base, ecfg, work: Path, n_photos: int):
        self.model, self.judge, self.base, self.ecfg, self.work, self.n_photos = (
            model,
            judge,
            base,
            ecfg,
            work,
            n_photos,
        )
        self.words: dict[tuple[str, str], object] = {}
        self.images: dict[tuple[str, str], list] = {}

    def _config(self, name: str, variant: str, overrides: dict, init: str, prop: str):
        cfg = replace(self.base, token=f"<{name.replace('_', '-')}>", init=init, property=prop, **overrides)
        key = cache_key(asdict(cfg), self.model.identity["fingerprint"], self.n_photos)
        return cfg, self.work / name / f"{variant_slug(variant)}-{key}"

    def learn(self, name: str, photos, variant: str, overrides: dict, init: str, prop: str):
        """Learn (or load from the cache) one word: (concept, {"steps", "stopped_early", "seconds"})."""
        from oneword import learn, load_concepts

        cfg, out = self._config(name, variant, overrides, init, prop)
        f, run = out / "learned_embeds.safetensors", out / "run.json"
        if f.is_file() and run.is_file() and json.loads(run.read_text()).get("status") in ("done", "early_stopped"):
            return load_concepts(f)[0], json.loads((out / "info.json").read_text())
        t = time.time()
        concept = learn(self.model, photos, cfg, out, progress=False)
        status = json.loads(run.read_text())
        info = {
            "steps": status["step"],
            "stopped_early": status["early_stopping"]["stopped_early"],
            "seconds": round(time.time() - t, 1),
        }
        write_json(out / "info.json", info)
        log(f"  learned {name} {variant}: {info['steps']} steps in {info['seconds']:.0f} s")
        return concept, info

    def learn_steps(self, name: str, photos, steps: list[int], init: str, prop: str) -> dict[int, tuple]:
        """Plain TI stopped at several step counts, as one run resumed from its checkpoint (a resumed run
        is bit-identical to an uninterrupted one): the words at S/2, S and 2S cost 2S steps, not 3.5S."""
        from oneword import learn, load_concepts
        from oneword.safeio import atomic_write_bytes

        cfg, out = self._config(name, "steps", {"steps": 0}, init, prop)
        out_words = {}
        for T in sorted(set(steps)):
            snap, info_f = out / f"step{T}.safetensors", out / f"step{T}.json"
            if snap.is_file() and info_f.is_file():
                out_words[T] = (load_concepts(snap)[0], json.loads(info_f.read_text()))
                continue
            run = out / "run.json"
            at = (
                json.loads(run.read_text())["step"]
                if run.is_file() and (out / "checkpoint.safetensors").is_file()
                else 0
            )
            t = time.time()
            concept = learn(self.model, photos, replace(cfg, steps=T), out, resume=0 < at <= T, progress=False)
            atomic_write_bytes(snap, (out / "learned_embeds.safetensors").read_bytes())
            prev = max([k for k in out_words if k < T], default=None)
            seconds = round(time.time() - t, 1) + (out_words[prev][1]["seconds"] if prev and at else 0)
            info = {"steps": T, "stopped_early": False, "seconds": seconds}
            write_json(info_f, info)
            out_words[T] = (concept, info)
            log(f"  learned {name} plain TI to step {T} ({seconds:.0f} s in all)")
        return out_words

    def concept(self, c, chosen: list[str], all_variants: dict) -> dict:
        """Evaluate the caption and every chosen variant (LearnConfig overrides by name) on one novel concept.
        Variants that change only `steps` are one plain TI run stopped at each count."""
        photos = c.photos(self.n_photos, seed=0)
        ev = E.Evaluator(self.model, photos, self.judge, c.kind, "world", self.ecfg, attributes=oracle_truth(c))
        out = {
            "kind": c.kind,
            "caption": c.caption,
            "attributes": c.attributes,
            "unnamed": c.unnamed,
            "reconstruction_ceiling": ev.ceiling,
            "results": {},
        }
        t = time.time()
        r = ev.evaluate(E.captioned(c.caption), keep_images=True)
        self.images[(c.name, "caption")] = r.pop("images")
        out["results"]["caption"] = r
        chain = {
            v: all_variants[v].get("steps", self.base.steps) for v in chosen if set(all_variants[v]) <= {"steps"}
        }  # plain TI at several step counts: one resumed run
        words = self.learn_steps(c.name, photos, list(chain.values()), c.init_word, c.kind) if chain else {}
        for v in chosen:
            if v in chain:
                word, info = words[chain[v]]
            else:
                init, overrides = init_text(c, all_variants[v])
                word, info = self.learn(c.name, photos, v, overrides, init, c.kind)
            self.words[(c.name, v)] = word
            r = ev.evaluate(E.learned(word), keep_images=True)
            self.images[(c.name, v)] = r.pop("images")
            r["learn"] = info
            out["results"][v] = r
        for r in out["results"].values():
            r["unnamed_samples"] = unnamed_hits(r["prompts"][0]["labels"], c)
            r["unnamed"] = E.summary(r["unnamed_samples"], seed=7)
        log(
            f"{c.name}: "
            + ", ".join(
                f"{v} {r['reconstruction']['mean']:.3f}/{r.get('editability', {}).get('mean', 0):.3f}"
                for v, r in out["results"].items()
            )
            + f" ({time.time() - t:.0f} s)"
        )
        return out


# ------------------------------------------------------------------------------------------ statistics
def summarise(per_concept: dict, methods: list[str]) -> dict:
    """Per method over concepts (each concept weighs equally): reconstruction, editability, presence, and
    the paired differences to single-vector TI ("ti") and to the caption."""
    out = {}
    names = list(per_concept)

    def samples(method, what):
        rows = []
        for n in names:
            r = per_concept[n]["results"].get(method)
            if r is None:
                return None
            ps = r["prompts"]
            if what == "rec":
                rows.append(ps[0]["samples"])
            elif what == "edit":
                rows.append([p["samples"] for p in ps[1:]])
            elif what == "present":
                rows.append(ps[0]["present_samples"])
            elif what == "unnamed":
                rows.append(r["unnamed_samples"])
            elif what == "edit_ok":
                rows.append([p["edit_samples"] for p in ps[1:] if "edit_samples" in p])
        return rows

    for m in methods:
        rec, edit = samples(m, "rec"), samples(m, "edit")
        if rec is None:
            continue
        # across concepts: concepts are resampled too (their spread, and each word's learning noise, count)
        agg = dict(clusters=True)
        s = {
            "reconstruction": E.summary(rec, seed=11, **agg),
            "editability": E.summary(edit, seed=12, **agg),
            "present": E.summary(samples(m, "present"), seed=13, **agg),
            "unnamed": E.summary(samples(m, "unnamed"), seed=20, **agg),
            "edit_applied": E.summary(samples(m, "edit_ok"), seed=14, **agg),
        }
        if m != "ti" and samples("ti", "rec") is not None:
            s["vs_ti"] = {
                "reconstruction": E.difference(rec, samples("ti", "rec"), seed=15, **agg),
                "editability": E.difference(edit, samples("ti", "edit"), seed=16, **agg),
            }
            s["vs_ti_sampling"] = {
                "reconstruction": E.difference(rec, samples("ti", "rec"), seed=15),
                "editability": E.difference(edit, samples("ti", "edit"), seed=16),
            }
        if m != "caption":
            s["vs_caption"] = {
                "reconstruction": E.difference(rec, samples("caption", "rec"), seed=17, **agg),
                "editability": E.difference(edit, samples("caption", "edit"), seed=18, **agg),
            }
        s["per_concept"] = {}
        for n in names:
            r = per_concept[n]["results"][m]
            pc = {
                "reconstruction": r["reconstruction"],
                "editability": r.get("editability"),
                "present": r.get("present_reconstruction"),
                "unnamed": r.get("unnamed"),
                "learn": r.get("learn"),
            }
            if m != "caption":
                cap = per_concept[n]["results"]["caption"]["prompts"]
                pc["rec_vs_caption"] = E.difference(r["prompts"][0]["samples"], cap[0]["samples"], seed=19)
            s["per_concept"][n] = pc
        out[m] = s
    return out


def scores(per: dict, method: str, names) -> dict:
    """Per concept of a run's per-concept results: reconstruction samples, and editability samples per edit
    prompt ({"rec": [...], "edit": [...]})."""
    out = {"rec": [], "edit": []}
    for n in names:
        prompts = per[n]["results"][method]["prompts"]
        out["rec"].append(prompts[0]["samples"])
        out["edit"].append([p["samples"] for p in prompts[1:]])
    return out
