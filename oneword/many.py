"""Many words at once: K concepts share one UNet batch, and a concept that ends gives its slot to the next.

Each slot is a whole `oneword learn` run (invert.py) except for the UNet call: its own vectors, cached photo
latents, templates and token ids, AdamW, random stream (run.py), early-stopping monitor and validation batch
(early_stopping.py), non-finite guard (guard.py). The slots' words live side by side in one table of K x V rows
(V: the most vectors any job asks for) read by each text encoder's LearnedTokenEmbedding (SDXL: clip_l and
clip_g are columns of one table, as in `learn`; each photo keeps its own time ids); slot k's prompts point at its
rows, so words with different vector counts and properties share a batch. One step draws every slot's
batch from that slot's generator, runs the UNet once on all of them (diffusion_loss(groups=K): each slot's own
mean loss) and steps each slot's AdamW on its rows. A slot that ends (early stop or step cap) is refilled from
the queue at once.

Shapes. On a GPU every step has K slots (an idle slot computes a dummy group), so one CUDA graph replays
throughout. On the CPU only the running slots are computed (no work on idle ones). Either way a concept's
result depends on the batch's shape and its position in it, never on the other slots' contents (float batch
effects: docs/benchmarks.md gives the difference from learning it alone).

Checkpoints. Every `save_every` steps of the batch, whenever a concept ends, and on Ctrl-C, every running
concept saves its run folder (run.py; the previous checkpoint is kept beside it) and then `learn-many-state.json`
records which concept sat in which slot at which step. `--resume` restores exactly that, so a killed process
continues every concept bit for bit (CPU).
"""

from __future__ import annotations

import copy
import json
import re
import time
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import nn

from .concept import vector_token_names
from .cuda_graph import loss_runner
from .data import LatentCache, encode_photos, read_photos
from .early_stopping import EarlyStopping, ValidationBatch
from .errors import OnewordError
from .guard import Guard
from .init_words import start
from .install import check_token_free
from .invert import (
    LearnConfig,
    LearnedTokenEmbedding,
    _check_point,
    _set_lr,
    _training_schedule,
    _tuned_kernels,
    diffusion_loss,
    draw_batch,
    encode_templates,
    learned_word,
)
from .run import CHECKPOINT, Run
from .safeio import atomic_write_bytes, atomic_write_json, remove_stale_temporaries, run_lock

MANIFEST = "learn-many.json"  # the jobs and settings, for --resume
STATE = "learn-many-state.json"  # the last consistent snapshot: slot -> concept and step
SUMMARY = "summary.json"
PREVIOUS = "checkpoint.previous.safetensors"  # the checkpoint before the last one (for an exact resume)
SETTINGS_FILES = ("oneword.json", "oneword.toml")
JOB_FIELDS = ("token", "photos", "out", "init", "property", "vectors", "steps", "seed", "lr")
PER_JOB = ("token", "init", "property", "vectors", "steps", "seed", "lr")  # the rest is shared by the batch
FINISHED = ("done", "early_stopped")


@dataclass
class Job:
    """One concept: its photos and what may differ between the concepts of one batch."""

    token: str
    photos: str
    out: str | None = None
    init: str | None = None
    property: str | None = None
    vectors: int | None = None
    steps: int | None = None
    seed: int | None = None
    lr: float | None = None

    def overrides(self) -> dict:
        return {k: getattr(self, k) for k in PER_JOB if getattr(self, k) is not None}


# ---------------------------------------------------------------------------------------------------- jobs


def read_jobs(source, out=None) -> list[Job]:
    """A folder of photo folders (one concept each, token `<folder name>`, optional oneword.json / oneword.toml
    beside the photos) or a JSONL manifest (one job per line). Every job gets its out folder (`out/<token>`
    unless it names one); two jobs with the same token or out folder are refused here, before any work."""
    source = Path(source)
    if source.is_dir():
        jobs = [
            _folder_job(sub)
            for sub in sorted(source.iterdir(), key=lambda p: p.name)
            if sub.is_dir() and not sub.name.startswith(".")
        ]
        if not jobs:
            raise OnewordError(f"{source} holds no photo folders (one folder of photos per concept)")
    elif source.is_file():
        jobs = _manifest_jobs(source)
    else:
        raise OnewordError(f"{source}: no such folder or manifest")
    return resolve_jobs(jobs, out)


