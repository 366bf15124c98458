"""learn-many across a Ray cluster: one continuous-batching worker (oneword.many.Engine) per GPU, or per CPU.

The driver keeps one queue (a Ray actor) of job indices; each worker loads the model once and pulls jobs into
its free slots, writing every concept's run folder under the shared --out. Workers run fixed-shape batches
(every slot computed, idle ones on dummy groups) and job i always sits in slot i % K, so a concept's result is
the same on any worker and beside any other concepts (many.py). When a worker dies, the driver puts its
unfinished jobs back at the front of the queue and starts a replacement; whoever takes a job again resumes it
from its last checkpoint, which on the CPU gives the very vector the uninterrupted run gives.

`ray` is imported only here, and only when --ray is used (`pip install oneword[ray]`).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path

from .errors import OnewordError
from .many import CHECKPOINT, FINISHED, MANIFEST, Job, _read_json, _row_from_folder, resolve_jobs, write_summary


def _ray():
    try:
        import ray
    except ImportError:
        raise OnewordError("--ray needs Ray: pip install 'oneword[ray]'") from None
    return ray


class JobQueue:
    """The shared queue: pending job indices, which worker holds which, and the summary rows."""

    def __init__(self, n_jobs: int):
        self.pending = list(range(n_jobs))
        self.held: dict[int, int] = {}  # job -> worker
        self.rows: dict[int, dict] = {}

    def take(self, worker: int, free: list[int], slots: int):
        for i in self.pending:
            if i % slots in free:
                self.pending.remove(i)
                self.held[i] = worker
                return i
        return None

    def finished(self, index: int, row: dict) -> None:
        self.held.pop(index, None)
        self.rows[index] = row

    def release(self, worker: int) -> list[int]:
        """A worker died: its jobs go back to the front of the queue, in order."""
        lost = sorted(i for i, w in self.held.items() if w == worker)
        for i in lost:
            del self.held[i]
        self.pending = lost + self.pending
        return lost

    def holders(self) -> dict[int, int]:
        return dict(self.held)

    def done(self) -> bool:
        return not self.pending and not self.held

    def summary(self) -> dict[int, dict]:
        return dict(self.rows)


class _Source:
    """many.Engine's job source on a worker: the shared queue, resuming a job from its checkpoint if it has one."""

    def __init__(self, queue, worker: int, jobs: list[Job]):
        self.queue, self.worker, self.jobs = queue, worker, jobs

    def take(self, free: list[int], slots: int):
        ray = _ray()
        while True:
            i = ray.get(self.queue.take.remote(self.worker, free, slots))
            if i is None:
                return None
            job = self.jobs[i]
            saved = _read_json(Path(job.out) / "run.json") or {}
            if saved.get("status") in FINISHED:  # ended on a worker that died before reporting it
                self.finished(i, _row_from_folder(job))
                continue
            resumable = (Path(job.out) / CHECKPOINT).is_file() and saved.get("status") != "failed"
            return i, "latest" if resumable else None, None

    def finished(self, index: int, row: dict) -> None:
        _ray().get(self.queue.finished.remote(index, row))

    def snapshot(self, state: dict) -> None:
        """Nothing to keep: with fixed shapes every concept's own checkpoint resumes it exactly."""


class Worker:
    """One process with the model loaded, running a fixed-shape Engine over the shared queue."""

    def __init__(self, model_spec, device, threads: int | None = None):
        import torch

        from .models import load_model

        if threads:
            torch.set_num_threads(threads)
        self.model = load_model(model_spec, device=device)

    def pid(self) -> int:
        return os.getpid()

    def run(self, queue, worker: int, jobs: list[dict], settings: dict, slots: int, out: str) -> int:
        from .many import Engine

        jobs = [Job(**j) for j in jobs]
        engine = Engine(self.model, jobs, settings, slots, out, fixed_shapes=True, designated=True, progress=False)
        return len(engine.run(_Source(queue, worker, jobs)))


