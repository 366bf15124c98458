"""The one place that checks what a user can type: numbers, seeds, devices, image sizes against the memory the
device has, output paths, prompt templates, and prompts against the tokenizer that will read them.

Every check raises a one-line :class:`~oneword.errors.OnewordError` that names the argument and what is allowed.
The library calls these checks (``generate``, ``edit``, ``learn``); the command line calls the same ones before it
loads a model, so a mistake costs no waiting. ``arg(...)`` turns a number check into an argparse ``type=``.

Memory: :func:`sampling_bytes` and :func:`learning_bytes` count the largest activations a request needs from the
model's own configs (channels, blocks, latent size, batch, precision). They count what must be held at once and
leave out allocator overhead and temporary buffers, so they are a floor: a request over what the device has free
cannot run and is refused before anything is allocated; one under it may still fail, and then the device's own
out-of-memory error is reported in one line (oneword.commands.main).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import string
from pathlib import Path

from .errors import OnewordError

MAX_SEED = 2**62  # image i uses seed + i: room above it, and inside every generator's range
MAX_IMAGES = 10_000  # -n
MAX_SAMPLING_STEPS = 10_000  # a model's own limit (its training timesteps, usually 1,000) is checked with it
MAX_LEARN_STEPS = 1_000_000
MAX_BATCH = 4096
MAX_GUIDANCE = 100.0  # real use is 1-30; far beyond, the images are noise
MAX_SIDE = 16384  # pixels per side of any image oneword makes (memory decides below it)
MAX_PIXELS_ARG = 100_000  # --dilate, --feather and other pixel counts
IMAGE_EXTS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
PACKAGE_ROOT = Path(__file__).resolve().parent


# ------------------------------------------------------------------------------------------ numbers
def whole(name: str, value, lo: int | None = None, hi: int | None = None) -> int:
    """``value`` as an int in [lo, hi], else a one-line error naming ``name``."""
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise OnewordError(f"{name} must be a whole number, not {value!r}") from None
    elif isinstance(value, bool) or not isinstance(value, int):
        try:
            ok = float(value).is_integer()
        except (TypeError, ValueError, OverflowError):
            ok = False
        if not ok:
            raise OnewordError(f"{name} must be a whole number, not {value!r}")
        value = int(value)
    if lo == 0 and value < 0:
        raise OnewordError(f"{name} cannot be negative ({value}); it must be {_range(lo, hi)}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise OnewordError(f"{name} must be {_range(lo, hi)}, not {value}")
    return value


def number(name: str, value, lo: float | None = None, hi: float | None = None) -> float:
    """``value`` as a finite float in [lo, hi], else a one-line error naming ``name``."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise OnewordError(f"{name} must be a number, not {value!r}") from None
    if not math.isfinite(x):
        raise OnewordError(f"{name} must be a finite number, not {value}")
    if (lo is not None and x < lo) or (hi is not None and x > hi):
        raise OnewordError(f"{name} must be {_range(lo, hi)}, not {value}")
    return x


def seed(value, n: int = 1, name: str = "--seed") -> int:
    """A seed for image i = seed + i, i < n: a whole number in [0, MAX_SEED]."""
    return whole(name, value, 0, MAX_SEED - max(0, n - 1))


def seed_arg(name: str, value) -> int:
    """:func:`seed` in the argument order of the other checks (for :func:`arg`)."""
    return seed(value, 1, name)


def below(name: str, value, lo: float, hi: float) -> float:
    """``value`` as a finite float in [lo, hi): :func:`number` with ``hi`` itself left out."""
    x = number(name, value)
    if not lo <= x < hi:
        raise OnewordError(f"{name} must be at least {lo:g} and below {hi:g}, not {value}")
    return x


