"""Textual inversion: find the word vector(s) v* = argmin_v E ||eps - eps_theta(z_t, t, c_theta(y(v)))||^2.

The paper's method, read top to bottom in `learn`: a frozen model, new placeholder token(s) whose input
embeddings are the only trainable parameters (initialised from an init word), a random CLIP-ImageNet
template per sample, the latent-diffusion loss on the model's own noise schedule. What we add for speed
and safety is bookkeeping around it: cached VAE posteriors (data.py), checkpoints that resume exactly,
a non-finite-step guard, and a cheap validation loss for early stopping. Between check points (validations,
checkpoints) the loop never reads a device value on the host, so a GPU never waits for Python (guard.py).
"""
from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .concept import Concept, save_concept, vector_token_names
from .data import LatentCache, encode_photos, read_photos
from .errors import OnewordError
from .cuda_graph import loss_runner
from .guard import Guard, step_unless_nonfinite
from .install import check_token_free, expand_prompt
from .safeio import atomic_write_bytes, atomic_write_json, remove_stale_temporaries, run_lock
from .templates import templates_for

DEFAULT_INIT = {"object": "object", "style": "painting"}


@dataclass
class LearnConfig:
    token: str = "<concept>"
    init: str | None = None           # None: "object" / "painting" (or the model's shipped default)
    vectors: int = 1
    property: str = "object"
    steps: int = 2000                 # an upper bound: early stopping usually ends sooner
    batch_size: int = 4
    lr: float = 5e-3                  # AdamW, constant after warm-up (the paper's schedule)
    warmup: int = 0
    weight_decay: float = 0.01        # torch AdamW's default, as the official code and diffusers use
    reg_weight: float = 0.0           # official code's embedding_reg_weight: L2 pull toward the init vector
    resolution: int | None = None     # None: the model's native resolution
    seed: int = 0
    save_every: int = 250
    preview_every: int = 0
    preview_prompts: tuple[str, ...] = ()
    preview_steps: int = 25
    early_stop: bool = True
    val_every: int = 25
    val_window: int = 16              # stop when the last val_window validation losses have stopped falling:
    val_z: float = 2.0                # their least-squares slope is no longer val_z standard errors below zero
    val_samples: int = 16             # size of the fixed validation batch (photos in turn)
    val_t_min: float = 0.05           # its timesteps are spread over [val_t_min, 0.95] of the schedule
    min_steps: int = 200
    grad_checkpointing: bool = False  # trade compute for memory (fits SD1.5 learning in ~4 GB)
    cuda_graph: bool = True           # on CUDA: replay each step from a CUDA graph (graphs.py; not with checkpointing)
    max_bad_steps: int = 10           # consecutive non-finite steps before rolling back

    @classmethod
    def with_defaults(cls, model, **overrides) -> "LearnConfig":
        """Global defaults, then the model's shipped defaults, then the user's explicit values."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in model.defaults.get("learn", {}).items() if k in names}
        values.update({k: v for k, v in overrides.items() if v is not None})
        cfg = cls(**values)
        cfg.preview_prompts = tuple(cfg.preview_prompts)
        return cfg

    def validate(self) -> None:
        """Refuse settings that cannot run, in one line each, before any work (a zero --save-every would
        otherwise fail mid-run, a negative --steps silently learn nothing)."""
        for name in ("steps", "batch_size", "vectors", "save_every", "val_every", "val_samples", "preview_steps",
                     "max_bad_steps"):
            if getattr(self, name) < 1:
                raise OnewordError(f"--{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}")
        for name in ("warmup", "preview_every", "min_steps", "weight_decay", "reg_weight", "val_z"):
            if not getattr(self, name) >= 0:  # also refuses NaN
                raise OnewordError(f"--{name.replace('_', '-')} must be 0 or more, not {getattr(self, name)}")
        if not 0 <= self.lr < float("inf"):  # 0: nothing moves (a control run)
            raise OnewordError(f"--lr must be a finite number, 0 or more, not {self.lr}")
        if not 0 <= self.val_t_min < 0.95:
            raise OnewordError(f"--val-t-min must be in [0, 0.95) (a fraction of the noise schedule), not {self.val_t_min}")
        if self.val_window < 3:
            raise OnewordError(f"--val-window must be at least 3 (a slope and its error), not {self.val_window}")
        if self.resolution is not None and self.resolution < 8:
            raise OnewordError(f"--resolution must be at least 8 pixels, not {self.resolution}")


class LearnedTokenEmbedding(nn.Module):
    """The text encoder's frozen token embedding, except that ids >= first_id read a small trainable table.
    The 49k-row vocabulary is never copied, optimised or restored."""

    def __init__(self, base: nn.Embedding, first_id: int, vectors: torch.Tensor):
        super().__init__()
        self.base, self.first_id, self.vectors = base, first_id, vectors

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        is_new = ids >= self.first_id
        out = self.base(ids.masked_fill(is_new, 0))
        learned = self.vectors.to(out.dtype)[(ids - self.first_id).clamp(0, len(self.vectors) - 1)]
        return torch.where(is_new.unsqueeze(-1), learned, out)


@contextmanager
def learned_word(model, token: str, vectors: torch.Tensor):
    """Temporarily give the model a word whose vectors are `vectors`; yields a tokenizer that knows it.
    The model's own tokenizer and weights are left untouched."""
    with learned_words(model, [(token, vectors)]) as tokenizer:
        yield tokenizer


