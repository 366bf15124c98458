"""Textual inversion: find the word vector(s) v* = argmin_v E ||eps - eps_theta(z_t, t, c_theta(y(v)))||^2.

The paper's method, read top to bottom in `learn`: a frozen model, new placeholder token(s) whose input
embeddings are the only trainable parameters (initialised from an init word), a random CLIP-ImageNet
template per sample, the latent-diffusion loss on the model's own noise schedule, AdamW. What we add for speed
and safety is bookkeeping around it: cached VAE posteriors (data.py), a step replayed from a CUDA graph
(cuda_graph.py), a non-finite-step guard (guard.py), checkpoints that resume exactly (run.py) and a cheap
validation loss for early stopping (early_stopping.py). Between check points (validations, checkpoints) the loop
never reads a device value on the host, so a GPU never waits for Python.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F
from torch import nn

from . import validate
from .concept import Concept, vector_token_names
from .cuda_graph import loss_runner
from .data import encode_photos, read_photos
from .early_stopping import EarlyStopping, ValidationBatch
from .errors import OnewordError
from .guard import Guard
from .init_words import init_vectors, start  # noqa: F401  (init_vectors: the engine's start, re-exported)
from .install import check_token_free
from .run import CtrlC, Run
from .safeio import remove_stale_temporaries, run_lock
from .sampling import preview_grid
from .templates import encode_templates, templates_for  # noqa: F401

DEFAULT_INIT = {"object": "object", "style": "painting"}
# LearnConfig's settings that a model may ship its own default for (None in a LearnConfig: the model's, else these)
BASE_DEFAULTS = {"steps": 2000, "batch_size": 4, "lr": 5e-3, "val_every": 25, "val_window": 16, "min_steps": 200}


@dataclass
class LearnConfig:
    token: str = "<concept>"
    init: str | None = None  # None: "object" / "painting" (or the model's shipped default); "auto": words
    # chosen from the photos; "encoder": the photo encoder (oneword.init_words)
    init_mode: str = "word"  # "word": the init words' input embeddings (the paper); "cross": CrossInit
    init_clip: str | None = None  # --init auto's CLIP judge (None: the world judge for the world model)
    init_choice: dict | None = None  # how --init auto / encoder / cross chose the start (set by learn; run.json)
    vectors: int = 1
    property: str = "object"
    # None (steps, batch_size, lr, val_every, val_window, min_steps): the model's shipped default (the world
    # model's, or a folder's oneword.json), else BASE_DEFAULTS; `learn` fills them in (`for_model`)
    steps: int | None = None  # an upper bound: early stopping usually ends sooner (2000)
    batch_size: int | None = None  # (4)
    lr: float | None = None  # AdamW, constant after warm-up (the paper's schedule) (5e-3)
    warmup: int = 0
    weight_decay: float = 0.01  # torch AdamW's default, as the official code and diffusers use
    reg_weight: float = 0.0  # official code's embedding_reg_weight: L2 pull toward the init vector
    resolution: int | None = None  # None: the model's native resolution
    seed: int = 0
    save_every: int = 250
    preview_every: int = 0
    preview_prompts: tuple[str, ...] = ()
    preview_steps: int = 25
    early_stop: bool = True
    val_every: int | None = None  # (25)
    val_window: int | None = None  # (16) stop when the last val_window validation losses have stopped falling:
    val_z: float = 2.0  # their least-squares slope is no longer val_z standard errors below zero
    val_samples: int = 16  # size of the fixed validation batch (photos in turn)
    val_t_min: float = 0.05  # its timesteps are spread over [val_t_min, 0.95] of the schedule
    min_steps: int | None = None  # (200)
    grad_checkpointing: bool = False  # trade compute for memory (fits SD1.5 learning in ~4 GB)
    cuda_graph: bool = True  # on CUDA: replay each step from a CUDA graph (cuda_graph.py; not with checkpointing)
    max_bad_steps: int = 10  # consecutive non-finite steps before rolling back

    @classmethod
    def with_defaults(cls, model, **overrides) -> LearnConfig:
        """Global defaults, then the model's shipped defaults, then the user's explicit values."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in model.defaults.get("learn", {}).items() if k in names}
        values.update({k: v for k, v in overrides.items() if v is not None})
        cfg = cls(**values).for_model(model)
        cfg.preview_prompts = tuple(cfg.preview_prompts)
        return cfg

    def for_model(self, model) -> LearnConfig:
        """A copy with every setting left as None filled in: the model's shipped default, else BASE_DEFAULTS.
        So `LearnConfig(token=..., init=...)` learns on the world model with the world's settings, as the CLI does."""
        shipped = model.defaults.get("learn", {})
        unset = {k: shipped.get(k, v) for k, v in BASE_DEFAULTS.items() if getattr(self, k) is None}
        return replace(self, **unset) if unset else self

    def init_word(self) -> str:
        return self.init or DEFAULT_INIT[self.property]

    def validate(self) -> None:
        """Refuse settings that cannot run, in one line each, before any work (a zero --save-every would
        otherwise fail mid-run, a negative --steps silently learn nothing): the ranges learn's flags have
        (validate.LEARN_SETTINGS), so Python and learn-many get the command line's limits and messages."""
        validate.learn_settings(self)


