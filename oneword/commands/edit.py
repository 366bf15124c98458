"""`oneword edit`: regenerate a region of a photo from a prompt that may use learned words (blended latent
diffusion, oneword.editing)."""

from __future__ import annotations

import time

from .. import validate as check
from ._common import (
    add_command,
    add_embeds_arg,
    add_model_args,
    add_num_arg,
    add_overwrite_arg,
    add_steps_guidance,
    check_image_out,
    load_concepts_from,
    load_model_from,
    write_images,
)


def register(subparsers) -> None:
    p = add_command(
        subparsers,
        "edit",
        "edit a region of a photo with a prompt that uses learned words (blended latent diffusion)",
        description="Blended Latent Diffusion: regenerate the masked region of PHOTO from PROMPT; "
        "the rest of the photo is kept.",
    )
    p.add_argument("photo", metavar="PHOTO")
    p.add_argument("prompt", metavar="PROMPT", help='e.g. "a photo of <my-cat>"')
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--mask", help="mask image, white = edit (resized to the photo)")
    where.add_argument("--box", metavar="X0,Y0,X1,Y1", help="region to edit, in photo pixels (x1, y1 exclusive)")
    add_embeds_arg(p)
    add_model_args(p)
    how = p.add_mutually_exclusive_group()
    how.add_argument(
        "--strength",
        type=float,
        default=1.0,
        help="1 regenerates the region from noise (default); less keeps more of the photo's layout",
    )
    how.add_argument(
        "--start-step",
        type=check.arg(check.whole, 0, check.MAX_SAMPLING_STEPS),
        help="skip this many of the --steps (same as --strength, in steps)",
    )
    add_steps_guidance(p, "DDIM steps")
    p.add_argument("--negative", help="negative prompt")
    p.add_argument("--seed", type=check.arg(check.seed_arg), default=0)
    add_num_arg(p, 1, "number of edits (seeds seed..seed+n-1)")
    for flag, what in (
        ("--dilate", "grow the mask by PX pixels"),
        ("--feather", "blend the last PX pixels inside the mask into the photo (softer seam)"),
    ):
        p.add_argument(flag, type=check.arg(check.whole, 0, check.MAX_PIXELS_ARG), default=0, metavar="PX", help=what)
    p.add_argument(
        "--no-fill",
        action="store_true",
        help="encode the background from the photo as it is (default: with the region filled from its "
        "surroundings, so what is under the mask cannot leak into the edit)",
    )
    p.add_argument(
        "--no-restore", action="store_true", help="keep the decoded pixels outside the mask instead of the photo's own"
    )
    p.add_argument(
        "--out",
        default="edited.png",
        help="output image, .png/.jpg/.webp (with -n > 1: a grid, images beside it as NAME_00, ...); "
        "never the photo or the mask",
    )
    add_overwrite_arg(p)
    p.set_defaults(func=run)


def run(args) -> None:
    from ..editing import edit, load_mask, parse_box
    from ..images import load_image

    check.sampling(args.num, args.steps, args.guidance, args.seed)
    grid = args.num > 1
    out = check_image_out(args, args.num if grid else 0, inputs=[p for p in (args.photo, args.mask) if p], grid=grid)
    photo = load_image(args.photo, min_size=8)  # as editing.edit opens a photo path
    mask = parse_box(args.box) if args.box else args.mask
    load_mask(mask, photo.size)  # refuse a bad mask before loading the model
    concepts = load_concepts_from(args.embeds)
    model = load_model_from(args)
    started = time.perf_counter()
    images = edit(
        model,
        photo,
        mask,
        args.prompt,
        concepts,
        strength=args.strength,
        steps=args.steps,
        guidance=args.guidance,
        seed=args.seed,
        n=args.num,
        dilate=args.dilate,
        feather=args.feather,
        restore=not args.no_restore,
        negative=args.negative,
        start_step=args.start_step,
        fill=not args.no_fill,
    )
    seconds = time.perf_counter() - started
    what = f"{len(images)} edits" if grid else "1 edit"
    print(f"wrote {write_images(images, out, args.overwrite, grid=grid)}: {what} in {seconds:.1f} s")
