"""A learning run: its folder, and everything needed to continue it.

    checkpoint.safetensors      the vectors, AdamW's moments and step count, the batch generator's state, the
                                training state (step, learning-rate scale, non-finite steps, roll-backs, the
                                early-stopping history) and the config: a resumed run continues bit for bit (CPU)
    learned_embeds.safetensors  the word so far, in diffusers' format
    run.json                    status, progress and settings, for people and for `oneword learn --resume`
    progress.jsonl              one line per check point (step, loss, validation loss, lr, image-steps/s, time),
                                appended without fsync: for curves (`oneword ui`), never read to resume

`Run.save` writes the three in that order, each atomically (oneword.safeio), so a kill at any moment leaves a
consistent set; the previews/ folder beside them is `learn`'s.
"""

from __future__ import annotations

import json
import os
import signal
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import torch

from .concept import Concept
from .data import photos_fingerprint
from .errors import OnewordError
from .formats import save_concept
from .safeio import atomic_write_bytes, atomic_write_json

CHECKPOINT = "checkpoint.safetensors"
PROGRESS = "progress.jsonl"
RESUME_MUST_MATCH = ("token", "vectors", "property", "batch_size", "seed")  # what the saved state depends on


class Run:
    """The state of one learning run around its vectors and optimiser: `step` (updates done, non-finite ones
    included), `lr_scale` (halved by each roll-back), `skipped` (non-finite steps), `rollbacks`, the
    early-stopping monitor's history and `rng`, the one generator every training batch is drawn from."""

    def __init__(
        self, out, cfg, model, photos, vectors: torch.nn.Parameter, opt: torch.optim.Optimizer, early_stopping
    ):
        self.out = Path(out)
        self.checkpoint = self.out / CHECKPOINT
        self.cfg, self.model, self.photos = cfg, model, photos
        self.photos_fingerprint = photos_fingerprint(photos)  # a resumed run must see the same photos
        self.vectors, self.opt, self.early_stopping = vectors, opt, early_stopping
        self.start = vectors.detach().clone()  # where a roll-back with no checkpoint to go back to starts again
        self.rng = torch.Generator().manual_seed(cfg.seed)
        self.step, self.lr_scale, self.skipped, self.rollbacks = 0, 1.0, 0, 0
        self.saved_step: int | None = None  # the step of the checkpoint on disk (None: none yet)
        self.guard = None  # the non-finite-step guard (guard.py), whose runs of bad steps a checkpoint keeps
        self._mark: tuple[float, int] | None = None  # (clock, step) of the last progress record

    # ------------------------------------------------------------------------------------------ writing
    def save(
        self, status: str, rate: float | None = None, elapsed: float | None = None, engine: dict | None = None
    ) -> Concept:
        """Checkpoint first, then the embedding, then run.json: each atomic, so any kill leaves a consistent set.
        Ctrl-C waits until all three are written."""
        with _ctrl_c_waits():
            return self._save(status, rate, elapsed, engine)

    def _save(self, status, rate, elapsed, engine) -> Concept:
        from safetensors.torch import save

        adam = self.opt.state.get(self.vectors, {})
        tensors = {"vectors": self.vectors.detach().float().cpu().contiguous(), "rng": self.rng.get_state()}
        for k in ("exp_avg", "exp_avg_sq"):
            if k in adam:
                tensors[k] = adam[k].detach().float().cpu().contiguous()
        meta = {
            "state": json.dumps(self._state()),
            "config": json.dumps(asdict(self.cfg)),
            "adam_step": str(int(adam["step"])) if "step" in adam else "0",
            "model_fingerprint": str(self.model.identity.get("fingerprint")),
            "photos_fingerprint": json.dumps(self.photos_fingerprint),
        }
        atomic_write_bytes(self.checkpoint, save(tensors, metadata=meta))
        self.saved_step = self.step
        concept = self.concept()
        save_concept(concept, self.out / "learned_embeds.safetensors")
        self.write_json(status, rate, elapsed, engine)
        return concept

    def record_progress(self, loss: float, val_loss: float | None = None) -> None:
        """Append a check point's line to progress.jsonl: step, loss, validation loss (when one was taken), the
        learning rate, image-steps/s since the previous line (none on the first line of a process) and the time.
        Plain appends, no fsync: a record lost to a crash costs a curve point, never the run."""
        import time

        now = time.perf_counter()
        rate = None
        if self._mark is not None and now > self._mark[0]:
            rate = round((self.step - self._mark[1]) * self.cfg.batch_size / (now - self._mark[0]), 3)
        self._mark = (now, self.step)
        record = {"step": self.step, "loss": round(float(loss), 6)}
        if val_loss is not None:
            record["val_loss"] = round(float(val_loss), 6)
        record.update(lr=self.opt.param_groups[0]["lr"], image_steps_per_s=rate, t=round(time.time(), 3))
        try:
            self.out.mkdir(parents=True, exist_ok=True)
            with open(self.out / PROGRESS, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
        except OSError:  # a curve point is not worth stopping the learning for
            pass

    def concept(self) -> Concept:
        """The word as learned so far, with what it was learned on and how."""
        cfg, identity = self.cfg, self.model.identity
        meta = {
            "token": cfg.token,
            "init": cfg.init_word(),
            "vectors": str(cfg.vectors),
            "property": cfg.property,
            "base_model": str(identity.get("source")),
            "model_fingerprint": str(identity.get("fingerprint")),
            "steps": str(self.step),
            "tool": "oneword",
        }
        # the model family makes the word: one [n, width] tensor, or SDXL's clip_l and clip_g parts
        return self.model.family.concept(self.model.pipe, cfg.token, self.vectors.detach().float().cpu().clone(), meta)

    def write_json(
        self, status: str, rate: float | None = None, elapsed: float | None = None, engine: dict | None = None
    ) -> None:
        """run.json: "running", "interrupted", "done" or "early_stopped", the step, settings and model; at the end
        also the speed and which engine ran ("cuda-graph" or "eager", step and validation, seconds capturing)."""
        cfg, stopper = self.cfg, self.early_stopping
        run = {
            "status": status,
            "step": self.step,
            "config": asdict(cfg),
            "model": self.model.identity,
            **self._photos_json(),
            "skipped_nonfinite_steps": self.skipped,
            "rollbacks": self.rollbacks,
            "early_stopping": {
                "enabled": cfg.early_stop,
                "stopped_early": stopper.stopped,
                "val_every": cfg.val_every,
                "min_steps": cfg.min_steps,
                "val_window": cfg.val_window,
                "val_z": cfg.val_z,
                "val_t_min": cfg.val_t_min,
                "val_losses": stopper.history,
            },
        }
        if rate is not None:
            run["image_steps_per_s"] = round(rate, 3)
            run["elapsed_s"] = round(elapsed, 3)
        if engine is not None:
            run["engine"] = engine
        atomic_write_json(self.out / "run.json", run)

    def _photos_json(self) -> dict:
        """Where the photos are, for `oneword learn --resume` from any folder: the absolute path, the path from the
        run folder (a moved pair of folders), and their fingerprint."""
        if not isinstance(self.photos, (str, Path)):
            return {"photos": None, "photos_fingerprint": self.photos_fingerprint}
        where = Path(self.photos).expanduser().resolve()
        return {
            "photos": str(where),
            "photos_from_run": os.path.relpath(where, self.out.resolve()),
            "photos_fingerprint": self.photos_fingerprint,
        }

    def _state(self) -> dict:
        return {
            "step": self.step,
            "lr_scale": self.lr_scale,
            "skipped": self.skipped,
            "rollbacks": self.rollbacks,
            **self.early_stopping.state_dict(),
            **(self.guard.state_dict() if self.guard is not None else {}),
        }

    # ------------------------------------------------------------------------------------------ reading
    def resume(self) -> None:
        """Continue from the checkpoint: vectors, AdamW state, generator and training state as they were saved."""
        if not self.checkpoint.is_file():
            raise OnewordError(f"nothing to resume in {self.out}: no {CHECKPOINT}")
        self.load()

    def load(self) -> None:
        """Restore everything from the checkpoint, after checking that it belongs to this model and settings.
        Every tensor is copied out of the file: the checkpoint is memory-mapped, and the next save replaces it."""
        from safetensors import safe_open

        with safe_open(str(self.checkpoint), "pt") as f:
            meta = f.metadata()
            tensors = {k: f.get_tensor(k).clone() for k in f.keys()}
        fingerprint = str(self.model.identity.get("fingerprint"))
        learned_on = meta.get("model_fingerprint")
        if learned_on not in (None, fingerprint):  # a vector is only meaningful in the text encoder it was learned in
            raise OnewordError(
                f"cannot resume: this run was learned on model {learned_on}, not this one "
                f"({fingerprint}; weights in another precision count as another model); "
                f"start a new run with another --out"
            )
        learned_from = json.loads(meta.get("photos_fingerprint", "null"))
        if learned_from not in (None, self.photos_fingerprint):  # the same photos, or the run is another one
            now = self.photos_fingerprint
            raise OnewordError(
                f"cannot resume: the photos changed since this run started ({learned_from['count']} "
                f"photo(s) then, {now['count']} now{', other content' if learned_from['count'] == now['count'] else ''}); "
                "a run continues on the photos it started with: restore them, or start a new run "
                "with another --out"
            )
        saved = json.loads(meta["config"])
        for k in RESUME_MUST_MATCH:
            if saved.get(k) != getattr(self.cfg, k):
                raise OnewordError(f"cannot resume: this run used {k}={saved.get(k)!r}, not {getattr(self.cfg, k)!r}")
        vectors = self.vectors
        if tensors["vectors"].shape != vectors.shape:
            raise OnewordError(f"cannot resume: checkpoint holds vectors of shape {tuple(tensors['vectors'].shape)}")
        with torch.no_grad():
            vectors.copy_(tensors["vectors"].to(vectors.device))
        if "exp_avg" in tensors:
            on = vectors.device if self.opt.defaults["capturable"] else "cpu"  # where AdamW itself keeps it
            self.opt.state[vectors] = {
                "step": torch.tensor(float(meta["adam_step"]), device=on),
                "exp_avg": tensors["exp_avg"].to(vectors.device),
                "exp_avg_sq": tensors["exp_avg_sq"].to(vectors.device),
            }
        self.rng.set_state(tensors["rng"])
        state = json.loads(meta["state"])
        self.step, self.lr_scale = state.get("step", 0), state.get("lr_scale", 1.0)
        self.skipped, self.rollbacks = state.get("skipped", 0), state.get("rollbacks", 0)
        self.early_stopping.load_state_dict(state)
        if self.guard is not None:
            self.guard.load_state_dict(state)
        self.saved_step = self.step

    def roll_back(self) -> None:
        """Repeated non-finite steps: back to the last checkpoint (or the start) with half the learning rate;
        after 3 roll-backs, give up. The counts of roll-backs and non-finite steps carry on."""
        self.rollbacks += 1
        if self.rollbacks > 3:
            raise OnewordError(
                f"learning diverged: {self.skipped} non-finite steps and 3 roll-backs; "
                f"try a lower --lr (now {self.cfg.lr * self.lr_scale:g})"
            )
        keep = (self.rollbacks, self.skipped, self.lr_scale * 0.5)
        if self.checkpoint.is_file():
            self.load()
            self.early_stopping.stopped = False
        else:
            with torch.no_grad():
                self.vectors.copy_(self.start)
            self.opt.state.clear()
            self.step = 0
            self.early_stopping.reset()
        self.rollbacks, self.skipped, self.lr_scale = keep


class CtrlC:
    """Ctrl-C while learning stops the run at a whole step, so that the checkpoint it saves continues bit for bit.

    Ctrl-C inside a step only asks (`requested`); the loop calls `between_steps` before each step, which stops
    there (KeyboardInterrupt) once asked. Where the state is whole already (before the first step: loading,
    capturing) Ctrl-C stops at once. A second Ctrl-C stops at once wherever the step is: `whole` then says that
    the state is half updated and must not be saved (the last checkpoint stands). Once stopping, further
    Ctrl-Cs are ignored while the checkpoint is written. Installed in the main thread only, and only where SIGINT
    runs a Python handler (a process that ignores SIGINT keeps ignoring it); `restore` puts the previous one back.
    """

    def __init__(self):
        self.requested, self.whole, self.stopped, self.previous = False, True, False, None
        try:
            if callable(signal.getsignal(signal.SIGINT)):
                self.previous = signal.signal(signal.SIGINT, self._on_sigint)
        except ValueError:  # not the main thread (signals reach the main thread only)
            pass

    def _on_sigint(self, signum, frame) -> None:
        if self.stopped:
            return
        if self.whole or self.requested:
            self.stop()
        self.requested = True

    def between_steps(self) -> None:
        """Before each step (after the last one's check point work): stop here if Ctrl-C came during it."""
        self.whole = True
        if self.requested:
            self.stop()
        self.whole = False

    def stop(self) -> None:
        """KeyboardInterrupt, once: Ctrl-Cs from now on are ignored (the run is stopping; its checkpoint is saved)."""
        self.stopped = True
        raise KeyboardInterrupt

    def restore(self) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None


@contextmanager
def _ctrl_c_waits():
    """SIGINT held back (delivered on leaving) in this thread, where the system allows it."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def checkpoint_fingerprint(ckpt) -> str | None:
    """The fingerprint of the model a checkpoint was learned on (None for checkpoints that predate it)."""
    from safetensors import safe_open

    with safe_open(str(ckpt), "pt") as f:
        return (f.metadata() or {}).get("model_fingerprint")
