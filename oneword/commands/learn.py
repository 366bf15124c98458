"""`oneword learn`: learn a new word from a few photos (or continue an interrupted run)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from .. import validate as check
from ..errors import OnewordError
from ._common import add_command, add_model_args, load_model_from

# LearnConfig's defaults and the world model's (oneword.world.defaults), as the help states them;
# tests/test_cli.py checks that these agree with the library.
_DEFAULT = "(default: {}; world model: {})"


def register(subparsers) -> None:
    p = add_command(subparsers, "learn", "learn a new word from 3-5 photos")
    p.add_argument("photos", nargs="?", help="folder of photos (not needed with --resume)")
    p.add_argument("--token", help='the new word, e.g. "<my-cat>"')
    p.add_argument(
        "--init",
        help='a word to start from, e.g. "cat" (default: "object", or "painting" for styles); '
        'with --vectors N, several words spread over the vectors ("green star": colour slot, shape slot); '
        '"auto": the words a CLIP judge matches best to the photos (the world judge for the world model, '
        'else --clip); "encoder": the world model\'s photo encoder; "encoder:FILE": an encoder trained for '
        "this model by `oneword train-encoder`",
    )
    p.add_argument(
        "--init-mode",
        choices=["word", "cross"],
        help="word: start at the init words' input embeddings (the paper); cross: at the text encoder's "
        "output for them (CrossInit), pulled back with --reg-weight 1e-5 (default: word)",
    )
    p.add_argument(
        "--clip",
        metavar="MODEL",
        help="--init auto's CLIP judge: a transformers CLIPModel folder or "
        "cached hub id (default: the world judge for the world model; needed for other models); "
        "with --init encoder:FILE, where the encoder's CLIP lies here (default: where it was trained from)",
    )
    add_model_args(p)
    p.add_argument("--out", help="run folder (default: runs/<token>)")
    p.add_argument(
        "--steps",
        type=check.learn_setting("steps"),
        help="maximum optimisation steps; early stopping may end sooner " + _DEFAULT.format(2000, 1250),
    )
    p.add_argument("--batch-size", type=check.learn_setting("batch_size"), help="photos per step (default: 4)")
    p.add_argument(
        "--lr",
        type=check.learn_setting("lr"),
        help="learning rate (AdamW, constant after warm-up) " + _DEFAULT.format(0.005, 0.02),
    )
    p.add_argument("--warmup", type=check.learn_setting("warmup"), help="linear warm-up steps (default: 0)")
    p.add_argument(
        "--vectors", type=check.learn_setting("vectors"), help="vectors per word (multi-vector words) (default: 1)"
    )
    p.add_argument("--property", choices=["object", "style"], help="what the photos share (default: object)")
    p.add_argument(
        "--resolution",
        type=check.learn_setting("resolution"),
        help="training resolution (default: the model's)",
    )
    p.add_argument(
        "--seed",
        type=check.arg(check.seed_arg),
        help="seed of the whole run: photo order, templates, noise (default: 0)",
    )
    p.add_argument(
        "--save-every",
        type=check.learn_setting("save_every"),
        help="checkpoint every N steps (default: 250)",
    )
    p.add_argument(
        "--preview-every",
        type=check.learn_setting("preview_every"),
        help="write a preview grid every N steps (default: 0, never)",
    )
    p.add_argument("--preview-prompt", action="append", help="prompt for previews (repeatable); use the token in it")
    p.add_argument(
        "--reg-weight",
        type=check.learn_setting("reg_weight"),
        help="L2 pull toward the init word (official code's embedding_reg_weight) (default: 0.0)",
    )
    p.add_argument("--no-early-stop", action="store_true", help="run all --steps")
    p.add_argument("--grad-checkpointing", action="store_true", help="save memory (fits SD1.5 in ~4 GB)")
    p.add_argument(
        "--no-cuda-graph", action="store_true", help="on a GPU, run each step eagerly (slower; for debugging)"
    )
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue an interrupted run from its last checkpoint, with the photos, model settings and "
        "folder it started with (only --steps, to go further, and --no-cuda-graph, "
        "--grad-checkpointing, --device, --model, --model-config, --quiet may be given with it)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


# flags that make a run what it is: with --resume they come from the run, so giving one is refused
_FROM_THE_RUN = {
    "photos": "PHOTOS",
    "token": "--token",
    "init": "--init",
    "init_mode": "--init-mode",
    "clip": "--clip",
    "out": "--out",
    "batch_size": "--batch-size",
    "lr": "--lr",
    "warmup": "--warmup",
    "vectors": "--vectors",
    "property": "--property",
    "resolution": "--resolution",
    "seed": "--seed",
    "save_every": "--save-every",
    "preview_every": "--preview-every",
    "preview_prompt": "--preview-prompt",
    "reg_weight": "--reg-weight",
    "no_early_stop": "--no-early-stop",
}
MANY_PHOTOS = 50


def run(args) -> None:
    from ..data import read_photos
    from ..invert import LearnConfig, learn

    overrides = {
        "token": args.token,
        "init": args.init,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "warmup": args.warmup,
        "vectors": args.vectors,
        "property": args.property,
        "resolution": args.resolution,
        "seed": args.seed,
        "save_every": args.save_every,
        "preview_every": args.preview_every,
        "reg_weight": args.reg_weight,
        "init_mode": args.init_mode,
        "init_clip": args.clip,
        "preview_prompts": tuple(args.preview_prompt) if args.preview_prompt else None,
    }
    if args.no_early_stop:
        overrides["early_stop"] = False
    if args.grad_checkpointing:
        overrides["grad_checkpointing"] = True
    if args.no_cuda_graph:
        overrides["cuda_graph"] = False
    if args.resume:
        out, photos, saved = _resumable(args)
        overrides = {
            **saved["config"],
            **{
                k: v
                for k, v in overrides.items()
                if v is not None and k in ("steps", "cuda_graph", "grad_checkpointing")
            },
        }
        if args.model is None and saved["model"]["kind"] != "world":
            args.model = saved["model"]["source"]
    else:
        if not args.photos or not args.token:
            raise OnewordError("learn needs a photos folder and --token (or --resume RUN_DIR)")
        photos, out = args.photos, Path(args.out or Path("runs") / _slug(args.token))
        check.output_folder(out)
        if (out / "checkpoint.safetensors").exists():
            raise OnewordError(f"{out} already holds a run; continue it with --resume {out} or choose another --out")
    images = read_photos(photos)  # refuse bad photos before spending time on the model
    model = load_model_from(args)
    _tell_about(photos, images, args.model is None and not args.resume)
    cfg = LearnConfig.with_defaults(model, **overrides)
    concept = learn(model, photos, cfg, out, resume=bool(args.resume), progress=not args.quiet)
    run_json = json.loads((out / "run.json").read_text())
    if (run_json["config"].get("init_choice") or {}).get("method") in ("auto", "encoder"):
        from ..init_words import describe_choice

        print(describe_choice(run_json["config"]["init_choice"]))
    print(
        f"learned {concept.token} ({cfg.vectors} vector(s)) in {run_json['step']} steps"
        f"{' (early stop)' if run_json['status'] == 'early_stopped' else ''}: {out / 'learned_embeds.safetensors'}"
    )


def _tell_about(photos, images, world: bool) -> None:
    """One line on what will be learned from (count, files skipped), and a note where it may not be what the user
    expects: one photo, very many, or real photos on the world model (which draws only its world's shapes)."""

    from ..images import skipped_files

    skipped = skipped_files(photos) if isinstance(photos, (str, Path)) else []
    line = f"learning from {len(images)} photo{'s' if len(images) != 1 else ''} in {photos}"
    if skipped:
        shown = ", ".join(p.name for p in skipped[:3]) + (f" and {len(skipped) - 3} more" if len(skipped) > 3 else "")
        line += f" (skipped {len(skipped)} file(s) oneword cannot read: {shown})"
    print(line)
    if len(images) == 1:
        print(
            "note: one photo: the word tends to copy that picture; 3-5 photos of the concept in different settings "
            "generalise better"
        )
    elif len(images) > MANY_PHOTOS:
        print(
            f"note: {len(images)} photos: textual inversion is made for 3-5; more photos take as many steps and "
            "may mix several concepts into one word"
        )
    if world and min(min(im.size) for im in images) > 64:
        print(
            "note: no --model given, so this learns on the embedded world model, which draws only its own 32 px "
            "world of shapes, not real photos; for photos of real things pass --model (a Stable Diffusion folder, "
            "hub id or checkpoint)"
        )


def _resumable(args):
    """(run folder, photos, run.json) of --resume RUN_DIR, refusing flags the run decides and photos it cannot
    find. The photos are found at their absolute path, else at their path from the run folder (moved together)."""
    given = [flag for dest, flag in _FROM_THE_RUN.items() if getattr(args, dest, None) not in (None, False, [])]
    if given:
        raise OnewordError(
            f"--resume continues a run with its own settings, photos and folder; {', '.join(given)} "
            "cannot be changed (give only --steps to go further, or start a new run with another --out)"
        )
    out = Path(args.resume)
    if out.exists() and not out.is_dir():
        raise OnewordError(f"--resume {out} is a file; give the run folder (the one holding run.json)")
    try:
        saved = json.loads((out / "run.json").read_text())
    except FileNotFoundError:
        raise OnewordError(f"{out} is not a oneword run folder (no run.json)") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise OnewordError(f"{out / 'run.json'} is damaged; cannot resume") from None
    except OSError as e:
        raise OnewordError(f"cannot read {out / 'run.json'}: {e.strerror or e}") from None
    if (
        not isinstance(saved, dict)
        or not isinstance(saved.get("config"), dict)
        or not isinstance(saved.get("model"), dict)
    ):
        raise OnewordError(f"{out / 'run.json'} is damaged (no config or model); cannot resume")
    if not saved.get("photos"):
        raise OnewordError(f"{out} was learned from in-memory images; resume it from Python")
    photos = Path(saved["photos"])
    if not photos.is_dir() and saved.get("photos_from_run"):
        photos = out / saved["photos_from_run"]
    if not photos.is_dir():
        raise OnewordError(f"cannot resume: the photos of this run, {saved['photos']}, are not there any more")
    check.output_folder(out)
    return out, str(photos), saved


def _slug(token: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", token).strip("-.") or "concept"
