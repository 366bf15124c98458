"""`oneword world pretrain`, `tune-oracle` / `tune-clip` (the judge) and `check` (the world model's must-show
figures)."""
from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import OnewordError


def register(subparsers) -> None:
    p = subparsers.add_parser("world", help="the embedded world: pretrain or check the shipped model")
    sub = p.add_subparsers(metavar="ACTION")
    p.set_defaults(func=lambda a: p.print_help())

    q = sub.add_parser("pretrain", help="train the world model (VAE, text encoder, UNet) and its judge")
    q.add_argument("--out", help="folder that receives model/ and judge/ (default: the package's own)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--minutes", type=float, default=38.0, help="wall-clock budget for all training (default 38)")
    q.add_argument("--tiny", action="store_true", help="a seconds-long smoke run with tiny models")
    q.add_argument("--threads", type=int, help="torch CPU threads (use 1 on a busy machine: oversubscribed threads spin)")
    q.add_argument("--cache", help="keep the trained VAE here and reuse it on a rerun with the same seed")
    q.add_argument("--init-from", help="continue training from the model/ and judge/ in this folder")
    q.add_argument("--keep-vae", action="store_true",
                   help="with --init-from: keep its VAE as it is (the UNet keeps its latent space) and give the VAE's time to the UNet")
    q.add_argument("--unet-batch", type=int, help="UNet batch (default 128; a GPU takes 512 at about the same step time)")
    q.add_argument("--scenes", type=int, help="scenes rendered for training (default 24000; more for long runs)")
    q.add_argument("--caption-hedge", type=float, default=0.0,
                   help="probability that a caption calls an un-named colour one of its two nearest named colours "
                        "(default 0: never mentioned, the issue's design; see docs/world.md)")
    q.set_defaults(func=_pretrain)

    for part, what in (("oracle", "continue the judge's oracle on renders of the whole world (held-out combinations "
                                  "included)"),
                       ("clip", "continue the judge's CLIP on renders of the whole world captioned in the judge's "
                                "language (every value named)")):
        d = sub.add_parser(f"tune-{part}", help=f"{what}; the model is not touched")
        d.add_argument("--from", dest="src", help="folder holding model/ and judge/ (default: the package's own)")
        d.add_argument("--out", help="folder that receives judge/ (default: the package's own)")
        d.add_argument("--minutes", type=float, default={"oracle": 6.0, "clip": 10.0}[part],
                       help="wall-clock budget (default %(default)s)")
        d.add_argument("--seed", type=int, default=0)
        d.add_argument("--threads", type=int, help="torch CPU threads")
        d.add_argument("--tiny", action="store_true", help="a seconds-long smoke run")
        d.set_defaults(func=_tune_judge, part=part)

    c = sub.add_parser("check", help="print the oracle accuracy and prompted-generation figures")
    c.add_argument("--model", help="diffusers folder (default: the shipped world model)")
    c.add_argument("--judge", help="judge folder (default: the shipped judge)")
    c.add_argument("--n", type=int, default=200, help="prompts for the held-out-combination table (default 200)")
    c.add_argument("--n-two", type=int, default=100, help="two-object prompts (default 100)")
    c.add_argument("--n-bias", type=int, default=100, help="biased-word samples (default 100)")
    c.add_argument("--n-oracle", type=int, default=1000, help="fresh renders for the oracle (default 1000)")
    c.add_argument("--steps", type=int, default=25)
    c.add_argument("--guidance", type=float, default=7.5)
    c.add_argument("--seed", type=int, default=1234)
    c.add_argument("--json", help="also write the figures to this JSON file")
    c.set_defaults(func=_check)


def _pretrain(args) -> None:
    from . import pretrain as pt

    out = Path(args.out) if args.out else Path(__file__).resolve().parent
    if args.minutes <= 0:
        raise OnewordError("--minutes must be positive")
    if args.unet_batch is not None and args.unet_batch < 1:
        raise OnewordError("--unet-batch must be positive")
    if args.scenes is not None and args.scenes < 100:
        raise OnewordError("--scenes must be at least 100")
    if not 0.0 <= args.caption_hedge <= 1.0:
        raise OnewordError("--caption-hedge must be in [0, 1]")
    rec = pt.pretrain(out, seed=args.seed, minutes=args.minutes, tiny=args.tiny, threads=args.threads,
                      cache=args.cache, init_from=args.init_from, keep_vae=args.keep_vae, unet_batch=args.unet_batch,
                      scenes=args.scenes, hedge=args.caption_hedge)
    print(json.dumps(rec["stages"], indent=1))