# What each of learn's settings (a LearnConfig field) may be: its check and range. learn's flags
# (oneword.commands.learn) and LearnConfig.validate, which learn and learn-many call, both read it.
LEARN_SETTINGS = {
    "steps": (whole, 1, MAX_LEARN_STEPS),
    "batch_size": (whole, 1, MAX_BATCH),
    "lr": (number, 0.0, 1e3),  # 0: nothing moves (a control run)
    "warmup": (whole, 0, MAX_LEARN_STEPS),
    "vectors": (whole, 1, 75),
    "resolution": (whole, 8, MAX_SIDE),  # None: the model's
    "save_every": (whole, 1, None),  # 0 would fail mid-run; above --steps: only the end is saved
    "preview_every": (whole, 0, MAX_LEARN_STEPS),
    "reg_weight": (number, 0.0, 1e6),
    "weight_decay": (number, 0.0, None),
    "preview_steps": (whole, 1, None),
    "val_every": (whole, 1, None),
    "val_window": (whole, 3, None),  # a slope and its error
    "val_z": (number, 0.0, None),
    "val_samples": (whole, 1, None),
    "val_t_min": (below, 0.0, 0.95),  # a fraction of the noise schedule
    "min_steps": (whole, 0, None),
    "max_bad_steps": (whole, 1, None),
}


def learn_setting(name: str):
    """An argparse ``type=`` for learn's flag of LearnConfig field ``name``."""
    return arg(*LEARN_SETTINGS[name])


def learn_settings(cfg) -> None:
    """Every setting of a LearnConfig in its range (None: a default still to come), one line for the first not."""
    for field, (check, lo, hi) in LEARN_SETTINGS.items():
        value = getattr(cfg, field)
        if value is not None:
            check(f"--{field.replace('_', '-')}", value, lo, hi)


def _range(lo, hi) -> str:
    def show(x):
        return str(x) if isinstance(x, int) else f"{x:g}"

    if lo is not None and hi is not None:
        return f"from {show(lo)} to {show(hi)}"
    if lo is not None:
        return f"at least {show(lo)}"
    return f"at most {show(hi)}"


def arg(check, *args, **kw):
    """An argparse ``type=`` for a check: ``p.add_argument("--steps", type=arg(whole, 1, 1000))``. argparse adds the
    flag's name to the message, so the check's own name is left out."""

    def convert(text: str):
        try:
            return check("value", text, *args, **kw)
        except OnewordError as e:
            raise argparse.ArgumentTypeError(str(e).removeprefix("value ")) from None

    convert.__name__ = check.__name__
    return convert


def sampling(
    n: int = 1, steps: int | None = None, guidance: float | None = None, seed_: int = 0, batch: int = 1
) -> None:
    """The numbers every sampler takes (generate, variations, edit, evaluate)."""
    whole("-n", n, 1, MAX_IMAGES)
    whole("batch", batch, 1, MAX_BATCH)
    if steps is not None:
        whole("--steps", steps, 1, MAX_SAMPLING_STEPS)
    if guidance is not None:
        number("--guidance", guidance, 0.0, MAX_GUIDANCE)
    seed(seed_, n)


def model_steps(model, steps: int) -> int:
    """Sampling steps within what the model's noise schedule has (a scheduler cannot take more)."""
    limit = int(getattr(model.scheduler.config, "num_train_timesteps", MAX_SAMPLING_STEPS))
    steps = whole("--steps", steps, 1, MAX_SAMPLING_STEPS)
    if steps > limit:
        raise OnewordError(
            f"--steps {steps} is more than this model's noise schedule has ({limit}); use at most {limit}"
        )
    return steps


