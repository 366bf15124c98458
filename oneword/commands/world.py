"""`oneword world pretrain`, `tune-oracle` / `tune-clip` (the judge), `train-encoder` (the photo encoder behind
`learn --init encoder`, oneword.world.encoder) and `check` (the world model's must-show
figures, oneword.world.check)."""

from __future__ import annotations

import json
from pathlib import Path

from .. import validate as check
from ..errors import OnewordError
from ._common import HelpFormatter, add_command


def register(subparsers) -> None:
    p = add_command(subparsers, "world", "the embedded world: pretrain or check the shipped model")
    sub = p.add_subparsers(metavar="ACTION")
    p.set_defaults(func=lambda a: p.print_help())

    q = sub.add_parser(
        "pretrain", help="train the world model (VAE, text encoder, UNet) and its judge", formatter_class=HelpFormatter
    )
    q.add_argument(
        "--out", help="folder that receives model/ and judge/ (required; the package's own only with --into-package)"
    )
    q.add_argument(
        "--into-package",
        action="store_true",
        help="allow --out to be the installed package's world folder, replacing the shipped model",
    )
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--minutes", type=float, default=38.0, help="wall-clock budget for all training (default 38)")
    q.add_argument("--tiny", action="store_true", help="a seconds-long smoke run with tiny models")
    q.add_argument(
        "--threads", type=int, help="torch CPU threads (use 1 on a busy machine: oversubscribed threads spin)"
    )
    q.add_argument("--cache", help="keep the trained VAE here and reuse it on a rerun with the same seed")
    q.add_argument("--init-from", help="continue training from the model/ and judge/ in this folder")
    q.add_argument(
        "--keep-vae",
        action="store_true",
        help="with --init-from: keep its VAE as it is (the UNet keeps its latent space) and give the "
        "VAE's time to the UNet",
    )
    q.add_argument(
        "--unet-batch", type=int, help="UNet batch (default 128; a GPU takes 512 at about the same step time)"
    )
    q.add_argument("--scenes", type=int, help="scenes rendered for training (default 24000; more for long runs)")
    q.add_argument(
        "--caption-hedge",
        type=float,
        default=0.0,
        help="probability that a caption calls an un-named colour one of its two nearest named colours "
        "(default 0: never mentioned, as the world is designed; see docs/world.md)",
    )
    q.set_defaults(func=_pretrain)

    for part, what in (
        ("oracle", "continue the judge's oracle on renders of the whole world (held-out combinations included)"),
        (
            "clip",
            "continue the judge's CLIP on renders of the whole world captioned in the judge's "
            "language (every value named)",
        ),
    ):
        d = sub.add_parser(f"tune-{part}", help=f"{what}; the model is not touched", formatter_class=HelpFormatter)
        d.add_argument("--from", dest="src", help="folder holding model/ and judge/ (default: the package's own)")
        d.add_argument(
            "--out", help="folder that receives judge/ (required; the package's own only with --into-package)"
        )
        d.add_argument(
            "--into-package",
            action="store_true",
            help="allow --out to be the installed package's world folder, replacing the shipped judge",
        )
        d.add_argument(
            "--minutes",
            type=float,
            default={"oracle": 6.0, "clip": 10.0}[part],
            help="wall-clock budget (default %(default)s)",
        )
        d.add_argument("--seed", type=int, default=0)
        d.add_argument("--threads", type=int, help="torch CPU threads")
        d.add_argument("--tiny", action="store_true", help="a seconds-long smoke run")
        d.set_defaults(func=_tune_judge, part=part)

    e = sub.add_parser(
        "train-encoder",
        help="train the photo encoder behind `learn --init encoder` (pretraining "
        "scenes only, diffusion loss through the frozen world model)",
        formatter_class=HelpFormatter,
    )
    e.add_argument(
        "--out",
        help="encoder file to write (required, unless --into-package replaces the package's own, "
        "oneword/world/encoder/encoder.safetensors)",
    )
    e.add_argument(
        "--into-package",
        action="store_true",
        help="write the package's own encoder (without --out) or allow --out inside the package",
    )
    e.add_argument("--minutes", type=float, default=10.0, help="wall-clock budget for the steps (default 10)")
    e.add_argument("--steps", type=int, default=4000, help="at most this many steps (default 4000)")
    e.add_argument("--batch", type=int, default=64, help="concepts per step (default 64)")
    e.add_argument("--concepts", type=int, default=1500, help="object concepts drawn (default 1500; styles: a fifth)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--threads", type=int, help="torch CPU threads")
    e.add_argument("--tiny", action="store_true", help="a seconds-long smoke run")
    e.set_defaults(func=_train_encoder)

    c = sub.add_parser(
        "check", help="print the oracle accuracy and prompted-generation figures", formatter_class=HelpFormatter
    )
    c.add_argument("--model", help="diffusers folder (default: the shipped world model)")
    c.add_argument("--judge", help="judge folder (default: the shipped judge)")
    count = check.arg(check.whole, 1, 1_000_000)
    c.add_argument("--n", type=count, default=200, help="prompts for the held-out-combination table (default 200)")
    c.add_argument("--n-two", type=count, default=100, help="two-object prompts (default 100)")
    c.add_argument("--n-bias", type=count, default=100, help="biased-word samples (default 100)")
    c.add_argument("--n-oracle", type=count, default=1000, help="fresh renders for the oracle (default 1000)")
    c.add_argument("--steps", type=check.arg(check.whole, 1, 1000), default=25)
    c.add_argument("--guidance", type=check.arg(check.number, 0.0, check.MAX_GUIDANCE), default=7.5)
    c.add_argument("--seed", type=check.arg(check.seed_arg), default=1234)
    c.add_argument("--json", help="also write the figures to this JSON file")
    c.set_defaults(func=_check)