def learn(model, photos, cfg: LearnConfig, out_dir, resume: bool = False, progress: bool = True) -> Concept:
    """Learn `cfg.token` from photos (a folder, paths or PIL images). Writes into out_dir:
    learned_embeds.safetensors, checkpoint.safetensors, run.json (run.py), previews/.
    Settings left as None take the model's shipped defaults (`LearnConfig.for_model`)."""
    cfg = cfg.for_model(model)
    cfg.validate()
    if cfg.resolution:
        model.check_size(cfg.resolution)
    images = read_photos(photos)
    validate.learning(model, cfg, len(images))  # the word fits the prompts, the run fits in memory: before any file
    with run_lock(out_dir):
        remove_stale_temporaries(out_dir)
        cache = encode_photos(model, images, cfg.resolution or model.resolution)  # VAE posteriors, once
        noise_schedule = _training_schedule(model)
        cfg, init = start(model, cfg, photos)  # the init words' vectors; --init auto / encoder, --init-mode cross
        vectors = nn.Parameter(init.clone().to(model.device))  # the only trainable parameters: the new word's rows
        # capturable: AdamW's step count on the GPU, so that a skipped step is undone there (guard.py)
        opt = torch.optim.AdamW([vectors], lr=cfg.lr, weight_decay=cfg.weight_decay, capturable=vectors.is_cuda)
        stopper = EarlyStopping(cfg)
        run = Run(out_dir, cfg, model, photos, vectors, opt, stopper)  # the folder, step counter, batch generator
        guard = run.guard = Guard(model.device)  # its runs of bad steps are part of the checkpoint
        if resume:
            run.resume()
        scaler = torch.amp.GradScaler("cuda", enabled=model.dtype == torch.float16)
        dev, n_train = model.device, noise_schedule.config.num_train_timesteps
        bar = _progress(cfg.steps, run.step, progress)
        ctrl_c = CtrlC()  # from here on, Ctrl-C stops at a whole step, saves a checkpoint and says how to resume
        try:
            if cfg.grad_checkpointing:
                model.unet.enable_gradient_checkpointing()
            run.write_json("running")
            with learned_word(model, cfg.token, vectors) as tokenizer, _tuned_kernels(dev):
                ids = encode_templates(tokenizer, cfg.property, cfg.token, cfg.vectors).to(dev)
                init_on_dev = init.to(dev)

                def sample_loss(rows, posterior_noise, noise, timesteps, prompt_ids):  # the paper's loss on samples
                    latents = cache.sample(rows, posterior_noise)
                    return diffusion_loss(
                        model, noise_schedule, latents, noise, timesteps, prompt_ids, cache.sizes[rows]
                    )

                def batch_loss(rows, templates, posterior_noise, noise, timesteps):  # a training batch's loss
                    loss = sample_loss(rows, posterior_noise, noise, timesteps, ids[templates])
                    if cfg.reg_weight:
                        loss = loss + cfg.reg_weight * (vectors - init_on_dev).pow(2).sum(-1).mean()
                    return loss

                def draw(g: torch.Generator) -> Batch:
                    return draw_batch(g, len(cache), len(ids), cache.mean.shape[1:], n_train, cfg.batch_size)

                graph = cfg.cuda_graph and dev.type == "cuda" and not cfg.grad_checkpointing
                example = batch_inputs(draw(torch.Generator().manual_seed(cfg.seed + 1)), dev)
                loss_and_grad = loss_runner(batch_loss, [vectors], example, scale=scaler.scale, graph=graph)
                validation = ValidationBatch(cache, ids, cfg, n_train, sample_loss, graph=graph)
                started, first_step = time.perf_counter(), run.step
                while run.step < cfg.steps and not stopper.stopped:
                    ctrl_c.between_steps()  # Ctrl-C during the last step (or its check point) stops here
                    batch = draw(run.rng)  # all of this step's randomness, from the run's one generator
                    _set_lr(opt, cfg, run)  # warm-up, then constant; halved by each roll-back
                    # forward and backward: this batch's loss, its gradient (scaled for fp16) into vectors.grad
                    loss = loss_and_grad(**batch_inputs(batch, dev))
                    scaler.unscale_(opt)  # fp16: the gradient back to its true size (otherwise nothing)
                    # the AdamW update, undone on the device if the loss or gradient is not finite (no host sync)
                    with guard.kept_if_finite(loss, opt, vectors):
                        opt.step()
                    scaler.update()
                    run.step += 1
                    bar.update(1)
                    if not _check_point(cfg, run.step):
                        continue  # between check points the host never waits for the device
                    skipped, bad_in_row, last_loss = guard.read()  # the one host read: non-finite steps, the loss
                    run.skipped += skipped
                    if bad_in_row >= cfg.max_bad_steps:  # diverging: back to the last checkpoint at half the lr
                        run.roll_back()
                        guard.forget_runs()
                        continue
                    val_loss = validation.loss() if stopper.due(run.step) else None
                    if val_loss is not None:  # early stop: once the fixed batch's loss has stopped falling
                        stopper.update(run.step, val_loss)
                    bar.set_postfix(loss=f"{last_loss:.4f}", refresh=False)
                    run.record_progress(last_loss, val_loss)  # a line of progress.jsonl (the UI's curves)
                    if cfg.preview_every and run.step % cfg.preview_every == 0:  # pictures of the word so far
                        preview = run.out / "previews" / f"step_{run.step:06d}.png"
                        preview_grid(
                            model,
                            tokenizer,
                            preview,
                            cfg.token,
                            cfg.vectors,
                            cfg.property,
                            cfg.preview_prompts,
                            cfg.preview_steps,
                            cfg.seed,
                        )
                    if run.step % cfg.save_every == 0 or run.step >= cfg.steps or stopper.stopped:
                        run.save("running")  # checkpoint: a kill from here on resumes from this step
                elapsed = time.perf_counter() - started
        except KeyboardInterrupt:
            ctrl_c.stopped = True  # (also when the KeyboardInterrupt came from elsewhere)
            resume = f"Resume with: oneword learn --resume {run.out}"
            if not ctrl_c.whole:  # a second Ctrl-C inside a step: its state is half updated, not saved
                if run.saved_step is None:
                    raise OnewordError(
                        f"interrupted during step {run.step + 1}, before the first checkpoint; nothing to resume"
                    ) from None
                raise OnewordError(
                    f"interrupted during step {run.step + 1}; the checkpoint of step {run.saved_step} is kept. {resume}"
                ) from None
            run.skipped += guard.take_skipped()
            run.save("interrupted")  # Ctrl-C loses nothing
            raise OnewordError(f"interrupted at step {run.step}; checkpoint saved. {resume}") from None
        finally:
            ctrl_c.restore()
            bar.close()
            if cfg.grad_checkpointing:
                model.unet.disable_gradient_checkpointing()
        rate = (run.step - first_step) * cfg.batch_size / max(elapsed, 1e-9)
        # save: the final word, and in run.json how the run ended, its speed and which engine ran
        return run.save(
            "early_stopped" if stopper.stopped else "done",
            rate=rate,
            elapsed=elapsed,
            engine=_engine(loss_and_grad, validation),
        )


