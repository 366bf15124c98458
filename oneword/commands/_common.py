"""What several subcommands share: the help layout, the model / learned-word / sampling arguments, and
loading what they name. Nothing here imports torch or diffusers at module level (`oneword --help` stays fast)."""

from __future__ import annotations

import argparse
import copy
import os
import time

from .. import validate as check


class Parser(argparse.ArgumentParser):
    """argparse, with a mistake raised as an OnewordError: one line (`error: ...`, exit 2) like every other."""

    def error(self, message):
        from ..errors import OnewordError

        raise OnewordError(f"{message} (see {self.prog} --help)")


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
    return subparsers.add_parser(
        name, help=help, description=description or help[:1].upper() + help[1:] + ".", formatter_class=HelpFormatter
    )


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        help="diffusers folder, hub id (local cache) or .safetensors/.ckpt file (default: the embedded world model)",
    )
    p.add_argument(
        "--model-config",
        help="for a single-file checkpoint: a diffusers folder (or cached hub id) "
        "whose configs replace the ones oneword ships",
    )
    p.add_argument(
        "--prediction-type",
        choices=("epsilon", "v_prediction"),
        help="for a single-file SD2.x checkpoint: what its UNet predicts (default: from the file)",
    )
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda if available)")


def add_embeds_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--embeds", action="append", default=[], help="learned embedding file (repeatable: several words in one prompt)"
    )


def add_num_arg(p: argparse.ArgumentParser, default: int, help: str) -> None:
    """-n/--num: how many images (each its own seed)."""
    p.add_argument("-n", "--num", type=check.arg(check.whole, 1, check.MAX_IMAGES), default=default, help=help)


def add_sampling_args(p: argparse.ArgumentParser, n_default: int) -> None:
    """The arguments of `generate` and `variations`."""
    add_embeds_arg(p)
    add_model_args(p)
    add_num_arg(p, n_default, "number of images (image i uses seed + i)")
    add_steps_guidance(p, "sampling steps")
    p.add_argument("--negative", help="negative prompt")
    p.add_argument("--seed", type=check.arg(check.seed_arg), default=0)
    p.add_argument(
        "--height",
        type=check.arg(check.whole, 1, check.MAX_SIDE),
        help="image height in pixels: a multiple of 64 for Stable Diffusion, 8 for the world model "
        "(default: the model's resolution)",
    )
    p.add_argument(
        "--width",
        type=check.arg(check.whole, 1, check.MAX_SIDE),
        help="image width in pixels, as --height (default: the model's resolution)",
    )
    p.add_argument(
        "--out", default="out.png", help="grid image, .png/.jpg/.webp; the images go beside it as NAME_00, ..."
    )
    add_overwrite_arg(p)


def add_steps_guidance(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--steps",
        type=check.arg(check.whole, 1, check.MAX_SAMPLING_STEPS),
        help=f"{what} (default: the model's, else 50; world model: 25)",
    )
    p.add_argument(
        "--guidance",
        type=check.arg(check.number, 0.0, check.MAX_GUIDANCE),
        help="classifier-free guidance scale (default: the model's, else 7.5; world model: 5)",
    )


def add_overwrite_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --out and the images beside it if they exist (and remove older NAME_NN images "
        "beyond -n); without it an existing file is never replaced",
    )


def numbered(out, i: int):
    return out.with_name(f"{out.stem}_{i:02d}{out.suffix}")


def stale_numbered(out, n: int) -> list:
    """Older OUT's NAME_NN images beyond the first n (a rerun with a smaller -n)."""
    import re

    pattern = re.compile(rf"{re.escape(out.stem)}_(\d{{2,}}){re.escape(out.suffix)}")
    if not out.parent.is_dir():
        return []
    return sorted(p for p in out.parent.iterdir() if (m := pattern.fullmatch(p.name)) and int(m.group(1)) >= n)


def check_image_out(args, n: int, inputs=(), grid: bool = True):
    """Refuse an --out that would replace a file the user did not ask to replace (or an input); returns the Path."""
    from pathlib import Path

    out = Path(args.out)
    beside = [numbered(out, i) for i in range(n)] if grid else []
    return check.output_image(args.out, overwrite=args.overwrite, inputs=inputs, also=beside)


def write_images(images, out, overwrite: bool, grid: bool = True) -> str:
    """Write the grid at OUT and each image beside it (or the one image at OUT with grid=False); with overwrite, also
    remove older NAME_NN images beyond these. Returns what was written, in words."""
    from ..safeio import atomic_save_image
    from ..sampling import save_images

    if not grid:
        atomic_save_image(out, images[0], replace=overwrite)
        return str(out)
    paths = save_images(images, out, replace=overwrite)
    removed = 0
    if overwrite:
        for p in stale_numbered(out, len(images)):
            p.unlink()
            removed += 1
    names = paths[0].name if len(paths) == 1 else f"{paths[0].name} ... {paths[-1].name}"
    return f"{out} (grid) and {names} beside it" + (
        f" (removed {removed} older image(s) beyond -n {len(images)})" if removed else ""
    )


def load_model_from(args):
    """The model named by --model / --model-config / --device (the device checked before anything loads)."""
    from ..models import load_model

    device = check.device(args.device)
    return load_model(
        args.model, device=device, config=args.model_config, prediction_type=getattr(args, "prediction_type", None)
    )


def load_concepts_from(paths: list[str]) -> list:
    """Every learned word in the given embedding files, in order."""
    from ..formats import load_concepts

    return [c for path in paths for c in load_concepts(path)]


def sample_and_save(args, prompt: str, concepts=None) -> None:
    """`generate` and `variations`: sample args.num images of `prompt`, write the grid and each image."""
    from ..sampling import generate

    check.sampling(args.num, args.steps, args.guidance, args.seed)
    out = check_image_out(args, args.num)
    concepts = load_concepts_from(args.embeds) if concepts is None else concepts
    model = load_model_from(args)
    started = time.perf_counter()
    images = generate(
        model,
        prompt,
        concepts,
        n=args.num,
        steps=args.steps,
        guidance=args.guidance,
        seed=args.seed,
        negative=args.negative,
        height=args.height,
        width=args.width,
    )
    seconds = time.perf_counter() - started
    print(f"wrote {write_images(images, out, args.overwrite)}: {_count(len(images), 'image')} in {seconds:.1f} s")


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'s' if n != 1 else ''}"


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
