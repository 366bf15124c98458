"""A learning job of `oneword ui`: `oneword learn ARGS` (or `oneword learn-many ARGS`, several jobs in one batch)
in its own process, plus a progress log for the page.

    python -m oneword.ui.worker PROGRESS_JSONL learn PHOTOS --token ... --out RUN_DIR
    python -m oneword.ui.worker PROGRESS_JSONL learn --resume RUN_DIR
    python -m oneword.ui.worker PROGRESS_JSONL learn-many MANIFEST_JSONL --out BATCH_DIR ...

The job is exactly the command (its checkpoints, its exact resume, its run.json, its previews); SIGINT makes it
checkpoint and stop, as Ctrl-C does in a terminal, except that here the interrupt is held until the step in
flight has finished and is not a check point (validation, preview, checkpoint): the checkpoint then holds a
whole step's state, and Resume continues bit for bit as if the run had never stopped. What the command shows
only in its progress bar (the step, the loss at each check point) is appended to PROGRESS_JSONL as JSON lines,
at most every half second plus once at each check point, by a subclass of the bar itself: nothing is added to
the learning step.

Each line: {"t": unix time, "step": int, "total": int, "loss": float (at check points only)}; the first line of
each process has "start": true.

learn-many has no per-step bar of a concept: each concept's own progress.jsonl (run.py, written at its check
points) is what the page reads. SIGINT is held there too, and delivered before the batch's next step (every
concept's state whole), where learn-many saves every running concept's checkpoint and exits.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

EVERY_S = 0.5
MAX_HELD_STEPS = 100  # a stop held this long (every step a check point?) is delivered anyway


class StopRequest:
    """SIGINT while learning: remembered, and raised as KeyboardInterrupt by the bar at the next whole step."""

    learning = False
    requested = False
    held = 0
    run_dir: str | None = None

    @classmethod
    def on_sigint(cls, signum, frame):
        if not cls.learning:
            raise KeyboardInterrupt  # loading, or saving at the end: stop at once, as the command would
        cls.requested = True

    @classmethod
    def due(cls, step: int) -> bool:
        if not cls.requested:
            return False
        cls.held += 1
        return cls.held > MAX_HELD_STEPS or not _check_point(cls.run_dir, step)


def _check_point(run_dir: str | None, step: int) -> bool:
    """Whether `learn` reads the device and may validate, preview or save after `step` (its run.json's config)."""
    try:
        with open(os.path.join(run_dir or "", "run.json"), encoding="utf-8") as f:
            cfg = json.load(f)["config"]
        every = [int(cfg["val_every"]), int(cfg["save_every"]), int(cfg.get("preview_every") or 0)]
        return step >= int(cfg["steps"]) or any(e and step % e == 0 for e in every)
    except (OSError, ValueError, KeyError, TypeError):
        return False  # unknown: stop now


def install_progress_log(path: str) -> None:
    """Make every tqdm bar named "learning" also append its progress to `path` (before oneword is imported)."""
    import tqdm.auto

    base = tqdm.auto.tqdm

    class LoggedProgress(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._log = kwargs.get("desc") == "learning"
            self._last = 0.0
            if self._log:
                self._write(start=True)
                StopRequest.learning = True

        def update(self, n=1):
            out = super().update(n)
            if self._log:
                if time.monotonic() - self._last >= EVERY_S:
                    self._write()
                if StopRequest.requested and StopRequest.due(int(self.n)):
                    self._write()
                    StopRequest.learning = False
                    raise KeyboardInterrupt
            return out

        def set_postfix(self, ordered_dict=None, refresh=True, **kwargs):
            super().set_postfix(ordered_dict, refresh, **kwargs)
            if self._log:
                loss = kwargs.get("loss", (ordered_dict or {}).get("loss"))
                try:
                    self._write(loss=float(loss))
                except (TypeError, ValueError):
                    self._write()

        def close(self):
            if getattr(self, "_log", False):
                self._write()
                self._log = False
                StopRequest.learning = False
            super().close()

        def _write(self, **extra) -> None:
            self._last = time.monotonic()
            record = {"t": round(time.time(), 3), "step": int(self.n), "total": int(self.total or 0), **extra}
            try:
                with open(path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(record) + "\n")
            except OSError:  # the page's view of progress must never stop the learning
                pass

    tqdm.auto.tqdm = LoggedProgress


def hold_interrupts_between_batch_steps() -> None:
    """learn-many: a stop requested during a step is raised before the next one (learn-many then saves every
    running concept's checkpoint); before the batch starts (loading) it stops at once."""
    from oneword import many

    step = many.Engine._iteration

    def whole_steps(engine):
        if StopRequest.requested:
            StopRequest.learning = False
            raise KeyboardInterrupt
        StopRequest.learning = True
        step(engine)

    many.Engine._iteration = whole_steps


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 2 or argv[1] not in ("learn", "learn-many"):
        print("usage: python -m oneword.ui.worker PROGRESS_JSONL learn|learn-many ...", file=sys.stderr)
        return 2
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Stop is SIGINT, held until a whole step (StopRequest); installed explicitly, since a server started in the
    # background of a shell ignores SIGINT and its children would inherit that
    for flag in ("--out", "--resume"):
        if flag in argv[:-1]:
            StopRequest.run_dir = argv[argv.index(flag) + 1]
    signal.signal(signal.SIGINT, StopRequest.on_sigint)
    if argv[1] == "learn":
        install_progress_log(argv[0])
    else:
        hold_interrupts_between_batch_steps()
    # the job is `python -m oneword learn ...` itself, run in this process after the hooks above
    import runpy

    sys.argv = ["oneword", *argv[1:]]
    try:
        runpy.run_module("oneword", run_name="__main__", alter_sys=True)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