class RayLearnMany:
    """The driver: `start()` the queue and the workers, `wait()` for every concept (replacing dead workers)."""

    def __init__(
        self,
        address,
        model_spec,
        device,
        jobs,
        out,
        *,
        slots: int | None = None,
        workers: int | None = None,
        resume: bool = False,
        init: dict | None = None,
        **settings,
    ):
        self.ray = _ray()
        self.address, self.model_spec, self.device = address, model_spec, device
        self.out = Path(out)
        self.jobs = resolve_jobs(jobs, out)
        self.settings = {k: v for k, v in settings.items() if v is not None}
        self.slots, self.n_workers, self.resume, self.init = slots, workers, resume, init or {}
        self.workers: dict[int, object] = {}
        self.running: dict = {}  # future -> worker id
        self.next_id = 0

    def start(self) -> None:
        ray = self.ray
        if not ray.is_initialized():
            if self.address in (None, "local"):
                ray.init(include_dashboard=False, log_to_driver=False, **self.init)
            else:
                ray.init(address=self.address, log_to_driver=False, **self.init)
        self.out.mkdir(parents=True, exist_ok=True)
        if not self.resume:
            from .many import _refuse_existing

            _refuse_existing(self.jobs)
        from .safeio import atomic_write_json

        model = {"source": str(self.model_spec), "kind": "world" if self.model_spec is None else "diffusers"}
        atomic_write_json(
            self.out / MANIFEST,
            {"jobs": [asdict(j) for j in self.jobs], "settings": self.settings, "slots": self.slots, "model": model},
        )
        resources = ray.cluster_resources()
        self.gpu = bool(resources.get("GPU")) and self.device != "cpu"
        self.n_workers = self.n_workers or max(1, int(resources.get("GPU" if self.gpu else "CPU", 1)))
        self.slots = self.slots or max(1, min(8, -(-len(self.jobs) // self.n_workers)))
        self.queue = ray.remote(num_cpus=0)(JobQueue).remote(len(self.jobs))
        for _ in range(min(self.n_workers, len(self.jobs))):
            self._spawn()

    def _spawn(self) -> None:
        ray = self.ray
        need = {"num_gpus": 1} if self.gpu else {"num_cpus": 1}
        worker_id, self.next_id = self.next_id, self.next_id + 1
        actor = ray.remote(max_restarts=0, **need)(Worker).remote(self.model_spec, self.device, None if self.gpu else 1)
        self.workers[worker_id] = actor
        future = actor.run.remote(
            self.queue, worker_id, [asdict(j) for j in self.jobs], self.settings, self.slots, str(self.out)
        )
        self.running[future] = worker_id

    def worker_pids(self) -> dict[int, int]:
        return {w: self.ray.get(a.pid.remote()) for w, a in self.workers.items() if w in self.running.values()}

    def holders(self) -> dict[int, int]:
        return self.ray.get(self.queue.holders.remote())

    def wait(self, timeout: float | None = None) -> list[dict]:
        ray, started = self.ray, time.monotonic()
        while self.running:
            ready, _ = ray.wait(list(self.running), num_returns=1, timeout=5.0)
            for future in ready:
                worker = self.running.pop(future)
                try:
                    ray.get(future)
                except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError):
                    lost = ray.get(self.queue.release.remote(worker))
                    if lost or not ray.get(self.queue.done.remote()):
                        self._spawn()  # its concepts resume from their checkpoints there
                except ray.exceptions.RayTaskError as e:
                    raise OnewordError(f"a learn-many worker failed: {str(e).splitlines()[-1]}") from None
            if not self.running and not ray.get(self.queue.done.remote()):
                self._spawn()
            if timeout is not None and time.monotonic() - started > timeout:
                raise OnewordError(f"learn-many on Ray did not finish within {timeout:g} s")
        rows_by_index = ray.get(self.queue.summary.remote())
        rows = [rows_by_index.get(i) or _row_from_folder(j) for i, j in enumerate(self.jobs)]
        write_summary(self.out, rows)
        return rows


def learn_many_ray(
    address, model_spec, device, jobs, out, *, slots=None, resume: bool = False, workers=None, **settings
) -> list[dict]:
    """learn_many on a Ray cluster (`address`: "auto", an address, or "local" to start one on this machine)."""
    driver = RayLearnMany(
        address, model_spec, device, jobs, out, slots=slots, workers=workers, resume=resume, **settings
    )
    driver.start()
    return driver.wait()
