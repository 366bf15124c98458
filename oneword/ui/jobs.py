"""Learning jobs beside the web server: each is `oneword learn` in its own process (oneword.ui.worker), one at a
time per server (one device), the others queued. Everything a page shows is kept here, keyed by run folder, and
read from what the run writes (run.json, previews/, the worker's progress log), so a reloaded page or a second
tab sees the same job, and a restarted server finds its runs again.

A run folder of the UI: ROOT/<name>/ holding photos/ (the uploaded photos, re-encoded after the safe loader read
them), ui-job.json (the command that starts it), ui-progress.jsonl, ui-log.txt, and what `oneword learn` writes.
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
    offset: int = 0  # bytes of the log already read
    window: list = field(default_factory=list)  # recent (t, step) for the rate


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
    ):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.model_args = list(model_args or [])
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
            job.stop_sent = time.monotonic()
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
            running = [j for j in self.jobs.values() if j.proc is not None and j.proc.poll() is None]
            for j in running:
                try:
                    j.proc.send_signal(signal.SIGINT)
                except ProcessLookupError:
                    pass
        end = time.monotonic() + timeout
        for j in running:
            try:
                j.proc.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                j.proc.kill()

    # ------------------------------------------------------------------------------------------ progress
    def progress(self, job: Job) -> Progress:
        """Read what the worker appended since the last call, and the validation losses from run.json."""
        with self.lock:
            p = job.progress
            path = job.folder / PROGRESS_FILE
            try:
                with open(path, "rb") as f:
                    f.seek(p.offset)
                    chunk = f.read()
            except OSError:
                chunk = b""
            end = chunk.rfind(b"\n") + 1  # a line still being written waits for the next call
            p.offset += end
            for line in chunk[:end].splitlines():
                try:
                    r = json.loads(line)
                    step, t = int(r["step"]), float(r["t"])
                except (ValueError, KeyError, TypeError):
                    continue
                if r.get("start"):
                    p.window = []
                    p.losses = [x for x in p.losses if x[0] <= step]  # a resumed run continues from its checkpoint
                p.step, p.total = step, int(r.get("total") or p.total)
                p.window = (p.window + [(t, step)])[-12:]
                if isinstance(r.get("loss"), (int, float)):
                    p.losses.append((step, float(r["loss"])))
            if len(p.window) >= 2 and p.window[-1][0] > p.window[0][0]:
                p.rate = (p.window[-1][1] - p.window[0][1]) / (p.window[-1][0] - p.window[0][0])
            run = job.run_json
            es = run.get("early_stopping") or {}
            every = int(es.get("val_every") or 25)
            p.val_losses = [((i + 1) * every, float(v)) for i, v in enumerate(es.get("val_losses") or [])]
            if run.get("step") and (not p.step or job.state in FINISHED):
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
                continue
            job.proc = None
            self._finished(job, code)
        if busy or self._closed.is_set():
            return
        for name in self.names():
            job = self.jobs[name]
            if job.state == "queued":
                self._start(job)
                return

    def _start(self, job: Job) -> None:
        if job.resume:
            argv = ["learn", "--resume", str(job.folder)]
            if job.resume_steps:
                argv += ["--steps", str(int(job.resume_steps))]
            argv += _device_args(self.model_args)
        else:
            argv = list(job.argv)
        log = open(job.folder / LOG_FILE, "ab")
        env = dict(self.env if self.env is not None else os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        try:
            job.proc = subprocess.Popen(
                [self.python, "-m", "oneword.ui.worker", str(job.folder / PROGRESS_FILE), *argv],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )  # a Ctrl-C in the server's terminal is the server's
        except OSError as e:
            job.state, job.message = "failed", f"could not start: {e}"
            return
        finally:
            log.close()
        job.state, job.message = "running", "resumed from its checkpoint" if job.resume else "learning"
        job.progress.window = []

    def _finished(self, job: Job, code: int) -> None:
        run = job.run_json
        status = run.get("status")
        if code == 0 and status in FINISHED:
            job.state = status
            job.message = (
                f"early stopping at step {run.get('step')}: the validation loss stopped falling"
                if status == "early_stopped"
                else f"done: {run.get('step')} steps"
            )
        elif job.state == "stopping" or status == "interrupted":
            job.state = "interrupted"
            job.message = (
                f"stopped at step {run.get('step')}; checkpoint saved: Resume continues exactly"
                if (job.folder / "checkpoint.safetensors").is_file()
                else "stopped before the first step"
            )
        else:
            job.state, job.message = "failed", last_error(job.folder / LOG_FILE) or f"exited with code {code}"
        job.resume = False

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