def resolve_jobs(jobs, out=None) -> list[Job]:
    """Jobs (Job objects or dicts) with their out folders set, refusing duplicates."""
    jobs = [j if isinstance(j, Job) else _job_from_dict(j, f"job {i + 1}") for i, j in enumerate(jobs)]
    if not jobs:
        raise OnewordError("no jobs to learn")
    tokens, outs = {}, {}
    for i, job in enumerate(jobs):
        if job.out is None:
            if out is None:
                raise OnewordError(f"{job.token}: no out folder (give --out DIR, or 'out' in the job)")
            job.out = str(Path(out) / _slug(job.token))
        key = job.token.lower()  # CLIP lower-cases: <Cat> and <cat> are one word
        if key in tokens:
            raise OnewordError(f"jobs {tokens[key] + 1} and {i + 1} both learn the token {job.token!r}")
        tokens[key] = i
        where = str(Path(job.out).resolve())
        if where in outs:
            raise OnewordError(f"jobs {outs[where] + 1} and {i + 1} both write to {job.out}")
        outs[where] = i
    return jobs


def _folder_job(folder: Path) -> Job:
    settings = {}
    for name in SETTINGS_FILES:
        path = folder / name
        if path.is_file():
            settings = _read_settings(path)
            break
    return _job_from_dict({"token": f"<{folder.name}>", "photos": str(folder), **settings}, str(folder))


def _read_settings(path: Path) -> dict:
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        if path.suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except (ValueError, json.JSONDecodeError) as e:
        raise OnewordError(f"{path} is not valid {path.suffix[1:].upper()}: {e}") from None
    if not isinstance(data, dict):
        raise OnewordError(f"{path} must hold a table of settings (init, property, vectors, steps, seed, lr)")
    return data


def _manifest_jobs(path: Path) -> list[Job]:
    jobs = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as e:
            raise OnewordError(f"{path} line {n} is not valid JSON ({e.msg})") from None
        if not isinstance(data, dict):
            raise OnewordError(f"{path} line {n}: a job is a JSON object with 'photos' (and 'token', ...)")
        photos = data.get("photos")
        if photos is not None and not Path(photos).is_absolute():
            data["photos"] = str(path.parent / photos)  # relative to the manifest
        jobs.append(_job_from_dict(data, f"{path} line {n}"))
    if not jobs:
        raise OnewordError(f"{path} holds no jobs")
    return jobs


def _job_from_dict(data: dict, where: str) -> Job:
    unknown = sorted(set(data) - set(JOB_FIELDS))
    if unknown:
        raise OnewordError(f"{where}: unknown field(s) {', '.join(unknown)} (known: {', '.join(JOB_FIELDS)})")
    if not data.get("photos"):
        raise OnewordError(f"{where}: no 'photos' folder")
    data = dict(data)
    data.setdefault("token", f"<{Path(data['photos']).name}>")
    kinds = {
        "vectors": int,
        "steps": int,
        "seed": int,
        "lr": (int, float),
        "token": str,
        "init": str,
        "property": str,
        "photos": str,
        "out": str,
    }
    for k, v in data.items():
        if v is not None and (not isinstance(v, kinds[k]) or isinstance(v, bool)):
            raise OnewordError(f"{where}: {k} must be {getattr(kinds[k], '__name__', 'a number')}, not {v!r}")
    if data.get("property") not in (None, "object", "style"):
        raise OnewordError(f"{where}: property must be 'object' or 'style', not {data['property']!r}")
    return Job(**data)


