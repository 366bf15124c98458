"""What several subcommands share: the help layout, the model / learned-word / sampling arguments, and
loading what they name. Nothing here imports torch or diffusers at module level (`oneword --help` stays fast)."""
from __future__ import annotations

import argparse
import copy
import os

from ..errors import OnewordError


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default in its help (also for an option without help text), unless the help already
    says it or there is no value to show (None, False, an empty list: then the help explains it in words)."""

    _NO_HELP = "\0"

    def _format_action(self, action):
        if not action.help and action.option_strings and self._shows_default(action):
            action = copy.copy(action)
            action.help = self._NO_HELP
        return super()._format_action(action)

    def _get_help_string(self, action):
        if action.help == self._NO_HELP:
            return "(default: %(default)s)"
        text = action.help or ""
        return super()._get_help_string(action) if self._shows_default(action) and "default" not in text else text

    @staticmethod
    def _shows_default(action) -> bool:
        d = action.default
        return not (d is None or d is False or d is argparse.SUPPRESS or (isinstance(d, list) and not d))


def add_command(subparsers, name: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
    """A subcommand parser with the shared help layout."""
    return subparsers.add_parser(name, help=help, description=description or help[:1].upper() + help[1:] + ".",
                                 formatter_class=HelpFormatter)


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="diffusers folder, hub id (local cache) or .safetensors/.ckpt file "
                                   "(default: the embedded world model)")
    p.add_argument("--model-config", help="for a single-file checkpoint: a diffusers folder (or cached hub id) "
                                          "whose configs replace the ones oneword ships")
    p.add_argument("--prediction-type", choices=("epsilon", "v_prediction"),
                   help="for a single-file SD2.x checkpoint: what its UNet predicts (default: from the file)")
    p.add_argument("--device", help="cpu or cuda (default: cuda if available)")


def add_embeds_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--embeds", action="append", default=[],
                   help="learned embedding file (repeatable: several words in one prompt)")


def add_sampling_args(p: argparse.ArgumentParser, n_default: int) -> None:
    """The arguments of `generate` and `variations`."""
    add_embeds_arg(p)
    add_model_args(p)
    p.add_argument("-n", "--num", type=int, default=n_default, help="number of images (image i uses seed + i)")
    p.add_argument("--steps", type=int, help="sampling steps (default: the model's, else 50; world model: 25)")
    p.add_argument("--guidance", type=float,
                   help="classifier-free guidance scale (default: the model's, else 7.5; world model: 5)")
    p.add_argument("--negative", help="negative prompt")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--height", type=int, help="image height in pixels (default: the model's resolution)")
    p.add_argument("--width", type=int, help="image width in pixels (default: the model's resolution)")
    p.add_argument("--out", default="out.png", help="grid image; single images are written beside it")


def load_model_from(args):
    """The model named by --model / --model-config / --device."""
    from ..models import load_model

    return load_model(args.model, device=args.device, config=args.model_config,
                      prediction_type=getattr(args, "prediction_type", None))


def load_concepts_from(paths: list[str]) -> list:
    """Every learned word in the given embedding files, in order."""
    from ..formats import load_concepts

    return [c for path in paths for c in load_concepts(path)]


def sample_and_save(args, prompt: str) -> None:
    """`generate` and `variations`: sample args.num images of `prompt`, write the grid and each image."""
    from ..sampling import generate, save_images

    if args.num < 1:
        raise OnewordError("-n must be at least 1")
    concepts = load_concepts_from(args.embeds)
    model = load_model_from(args)
    images = generate(model, prompt, concepts, n=args.num, steps=args.steps, guidance=args.guidance,
                      seed=args.seed, negative=args.negative, height=args.height, width=args.width)
    paths = save_images(images, args.out)
    print(f"wrote {args.out} and {len(paths)} images beside it")


def quiet_libraries() -> None:
    """Silence the libraries' progress bars and advice: a command prints its own results."""
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