# ---------------------------------------------------------------------------- the pieces of `learn`, in order


def _training_schedule(model):
    """The model's own noise schedule (betas, prediction type) as a DDPM scheduler for add_noise/get_velocity."""
    from diffusers import DDPMScheduler

    schedule = DDPMScheduler.from_config(model.scheduler.config)
    # on the model's device now: add_noise moves it there on its first call, a blocking copy inside the first step
    schedule.alphas_cumprod = schedule.alphas_cumprod.to(model.device)
    return schedule


@contextmanager
def learned_word(model, token: str, vectors: torch.Tensor):
    """Temporarily give the model a word whose vectors are `vectors`; yields a tokenizer that knows it.
    The model's own tokenizer and weights are left untouched."""
    with learned_words(model, [(token, vectors)]) as tokenizer:
        yield tokenizer


@contextmanager
def learned_words(model, words):
    """learned_word for several words at once: `words` is a list of (token, vectors) pairs; their rows are
    appended after the vocabulary in order (tokens `tok, tok_1, ...` as diffusers names them). Every text
    encoder of the model's family gets the word (its columns of the vectors, oneword.families); the yielded
    tokenizer is the family's (one tokenizer, or one per encoder used as one)."""
    import copy

    encoders = model.family.encoders(model.pipe)
    width = sum(e.width for e in encoders)
    tokenizers = [copy.deepcopy(e.tokenizer) for e in encoders]
    first_ids = [len(t) for t in tokenizers]
    tables = []
    for token, vectors in words:
        if vectors.shape[-1] != width:
            raise OnewordError(
                f"{token}: vectors are {vectors.shape[-1]} wide but this model's text encoder is "
                f"{width} wide (the word was learned for another model)"
            )
        names = vector_token_names(token, len(vectors))
        for tokenizer in tokenizers:
            check_token_free(tokenizer, token, len(vectors))
            if tokenizer.add_tokens(names) != len(names):
                raise OnewordError(f"token {token!r} is already a word of this model's vocabulary (or given twice)")
        tables.append(vectors)
    originals = [e.text_encoder.get_input_embeddings() for e in encoders]
    # one word: its own tensor (the training loop's Parameter, so gradients and updates reach it)
    table = tables[0] if len(tables) == 1 else torch.cat(tables).to(originals[0].weight.device)
    for e, base, first_id in zip(encoders, originals, first_ids):
        columns = None if len(encoders) == 1 else e.columns
        e.text_encoder.set_input_embeddings(LearnedTokenEmbedding(base, first_id, table, columns))
    try:
        yield model.family.tokenizer_for(tokenizers)
    finally:
        for e, base in zip(encoders, originals):
            e.text_encoder.set_input_embeddings(base)


