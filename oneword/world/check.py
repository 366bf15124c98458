"""The world model's must-show figures (`oneword world check`): oracle accuracy on fresh renders, prompted
generation on attribute combinations held out of pretraining, two-object prompts and a biased word."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import OnewordError


def oracle_accuracy(judge, n: int = 1000, seed: int = 99) -> dict[str, float]:
    """Oracle accuracy per attribute on fresh renders of the full world (named and un-named values)."""
    from .render import random_scene, render_scene

    rng = np.random.default_rng([seed, 31337])
    scenes = [random_scene(rng, p_unnamed=0.3) for _ in range(n)]
    imgs = [render_scene(s, 32, rng) for s in scenes]
    pred = judge.oracle(imgs)
    truth = [s.attributes() for s in scenes]
    acc = {}
    for k in pred:
        if k in ("shape2", "colour2"):  # only meaningful on two-object scenes
            idx = [i for i, t in enumerate(truth) if t["count"] == "2"]
        elif k == "size":
            idx = [i for i, t in enumerate(truth) if t["count"] == "1"]
        else:
            idx = range(n)
        acc[k] = float(np.mean([pred[k][i] == truth[i][k] for i in idx]))
    return acc


def heldout_scenes(n: int, seed: int, count: int = 1):
    """Named-only scenes that each show at least one attribute combination held out of pretraining."""
    from .render import held_out_pairs, random_scene

    rng = np.random.default_rng([seed, 555, count])
    out = []
    while len(out) < n:
        s = random_scene(rng, named_only=True, count=count, biased=False)
        if s.objects[0].shape == "balloon":
            continue
        if count == 1 and not held_out_pairs(s):
            continue
        out.append(s)
    return out


def _generate(pipe, prompts, steps, guidance, seed, batch=50):
    import torch

    imgs = []
    for i in range(0, len(prompts), batch):
        g = torch.Generator().manual_seed(seed + i)
        imgs += pipe(
            prompts[i : i + batch], num_inference_steps=steps, guidance_scale=guidance, generator=g, output_type="pil"
        ).images
    return imgs


def run_check(
    model=None, judge=None, n=200, n_two=100, n_bias=100, n_oracle=1000, steps=25, guidance=7.5, seed=1234, log=print
) -> dict:
    import torch
    from diffusers import StableDiffusionPipeline

    from ..models import _dtype_keyword
    from . import model_path
    from .concepts import biased_word
    from .judge import load_judge
    from .render import HELD_OUT_KINDS, held_out_kinds, prompt_for

    mp = Path(model) if model else model_path()
    if not (mp / "model_index.json").is_file():
        raise OnewordError(f"no world model at {mp} (run `oneword world pretrain`)")
    j = load_judge(judge)
    res: dict = {"steps": steps, "guidance": guidance}
    res["oracle"] = oracle_accuracy(j, n_oracle)
    log(f"oracle accuracy on {n_oracle} fresh renders: " + ", ".join(f"{k} {v:.1%}" for k, v in res["oracle"].items()))

    pipe = StableDiffusionPipeline.from_pretrained(str(mp), **{_dtype_keyword(): torch.float32})
    pipe.set_progress_bar_config(disable=True)

    scenes = heldout_scenes(n, seed, 1)
    prompts = [prompt_for(s) for s in scenes]
    imgs = _generate(pipe, prompts, steps, guidance, seed)
    pred = j.oracle(imgs)
    table = {}
    for k in ("shape", "colour", "background", "style", "count"):
        table[k] = float(np.mean([pred[k][i] == scenes[i].attributes()[k] for i in range(n)]))
    res["heldout_generation"] = table
    res["heldout_examples"] = [prompts[i] for i in range(min(3, n))]
    log(
        f"prompted generation on {n} held-out combinations ({steps} steps, guidance {guidance}): "
        + ", ".join(f"{k} {v:.1%}" for k, v in table.items())
    )
    res["heldout_by_pair"] = by_pair = {}
    kinds = [held_out_kinds(s) for s in scenes]
    for pair in HELD_OUT_KINDS:  # which kind of unseen combination fails: both of its attributes right
        hits = [all(pred[k][i] == scenes[i].attributes()[k] for k in pair) for i in range(n) if pair in kinds[i]]
        if hits:
            by_pair["+".join(pair)] = {"both_correct": float(np.mean(hits)), "n": len(hits)}
    log(
        "by held-out pair (both attributes correct): "
        + ", ".join(f"{k} {v['both_correct']:.1%} of {v['n']}" for k, v in by_pair.items())
    )

    two = heldout_scenes(n_two, seed + 1, 2)
    prompts2 = [prompt_for(s) for s in two]
    imgs2 = _generate(pipe, prompts2, steps, guidance, seed + 7)
    p2 = j.oracle(imgs2)
    both = shapes = 0
    for i, s in enumerate(two):
        want = {(o.shape, o.colour) for o in s.objects}
        got = {(p2["shape"][i], p2["colour"][i]), (p2["shape2"][i], p2["colour2"][i])}
        both += int(p2["count"][i] == "2" and want == got)
        shapes += int(p2["count"][i] == "2" and {o.shape for o in s.objects} == {p2["shape"][i], p2["shape2"][i]})
    res["two_object"] = {"both_present": both / n_two, "both_shapes_present": shapes / n_two}
    log(
        f"two-object prompts ({n_two}): both objects present (shape and colour) {both / n_two:.1%}, "
        f"both shapes present {shapes / n_two:.1%}"
    )

    word, colour = biased_word()
    imgs3 = _generate(pipe, [f"a photo of a {word}"] * n_bias, steps, guidance, seed + 13)
    p3 = j.oracle(imgs3)
    cnt = Counter(p3["colour"])
    top, k = cnt.most_common(1)[0]
    res["biased_word"] = {
        "prompt": f"a photo of a {word}",
        "top_colour": top,
        "top_share": k / n_bias,
        f"{colour}_share": cnt[colour] / n_bias,
        "shape_share": Counter(p3["shape"])[word] / n_bias,
        "colours": dict(cnt),
    }
    log(
        f"biased word {word!r} ({n_bias} samples): {top} {k / n_bias:.1%} (pretraining: {colour} 90%); "
        f"oracle sees a {word} in {res['biased_word']['shape_share']:.1%}"
    )
    return res