@contextmanager
def learned_words(model, words):
    """learned_word for several words at once: `words` is a list of (token, vectors) pairs; their rows are
    appended after the vocabulary in order (tokens `tok, tok_1, ...` as diffusers names them)."""
    import copy

    tokenizer = copy.deepcopy(model.tokenizer)
    first_id = len(tokenizer)
    tables = []
    for token, vectors in words:
        if vectors.shape[-1] != model.hidden_size:
            raise OnewordError(f"{token}: vectors are {vectors.shape[-1]} wide but this model's text encoder is "
                               f"{model.hidden_size} wide (the word was learned for another model)")
        names = vector_token_names(token, len(vectors))
        check_token_free(tokenizer, token, len(vectors))
        if tokenizer.add_tokens(names) != len(names):
            raise OnewordError(f"token {token!r} is already a word of this model's vocabulary (or given twice)")
        tables.append(vectors)
    embeddings = model.text_encoder.get_input_embeddings()
    # one word: its own tensor (the training loop's Parameter, so gradients and updates reach it)
    table = tables[0] if len(tables) == 1 else torch.cat(tables).to(embeddings.weight.device)
    model.text_encoder.set_input_embeddings(LearnedTokenEmbedding(embeddings, first_id, table))
    try:
        yield tokenizer
    finally:
        model.text_encoder.set_input_embeddings(embeddings)