class LearnedTokenEmbedding(nn.Module):
    """The text encoder's frozen token embedding, except that ids >= first_id read a small trainable table.
    The 49k-row vocabulary is never copied, optimised or restored. `columns`: this encoder's part of a word
    learned in several encoders at once (SDXL's clip_l and clip_g side by side)."""

    def __init__(self, base: nn.Embedding, first_id: int, vectors: torch.Tensor, columns: slice | None = None):
        super().__init__()
        self.base, self.first_id, self.vectors, self.columns = base, first_id, vectors, columns

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        is_new = ids >= self.first_id
        out = self.base(ids.masked_fill(is_new, 0))
        vectors = self.vectors if self.columns is None else self.vectors[:, self.columns]
        learned = vectors.to(out.dtype)[(ids - self.first_id).clamp(0, len(vectors) - 1)]
        return torch.where(is_new.unsqueeze(-1), learned, out)


def diffusion_loss(model, noise_schedule, latents, noise, timesteps, ids, sizes=None, groups: int = 1) -> torch.Tensor:
    """The latent-diffusion objective on the model's own schedule and prediction type. `groups` > 1: the batch is
    that many equal groups (words learned side by side, oneword.many) and the result is each group's mean loss.
    The prompt's conditioning is the model family's (SD: the text encoder's last hidden state; SDXL: both encoders and the
    photos' `sizes`, see oneword.families)."""
    noisy = noise_schedule.add_noise(latents, noise, timesteps)
    if noise_schedule.config.prediction_type == "v_prediction":
        target = noise_schedule.get_velocity(latents, noise, timesteps)
    elif noise_schedule.config.prediction_type == "epsilon":
        target = noise
    else:
        raise OnewordError(f"unsupported prediction_type {noise_schedule.config.prediction_type!r}")
    cond = model.family.unet_conditioning(model, ids, sizes)
    pred = model.unet(noisy.to(model.dtype), timesteps, **cond).sample
    if groups > 1:  # one mean loss per group, each the loss of that group alone
        return torch.stack([F.mse_loss(p, t) for p, t in zip(pred.float().chunk(groups), target.float().chunk(groups))])
    return F.mse_loss(pred.float(), target.float())