def _package_folder() -> Path:
    """oneword/world/, which holds the shipped model/ and judge/."""
    from ..world import model_path

    return model_path().parent


def _pretrain(args) -> None:
    from ..world import pretrain as pt

    out = _out_folder(args, "model/ and judge/")
    if args.minutes <= 0:
        raise OnewordError("--minutes must be positive")
    if args.unet_batch is not None and args.unet_batch < 1:
        raise OnewordError("--unet-batch must be positive")
    if args.scenes is not None and args.scenes < 100:
        raise OnewordError("--scenes must be at least 100")
    if not 0.0 <= args.caption_hedge <= 1.0:
        raise OnewordError("--caption-hedge must be in [0, 1]")
    with _package_writes(args):
        rec = pt.pretrain(
            out,
            seed=args.seed,
            minutes=args.minutes,
            tiny=args.tiny,
            threads=args.threads,
            cache=args.cache,
            init_from=args.init_from,
            keep_vae=args.keep_vae,
            unet_batch=args.unet_batch,
            scenes=args.scenes,
            hedge=args.caption_hedge,
        )
    print(json.dumps(rec["stages"], indent=1))


def _tune_judge(args) -> None:
    from ..world import pretrain as pt

    out = _out_folder(args, "judge/")
    if args.minutes <= 0:
        raise OnewordError("--minutes must be positive")
    with _package_writes(args):
        rec = pt.tune_judge(
            args.src or _package_folder(),
            out,
            part=args.part,
            minutes=args.minutes,
            seed=args.seed,
            tiny=args.tiny,
            threads=args.threads,
        )
    print(json.dumps(rec, indent=1))


def _train_encoder(args) -> None:
    from ..world.encoder import train_encoder

    if args.minutes <= 0 or args.steps < 1 or args.batch < 1 or args.concepts < 1:
        raise OnewordError("--minutes, --steps, --batch and --concepts must be positive")
    size = (
        dict(minutes=0.05, max_steps=3, batch=4, n_object=8, n_style=4)
        if args.tiny
        else dict(
            minutes=args.minutes,
            max_steps=args.steps,
            batch=args.batch,
            n_object=args.concepts,
            n_style=max(1, args.concepts // 5),
        )
    )
    if not args.out and not args.into_package:
        raise OnewordError(
            "give --out FILE for the encoder; the shipped one inside the package is replaced only with --into-package"
        )
    if args.out:
        check.output_folder(Path(args.out).parent, "--out", into_package=args.into_package)
    with _package_writes(args):
        rec = train_encoder(args.out, seed=args.seed, threads=args.threads, **size)
    print(json.dumps(rec, indent=1))


def _out_folder(args, what: str) -> Path:
    """--out, which must be given: the shipped model and judge inside the package are replaced only when asked
    for by name (--out PACKAGE_WORLD_FOLDER --into-package)."""
    if not args.out:
        raise OnewordError(
            f"give --out DIR (it receives DIR/{what}); the shipped world inside the package is "
            f"replaced only with --out {_package_folder()} --into-package"
        )
    return check.output_folder(args.out, into_package=args.into_package)


def _package_writes(args):
    from contextlib import nullcontext

    from ..safeio import package_writes

    return package_writes() if args.into_package else nullcontext()


def _check(args) -> None:
    from ..world.check import run_check

    res = run_check(
        args.model, args.judge, args.n, args.n_two, args.n_bias, args.n_oracle, args.steps, args.guidance, args.seed
    )
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
    print(
        f"| biased word: top colour share ({res['biased_word']['top_colour']}) | "
        f"{res['biased_word']['top_share']:.1%} | >= 80% |"
    )
    if args.json:
        from ..safeio import atomic_write_json

        atomic_write_json(args.json, res)