def init_vectors(model, word: str, n: int) -> torch.Tensor:
    """Start vectors from the init text; a word the tokenizer splits into two pieces counts as their mean.
    One vector: the mean of the words (the paper's init word). n vectors from k > 1 words: vector i starts from
    word i*k//n (A1111's rule, by words rather than by pieces), so "green star" gives a 2-vector word whose
    first vector sits in the colour-word slot; from a single word, every vector starts from it."""
    table = model.text_encoder.get_input_embeddings().weight
    rows = []
    for part in word.split():
        pieces = model.tokenizer(part, add_special_tokens=False).input_ids
        if not pieces or len(pieces) > 2:
            shown = model.tokenizer.convert_ids_to_tokens(pieces)
            raise OnewordError(f"init word {part!r} is not a word this model knows (it splits into {shown}); "
                               "choose a common word for the concept, e.g. --init cat")
        rows.append(table[pieces].float().mean(0))
    if not rows:
        raise OnewordError("--init is empty; give a word that describes the concept, e.g. --init cat")
    words = torch.stack(rows).detach().cpu()
    if n > 1 and len(words) > 1:
        return words[[i * len(words) // n for i in range(n)]]
    return words.mean(0, keepdim=True).repeat(n, 1)


def encode_templates(tokenizer, prop: str, token: str, n: int) -> torch.Tensor:
    """Token ids [T, L] of every template with the placeholder filled in (computed once)."""
    texts = expand_prompt([t.format(token) for t in templates_for(prop)], {token: n})
    ids = tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="pt").input_ids
    first = tokenizer.convert_tokens_to_ids(token)
    if not bool((ids == first).any(1).all()):
        raise OnewordError(f"the prompt templates do not fit this tokenizer's {tokenizer.model_max_length} tokens with the placeholder")
    return ids


@dataclass
class Batch:
    rows: torch.Tensor
    templates: torch.Tensor
    posterior_noise: torch.Tensor
    noise: torch.Tensor
    timesteps: torch.Tensor


def draw_batch(g: torch.Generator, n_rows: int, n_templates: int, shape, n_train_steps: int, b: int) -> Batch:
    """All randomness of one step, from one CPU generator, so a checkpointed generator resumes exactly."""
    return Batch(rows=torch.randint(0, n_rows, (b,), generator=g),
                 templates=torch.randint(0, n_templates, (b,), generator=g),
                 posterior_noise=torch.randn((b, *shape), generator=g),
                 noise=torch.randn((b, *shape), generator=g),
                 timesteps=torch.randint(0, n_train_steps, (b,), generator=g))


def batch_inputs(b: Batch, device) -> dict:
    """The batch on `device`. To a GPU through pinned memory without blocking: a plain .to() would wait until the
    GPU had finished the previous step, instead of drawing the next batch while it runs."""
    tensors = {k: getattr(b, k) for k in ("rows", "templates", "posterior_noise", "noise", "timesteps")}
    if torch.device(device).type != "cuda":
        return {k: v.to(device) for k, v in tensors.items()}
    return {k: v.pin_memory().to(device, non_blocking=True) for k, v in tensors.items()}


def diffusion_loss(model, noise_schedule, latents, noise, timesteps, ids) -> torch.Tensor:
    """The latent-diffusion objective on the model's own schedule and prediction type."""
    noisy = noise_schedule.add_noise(latents, noise, timesteps)
    if noise_schedule.config.prediction_type == "v_prediction":
        target = noise_schedule.get_velocity(latents, noise, timesteps)
    elif noise_schedule.config.prediction_type == "epsilon":
        target = noise
    else:
        raise OnewordError(f"unsupported prediction_type {noise_schedule.config.prediction_type!r}")
    cond = model.text_encoder(ids)[0]
    pred = model.unet(noisy.to(model.dtype), timesteps, cond.to(model.dtype)).sample
    return F.mse_loss(pred.float(), target.float())


class Validator:
    """A fixed batch (every photo in turn, `val_samples` timesteps spread evenly over the schedule, fixed noise,
    the templates in turn) whose loss is a low-noise signal of convergence: DVAR's fixed batch (Voronov et al.
    2023). Its stopping rule is ours: stop when that loss has stopped falling, i.e. the least-squares slope of the
    last `val_window` values is no longer `val_z` standard errors below zero. DVAR's own rule (variance of the
    recent values over the variance of all) stopped a style word whose loss was still falling steadily and let
    object words run to the step cap (docs/benchmarks.md, time to quality)."""

    def __init__(self, cache: LatentCache, ids: torch.Tensor, cfg: LearnConfig, n_train_steps: int, seed: int,
                 graph: bool = False, chunk: int | None = None):
        g = torch.Generator().manual_seed(seed + 7919)
        n = cfg.val_samples
        self.rows = torch.arange(n) % len(cache)
        low = cfg.val_t_min
        spread = n_train_steps * (low + round(0.95 - low, 6) * (torch.arange(n) + 0.5) / n)
        self.timesteps = spread.long()[torch.randperm(n, generator=g)]  # each photo sees several noise levels
        self.posterior_noise = torch.randn((n, *cache.mean.shape[1:]), generator=g)
        self.noise = torch.randn((n, *cache.mean.shape[1:]), generator=g)
        self.ids = ids[torch.arange(n) % len(ids)]
        self.cfg, self.graph, self.runners = cfg, graph, {}
        # on an accelerator in chunks of the training batch (no extra peak memory; the step's shape, so a CUDA
        # graph); on the CPU the whole batch at once (fewer, larger kernels: 16 world samples in 36 ms, not 61)
        self.chunk = chunk or (n if cache.mean.device.type == "cpu" else cfg.batch_size)

    @torch.no_grad()
    def loss(self, model, cache, noise_schedule) -> float:
        """Mean loss over the fixed batch, in chunks."""
        dev, total = model.device, 0.0
        for part in torch.arange(len(self.rows)).split(self.chunk):
            chunk = {"rows": self.rows[part], "posterior_noise": self.posterior_noise[part], "noise": self.noise[part],
                     "timesteps": self.timesteps[part], "ids": self.ids[part]}
            chunk = {k: v.to(dev) for k, v in chunk.items()}
            total += float(self._runner(model, cache, noise_schedule, chunk)(**chunk)) * len(part)
        return total / len(self.rows)

    def _runner(self, model, cache, noise_schedule, example):
        """One runner per chunk size; only full chunks are worth a CUDA graph."""
        size = len(example["rows"])
        if size not in self.runners:
            def chunk_loss(rows, posterior_noise, noise, timesteps, ids):
                return diffusion_loss(model, noise_schedule, cache.sample(rows, posterior_noise), noise, timesteps, ids)
            self.runners[size] = loss_runner(chunk_loss, [], example, backward=False,
                                             graph=self.graph and size == self.cfg.batch_size)
        return self.runners[size]

    def converged(self, history: list[float]) -> bool:
        return loss_stopped_falling(history, self.cfg.val_window, self.cfg.val_z)


def loss_stopped_falling(history: list[float], window: int, z: float) -> bool:
    """True when the least-squares slope of the last `window` values is not `z` standard errors below zero."""
    if len(history) < max(window, 3):
        return False
    y = torch.tensor(history[-window:], dtype=torch.float64)
    x = torch.arange(len(y), dtype=torch.float64)
    x = x - x.mean()
    slope = float((x * (y - y.mean())).sum() / (x * x).sum())
    residual = y - y.mean() - slope * x
    se = float((residual.pow(2).sum() / (len(y) - 2) / (x * x).sum()).sqrt())
    return slope >= -z * se


@dataclass
class State:
    """Everything a checkpoint holds: resuming from it continues the run bit for bit on the CPU."""
    step: int = 0
    lr_scale: float = 1.0
    skipped: int = 0
    rollbacks: int = 0
    val_history: list = field(default_factory=list)
    stopped_early: bool = False


def learn(model, photos, cfg: LearnConfig, out_dir, resume: bool = False, progress: bool = True) -> Concept:
    """Learn `cfg.token` from photos (a folder, paths or PIL images). Writes into out_dir:
    learned_embeds.safetensors, checkpoint.safetensors, run.json, previews/."""
    from .sampling import preview_grid

    cfg.validate()
    out = Path(out_dir)
    with run_lock(out):
        remove_stale_temporaries(out)
        images = read_photos(photos)
        resolution = cfg.resolution or model.resolution
        cache = encode_photos(model, images, resolution)
        noise_schedule = _training_schedule(model)
        init = init_vectors(model, cfg.init or DEFAULT_INIT[cfg.property], cfg.vectors)
        vectors = nn.Parameter(init.clone().to(model.device))
        # capturable: AdamW's step count on the GPU, so that a skipped step is undone there (guard.py)
        opt = torch.optim.AdamW([vectors], lr=cfg.lr, weight_decay=cfg.weight_decay, capturable=vectors.is_cuda)
        g = torch.Generator().manual_seed(cfg.seed)
        state = State()
        ckpt = out / "checkpoint.safetensors"
        fingerprint = str(model.identity.get("fingerprint"))
        if resume and ckpt.is_file():
            state = _load_checkpoint(ckpt, vectors, opt, g, cfg, fingerprint)
        elif resume:
            raise OnewordError(f"nothing to resume in {out}: no checkpoint.safetensors")
        scaler = torch.amp.GradScaler("cuda", enabled=model.dtype == torch.float16)
        if cfg.grad_checkpointing:
            model.unet.enable_gradient_checkpointing()
        _write_run(out, cfg, model, photos, state, "running")

        with learned_word(model, cfg.token, vectors) as tokenizer, _tuned_kernels(model.device):
            dev, n_train = model.device, noise_schedule.config.num_train_timesteps
            ids = encode_templates(tokenizer, cfg.property, cfg.token, cfg.vectors).to(dev)
            init_on_dev = init.to(dev)

            def batch_loss(rows, templates, posterior_noise, noise, timesteps):
                latents = cache.sample(rows, posterior_noise)
                loss = diffusion_loss(model, noise_schedule, latents, noise, timesteps, ids[templates])
                if cfg.reg_weight:
                    loss = loss + cfg.reg_weight * (vectors - init_on_dev).pow(2).sum(-1).mean()
                return loss

            graph = cfg.cuda_graph and dev.type == "cuda" and not cfg.grad_checkpointing
            example = batch_inputs(draw_batch(torch.Generator().manual_seed(cfg.seed + 1), len(cache), len(ids),
                                              cache.mean.shape[1:], n_train, cfg.batch_size), dev)
            step = loss_runner(batch_loss, [vectors], example, scale=scaler.scale, graph=graph)
            validator = Validator(cache, ids, cfg, n_train, cfg.seed, graph=graph)
            started, done_at_start = time.perf_counter(), state.step
            bar = _progress(cfg.steps, state.step, progress)
            guard = Guard(dev)
            try:
                while state.step < cfg.steps and not state.stopped_early:
                    b = draw_batch(g, len(cache), len(ids), cache.mean.shape[1:], n_train, cfg.batch_size)
                    _set_lr(opt, cfg, state)
                    loss = step(**batch_inputs(b, dev))  # vectors.grad: this batch's gradient (scaled)
                    scaler.unscale_(opt)
                    step_unless_nonfinite(opt, vectors, guard.check(loss, vectors.grad))
                    scaler.update()
                    state.step += 1
                    if bar is not None:
                        bar.update(1)
                    if not _check_point(cfg, state.step):
                        continue
                    skipped, bad_in_row, last_loss = guard.read()  # the loop's one host read between check points
                    state.skipped += skipped
                    if bad_in_row >= cfg.max_bad_steps:
                        _roll_back(ckpt, vectors, opt, g, cfg, state, init, fingerprint)
                        guard.forget_runs()
                        continue
                    if cfg.early_stop and state.step % cfg.val_every == 0:
                        state.val_history.append(validator.loss(model, cache, noise_schedule))
                        state.stopped_early = state.step >= cfg.min_steps and validator.converged(state.val_history)
                    if bar is not None:
                        bar.set_postfix(loss=f"{last_loss:.4f}", refresh=False)
                    if cfg.preview_every and state.step % cfg.preview_every == 0:
                        preview_grid(model, tokenizer, cfg, out / "previews" / f"step_{state.step:06d}.png")
                    if state.step % cfg.save_every == 0 or state.step >= cfg.steps or state.stopped_early:
                        _save(out, ckpt, vectors, opt, g, cfg, state, model, photos, "running")
            except KeyboardInterrupt:
                state.skipped += guard.read()[0]
                _save(out, ckpt, vectors, opt, g, cfg, state, model, photos, "interrupted")
                raise OnewordError(f"interrupted at step {state.step}; checkpoint saved. Resume with: "
                                   f"oneword learn --resume {out}") from None
            finally:
                if bar is not None:
                    bar.close()
                if cfg.grad_checkpointing:
                    model.unet.disable_gradient_checkpointing()
            elapsed = time.perf_counter() - started
            rate = (state.step - done_at_start) * cfg.batch_size / max(elapsed, 1e-9)
            concept = _save(out, ckpt, vectors, opt, g, cfg, state, model, photos,
                            "early_stopped" if state.stopped_early else "done", rate=rate, elapsed=elapsed,
                            engine=_engine(step, validator))
        return concept


def _engine(step, validator) -> dict:
    """For run.json: eager or CUDA-graph runners for the step and the validation, and the seconds capturing took."""
    val = validator.runners.values()
    return {"step": step.kind, "validation": "+".join(sorted({r.kind for r in val})) or "none",
            "setup_s": round(step.setup_s + sum(r.setup_s for r in val), 3)}


def _check_point(cfg: LearnConfig, step: int) -> bool:
    """Steps after which the loop reads the device (non-finite counts, the loss) and may validate, preview, save."""
    return (step % cfg.val_every == 0 or step % cfg.save_every == 0 or step >= cfg.steps
            or bool(cfg.preview_every and step % cfg.preview_every == 0))


def _training_schedule(model):
    """The model's own noise schedule (betas, prediction type) as a DDPM scheduler for add_noise/get_velocity."""
    from diffusers import DDPMScheduler

    schedule = DDPMScheduler.from_config(model.scheduler.config)
    # on the model's device now: add_noise moves it there on its first call, a blocking copy inside the first step
    schedule.alphas_cumprod = schedule.alphas_cumprod.to(model.device)
    return schedule


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


def _set_lr(opt, cfg: LearnConfig, state: State) -> None:
    warm = min(1.0, (state.step + 1) / cfg.warmup) if cfg.warmup else 1.0
    for group in opt.param_groups:
        group["lr"] = cfg.lr * warm * state.lr_scale


def _progress(total: int, start: int, enabled: bool):
    if not enabled:
        return None
    import sys

    from tqdm.auto import tqdm

    # In a log file (no terminal) a line every 30 s instead of ten carriage-return updates a second.
    interval = 0.1 if sys.stderr.isatty() else 30.0
    return tqdm(total=total, initial=start, unit="step", dynamic_ncols=True, desc="learning", mininterval=interval)


def _concept(vectors, cfg: LearnConfig, model, state: State) -> Concept:
    meta = {"token": cfg.token, "init": cfg.init or DEFAULT_INIT[cfg.property], "vectors": str(cfg.vectors),
            "property": cfg.property, "base_model": str(model.identity.get("source")),
            "model_fingerprint": str(model.identity.get("fingerprint")), "steps": str(state.step),
            "text_width": str(model.hidden_size), "tool": "oneword"}
    return Concept(token=cfg.token, vectors=vectors.detach().float().cpu().clone(), meta=meta)


def _save(out: Path, ckpt: Path, vectors, opt, g, cfg, state, model, photos, status, rate=None, elapsed=None,
          engine=None) -> Concept:
    """Checkpoint first, then the embedding, then run.json: each atomic, so any kill leaves a consistent set."""
    from safetensors.torch import save

    adam = opt.state.get(vectors, {})
    tensors = {"vectors": vectors.detach().float().cpu().contiguous(), "rng": g.get_state()}
    for k in ("exp_avg", "exp_avg_sq"):
        if k in adam:
            tensors[k] = adam[k].detach().float().cpu().contiguous()
    meta = {"state": json.dumps(asdict(state)), "config": json.dumps(asdict(cfg)),
            "adam_step": str(int(adam["step"])) if "step" in adam else "0",
            "model_fingerprint": str(model.identity.get("fingerprint"))}
    atomic_write_bytes(ckpt, save(tensors, metadata=meta))
    concept = _concept(vectors, cfg, model, state)
    save_concept(concept, out / "learned_embeds.safetensors")
    _write_run(out, cfg, model, photos, state, status, rate, elapsed, engine)
    return concept


def checkpoint_fingerprint(ckpt: Path) -> str | None:
    """The fingerprint of the model a checkpoint was learned on (None for checkpoints that predate it)."""
    from safetensors import safe_open

    with safe_open(str(ckpt), "pt") as f:
        return (f.metadata() or {}).get("model_fingerprint")


def _load_checkpoint(ckpt: Path, vectors, opt, g, cfg: LearnConfig, fingerprint: str) -> State:
    from safetensors import safe_open

    with safe_open(str(ckpt), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    learned_on = meta.get("model_fingerprint")
    if learned_on not in (None, fingerprint):  # a vector is only meaningful in the text encoder it was learned in
        raise OnewordError(f"cannot resume: this run was learned on model {learned_on}, not this one ({fingerprint}; "
                           f"weights in another precision count as another model); start a new run with another --out")
    saved = json.loads(meta["config"])
    for k in ("token", "vectors", "property", "batch_size", "seed"):
        if saved.get(k) != getattr(cfg, k):
            raise OnewordError(f"cannot resume: this run used {k}={saved.get(k)!r}, not {getattr(cfg, k)!r}")
    if tensors["vectors"].shape != vectors.shape:
        raise OnewordError(f"cannot resume: checkpoint holds vectors of shape {tuple(tensors['vectors'].shape)}")
    with torch.no_grad():
        vectors.copy_(tensors["vectors"].to(vectors.device))
    if "exp_avg" in tensors:
        on = vectors.device if opt.defaults["capturable"] else "cpu"  # where AdamW itself keeps it
        opt.state[vectors] = {"step": torch.tensor(float(meta["adam_step"]), device=on),
                              "exp_avg": tensors["exp_avg"].to(vectors.device),
                              "exp_avg_sq": tensors["exp_avg_sq"].to(vectors.device)}
    g.set_state(tensors["rng"])
    return State(**json.loads(meta["state"]))


def _roll_back(ckpt: Path, vectors, opt, g, cfg: LearnConfig, state: State, init, fingerprint: str) -> None:
    """Repeated non-finite steps: back to the last good checkpoint with half the learning rate; stop after 3."""
    state.rollbacks += 1
    if state.rollbacks > 3:
        raise OnewordError(f"learning diverged: {state.skipped} non-finite steps and 3 roll-backs; "
                           f"try a lower --lr (now {cfg.lr * state.lr_scale:g})")
    keep = (state.rollbacks, state.skipped, state.lr_scale * 0.5)
    if ckpt.is_file():
        restored = _load_checkpoint(ckpt, vectors, opt, g, cfg, fingerprint)
        state.step, state.val_history, state.stopped_early = restored.step, restored.val_history, False
    else:
        with torch.no_grad():
            vectors.copy_(init.to(vectors.device))
        opt.state.clear()
        state.step, state.val_history = 0, []
    state.rollbacks, state.skipped, state.lr_scale = keep


def _write_run(out: Path, cfg, model, photos, state: State, status: str, rate=None, elapsed=None, engine=None) -> None:
    run = {"status": status, "step": state.step, "config": asdict(cfg), "model": model.identity,
           "photos": str(photos) if isinstance(photos, (str, Path)) else None,
           "skipped_nonfinite_steps": state.skipped, "rollbacks": state.rollbacks,
           "early_stopping": {"enabled": cfg.early_stop, "stopped_early": state.stopped_early,
                              "val_every": cfg.val_every, "min_steps": cfg.min_steps, "val_window": cfg.val_window,
                              "val_z": cfg.val_z, "val_t_min": cfg.val_t_min, "val_losses": state.val_history}}
    if rate is not None:
        run["image_steps_per_s"] = round(rate, 3)
        run["elapsed_s"] = round(elapsed, 3)
    if engine is not None:
        run["engine"] = engine  # "cuda-graph" or "eager" for the step and the validation, seconds spent capturing
    atomic_write_json(out / "run.json", run)