def _tune_judge(args) -> None:
    from . import pretrain as pt

    here = Path(__file__).resolve().parent
    if args.minutes <= 0:
        raise OnewordError("--minutes must be positive")
    rec = pt.tune_judge(args.src or here, args.out or here, part=args.part, minutes=args.minutes, seed=args.seed,
                        tiny=args.tiny, threads=args.threads)
    print(json.dumps(rec, indent=1))


# ------------------------------------------------------------------------------------------ check
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
        imgs += pipe(prompts[i:i + batch], num_inference_steps=steps, guidance_scale=guidance, generator=g,
                     output_type="pil").images
    return imgs


def run_check(model=None, judge=None, n=200, n_two=100, n_bias=100, n_oracle=1000, steps=25, guidance=7.5,
              seed=1234, log=print) -> dict:
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
    log("oracle accuracy on %d fresh renders: %s" % (n_oracle, ", ".join(f"{k} {v:.1%}" for k, v in res["oracle"].items())))

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
    log(f"prompted generation on {n} held-out combinations ({steps} steps, guidance {guidance}): "
        + ", ".join(f"{k} {v:.1%}" for k, v in table.items()))
    res["heldout_by_pair"] = by_pair = {}
    kinds = [held_out_kinds(s) for s in scenes]
    for pair in HELD_OUT_KINDS:  # which kind of unseen combination fails: both of its attributes right
        hits = [all(pred[k][i] == scenes[i].attributes()[k] for k in pair) for i in range(n) if pair in kinds[i]]
        if hits:
            by_pair["+".join(pair)] = {"both_correct": float(np.mean(hits)), "n": len(hits)}
    log("by held-out pair (both attributes correct): "
        + ", ".join(f"{k} {v['both_correct']:.1%} of {v['n']}" for k, v in by_pair.items()))

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
    log(f"two-object prompts ({n_two}): both objects present (shape and colour) {both / n_two:.1%}, "
        f"both shapes present {shapes / n_two:.1%}")

    word, colour = biased_word()
    imgs3 = _generate(pipe, [f"a photo of a {word}"] * n_bias, steps, guidance, seed + 13)
    p3 = j.oracle(imgs3)
    cnt = Counter(p3["colour"])
    top, k = cnt.most_common(1)[0]
    res["biased_word"] = {"prompt": f"a photo of a {word}", "top_colour": top, "top_share": k / n_bias,
                          f"{colour}_share": cnt[colour] / n_bias,
                          "shape_share": Counter(p3["shape"])[word] / n_bias, "colours": dict(cnt)}
    log(f"biased word {word!r} ({n_bias} samples): {top} {k / n_bias:.1%} (pretraining: {colour} 90%); "
        f"oracle sees a {word} in {res['biased_word']['shape_share']:.1%}")
    return res


def _check(args) -> None:
    res = run_check(args.model, args.judge, args.n, args.n_two, args.n_bias, args.n_oracle, args.steps,
                    args.guidance, args.seed)
    print()
    print("| figure | measured | bar |")
    print("|---|---|---|")
    for k, v in res["oracle"].items():
        print(f"| oracle accuracy: {k} | {v:.1%} | >= 97% |")
    for k, v in res["heldout_generation"].items():
        print(f"| held-out prompts: {k} correct | {v:.1%} | {'>= 85%' if k != 'count' else '-'} |")
    for k, v in res["heldout_by_pair"].items():
        print(f"| held-out {k} pairs: both correct | {v['both_correct']:.1%} (n={v['n']}) | - |")
    print(f"| two-object: both present | {res['two_object']['both_present']:.1%} | >= 60% |")
    print(f"| two-object: both shapes present | {res['two_object']['both_shapes_present']:.1%} | - |")
    print(f"| biased word: top colour share ({res['biased_word']['top_colour']}) | {res['biased_word']['top_share']:.1%} | >= 80% |")
    if args.json:
        from ..safeio import atomic_write_json

        atomic_write_json(args.json, res)


def main(argv=None) -> int:  # python -m oneword.world.cli ...
    import sys

    parser = argparse.ArgumentParser(prog="oneword")
    register(parser.add_subparsers())
    args = parser.parse_args(["world"] + list(argv if argv is not None else sys.argv[1:]))
    try:
        args.func(args)
    except OnewordError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