# ------------------------------------------------------------------------------------------ devices
def device(spec):
    """``spec`` (None, "cpu", "cuda", "cuda:1", "mps", a torch.device) as a torch.device that exists here."""
    import torch

    if spec is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        d = torch.device(spec)
    except (RuntimeError, TypeError, ValueError):
        raise OnewordError(f"--device {spec!r} is not a device; use cpu, cuda or cuda:N (mps on a Mac)") from None
    if d.type == "cpu":
        return d
    if d.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
            raise OnewordError(f"--device {spec}: {why}; use --device cpu")
        count = torch.cuda.device_count()
        if d.index is not None and d.index >= count:
            raise OnewordError(
                f"--device {spec}: there {'is' if count == 1 else 'are'} {count} CUDA GPU(s) "
                f"here (cuda:0{f' to cuda:{count - 1}' if count > 1 else ''})"
            )
        return d
    if d.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise OnewordError(f"--device {spec}: Apple's MPS is not available here; use --device cpu")
        return d
    raise OnewordError(f"--device {spec}: oneword runs on cpu, cuda or mps, not {d.type}")


def available_bytes(dev) -> int | None:
    """Memory a new allocation on ``dev`` can have now (None where it cannot be known, e.g. MPS)."""
    import torch

    dev = torch.device(dev)
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free + torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev))
    if dev.type == "cpu":
        return host_available_bytes()
    return None


def host_available_bytes() -> int | None:
    """MemAvailable, or less under a cgroup memory limit (containers)."""
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            left = max(0, int(limit) - used)
            avail = left if avail is None else min(avail, left)
    except (OSError, ValueError):
        pass
    return avail


def fits(need: int, dev, what: str, advice: str) -> None:
    """Refuse ``what`` when it needs more than ``dev`` has free."""
    have = available_bytes(dev)
    if have is not None and need > have:
        raise OnewordError(f"{what} needs at least {_gib(need)} of memory and {dev} has {_gib(have)} free; {advice}")


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n < 2**40 else f"{n / 2**40:.1f} TiB"


