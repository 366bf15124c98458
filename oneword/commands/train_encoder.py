"""`oneword train-encoder`: a photo encoder for any model (oneword.photo_encoder), so that `learn --init
encoder:FILE` starts a word where its photos point. The world model's own is `oneword world train-encoder`."""

from __future__ import annotations

import json

from .. import validate as check
from ..errors import OnewordError
from ._common import add_command, add_model_args, load_model_from


def register(subparsers) -> None:
    p = add_command(
        subparsers,
        "train-encoder",
        "train a photo encoder for a model (behind `learn --init encoder:FILE`)",
        description="Train a photo encoder through the frozen model on SUBJECTS: a folder of photo folders, one "
        "subject each (several photos of one object or style; an optional oneword.toml / oneword.json beside the "
        'photos sets property = "style"), as learn-many reads them. The more subjects the better: the world '
        "model's encoder saw 1,800.",
    )
    p.add_argument("subjects", help="folder of photo folders, one subject each (or a learn-many .jsonl manifest)")
    p.add_argument("--out", required=True, help="encoder file to write (.safetensors)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    add_model_args(p)
    p.add_argument(
        "--clip",
        metavar="MODEL",
        help="the CLIP whose image features the encoder reads: a transformers CLIPModel folder or cached hub id "
        "(recorded in the file; default: the world judge for the world model, needed for other models)",
    )
    p.add_argument("--minutes", type=check.arg(check.number, 0.001, None), default=60.0, help="time budget")
    p.add_argument("--steps", type=check.arg(check.whole, 1, None), default=4000, help="at most this many steps")
    p.add_argument("--batch", type=check.arg(check.whole, 1, 4096), default=16, help="subjects per step")
    p.add_argument("--lr", type=check.arg(check.number, 1e-7, 1.0), default=1e-3, help="AdamW learning rate (cosine)")
    p.add_argument("--seed", type=check.arg(check.seed_arg), default=0)
    p.add_argument("--threads", type=check.arg(check.whole, 1, 1024), help="torch CPU threads")
    p.set_defaults(func=run)


def run(args) -> None:
    import torch

    from ..data import read_photos
    from ..encoder_training import train_photo_encoder
    from ..judges import is_world_model, load_judge
    from ..many import read_jobs
    from ..photo_encoder import PROPERTIES

    out = check.output_file(args.out, overwrite=args.overwrite)
    if out.suffix != ".safetensors":
        raise OnewordError(f"--out {args.out}: an encoder is written as .safetensors")
    subjects = read_jobs(args.subjects, out.parent)  # a job per photo folder: its photos, property (no out used)
    sets = [read_photos(s.photos) for s in subjects]  # refuse bad photos before loading the model
    props = [PROPERTIES.index(s.property or "object") for s in subjects]
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model_from(args)
    if not args.clip and not is_world_model(model):
        raise OnewordError(
            "train-encoder needs --clip MODEL for this model: the CLIP whose image features the encoder reads "
            "(a transformers CLIPModel folder or cached hub id, e.g. openai/clip-vit-large-patch14)"
        )
    source = args.clip or "world"
    judge = load_judge(source, model=model)
    record = train_photo_encoder(
        model,
        judge,
        sets,
        props,
        out,
        source,
        minutes=args.minutes,
        max_steps=args.steps,
        batch=args.batch,
        lr=args.lr,
        seed=args.seed,
    )
    print(json.dumps(record, indent=1))
    print(f"encoder written to {out}; start a word from it with: oneword learn PHOTOS --init encoder:{out}")
