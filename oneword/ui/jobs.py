"""Learning jobs beside the web server, one learning process per server (one device) at a time, in its own
process (oneword.ui.worker): two or more queued jobs that can share a batch (the same shared settings, init
words that learn-many takes) learn together in one `oneword learn-many` process; any other job is `oneword
learn`. Everything a page shows is kept here, keyed by run folder, and read from what the run writes (run.json,
progress.jsonl, previews/, the worker's progress log), so a reloaded page or a second tab sees the same job, and
a restarted server finds its runs again.

A run folder of the UI: ROOT/<name>/ holding photos/ (the uploaded photos, re-encoded after the safe loader read
them), ui-job.json (the command that starts it), ui-progress.jsonl, ui-log.txt, and what `oneword learn` writes.
A batch: ROOT/.batches/batch-NNN/ holding jobs.jsonl (the manifest), the worker's log and what learn-many
writes there (learn-many.json, its state, summary.json); each concept's run folder stays ROOT/<name>/.

Stop on a job of a batch stops the batch (learn-many saves every running concept's checkpoint); the stopped job
waits for Resume and the batch's other unfinished jobs go back to the queue to continue from their checkpoints
(`oneword learn --resume`, which continues a learn-many concept's run folder as its own).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import OnewordError

JOB_FILE = "ui-job.json"
PROGRESS_FILE = "ui-progress.jsonl"
RECORD_FILE = "progress.jsonl"  # learn's and learn-many's check point records (oneword.run.PROGRESS)
BATCHES = ".batches"
MAX_BATCH = 8  # jobs per learn-many batch (its CPU slot count; on a GPU it fits what it can, the rest wait inside)
PER_JOB = {  # learn's flags that are a learn-many job's own fields (oneword.many.Job)
    "--token": ("token", str),
    "--out": ("out", str),
    "--init": ("init", str),
    "--property": ("property", str),
    "--vectors": ("vectors", int),
    "--steps": ("steps", int),
    "--seed": ("seed", int),
    "--lr": ("lr", float),
}
SHARED = {"--batch-size", "--save-every", "--preview-every", "--model", "--model-config", "--prediction-type"}
SHARED |= {"--device"}  # the flags learn-many shares across a batch; a job with any other flag learns alone
SWITCHES = {"--no-early-stop"}
LOG_FILE = "ui-log.txt"
FINISHED = ("done", "early_stopped")
STOP_GRACE_S = 120  # SIGINT, then this long to checkpoint before SIGTERM


def slug(token: str) -> str:
    """A folder name for a token ("<my-cat>" -> "my-cat"), as `oneword learn` names its default --out."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", token).strip("-.")[:60] or "concept"


@dataclass
class Progress:
    """What the page draws: read incrementally from the worker's log and run.json."""

    step: int = 0
    total: int = 0
    rate: float | None = None  # steps/s, over the last few seconds
    losses: list = field(default_factory=list)  # (step, loss) at each check point
    val_losses: list = field(default_factory=list)  # (step, validation loss)
    lr: float | None = None  # at the last check point
    offset: int = 0  # bytes of the worker's log already read
    records_offset: int = 0  # bytes of progress.jsonl already read
    points: dict = field(default_factory=dict)  # step -> progress.jsonl record
    window: list = field(default_factory=list)  # recent (t, step) for the rate
    last_t: float = 0.0  # time of the newest record read (either file)


@dataclass
class Job:
    name: str
    folder: Path
    argv: list  # `learn ...` for a new run (the worker's arguments after the log path)
    token: str
    created: float
    state: str = "queued"  # queued | running | stopping | interrupted | done | early_stopped | failed
    message: str = ""
    proc: subprocess.Popen | None = None
    resume: bool = False
    resume_steps: int | None = None
    stop_sent: float = 0.0
    batch: str | None = None  # the learn-many batch (ROOT/.batches/NAME) it learns in, while it does
    requeue: bool = False  # its batch is stopping for another job: back to the queue from its checkpoint
    progress: Progress = field(default_factory=Progress)

    @property
    def run_json(self) -> dict:
        try:
            return json.loads((self.folder / "run.json").read_text())
        except (OSError, ValueError):
            return {}

    @property
    def word(self) -> Path | None:
        p = self.folder / "learned_embeds.safetensors"
        return p if p.is_file() else None

    @property
    def can_resume(self) -> bool:
        return self.state in ("interrupted", "failed", "stopped") and self.proc is None

    def previews(self) -> list[Path]:
        return sorted((self.folder / "previews").glob("step_*.png"))