# ------------------------------------------------------------------------------------------ image sizes and memory
def image_size(model, height: int | None, width: int | None) -> tuple[int, int]:
    """(height, width) to sample at: the model's resolution where None; positive multiples of the model's size
    multiple (its VAE factor times its UNet's down-sampling, ``FrozenModel.size_multiple``)."""
    f = int(getattr(model, "size_multiple", model.pipe.vae_scale_factor))
    out = []
    for name, v in (("--height", height), ("--width", width)):
        v = model.resolution if v is None else whole(name, v, 1, MAX_SIDE)
        if v % f:
            near = sorted({max(f, v // f * f), v // f * f + f})  # the multiples either side (f itself below f)
            raise OnewordError(
                f"{name} must be a multiple of {f} for this model (its VAE factor times its UNet's "
                f"down-sampling), e.g. {' or '.join(map(str, near))}, not {v}"
            )
        out.append(v)
    return out[0], out[1]


def _element(dtype) -> int:
    import torch

    return torch.empty((), dtype=dtype).element_size()


def _unet_levels(unet, height: int, width: int, f: int):
    """(channels, latent positions, blocks, has attention) for each level of the UNet at this image size."""
    cfg = unet.config
    chans = list(cfg.block_out_channels)
    layers = cfg.layers_per_block
    layers = list(layers) if isinstance(layers, (list, tuple)) else [layers] * len(chans)
    h, w = math.ceil(height / f), math.ceil(width / f)
    out = []
    for i, (c, kind) in enumerate(zip(chans, cfg.down_block_types)):
        out.append((c, math.ceil(h / 2**i) * math.ceil(w / 2**i), layers[i], "Attn" in kind))
    return out


def sampling_bytes(model, height: int, width: int, batch: int, guided: bool = True) -> int:
    """Device memory one sampling batch needs at least: the UNet's skip connections and its widest level's working
    tensors (twice the batch with guidance), or the VAE decoder at full resolution, whichever is more."""
    pipe, f = model.pipe, int(model.pipe.vae_scale_factor)
    levels = _unet_levels(pipe.unet, height, width, f)
    c0, t0, _, attn0 = levels[0]
    skips = sum((layers + 1) * c * t for c, t, layers, _ in levels)
    unet = batch * (2 if guided else 1) * (skips + (16 if attn0 else 6) * c0 * t0) * _element(model.dtype)
    vae_c = list(pipe.vae.config.block_out_channels)
    full_res = vae_c[1] if len(vae_c) > 1 else vae_c[0]  # the last up block's input, upsampled to full size
    vae = batch * 3 * full_res * height * width * _element(pipe.vae.dtype)
    return max(unet, vae)


def learning_bytes(model, resolution: int, batch: int, n_photos: int = 1, grad_checkpointing: bool = False) -> int:
    """Memory a learning run needs at least: the photos at `resolution` (and mirrors) as float pixels, then the larger
    of the VAE encoding them (8 at a time) and one training step's activations kept for the backward pass."""
    pipe, f = model.pipe, int(model.pipe.vae_scale_factor)
    r2 = resolution * resolution
    pixels = 2 * n_photos * 3 * r2 * 4
    vae_c0 = list(pipe.vae.config.block_out_channels)[0]
    encode = min(8, 2 * n_photos) * 4 * vae_c0 * r2 * _element(pipe.vae.dtype)
    per_level = 2 if grad_checkpointing else None
    kept = 0
    for c, t, layers, attn in _unet_levels(pipe.unet, resolution, resolution, f):
        kept += (2 * layers + 1) * c * t * (per_level or (8 + (24 if attn else 0)))
    step = batch * kept * _element(model.dtype)
    return pixels + max(encode, step)


def sampling_fits(model, height: int, width: int, batch: int, guided: bool = True, what: str = "sampling") -> None:
    need = sampling_bytes(model, height, width, batch, guided)
    advice = "use a smaller --height/--width" + (" or fewer images at once" if batch > 1 else "")
    fits(need, model.device, f"{what} {batch} image(s) of {width}x{height}", advice)


def learning_fits(model, resolution: int, batch: int, n_photos: int, grad_checkpointing: bool = False) -> None:
    whole("--resolution", resolution, 8, MAX_SIDE)
    need = learning_bytes(model, resolution, batch, n_photos, grad_checkpointing)
    advice = "use a smaller --resolution or --batch-size" + ("" if grad_checkpointing else " (or --grad-checkpointing)")
    fits(need, model.device, f"learning at {resolution}x{resolution} px with --batch-size {batch}", advice)


# ------------------------------------------------------------------------------------------ prompts
WORD_PATTERN = re.compile(r"<[^<>\s]+>")


def template(text: str, name: str = "--template") -> str:
    """A prompt template with exactly one ``{}`` for the word (``{{``/``}}`` for literal braces)."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
    except ValueError as e:
        raise OnewordError(f"{name} {text!r}: {e} (write {{}} once for the word, {{{{ and }}}} for braces)") from None
    if fields != [""]:
        raise OnewordError(
            f"{name} {text!r} must hold {{}} exactly once, where the word goes "
            f"(found {len(fields)} field(s){': ' + ', '.join('{' + f + '}' for f in fields if f) if any(fields) else ''})"
        )
    return text


def learned_tokens(tokenizer) -> dict[str, int]:
    """{word: vectors} for every word added to ``tokenizer`` (its vector tokens ``w_1``... counted in ``w``)."""
    specials = {t.lower() for t in getattr(tokenizer, "all_special_tokens", [])}
    added = [t for t in tokenizer.get_added_vocab() if t.lower() not in specials]
    lowered = {t.lower() for t in added}
    words = {}
    for t in added:
        head, _, tail = t.rpartition("_")
        if head and tail.isdigit() and head.lower() in lowered:
            continue
        n = 1
        while f"{t}_{n}".lower() in lowered:
            n += 1
        words[t] = n
    return words


def prompt(tokenizer, text: str, name: str = "prompt") -> None:
    """The prompt encoder's check, before a prompt is encoded (``text`` already spelled out for multi-vector words):

    * a ``<word>`` that no loaded embedding defines is refused (it would be read as the letters of its name);
    * a prompt longer than the tokenizer reads is refused when a learned word's vector would be cut off, and
      warned about otherwise (the words past the limit are dropped, as every Stable Diffusion tool does)."""
    import warnings

    words = learned_tokens(tokenizer)
    known = {t.lower() for t in tokenizer.get_added_vocab()}
    unknown = sorted(
        {m for m in WORD_PATTERN.findall(text) if m.lower() not in known and m not in tokenizer.get_vocab()}
    )
    if unknown:
        loaded = ", ".join(sorted(words)) or "none"
        raise OnewordError(
            f"{name} uses {', '.join(unknown)}, which no loaded embedding defines (loaded: {loaded}); "
            "pass its file with --embeds"
        )
    ids = tokenizer(text).input_ids
    limit = tokenizer.model_max_length
    if len(ids) <= limit:
        return
    lost_ids = set(ids[limit - 1 : -1])  # truncation keeps limit - 1 tokens and the end token
    lost = [
        w
        for w, n in words.items()
        if lost_ids & set(tokenizer.convert_tokens_to_ids([w] + [f"{w}_{i}" for i in range(1, n)]))
    ]
    if lost:
        raise OnewordError(
            f"{name} is {len(ids)} tokens long and this model reads {limit}, so the learned word "
            f"{', '.join(lost)} would be cut off; shorten the {name} or put the word earlier"
        )
    warnings.warn(
        f"{name} is {len(ids)} tokens long; this model reads {limit}, so its end is ignored: "
        f"{tokenizer.decode(ids[limit - 1 : -1])!r}",
        stacklevel=2,
    )


def vectors_fit(tokenizer, templates: list[str], vectors: int) -> None:
    """Refuse a word of ``vectors`` vectors that would not fit whole into every training prompt."""
    longest = max(len(tokenizer(t.format("a")).input_ids) for t in templates)  # the word as one token
    room = tokenizer.model_max_length - longest + 1
    if vectors > room:
        raise OnewordError(
            f"--vectors {vectors} does not fit: this model reads {tokenizer.model_max_length} tokens "
            f"and its longest training prompt leaves room for {room} vector(s); use --vectors {max(1, room)} "
            "or fewer"
        )


def learning(model, cfg, n_photos: int) -> None:
    """Everything about a learning run that needs the model, before any file is written: the token is free, the
    word's vectors fit the training prompts, and the photos and one step fit in memory."""
    from .install import check_token_free
    from .templates import templates_for

    for tokenizer in (model.tokenizer, getattr(model.pipe, "tokenizer_2", None)):
        if tokenizer is not None:
            check_token_free(tokenizer, cfg.token, cfg.vectors)
    vectors_fit(model.tokenizer, templates_for(cfg.property), cfg.vectors)
    if cfg.preview_every and cfg.preview_prompts:  # previews: prompts that name the word, checked as generate's
        import copy

        from .concept import vector_token_names
        from .install import expand_prompt

        tokenizer = copy.deepcopy(model.tokenizer)
        tokenizer.add_tokens(vector_token_names(cfg.token, cfg.vectors))
        for text in cfg.preview_prompts:
            prompt(tokenizer, expand_prompt(text, {cfg.token: cfg.vectors}), "--preview-prompt")
    learning_fits(model, cfg.resolution or model.resolution, cfg.batch_size, n_photos, cfg.grad_checkpointing)


def example_word(tokenizer, candidates=("cat", "dog", "object", "ring", "circle", "star", "thing")) -> str:
    """A common word this tokenizer reads as one piece, for a message's example (the world model knows no cat)."""
    for w in candidates:
        if len(tokenizer(w, add_special_tokens=False).input_ids) == 1:
            return w
    return candidates[0]


# ------------------------------------------------------------------------------------------ paths
def inside_package(path) -> bool:
    """True when ``path`` lies inside the installed oneword package."""
    try:
        return Path(os.path.realpath(Path(path).expanduser())).is_relative_to(PACKAGE_ROOT)
    except (OSError, ValueError, RuntimeError):
        return False


def _not_a_loop(path: Path, name: str) -> None:
    if path.is_symlink():
        try:
            path.resolve(strict=True)
        except (OSError, RuntimeError):
            raise OnewordError(
                f"{name} {path} is a symlink that leads nowhere (or in a loop); remove it or choose another path"
            ) from None


def _parent_ok(path: Path, name: str) -> None:
    """The first existing folder above ``path`` is a folder that can be written to."""
    for up in [path.parent, *path.parent.parents]:
        if up.is_symlink():
            _not_a_loop(up, name)
        if up.exists():
            if not up.is_dir():
                raise OnewordError(f"{name} {path}: {up} is a file, not a folder")
            if not os.access(up, os.W_OK | os.X_OK):
                raise OnewordError(f"{name} {path}: cannot write in {up} (permission denied)")
            return


def output_folder(path, name: str = "--out", into_package: bool = False) -> Path:
    """A folder oneword may create or write into: not a file, not a dangling or looping symlink, writable, and
    not inside the installed package unless ``into_package``."""
    path = Path(path).expanduser()
    _not_a_loop(path, name)
    if path.exists() and not path.is_dir():
        raise OnewordError(f"{name} {path} is a file, not a folder")
    if path.exists() and not os.access(path, os.W_OK | os.X_OK):
        raise OnewordError(f"{name} {path}: cannot write in it (permission denied)")
    _parent_ok(path, name)
    if inside_package(path) and not into_package:
        raise OnewordError(f"{name} {path} is inside the installed oneword package; write somewhere else")
    return path


def output_image(path, name: str = "--out", overwrite: bool = False, inputs=(), also=()) -> Path:
    """An image file to write: its extension says the format (.png, .jpg, .webp); see :func:`output_file`."""
    text = str(path)
    path = Path(path).expanduser()
    if text.endswith(("/", os.sep)) or path.is_dir():
        raise OnewordError(f"{name} {text} is a folder; give a file name such as {path / 'out.png'}")
    if path.suffix.lower() not in IMAGE_EXTS:
        raise OnewordError(
            f"{name} {text}: images are written as .png, .jpg or .webp "
            f"(the extension picks the format), not {path.suffix or 'no extension'}"
        )
    return output_file(path, name, overwrite, inputs, also)


def output_file(path, name: str = "--out", overwrite: bool = False, inputs=(), also=()) -> Path:
    """A file to write (with ``also``, the files written beside it): not a folder or a broken symlink, in a
    writable folder outside the installed package; an existing one is replaced only with ``overwrite``, and never
    when it is one of ``inputs``."""
    text = str(path)
    path = Path(path).expanduser()
    if text.endswith(("/", os.sep)) or path.is_dir():
        raise OnewordError(f"{name} {text} is a folder; give a file name")
    for p in (path, *map(Path, also)):
        _not_a_loop(p, name)
        for i in inputs:
            if _same_file(p, i):
                raise OnewordError(f"{name} {p} is the input {i}; choose another output (the input is kept)")
    _parent_ok(path, name)
    if inside_package(path):
        raise OnewordError(f"{name} {path} is inside the installed oneword package; write somewhere else")
    if not overwrite:
        taken = [str(p) for p in (path, *map(Path, also)) if p.exists() or p.is_symlink()]
        if taken:
            what = (
                f"{taken[0]} and {len(taken) - 1} more file(s) beside it already exist"
                if len(taken) > 1
                else f"{taken[0]} already exists"
            )
            raise OnewordError(
                f"{name}: {what}; pass --overwrite to replace {'them' if len(taken) > 1 else 'it'}, "
                "or choose another name"
            )
    return path


def _same_file(a, b) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)
