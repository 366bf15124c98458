"""`oneword evaluate`: the paper's reconstruction and editability metrics for a learned word (and, as a
baseline, a human caption), with bootstrap intervals (oneword.evaluation)."""

from __future__ import annotations

import time
from pathlib import Path

from .. import validate as check
from ..errors import OnewordError
from ._common import add_command, add_model_args, add_num_arg, load_model_from

DEFAULT_CLIP = "openai/clip-vit-base-patch32"  # oneword.evaluation.DEFAULT_CLIP (tests/test_cli.py checks)


def register(subparsers) -> None:
    p = add_command(
        subparsers,
        "evaluate",
        "measure reconstruction and editability of a learned word (the paper's metrics)",
        description="Reconstruction: CLIP image-image similarity of 'a photo of S*' samples to the "
        "training photos. Editability: CLIP text-image similarity of edit prompts' "
        "samples to the prompt without S*. 95% bootstrap intervals, fixed seeds.",
    )
    p.add_argument("--embeds", help="learned embedding file (not needed with --caption alone)")
    p.add_argument("--token", help="which word of a file holding several")
    p.add_argument("--images", required=True, help="folder of the training photos")
    add_model_args(p)
    p.add_argument(
        "--judge",
        help=f"CLIPModel folder or hub id in the local cache, or 'world' "
        f"(default: world for the world model, else {DEFAULT_CLIP})",
    )
    p.add_argument(
        "--caption", help='also evaluate a human caption in place of S* (baseline), e.g. "a small teal ring"'
    )
    p.add_argument(
        "--property", choices=["object", "style"], help="concept kind (default: from the embedding file, else object)"
    )
    p.add_argument(
        "--prompts",
        choices=["auto", "paper", "world"],
        default="auto",
        help="prompt set (auto: the world's for the world model, else the paper's)",
    )
    p.add_argument(
        "--prompt", action="append", default=[], help='custom edit prompt with S*, e.g. "S* in a basket" (repeatable)'
    )
    add_num_arg(p, 64, "samples per prompt (default 64, as the paper)")
    p.add_argument("--steps", type=check.arg(check.whole, 1, 1000), default=50, help="DDIM steps (default 50)")
    p.add_argument(
        "--guidance",
        type=check.arg(check.number, 0.0, check.MAX_GUIDANCE),
        default=5.0,
        help="guidance scale (default 5)",
    )
    p.add_argument("--scheduler", choices=["ddim", "model"], default="ddim", help="ddim (official) or the model's own")
    p.add_argument("--seed", type=check.arg(check.seed_arg), default=0)
    p.add_argument("--bootstrap", type=check.arg(check.whole, 10, 1_000_000), default=2000, help="bootstrap resamples")
    p.add_argument("--out", help="output folder (default: eval/ beside the embedding file, else ./eval)")
    p.set_defaults(func=run)


def default_judge(model_spec) -> str:
    """'world' when --model is the embedded world model (none, or its folder), else the paper's CLIP."""
    if model_spec is None:
        return "world"
    try:
        from ..world import model_path

        if Path(model_spec).expanduser().resolve() == model_path().resolve():
            return "world"
    except OSError:
        pass
    return DEFAULT_CLIP


def run(args) -> None:
    from ..data import read_photos
    from ..evaluation import (
        EvalConfig,
        Evaluator,
        captioned,
        custom_prompts,
        is_world_model,
        learned,
        load_judge,
        table,
        write_report,
    )

    if not args.embeds and not args.caption:
        raise OnewordError("evaluate needs --embeds (a learned word) and/or --caption (a human caption baseline)")
    check.sampling(args.num, args.steps, args.guidance, args.seed)
    check.whole("--bootstrap", args.bootstrap, 10, 1_000_000)
    out = Path(args.out) if args.out else (Path(args.embeds).parent / "eval" if args.embeds else Path("eval"))
    check.output_folder(out)
    subjects, kind = [], args.property
    if args.embeds:
        from ..formats import load_concepts

        concepts = load_concepts(args.embeds, token=args.token) if args.token else load_concepts(args.embeds)
        if len(concepts) != 1:
            raise OnewordError(
                f"{args.embeds} holds {len(concepts)} words; choose one with --token "
                f"({', '.join(c.token for c in concepts)})"
            )
        subjects.append(learned(concepts[0]))
        kind = kind or concepts[0].meta.get("property") or "object"
    if args.caption:
        subjects.append(captioned(args.caption))
    kind = kind or "object"
    images = read_photos(args.images)
    judge = load_judge(args.judge or default_judge(args.model), device=args.device)  # before the model: fail fast
    model = load_model_from(args)
    world = args.prompts == "world" or (args.prompts == "auto" and is_world_model(model))
    prompts = custom_prompts(args.prompt, kind, world) if args.prompt else args.prompts
    cfg = EvalConfig(
        n=args.num,
        steps=args.steps,
        guidance=args.guidance,
        seed=args.seed,
        scheduler=args.scheduler,
        bootstrap=args.bootstrap,
    )
    ev = Evaluator(model, images, judge, kind, prompts, cfg)
    started = time.perf_counter()
    print(
        f"evaluating {', '.join(s.label for s in subjects)} on {len(images)} photos: {len(ev.prompts)} prompts x "
        f"{args.num} samples x {args.steps} steps each",
        flush=True,
    )

    def on_prompt(subject, i, p):
        print(
            f"  {subject.label}: prompt {i + 1}/{len(ev.prompts)} ({p.name}), {time.perf_counter() - started:.0f} s "
            "so far",
            flush=True,
        )

    ev.on_prompt = on_prompt
    report = {**ev.header(), "results": [ev.evaluate(s, keep_images=True) for s in subjects]}
    paths = write_report(report, out)
    print(table(report))
    print(
        f"wrote {paths['json']}, {paths['table']} and "
        f"{', '.join(str(v) for k, v in paths.items() if k.startswith('grid'))} in {time.perf_counter() - started:.0f} s"
    )
