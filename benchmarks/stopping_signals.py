"""Which cheap, generation-free signal orders a concept's words as their reconstruction does? (issue 5)

The stopping rule watches the diffusion loss on a fixed batch; reconstruction (world CLIP, docs/quality.md) can
still rise while that loss is flat. This reads the words a time_to_quality.py / default_candidates.py run left in
DIR (the paper setting at its stops, and each candidate rule's word, with the reconstruction measured for each)
and scores every word on one larger fixed batch (128 samples: the photos in turn, timesteps spread over the
schedule, fixed noise, the templates in turn) by
  loss           the plain diffusion loss (what the rule watches, on 8x its samples)
  loss t>=500    the same, only the samples at t >= 500 (the noisier half, where the text decides the content)
  guided loss    the loss of the guided prediction eps_u + 5 (eps_c - eps_u) (what sampling at guidance 5 uses)
  steps          how long the word was learned (the baseline any signal must beat)
For each concept and seed: the Spearman correlation, over its distinct words, between each (negated) signal and
reconstruction; then the mean over concept-seeds. No word is learned here (a word missing from DIR is skipped).
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/stopping_signals.py runs/ttq_late_seed0 runs/ttq_late_seed1
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import time_to_quality as Q  # noqa: E402
import tradeoff as T  # noqa: E402  (sets HF_HUB_OFFLINE and the import path)

SIGNALS = ("loss", "loss t>=500", "guided loss", "steps")
N, GUIDANCE = 128, 5.0


def fixed_batch(model, cache, noise_schedule, seed: int = 123):
    g = torch.Generator().manual_seed(seed)
    rows = torch.arange(N) % len(cache)
    t = (noise_schedule.config.num_train_timesteps * (0.02 + 0.96 * (torch.arange(N) + 0.5) / N)).long()
    t = t[torch.randperm(N, generator=g)]
    posterior = torch.randn((N, *cache.mean.shape[1:]), generator=g)
    noise = torch.randn((N, *cache.mean.shape[1:]), generator=g)
    return noise_schedule.add_noise(cache.sample(rows, posterior), noise, t), noise, t


@torch.no_grad()
def predict(model, noisy, t, cond, chunk: int = 32) -> torch.Tensor:
    return torch.cat([model.unet(noisy[i:i + chunk], t[i:i + chunk], cond[i:i + chunk]).sample
                      for i in range(0, len(noisy), chunk)])


@torch.no_grad()
def word_signals(model, word, kind: str, noisy, noise, t, eps_uncond) -> dict:
    from oneword.invert import encode_templates, learned_word

    with learned_word(model, word.token, word.vectors) as tokenizer:
        ids = encode_templates(tokenizer, kind, word.token, word.n_vectors)
        eps = predict(model, noisy, t, model.text_encoder(ids[torch.arange(N) % len(ids)])[0])
    plain = (eps - noise).pow(2).flatten(1).mean(1)
    guided = (eps_uncond + GUIDANCE * (eps - eps_uncond) - noise).pow(2).flatten(1).mean(1)
    return {"loss": -plain.mean().item(), "loss t>=500": -plain[t >= 500].mean().item(),
            "guided loss": -guided.mean().item()}


def concept_words(work: Path, name: str, per: dict) -> list[tuple[str, int, float, Path]]:
    """(method, steps, reconstruction, word file) of every distinct word in DIR/name with a measured reconstruction."""
    from oneword.concept import load_concepts

    out, seen = [], set()
    for method, r in per["results"].items():
        info = r.get("learn")
        if info is None:
            continue
        if method == "ti" or method.startswith("steps "):  # the paper setting's chain: DIR/name/steps-*/stepT
            files = list((work / name).glob(f"steps-*/step{info['steps']}.safetensors"))
            files = [f for f in files if json.loads(f.with_suffix(".json").read_text()) == info]
        else:
            files = [d / "learned_embeds.safetensors" for d in (work / name).glob(f"{T.variant_slug(method)}-*")
                     if (d / "info.json").is_file() and json.loads((d / "info.json").read_text()) == info]
        if len(files) != 1:
            continue
        vectors = load_concepts(files[0])[0].vectors.numpy().tobytes()  # two rules that stopped at one step: one word
        if vectors not in seen:
            seen.add(vectors)
            out.append((method, info["steps"], r["reconstruction"]["mean"], files[0]))
    return out


def spearman(a, b) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main(argv=None) -> int:
    from oneword.concept import load_concepts
    from oneword.data import encode_photos
    from oneword.invert import _training_schedule
    from oneword.models import load_model
    from oneword.world.concepts import concept

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="DIR or DIR:NAMES (NAMES: comma-separated, 'late' or 'unseen'; default all)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_model(None, device="cpu")
    noise_schedule = _training_schedule(model)
    uncond_ids = model.tokenizer([""], padding="max_length", max_length=model.tokenizer.model_max_length,
                                 return_tensors="pt").input_ids
    with torch.no_grad():
        uncond = model.text_encoder(uncond_ids)[0].expand(N, -1, -1)
    corr = {s: [] for s in SIGNALS}
    for spec in args.runs:
        work, _, names = spec.partition(":")
        work = Path(work)
        per_all = {}
        for f in ("results.json", "candidates.json"):
            if (work / f).is_file():
                for n, v in json.loads((work / f).read_text())["per_concept"].items():
                    per_all.setdefault(n, {"results": {}})["results"].update(v["results"])
        chosen = Q.tuning_names(names, ap) if names else list(per_all)
        for name in chosen:
            c = concept(name)
            words = concept_words(work, name, per_all[name])
            if len(words) < 3:
                continue
            noisy, noise, t = fixed_batch(model, encode_photos(model, c.photos(5, seed=0), model.resolution),
                                          noise_schedule)
            eps_uncond = predict(model, noisy, t, uncond)
            rows = []
            for method, steps, rec, f in sorted(words, key=lambda w: w[1]):
                s = word_signals(model, load_concepts(f)[0], c.kind, noisy, noise, t, eps_uncond)
                rows.append({"steps": steps, "rec": rec, **s})
                T.log(f"{work.name} {name} {method} ({steps} steps): rec {rec:.3f}, "
                      + ", ".join(f"{k} {-s[k]:.5f}" for k in s))
            for k in SIGNALS:
                corr[k].append(spearman([r[k] for r in rows], [r["rec"] for r in rows]))
    print(f"\n{len(corr['steps'])} concept-seeds; Spearman correlation with reconstruction over each one's words:\n")
    print("| signal | mean | per concept-seed |\n|---|---|---|")
    for k in SIGNALS:
        print(f"| {k} | {np.mean(corr[k]):+.2f} | {' '.join(f'{c:+.1f}' for c in corr[k])} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