class JobManager:
    """Start, queue, stop, resume and watch learning jobs. Thread-safe; a daemon thread starts queued jobs."""

    def __init__(
        self,
        root: Path,
        model_args: list[str] | None = None,
        python: str | None = None,
        env: dict | None = None,
        poll_s: float = 0.5,
        gather_s: float = 3.0,
    ):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.model_args = list(model_args or [])
        # a job that could share a batch waits this long after the last Start for another to share it with
        self.gather_s = gather_s
        self._last_submit = 0.0
        self.python = python or sys.executable
        self.env = env
        self.poll_s = poll_s
        self.jobs: dict[str, Job] = {}
        self.lock = threading.RLock()
        self._closed = threading.Event()
        self._rescan()
        self._thread = threading.Thread(target=self._loop, name="oneword-ui-jobs", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------------------ queries
    def names(self) -> list[str]:
        with self.lock:
            return sorted(self.jobs, key=lambda n: self.jobs[n].created)

    def get(self, name: str | None) -> Job | None:
        with self.lock:
            return self.jobs.get(name) if name else None

    def current(self) -> Job | None:
        """The job a fresh page shows: the running one, else the first queued, else the newest."""
        with self.lock:
            for state in ("running", "stopping", "queued"):
                for n in self.names():
                    if self.jobs[n].state == state:
                        return self.jobs[n]
            names = self.names()
            return self.jobs[names[-1]] if names else None

    def queue_position(self, job: Job) -> int:
        with self.lock:
            queued = [n for n in self.names() if self.jobs[n].state == "queued"]
            return queued.index(job.name) + 1 if job.name in queued else 0

    def new_folder(self, token: str) -> tuple[str, Path]:
        """A fresh run folder under the root for `token` (name, name-2, ... when taken)."""
        base = slug(token)
        with self.lock:
            for i in range(1, 1000):
                name = base if i == 1 else f"{base}-{i}"
                folder = self.root / name
                if name not in self.jobs and not folder.exists():
                    folder.mkdir(parents=True)
                    return name, folder
        raise OnewordError(f"too many runs named {base}; delete some in the Words tab")

    # ------------------------------------------------------------------------------------------ actions
    def submit(self, name: str, folder: Path, token: str, learn_argv: list[str]) -> Job:
        """Queue a new run (learn_argv: `learn PHOTOS --token ... --out FOLDER ...`)."""
        job = Job(name=name, folder=folder, argv=list(learn_argv), token=token, created=time.time())
        from ..safeio import atomic_write_json

        atomic_write_json(folder / JOB_FILE, {"argv": job.argv, "token": token, "created": job.created})
        with self.lock:
            self.jobs[name] = job
            self._last_submit = time.monotonic()
        self._wake()
        return job

    def stop(self, name: str) -> str:
        """Stop a running job (it checkpoints; Resume continues it exactly) or take a queued one off the queue."""
        with self.lock:
            job = self._job(name)
            if job.state == "queued":
                job.state, job.message = "stopped", "taken off the queue before it started"
                return job.message
            if job.state != "running" or job.proc is None:
                return f"{name} is not running ({job.state})"
            job.state, job.message = "stopping", "stopping: saving a checkpoint"
            job.stop_sent, job.requeue = time.monotonic(), False
            for other in self._batch_mates(job):
                if other.state == "running" and not other.requeue:
                    other.requeue = True
                    other.message = f"pausing: {name} was stopped; this job continues from its checkpoint"
            try:
                job.proc.send_signal(signal.SIGINT)
            except ProcessLookupError:
                pass
            return job.message

    def resume(self, name: str, steps: int | None = None) -> str:
        """Queue a stopped job again: from its checkpoint when it has one, else from the start."""
        with self.lock:
            job = self._job(name)
            if not job.can_resume:
                return f"{name} cannot be resumed ({job.state})"
            job.resume = (job.folder / "checkpoint.safetensors").is_file()
            job.resume_steps = steps
            job.state, job.message = "queued", "queued to resume" if job.resume else "queued"
        self._wake()
        return job.message

    def delete(self, name: str) -> None:
        """Forget a job that is not running and remove its folder."""
        import shutil

        with self.lock:
            job = self._job(name)
            if job.state in ("running", "stopping"):
                raise OnewordError(f"{name} is running; stop it first")
            folder = job.folder.resolve()
            if folder.parent != self.root:
                raise OnewordError(f"{name} is not a run folder of this server")
            del self.jobs[name]
        shutil.rmtree(folder, ignore_errors=True)

    def close(self, timeout: float = 60.0) -> None:
        """Stop the watcher; running jobs get SIGINT (they checkpoint) and `timeout` seconds to exit."""
        self._closed.set()
        with self.lock:
            procs = {id(j.proc): j.proc for j in self.jobs.values() if j.proc is not None and j.proc.poll() is None}
            for proc in procs.values():  # a batch's jobs share one process: one signal each
                try:
                    proc.send_signal(signal.SIGINT)
                except ProcessLookupError:
                    pass
        end = time.monotonic() + timeout
        for proc in procs.values():
            try:
                proc.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()

    # ------------------------------------------------------------------------------------------ progress
    def progress(self, job: Job) -> Progress:
        """Read what was appended since the last call: the worker's step log (a `learn` job: the step twice a
        second) and the run's progress.jsonl (learn and learn-many: loss, validation loss, lr at each check point)."""
        with self.lock:
            p = job.progress
            for r in _new_lines(job.folder / PROGRESS_FILE, p, "offset"):
                try:
                    step, t = int(r["step"]), float(r["t"])
                except (ValueError, KeyError, TypeError):
                    continue
                if r.get("start"):
                    p.window = []
                p.total = int(r.get("total") or p.total)
                _moved(p, step, t)
            for r in _new_lines(job.folder / RECORD_FILE, p, "records_offset"):
                try:
                    step, t, loss = int(r["step"]), float(r["t"]), float(r["loss"])
                except (ValueError, KeyError, TypeError):
                    continue
                # a run resumed after a kill writes again from its checkpoint on: its records replace those
                p.points = {s: x for s, x in p.points.items() if s < step}
                p.points[step] = {**r, "loss": loss}
                p.lr = r.get("lr") if isinstance(r.get("lr"), (int, float)) else p.lr
                _moved(p, step, t)
            if len(p.window) >= 2 and p.window[-1][0] > p.window[0][0]:
                p.rate = (p.window[-1][1] - p.window[0][1]) / (p.window[-1][0] - p.window[0][0])
            run = job.run_json
            p.losses = [(s, x["loss"]) for s, x in sorted(p.points.items())]
            p.val_losses = [
                (s, float(x["val_loss"])) for s, x in sorted(p.points.items()) if x.get("val_loss") is not None
            ]
            es = run.get("early_stopping") or {}
            if not p.val_losses:  # a run from before progress.jsonl: its validation losses from run.json
                every = int(es.get("val_every") or 25)
                p.val_losses = [((i + 1) * every, float(v)) for i, v in enumerate(es.get("val_losses") or [])]
            if run.get("step") and (not p.step or job.state not in ("running", "stopping")):  # saved: exact
                p.step = int(run["step"])
            if not p.total:
                p.total = int((run.get("config") or {}).get("steps") or 0)
            return p

    # ------------------------------------------------------------------------------------------ internals
    def _job(self, name: str) -> Job:
        job = self.jobs.get(name)
        if job is None:
            raise OnewordError(f"no job {name!r}")
        return job

    def _wake(self) -> None:
        with self.lock:
            self._tick()

    def _loop(self) -> None:
        while not self._closed.wait(self.poll_s):
            try:
                with self.lock:
                    self._tick()
            except Exception as e:  # the watcher must outlive any one job's trouble
                print(f"oneword ui: job watcher: {e}", file=sys.stderr)

    def _tick(self) -> None:
        busy = False
        for job in self.jobs.values():
            if job.proc is None:
                continue
            code = job.proc.poll()
            if code is None:
                busy = True
                if job.state == "stopping" and time.monotonic() - job.stop_sent > STOP_GRACE_S:
                    job.proc.terminate()
                if job.batch and job.state == "running":  # a concept of a batch ends while the others go on
                    status = job.run_json.get("status")
                    if status in FINISHED + ("failed",):
                        job.proc = None
                        self._finished(job, 0 if status in FINISHED else 2)
                continue
            job.proc = None
            self._finished(job, code)
        if busy or self._closed.is_set():
            return
        queued = [self.jobs[n] for n in self.names() if self.jobs[n].state == "queued"]
        if not queued:
            return
        key = self._batch_key(queued[0])
        batch = [queued[0]] + [j for j in queued[1:] if key is not None and self._batch_key(j) == key]
        if len(batch) >= 2:
            self._start_batch(batch[:MAX_BATCH])
        elif key is not None and time.monotonic() - self._last_submit < self.gather_s:
            return  # another Start may follow in a moment: then both learn in one batch
        else:
            self._start(queued[0])

    def _batch_key(self, job: Job) -> tuple | None:
        """What jobs must share to learn in one learn-many batch (its shared flags), or None: this job learns alone
        (a resume, a preview prompt, other flags)."""
        if job.resume or len(job.argv) < 2 or job.argv[0] != "learn":
            return None
        flags = _flags(job.argv[2:])
        if flags is None or "--token" not in flags or "--out" not in flags:
            return None
        shared = {k: v for k, v in flags.items() if k not in PER_JOB}
        if set(shared) - SHARED - SWITCHES:
            return None
        return tuple(sorted((k, str(v)) for k, v in shared.items()))

    def _batch_mates(self, job: Job) -> list[Job]:
        if not job.batch or job.proc is None:
            return []
        return [j for j in self.jobs.values() if j is not job and j.proc is job.proc]

    def _start_batch(self, batch: list[Job]) -> None:
        """One `oneword learn-many` for `batch` (new jobs with the same shared flags): a JSONL manifest of their
        own settings, the shared flags on the command line, each concept into its own run folder."""
        from ..safeio import atomic_write_bytes

        base = self.root / BATCHES
        base.mkdir(exist_ok=True)
        n = 1 + max([int(m.group(1)) for p in base.iterdir() if (m := re.fullmatch(r"batch-(\d+)", p.name))] + [0])
        folder = base / f"batch-{n:03d}"
        folder.mkdir()
        lines = []
        for job in batch:
            flags = _flags(job.argv[2:])
            entry = {"photos": str(Path(job.argv[1]).resolve())}
            for flag, (name, kind) in PER_JOB.items():
                if flag in flags:
                    entry[name] = kind(flags[flag])
            lines.append(json.dumps(entry))
        manifest = folder / "jobs.jsonl"
        atomic_write_bytes(manifest, ("\n".join(lines) + "\n").encode())
        argv = ["learn-many", str(manifest), "--out", str(folder)]
        for k, v in _flags(batch[0].argv[2:]).items():
            if k not in PER_JOB:
                argv += [k] if v is True else [k, str(v)]
        proc = self._spawn(folder / PROGRESS_FILE, folder / LOG_FILE, argv)
        names = [j.name for j in batch]
        for job in batch:
            with open(job.folder / LOG_FILE, "a", encoding="utf-8") as f:  # where its log is
                f.write(f"learning in the learn-many batch {BATCHES}/{folder.name}: its log is there\n")
            if isinstance(proc, str):
                job.state, job.message = "failed", proc
                continue
            others = ", ".join(x for x in names if x != job.name)
            job.proc, job.batch, job.requeue = proc, folder.name, False
            job.state, job.message = "running", f"learning in one learn-many batch with {others}"
            job.progress.window = []

    def _spawn(self, progress: Path, log_path: Path, argv: list[str]):
        """The worker process running `oneword ARGV` (or why it could not start, a string)."""
        log = open(log_path, "ab")
        env = dict(self.env if self.env is not None else os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        try:
            return subprocess.Popen(
                [self.python, "-m", "oneword.ui.worker", str(progress), *argv],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )  # a Ctrl-C in the server's terminal is the server's
        except OSError as e:
            return f"could not start: {e}"
        finally:
            log.close()

    def _start(self, job: Job) -> None:
        if job.resume:
            argv = ["learn", "--resume", str(job.folder)]
            if job.resume_steps:
                argv += ["--steps", str(int(job.resume_steps))]
            argv += _device_args(self.model_args)
        else:
            argv = list(job.argv)
        proc = self._spawn(job.folder / PROGRESS_FILE, job.folder / LOG_FILE, argv)
        if isinstance(proc, str):
            job.state, job.message = "failed", proc
            return
        job.proc, job.batch, job.requeue = proc, None, False
        job.state, job.message = "running", "resumed from its checkpoint" if job.resume else "learning"
        job.progress.window = []

    def _finished(self, job: Job, code: int) -> None:
        run = job.run_json
        status = run.get("status")
        batch, job.batch = job.batch, None
        has_checkpoint = (job.folder / "checkpoint.safetensors").is_file()
        if status in FINISHED and (code == 0 or batch):  # learn-many exits 2 when another concept failed
            job.state = status
            job.message = (
                f"early stopping at step {run.get('step')}: the validation loss stopped falling"
                if status == "early_stopped"
                else f"done: {run.get('step')} steps"
            )
        elif job.requeue and job.state == "running" and has_checkpoint:  # its batch stopped for another job
            job.requeue, job.resume, job.resume_steps = False, True, None
            job.state = "queued"
            job.message = f"its batch stopped at step {run.get('step')}; queued to continue from its checkpoint"
            return
        elif job.state == "stopping" or status == "interrupted":
            job.state = "interrupted"
            job.message = (
                f"stopped at step {run.get('step')}; checkpoint saved: Resume continues exactly"
                if (job.folder / "checkpoint.safetensors").is_file()
                else "stopped before the first step"
            )
        else:
            log = self.root / BATCHES / batch / LOG_FILE if batch else job.folder / LOG_FILE
            reason = run.get("error") if status == "failed" else None  # learn-many's reason for this concept
            job.state, job.message = "failed", reason or last_error(log) or f"exited with code {code}"
        job.resume, job.requeue = False, False

    def _rescan(self) -> None:
        """Runs left by an earlier server: finished, interrupted (resumable) or queued again."""
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            spec_path = folder / JOB_FILE
            try:
                spec = json.loads(spec_path.read_text())
            except (OSError, ValueError):
                continue
            job = Job(
                name=folder.name,
                folder=folder,
                argv=list(spec.get("argv") or []),
                token=str(spec.get("token", folder.name)),
                created=float(spec.get("created") or 0),
            )
            status = job.run_json.get("status")
            if status in FINISHED:
                job.state, job.message = status, f"{status.replace('_', ' ')} at step {job.run_json.get('step')}"
            elif (folder / "checkpoint.safetensors").is_file():
                job.state, job.message = "interrupted", "stopped when the server stopped; Resume continues exactly"
            elif status is None and not (folder / LOG_FILE).exists():
                job.state, job.message = "queued", "queued before the server stopped"
            else:
                job.state, job.message = "stopped", "stopped before its first checkpoint; Resume starts it again"
            self.jobs[job.name] = job


def _flags(args: list[str]) -> dict | None:
    """learn's flags after the photos as {flag: value} (True for a switch); None if a flag repeats."""
    out, it = {}, iter(args)
    for a in it:
        if not a.startswith("--") or a in out:
            return None
        out[a] = True if a in SWITCHES else next(it, "")
    return out


def _new_lines(path: Path, p: Progress, offset: str) -> list[dict]:
    """The whole JSON lines appended to `path` since p.<offset> (a line still being written waits)."""
    try:
        with open(path, "rb") as f:
            f.seek(getattr(p, offset))
            chunk = f.read()
    except OSError:
        return []
    end = chunk.rfind(b"\n") + 1
    setattr(p, offset, getattr(p, offset) + end)
    out = []
    for line in chunk[:end].splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if isinstance(r, dict):
            out.append(r)
    return out


def _moved(p: Progress, step: int, t: float) -> None:
    """A (time, step) reading: the newest sets the step; the last dozen give the rate."""
    if t >= p.last_t:
        p.step, p.last_t = step, t
    p.window = sorted(p.window + [(t, step)])[-12:]


def _device_args(model_args: list[str]) -> list[str]:
    """On resume the run's own model is used (`learn --resume` reads it from run.json); only the device carries."""
    out, it = [], iter(model_args)
    for a in it:
        if a == "--device":
            out += [a, next(it, "")]
    return out


def last_error(log: Path) -> str:
    """The command's one-line error (`error: ...`) from a job's log, else its last line."""
    try:
        text = log.read_bytes()[-20000:].decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [x.strip() for x in re.split(r"[\r\n]+", text) if x.strip()]
    for line in reversed(lines):
        if line.startswith("error:"):
            return line
    return lines[-1][:300] if lines else ""