@dataclass
class Batch:
    rows: torch.Tensor
    templates: torch.Tensor
    posterior_noise: torch.Tensor
    noise: torch.Tensor
    timesteps: torch.Tensor


def draw_batch(g: torch.Generator, n_rows: int, n_templates: int, shape, n_train_steps: int, b: int) -> Batch:
    """All randomness of one step, from one CPU generator, so a checkpointed generator resumes exactly."""
    return Batch(
        rows=torch.randint(0, n_rows, (b,), generator=g),
        templates=torch.randint(0, n_templates, (b,), generator=g),
        posterior_noise=torch.randn((b, *shape), generator=g),
        noise=torch.randn((b, *shape), generator=g),
        timesteps=torch.randint(0, n_train_steps, (b,), generator=g),
    )


def batch_inputs(b: Batch, device) -> dict:
    """The batch on `device`. To a GPU through pinned memory without blocking: a plain .to() would wait until the
    GPU had finished the previous step, instead of drawing the next batch while it runs."""
    tensors = {k: getattr(b, k) for k in ("rows", "templates", "posterior_noise", "noise", "timesteps")}
    if torch.device(device).type != "cuda":
        return {k: v.to(device) for k, v in tensors.items()}
    return {k: v.pin_memory().to(device, non_blocking=True) for k, v in tensors.items()}


@contextmanager
def _tuned_kernels(device):
    """On CUDA every step has the same shapes, so cuDNN may time its convolution algorithms once and keep the
    fastest (the setting benchmarks/speed.py measures); the process's own setting comes back afterwards."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = before or torch.device(device).type == "cuda"
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def _set_lr(opt, cfg: LearnConfig, run: Run) -> None:
    """Linear warm-up over `cfg.warmup` steps, then constant (the paper's schedule), scaled down by roll-backs."""
    warm = min(1.0, (run.step + 1) / cfg.warmup) if cfg.warmup else 1.0
    for group in opt.param_groups:
        group["lr"] = cfg.lr * warm * run.lr_scale


def _check_point(cfg: LearnConfig, step: int) -> bool:
    """Steps after which the loop reads the device (non-finite counts, the loss) and may validate, preview, save."""
    return (
        step % cfg.val_every == 0
        or step % cfg.save_every == 0
        or step >= cfg.steps
        or bool(cfg.preview_every and step % cfg.preview_every == 0)
    )


def _progress(total: int, start: int, enabled: bool):
    if not enabled:
        return _NoBar()
    import sys

    from tqdm.auto import tqdm

    # In a log file (no terminal) a line every 30 s instead of ten carriage-return updates a second.
    interval = 0.1 if sys.stderr.isatty() else 30.0
    return tqdm(total=total, initial=start, unit="step", dynamic_ncols=True, desc="learning", mininterval=interval)


class _NoBar:
    def update(self, n: int) -> None: ...
    def set_postfix(self, **kw) -> None: ...
    def close(self) -> None: ...


def _engine(loss_and_grad, validation: ValidationBatch) -> dict:
    """For run.json: eager or CUDA-graph runners for the step and the validation, and the seconds capturing took."""
    val = validation.runners.values()
    return {
        "step": loss_and_grad.kind,
        "validation": "+".join(sorted({r.kind for r in val})) or "none",
        "setup_s": round(loss_and_grad.setup_s + sum(r.setup_s for r in val), 3),
    }
