"""The `oneword` command: a thin shell that parses arguments and calls the library."""
from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys
from pathlib import Path

from .errors import OnewordError

# Feature modules that add their own sub-commands through `register(subparsers)`.
COMMAND_MODULES = ("oneword.formats_cli", "oneword.world.cli", "oneword.evaluation", "oneword.editing")


def main(argv: list[str] | None = None) -> int:
    _quiet_libraries()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        args.func(args)
    except OnewordError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oneword", description="Textual inversion: learn a word for your photos.")
    sub = parser.add_subparsers(metavar="COMMAND")
    _add_learn(sub)
    _add_generate(sub)
    _add_variations(sub)
    _add_demo(sub)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue  # a feature not installed in this build
        module.register(sub)
    return parser


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="diffusers folder, hub id (local cache) or .safetensors/.ckpt file; default: the embedded world model")
    p.add_argument("--model-config", help="for a single-file checkpoint offline: a diffusers folder of the same architecture")
    p.add_argument("--device", help="cpu or cuda (default: cuda if available)")


def load_model_from(args):
    from .models import load_model

    return load_model(args.model, device=args.device, config=args.model_config)


# ---------------------------------------------------------------- learn
def _add_learn(sub) -> None:
    p = sub.add_parser("learn", help="learn a new word from 3-5 photos")
    p.add_argument("photos", nargs="?", help="folder of photos (not needed with --resume)")
    p.add_argument("--token", help='the new word, e.g. "<my-cat>"')
    p.add_argument("--init", help='a word to start from, e.g. "cat" (default: "object", or "painting" for styles); '
                   'with --vectors N, several words spread over the vectors ("green star": colour slot, shape slot)')
    add_model_args(p)
    p.add_argument("--out", help="run folder (default: runs/<token>)")
    p.add_argument("--steps", type=int, help="maximum optimisation steps (early stopping may end sooner)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="learning rate (AdamW, constant after warm-up)")
    p.add_argument("--warmup", type=int, help="linear warm-up steps")
    p.add_argument("--vectors", type=int, help="vectors per word (multi-vector words)")
    p.add_argument("--property", choices=["object", "style"])
    p.add_argument("--resolution", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--save-every", type=int)
    p.add_argument("--preview-every", type=int)
    p.add_argument("--preview-prompt", action="append", help="prompt for previews (repeatable); use the token in it")
    p.add_argument("--reg-weight", type=float, help="L2 pull toward the init word (official code's embedding_reg_weight)")
    p.add_argument("--no-early-stop", action="store_true", help="run all --steps")
    p.add_argument("--grad-checkpointing", action="store_true", help="save memory (fits SD1.5 in ~4 GB)")
    p.add_argument("--no-cuda-graph", action="store_true", help="on a GPU, run each step eagerly (slower; for debugging)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_learn)


def cmd_learn(args) -> None:
    from .data import read_photos
    from .invert import LearnConfig, learn

    overrides = {"token": args.token, "init": args.init, "steps": args.steps, "batch_size": args.batch_size,
                 "lr": args.lr, "warmup": args.warmup, "vectors": args.vectors, "property": args.property,
                 "resolution": args.resolution, "seed": args.seed, "save_every": args.save_every,
                 "preview_every": args.preview_every, "reg_weight": args.reg_weight,
                 "preview_prompts": tuple(args.preview_prompt) if args.preview_prompt else None}
    if args.no_early_stop:
        overrides["early_stop"] = False
    if args.grad_checkpointing:
        overrides["grad_checkpointing"] = True
    if args.no_cuda_graph:
        overrides["cuda_graph"] = False
    if args.resume:
        out, photos, saved = _resumable(args.resume)
        overrides = {**saved["config"], **{k: v for k, v in overrides.items() if v is not None and k in ("steps", "cuda_graph")}}
        if args.model is None and saved["model"]["kind"] != "world":
            args.model = saved["model"]["source"]
    else:
        if not args.photos or not args.token:
            raise OnewordError("learn needs a photos folder and --token (or --resume RUN_DIR)")
        photos, out = args.photos, Path(args.out or Path("runs") / _slug(args.token))
        if (out / "checkpoint.safetensors").exists():
            raise OnewordError(f"{out} already holds a run; continue it with --resume {out} or choose another --out")
    read_photos(photos)  # refuse bad photos before spending time on the model
    model = load_model_from(args)
    cfg = LearnConfig.with_defaults(model, **overrides)
    concept = learn(model, photos, cfg, out, resume=bool(args.resume), progress=not args.quiet)
    run = json.loads((out / "run.json").read_text())
    print(f"learned {concept.token} ({cfg.vectors} vector(s)) in {run['step']} steps"
          f"{' (early stop)' if run['status'] == 'early_stopped' else ''}: {out / 'learned_embeds.safetensors'}")


def _resumable(run_dir: str):
    out = Path(run_dir)
    try:
        saved = json.loads((out / "run.json").read_text())
    except FileNotFoundError:
        raise OnewordError(f"{out} is not a oneword run folder (no run.json)") from None
    except json.JSONDecodeError:
        raise OnewordError(f"{out / 'run.json'} is damaged; cannot resume") from None
    if not saved.get("photos"):
        raise OnewordError(f"{out} was learned from in-memory images; resume it from Python")
    return out, saved["photos"], saved


def _slug(token: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", token).strip("-.") or "concept"


# ---------------------------------------------------------------- generate / variations
def _add_sampling_args(p, n_default: int) -> None:
    p.add_argument("--embeds", action="append", default=[], help="learned embedding file (repeatable: composition)")
    add_model_args(p)
    p.add_argument("-n", "--num", type=int, default=n_default, help="number of images")
    p.add_argument("--steps", type=int, help="sampling steps")
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale")
    p.add_argument("--negative", help="negative prompt")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--height", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--out", default="out.png", help="grid image; single images are written beside it")


def _add_generate(sub) -> None:
    p = sub.add_parser("generate", help="generate images from a prompt that uses learned words")
    p.add_argument("prompt")
    _add_sampling_args(p, 4)
    p.set_defaults(func=cmd_generate)


def _add_variations(sub) -> None:
    p = sub.add_parser("variations", help='image variations: a grid of "a photo of S*"')
    p.add_argument("--template", default=None, help='default "a photo of {}" ("a painting in the style of {}" for styles)')
    _add_sampling_args(p, 16)
    p.set_defaults(func=cmd_variations)


def load_concepts_from(paths: list[str]):
    from .concept import load_concepts

    return [c for path in paths for c in load_concepts(path)]


def _sample_and_save(args, prompt: str) -> None:
    from .sampling import generate, save_images

    if args.num < 1:
        raise OnewordError("-n must be at least 1")
    concepts = load_concepts_from(args.embeds)
    model = load_model_from(args)
    images = generate(model, prompt, concepts, n=args.num, steps=args.steps, guidance=args.guidance,
                      seed=args.seed, negative=args.negative, height=args.height, width=args.width)
    paths = save_images(images, args.out)
    print(f"wrote {args.out} and {len(paths)} images beside it")


def cmd_generate(args) -> None:
    _sample_and_save(args, args.prompt)


def cmd_variations(args) -> None:
    concepts = load_concepts_from(args.embeds)
    if len(concepts) != 1:
        raise OnewordError("variations takes exactly one --embeds file with one learned word")
    c = concepts[0]
    template = args.template or ("a painting in the style of {}" if c.meta.get("property") == "style" else "a photo of {}")
    _sample_and_save(args, template.format(c.token))


# ---------------------------------------------------------------- demo
def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="learn a novel concept of the embedded world, offline, in a few minutes")
    p.add_argument("--concept", help="which world concept (default: the first novel concept)")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> None:
    from .demo import run_demo

    run_demo(args.concept, Path(args.out), args.seed)


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*torchvision.*")
    try:
        from diffusers.utils import logging as dlog
        from transformers.utils import logging as tlog

        dlog.set_verbosity_error()
        dlog.disable_progress_bar()
        tlog.set_verbosity_error()
        tlog.disable_progress_bar()
    except Exception:  # logging tweaks must never stop the tool
        pass


if __name__ == "__main__":
    sys.exit(main())