def _slug(token: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", token).strip("-.") or "concept"


# ---------------------------------------------------------------------------------------------------- the engine


@dataclass
class _Slot:
    index: int
    job: int
    cfg: LearnConfig
    run: Run
    opt: torch.optim.Optimizer
    stopper: EarlyStopping
    guard: Guard
    param: nn.Parameter
    cache: LatentCache
    ids: torch.Tensor
    validation: ValidationBatch
    lock: ExitStack
    started: float
    first_step: int
    n: int = 0


class Engine:
    """Continuous batching of `jobs` in `slots` slots. `source` hands out jobs (`take(free_slots, K)` -> (index,
    step to resume at or None, slot or None) or None), hears of ended ones (`finished(index, row)`) and keeps the
    snapshots (`snapshot(state)`): LocalQueue in one process, distributed.py's queue across Ray workers."""

    def __init__(
        self,
        model,
        jobs: list[Job],
        settings: dict,
        slots: int,
        out,
        *,
        fixed_shapes: bool | None = None,
        designated: bool = False,
        callback=None,
        progress: bool = True,
        resume: bool = False,
    ):
        self.model, self.jobs, self.out = model, jobs, Path(out) if out is not None else None
        self.settings = {k: v for k, v in settings.items() if v is not None}
        self.cfgs: list[LearnConfig | None] = []
        self.errors: dict[int, str] = {}
        for i, job in enumerate(jobs):
            try:
                cfg = LearnConfig.with_defaults(model, **{**self.settings, **job.overrides()})
                cfg.validate()
                self.cfgs.append(cfg)
            except (OnewordError, TypeError) as e:
                self.cfgs.append(None)
                self.errors[i] = str(e)
        shared = next((c for c in self.cfgs if c is not None), LearnConfig.with_defaults(model, **self.settings))
        self.shared = shared
        self.B, self.K = shared.batch_size, max(1, int(slots))
        self.V = max([c.vectors for c in self.cfgs if c is not None] or [1])
        self.R = 2 * max([_photo_count(j.photos) for j in jobs] + [1])  # latent rows per slot: photos + mirrors
        self.dev = model.device
        self.graph = shared.cuda_graph and self.dev.type == "cuda" and not shared.grad_checkpointing
        self.fixed = self.graph if fixed_shapes is None else fixed_shapes
        self.designated, self.callback, self.progress, self.resume = designated, callback, progress, resume
        self.slots: list[_Slot | None] = [None] * self.K
        self.rows: list[dict | None] = [None] * len(jobs)  # summary rows of concepts that ended
        self.iteration = 0
        self.noise_schedule = _training_schedule(model)
        self.n_train = self.noise_schedule.config.num_train_timesteps
        # every text encoder of the family reads the table (SDXL: its columns of the [K*V, 768 + 1280] rows)
        self.encoders = model.family.encoders(model.pipe)
        self.first_ids = [len(e.tokenizer) for e in self.encoders]
        self.first_id = self.first_ids[0]
        width = model.word_width
        self.table = nn.Parameter(torch.zeros(self.K * self.V, width, device=self.dev))
        self.init_rows = torch.zeros(self.K * self.V, width, device=self.dev)
        self.reg_rows = torch.zeros(self.K, self.V, device=self.dev)  # 1/n on a slot's used rows (reg_weight)
        self.latents: LatentCache | None = None
        tok = model.family.tokenizer_for([e.tokenizer for e in self.encoders])
        empty = tok([""], padding="max_length", max_length=tok.model_max_length, return_tensors="pt").input_ids
        self.dummy_ids = empty.expand(self.B, *empty.shape[1:]).clone()  # [B, L], or [B, E, L] for E encoders
        self.scaler = torch.amp.GradScaler("cuda", enabled=model.dtype == torch.float16)
        self.val_runners: dict = {}
        self.runner = None
        self.kinds = {"step": "eager"}

    # ------------------------------------------------------------------------------------------ the run
    def run(self, source) -> list[dict]:
        bases = [e.text_encoder.get_input_embeddings() for e in self.encoders]
        for e, base, first_id in zip(self.encoders, bases, self.first_ids):
            columns = None if len(self.encoders) == 1 else e.columns
            e.text_encoder.set_input_embeddings(LearnedTokenEmbedding(base, first_id, self.table, columns))
        bar, self.source = _Bar(len(self.jobs), self.progress), source
        try:
            with _tuned_kernels(self.dev):
                self._fill(source)
                while any(self.slots):
                    try:
                        self._iteration()
                    except KeyboardInterrupt:
                        self._snapshot(source, status="interrupted")
                        raise OnewordError(
                            "interrupted; every running concept saved its checkpoint. Resume with: "
                            f"oneword learn-many --resume {self.out}"
                        ) from None
                    ended = self._ended()
                    if ended or self.iteration % self.shared.save_every == 0:
                        self._snapshot(source, ended)
                        for s in ended:
                            bar.update(1, s.cfg.token)
                        self._fill(source)
        finally:
            bar.close()
            for e, base in zip(self.encoders, bases):
                e.text_encoder.set_input_embeddings(base)
            for s in self.slots:
                if s is not None:
                    s.lock.close()
        return [r for r in self.rows if r is not None]

    def _iteration(self) -> None:
        """One step of every running slot: their batches, one loss and backward, each slot's own AdamW step."""
        active = [s for s in self.slots if s is not None]
        positions = list(range(self.K)) if self.fixed else [s.index for s in active]
        parts = []
        for k in positions:
            s = self.slots[k]
            if s is None:  # an idle slot in a fixed-shape batch: a dummy group on the vocabulary's own rows
                z = torch.zeros((self.B, *self.latents.mean.shape[1:]))
                parts.append(
                    (torch.full((self.B,), k * self.R), z, z, torch.zeros(self.B, dtype=torch.long), self.dummy_ids)
                )
                continue
            b = draw_batch(s.run.rng, len(s.cache), len(s.ids), s.cache.mean.shape[1:], self.n_train, self.B)
            _set_lr(s.opt, s.cfg, s.run)
            parts.append((b.rows + k * self.R, b.posterior_noise, b.noise, b.timesteps, s.ids[b.templates]))
        names = ("rows", "posterior_noise", "noise", "timesteps", "prompt_ids")
        inputs = {n: _to(torch.cat([p[i] for p in parts]), self.dev) for i, n in enumerate(names)}
        losses = self._runner(inputs)(**inputs)
        grad = self.table.grad
        for pos, k in enumerate(positions):
            s = self.slots[k]
            if s is None:
                continue
            s.param.grad = grad[k * self.V : k * self.V + s.n]
            self.scaler.unscale_(s.opt)
            with s.guard.kept_if_finite(losses[pos], s.opt, s.param):
                s.opt.step()
        self.scaler.update()
        self.iteration += 1
        for s in active:
            s.run.step += 1
            if _check_point(s.cfg, s.run.step):
                try:
                    self._check(s)
                except OnewordError as e:  # diverged past its roll-backs: this concept fails, the others go on
                    s.lock.close()
                    self.slots[s.index] = None
                    self._fail(self.source, s.job, str(e))

    def _check(self, s: _Slot) -> None:
        """learn's check point for one slot: non-finite steps, roll-back, validation, preview."""
        run, cfg = s.run, s.cfg
        skipped, bad_in_row, last_loss = s.guard.read()
        run.skipped += skipped
        if bad_in_row >= cfg.max_bad_steps:
            run.checkpoint = run.out / CHECKPOINT
            run.roll_back()
            s.guard.forget_runs()
            return
        val_loss = s.validation.loss() if s.stopper.due(run.step) else None
        if val_loss is not None:
            s.stopper.update(run.step, val_loss)
        run.record_progress(last_loss, val_loss)  # the concept's progress.jsonl, as learn writes it
        if cfg.preview_every and run.step % cfg.preview_every == 0:
            self._preview(s)

    def _ended(self) -> list[_Slot]:
        return [s for s in self.slots if s is not None and (s.run.step >= s.cfg.steps or s.stopper.stopped)]

    def _runner(self, example: dict):
        if self.runner is None:

            def step_loss(rows, posterior_noise, noise, timesteps, prompt_ids):
                groups = len(rows) // self.B
                latents, sizes = self.latents.sample(rows, posterior_noise), self.latents.sizes[rows]
                losses = diffusion_loss(
                    self.model, self.noise_schedule, latents, noise, timesteps, prompt_ids, sizes, groups=groups
                ).reshape(groups)
                if self.shared.reg_weight:  # each slot's mean squared distance from its init vectors
                    slots = (rows[:: self.B] // self.R).long()
                    dist = (self.table - self.init_rows).pow(2).sum(-1).view(self.K, self.V)
                    losses = losses + self.shared.reg_weight * (dist * self.reg_rows)[slots].sum(-1)
                return losses

            scale = lambda losses: self.scaler.scale(losses.sum())  # noqa: E731  (each slot's grad is its own)
            self.runner = loss_runner(step_loss, [self.table], example, scale=scale, graph=self.graph and self.fixed)
            self.kinds["step"] = self.runner.kind
        return self.runner

    def _sample_loss(self, rows, posterior_noise, noise, timesteps, prompt_ids):
        """learn's sample loss on the shared latent buffer (a slot's validation batch)."""
        latents, sizes = self.latents.sample(rows, posterior_noise), self.latents.sizes[rows]
        return diffusion_loss(self.model, self.noise_schedule, latents, noise, timesteps, prompt_ids, sizes)

    # ------------------------------------------------------------------------------------------ slots
    def _fill(self, source) -> None:
        """Give every free slot the next job the source hands out (a job that cannot start fails alone)."""
        while True:
            free = [k for k, s in enumerate(self.slots) if s is None]
            if not free:
                return
            taken = source.take(free, self.K)
            if taken is None:
                return
            index, resume_step, k = taken
            if k is None:
                k = index % self.K if self.designated else free[0]
            try:
                self.slots[k] = self._start(index, k, resume_step)
            except OnewordError as e:
                self._fail(source, index, str(e))

    def _start(self, index: int, k: int, resume_step) -> _Slot:
        job, cfg = self.jobs[index], self.cfgs[index]
        if cfg is None:
            raise OnewordError(self.errors[index])
        model, out = self.model, Path(job.out)
        lock = ExitStack()
        try:
            lock.enter_context(run_lock(out))
            remove_stale_temporaries(out)
            cache = encode_photos(model, read_photos(job.photos), cfg.resolution or model.resolution)
            if len(cache) > self.R:
                raise OnewordError(f"{job.photos} now holds more photos than when learn-many started")
            ids = self._ids(cfg, k)
            if (cfg.init_mode or "word") != "word":
                # cross pulls each word toward its own start with its own weight; a batch shares one reg_weight
                raise OnewordError(
                    f"{job.token}: learn-many cannot learn --init-mode {cfg.init_mode} (its pull toward the start "
                    "is per word); learn this word with oneword learn"
                )
            with self._vocabulary_only():  # the init words, --init auto or --init encoder, as oneword learn starts
                cfg, init = start(model, cfg, job.photos)
            init = init.to(self.dev)
            if self.latents is None:
                shape = cache.mean.shape[1:]
                self.latents = LatentCache(
                    torch.zeros(self.K * self.R, *shape, device=self.dev),
                    torch.zeros(self.K * self.R, *shape, device=self.dev),
                    cache.scaling_factor,
                    torch.zeros(self.K * self.R, cache.sizes.shape[1], device=self.dev),  # SDXL's time ids
                )
            rows = slice(k * self.V, k * self.V + cfg.vectors)
            with torch.no_grad():
                self.latents.mean[k * self.R : k * self.R + len(cache)] = cache.mean
                self.latents.std[k * self.R : k * self.R + len(cache)] = cache.std
                self.latents.sizes[k * self.R : k * self.R + len(cache)] = cache.sizes
                self.table[rows] = init
                self.init_rows[rows] = init
                self.reg_rows[k].zero_()
                self.reg_rows[k, : cfg.vectors] = 1.0 / cfg.vectors
            param = nn.Parameter(self.table.data[rows])  # a view: AdamW's updates land in the shared table
            opt = torch.optim.AdamW([param], lr=cfg.lr, weight_decay=cfg.weight_decay, capturable=param.is_cuda)
            stopper = EarlyStopping(cfg)
            run = Run(out, cfg, model, job.photos, param, opt, stopper)
            guard = run.guard = Guard(self.dev)  # its run of bad steps is part of the checkpoint (run.py)
            if resume_step is not None:
                _load_at(run, resume_step)
            validation = ValidationBatch(cache, ids, cfg, self.n_train, self._sample_loss, graph=self.graph)
            validation.rows = validation.rows + k * self.R
            validation.runners = self.val_runners  # one captured runner for every slot (the same shapes)
            run.write_json("running")
        except BaseException:
            lock.close()
            raise
        return _Slot(
            k,
            index,
            cfg,
            run,
            opt,
            stopper,
            guard,
            param,
            cache,
            ids,
            validation,
            lock,
            time.perf_counter(),
            run.step,
            n=cfg.vectors,
        )

    def _ids(self, cfg: LearnConfig, k: int) -> torch.Tensor:
        """The job's template ids with its word's ids pointing at slot k's rows of the table."""
        tokenizers = [copy.deepcopy(e.tokenizer) for e in self.encoders]
        for tokenizer in tokenizers:
            check_token_free(tokenizer, cfg.token, cfg.vectors)
            if tokenizer.add_tokens(vector_token_names(cfg.token, cfg.vectors)) != cfg.vectors:
                raise OnewordError(f"token {cfg.token!r} is already a word of this model's vocabulary")
        tokenizer = self.model.family.tokenizer_for(tokenizers)
        ids = encode_templates(tokenizer, cfg.property, cfg.token, cfg.vectors)  # [T, L] or [T, E, L]
        first = torch.tensor(self.first_ids).view(-1, 1) if ids.dim() == 3 else self.first_id
        return torch.where(ids >= first, ids + k * self.V, ids)

    def _preview(self, s: _Slot) -> None:
        from .sampling import preview_grid

        with self._vocabulary_only(), learned_word(self.model, s.cfg.token, s.param.detach()) as tokenizer:
            preview_grid(
                self.model,
                tokenizer,
                s.run.out / "previews" / f"step_{s.run.step:06d}.png",
                s.cfg.token,
                s.cfg.vectors,
                s.cfg.property,
                s.cfg.preview_prompts,
                s.cfg.preview_steps,
                s.cfg.seed,
            )

    @contextmanager
    def _vocabulary_only(self):
        """The text encoders' own embeddings while inside (the slots' table is put back after)."""
        encoders = [e.text_encoder for e in self.encoders]
        mine = [te.get_input_embeddings() for te in encoders]
        if not isinstance(mine[0], LearnedTokenEmbedding):
            yield
            return
        for te, m in zip(encoders, mine):
            te.set_input_embeddings(m.base)
        try:
            yield
        finally:
            for te, m in zip(encoders, mine):
                te.set_input_embeddings(m)

    # ------------------------------------------------------------------------------------------ saving
    def _snapshot(self, source, ended=(), status: str = "running") -> None:
        """Every running slot saves (keeping its previous checkpoint), ended ones for good; then the state file."""
        ended_ids = {id(s) for s in ended}
        for s in self.slots:
            if s is None:
                continue
            s.run.skipped += s.guard.read()[0]
            _keep_previous(s.run)
            if id(s) in ended_ids:
                elapsed = time.perf_counter() - s.started
                rate = (s.run.step - s.first_step) * self.B / max(elapsed, 1e-9)
                engine = {
                    **self.kinds,
                    "validation": "+".join(sorted({r.kind for r in self.val_runners.values()})),
                    "slots": self.K,
                    "shared_batch": True,
                }
                s.run.save("early_stopped" if s.stopper.stopped else "done", rate=rate, elapsed=elapsed, engine=engine)
            else:
                s.run.save(status)
        state = {
            "iteration": self.iteration,
            "slots": self.K,
            "running": {
                str(s.job): {"slot": s.index, "step": s.run.step}
                for s in self.slots
                if s is not None and id(s) not in ended_ids
            },
            "ended": sorted([s.job for s in ended] + [i for i, r in enumerate(self.rows) if r is not None]),
        }
        source.snapshot(state)
        for s in ended:
            row = _row(self.jobs[s.job], s.run, time.perf_counter() - s.started)
            self.rows[s.job] = row
            s.lock.close()
            self.slots[s.index] = None
            source.finished(s.job, row)
            if self.callback:
                self.callback(row)

    def _fail(self, source, index: int, reason: str) -> None:
        job = self.jobs[index]
        row = {
            "token": job.token,
            "out": job.out,
            "status": "failed",
            "error": reason,
            "steps": 0,
            "stopped_early": False,
            "val_loss": None,
            "time_s": 0.0,
            "file": None,
        }
        try:
            Path(job.out).mkdir(parents=True, exist_ok=True)
            cfg = self.cfgs[index]
            atomic_write_json(
                Path(job.out) / "run.json",
                {
                    "status": "failed",
                    "error": reason,
                    "step": 0,
                    "config": asdict(cfg) if cfg else asdict(job),
                    "photos": job.photos,
                },
            )
        except OSError:
            pass
        self.rows[index] = row
        source.finished(index, row)
        if self.callback:
            self.callback(row)


def _row(job: Job, run: Run, seconds: float) -> dict:
    history = run.early_stopping.history
    return {
        "token": job.token,
        "out": job.out,
        "status": "early_stopped" if run.early_stopping.stopped else "done",
        "error": None,
        "steps": run.step,
        "stopped_early": run.early_stopping.stopped,
        "val_loss": history[-1] if history else None,
        "time_s": round(seconds, 3),
        "file": str(run.out / "learned_embeds.safetensors"),
    }


def _row_from_folder(job: Job) -> dict:
    saved = _read_json(Path(job.out) / "run.json") or {}
    history = (saved.get("early_stopping") or {}).get("val_losses") or []
    status = saved.get("status", "failed")
    return {
        "token": job.token,
        "out": job.out,
        "status": status,
        "error": saved.get("error"),
        "steps": saved.get("step", 0),
        "stopped_early": status == "early_stopped",
        "val_loss": history[-1] if history else None,
        "time_s": saved.get("elapsed_s", 0.0),
        "file": str(Path(job.out) / "learned_embeds.safetensors") if status in FINISHED else None,
    }


def _to(t: torch.Tensor, device) -> torch.Tensor:
    if torch.device(device).type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def _photo_count(photos) -> int:
    from .images import list_photos

    try:
        return len(list_photos(photos))
    except OnewordError:
        return 0  # fails alone when its turn comes


def _checkpoint_step(path: Path) -> int | None:
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            return int(json.loads(f.metadata()["state"])["step"])
    except Exception:  # missing or unreadable: no usable checkpoint
        return None


def _keep_previous(run: Run) -> None:
    """Copy the current checkpoint aside before it is replaced: a kill between two concepts' saves leaves each
    concept either at the snapshot the state file names or one before it, and both are on disk."""
    if run.checkpoint.is_file():
        atomic_write_bytes(run.out / PREVIOUS, run.checkpoint.read_bytes())


def _load_at(run: Run, step) -> None:
    """Resume a run at `step` (the state file's snapshot) when a checkpoint of that step exists, else at its
    latest checkpoint ("latest")."""
    current = _checkpoint_step(run.checkpoint)
    if current is None:
        return  # nothing saved yet: it starts again from the beginning
    if step == "latest" or current == step:
        run.load()
        return
    previous = run.out / PREVIOUS
    if _checkpoint_step(previous) == step:
        run.checkpoint = previous
        try:
            run.load()
        finally:
            run.checkpoint = run.out / CHECKPOINT
        return
    run.load()


# ---------------------------------------------------------------------------------------------------- one process


class LocalQueue:
    """The jobs in order, for one process; remembers the snapshot in OUT/learn-many-state.json."""

    def __init__(self, jobs: list[Job], out, resume: bool, designated: bool = False):
        self.jobs, self.out, self.designated = jobs, Path(out) if out is not None else None, designated
        self.pending = list(range(len(jobs)))
        self.ended: set[int] = set()  # ended in this process or before the resume
        self.resume_at: dict[int, object] = {}
        self.first_slots: dict[int, int] = {}
        if resume:
            self._restore()

    def _restore(self) -> None:
        state = _read_json(self.out / STATE) if self.out is not None else None
        ended = set(state["ended"]) if state else set()
        running = {int(k): v for k, v in state["running"].items()} if state else {}
        for i, job in enumerate(self.jobs):
            saved = _read_json(Path(job.out) / "run.json") or {}
            if i in ended and saved.get("status") in FINISHED:
                self.pending.remove(i)
                self.ended.add(i)
            elif i in running:
                self.resume_at[i] = running[i]["step"]
                self.first_slots[i] = running[i]["slot"]
            elif (Path(job.out) / CHECKPOINT).is_file() and i not in ended and saved.get("status") != "failed":
                self.resume_at[i] = "latest" if state is None else None
        # the slots as they were: running concepts first, each back in its own slot
        order = sorted(running, key=lambda i: running[i]["slot"])
        self.pending = order + [i for i in self.pending if i not in running]

    def take(self, free: list[int], slots: int):
        for i in list(self.pending):
            want = self.first_slots.get(i, i % slots if self.designated else None)
            if want is not None and want not in free:
                continue
            self.pending.remove(i)
            return i, self.resume_at.get(i), self.first_slots.pop(i, None)
        return None

    def finished(self, index: int, row: dict) -> None:
        self.ended.add(index)

    def snapshot(self, state: dict) -> None:
        state["ended"] = sorted(set(state["ended"]) | self.ended)
        if self.out is not None:
            atomic_write_json(self.out / STATE, state)


def learn_many(
    model,
    jobs,
    out=None,
    *,
    slots: int | None = None,
    resume: bool = False,
    callback=None,
    progress: bool = True,
    fixed_shapes: bool | None = None,
    **settings,
) -> list[dict]:
    """Learn every job's word (Job objects or dicts with photos, token, init, property, vectors, steps, seed, lr),
    `slots` of them at a time in one batch; `settings` are LearnConfig fields shared by all (batch_size,
    save_every, early_stop, ...). `fixed_shapes`: every slot computed every step and job i in slot i % slots, as
    on Ray workers, so each word is exactly what a Ray run gives (default: on a GPU with CUDA graphs). Each job's out folder ends as `learn` leaves it. `callback(row)` hears each
    concept's end (the summary row: token, out, status, steps, stopped_early, val_loss, time_s, file, error).
    Returns the summary rows in job order; writes OUT/summary.json when `out` is given."""
    unknown = set(settings) - {f.name for f in fields(LearnConfig)}
    if unknown:
        raise OnewordError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    jobs = resolve_jobs(jobs, out)
    if out is not None:
        Path(out).mkdir(parents=True, exist_ok=True)
        if not resume:
            _refuse_existing(jobs)
            atomic_write_json(
                Path(out) / MANIFEST,
                {"jobs": [asdict(j) for j in jobs], "settings": settings, "slots": slots, "model": model.identity},
            )
    elif not resume:
        _refuse_existing(jobs)
    queue = LocalQueue(jobs, out, resume, designated=bool(fixed_shapes))
    k = slots or default_slots(model, len(jobs), LearnConfig.with_defaults(model, **settings).batch_size)
    engine = Engine(
        model,
        jobs,
        settings,
        k,
        out,
        fixed_shapes=fixed_shapes,
        designated=bool(fixed_shapes),
        callback=callback,
        progress=progress,
        resume=resume,
    )
    ran = {r["token"]: r for r in engine.run(queue)}
    rows = [ran.get(j.token) or _row_from_folder(j) for j in jobs]  # with those that ended before a --resume
    if out is not None:
        write_summary(out, rows)
    return rows


def resume_settings(out) -> tuple[list[Job], dict, int | None]:
    """The jobs, shared settings and slot count a learn-many run in `out` was started with."""
    manifest = resume_manifest(out)
    return [Job(**j) for j in manifest["jobs"]], manifest["settings"], manifest.get("slots")


def resume_manifest(out) -> dict:
    """OUT/learn-many.json: jobs, settings, slots and the model (its identity) a learn-many run started with."""
    manifest = _read_json(Path(out) / MANIFEST)
    if manifest is None:
        raise OnewordError(f"{out} holds no learn-many run (no {MANIFEST})")
    return manifest


def _refuse_existing(jobs: list[Job]) -> None:
    for job in jobs:
        if (Path(job.out) / CHECKPOINT).exists():
            raise OnewordError(f"{job.out} already holds a run; continue with --resume or choose another --out")


def default_slots(model, n_jobs: int, batch_size: int) -> int:
    """K: on a GPU as many as fit in 80% of the free memory (one step's measured activation memory per slot,
    at most 64 images per batch); on the CPU up to 8 (the CPU's batching gain levels off there)."""
    if model.device.type != "cuda":
        return max(1, min(n_jobs, 8))
    free, _ = torch.cuda.mem_get_info(model.device)
    try:
        per_slot = _step_memory(model, batch_size)
    except (RuntimeError, TypeError):  # could not measure (out of memory, an unusual text encoder): a safe guess
        torch.cuda.empty_cache()
        return max(1, min(n_jobs, 4))
    return max(1, min(n_jobs, 64 // batch_size, int(0.8 * free / max(per_slot, 1))))


def _step_memory(model, batch_size: int) -> int:
    """Peak device memory of one training step's forward and backward at `batch_size` (bytes)."""
    torch.cuda.synchronize(model.device)
    torch.cuda.reset_peak_memory_stats(model.device)
    before = torch.cuda.memory_allocated(model.device)
    c, size = model.unet.config.in_channels, model.unet.config.sample_size
    x = torch.randn(batch_size, c, size, size, device=model.device, dtype=model.dtype, requires_grad=True)
    encoders = len(model.family.encoders(model.pipe))
    length = model.tokenizer.model_max_length
    ids = torch.zeros(batch_size, *([encoders] if encoders > 1 else []), length, dtype=torch.long, device=model.device)
    # the family's conditioning (SDXL: both encoders, pooled output, time ids); the gradient flows back through the
    # UNet from the latents (the text encoders' share of a step's memory is small beside the UNet's)
    with torch.no_grad():
        cond = model.family.unet_conditioning(model, ids, None)
    out = model.unet(x, torch.zeros(batch_size, dtype=torch.long, device=model.device), **cond).sample
    out.float().pow(2).mean().backward()
    peak = torch.cuda.max_memory_allocated(model.device) - before
    del x, cond, out
    torch.cuda.empty_cache()
    return int(peak * 1.2)


def write_summary(out, rows: list[dict]) -> None:
    atomic_write_json(Path(out) / SUMMARY, {"concepts": rows, "failed": sum(r["status"] == "failed" for r in rows)})


def summary_table(rows: list[dict]) -> str:
    """The summary as a text table: token, status, steps, early stop, final validation loss, time, file/error."""
    head = ("token", "status", "steps", "early", "val loss", "time s", "file / reason")
    body = [
        (
            r["token"],
            r["status"],
            str(r["steps"]),
            "yes" if r["stopped_early"] else "no",
            "-" if r["val_loss"] is None else f"{r['val_loss']:.4f}",
            f"{r['time_s']:.1f}",
            r["file"] if r["status"] != "failed" else r["error"],
        )
        for r in rows
    ]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths[:-1]) + "  {}"
    return "\n".join(fmt.format(*line) for line in [head, *body])


def _read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


class _Bar:
    def __init__(self, total: int, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="concept", desc="learning", dynamic_ncols=True)

    def update(self, n: int, token: str) -> None:
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix_str(token, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


__all__ = [
    "Job",
    "read_jobs",
    "resolve_jobs",
    "learn_many",
    "resume_settings",
    "summary_table",
    "Engine",
    "LocalQueue",
    "default_slots",
]
